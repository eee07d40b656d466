//! The ObjectStore CRD: the checked-in deploy/crd.yaml is the generated one, the
//! schema accepts real stores and refuses bad ones, the CEL rules are in place.

use barrelman_operator::crd::{object_store_crd, object_store_crd_json, object_store_crd_yaml};
use serde_json::{json, Value};
use std::path::PathBuf;

fn repo_file(rel: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn validator() -> jsonschema::Validator {
    let crd = object_store_crd_json();
    let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    jsonschema::draft4::new(&schema).expect("the CRD schema compiles")
}

fn yaml_docs(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text).expect("YAML parses")
}

#[test]
fn checked_in_crd_is_the_generated_one() {
    let checked_in = repo_file("deploy/crd.yaml");
    assert!(
        checked_in == object_store_crd_yaml(),
        "deploy/crd.yaml is stale: regenerate it with `cargo run -p barrelman-cli -- cnpg crd > deploy/crd.yaml` \
         (and replace the CRD document at the top of deploy/manifest.yaml with it)"
    );
    let manifest = repo_file("deploy/manifest.yaml");
    assert!(
        manifest.contains(&checked_in),
        "deploy/manifest.yaml does not start with the current CRD: paste deploy/crd.yaml \
         (`barrelman cnpg crd`) as its first document"
    );
}

#[test]
fn crd_names_and_subresources() {
    let crd = object_store_crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("objectstores.barmancloud.cnpg.io")
    );
    assert_eq!(crd.spec.group, "barmancloud.cnpg.io");
    assert_eq!(crd.spec.names.kind, "ObjectStore");
    assert_eq!(crd.spec.names.plural, "objectstores");
    assert_eq!(crd.spec.scope, "Namespaced");
    let v = &crd.spec.versions[0];
    assert_eq!((v.name.as_str(), v.served, v.storage), ("v1", true, true));
    assert!(v.subresources.as_ref().unwrap().status.is_some());
}

#[test]
fn schema_has_upstreams_constraints() {
    let crd = object_store_crd_json();
    let s = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    assert_eq!(s["required"], json!(["metadata", "spec"]));
    let spec = &s["properties"]["spec"];
    assert_eq!(spec["required"], json!(["configuration"]));
    let conf = &spec["properties"]["configuration"];
    assert_eq!(conf["required"], json!(["destinationPath"]));
    let p = &conf["properties"];
    assert_eq!(p["destinationPath"]["minLength"], 1);
    assert_eq!(
        p["wal"]["properties"]["compression"]["enum"],
        json!(["bzip2", "gzip", "lz4", "snappy", "xz", "zstd"])
    );
    assert_eq!(
        p["data"]["properties"]["compression"]["enum"],
        json!(["bzip2", "gzip", "lz4", "snappy"])
    );
    for part in ["wal", "data"] {
        assert_eq!(
            p[part]["properties"]["encryption"]["enum"],
            json!(["AES256", "aws:kms"])
        );
    }
    assert_eq!(p["wal"]["properties"]["maxParallel"]["minimum"], 1);
    assert!(p["wal"]["properties"]["maxParallel"]
        .get("format")
        .is_none());
    assert_eq!(p["data"]["properties"]["jobs"]["format"], "int32");
    assert_eq!(p["data"]["properties"]["jobs"]["minimum"], 1);
    assert_eq!(
        spec["properties"]["retentionPolicy"]["pattern"],
        "^[1-9][0-9]*[dwm]$"
    );
    let sidecar = &spec["properties"]["instanceSidecarConfiguration"]["properties"];
    assert_eq!(sidecar["logLevel"]["default"], "info");
    assert_eq!(
        sidecar["logLevel"]["enum"],
        json!(["error", "warning", "info", "debug", "trace"])
    );
    assert_eq!(sidecar["retentionPolicyIntervalSeconds"]["default"], 1800);
    // Only what upstream requires is required (an optional field with a default
    // must not become required on the way).
    assert!(spec["properties"]["instanceSidecarConfiguration"]
        .get("required")
        .is_none());
    assert_eq!(sidecar["env"]["items"]["required"], json!(["name"]));
    assert!(sidecar["resources"]["properties"]["limits"].is_object());
    let window = &s["properties"]["status"]["properties"]["serverRecoveryWindow"]
        ["additionalProperties"]["properties"];
    for f in [
        "firstRecoverabilityPoint",
        "lastSuccessfulBackupTime",
        "lastFailedBackupTime",
    ] {
        assert_eq!(window[f]["format"], "date-time", "{f}");
    }
    // No `default` the API server would write into every stored object (false, [],
    // null), no `nullable`, no `$ref`: a structural schema.
    let text = serde_json::to_string(s).unwrap();
    for bad in [
        "\"default\":false",
        "\"default\":[]",
        "\"default\":null",
        "\"default\":{}",
        "nullable",
        "$ref",
        "\"null\"",
    ] {
        assert!(!text.contains(bad), "schema contains {bad}");
    }
}

