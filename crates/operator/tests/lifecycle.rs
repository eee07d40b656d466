//! OperatorLifecycle (sidecar injection): golden tests on hand-written CloudNativePG
//! instance Pod and full-recovery Job JSON (tests/data), the patch applied with
//! json-patch as CloudNativePG applies it, EVALUATE stability, k8s-openapi decoding of
//! the results, and the gRPC service against the stand-in Kubernetes API.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use barrelman_cnpg::k8s::KubeAccess;
use barrelman_cnpg::proto::operator_lifecycle::operator_lifecycle_server::OperatorLifecycle;
use barrelman_cnpg::proto::operator_lifecycle::{
    operator_operation_type::Type, OperatorLifecycleCapabilitiesRequest, OperatorLifecycleRequest,
    OperatorOperationType,
};
use barrelman_core::objectstore::ObjectStore;
use barrelman_operator::lifecycle::{
    lifecycle_patch, mutate_pod, ClusterView, LifecycleError, LifecycleService, Stores,
    SIDECAR_CONTAINER,
};
use barrelman_testkit::kubeapi::KubeApi;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use tonic::{Code, Request};

const IMAGE: &str = "ghcr.io/example/barrelman:0.1.0";

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json_of(name: &str) -> Value {
    serde_json::from_slice(&data(name)).unwrap()
}

fn store_manifests() -> Vec<Value> {
    serde_json::from_slice(&data("stores.json")).unwrap()
}

fn stores() -> Stores {
    store_manifests()
        .into_iter()
        .map(|m| {
            let s: ObjectStore = serde_json::from_value(m).unwrap();
            (s.metadata.name.clone().unwrap(), s)
        })
        .collect()
}

fn cluster(name: &str) -> ClusterView {
    ClusterView::from_json(&data(name)).unwrap()
}

/// Applies `patch` (bytes as the service returns them) to `doc` as CloudNativePG does.
fn apply(doc: &Value, patch: &[u8]) -> Value {
    let mut out = doc.clone();
    if patch.is_empty() {
        return out;
    }
    let ops: json_patch::Patch = serde_json::from_slice(patch).unwrap();
    json_patch::patch(&mut out, &ops).unwrap();
    out
}

fn patch_of(cluster: &ClusterView, obj: &Value, stores: &Stores) -> Vec<u8> {
    lifecycle_patch(cluster, &serde_json::to_vec(obj).unwrap(), stores, IMAGE).unwrap()
}

