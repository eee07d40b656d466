//! Kubernetes access against the stand-in API server (barrelman-testkit's kubeapi):
//! typed ObjectStore and Secret by GET only, the TTL cache, 403 on a Secret as a typed
//! error mapped to FailedPrecondition, and the stand-in's answers to updates (stale
//! resourceVersion, one injected 409, merge patch on /status, delete, event create).

use std::time::Duration;

use barrelman_cnpg::k8s::{KubeAccess, KubeError, SECRET_FORBIDDEN_MESSAGE};
use barrelman_testkit::kubeapi::{KubeApi, ObjectKey};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;

const NS: &str = "db";

fn seed(api: &KubeApi) -> ObjectKey {
    api.insert(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "minio-creds", "namespace": NS},
        // base64 of "AKIA-test" and "s3cr3t-value"
        "data": {"ACCESS_KEY_ID": "QUtJQS10ZXN0", "ACCESS_SECRET_KEY": "czNjcjN0LXZhbHVl"},
    }));
    api.insert(json!({
        "apiVersion": "barmancloud.cnpg.io/v1", "kind": "ObjectStore",
        "metadata": {"name": "minio", "namespace": NS, "labels": {"x": "y"}},
        "spec": {
            "configuration": {
                "destinationPath": "s3://backups/",
                "endpointURL": "http://127.0.0.1:9000",
                "s3Credentials": {
                    "accessKeyId": {"name": "minio-creds", "key": "ACCESS_KEY_ID"},
                    "secretAccessKey": {"name": "minio-creds", "key": "ACCESS_SECRET_KEY"},
                },
                "wal": {"compression": "gzip", "maxParallel": 4},
            },
            "retentionPolicy": "30d",
            "instanceSidecarConfiguration": {"retentionPolicyIntervalSeconds": 1800},
        },
        "status": {"serverRecoveryWindow": {"pg": {"lastSuccessfulBackupTime": "2026-01-01T00:00:00Z"}}},
    }))
}

fn only_item_gets(api: &KubeApi) {
    for r in api.requests() {
        assert_eq!(r.method, "GET", "{r:?}");
        assert!(!r.query.contains("watch"), "{r:?}");
        let last = r.path.rsplit('/').next().unwrap();
        assert!(
            last != "secrets" && last != "objectstores",
            "a list request: {r:?}"
        );
    }
}

#[tokio::test]
async fn object_store_and_secret_by_get_with_cache() {
    let api = KubeApi::start();
    seed(&api);
    let access = KubeAccess::for_url(&api.url(), NS, Duration::from_millis(300)).unwrap();

    let os = access.object_store("minio").await.unwrap();
    assert_eq!(
        os.store.spec.configuration.destination_path,
        "s3://backups/"
    );
    assert_eq!(os.store.spec.retention_policy.as_deref(), Some("30d"));
    assert_eq!(
        os.status["serverRecoveryWindow"]["pg"]["lastSuccessfulBackupTime"],
        "2026-01-01T00:00:00Z"
    );
    assert!(os.resource_version.is_some());
    let secret = access.secret("minio-creds").await.unwrap();
    assert_eq!(secret.get("ACCESS_KEY_ID"), Some(&b"AKIA-test"[..]));
    assert_eq!(secret.get("ACCESS_SECRET_KEY"), Some(&b"s3cr3t-value"[..]));
    let shown = format!("{secret:?} {access:?}");
    assert!(
        !shown.contains("s3cr3t") && shown.contains("ACCESS_SECRET_KEY"),
        "{shown}"
    );

    // Within the TTL: no new request.
    access.object_store("minio").await.unwrap();
    access.secret("minio-creds").await.unwrap();
    let paths: Vec<String> = api.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/apis/barmancloud.cnpg.io/v1/namespaces/db/objectstores/minio",
            "/api/v1/namespaces/db/secrets/minio-creds",
        ]
    );
    // After it: read again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    access.object_store("minio").await.unwrap();
    assert_eq!(api.requests().len(), 3);
    only_item_gets(&api);
}

#[tokio::test]
async fn forbidden_secret_is_failed_precondition_and_not_cached() {
    let api = KubeApi::start();
    seed(&api);
    api.forbid_secret(NS, "minio-creds");
    let access = KubeAccess::for_url(&api.url(), NS, Duration::from_secs(10)).unwrap();
    let err = access.secret("minio-creds").await.unwrap_err();
    assert!(
        matches!(&err, KubeError::SecretForbidden { name, .. } if name == "minio-creds"),
        "{err:?}"
    );
    let status = err.grpc_status();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(status.message(), SECRET_FORBIDDEN_MESSAGE);
    assert!(!err.to_string().contains("s3cr3t"));
    assert_eq!(api.requests().last().unwrap().status, 403);

    // Once RBAC is in place the next call asks again and succeeds.
    api.allow_secret(NS, "minio-creds");
    assert_eq!(
        access
            .secret("minio-creds")
            .await
            .unwrap()
            .get("ACCESS_KEY_ID"),
        Some(&b"AKIA-test"[..])
    );
    assert_eq!(api.requests().len(), 2);
    only_item_gets(&api);
}

