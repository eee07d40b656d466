//! ReconcilerHooks against the stand-in Kubernetes API: the Role and RoleBinding are
//! created, then patched when a store changes, a 409 is retried, a missing store asks
//! for a requeue, a forbidden write is surfaced; the re-sync pass and the Lease.

use barrelman_cnpg::proto::reconciler::reconciler_hooks_result::Behavior;
use barrelman_cnpg::proto::reconciler::reconciler_hooks_server::ReconcilerHooks;
use barrelman_cnpg::proto::reconciler::ReconcilerHooksRequest;
use barrelman_operator::leader::Lease;
use barrelman_operator::reconciler::{resync_roles, ReconcilerService};
use barrelman_testkit::kubeapi::{KubeApi, ObjectKey};
use serde_json::{json, Value};

fn client(api: &KubeApi) -> kube::Client {
    kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap()
}

fn cluster(stores: &[&str]) -> Value {
    let mut c = json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": "pg", "namespace": "db", "uid": "uid-pg"},
        "spec": {"plugins": [{"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": true,
                               "parameters": {"barmanObjectName": stores[0]}}]}});
    if let Some(source) = stores.get(1) {
        c["spec"]["bootstrap"] = json!({"recovery": {"source": "origin"}});
        c["spec"]["externalClusters"] = json!([{"name": "origin", "plugin": {
            "name": "barman-cloud.cloudnative-pg.io",
            "parameters": {"barmanObjectName": source, "serverName": "origin"}}}]);
    }
    c
}

fn store(name: &str, secret: Option<&str>) -> Value {
    let creds = match secret {
        Some(s) => json!({"accessKeyId": {"name": s, "key": "ID"},
                          "secretAccessKey": {"name": s, "key": "SECRET"}}),
        None => json!({"inheritFromIAMRole": true}),
    };
    json!({"apiVersion": "barmancloud.cnpg.io/v1", "kind": "ObjectStore",
           "metadata": {"name": name, "namespace": "db"},
           "spec": {"configuration": {"destinationPath": "s3://b/p", "s3Credentials": creds}}})
}

async fn pre(service: &ReconcilerService, cluster: &Value) -> Result<i32, tonic::Status> {
    let bytes = serde_json::to_vec(cluster).unwrap();
    service
        .pre(tonic::Request::new(ReconcilerHooksRequest {
            cluster_definition: bytes.clone(),
            resource_definition: bytes,
        }))
        .await
        .map(|r| {
            let r = r.into_inner();
            // A timed retry only with REQUEUE.
            let requeue = r.behavior == Behavior::Requeue as i32;
            assert_eq!(r.requeue_after, if requeue { 10 } else { 0 });
            r.behavior
        })
}

fn key(plural: &str, name: &str) -> ObjectKey {
    ObjectKey {
        api_version: "rbac.authorization.k8s.io/v1".into(),
        namespace: "db".into(),
        plural: plural.into(),
        name: name.into(),
    }
}

