//! TLS on monoio sockets with rustls, for both ends: the broker's amqps listener
//! (`shard::socket`) and the load generator's `amqps://` connections (`bench`).
//!
//! Owns the handshake of a socket and the record layer after it: `TlsReader` decrypts what
//! the socket read into the caller's frame buffer, `TlsWriter` encrypts the caller's output
//! before the socket write. rustls' buffer-in/buffer-out API (`read_tls` /
//! `process_new_packets` / `write_tls`) is driven directly, without a runtime adapter: io_uring
//! reads need owned buffers, which the ciphertext buffers here are. The session is shared by
//! the reader and the writer of one connection (same thread, `Rc<RefCell<_>>`); no borrow of it
//! is held across an await. Building configurations from flags belongs to the callers; this
//! module knows sockets, buffers and rustls, nothing of AMQP.

pub mod common_name;

use std::cell::RefCell;
use std::io::{BufRead, ErrorKind, Write};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::Connection;

use crate::limits::TLS_WRITE_BATCH_BYTES;

/// The crypto provider both ends use: ring rather than aws-lc-rs (a cmake C build of several
/// minutes). rustls marks its ring provider deprecated because ring has no post-quantum key
/// exchange; the classical groups (X25519, P-256, P-384) are what RabbitMQ's Erlang TLS
/// offers too.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3 and 1.2, nothing older.
pub const PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Every certificate of a PEM file, in order; an error text when there is none.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| error.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| error.to_string())?;
    if certificates.is_empty() {
        return Err("no PEM certificate in the file".into());
    }
    Ok(certificates)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| format!("no usable private key ({error})"))
}

/// One connection's TLS session, shared by its reader and writer.
type Session = Rc<RefCell<Connection>>;

/// A completed handshake: the two halves of the record layer, and what arrived with it.
pub struct Established {
    pub reader: TlsReader,
    pub writer: TlsWriter,
    /// Application data that arrived with the end of the handshake (often the AMQP header).
    pub plaintext: BytesMut,
}

impl Established {
    /// The peer's certificate chain as sent, end-entity first (verified by the config's
    /// verifier); None when the peer sent none.
    pub fn peer_certificates(&self) -> Option<Vec<CertificateDer<'static>>> {
        self.reader.session.borrow().peer_certificates().map(<[_]>::to_vec)
    }

    /// For logs: "TLSv1_3 / TLS13_AES_256_GCM_SHA384".
    pub fn description(&self) -> String {
        let session = self.reader.session.borrow();
        format!(
            "{} / {}",
            session.protocol_version().map_or_else(|| "?".into(), |version| format!("{version:?}")),
            session.negotiated_cipher_suite().map_or_else(|| "?".into(), |suite| format!("{:?}", suite.suite())),
        )
    }
}

/// Ciphertext read per socket read during the handshake: a hello or a certificate flight,
/// not a stream of messages.
const HANDSHAKE_READ_BYTES: usize = 16 * 1024;

/// Runs the handshake of `session` (client or server) on `stream`. Err (with rustls' reason)
/// for anything but a completed handshake: garbage, a peer that speaks something else, a
/// failed verification, end of stream. A fatal alert rustls queued (for instance "certificate
/// required") is sent, best effort, first. The caller bounds the whole with its timeout.
pub async fn handshake<S>(stream: &mut S, mut session: Connection) -> Result<Established, String>
where
    S: AsyncReadRent + AsyncWriteRent,
{
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
            return Err("the peer closed the connection during the TLS handshake".into());
        }
        if let Err(error) = decrypt(&mut session, &mut ciphertext, &mut plaintext) {
            let _ = flush(stream, &mut session, scratch).await;
            return Err(error);
        }
    }
    // The last flight (and a TLS 1.3 server's session tickets) go out before AMQP starts.
    scratch = flush(stream, &mut session, scratch).await.map_err(|error| error.to_string())?;
    let session = Rc::new(RefCell::new(session));
    Ok(Established {
        reader: TlsReader { session: session.clone(), ciphertext },
        writer: TlsWriter { session, scratch },
        plaintext,
    })
}

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
/// Ok(true) once the stream has ended (close_notify).
fn decrypt(session: &mut Connection, ciphertext: &mut BytesMut, plaintext: &mut BytesMut) -> Result<bool, String> {
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
fn take_plaintext(session: &mut Connection, plaintext: &mut BytesMut) -> bool {
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
    session: &mut Connection,
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
/// caller's frame buffer.
pub struct TlsReader {
    session: Session,
    ciphertext: BytesMut,
}

impl TlsReader {
    /// Reads from the socket (`chunk_bytes` of room per read) until at least one byte of
    /// plaintext is appended to `plaintext` (Ok(true)); Ok(false) on end of stream
    /// (close_notify or not) or a socket error, Err with rustls' reason on a TLS error (an
    /// alert from the peer, a bad record). `wants_write` is called when the session has
    /// something to send on its own (a KeyUpdate answer, an alert), so the writer can be woken.
    pub async fn fill<S: AsyncReadRent>(
        &mut self,
        socket: &mut S,
        plaintext: &mut BytesMut,
        chunk_bytes: usize,
        wants_write: impl Fn(),
    ) -> Result<bool, String> {
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
                Ok(_) if plaintext.len() > before => return Ok(true),
                Ok(false) => {}
                Ok(true) => return Ok(false),
                Err(reason) => return Err(reason),
            }
            if !read_ciphertext(socket, &mut self.ciphertext, chunk_bytes).await {
                return Ok(false);
            }
        }
    }
}

/// The write side of an established session: plaintext encrypted, in batches of at most
/// `TLS_WRITE_BATCH_BYTES` of records per socket write.
pub struct TlsWriter {
    session: Session,
    scratch: Vec<u8>,
}

impl TlsWriter {
    /// Encrypts `plaintext` and writes it, with anything the session queued by itself.
    pub async fn write<S: AsyncWriteRent>(&mut self, socket: &mut S, plaintext: &[u8]) -> std::io::Result<()> {
        let mut offset = 0;
        loop {
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            {
                let mut session = self.session.borrow_mut();
                while offset < plaintext.len() {
                    let accepted = session.writer().write(&plaintext[offset..])?;
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
                if offset < plaintext.len() {
                    return Err(std::io::Error::other("the TLS session no longer accepts output"));
                }
                return Ok(());
            }
            let (result, scratch) = socket.write_all(scratch).await;
            self.scratch = scratch;
            result?;
            if offset >= plaintext.len() && !self.session.borrow().wants_write() {
                return Ok(());
            }
        }
    }

    /// What the session wants to send without new output (a KeyUpdate answer, an alert).
    pub async fn flush_pending<S: AsyncWriteRent>(&mut self, socket: &mut S) -> std::io::Result<()> {
        self.write(socket, &[]).await
    }

    /// Ends the session politely (close_notify), best effort: the socket closes after it.
    pub async fn close<S: AsyncWriteRent>(&mut self, socket: &mut S) {
        self.session.borrow_mut().send_close_notify();
        let _ = self.flush_pending(socket).await;
    }
}