#[test]
fn cel_rules_are_in_the_crd() {
    let crd = object_store_crd_json();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(
        spec["properties"]["configuration"]["x-kubernetes-validations"],
        json!([{
            "fieldPath": ".serverName",
            "message": "use the 'serverName' plugin parameter in the Cluster resource",
            "reason": "FieldValueForbidden",
            "rule": "!has(self.serverName)",
        }])
    );
    assert_eq!(
        spec["properties"]["instanceSidecarConfiguration"]["properties"]["additionalContainerArgs"]
            ["x-kubernetes-validations"],
        json!([{
            "message": "do not set --log-level in additionalContainerArgs; use spec.instanceSidecarConfiguration.logLevel",
            "reason": "FieldValueForbidden",
            "rule": "!self.exists(a, a.startsWith('--log-level'))",
        }])
    );
}

const UPSTREAM_STYLE: &str = r#"
apiVersion: barmancloud.cnpg.io/v1
kind: ObjectStore
metadata:
  name: minio-store
  namespace: default
spec:
  retentionPolicy: "30d"
  configuration:
    destinationPath: s3://backups/
    endpointURL: http://minio:9000
    endpointCA:
      name: minio-ca
      key: ca.crt
    s3Credentials:
      accessKeyId:
        name: minio
        key: ACCESS_KEY_ID
      secretAccessKey:
        name: minio
        key: ACCESS_SECRET_KEY
    wal:
      compression: gzip
      encryption: AES256
      maxParallel: 8
      archiveAdditionalCommandArgs: ["--min-chunk-size=5MB"]
    data:
      compression: bzip2
      jobs: 2
      immediateCheckpoint: true
      additionalCommandArgs: ["--read-timeout=60"]
    tags:
      env: prod
    historyTags:
      kind: history
  instanceSidecarConfiguration:
    logLevel: debug
    retentionPolicyIntervalSeconds: 1800
    additionalContainerArgs: ["--log-destination=/dev/stderr"]
    env:
    - name: AWS_REQUEST_CHECKSUM_CALCULATION
      value: when_required
    - name: TZ
      valueFrom:
        configMapKeyRef:
          name: tz
          key: zone
    resources:
      requests:
        memory: 64Mi
        cpu: 100m
      limits:
        memory: 512Mi
        cpu: 1
status:
  serverRecoveryWindow:
    cluster-example:
      firstRecoverabilityPoint: "2026-01-01T00:00:00Z"
      lastSuccessfulBackupTime: "2026-01-02T00:00:00Z"
"#;

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn upstream_style_store_validates_and_loads() {
    let v = validator();
    let doc = yaml_docs(UPSTREAM_STYLE).remove(0);
    assert_eq!(errors(&v, &doc), Vec::<String>::new());
    // And the core (sidecar, CLI) reads the same manifest.
    let store = barrelman_core::objectstore::ObjectStore::from_yaml(UPSTREAM_STYLE).unwrap();
    let sidecar = store.spec.instance_sidecar_configuration.unwrap();
    assert_eq!(sidecar.log_level.as_deref(), Some("debug"));
    assert_eq!(sidecar.retention_policy_interval_seconds, Some(1800));
    assert_eq!(sidecar.env.len(), 2);
    assert_eq!(sidecar.resources.unwrap()["limits"]["memory"], "512Mi");
}

