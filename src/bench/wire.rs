//! Frames in and out of a bench connection once it is open: the read buffer that hands out
//! whole frames, the same-thread signal the hot loops wait on, the classification of control
//! methods, and the two fields of a delivery the consumer reads in place.
//!
//! Owns no protocol state and does no handshake (see `client`); it must stay allocation-free
//! per frame, since every delivery and confirm passes through it.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::task::{Poll, Waker};
use std::time::Duration;

use amq_protocol::protocol::{basic, channel, connection, AMQPClass};
use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedWriteHalf};
use monoio::net::TcpStream;

use super::error::BenchError;
use crate::codec::frame::{split_frame, RawFrame};
use crate::codec::hotpath::CodecError;
use crate::codec::methods::parse_method;
use crate::tls::{TlsReader, TlsWriter};

/// Read buffer growth per read in hot loops: one syscall for hundreds of deliveries.
pub const READ_CHUNK_BYTES: usize = 256 * 1024;
/// Read buffer growth while only methods travel (handshake, declares, held connections):
/// thousands of idle connections must not each pin a hot-loop-sized buffer.
pub const CONTROL_READ_CHUNK_BYTES: usize = 8 * 1024;

/// The sending half of a bench connection: plain TCP, or TLS records (`amqps://`).
pub struct WriteHalf {
    half: OwnedWriteHalf<TcpStream>,
    tls: Option<TlsWriter>,
}

impl WriteHalf {
    pub fn new(half: OwnedWriteHalf<TcpStream>, tls: Option<TlsWriter>) -> WriteHalf {
        WriteHalf { half, tls }
    }

    /// Writes all of `buffer` (encrypted first on TLS) and gives it back for reuse.
    pub async fn write_all(&mut self, buffer: BytesMut) -> (std::io::Result<usize>, BytesMut) {
        match &mut self.tls {
            None => self.half.write_all(buffer).await,
            Some(tls) => {
                let result = tls.write(&mut self.half, &buffer).await;
                (result.map(|()| buffer.len()), buffer)
            }
        }
    }
}

/// A read source with its buffer; hands out whole frames, reading only when none is buffered.
pub struct Input<R> {
    source: R,
    buffer: BytesMut,
    chunk_bytes: usize,
    pub frame_max: u32,
    /// `amqps://`: the source carries TLS records, decrypted into `buffer`.
    tls: Option<TlsReader>,
}

impl<R> Input<R> {
    pub fn from_parts(source: R, buffer: BytesMut, chunk_bytes: usize, frame_max: u32) -> Self {
        Input { source, buffer, chunk_bytes, frame_max, tls: None }
    }

    /// Reads TLS records from now on, decrypting them into the buffer.
    pub fn with_tls(mut self, tls: TlsReader) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The source, whatever was read but not yet handed out, and the TLS state if any.
    pub fn into_parts(self) -> (R, BytesMut, Option<TlsReader>) {
        (self.source, self.buffer, self.tls)
    }

    pub fn source_mut(&mut self) -> &mut R {
        &mut self.source
    }
}

impl<R: AsyncReadRent> Input<R> {
    /// One read into the spare capacity (monoio's BytesMut read would otherwise overwrite the
    /// buffer from the start, losing a partial frame).
    pub async fn fill(&mut self, during: &'static str) -> Result<(), BenchError> {
        if let Some(tls) = &mut self.tls {
            // The broker's TLS side never needs an answer of ours outside our own writes
            // (it does not ask for key updates), so there is no writer to wake.
            return match tls.fill(&mut self.source, &mut self.buffer, self.chunk_bytes, || {}).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(BenchError::Eof { during }),
                Err(reason) => Err(BenchError::Tls(format!("{reason} (during {during})"))),
            };
        }
        let mut buffer = std::mem::take(&mut self.buffer);
        if buffer.capacity() - buffer.len() < self.chunk_bytes / 4 {
            buffer.reserve(self.chunk_bytes);
        }
        let length = buffer.len();
        let capacity = buffer.capacity();
        let (result, slice) = self.source.read(buffer.slice_mut(length..capacity)).await;
        self.buffer = slice.into_inner();
        match result {
            Ok(0) => Err(BenchError::Eof { during }),
            Ok(_) => Ok(()),
            Err(source) => Err(BenchError::Io { during, source }),
        }
    }

    pub fn next_buffered(&mut self) -> Result<Option<RawFrame>, BenchError> {
        Ok(split_frame(&mut self.buffer, self.frame_max)?)
    }

    pub async fn next_frame(&mut self, during: &'static str) -> Result<RawFrame, BenchError> {
        loop {
            if let Some(frame) = self.next_buffered()? {
                return Ok(frame);
            }
            self.fill(during).await?;
        }
    }
}

/// Wakes one task of the same thread (no atomics: bench connections never cross threads).
#[derive(Default)]
pub struct Signal {
    raised: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Signal {
    pub fn raise(&self) {
        self.raised.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(|context| {
            if self.raised.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(context.waker().clone());
                Poll::Pending
            }
        })
    }