#[tokio::test]
async fn role_is_created_then_patched_with_conflicts_retried() {
    let api = KubeApi::start();
    api.insert(store("archive", Some("aws")));
    api.insert(store("source", None));
    let service = ReconcilerService::new(Some(client(&api)));

    let c = cluster(&["archive", "source"]);
    assert_eq!(pre(&service, &c).await.unwrap(), Behavior::Continue as i32);
    let role = api
        .get(&key("roles", "pg-barman-cloud"))
        .expect("Role created");
    assert_eq!(
        role["rules"],
        json!([
            {"apiGroups": ["barmancloud.cnpg.io"], "resources": ["objectstores"],
             "verbs": ["get", "watch", "list"], "resourceNames": ["archive", "source"]},
            {"apiGroups": ["barmancloud.cnpg.io"], "resources": ["objectstores/status"],
             "verbs": ["update"], "resourceNames": ["archive", "source"]},
            {"apiGroups": [""], "resources": ["secrets"],
             "verbs": ["get", "watch", "list"], "resourceNames": ["aws"]},
        ])
    );
    assert_eq!(role["metadata"]["ownerReferences"][0]["uid"], "uid-pg");
    assert_eq!(
        role["metadata"]["labels"]["barmancloud.cnpg.io/cluster"],
        "pg"
    );
    let binding = api
        .get(&key("rolebindings", "pg-barman-cloud"))
        .expect("RoleBinding created");
    assert_eq!(binding["subjects"][0]["name"], "pg");
    assert_eq!(binding["roleRef"]["name"], "pg-barman-cloud");

    // Nothing changed: no write at all.
    api.clear_requests();
    assert_eq!(pre(&service, &c).await.unwrap(), Behavior::Continue as i32);
    assert!(
        api.requests().iter().all(|r| r.method == "GET"),
        "{:?}",
        api.requests()
    );

    // Someone adds a subject; the store now uses IAM only: the secrets rule goes away,
    // the extra subject stays, and a concurrent write (409) is read again and retried.
    let mut b = api.get(&key("rolebindings", "pg-barman-cloud")).unwrap();
    b["subjects"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kind": "ServiceAccount", "name": "auditor", "namespace": "db"}));
    b["subjects"][0]["name"] = json!("pg");
    api.insert(b);
    let mut b = api.get(&key("rolebindings", "pg-barman-cloud")).unwrap();
    b["subjects"].as_array_mut().unwrap().remove(0);
    api.insert(b);
    api.insert(store("archive", None));
    api.conflict_once(&key("roles", "pg-barman-cloud"));
    api.clear_requests();
    assert_eq!(pre(&service, &c).await.unwrap(), Behavior::Continue as i32);
    let statuses: Vec<u16> = api
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/roles/pg-barman-cloud"))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![409, 200]);
    let role = api.get(&key("roles", "pg-barman-cloud")).unwrap();
    assert_eq!(role["rules"].as_array().unwrap().len(), 2, "{role}");
    let binding = api.get(&key("rolebindings", "pg-barman-cloud")).unwrap();
    let names: Vec<&str> = binding["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["auditor", "pg"]);
}

#[tokio::test]
async fn concurrent_hooks_for_one_cluster_both_succeed() {
    let api = KubeApi::start();
    api.insert(store("archive", Some("aws")));
    let (a, b) = (
        ReconcilerService::new(Some(client(&api))),
        ReconcilerService::new(Some(client(&api))),
    );
    let c = cluster(&["archive"]);
    let (ra, rb) = tokio::join!(pre(&a, &c), pre(&b, &c));
    assert_eq!(ra.unwrap(), Behavior::Continue as i32);
    assert_eq!(rb.unwrap(), Behavior::Continue as i32);
    let binding = api.get(&key("rolebindings", "pg-barman-cloud")).unwrap();
    assert_eq!(binding["subjects"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_missing_store_asks_for_a_requeue_and_writes_nothing() {
    let api = KubeApi::start();
    let service = ReconcilerService::new(Some(client(&api)));
    assert_eq!(
        pre(&service, &cluster(&["nowhere"])).await.unwrap(),
        Behavior::Requeue as i32
    );
    assert!(api.get(&key("roles", "pg-barman-cloud")).is_none());
    // Not a Cluster: nothing to do.
    let backup = serde_json::to_vec(&json!({"kind": "Backup"})).unwrap();
    let r = service
        .pre(tonic::Request::new(ReconcilerHooksRequest {
            cluster_definition: serde_json::to_vec(&cluster(&["nowhere"])).unwrap(),
            resource_definition: backup,
        }))
        .await
        .unwrap();
    assert_eq!(r.into_inner().behavior, Behavior::Continue as i32);
}

#[tokio::test]
async fn a_forbidden_role_write_is_surfaced() {
    let api = KubeApi::start();
    api.insert(store("archive", Some("aws")));
    api.forbid("db", "roles");
    let service = ReconcilerService::new(Some(client(&api)));
    let e = pre(&service, &cluster(&["archive"])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        e.message(),
        "the plugin may not get the Role \"pg-barman-cloud\" in namespace \"db\": grant its \
         ServiceAccount get, create and patch on roles and rolebindings (the ClusterRole in \
         deploy/manifest.yaml)"
    );
}

#[tokio::test]
async fn resync_follows_a_store_that_changes_its_secret() {
    let api = KubeApi::start();
    api.insert(store("archive", Some("aws")));
    let client = client(&api);
    let service = ReconcilerService::new(Some(client.clone()));
    pre(&service, &cluster(&["archive"])).await.unwrap();
    assert_eq!(resync_roles(&client).await.unwrap(), 0);

    api.insert(store("archive", Some("aws-rotated")));
    assert_eq!(resync_roles(&client).await.unwrap(), 1);
    let role = api.get(&key("roles", "pg-barman-cloud")).unwrap();
    assert_eq!(role["rules"][2]["resourceNames"], json!(["aws-rotated"]));
    // Labels and owner are untouched by the pass.
    assert_eq!(role["metadata"]["ownerReferences"][0]["uid"], "uid-pg");

    // A Role without our label is never touched.
    api.insert(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "other", "namespace": "db"},
        "rules": [{"apiGroups": ["barmancloud.cnpg.io"], "resources": ["objectstores"],
                   "verbs": ["get"], "resourceNames": ["archive"]}]}),
    );
    api.insert(store("archive", None));
    assert_eq!(resync_roles(&client).await.unwrap(), 1);
    let other = api.get(&key("roles", "other")).unwrap();
    assert_eq!(other["rules"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn only_one_replica_holds_the_lease() {
    let api = KubeApi::start();
    let client = client(&api);
    let a = Lease::with_identity("cnpg-system".into(), "a".into());
    let b = Lease::with_identity("cnpg-system".into(), "b".into());
    assert!(a.try_acquire(&client).await.unwrap());
    assert!(!b.try_acquire(&client).await.unwrap());
    assert!(a.try_acquire(&client).await.unwrap(), "the holder renews");
    // An expired term is taken over.
    let key = ObjectKey {
        api_version: "coordination.k8s.io/v1".into(),
        namespace: "cnpg-system".into(),
        plural: "leases".into(),
        name: "822e3f5c.cnpg.io".into(),
    };
    let mut lease = api.get(&key).unwrap();
    lease["spec"]["renewTime"] = json!("2020-01-01T00:00:00.000000Z");
    api.insert(lease);
    assert!(b.try_acquire(&client).await.unwrap());
    assert!(!a.try_acquire(&client).await.unwrap());
}
