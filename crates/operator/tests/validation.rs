//! Cluster validation: one test per refusal and warning, the message text asserted;
//! then the service end to end against the stand-in Kubernetes API.

use std::collections::BTreeSet;

use barrelman_cnpg::config::Cluster;
use barrelman_cnpg::proto::operator::operator_server::Operator;
use barrelman_cnpg::proto::operator::{
    OperatorValidateClusterChangeRequest, OperatorValidateClusterCreateRequest,
};
use barrelman_core::objectstore::ObjectStore;
use barrelman_operator::validation::{
    retention_policy_is_valid, validate, validate_change, Fetched, Finding, SecretState, Severity,
    StoreState, ValidationService,
};
use barrelman_testkit::kubeapi::{base64, KubeApi};
use serde_json::{json, Value};

const PLUGIN: &str = "barman-cloud.cloudnative-pg.io";

fn cluster_json(archiver: bool) -> Value {
    json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
           "metadata": {"name": "pg", "namespace": "db"},
           "spec": {"plugins": [{"name": PLUGIN, "isWALArchiver": archiver,
                                 "parameters": {"barmanObjectName": "store"}}]}})
}

fn cluster(v: &Value) -> Cluster {
    Cluster::from_json(v.to_string().as_bytes()).unwrap()
}

fn store_json(configuration: Value, retention: Option<&str>) -> Value {
    let mut v = json!({"apiVersion": "barmancloud.cnpg.io/v1", "kind": "ObjectStore",
                       "metadata": {"name": "store", "namespace": "db"},
                       "spec": {"configuration": configuration}});
    if let Some(r) = retention {
        v["spec"]["retentionPolicy"] = json!(r);
    }
    v
}

fn s3(secret: &str) -> Value {
    json!({"destinationPath": "s3://b/p", "s3Credentials": {
        "accessKeyId": {"name": secret, "key": "ID"},
        "secretAccessKey": {"name": secret, "key": "SECRET"}}})
}

fn fetched(store: Value) -> Fetched {
    let mut f = Fetched::default();
    let s: ObjectStore = serde_json::from_value(store).unwrap();
    f.stores
        .insert("store".into(), StoreState::Found(Box::new(s)));
    f.secrets.insert(
        "aws".into(),
        SecretState::Keys(["ID", "SECRET"].iter().map(|s| s.to_string()).collect()),
    );
    f
}

fn only(findings: Vec<Finding>) -> Finding {
    assert_eq!(findings.len(), 1, "{findings:#?}");
    findings.into_iter().next().unwrap()
}

#[test]
fn a_sound_cluster_has_no_findings() {
    let f = fetched(store_json(s3("aws"), Some("30d")));
    assert_eq!(validate(&cluster(&cluster_json(true)), &f), vec![]);
}

#[test]
fn backups_without_a_wal_archiver_warn() {
    let f = fetched(store_json(s3("aws"), None));
    let finding = only(validate(&cluster(&cluster_json(false)), &f));
    assert_eq!(finding.severity, Severity::Warn);
    assert_eq!(finding.path, ["spec", "plugins", "0", "isWALArchiver"]);
    assert_eq!(
        finding.message,
        "the Cluster takes backups with barman-cloud.cloudnative-pg.io but no plugin archives \
         its WAL, so those backups cannot be restored; set isWALArchiver: true on this entry"
    );
}

#[test]
fn a_missing_store_warns() {
    let mut f = Fetched::default();
    f.stores.insert("store".into(), StoreState::Missing);
    let finding = only(validate(&cluster(&cluster_json(true)), &f));
    assert_eq!(finding.severity, Severity::Warn);
    assert_eq!(
        finding.path,
        ["spec", "plugins", "0", "parameters", "barmanObjectName"]
    );
    assert_eq!(finding.value, "store");
    assert_eq!(
        finding.message,
        "the ObjectStore \"store\" does not exist in namespace \"db\"; create it (the plugin \
         waits for it before reconciling the Cluster)"
    );
}

#[test]
fn recovering_from_and_archiving_to_the_same_place_is_refused() {
    let mut c = cluster_json(true);
    c["spec"]["bootstrap"] = json!({"recovery": {"source": "origin"}});
    c["spec"]["externalClusters"] = json!([{"name": "origin", "plugin": {
        "name": PLUGIN, "parameters": {"barmanObjectName": "store"}}}]);
    let f = fetched(store_json(s3("aws"), None));
    let finding = only(validate(&cluster(&c), &f));
    assert_eq!(finding.severity, Severity::Refuse);
    assert_eq!(
        finding.message,
        "the Cluster recovers from and archives to the same place (ObjectStore \"store\", server \
         name \"pg\"): archiving would write into the backup being restored; set a different \
         serverName parameter in spec.plugins (or archive to another ObjectStore)"
    );
    // Another server name in the same store is fine.
    c["spec"]["externalClusters"][0]["plugin"]["parameters"]["serverName"] = json!("origin");
    assert_eq!(validate(&cluster(&c), &f), vec![]);
}

