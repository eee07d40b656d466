//! The Role and RoleBinding `<cluster>-barman-cloud` that let a Cluster's Pods (service
//! account `<cluster>`) read the ObjectStores they use, update their status, and read
//! the Secrets those stores name (reference 2.10): built here as pure values, applied by
//! [`crate::reconciler`].
//!
//! Names, labels, rule order and the owner reference are upstream's, because the
//! ObjectStore re-sync finds Roles by the `barmancloud.cnpg.io/cluster` label and reads
//! the store names back from the first rule. One difference: a Cluster whose stores name
//! no Secret at all (IAM role, Azure AD or default credentials, GKE workload identity)
//! gets no `secrets` rule, where upstream writes one with empty `resourceNames`, which
//! Kubernetes reads as "every Secret in the namespace" (upstream issue #892).
//!
//! The Secrets named are those the sidecar reads through the API: the credential keys
//! and `endpointCA` (barrelman reads the CA bundle from its Secret rather than from a
//! projected file), as [`ObjectStore::secret_env`] lists them.

use std::collections::BTreeSet;

use barrelman_core::objectstore::ObjectStore;
use serde_json::{json, Value};

/// The ObjectStores' API group.
pub const GROUP: &str = "barmancloud.cnpg.io";
/// The label naming the Cluster a Role belongs to (the re-sync's selector).
pub const CLUSTER_LABEL: &str = "barmancloud.cnpg.io/cluster";

/// Identity of the Cluster the objects belong to, from the request's JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterIdentity {
    /// `apiVersion` as sent (forks of CloudNativePG use other groups).
    pub api_version: String,
    /// `kind` as sent.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.uid`.
    pub uid: String,
}

impl ClusterIdentity {
    /// Reads the identity from a Cluster's JSON; `None` when a field is missing.
    pub fn from_json(cluster: &Value) -> Option<ClusterIdentity> {
        let s = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
        Some(ClusterIdentity {
            api_version: s(&cluster["apiVersion"])?,
            kind: s(&cluster["kind"])?,
            name: s(&cluster["metadata"]["name"])?,
            namespace: s(&cluster["metadata"]["namespace"])?,
            uid: s(&cluster["metadata"]["uid"]).unwrap_or_default(),
        })
    }

    /// `<cluster>-barman-cloud`: the Role's and the RoleBinding's name.
    pub fn rbac_name(&self) -> String {
        format!("{}-barman-cloud", self.name)
    }
}

/// The labels both objects carry.
pub fn labels(cluster: &ClusterIdentity) -> Value {
    json!({
        CLUSTER_LABEL: cluster.name,
        "app.kubernetes.io/name": "barman-cloud-plugin",
        "app.kubernetes.io/instance": cluster.name,
        "app.kubernetes.io/version": env!("CARGO_PKG_VERSION"),
        "app.kubernetes.io/component": "database",
        "app.kubernetes.io/managed-by": "plugin-barman-cloud",
    })
}

fn owner_references(cluster: &ClusterIdentity) -> Value {
    json!([{
        "apiVersion": cluster.api_version,
        "kind": cluster.kind,
        "name": cluster.name,
        "uid": cluster.uid,
        "controller": true,
        "blockOwnerDeletion": true,
    }])
}

/// The names of the Secrets `stores` refer to, sorted, without repeats.
pub fn secret_names<'a>(stores: impl IntoIterator<Item = &'a ObjectStore>) -> Vec<String> {
    let names: BTreeSet<String> = stores
        .into_iter()
        .flat_map(|s| s.secret_env().into_iter().map(|(_, sel)| sel.name.clone()))
        .filter(|n| !n.is_empty())
        .collect();
    names.into_iter().collect()
}

/// The Role's rules for stores named `store_names` whose Secrets are `secrets`.
pub fn rules(store_names: &[String], secrets: &[String]) -> Value {
    let mut stores: Vec<&String> = store_names.iter().collect();
    stores.sort();
    stores.dedup();
    let mut rules = vec![
        json!({"apiGroups": [GROUP], "resources": ["objectstores"],
               "verbs": ["get", "watch", "list"], "resourceNames": stores}),
        json!({"apiGroups": [GROUP], "resources": ["objectstores/status"],
               "verbs": ["update"], "resourceNames": stores}),
    ];
    // Never an empty resourceNames: that would grant every Secret in the namespace.
    if !secrets.is_empty() {
        rules.push(json!({"apiGroups": [""], "resources": ["secrets"],
                          "verbs": ["get", "watch", "list"], "resourceNames": secrets}));
    }
    Value::Array(rules)
}

/// The Role for `cluster` using `stores` (name, spec): the whole object as created.
pub fn role(cluster: &ClusterIdentity, stores: &[(String, ObjectStore)]) -> Value {
    let names: Vec<String> = stores.iter().map(|(n, _)| n.clone()).collect();
    let secrets = secret_names(stores.iter().map(|(_, s)| s));
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {
            "name": cluster.rbac_name(),
            "namespace": cluster.namespace,
            "labels": labels(cluster),
            "ownerReferences": owner_references(cluster),
        },
        "rules": rules(&names, &secrets),
    })
}

/// The subject of the RoleBinding: the Cluster's service account.
pub fn subject(cluster: &ClusterIdentity) -> Value {
    json!({"kind": "ServiceAccount", "apiGroup": "", "name": cluster.name,
           "namespace": cluster.namespace})
}

/// The RoleBinding for `cluster`: the whole object as created.
pub fn role_binding(cluster: &ClusterIdentity) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {
            "name": cluster.rbac_name(),
            "namespace": cluster.namespace,
            "labels": labels(cluster),
            "ownerReferences": owner_references(cluster),
        },
        "subjects": [subject(cluster)],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": cluster.rbac_name()},
    })
}

