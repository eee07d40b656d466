//! The operator side of the CloudNativePG plugin (`barman-cloud.cloudnative-pg.io`):
//! what CloudNativePG's operator calls over TCP with mutual TLS to inject the sidecar
//! into instance Pods and recovery Jobs, to create the Role the sidecar needs, and to
//! check a Cluster before it is admitted; plus the ObjectStore CRD generated from the
//! core's types. The sidecar itself (instance and restore roles) is `barrelman-cnpg`.

#![warn(missing_docs, unreachable_pub)]

pub mod crd;
pub mod health;
pub mod identity;
pub mod leader;
pub mod lifecycle;
pub mod rbac;
pub mod reconciler;
pub mod server;
pub mod tls;
pub mod validation;
