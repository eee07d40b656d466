//! The operator-side listener over real TLS: certificates made here with rcgen, a tonic
//! client over tokio-rustls. The right client certificate is served; no certificate, one
//! from another CA and TLS 1.2 are refused; rotated files are used on the next handshake.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use barrelman_cnpg::proto::identity::identity_client::IdentityClient;
use barrelman_cnpg::proto::identity::{plugin_capability, GetPluginCapabilitiesRequest};
use barrelman_operator::server::{Listen, OperatorPlugin, OperatorSettings};
use barrelman_operator::tls::TlsFiles;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::transport::Endpoint;

/// A PEM certificate and its key.
struct Pem {
    cert: String,
    key: String,
}

fn leaf_params(name: &str, usage: ExtendedKeyUsagePurpose) -> CertificateParams {
    let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, name.to_string());
    p.extended_key_usages = vec![usage];
    p
}

/// A self-signed leaf, as cert-manager's selfSigned issuer makes them.
fn self_signed(name: &str, usage: ExtendedKeyUsagePurpose) -> Pem {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(name, usage).self_signed(&key).unwrap();
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// A CA and a function issuing leaves from it.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, name.to_string());
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = p.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(p, key),
    }
}

fn issue(ca: &Ca, name: &str, usage: ExtendedKeyUsagePurpose) -> Pem {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(name, usage)
        .signed_by(&key, &ca.issuer)
        .unwrap();
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// Writes `content` to `path` through a new file and a rename, as the kubelet swaps a
/// Secret volume's files (new inode).
fn write_atomic(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Running {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    dir: tempfile::TempDir,
}

impl Running {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }
}

async fn start(server: &Pem, client_trust: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles {
        server_cert: dir.path().join("server.crt"),
        server_key: dir.path().join("server.key"),
        client_cert: dir.path().join("client.crt"),
    };
    write_atomic(&files.server_cert, &server.cert);
    write_atomic(&files.server_key, &server.key);
    write_atomic(&files.client_cert, client_trust);
    let port = barrelman_testkit::free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let settings = OperatorSettings {
        listen: Listen::Tcp { addr, tls: files },
        health: None,
        sidecar_image: "example.com/barrelman:test".into(),
        resync_every: None,
        leader_elect: false,
        namespace: "cnpg-system".into(),
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        OperatorPlugin::new(settings)
            .run(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Running {
        addr,
        stop: Some(tx),
        task,
        dir,
    }
}

/// How a test client connects.
struct ClientSetup<'a> {
    trust: &'a str,
    identity: Option<&'a Pem>,
    tls12: bool,
}

fn client_config(setup: &ClientSetup<'_>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(setup.trust.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let versions: &[&rustls::SupportedProtocolVersion] = if setup.tls12 {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match setup.identity {
        Some(id) => {
            let certs = CertificateDer::pem_slice_iter(id.cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(id.key.as_bytes()).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

/// Calls Identity.GetPluginCapabilities; Ok(service types) or the error text.
async fn capabilities(
    addr: std::net::SocketAddr,
    setup: ClientSetup<'_>,
) -> Result<Vec<i32>, String> {
    let config = Arc::new(client_config(&setup));
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let config = config.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(ServerName::try_from("barman-cloud").unwrap(), tcp)
                .await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    let channel = Endpoint::from_static("http://barman-cloud:9090")
        .timeout(Duration::from_secs(5))
        .connect_with_connector(connector)
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let answer = IdentityClient::new(channel)
        .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
        .await
        .map_err(|e| format!("call: {e:?}"))?;
    Ok(answer
        .into_inner()
        .capabilities
        .iter()
        .filter_map(|c| match c.r#type.as_ref()? {
            plugin_capability::Type::Service(s) => Some(s.r#type),
        })
        .collect())
}

/// [`capabilities`] presenting `identity` (if any), trusting `trust`, over TLS 1.3 or 1.2.
async fn call(
    addr: std::net::SocketAddr,
    trust: &str,
    identity: Option<&Pem>,
    tls12: bool,
) -> Result<Vec<i32>, String> {
    capabilities(
        addr,
        ClientSetup {
            trust,
            identity,
            tls12,
        },
    )
    .await
}

const ALL_FOUR: [i32; 4] = [5, 4, 8, 1];

#[tokio::test]
async fn the_right_client_certificate_is_served_and_others_are_refused() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = self_signed("barman-cloud", ExtendedKeyUsagePurpose::ServerAuth);
    let client = self_signed("barman-cloud-client", ExtendedKeyUsagePurpose::ClientAuth);
    let run = start(&server, &client.cert).await;

    let ok = call(run.addr, &server.cert, Some(&client), false)
        .await
        .unwrap();
    // RECONCILER_HOOKS, LIFECYCLE_SERVICE, INSTANCE_SIDECAR_INJECTION, OPERATOR_SERVICE.
    assert_eq!(ok, ALL_FOUR);

    let none = call(run.addr, &server.cert, None, false).await;
    assert!(none.is_err(), "a client without a certificate was served");

    let other_ca = ca("someone else");
    let stranger = issue(
        &other_ca,
        "barman-cloud-client",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let wrong = call(run.addr, &server.cert, Some(&stranger), false).await;
    assert!(wrong.is_err(), "a certificate from another CA was served");

    // Another self-signed certificate with the same name is not the trusted one either.
    let twin = self_signed("barman-cloud-client", ExtendedKeyUsagePurpose::ClientAuth);
    assert!(call(run.addr, &server.cert, Some(&twin), false)
        .await
        .is_err());

    let old = call(run.addr, &server.cert, Some(&client), true).await;
    let e = old.unwrap_err();
    assert!(e.contains("connect"), "{e}");
    run.stop().await;
}

#[tokio::test]
async fn a_ca_bundle_verifies_the_certificates_it_issued() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let authority = ca("client-ca");
    let server = self_signed("barman-cloud", ExtendedKeyUsagePurpose::ServerAuth);
    let client = issue(
        &authority,
        "barman-cloud-client",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let run = start(&server, &authority.pem).await;
    let ok = call(run.addr, &server.cert, Some(&client), false)
        .await
        .unwrap();
    assert_eq!(ok, ALL_FOUR);
    let addr = run.addr;
    run.stop().await;
    // Stopped means the port is closed at once, not at the next connection attempt.
    std::net::TcpListener::bind(addr).expect("the gRPC port is released on stop");
}

#[tokio::test]
async fn rotated_certificates_are_used_on_the_next_handshake() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server1 = self_signed("barman-cloud", ExtendedKeyUsagePurpose::ServerAuth);
    let client1 = self_signed("barman-cloud-client", ExtendedKeyUsagePurpose::ClientAuth);
    let run = start(&server1, &client1.cert).await;
    let addr = run.addr;
    assert_eq!(
        call(addr, &server1.cert, Some(&client1), false)
            .await
            .unwrap(),
        ALL_FOUR
    );

    // cert-manager renews the server certificate: clients trusting only the new one get
    // through, those trusting only the old one no longer do.
    let server2 = self_signed("barman-cloud", ExtendedKeyUsagePurpose::ServerAuth);
    write_atomic(&run.path("server.key"), &server2.key);
    write_atomic(&run.path("server.crt"), &server2.cert);
    assert_eq!(
        call(addr, &server2.cert, Some(&client1), false)
            .await
            .unwrap(),
        ALL_FOUR
    );
    assert!(call(addr, &server1.cert, Some(&client1), false)
        .await
        .is_err());

    // And the client certificate: the new one is accepted, the old one refused.
    let client2 = self_signed("barman-cloud-client", ExtendedKeyUsagePurpose::ClientAuth);
    write_atomic(&run.path("client.crt"), &client2.cert);
    assert_eq!(
        call(addr, &server2.cert, Some(&client2), false)
            .await
            .unwrap(),
        ALL_FOUR
    );
    assert!(call(addr, &server2.cert, Some(&client1), false)
        .await
        .is_err());

    // A half-written rotation (garbage) keeps the last good certificate.
    write_atomic(&run.path("client.crt"), "not a certificate");
    assert_eq!(
        call(addr, &server2.cert, Some(&client2), false)
            .await
            .unwrap(),
        ALL_FOUR
    );
    run.stop().await;
}
