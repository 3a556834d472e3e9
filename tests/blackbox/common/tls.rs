//! amqps test support: the test certificates (made once per test run by
//! `scripts/make-test-certs.sh`, openssl, offline), a broker started with TLS on a free port,
//! lapin over TLS with or without a client certificate, and the first bytes of a TLS client.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::{Connection, ConnectionProperties};

use super::process::{BrokerProcess, DataDir};
use super::unique;

/// The client certificate's subject CN (`scripts/make-test-certs.sh`).
pub const CLIENT_CN: &str = "spatemq-client";

/// The directory holding the test certificates; made on first use. Fails the test (never
/// skips it) when the script fails.
pub fn certs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(unique("spatemq-test-certs"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-test-certs.sh");
        let output =
            std::process::Command::new("bash").arg(&script).arg(&dir).output().expect("run scripts/make-test-certs.sh");
        assert!(
            output.status.success(),
            "scripts/make-test-certs.sh failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        dir
    })
}

pub fn cert_path(name: &str) -> String {
    certs().join(name).to_string_lossy().into_owned()
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(certs().join(name)).unwrap_or_else(|error| panic!("read test certificate {name}: {error}"))
}

/// A broker with an amqps listener (one shard), its data directory and its TLS port.
pub struct TlsBroker {
    pub process: BrokerProcess,
    pub amqps_port: u16,
    _data: DataDir,
}

impl TlsBroker {
    /// The broker's data directory (for `spatemq ctl`).
    pub fn data_dir(&self) -> &std::path::Path {
        self._data.path()
    }

    /// Starts a broker with the test server certificate and `extra_args` (for instance
    /// `--tls-verify-peer`). The amqps port must be named (0 disables amqps), so a free one is
    /// picked, and picked again if another process took it meanwhile.
    pub fn start(extra_args: &[&str]) -> TlsBroker {
        let data = DataDir::new();
        let (cert, key, ca) = (cert_path("server.pem"), cert_path("server.key"), cert_path("ca.pem"));
        let mut last_failure = String::new();
        for _ in 0..5 {
            let port = free_port().to_string();
            let mut args = vec!["--tls-cert", &cert, "--tls-key", &key, "--tls-ca-cert", &ca, "--amqps-port", &port];
            args.extend_from_slice(&["--log-level", "debug"]);
            args.extend_from_slice(extra_args);
            match BrokerProcess::try_start(data.path(), 1, &args) {
                Ok(process) => {
                    let amqps_port = process.amqps_port();
                    return TlsBroker { process, amqps_port, _data: data };
                }
                Err(exited) if exited.stderr.contains("cannot listen") => last_failure = exited.stderr,
                Err(exited) => panic!("the TLS broker did not start ({}); stderr:\n{}", exited.status, exited.stderr),
            }
        }
        panic!("no free amqps port after 5 tries; last stderr:\n{last_failure}");
    }

    /// amqps URI for guest, by IP address (the server certificate names 127.0.0.1 too).
    pub fn amqps_uri(&self) -> String {
        format!("amqps://guest:guest@127.0.0.1:{}/%2f", self.amqps_port)
    }

    pub fn amqps_addr(&self) -> String {
        format!("127.0.0.1:{}", self.amqps_port)
    }

    /// `host:port` of the plain AMQP listener.
    pub fn plain_addr(&self) -> String {
        super::addr_of(self.process.uri())
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a probe listener");
    listener.local_addr().expect("probe address").port()
}

/// Which certificate a TLS client presents.
#[derive(Clone, Copy)]
pub enum ClientCert {
    None,
    /// Signed by the CA the broker trusts, CN `CLIENT_CN`.
    Trusted,
    /// Signed by another CA.
    Stranger,
}

/// lapin over TLS, trusting the test CA; the result is returned, not unwrapped, so refusals
/// can be asserted.
pub async fn connect_tls(uri: &str, client_cert: ClientCert) -> lapin::Result<Connection> {
    let identity = match client_cert {
        ClientCert::None => None,
        ClientCert::Trusted => Some(OwnedIdentity::PKCS8 { pem: read("client.pem"), key: read("client.key") }),
        ClientCert::Stranger => Some(OwnedIdentity::PKCS8 { pem: read("stranger.pem"), key: read("stranger.key") }),
    };
    let ca = String::from_utf8(read("ca.pem")).expect("PEM is text");
    let config = OwnedTLSConfig { identity, cert_chain: Some(ca) };
    let runtime = lapin::runtime::default_runtime()?;
    let connect = Connection::connect_with_config(uri, ConnectionProperties::default(), config, runtime);
    match tokio::time::timeout(std::time::Duration::from_secs(super::T), connect).await {
        Ok(result) => result,
        Err(_) => panic!("TLS connect to {uri} took more than {} s", super::T),
    }
}

/// The bytes a rustls client sends first: a complete TLS ClientHello record.
pub fn client_hello() -> Vec<u8> {
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a DNS name");
    let mut client = rustls::ClientConnection::new(Arc::new(config), name).expect("client session");
    let mut hello = Vec::new();
    client.write_tls(&mut hello).expect("ClientHello");
    assert_eq!(hello.first(), Some(&0x16), "a TLS handshake record");
    hello
}