#[test]
fn a_bad_retention_policy_is_refused() {
    let f = fetched(store_json(s3("aws"), Some("30x")));
    let finding = only(validate(&cluster(&cluster_json(true)), &f));
    assert_eq!(finding.severity, Severity::Refuse);
    assert_eq!(
        finding.message,
        "the ObjectStore \"store\" has spec.retentionPolicy \"30x\", which is not a recovery \
         window; write a number followed by d, w or m (e.g. 30d)"
    );
    for ok in ["1d", "30d", "4w", "12m", "100d"] {
        assert!(retention_policy_is_valid(ok), "{ok}");
    }
    for bad in [
        "0d",
        "d",
        "30",
        "30D",
        "01w",
        " 3d",
        "3dd",
        "-1d",
        "REDUNDANCY 3",
    ] {
        assert!(!retention_policy_is_valid(bad), "{bad}");
    }
}

#[test]
fn a_missing_secret_key_warns_and_lists_the_keys_there() {
    let mut f = fetched(store_json(s3("aws"), None));
    f.secrets.insert(
        "aws".into(),
        SecretState::Keys(BTreeSet::from(["ID".to_string(), "SECRET_KEY".to_string()])),
    );
    let finding = only(validate(&cluster(&cluster_json(true)), &f));
    assert_eq!(finding.severity, Severity::Warn);
    assert_eq!(
        finding.message,
        "the ObjectStore \"store\" refers to the key \"SECRET\" of the Secret \"aws\", which has \
         only the keys [ID, SECRET_KEY]; fix the key name in the ObjectStore or add it to the Secret"
    );
}

#[test]
fn a_missing_secret_warns() {
    let mut f = fetched(store_json(s3("aws"), None));
    f.secrets.insert("aws".into(), SecretState::Missing);
    let findings = validate(&cluster(&cluster_json(true)), &f);
    // One per reference to it (ID and SECRET).
    assert_eq!(findings.len(), 2);
    assert_eq!(findings[0].severity, Severity::Warn);
    assert_eq!(
        findings[0].message,
        "the ObjectStore \"store\" refers to the Secret \"aws\", which does not exist; create it \
         with the key \"ID\""
    );
}

#[test]
fn two_credential_blocks_are_refused() {
    let mut conf = s3("aws");
    conf["googleCredentials"] = json!({"gkeEnvironment": true});
    let f = fetched(store_json(conf, None));
    let finding = only(validate(&cluster(&cluster_json(true)), &f));
    assert_eq!(finding.severity, Severity::Refuse);
    assert_eq!(
        finding.message,
        "the ObjectStore \"store\" sets s3Credentials and googleCredentials at once; keep only \
         the one of the provider its destinationPath is on"
    );
}

#[test]
fn a_refusal_the_old_cluster_had_does_not_block_a_change() {
    let f = fetched(store_json(s3("aws"), Some("30x")));
    let old = cluster(&cluster_json(true));
    let mut new_json = cluster_json(true);
    new_json["metadata"]["annotations"] = json!({"x": "y"});
    let finding = only(validate_change(&old, &cluster(&new_json), &f));
    assert_eq!(finding.severity, Severity::Warn);
}

fn client(api: &KubeApi) -> kube::Client {
    kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap()
}

#[tokio::test]
async fn the_service_reads_stores_and_secrets_and_refuses_only_what_never_works() {
    let api = KubeApi::start();
    api.insert(store_json(s3("aws"), Some("7y")));
    api.insert(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "aws", "namespace": "db"},
        "data": {"ID": base64(b"id"), "SECRET": base64(b"s3cr3t")}}));
    let service = ValidationService::new(Some(client(&api)));
    let definition = serde_json::to_vec(&cluster_json(true)).unwrap();
    let errors = service
        .validate_cluster_create(tonic::Request::new(OperatorValidateClusterCreateRequest {
            definition: definition.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .validation_errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].path_components,
        ["spec", "plugins", "0", "parameters", "barmanObjectName"]
    );
    assert_eq!(errors[0].value, "store");
    assert!(
        errors[0].message.contains("\"7y\""),
        "{}",
        errors[0].message
    );

    // Fixed store: admitted; a missing store is only a warning.
    api.insert(store_json(s3("aws"), Some("7d")));
    let mut other = cluster_json(true);
    other["spec"]["plugins"][0]["parameters"]["barmanObjectName"] = json!("later");
    for c in [cluster_json(true), other] {
        let errors = service
            .validate_cluster_change(tonic::Request::new(OperatorValidateClusterChangeRequest {
                old_cluster: definition.clone(),
                new_cluster: serde_json::to_vec(&c).unwrap(),
            }))
            .await
            .unwrap()
            .into_inner()
            .validation_errors;
        assert_eq!(errors, vec![]);
    }
    // Secret values are never what validation reads into a message.
    assert!(!format!("{errors:?}").contains("s3cr3t"));
}
