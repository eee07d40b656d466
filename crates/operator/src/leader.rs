//! `--leader-elect`: a `coordination.k8s.io/v1` Lease (upstream's ID `822e3f5c.cnpg.io`)
//! that decides which replica runs the Role re-sync. gRPC calls need no leader; every
//! replica answers them. Acquisition and renewal are writes carrying the
//! `resourceVersion` read, so two replicas can never both win the same term.

use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::json;

/// Upstream's Lease name.
pub const LEASE_NAME: &str = "822e3f5c.cnpg.io";
/// How long a term lasts without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);

/// This replica's view of the Lease.
#[derive(Clone, Debug)]
pub struct Lease {
    namespace: String,
    identity: String,
    duration: Duration,
}

fn resource() -> ApiResource {
    ApiResource {
        group: "coordination.k8s.io".into(),
        version: "v1".into(),
        api_version: "coordination.k8s.io/v1".into(),
        kind: "Lease".into(),
        plural: "leases".into(),
    }
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

impl Lease {
    /// The Lease in `namespace`, held as this Pod (`HOSTNAME`, else a random-enough id).
    pub fn new(namespace: String) -> Self {
        let identity = std::env::var("HOSTNAME")
            .unwrap_or_else(|_| format!("barrelman-{}", std::process::id()));
        Lease {
            namespace,
            identity,
            duration: LEASE_DURATION,
        }
    }

    /// The Lease in `namespace`, held as `identity`.
    pub fn with_identity(namespace: String, identity: String) -> Self {
        Lease {
            namespace,
            identity,
            duration: LEASE_DURATION,
        }
    }

    /// The same Lease with terms of `duration` (at least [`LEASE_DURATION`]): longer
    /// than the renewal period, or the holder would lose it between two renewals.
    pub fn with_duration(mut self, duration: Duration) -> Self {
        self.duration = duration.max(LEASE_DURATION);
        self
    }

    /// Takes or renews the Lease; true when this replica holds it afterwards.
    pub async fn try_acquire(&self, client: &kube::Client) -> Result<bool, kube::Error> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &self.namespace, &resource());
        let stamp = now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let spec = json!({
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration.as_secs(),
            "renewTime": stamp,
        });
        let Some(mut lease) = api.get_opt(LEASE_NAME).await? else {
            let mut obj: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": LEASE_NAME, "namespace": self.namespace},
                "spec": {"acquireTime": stamp},
            }))
            .map_err(kube::Error::SerdeError)?;
            if let Some(o) = obj.data["spec"].as_object_mut() {
                o.extend(spec.as_object().cloned().unwrap_or_default());
            }
            return match api.create(&PostParams::default(), &obj).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let held_by = lease.data["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or_default();
        let renewed = lease.data["spec"]["renewTime"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        let duration = lease.data["spec"]["leaseDurationSeconds"]
            .as_i64()
            .unwrap_or(self.duration.as_secs() as i64);
        let expired = renewed.is_none_or(|t| now() > t + chrono::Duration::seconds(duration));
        if held_by != self.identity && !held_by.is_empty() && !expired {
            return Ok(false);
        }
        if held_by != self.identity {
            lease.data["spec"]["acquireTime"] = json!(stamp);
        }
        for (k, v) in spec.as_object().into_iter().flatten() {
            lease.data["spec"][k] = v.clone();
        }
        // The resourceVersion read makes a concurrent taker's write fail with 409.
        match api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}