/// The ObjectStore names a Role's first rule grants, as the re-sync reads them back.
pub fn role_store_names(role: &Value) -> Vec<String> {
    role["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["resources"] == json!(["objectstores"]))
        .and_then(|r| r["resourceNames"].as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> ClusterIdentity {
        ClusterIdentity::from_json(&json!({
            "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": "pg", "namespace": "db", "uid": "u-1"}}))
        .unwrap()
    }

    fn store(configuration: Value) -> ObjectStore {
        serde_json::from_value(json!({
            "apiVersion": "barmancloud.cnpg.io/v1", "kind": "ObjectStore",
            "metadata": {"name": "x"},
            "spec": {"configuration": configuration}}))
        .unwrap()
    }

    fn sel(name: &str, key: &str) -> Value {
        json!({"name": name, "key": key})
    }

    fn secrets_rule(role: &Value) -> Option<Value> {
        role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resources"] == json!(["secrets"]))
            .cloned()
    }

    #[test]
    fn s3_keys_give_the_exact_role_of_upstream() {
        let s3 = store(json!({"destinationPath": "s3://b/p", "s3Credentials": {
            "accessKeyId": sel("aws", "ID"), "secretAccessKey": sel("aws", "SECRET"),
            "region": sel("region", "R")}}));
        let other = store(json!({"destinationPath": "s3://b/q", "s3Credentials": {
            "inheritFromIAMRole": true}}));
        let role = role(&cluster(), &[("zeta".into(), s3), ("alpha".into(), other)]);
        assert_eq!(
            role["rules"],
            json!([
                {"apiGroups": ["barmancloud.cnpg.io"], "resources": ["objectstores"],
                 "verbs": ["get", "watch", "list"], "resourceNames": ["alpha", "zeta"]},
                {"apiGroups": ["barmancloud.cnpg.io"], "resources": ["objectstores/status"],
                 "verbs": ["update"], "resourceNames": ["alpha", "zeta"]},
                {"apiGroups": [""], "resources": ["secrets"],
                 "verbs": ["get", "watch", "list"], "resourceNames": ["aws", "region"]},
            ])
        );
        assert_eq!(role["metadata"]["name"], "pg-barman-cloud");
        assert_eq!(role["metadata"]["labels"][CLUSTER_LABEL], "pg");
        assert_eq!(
            role["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "plugin-barman-cloud"
        );
        assert_eq!(
            role["metadata"]["ownerReferences"],
            json!([{"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "name": "pg",
                    "uid": "u-1", "controller": true, "blockOwnerDeletion": true}])
        );
        assert_eq!(role_store_names(&role), vec!["alpha", "zeta"]);
    }

    #[test]
    fn iam_only_stores_get_no_secrets_rule_at_all() {
        let iam = store(json!({"destinationPath": "s3://b/p",
                               "s3Credentials": {"inheritFromIAMRole": true}}));
        let role = role(&cluster(), &[("s".into(), iam)]);
        assert_eq!(role["rules"].as_array().unwrap().len(), 2);
        assert_eq!(secrets_rule(&role), None);
    }

    #[test]
    fn azure_connection_string_sas_and_key() {
        let conn = store(
            json!({"destinationPath": "https://a.blob.core.windows.net/c",
            "azureCredentials": {"connectionString": sel("azconn", "CS")}}),
        );
        let sas = store(
            json!({"destinationPath": "https://a.blob.core.windows.net/c",
            "azureCredentials": {"storageAccount": sel("azacct", "A"),
                                 "storageSasToken": sel("azsas", "T")}}),
        );
        let key = store(
            json!({"destinationPath": "https://a.blob.core.windows.net/c",
            "azureCredentials": {"storageAccount": sel("azacct", "A"),
                                 "storageKey": sel("azkey", "K")}}),
        );
        let ad = store(
            json!({"destinationPath": "https://a.blob.core.windows.net/c",
            "azureCredentials": {"inheritFromAzureAD": true}}),
        );
        let role = role(
            &cluster(),
            &[
                ("c".into(), conn),
                ("s".into(), sas),
                ("k".into(), key),
                ("ad".into(), ad),
            ],
        );
        assert_eq!(
            secrets_rule(&role).unwrap()["resourceNames"],
            json!(["azacct", "azconn", "azkey", "azsas"])
        );
    }

    #[test]
    fn gcs_key_and_gke_identity() {
        let key = store(json!({"destinationPath": "gs://b/p",
            "googleCredentials": {"applicationCredentials": sel("gcs", "json")}}));
        let gke = store(json!({"destinationPath": "gs://b/p",
            "googleCredentials": {"gkeEnvironment": true}}));
        let r = role(&cluster(), &[("k".into(), key)]);
        assert_eq!(secrets_rule(&r).unwrap()["resourceNames"], json!(["gcs"]));
        let r = role(&cluster(), &[("g".into(), gke)]);
        assert_eq!(secrets_rule(&r), None);
    }

    #[test]
    fn endpoint_ca_secret_is_readable() {
        let s = store(
            json!({"destinationPath": "s3://b/p", "endpointCA": sel("ca", "ca.crt"),
                             "s3Credentials": {"inheritFromIAMRole": true}}),
        );
        let r = role(&cluster(), &[("s".into(), s)]);
        assert_eq!(secrets_rule(&r).unwrap()["resourceNames"], json!(["ca"]));
    }

    #[test]
    fn binding_names_the_cluster_service_account() {
        let b = role_binding(&cluster());
        assert_eq!(
            b["subjects"],
            json!([{"kind": "ServiceAccount", "apiGroup": "", "name": "pg", "namespace": "db"}])
        );
        assert_eq!(
            b["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                   "name": "pg-barman-cloud"})
        );
    }
}
