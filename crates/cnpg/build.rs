//! Compiles the CNPG-I `.proto` files with protox (pure Rust, no `protoc` on the
//! machine) and hands the descriptors to tonic-prost-build for the Rust code.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "identity.proto",
    "postgres.proto",
    "operator.proto",
    "operator_lifecycle.proto",
    "reconciler.proto",
    "wal.proto",
    "restore_job.proto",
    "backup.proto",
    "metrics.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", dir.display());
    for p in PROTOS {
        println!("cargo:rerun-if-changed={}", dir.join(p).display());
    }
    // All files in one set: restore_job.proto shares package cnpgi.wal.v1 with wal.proto
    // and postgres.proto shares cnpgi.identity.v1 with identity.proto (upstream quirks),
    // so each package becomes one Rust file holding both services.
    let fds = protox::compile(PROTOS, [&dir])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