fn sidecar_of(pod_spec: &Value) -> &Value {
    pod_spec["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == SIDECAR_CONTAINER)
        .expect("no sidecar")
}

fn assert_same(got: &Value, want: &Value) {
    assert!(
        got == want,
        "got:\n{}\nwant:\n{}",
        serde_json::to_string_pretty(got).unwrap(),
        serde_json::to_string_pretty(want).unwrap()
    );
}

#[test]
fn instance_pod_matches_golden_and_evaluate_is_stable() {
    let cluster = cluster("cluster-archive.json");
    let pod = json_of("pod-instance.json");
    let stores = stores();
    let patch = patch_of(&cluster, &pod, &stores);
    assert!(!patch.is_empty());
    let mutated = apply(&pod, &patch);
    assert_same(&mutated, &json_of("pod-instance.expected.json"));

    // The result is a valid core/v1 Pod.
    let typed: Pod = serde_json::from_value(mutated.clone()).unwrap();
    let spec = typed.spec.unwrap();
    let init = spec.init_containers.unwrap();
    let side = init.iter().find(|c| c.name == SIDECAR_CONTAINER).unwrap();
    assert_eq!(side.restart_policy.as_deref(), Some("Always"));
    assert_eq!(init[0].name, "bootstrap-controller");

    // EVALUATE of the already mutated Pod: nothing to change (no rolling update).
    assert!(patch_of(&cluster, &mutated, &stores).is_empty());
}

#[test]
fn both_scratch_data_mounts_reach_the_sidecar() {
    let mutated = apply(
        &json_of("pod-instance.json"),
        &patch_of(
            &cluster("cluster-archive.json"),
            &json_of("pod-instance.json"),
            &stores(),
        ),
    );
    let mounts: Vec<(&str, &str)> = sidecar_of(&mutated["spec"])["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["mountPath"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(mounts.contains(&("scratch-data", "/run")), "{mounts:?}");
    assert!(
        mounts.contains(&("scratch-data", "/controller")),
        "{mounts:?}"
    );
    assert!(mounts.contains(&("plugins", "/plugins")), "{mounts:?}");
}

#[test]
fn env_first_wins_and_store_env_follows() {
    let mutated = mutate_pod(
        &cluster("cluster-archive.json"),
        &json_of("pod-instance.json"),
        &stores(),
        IMAGE,
    )
    .unwrap()
    .unwrap();
    let env = sidecar_of(&mutated["spec"])["env"].as_array().unwrap();
    let names: Vec<&str> = env.iter().map(|e| e["name"].as_str().unwrap()).collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "duplicate names: {names:?}");
    // The store tries to set NAMESPACE: the Pod's own value wins.
    let ns = env.iter().find(|e| e["name"] == "NAMESPACE").unwrap();
    assert_eq!(ns["value"], "db");
}

#[test]
fn recovery_only_cluster_leaves_the_instance_pod_alone() {
    let pod = json_of("pod-instance.json");
    assert!(patch_of(&cluster("cluster-recovery.json"), &pod, &stores()).is_empty());
}

#[test]
fn cluster_without_any_store_gets_no_patch() {
    let c = ClusterView::from_json(br#"{"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": {"name": "pg", "namespace": "db"}, "spec": {"instances": 1}}"#).unwrap();
    assert!(patch_of(&c, &json_of("pod-instance.json"), &Stores::new()).is_empty());
    assert!(patch_of(&c, &json_of("job-full-recovery.json"), &Stores::new()).is_empty());
}

#[test]
fn full_recovery_job_matches_golden_and_decodes() {
    let cluster = cluster("cluster-recovery-archive.json");
    let job = json_of("job-full-recovery.json");
    let stores = stores();
    let mutated = apply(&job, &patch_of(&cluster, &job, &stores));
    assert_same(&mutated, &json_of("job-full-recovery.expected.json"));
    let typed: Job = serde_json::from_value(mutated.clone()).unwrap();
    let spec = typed.spec.unwrap().template.spec.unwrap();
    assert_eq!(spec.init_containers.unwrap().len(), 2);
    assert!(patch_of(&cluster, &mutated, &stores).is_empty());
}

#[test]
fn jobs_other_than_recovery_are_untouched() {
    let stores = stores();
    // initdb Job of a recovering Cluster.
    let initdb = json_of("job-initdb.json");
    assert!(patch_of(&cluster("cluster-recovery-archive.json"), &initdb, &stores).is_empty());
    // A full-recovery Job of a Cluster that archives through the plugin but recovers
    // from elsewhere.
    let job = json_of("job-full-recovery.json");
    assert!(patch_of(&cluster("cluster-archive.json"), &job, &stores).is_empty());
    // snapshot-recovery gets the sidecar beside its own container.
    let snap_text = String::from_utf8(data("job-full-recovery.json"))
        .unwrap()
        .replace("full-recovery", "snapshot-recovery");
    let snap: Value = serde_json::from_str(&snap_text).unwrap();
    let mutated = apply(
        &snap,
        &patch_of(&cluster("cluster-recovery.json"), &snap, &stores),
    );
    let spec = &mutated["spec"]["template"]["spec"];
    assert_eq!(sidecar_of(spec)["args"], json!(["restore"]));
    assert_eq!(
        spec["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["mountPath"],
        "/plugins"
    );
}

#[test]
fn endpoint_ca_added_then_removed() {
    let cluster = cluster("cluster-archive.json");
    let pod = json_of("pod-instance.json");
    let with_ca = stores();
    let mut without_ca = with_ca.clone();
    without_ca
        .get_mut("minio-store")
        .unwrap()
        .spec
        .configuration
        .endpoint_ca = None;

    let first = apply(&pod, &patch_of(&cluster, &pod, &with_ca));
    let has_cert_volume = |p: &Value| {
        p["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "barman-certificates")
    };
    let has_cert_mount = |p: &Value| {
        sidecar_of(&p["spec"])["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/barman-certificates")
    };
    assert!(has_cert_volume(&first) && has_cert_mount(&first));

    // The CA is dropped from the store: EVALUATE of the running Pod removes both.
    let patch = patch_of(&cluster, &first, &without_ca);
    assert!(!patch.is_empty());
    let second = apply(&first, &patch);
    assert!(!has_cert_volume(&second) && !has_cert_mount(&second));
    // ... and equals a fresh injection without CA.
    let fresh = apply(&pod, &patch_of(&cluster, &pod, &without_ca));
    assert_same(&second, &fresh);
    serde_json::from_value::<Pod>(second).unwrap();
}

#[test]
fn new_image_replaces_the_existing_sidecar_in_place() {
    let cluster = cluster("cluster-archive.json");
    let pod = json_of("pod-instance.json");
    let stores = stores();
    let first = apply(&pod, &patch_of(&cluster, &pod, &stores));
    let patch = lifecycle_patch(
        &cluster,
        &serde_json::to_vec(&first).unwrap(),
        &stores,
        "ghcr.io/example/barrelman:0.2.0",
    )
    .unwrap();
    let ops: Value = serde_json::from_slice(&patch).unwrap();
    assert_eq!(
        ops,
        json!([{"op": "replace", "path": "/spec/initContainers/1/image",
                "value": "ghcr.io/example/barrelman:0.2.0"}])
    );
}

#[test]
fn pod_without_postgres_container_is_refused() {
    let mut pod = json_of("pod-instance.json");
    pod["spec"]["containers"][0]["name"] = json!("main");
    let e = lifecycle_patch(
        &cluster("cluster-archive.json"),
        &serde_json::to_vec(&pod).unwrap(),
        &stores(),
        IMAGE,
    )
    .unwrap_err();
    assert!(matches!(e, LifecycleError::NoMainContainer { .. }), "{e}");
    assert_eq!(e.grpc_status().code(), Code::InvalidArgument);
    assert!(e.to_string().contains("\"pg-1\""), "{e}");
}

#[test]
fn unknown_kind_and_missing_store_are_errors() {
    let c = cluster("cluster-archive.json");
    let e = lifecycle_patch(&c, br#"{"kind": "Deployment"}"#, &stores(), IMAGE).unwrap_err();
    assert_eq!(e.grpc_status().code(), Code::InvalidArgument);
    let e = lifecycle_patch(&c, &data("pod-instance.json"), &Stores::new(), IMAGE).unwrap_err();
    assert!(matches!(e, LifecycleError::StoreMissing { .. }), "{e}");
    assert!(e.to_string().contains("minio-store"), "{e}");
}

#[test]
fn replica_source_only_cluster_injects_with_the_source_store_settings() {
    let c = ClusterView::from_json(
        json!({
            "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": "pg", "namespace": "db"},
            "spec": {
                "replica": {"enabled": true, "source": "origin"},
                "externalClusters": [{"name": "origin", "plugin": {
                    "name": "barman-cloud.cloudnative-pg.io",
                    "parameters": {"barmanObjectName": "origin-store"}}}]
            }
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let pod = json_of("pod-instance.json");
    let mutated = apply(&pod, &patch_of(&c, &pod, &stores()));
    let side = sidecar_of(&mutated["spec"]);
    assert_eq!(side["args"], json!(["instance", "--log-level=trace"]));
    assert_eq!(
        side["resources"],
        json!({"requests": {"cpu": "250m", "memory": "256Mi"}})
    );
    // No imagePullPolicy on the Cluster: none on the sidecar (the API server defaults it).
    assert!(side.get("imagePullPolicy").is_none());
    let env = side["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == "AWS_MAX_ATTEMPTS"));
    assert!(!env
        .iter()
        .any(|e| e["name"] == "AWS_REQUEST_CHECKSUM_CALCULATION"));
    serde_json::from_value::<Pod>(mutated).unwrap();
}

#[test]
fn sparse_pod_with_absent_and_null_lists() {
    let mut pod = json_of("pod-instance.json");
    let spec = pod["spec"].as_object_mut().unwrap();
    spec.remove("initContainers");
    spec.insert("volumes".into(), Value::Null);
    spec["containers"][0]["env"] = Value::Null;
    spec["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("volumeMounts");
    let c = cluster("cluster-archive.json");
    let stores = stores();
    let mutated = apply(&pod, &patch_of(&c, &pod, &stores));
    let typed: Pod = serde_json::from_value(mutated.clone()).unwrap();
    let spec = typed.spec.unwrap();
    assert_eq!(spec.init_containers.unwrap().len(), 1);
    let volumes: Vec<String> = spec.volumes.unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(volumes, ["plugins", "barman-certificates"]);
    let env = sidecar_of(&mutated["spec"])["env"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(env[0], json!({"name": "NAMESPACE", "value": "db"}));
    assert!(patch_of(&c, &mutated, &stores).is_empty());
}

#[test]
fn object_without_kind_is_refused() {
    let e = lifecycle_patch(
        &cluster("cluster-archive.json"),
        br#"{"apiVersion": "v1", "metadata": {"name": "pg-1"}}"#,
        &stores(),
        IMAGE,
    )
    .unwrap_err();
    assert_eq!(e.grpc_status().code(), Code::InvalidArgument);
    assert!(e.to_string().contains("kind"), "{e}");
}

#[test]
fn deleted_recovery_store_does_not_block_instance_pods() {
    let c = cluster("cluster-recovery-archive.json");
    let mut only_archive = stores();
    only_archive.remove("origin-store");
    let pod = json_of("pod-instance.json");
    let mutated = apply(&pod, &patch_of(&c, &pod, &only_archive));
    let spec = &mutated["spec"];
    let env = sidecar_of(spec)["env"].as_array().unwrap();
    assert!(!env.iter().any(|e| e["name"] == "AWS_MAX_ATTEMPTS"));
    let sources = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "barman-certificates")
        .unwrap()["projected"]["sources"]
        .clone();
    assert_eq!(sources.as_array().unwrap().len(), 1, "{sources}");
    // The recovery Job cannot do without it.
    let job = json_of("job-full-recovery.json");
    let e =
        lifecycle_patch(&c, &serde_json::to_vec(&job).unwrap(), &only_archive, IMAGE).unwrap_err();
    assert!(e.to_string().contains("origin-store"), "{e}");
    assert_eq!(e.grpc_status().code(), Code::NotFound);
}

fn raw_request(
    op: Option<Type>,
    cluster: Vec<u8>,
    object: Vec<u8>,
) -> Request<OperatorLifecycleRequest> {
    Request::new(OperatorLifecycleRequest {
        operation_type: op.map(|t| OperatorOperationType { r#type: t as i32 }),
        cluster_definition: cluster,
        object_definition: object,
    })
}

fn request(op: Type, cluster: &str, object: &[u8]) -> Request<OperatorLifecycleRequest> {
    raw_request(Some(op), data(cluster), object.to_vec())
}

async fn hook_patch(service: &LifecycleService, op: Type, cluster: &str, object: &[u8]) -> Vec<u8> {
    service
        .lifecycle_hook(request(op, cluster, object))
        .await
        .unwrap()
        .into_inner()
        .json_patch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_reads_stores_from_kubernetes() {
    let api = KubeApi::start();
    let keys: Vec<_> = store_manifests()
        .into_iter()
        .map(|m| api.insert(m))
        .collect();
    // The client's own namespace is not the Cluster's: stores are read in the Cluster's.
    let kube = KubeAccess::for_url(&api.url(), "cnpg-system", Duration::from_secs(10)).unwrap();
    let service = LifecycleService::new(Some(Arc::new(kube)), IMAGE.to_string());

    let caps = service
        .get_capabilities(Request::new(OperatorLifecycleCapabilitiesRequest {}))
        .await
        .unwrap()
        .into_inner();
    let caps: Vec<(String, String, Vec<i32>)> = caps
        .lifecycle_capabilities
        .into_iter()
        .map(|c| {
            (
                c.group,
                c.kind,
                c.operation_types.into_iter().map(|t| t.r#type).collect(),
            )
        })
        .collect();
    assert_eq!(
        caps,
        vec![
            (
                String::new(),
                "Pod".to_string(),
                vec![Type::Create as i32, Type::Evaluate as i32]
            ),
            (
                "batch".to_string(),
                "Job".to_string(),
                vec![Type::Create as i32]
            ),
        ]
    );

    let pod = json_of("pod-instance.json");
    let patch = hook_patch(
        &service,
        Type::Create,
        "cluster-archive.json",
        &data("pod-instance.json"),
    )
    .await;
    let mutated = apply(&pod, &patch);
    assert_same(&mutated, &json_of("pod-instance.expected.json"));
    assert!(api
        .requests()
        .iter()
        .any(|r| r.path == "/apis/barmancloud.cnpg.io/v1/namespaces/db/objectstores/minio-store"));

    let mutated_bytes = serde_json::to_vec(&mutated).unwrap();
    let again = hook_patch(
        &service,
        Type::Evaluate,
        "cluster-archive.json",
        &mutated_bytes,
    )
    .await;
    assert!(again.is_empty());

    // The store's sidecar settings change: the very next EVALUATE shows it (no cache).
    let mut changed = api.get(&keys[0]).unwrap();
    changed["spec"]["instanceSidecarConfiguration"]["logLevel"] = json!("info");
    api.insert(changed);
    let rolled = hook_patch(
        &service,
        Type::Evaluate,
        "cluster-archive.json",
        &mutated_bytes,
    )
    .await;
    let rolled = apply(&mutated, &rolled);
    assert_eq!(
        sidecar_of(&rolled["spec"])["args"],
        json!([
            "instance",
            "--pprof-server=127.0.0.1:6060",
            "--log-level=info"
        ])
    );

    // The recovery Job through the service.
    let job = json_of("job-full-recovery.json");
    let patch = hook_patch(
        &service,
        Type::Create,
        "cluster-recovery-archive.json",
        &data("job-full-recovery.json"),
    )
    .await;
    let job_mutated = apply(&job, &patch);
    assert_eq!(
        sidecar_of(&job_mutated["spec"]["template"]["spec"])["args"],
        json!(["restore"])
    );

    // A referenced store that does not exist: NotFound, naming it.
    let text = String::from_utf8(data("cluster-archive.json"))
        .unwrap()
        .replace("minio-store", "no-such-store");
    let status = service
        .lifecycle_hook(raw_request(
            Some(Type::Create),
            text.into_bytes(),
            data("pod-instance.json"),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("no-such-store"), "{status:?}");

    // No operation type: refused.
    let status = service
        .lifecycle_hook(raw_request(
            None,
            data("cluster-archive.json"),
            data("pod-instance.json"),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn service_without_kubernetes_answers_storeless_clusters_only() {
    let service = LifecycleService::new(None, IMAGE.to_string());
    let storeless = br#"{"metadata": {"name": "pg", "namespace": "db"}}"#;
    let reply = service
        .lifecycle_hook(raw_request(
            Some(Type::Create),
            storeless.to_vec(),
            data("pod-instance.json"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(reply.json_patch.is_empty());
    let status = service
        .lifecycle_hook(request(
            Type::Create,
            "cluster-archive.json",
            &data("pod-instance.json"),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
}
