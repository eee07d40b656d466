//! The ObjectStore CustomResourceDefinition (`objectstores.barmancloud.cnpg.io`),
//! generated from the core's types (`barrelman_core::objectstore` with its `schema`
//! feature) so the API server checks exactly what the plugin reads; and the two
//! CEL rules of that CRD again in Rust, for the operator's own validation of a
//! Cluster (the API server only runs CEL when a store is written).
//!
//! `barrelman cnpg crd` prints [`object_store_crd_yaml`]; `deploy/crd.yaml` is that
//! output, checked in and compared with it by a test.

use barrelman_core::objectstore::{
    ObjectStoreSpec, ObjectStoreStatus, LOG_LEVEL_ARG_FORBIDDEN, SERVER_NAME_FORBIDDEN,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

/// The API group of the ObjectStore resource.
pub const GROUP: &str = "barmancloud.cnpg.io";
/// The ObjectStore's only version (served and stored).
pub const VERSION: &str = "v1";
/// The resource's kind.
pub const KIND: &str = "ObjectStore";
/// The resource's plural name (the path segment in the API).
pub const PLURAL: &str = "objectstores";

/// The `openAPIV3Schema` of the ObjectStore: `apiVersion`, `kind`, `metadata`, the
/// `spec` and `status` generated from the core's types, `metadata` and `spec`
/// required.
pub fn object_store_schema() -> Value {
    json!({
        "description": "ObjectStore is where a CloudNativePG cluster's WAL files and base backups are kept (the barman-cloud layout), and how to reach it.",
        "type": "object",
        "required": ["metadata", "spec"],
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object.",
                "type": "string",
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents.",
                "type": "string",
            },
            "metadata": {"type": "object"},
            "spec": schema_of::<ObjectStoreSpec>(
                "ObjectStoreSpec: the archive's location and credentials, its retention policy, and the sidecar's settings.",
            ),
            "status": schema_of::<ObjectStoreStatus>(
                "ObjectStoreStatus: what the instance sidecars last observed in the archive. Read-only.",
            ),
        },
    })
}

/// The whole CustomResourceDefinition as JSON (the form `deploy/crd.yaml` holds).
pub fn object_store_crd_json() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{PLURAL}.{GROUP}")},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": format!("{KIND}List"),
                "plural": PLURAL,
                "singular": "objectstore",
            },
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION,
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": object_store_schema()},
                "subresources": {"status": {}},
            }],
        },
    })
}

/// The CustomResourceDefinition as the typed Kubernetes object.
pub fn object_store_crd() -> CustomResourceDefinition {
    // The JSON above is built from literals and derived schemas of known shape; a
    // failure here is a bug in this module, caught by its tests.
    serde_json::from_value(object_store_crd_json())
        .expect("the generated ObjectStore CRD is a valid CustomResourceDefinition")
}

/// The CustomResourceDefinition as the YAML document `barrelman cnpg crd` prints
/// and `deploy/crd.yaml` holds (keys sorted, so the output is stable).
pub fn object_store_crd_yaml() -> String {
    let yaml = serde_saphyr::to_string(&object_store_crd_json())
        .expect("JSON values always serialize to YAML");
    format!("---\n{yaml}")
}

