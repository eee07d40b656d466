//! The CNPG-I protocol (cnpg-i v0.6.0) as generated Rust: messages, clients and servers,
//! compiled by `build.rs` from the `.proto` files in `crates/cnpg/proto/`.
//!
//! One module per protobuf package. Two upstream quirks are kept because they are part of
//! the wire contract (method paths): `RestoreJobHooks` lives in [`wal`] (package
//! `cnpgi.wal.v1`) and `Postgres` lives in [`identity`] (package `cnpgi.identity.v1`).

// Generated code: its items are documented by the .proto comments where there are any.
#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

/// `cnpgi.identity.v1`: the Identity service and (upstream quirk) the Postgres service.
pub mod identity {
    tonic::include_proto!("cnpgi.identity.v1");
}

/// `cnpgi.operator.v1`: the Operator service (not served by barrelman).
pub mod operator {
    tonic::include_proto!("cnpgi.operator.v1");
}

/// `cnpgi.operator_lifecycle.v1`: the OperatorLifecycle service (operator-side plugin).
pub mod operator_lifecycle {
    tonic::include_proto!("cnpgi.operator_lifecycle.v1");
}

/// `cnpgi.reconciler.v1`: the ReconcilerHooks service (operator-side plugin).
pub mod reconciler {
    tonic::include_proto!("cnpgi.reconciler.v1");
}

/// `cnpgi.wal.v1`: the WAL service and (upstream quirk) the RestoreJobHooks service.
pub mod wal {
    tonic::include_proto!("cnpgi.wal.v1");
}

/// `cnpgi.backup.v1`: the Backup service.
pub mod backup {
    tonic::include_proto!("cnpgi.backup.v1");
}

/// `cnpgi.metrics.v1`: the Metrics service.
pub mod metrics {
    tonic::include_proto!("cnpgi.metrics.v1");
}

/// `grpc.health.v1`: the standard health service, from tonic-health.
pub mod health {
    pub use tonic_health::pb::*;
}