type Change = Box<dyn Fn(&mut Value)>;

#[test]
fn schema_refuses_what_upstream_refuses() {
    let v = validator();
    let base = yaml_docs(UPSTREAM_STYLE).remove(0);
    let cases: Vec<(&str, Change)> = vec![
        (
            "retentionPolicy 30 (no unit)",
            Box::new(|d| d["spec"]["retentionPolicy"] = json!("30")),
        ),
        (
            "retentionPolicy 0d",
            Box::new(|d| d["spec"]["retentionPolicy"] = json!("0d")),
        ),
        (
            "retentionPolicy 30y",
            Box::new(|d| d["spec"]["retentionPolicy"] = json!("30y")),
        ),
        (
            "REDUNDANCY",
            Box::new(|d| d["spec"]["retentionPolicy"] = json!("REDUNDANCY 3")),
        ),
        (
            "wal compression brotli",
            Box::new(|d| d["spec"]["configuration"]["wal"]["compression"] = json!("brotli")),
        ),
        (
            "data compression xz",
            Box::new(|d| d["spec"]["configuration"]["data"]["compression"] = json!("xz")),
        ),
        (
            "encryption aes",
            Box::new(|d| d["spec"]["configuration"]["wal"]["encryption"] = json!("aes")),
        ),
        (
            "maxParallel 0",
            Box::new(|d| d["spec"]["configuration"]["wal"]["maxParallel"] = json!(0)),
        ),
        (
            "jobs 0",
            Box::new(|d| d["spec"]["configuration"]["data"]["jobs"] = json!(0)),
        ),
        (
            "empty destination",
            Box::new(|d| d["spec"]["configuration"]["destinationPath"] = json!("")),
        ),
        (
            "no destination",
            Box::new(|d| {
                d["spec"]["configuration"]
                    .as_object_mut()
                    .unwrap()
                    .remove("destinationPath");
            }),
        ),
        (
            "no configuration",
            Box::new(|d| {
                d["spec"].as_object_mut().unwrap().remove("configuration");
            }),
        ),
        (
            "secret ref without key",
            Box::new(|d| {
                d["spec"]["configuration"]["s3Credentials"]["accessKeyId"]
                    .as_object_mut()
                    .unwrap()
                    .remove("key");
            }),
        ),
        (
            "log level verbose",
            Box::new(|d| d["spec"]["instanceSidecarConfiguration"]["logLevel"] = json!("verbose")),
        ),
        (
            "env without name",
            Box::new(|d| {
                d["spec"]["instanceSidecarConfiguration"]["env"] = json!([{"value": "x"}])
            }),
        ),
        (
            "tag value a number",
            Box::new(|d| d["spec"]["configuration"]["tags"]["n"] = json!(1)),
        ),
    ];
    for (what, change) in cases {
        let mut doc = base.clone();
        change(&mut doc);
        assert!(!v.is_valid(&doc), "{what}: the schema accepted it");
    }
}

#[test]
fn every_object_store_in_the_docs_validates() {
    let v = validator();
    let docs = repo_file("docs/kubernetes.md");
    let mut seen = 0;
    for block in docs.split("```yaml").skip(1) {
        let block = block.split("```").next().unwrap();
        for doc in yaml_docs(block) {
            if doc["kind"] == "ObjectStore" {
                seen += 1;
                assert_eq!(errors(&v, &doc), Vec::<String>::new(), "{block}");
                let text = serde_saphyr::to_string(&doc).unwrap();
                barrelman_core::objectstore::ObjectStore::from_yaml(&text).unwrap();
            }
        }
    }
    assert!(seen >= 2, "docs/kubernetes.md shows {seen} ObjectStores");
}