#[tokio::test]
async fn missing_objects_are_named() {
    let api = KubeApi::start();
    let access = KubeAccess::for_url(&api.url(), NS, Duration::from_secs(10)).unwrap();
    let err = access.object_store("nope").await.unwrap_err();
    assert!(
        matches!(
            err,
            KubeError::NotFound {
                kind: "ObjectStore",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("\"nope\"") && err.to_string().contains("\"db\""),
        "{err}"
    );
    assert_eq!(err.grpc_status().code(), tonic::Code::Unknown);
    let err = access.secret("gone").await.unwrap_err();
    assert!(
        matches!(err, KubeError::NotFound { kind: "Secret", .. }),
        "{err:?}"
    );
    // An ObjectStore without its required spec is reported, not half-used.
    api.insert(
        json!({"apiVersion": "barmancloud.cnpg.io/v1", "kind": "ObjectStore",
        "metadata": {"name": "broken", "namespace": NS}, "spec": {}}),
    );
    let err = access.object_store("broken").await.unwrap_err();
    assert!(matches!(err, KubeError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("configuration"), "{err}");
}

fn resource(group: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: "v1".into(),
        api_version: if group.is_empty() {
            "v1".into()
        } else {
            format!("{group}/v1")
        },
        kind: kind.into(),
        plural: plural.into(),
    }
}

#[tokio::test]
async fn stand_in_answers_updates_like_an_api_server() {
    let api = KubeApi::start();
    let key = seed(&api);
    api.insert(
        json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Backup",
        "metadata": {"name": "b1", "namespace": NS}, "spec": {"cluster": {"name": "pg"}}}),
    );
    let client = kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap();
    let stores: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        NS,
        &resource("barmancloud.cnpg.io", "ObjectStore", "objectstores"),
    );

    // Merge patch on /status changes the status only.
    let patch = json!({"status": {"serverRecoveryWindow": {"pg": {"lastFailedBackupTime": "2026-02-01T00:00:00Z"}}},
                       "spec": {"retentionPolicy": "1d"}});
    stores
        .patch_status("minio", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let now = api.get(&key).unwrap();
    assert_eq!(
        now["status"]["serverRecoveryWindow"]["pg"]["lastFailedBackupTime"],
        "2026-02-01T00:00:00Z"
    );
    assert_eq!(
        now["status"]["serverRecoveryWindow"]["pg"]["lastSuccessfulBackupTime"],
        "2026-01-01T00:00:00Z"
    );
    assert_eq!(now["spec"]["retentionPolicy"], "30d");

    // A PUT with a stale resourceVersion is a conflict; with the current one it lands.
    let mut obj = stores.get("minio").await.unwrap();
    let mut stale = obj.clone();
    stale.metadata.resource_version = Some("1".into());
    let err = stores
        .replace_status("minio", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409),
        "{err:?}"
    );
    obj.data["status"]["serverRecoveryWindow"]["pg"]["lastFailedBackupTime"] =
        json!("2026-03-01T00:00:00Z");
    stores
        .replace_status("minio", &PostParams::default(), &obj)
        .await
        .unwrap();
    assert_eq!(
        api.get(&key).unwrap()["status"]["serverRecoveryWindow"]["pg"]["lastFailedBackupTime"],
        "2026-03-01T00:00:00Z"
    );

    // One injected 409, then the retry succeeds.
    api.conflict_once(&key);
    let p = json!({"status": {"x": 1}});
    let err = stores
        .patch_status("minio", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"),
        "{err:?}"
    );
    stores
        .patch_status("minio", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    assert_eq!(api.get(&key).unwrap()["status"]["x"], 1);

    // Delete a Backup; create an Event.
    let backups: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        NS,
        &resource("postgresql.cnpg.io", "Backup", "backups"),
    );
    backups.delete("b1", &Default::default()).await.unwrap();
    assert!(api.list(NS, "backups").is_empty());
    let err = backups.get("b1").await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 404),
        "{err:?}"
    );
    let events: Api<DynamicObject> =
        Api::namespaced_with(client, NS, &resource("", "Event", "events"));
    let ev: DynamicObject = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": "pg.", "namespace": NS},
        "reason": "RetentionPolicyFailed", "type": "Warning", "message": "m",
        "involvedObject": {"kind": "Cluster", "name": "pg"}}))
    .unwrap();
    events.create(&PostParams::default(), &ev).await.unwrap();
    let listed = api.list(NS, "events");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["reason"], "RetentionPolicyFailed");

    let methods: Vec<String> = api
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.status))
        .collect();
    assert_eq!(
        methods,
        [
            "PATCH 200",
            "GET 200",
            "PUT 409",
            "PUT 200",
            "PATCH 409",
            "PATCH 200",
            "DELETE 200",
            "GET 404",
            "POST 201"
        ]
    );
    let patch_req = &api.requests()[0];
    assert_eq!(
        patch_req.path,
        "/apis/barmancloud.cnpg.io/v1/namespaces/db/objectstores/minio/status"
    );
    assert_eq!(patch_req.content_type, "application/merge-patch+json");
}
