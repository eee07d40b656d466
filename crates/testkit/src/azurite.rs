//! An Azurite (Azure Blob Storage emulator) server run as a child process.

use crate::ports::free_port;
use crate::process::{describe, file_tail, EmulatorProcess};
use crate::tools::tools_bin;
use std::fs;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Azurite's account (its published development account).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's published development key (a well-known value, not a secret).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Python run by the venv's interpreter to create a container with
/// azure-storage-blob. argv: connection string (from the environment), container.
const CREATE_CONTAINER_PY: &str = r#"
import os, sys
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient
svc = BlobServiceClient.from_connection_string(os.environ["AZURE_STORAGE_CONNECTION_STRING"])
try:
    svc.create_container(sys.argv[1])
except ResourceExistsError:
    pass
"#;

/// Azurite's blob service on `127.0.0.1` (blob service only, telemetry off,
/// silent, API version check skipped), its data in a temporary directory.
/// Dropping it kills the server and removes the data.
pub struct AzuriteServer {
    /// `http://127.0.0.1:PORT/devstoreaccount1`: the account's blob endpoint.
    pub blob_endpoint: String,
    /// The port of the blob service.
    pub port: u16,
    process: EmulatorProcess,
    _dir: tempfile::TempDir,
}

impl AzuriteServer {
    /// Starts `azurite-blob` on a [`free_port`] of `127.0.0.1` and waits (up to
    /// ~30 s) until the port accepts connections.
    ///
    /// # Panics
    /// If the tools are missing or the server does not come up (the message holds
    /// the tail of its log).
    pub fn start() -> AzuriteServer {
        let dir = tempfile::Builder::new()
            .prefix("barrelman-azurite-")
            .tempdir()
            .expect("create Azurite tempdir");
        let data = dir.path().join("data");
        fs::create_dir(&data).expect("create Azurite data dir");
        let bin = azurite_bin();
        let port = free_port();
        let blob_endpoint = format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}");
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "-l",
        ])
        .arg(&data)
        .args(["--disableTelemetry", "--skipApiVersionCheck", "-s"]);
        let mut process = EmulatorProcess::spawn(
            format!("Azurite ({blob_endpoint})"),
            cmd,
            dir.path().join("azurite.log"),
        );
        process.wait_until(|| TcpStream::connect(("127.0.0.1", port)).is_ok());
        AzuriteServer {
            blob_endpoint,
            port,
            process,
            _dir: dir,
        }
    }

    /// The connection string of the development account on this server, as the
    /// Azure SDKs (and barman-cloud) read it from `AZURE_STORAGE_CONNECTION_STRING`.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};\
             BlobEndpoint={};",
            self.blob_endpoint
        )
    }

    /// The destination URL barman takes for `container/path` on this server
    /// (the emulator form, which needs the connection string).
    pub fn url(&self, container_and_path: &str) -> String {
        format!(
            "{}/{}",
            self.blob_endpoint,
            container_and_path.trim_start_matches('/')
        )
    }

    /// Environment for clients of this server: `AZURE_STORAGE_CONNECTION_STRING`.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![(
            "AZURE_STORAGE_CONNECTION_STRING".to_string(),
            self.connection_string(),
        )]
    }

    /// Creates container `name` (an existing one is fine) with the venv's python
    /// and azure-storage-blob.
    ///
    /// # Panics
    /// If the server refuses (e.g. an invalid name).
    pub fn create_container(&self, name: &str) {
        let out = Command::new(tools_bin().join("python"))
            .arg("-c")
            .arg(CREATE_CONTAINER_PY)
            .arg(name)
            .env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME")
            .envs(self.env())
            .stdin(Stdio::null())
            .output()
            .expect("run the venv's python");
        if !out.status.success() {
            panic!(
                "create_container({name}) failed: {}\n--- azurite log tail ---\n{}",
                describe(&out),
                file_tail(&self.process.log_path, 4000)
            );
        }
    }

    /// A SAS token (without the leading `?`) for `container`, valid for an hour, with
    /// read, add, create, write, delete and list permissions, signed with the
    /// development key.
    ///
    /// # Panics
    /// If the venv's azure-storage-blob cannot make one.
    pub fn container_sas(&self, container: &str) -> String {
        const SAS_PY: &str = r#"
import datetime, sys
from azure.storage.blob import generate_container_sas, ContainerSasPermissions
print(generate_container_sas(sys.argv[1], sys.argv[2], account_key=sys.argv[3],
      permission=ContainerSasPermissions(read=True, add=True, create=True, write=True,
                                         delete=True, list=True),
      expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)))
"#;
        let out = Command::new(tools_bin().join("python"))
            .args(["-c", SAS_PY, AZURITE_ACCOUNT, container, AZURITE_KEY])
            .env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME")
            .stdin(Stdio::null())
            .output()
            .expect("run the venv's python");
        assert!(out.status.success(), "container_sas: {}", describe(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// `azurite-blob` of the tools venv (`<venv>/azurite/node_modules/.bin/`).
fn azurite_bin() -> PathBuf {
    let venv = tools_bin()
        .parent()
        .map(PathBuf::from)
        .expect("the tools bin has a parent");
    let bin = venv.join("azurite/node_modules/.bin/azurite-blob");
    assert!(
        bin.is_file(),
        "test tools missing: {} not found; run scripts/setup-test-env.sh first",
        bin.display()
    );
    bin
}
