//! Set-up shared by the in-process service tests.

use barrelman_testkit::kubeapi::{self, KubeApi};
use barrelman_testkit::S3Server;
use serde_json::{json, Value};

/// The Secret `creds` (keys ID, KEY) with `s3`'s keys, and the ObjectStore `store` in
/// namespace `db` writing to `s3://BUCKET/x` through it, with `spec_extra` merged
/// into its spec.
pub fn seed_store(api: &KubeApi, s3: &S3Server, bucket: &str, spec_extra: Value) {
    api.insert(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "creds", "namespace": "db"},
        "data": {"ID": kubeapi::base64(s3.access_key.as_bytes()),
                 "KEY": kubeapi::base64(s3.secret_key.as_bytes())},
    }));
    let mut spec = json!({"configuration": {
        "destinationPath": format!("s3://{bucket}/x"), "endpointURL": s3.endpoint,
        "s3Credentials": {"accessKeyId": {"name": "creds", "key": "ID"},
                          "secretAccessKey": {"name": "creds", "key": "KEY"}},
    }});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        s.extend(extra.clone());
    }
    api.insert(json!({
        "apiVersion": "barmancloud.cnpg.io/v1", "kind": "ObjectStore",
        "metadata": {"name": "store", "namespace": "db"},
        "spec": spec,
    }));
}

/// Instance settings of pod `pg-1` of Cluster `pg` in `db`, the socket in `dir`, the
/// spool at `spool`, and `extra` variables.
pub fn instance_settings(
    dir: &std::path::Path,
    spool: &std::path::Path,
    extra: &[(&str, &str)],
) -> barrelman_cnpg::Settings {
    let spool = spool.to_string_lossy().into_owned();
    barrelman_cnpg::Settings::from_vars(
        barrelman_cnpg::Role::Instance,
        |n: &str| match n {
            "NAMESPACE" => Some("db".into()),
            "CLUSTER_NAME" => Some("pg".into()),
            "POD_NAME" => Some("pg-1".into()),
            "SPOOL_DIRECTORY" => Some(spool.clone()),
            _ => extra
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string()),
        },
        dir,
    )
    .unwrap()
}
