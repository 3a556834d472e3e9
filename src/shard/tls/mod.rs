//! amqps: TLS 1.2 and 1.3 (rustls on ring) between the socket and the frame reader and writer.
//!
//! Owns three things: building the one `ServerConfig` every shard shares from the broker's
//! flags (certificate, key, client-certificate verification), the TLS handshake of an
//! accepted socket (before the AMQP handshake starts), and the record layer afterwards:
//! `TlsReader` decrypts what the socket read into the buffer the frame parser uses, and
//! `TlsWriter` encrypts the connection's output before the socket write.
//!
//! rustls' buffer-in/buffer-out API (`read_tls` / `process_new_packets` / `write_tls`) is
//! driven directly, without a runtime adapter: io_uring reads need owned buffers, which the
//! ciphertext buffers here are. The session is shared by the reader and writer tasks of one
//! connection (same thread, `Rc<RefCell<_>>`), and no borrow of it is held across an await.
//! A plain AMQP connection never touches this module.

pub(crate) mod common_name;

use std::cell::RefCell;
use std::fmt;
use std::io::{BufRead, ErrorKind, Write};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

use crate::config::Config;
use crate::limits::{READ_CHUNK_BYTES, TLS_WRITE_BATCH_BYTES};

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

/// The TLS acceptor configuration from the flags; None when amqps is off.
pub fn server_config(config: &Config) -> Result<Option<Arc<ServerConfig>>, TlsSetupError> {
    let (Some(cert_path), Some(key_path)) = (&config.tls_cert, &config.tls_key) else { return Ok(None) };
    if config.amqps_listener_port().is_none() {
        return Ok(None);
    }
    let chain = read_certificates("--tls-cert", cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|error| TlsSetupError {
        flag: "--tls-key",
        path: key_path.display().to_string(),
        reason: format!("no usable private key ({error})"),
    })?;
    // ring rather than aws-lc-rs (a cmake C build of several minutes); rustls marks its ring
    // provider deprecated because ring has no post-quantum key exchange: the classical groups
    // (X25519, P-256, P-384) are what RabbitMQ's Erlang TLS offers too.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    fn setup_error<'a>(flag: &'static str, path: &'a Path) -> impl Fn(rustls::Error) -> TlsSetupError + 'a {
        move |error| TlsSetupError { flag, path: path.display().to_string(), reason: error.to_string() }
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(setup_error("--tls-cert", cert_path))?;
    let builder = match (&config.tls_ca_cert, config.tls_verify_peer) {
        (Some(ca_path), true) => {
            let mut roots = RootCertStore::empty();
            for certificate in read_certificates("--tls-ca-cert", ca_path)? {
                roots.add(certificate).map_err(setup_error("--tls-ca-cert", ca_path))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if config.tls_fail_if_no_peer_cert { verifier } else { verifier.allow_unauthenticated() };
            let verifier = verifier.build().map_err(|error| TlsSetupError {
                flag: "--tls-ca-cert",
                path: ca_path.display().to_string(),
                reason: error.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        (Some(ca_path), false) => {
            // Not used without --tls-verify-peer, but a broken file is still worth a refusal
            // now rather than a surprise on the day verification is turned on.
            read_certificates("--tls-ca-cert", ca_path)?;
            builder.with_no_client_auth()
        }
        (None, _) => builder.with_no_client_auth(),
    };
    let server_config = builder.with_single_cert(chain, key).map_err(setup_error("--tls-key", key_path))?;
    Ok(Some(Arc::new(server_config)))
}

fn read_certificates(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let failure = |reason: String| TlsSetupError { flag, path: path.display().to_string(), reason };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| failure(error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| failure(error.to_string()))?;
    if certificates.is_empty() {
        return Err(failure("no PEM certificate in the file".into()));
    }
    Ok(certificates)
}

/// One connection's TLS session, shared by its reader and writer.
type Session = Rc<RefCell<ServerConnection>>;

/// What a finished TLS handshake hands to the AMQP side.
pub struct Accepted {
    pub reader: TlsReader,
    pub writer: TlsWriter,
    /// Application data that arrived with the end of the handshake (often the AMQP header).
    pub plaintext: BytesMut,
    /// The verified client certificate's subject CN, when the client sent a certificate.
    pub peer_common_name: Option<String>,
    /// For the log: "TLSv1_3 / TLS13_AES_256_GCM_SHA384".
    pub description: String,
}

/// Runs the TLS handshake on an accepted socket. Err for anything but a completed handshake
/// (garbage, a plain AMQP header, a failed verification, end of stream); the caller closes the
/// socket and bounds the whole by the handshake timeout. A fatal alert rustls queued (for
/// instance "certificate required") is sent, best effort, before returning the error.
pub async fn accept<S>(stream: &mut S, config: Arc<ServerConfig>) -> Result<Accepted, String>
where
    S: AsyncReadRent + AsyncWriteRent,
{
    let mut session = ServerConnection::new(config).map_err(|error| error.to_string())?;
    session.set_buffer_limit(Some(TLS_WRITE_BATCH_BYTES));
    let mut ciphertext = BytesMut::with_capacity(HANDSHAKE_READ_BYTES);
    let mut plaintext = BytesMut::new();
    let mut scratch = Vec::new();
    while session.is_handshaking() {
        if session.wants_write() {
            scratch = flush(stream, &mut session, scratch).await.map_err(|error| error.to_string())?;
            continue;
        }
        if !read_ciphertext(stream, &mut ciphertext, HANDSHAKE_READ_BYTES).await {
            return Err("the client closed the connection during the TLS handshake".into());
        }
        if let Err(error) = decrypt(&mut session, &mut ciphertext, &mut plaintext) {
            let _ = flush(stream, &mut session, scratch).await;
            return Err(error);
        }
    }
    // The session tickets (TLS 1.3) and the last flight go out before AMQP starts.
    scratch = flush(stream, &mut session, scratch).await.map_err(|error| error.to_string())?;
    let peer_common_name = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|certificate| common_name::subject_common_name(certificate));
    let description = format!(
        "{} / {}",
        session.protocol_version().map_or_else(|| "?".into(), |version| format!("{version:?}")),
        session.negotiated_cipher_suite().map_or_else(|| "?".into(), |suite| format!("{:?}", suite.suite())),
    );
    let session = Rc::new(RefCell::new(session));
    Ok(Accepted {
        reader: TlsReader { session: session.clone(), ciphertext },
        writer: TlsWriter { session, scratch },
        plaintext,
        peer_common_name,
        description,
    })
}

/// Ciphertext read per socket read during the handshake: a ClientHello or a certificate
/// flight, not a stream of messages.
const HANDSHAKE_READ_BYTES: usize = 16 * 1024;

/// One socket read appended to `ciphertext`; false on end of stream or error.
async fn read_ciphertext<S: AsyncReadRent>(stream: &mut S, ciphertext: &mut BytesMut, chunk_bytes: usize) -> bool {
    let mut buffer = std::mem::take(ciphertext);
    if buffer.capacity() - buffer.len() < chunk_bytes / 4 {
        buffer.reserve(chunk_bytes);
    }
    let length = buffer.len();
    let capacity = buffer.capacity();
    let (result, slice) = stream.read(buffer.slice_mut(length..capacity)).await;
    *ciphertext = slice.into_inner();
    matches!(result, Ok(read) if read > 0)
}

/// Feeds the buffered ciphertext to the session and appends what it decrypts to `plaintext`.
/// Ok(true) once the client sent close_notify.
fn decrypt(
    session: &mut ServerConnection,
    ciphertext: &mut BytesMut,
    plaintext: &mut BytesMut,
) -> Result<bool, String> {
    while !ciphertext.is_empty() {
        let mut unread = &ciphertext[..];
        let read = session.read_tls(&mut unread).map_err(|error| error.to_string())?;
        ciphertext.advance(read);
        let state = session.process_new_packets().map_err(|error| error.to_string())?;
        if take_plaintext(session, plaintext) || state.peer_has_closed() || read == 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Moves decrypted bytes out of the session (its plaintext buffer is small and must be
/// emptied after each `process_new_packets`). True when the stream has ended.
fn take_plaintext(session: &mut ServerConnection, plaintext: &mut BytesMut) -> bool {
    let mut reader = session.reader();
    loop {
        match reader.fill_buf() {
            Ok([]) => return true,
            Ok(chunk) => {
                let length = chunk.len();
                plaintext.extend_from_slice(chunk);
                reader.consume(length);
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// Writes everything the session has queued (handshake flights, alerts, records); gives the
/// scratch buffer back for reuse.
async fn flush<S: AsyncWriteRent>(
    stream: &mut S,
    session: &mut ServerConnection,
    mut scratch: Vec<u8>,
) -> std::io::Result<Vec<u8>> {
    scratch.clear();
    while session.wants_write() {
        session.write_tls(&mut scratch)?;
    }
    if scratch.is_empty() {
        return Ok(scratch);
    }
    let (result, scratch) = stream.write_all(scratch).await;
    result.map(|_| scratch)
}

/// The read side of an established session: socket reads of ciphertext, decrypted into the
/// frame reader's buffer.
pub struct TlsReader {
    session: Session,
    ciphertext: BytesMut,
}

impl TlsReader {
    /// Reads from the socket until at least one byte of plaintext is appended to `plaintext`;
    /// false on end of stream (close_notify or not), a socket error or a TLS error. `wants_write`
    /// is called when the session has something to send on its own (a KeyUpdate answer, an
    /// alert), so the writer can be woken.
    pub async fn fill<S: AsyncReadRent>(
        &mut self,
        socket: &mut S,
        plaintext: &mut BytesMut,
        wants_write: impl Fn(),
    ) -> bool {
        loop {
            let before = plaintext.len();
            let outcome = {
                let mut session = self.session.borrow_mut();
                let outcome = decrypt(&mut session, &mut self.ciphertext, plaintext);
                if session.wants_write() {
                    wants_write();
                }
                outcome
            };
            match outcome {
                Ok(_) if plaintext.len() > before => return true,
                Ok(false) => {}
                Ok(true) | Err(_) => return false,
            }
            if !read_ciphertext(socket, &mut self.ciphertext, READ_CHUNK_BYTES).await {
                return false;
            }
        }
    }
}

/// The write side of an established session: plaintext output encrypted, in batches of at
/// most `TLS_WRITE_BATCH_BYTES` of records per socket write.
pub struct TlsWriter {
    session: Session,
    scratch: Vec<u8>,
}

impl TlsWriter {
    /// Encrypts `chunk` and writes it, with anything the session queued by itself.
    pub async fn write<S: AsyncWriteRent>(&mut self, socket: &mut S, chunk: Bytes) -> std::io::Result<()> {
        let mut offset = 0;
        loop {
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            {
                let mut session = self.session.borrow_mut();
                while offset < chunk.len() {
                    let accepted = session.writer().write(&chunk[offset..])?;
                    if accepted == 0 {
                        break;
                    }
                    offset += accepted;
                }
                while session.wants_write() {
                    session.write_tls(&mut scratch)?;
                }
            }
            if scratch.is_empty() {
                self.scratch = scratch;
                if offset < chunk.len() {
                    return Err(std::io::Error::other("the TLS session no longer accepts output"));
                }
                return Ok(());
            }
            let (result, scratch) = socket.write_all(scratch).await;
            self.scratch = scratch;
            result?;
            if offset >= chunk.len() && !self.session.borrow().wants_write() {
                return Ok(());
            }
        }
    }

    /// What the session wants to send without new output (a KeyUpdate answer, an alert).
    pub async fn flush_pending<S: AsyncWriteRent>(&mut self, socket: &mut S) -> std::io::Result<()> {
        self.write(socket, Bytes::new()).await
    }

    /// Ends the session politely (close_notify), best effort: the socket closes after it.
    pub async fn close<S: AsyncWriteRent>(&mut self, socket: &mut S) {
        self.session.borrow_mut().send_close_notify();
        let _ = self.flush_pending(socket).await;
    }
}
