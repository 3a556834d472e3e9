//! amqps on the broker side: the one rustls `ServerConfig` every shard shares, built from the
//! flags (certificate chain, key, client-certificate verification as RabbitMQ's `verify_peer`
//! and `fail_if_no_peer_cert`), and the TLS handshake of a socket accepted on the amqps
//! listener, which yields the record layer (`crate::tls`) and the client certificate's CN.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

use crate::config::Config;
use crate::tls::{common_name, TlsReader, TlsWriter};

/// A TLS setting the broker cannot start with; names the flag and the file.
#[derive(Debug)]
pub struct TlsSetupError {
    pub flag: &'static str,
    pub path: String,
    pub reason: String,
}

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.flag, self.path, self.reason)
    }
}

impl std::error::Error for TlsSetupError {}

fn setup_error<'a>(flag: &'static str, path: &'a Path) -> impl Fn(String) -> TlsSetupError + 'a {
    move |reason| TlsSetupError { flag, path: path.display().to_string(), reason }
}

/// The TLS acceptor configuration from the flags; None when amqps is off.
pub fn server_config(config: &Config) -> Result<Option<Arc<ServerConfig>>, TlsSetupError> {
    let (Some(cert_path), Some(key_path)) = (&config.tls_cert, &config.tls_key) else { return Ok(None) };
    if config.amqps_listener_port().is_none() {
        return Ok(None);
    }
    let chain = crate::tls::read_certificates(cert_path).map_err(setup_error("--tls-cert", cert_path))?;
    let key = crate::tls::read_private_key(key_path).map_err(setup_error("--tls-key", key_path))?;
    let provider = crate::tls::provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(crate::tls::PROTOCOL_VERSIONS)
        .map_err(|error| setup_error("--tls-cert", cert_path)(error.to_string()))?;
    let builder = match (&config.tls_ca_cert, config.tls_verify_peer) {
        (Some(ca_path), true) => {
            let ca_error = setup_error("--tls-ca-cert", ca_path);
            let mut roots = RootCertStore::empty();
            for certificate in crate::tls::read_certificates(ca_path).map_err(&ca_error)? {
                roots.add(certificate).map_err(|error| ca_error(error.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if config.tls_fail_if_no_peer_cert { verifier } else { verifier.allow_unauthenticated() };
            builder.with_client_cert_verifier(verifier.build().map_err(|error| ca_error(error.to_string()))?)
        }
        (Some(ca_path), false) => {
            // Unused without --tls-verify-peer, but a broken file is refused now rather than
            // on the day verification is turned on.
            crate::tls::read_certificates(ca_path).map_err(setup_error("--tls-ca-cert", ca_path))?;
            builder.with_no_client_auth()
        }
        (None, _) => builder.with_no_client_auth(),
    };
    let server_config =
        builder.with_single_cert(chain, key).map_err(|error| setup_error("--tls-key", key_path)(error.to_string()))?;
    Ok(Some(Arc::new(server_config)))
}

/// What a finished TLS handshake hands to the AMQP side.
pub struct Accepted {
    pub reader: TlsReader,
    pub writer: TlsWriter,
    /// Application data that arrived with the end of the handshake (often the AMQP header).
    pub plaintext: BytesMut,
    /// The verified client certificate's subject CN, when the client sent a certificate.
    pub peer_common_name: Option<String>,
    /// For the log: protocol version and cipher suite.
    pub description: String,
}

/// The server side of the TLS handshake on an accepted socket; Err with rustls' reason.
pub async fn accept<S>(stream: &mut S, config: Arc<ServerConfig>) -> Result<Accepted, String>
where
    S: AsyncReadRent + AsyncWriteRent,
{
    let session = ServerConnection::new(config).map_err(|error| error.to_string())?;
    let established = crate::tls::handshake(stream, session.into()).await?;
    let peer_common_name = established
        .peer_certificates()
        .and_then(|chain| chain.first().and_then(|certificate| common_name::subject_common_name(certificate)));
    let description = established.description();
    Ok(Accepted {
        reader: established.reader,
        writer: established.writer,
        plaintext: established.plaintext,
        peer_common_name,
        description,
    })
}
