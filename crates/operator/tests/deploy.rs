//! deploy/manifest.yaml: every document is a valid Kubernetes object of the kind it
//! claims, wired together the way CloudNativePG discovers and dials the plugin.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeSet;

fn manifest() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/manifest.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_multiple::<Value>(&text).expect("deploy/manifest.yaml parses")
}

fn one<T: DeserializeOwned>(docs: &[Value], kind: &str) -> T {
    let found: Vec<_> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in the manifest");
    serde_json::from_value(found[0].clone()).unwrap_or_else(|e| panic!("{kind}: {e}"))
}

#[test]
fn manifest_objects_parse_and_are_wired() {
    let docs = manifest();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "Deployment",
            "Issuer",
            "Certificate",
            "Certificate",
        ]
    );
    let crd: CustomResourceDefinition = one(&docs, "CustomResourceDefinition");
    assert_eq!(crd, barrelman_operator::crd::object_store_crd());

    let sa: ServiceAccount = one(&docs, "ServiceAccount");
    let sa_name = sa.metadata.name.unwrap();
    let ns = sa.metadata.namespace.unwrap();
    assert_eq!(ns, "cnpg-system");

    let cr: ClusterRole = one(&docs, "ClusterRole");
    let rules = cr.rules.unwrap();
    let grants = |group: &str, resource: &str| -> BTreeSet<String> {
        rules
            .iter()
            .filter(|r| {
                r.api_groups
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|g| g == group)
            })
            .filter(|r| {
                r.resources
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|x| x == resource)
            })
            .flat_map(|r| r.verbs.clone())
            .collect()
    };
    // What the ReconcilerHooks need: create and patch the per-cluster Role/RoleBinding,
    // read the stores; and nothing beyond upstream's rules.
    for verb in ["create", "get", "patch", "update"] {
        assert!(
            grants("rbac.authorization.k8s.io", "roles").contains(verb),
            "roles {verb}"
        );
        assert!(
            grants("rbac.authorization.k8s.io", "rolebindings").contains(verb),
            "rolebindings {verb}"
        );
    }
    assert!(grants("barmancloud.cnpg.io", "objectstores").contains("get"));
    assert!(grants("barmancloud.cnpg.io", "objectstores/status").contains("update"));
    assert!(grants("", "secrets").contains("get"));
    assert!(grants("postgresql.cnpg.io", "backups").contains("list"));
    assert!(!rules.iter().any(|r| r.verbs.iter().any(|v| v == "*")));

    let crb: ClusterRoleBinding = one(&docs, "ClusterRoleBinding");
    assert_eq!(crb.role_ref.name, cr.metadata.name.unwrap());
    let subj = &crb.subjects.unwrap()[0];
    assert_eq!(
        (subj.name.as_str(), subj.namespace.as_deref()),
        (sa_name.as_str(), Some(ns.as_str()))
    );

    let role: Role = one(&docs, "Role");
    assert!(role
        .rules
        .unwrap()
        .iter()
        .any(|r| r.resources.as_deref().unwrap_or_default() == ["leases"]));
    let rb: RoleBinding = one(&docs, "RoleBinding");
    assert_eq!(rb.role_ref.name, role.metadata.name.unwrap());

    let secret: Secret = one(&docs, "Secret");
    let image = secret.string_data.unwrap()["SIDECAR_IMAGE"].clone();

    let svc: Service = one(&docs, "Service");
    assert_eq!(svc.metadata.name.as_deref(), Some("barman-cloud"));
    assert_eq!(
        svc.metadata.labels.as_ref().unwrap()["cnpg.io/pluginName"],
        "barman-cloud.cloudnative-pg.io"
    );
    let ann = svc.metadata.annotations.clone().unwrap();
    let port = &svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
    assert_eq!(ann["cnpg.io/pluginPort"], port.port.to_string());

    // The Secrets the Service names are the ones cert-manager writes, and the server
    // certificate carries the Service's name (CloudNativePG checks it).
    let certs: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Certificate").collect();
    let secret_of = |usage: &str| -> &Value {
        certs
            .iter()
            .find(|c| {
                c["spec"]["usages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|u| u == usage)
            })
            .unwrap_or_else(|| panic!("a Certificate for {usage}"))
    };
    let server = secret_of("server auth");
    let client = secret_of("client auth");
    assert_eq!(
        ann["cnpg.io/pluginServerSecret"],
        server["spec"]["secretName"]
    );
    assert_eq!(
        ann["cnpg.io/pluginClientSecret"],
        client["spec"]["secretName"]
    );
    assert!(server["spec"]["dnsNames"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "barman-cloud"));
    let issuer = docs.iter().find(|d| d["kind"] == "Issuer").unwrap();
    assert!(issuer["spec"]["selfSigned"].is_object());
    for c in &certs {
        assert_eq!(c["spec"]["issuerRef"]["name"], issuer["metadata"]["name"]);
    }

    let dep: Deployment = one(&docs, "Deployment");
    let spec = dep.spec.unwrap();
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some(sa_name.as_str()));
    let selector = spec.selector.match_labels.unwrap();
    let svc_selector = svc.spec.as_ref().unwrap().selector.clone().unwrap();
    assert_eq!(selector, svc_selector);
    assert_eq!(
        spec.template.metadata.unwrap().labels.unwrap(),
        svc_selector
    );
    let c = &pod.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some(image.as_str()),
        "one image for both roles"
    );
    let args = c.args.clone().unwrap();
    assert_eq!(args[0], "operator");
    for flag in [
        "--server-cert=/server/tls.crt",
        "--server-key=/server/tls.key",
        "--client-cert=/client/tls.crt",
        "--server-address=:9090",
        "--leader-elect",
    ] {
        assert!(args.iter().any(|a| a == flag), "{flag}");
    }
    let env = &c.env.as_ref().unwrap()[0];
    assert_eq!(env.name, "SIDECAR_IMAGE");
    let from = env
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(from.name, secret.metadata.name.unwrap());
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let probe_port = args
        .iter()
        .find_map(|a| a.strip_prefix("--health-probe-bind-address=:"))
        .unwrap();
    for (probe, path) in [
        (&c.liveness_probe, "/healthz"),
        (&c.readiness_probe, "/readyz"),
    ] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            serde_json::to_value(&get.port).unwrap().to_string(),
            probe_port
        );
    }
    // The TLS files the args name come from the Secrets cert-manager fills.
    let vols = pod.volumes.unwrap();
    for (mount, secret) in [
        ("/server", &server["spec"]["secretName"]),
        ("/client", &client["spec"]["secretName"]),
    ] {
        let m = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.mount_path == mount)
            .unwrap();
        let v = vols.iter().find(|v| v.name == m.name).unwrap();
        assert_eq!(
            v.secret.as_ref().unwrap().secret_name.as_deref(),
            secret.as_str()
        );
    }
}
