//! `amqps://` for the load generator: the rustls client configuration from the URI's TLS
//! parameters, and the client side of the handshake on a connected socket.
//!
//! A configuration is built once per client thread and options (reading the CA file for every
//! connection would distort connection-churn figures). Without `cacertfile` the system's CA
//! bundle is trusted; `verify=verify_none` accepts any certificate (signatures are still
//! checked), for self-signed test setups only, and only when asked for by name.

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

use monoio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::error::BenchError;
use super::uri::{TlsOptions, Uri};
use crate::tls::Established;

/// Where Debian (and most Linux distributions) keep the system's CA certificates.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The TLS handshake on a freshly connected socket, for `uri` (which must be `amqps://`).
pub async fn connect(stream: &mut TcpStream, uri: &Uri, options: &TlsOptions) -> Result<Established, BenchError> {
    let config = client_config(options)?;
    let name = options.server_name.clone().unwrap_or_else(|| uri.host.clone());
    let server_name = ServerName::try_from(name.clone())
        .map_err(|error| BenchError::Tls(format!("{name:?} is not a server name: {error}")))?;
    let session = ClientConnection::new(config, server_name).map_err(|error| BenchError::Tls(error.to_string()))?;
    crate::tls::handshake(stream, session.into()).await.map_err(BenchError::Tls)
}

thread_local! {
    static CONFIGS: RefCell<Vec<(TlsOptions, Arc<ClientConfig>)>> = const { RefCell::new(Vec::new()) };
}

fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>, BenchError> {
    let cached = CONFIGS.with(|configs| {
        configs.borrow().iter().find(|(built_for, _)| built_for == options).map(|(_, config)| config.clone())
    });
    if let Some(config) = cached {
        return Ok(config);
    }
    let config = Arc::new(build_client_config(options).map_err(BenchError::Tls)?);
    CONFIGS.with(|configs| configs.borrow_mut().push((options.clone(), config.clone())));
    Ok(config)
}

fn build_client_config(options: &TlsOptions) -> Result<ClientConfig, String> {
    let provider = crate::tls::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(crate::tls::PROTOCOL_VERSIONS)
        .map_err(|error| error.to_string())?;
    let builder = if options.verify_none {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
    } else {
        let ca_file = options.ca_cert_file.as_deref().unwrap_or(SYSTEM_CA_BUNDLE);
        let certificates = crate::tls::read_certificates(Path::new(ca_file)).map_err(|error| {
            let hint = if options.ca_cert_file.is_none() { " (name a CA file with ?cacertfile=FILE)" } else { "" };
            format!("cacertfile {ca_file}: {error}{hint}")
        })?;
        let mut roots = RootCertStore::empty();
        let (_added, _ignored) = roots.add_parsable_certificates(certificates);
        if roots.is_empty() {
            return Err(format!("cacertfile {ca_file}: no usable CA certificate"));
        }
        builder.with_root_certificates(roots)
    };
    match (&options.cert_file, &options.key_file) {
        (Some(cert_file), Some(key_file)) => {
            let chain = crate::tls::read_certificates(Path::new(cert_file))
                .map_err(|error| format!("certfile {cert_file}: {error}"))?;
            let key = crate::tls::read_private_key(Path::new(key_file))
                .map_err(|error| format!("keyfile {key_file}: {error}"))?;
            builder.with_client_auth_cert(chain, key).map_err(|error| format!("certfile {cert_file}: {error}"))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// `verify=verify_none`: any certificate is accepted as the broker's; the handshake
/// signatures are still checked, so the session is encrypted, just not authenticated.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