    /// Waits for a raise or `limit`, whichever comes first; waiting on a signal holds no
    /// buffer, so cancelling it is harmless.
    pub async fn wait_for(&self, limit: Duration) {
        let _ = monoio::time::timeout(limit, self.wait()).await;
    }
}

/// What a hot loop must do about a method that is not a delivery or a confirm.
#[derive(Debug, PartialEq, Eq)]
pub enum Control {
    Ignore,
    Blocked,
    Unblocked,
}

/// Classifies a method frame outside the per-message set: flow control continues the run,
/// a close or a consumer cancel from the broker ends it.
pub fn control_method(payload: &[u8]) -> Result<Control, BenchError> {
    match parse_method(payload)? {
        AMQPClass::Connection(connection::AMQPMethod::Blocked(_)) => Ok(Control::Blocked),
        AMQPClass::Connection(connection::AMQPMethod::Unblocked(_)) => Ok(Control::Unblocked),
        AMQPClass::Connection(connection::AMQPMethod::Close(close)) => {
            Err(BenchError::ConnectionClosed { reply_code: close.reply_code, reply_text: close.reply_text.to_string() })
        }
        AMQPClass::Channel(channel::AMQPMethod::Close(close)) => {
            Err(BenchError::ChannelClosed { reply_code: close.reply_code, reply_text: close.reply_text.to_string() })
        }
        AMQPClass::Basic(basic::AMQPMethod::Cancel(_)) => Err(BenchError::Unexpected {
            expected: "deliveries",
            found: "basic.cancel (the broker cancelled the consumer)".into(),
        }),
        _ => Ok(Control::Ignore),
    }
}

/// delivery_tag of a basic.deliver payload (class, method, consumer_tag, delivery_tag, ...).
pub fn deliver_tag(payload: &[u8]) -> Result<u64, CodecError> {
    let tag_len = usize::from(*payload.get(4).ok_or(CodecError::Truncated)?);
    let start = 5 + tag_len;
    let bytes = payload.get(start..start + 8).ok_or(CodecError::Truncated)?;
    let mut tag = [0u8; 8];
    tag.copy_from_slice(bytes);
    Ok(u64::from_be_bytes(tag))
}

/// body_size of a content header payload (class, weight, body_size, properties).
pub fn header_body_size(payload: &Bytes) -> Result<u64, CodecError> {
    let bytes = payload.get(4..12).ok_or(CodecError::Truncated)?;
    let mut size = [0u8; 8];
    size.copy_from_slice(bytes);
    Ok(u64::from_be_bytes(size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::hotpath::{encode_deliver, Delivery};
    use crate::codec::methods::encode_method;

    const FRAME_MAX_BYTES: u32 = 128 * 1024;

    #[test]
    fn deliver_tag_and_body_size_are_read_from_encoded_frames() {
        let mut out = BytesMut::new();
        let delivery = Delivery {
            channel: 1,
            consumer_tag: b"ctag-7",
            delivery_tag: 123_456_789,
            redelivered: false,
            exchange: b"",
            routing_key: b"perf-test",
            properties: b"",
            body: b"hello",
        };
        encode_deliver(&mut out, &delivery, FRAME_MAX_BYTES).expect("encodes");
        let method = split_frame(&mut out, 0).expect("ok").expect("frame");
        let header = split_frame(&mut out, 0).expect("ok").expect("frame");
        assert_eq!(deliver_tag(&method.payload), Ok(123_456_789));
        assert_eq!(header_body_size(&header.payload), Ok(5));
        for cut in 0..method.payload.len().min(19) {
            assert_eq!(deliver_tag(&method.payload[..cut]), Err(CodecError::Truncated));
        }
        assert_eq!(header_body_size(&header.payload.slice(..11)), Err(CodecError::Truncated));
    }

    #[test]
    fn broker_close_and_cancel_end_the_run_flow_control_does_not() {
        let mut out = BytesMut::new();
        let close = connection::Close {
            reply_code: 320,
            reply_text: "CONNECTION_FORCED - shutdown".into(),
            class_id: 0,
            method_id: 0,
        };
        encode_method(&mut out, 0, &AMQPClass::Connection(connection::AMQPMethod::Close(close))).expect("encodes");
        let blocked = connection::Blocked { reason: "low memory".into() };
        encode_method(&mut out, 0, &AMQPClass::Connection(connection::AMQPMethod::Blocked(blocked))).expect("encodes");
        let close_frame = split_frame(&mut out, 0).expect("ok").expect("frame");
        let blocked_frame = split_frame(&mut out, 0).expect("ok").expect("frame");
        match control_method(&close_frame.payload) {
            Err(BenchError::ConnectionClosed { reply_code, reply_text }) => {
                assert_eq!(reply_code, 320);
                assert!(reply_text.contains("shutdown"));
            }
            other => panic!("expected a connection close, got {other:?}"),
        }
        assert_eq!(control_method(&blocked_frame.payload).expect("flow"), Control::Blocked);
    }
}