/// The derived schema of `T`, cleaned into the structural-schema dialect the API
/// server accepts, with `description` set when the type's own is replaced.
fn schema_of<T: schemars::JsonSchema>(description: &str) -> Value {
    let generator = SchemaSettings::draft2020_12()
        .with(|s| {
            // A CRD schema cannot use `$ref`: every subschema is written in place.
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    structural(&mut schema);
    if let Value::Object(map) = &mut schema {
        map.remove("title");
        map.insert("description".into(), description.into());
    }
    schema
}

/// Rewrites a derived schema into what Kubernetes calls a structural schema:
/// `Option<T>` is T (an absent field, never `null`); the defaults the derive takes
/// from `#[serde(default)]` (`false`, `[]`, `{}`, `null`) go, because the API server
/// would write them into every stored object; only meaningful defaults (`info`,
/// `1800`) stay; `true` schemas (any value) become `{}`.
fn structural(value: &mut Value) {
    match value {
        Value::Object(map) => {
            clean_schema_object(map);
            for (key, child) in map.iter_mut() {
                match key.as_str() {
                    // Values, not schemas.
                    "default" | "enum" | "x-kubernetes-validations" | "required" | "example" => {}
                    "properties" => {
                        if let Value::Object(props) = child {
                            for prop in props.values_mut() {
                                structural(prop);
                            }
                        }
                    }
                    _ => structural(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(structural),
        _ => {}
    }
}

fn clean_schema_object(map: &mut Map<String, Value>) {
    if let Some(Value::Array(types)) = map.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            map.insert("type".into(), only);
        }
    }
    map.remove("nullable");
    map.remove("title");
    if let Some(Value::Array(choices)) = map.get_mut("enum") {
        choices.retain(|c| !c.is_null());
    }
    let zero = match map.get("default") {
        Some(Value::Null) | Some(Value::Bool(false)) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        _ => false,
    };
    if zero {
        map.remove("default");
    }
    // `additionalProperties: true` (a map of anything) has no structural form;
    // it only appears under the preserve-unknown-fields marker, never in our types.
    for key in ["items", "additionalProperties"] {
        if map.get(key) == Some(&Value::Bool(true)) {
            map.insert(key.into(), json!({}));
        }
    }
}

/// A value the CRD's CEL rules forbid, found by [`cel_rule_violations`]: where it
/// is, what it holds, and what to do instead (the CEL rule's own message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleViolation {
    /// The field's path in the ObjectStore (`spec.configuration.serverName`).
    pub path: String,
    /// The offending value.
    pub value: String,
    /// The fix, in the CRD's words.
    pub message: &'static str,
}

/// The CRD's two CEL rules, checked in Rust: `spec.configuration.serverName` must
/// be absent, and no `spec.instanceSidecarConfiguration.additionalContainerArgs`
/// entry may start with `--log-level`. The API server enforces them when a store
/// is written; this lets the operator refuse a Cluster whose store was created
/// before the CRD had them (or on a server without CEL), with the same words.
pub fn cel_rule_violations(spec: &ObjectStoreSpec) -> Vec<RuleViolation> {
    let mut found = Vec::new();
    if let Some(name) = &spec.configuration.server_name {
        found.push(RuleViolation {
            path: "spec.configuration.serverName".into(),
            value: name.clone(),
            message: SERVER_NAME_FORBIDDEN,
        });
    }
    if let Some(sidecar) = &spec.instance_sidecar_configuration {
        for (i, arg) in sidecar.additional_container_args.iter().enumerate() {
            if arg.starts_with("--log-level") {
                found.push(RuleViolation {
                    path: format!("spec.instanceSidecarConfiguration.additionalContainerArgs[{i}]"),
                    value: arg.clone(),
                    message: LOG_LEVEL_ARG_FORBIDDEN,
                });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use barrelman_core::objectstore::ObjectStore;

    fn spec(extra_conf: &str, extra_spec: &str) -> ObjectStoreSpec {
        let yaml = format!(
            "apiVersion: barmancloud.cnpg.io/v1\nkind: ObjectStore\nspec:\n  configuration:\n    destinationPath: s3://b/p\n{extra_conf}{extra_spec}"
        );
        ObjectStore::from_yaml(&yaml).unwrap().spec
    }

    #[test]
    fn a_plain_store_breaks_no_rule() {
        assert!(cel_rule_violations(&spec("", "")).is_empty());
        let args = "  instanceSidecarConfiguration:\n    logLevel: debug\n    additionalContainerArgs: [\"--log-destination=/x\", \"--pprof-server=:6060\"]\n";
        assert!(cel_rule_violations(&spec("", args)).is_empty());
    }

    #[test]
    fn server_name_is_reported_with_its_value() {
        let v = cel_rule_violations(&spec("    serverName: pg-old\n", ""));
        assert_eq!(
            v,
            vec![RuleViolation {
                path: "spec.configuration.serverName".into(),
                value: "pg-old".into(),
                message: SERVER_NAME_FORBIDDEN,
            }]
        );
    }

    #[test]
    fn every_log_level_argument_is_reported_by_index() {
        let args = "  instanceSidecarConfiguration:\n    additionalContainerArgs: [\"--x\", \"--log-level=debug\", \"--log-level\", \"trace\"]\n";
        let v = cel_rule_violations(&spec("    serverName: s\n", args));
        let paths: Vec<_> = v
            .iter()
            .map(|r| (r.path.as_str(), r.value.as_str()))
            .collect();
        assert_eq!(
            paths,
            [
                ("spec.configuration.serverName", "s"),
                (
                    "spec.instanceSidecarConfiguration.additionalContainerArgs[1]",
                    "--log-level=debug"
                ),
                (
                    "spec.instanceSidecarConfiguration.additionalContainerArgs[2]",
                    "--log-level"
                ),
            ]
        );
        assert_eq!(v[1].message, LOG_LEVEL_ARG_FORBIDDEN);
    }
}
