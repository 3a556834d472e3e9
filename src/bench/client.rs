//! A minimal AMQP 0-9-1 client on monoio for the load generator: the PLAIN handshake, one
//! channel, and the handful of synchronous methods a benchmark needs (declare, bind, qos,
//! consume, confirm.select, close).
//!
//! It owns the socket until a scenario splits it into an `Input` (read half plus buffer) and
//! a write half for its hot loop. Every wait on the broker is bounded by
//! `BROKER_WAIT_SECONDS`; a server connection.close or channel.close becomes a `BenchError`
//! carrying the reply code and text. Non-hot methods go through amq-protocol (via
//! `amqp::methods`); the per-message path lives in the scenario modules and uses the hand
//! codec only.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::task::{Poll, Waker};
use std::time::Duration;

use amq_protocol::protocol::{basic, channel, confirm, connection, exchange, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;

use super::error::BenchError;
use super::uri::Uri;
use crate::amqp::frame::PROTOCOL_HEADER;
use crate::amqp::frame::{split_frame, RawFrame, FRAME_HEARTBEAT, FRAME_METHOD, FRAME_MIN_SIZE};
use crate::amqp::hotpath::CodecError;
use crate::amqp::methods::{encode_method, parse_method};

/// Longest the bench waits for any single answer from the broker (handshake, declare, close).
pub const BROKER_WAIT_SECONDS: u64 = 30;
/// frame_max we ask for: RabbitMQ's default, so bodies up to ~128 KiB travel in one frame.
pub const FRAME_MAX_BYTES: u32 = 128 * 1024;
/// Read buffer growth per read in hot loops: one syscall for hundreds of deliveries.
pub const READ_CHUNK_BYTES: usize = 256 * 1024;
/// Read buffer growth while only methods travel (handshake, declares, held connections):
/// thousands of idle connections must not each pin a hot-loop-sized buffer.
pub const CONTROL_READ_CHUNK_BYTES: usize = 8 * 1024;
/// The one channel every bench connection uses.
pub const CHANNEL: u16 = 1;

pub type WriteHalf = OwnedWriteHalf<TcpStream>;

/// Bounds `future` by `BROKER_WAIT_SECONDS`. A timed-out connection must be abandoned: the
/// cancelled read may have consumed bytes.
pub async fn bounded<T>(
    waiting_for: &'static str,
    future: impl Future<Output = Result<T, BenchError>>,
) -> Result<T, BenchError> {
    let limit = Duration::from_secs(BROKER_WAIT_SECONDS);
    match monoio::time::timeout(limit, future).await {
        Ok(result) => result,
        Err(_) => Err(BenchError::Timeout {
            waiting_for,
            seconds: BROKER_WAIT_SECONDS,
        }),
    }
}

/// A read source with its buffer; hands out whole frames, reading only when none is buffered.
pub struct Input<R> {
    source: R,
    buffer: BytesMut,
    chunk_bytes: usize,
    pub frame_max: u32,
}

impl<R: AsyncReadRent> Input<R> {
    /// One read into the spare capacity (monoio's BytesMut read would otherwise overwrite the
    /// buffer from the start, losing a partial frame).
    pub async fn fill(&mut self, during: &'static str) -> Result<(), BenchError> {
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
            Err(BenchError::ConnectionClosed {
                reply_code: close.reply_code,
                reply_text: close.reply_text.to_string(),
            })
        }
        AMQPClass::Channel(channel::AMQPMethod::Close(close)) => Err(BenchError::ChannelClosed {
            reply_code: close.reply_code,
            reply_text: close.reply_text.to_string(),
        }),
        AMQPClass::Basic(basic::AMQPMethod::Cancel(_)) => Err(BenchError::Unexpected {
            expected: "deliveries",
            found: "basic.cancel (the broker cancelled the consumer)".into(),
        }),
        _ => Ok(Control::Ignore),
    }
}

/// Queue properties the scenarios declare with.
pub struct QueueSpec<'a> {
    pub name: &'a str,
    pub durable: bool,
    pub auto_delete: bool,
    pub arguments: &'a FieldTable,
}

pub struct Client {
    input: Input<TcpStream>,
    out: BytesMut,
    /// Seconds between heartbeats agreed in tune-ok; 0 means none.
    pub heartbeat_seconds: u16,
}

impl Client {
    /// TCP connect plus the whole handshake, bounded by `BROKER_WAIT_SECONDS`.
    pub async fn connect(uri: &Uri, connection_name: &str) -> Result<Client, BenchError> {
        bounded(
            "the connection handshake",
            Client::handshake(uri, connection_name),
        )
        .await
    }

    async fn handshake(uri: &Uri, connection_name: &str) -> Result<Client, BenchError> {
        let address = uri.address();
        let stream = match TcpStream::connect(address.as_str()).await {
            Ok(stream) => stream,
            Err(source) => return Err(BenchError::Connect { address, source }),
        };
        // Small frames (acks, confirms) must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let mut client = Client {
            input: Input {
                source: stream,
                buffer: BytesMut::with_capacity(CONTROL_READ_CHUNK_BYTES),
                chunk_bytes: CONTROL_READ_CHUNK_BYTES,
                frame_max: FRAME_MIN_SIZE,
            },
            out: BytesMut::with_capacity(4096),
            heartbeat_seconds: 0,
        };
        client.out.extend_from_slice(PROTOCOL_HEADER);
        client.flush().await?;
        let start = match client.next_method("connection.start").await? {
            AMQPClass::Connection(connection::AMQPMethod::Start(start)) => start,
            other => return Err(unexpected("connection.start", &other)),
        };
        let mechanisms = String::from_utf8_lossy(start.mechanisms.as_bytes()).to_string();
        if !mechanisms.split(' ').any(|mechanism| mechanism == "PLAIN") {
            return Err(BenchError::Handshake(format!(
                "the broker offers {mechanisms:?}, the bench speaks PLAIN"
            )));
        }
        client.send(0, &start_ok(uri, connection_name))?;
        client.flush().await?;
        let tune = match client.next_method("connection.tune").await? {
            AMQPClass::Connection(connection::AMQPMethod::Tune(tune)) => tune,
            other => return Err(unexpected("connection.tune", &other)),
        };
        let frame_max = match tune.frame_max {
            0 => FRAME_MAX_BYTES,
            offered => offered.min(FRAME_MAX_BYTES),
        };
        client.heartbeat_seconds = tune.heartbeat;
        let tune_ok = connection::TuneOk {
            channel_max: tune.channel_max,
            frame_max,
            heartbeat: tune.heartbeat,
        };
        client.send(
            0,
            &AMQPClass::Connection(connection::AMQPMethod::TuneOk(tune_ok)),
        )?;
        let open = connection::Open {
            virtual_host: uri.vhost.as_str().into(),
        };
        client.send(
            0,
            &AMQPClass::Connection(connection::AMQPMethod::Open(open)),
        )?;
        client.flush().await?;
        client.input.frame_max = frame_max;
        match client.next_method("connection.open-ok").await? {
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)) => Ok(client),
            other => Err(unexpected("connection.open-ok", &other)),
        }
    }

    pub fn frame_max(&self) -> u32 {
        self.input.frame_max
    }

    fn send(&mut self, channel: u16, method: &AMQPClass) -> Result<(), BenchError> {
        encode_method(&mut self.out, channel, method)?;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), BenchError> {
        let out = std::mem::take(&mut self.out);
        let (result, mut out) = self.input.source.write_all(out).await;
        out.clear();
        self.out = out;
        result.map(drop).map_err(BenchError::io("a write"))
    }

    /// The next method frame, answering a broker close with close-ok and returning its error.
    async fn next_method(&mut self, expected: &'static str) -> Result<AMQPClass, BenchError> {
        loop {
            let frame = self.input.next_frame(expected).await?;
            match frame.frame_type {
                FRAME_HEARTBEAT => continue,
                FRAME_METHOD => {}
                other => {
                    return Err(BenchError::Unexpected {
                        expected,
                        found: format!("a frame of type {other}"),
                    })
                }
            }
            match control_method(&frame.payload) {
                Ok(Control::Blocked | Control::Unblocked) => continue,
                Ok(Control::Ignore) => return Ok(parse_method(&frame.payload)?),
                Err(error) => {
                    self.answer_close(&error, frame.channel).await;
                    return Err(error);
                }
            }
        }
    }

    /// Best effort: the error being reported matters more than whether close-ok went out.
    async fn answer_close(&mut self, error: &BenchError, channel: u16) {
        let reply = match error {
            BenchError::ConnectionClosed { .. } => {
                AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {}))
            }
            BenchError::ChannelClosed { .. } => {
                AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {}))
            }
            _ => return,
        };
        if self.send(channel, &reply).is_ok() {
            let _ = self.flush().await;
        }
    }

    /// Sends `method` on the bench channel and waits (bounded) for the reply `accept` takes.
    async fn rpc(
        &mut self,
        method: AMQPClass,
        expected: &'static str,
        accept: fn(&AMQPClass) -> bool,
    ) -> Result<AMQPClass, BenchError> {
        self.send(CHANNEL, &method)?;
        bounded(expected, async {
            self.flush().await?;
            let reply = self.next_method(expected).await?;
            if accept(&reply) {
                Ok(reply)
            } else {
                Err(unexpected(expected, &reply))
            }
        })
        .await
    }

    pub async fn open_channel(&mut self) -> Result<(), BenchError> {
        let open = AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}));
        self.rpc(open, "channel.open-ok", |reply| {
            matches!(reply, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))
        })
        .await
        .map(drop)
    }

    pub async fn declare_queue(&mut self, spec: &QueueSpec<'_>) -> Result<(), BenchError> {
        let declare = queue::Declare {
            queue: spec.name.into(),
            durable: spec.durable,
            auto_delete: spec.auto_delete,
            arguments: spec.arguments.clone(),
            ..Default::default()
        };
        let method = AMQPClass::Queue(queue::AMQPMethod::Declare(declare));
        self.rpc(method, "queue.declare-ok", |reply| {
            matches!(reply, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)))
        })
        .await
        .map(drop)
    }

    pub async fn delete_queue(&mut self, name: &str) -> Result<(), BenchError> {
        let delete = queue::Delete {
            queue: name.into(),
            ..Default::default()
        };
        let method = AMQPClass::Queue(queue::AMQPMethod::Delete(delete));
        self.rpc(method, "queue.delete-ok", |reply| {
            matches!(reply, AMQPClass::Queue(queue::AMQPMethod::DeleteOk(_)))
        })
        .await
        .map(drop)
    }

    pub async fn declare_exchange(
        &mut self,
        name: &str,
        kind: &str,
        durable: bool,
    ) -> Result<(), BenchError> {
        let declare = exchange::Declare {
            exchange: name.into(),
            kind: kind.into(),
            durable,
            ..Default::default()
        };
        let method = AMQPClass::Exchange(exchange::AMQPMethod::Declare(declare));
        self.rpc(method, "exchange.declare-ok", |reply| {
            matches!(
                reply,
                AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(_))
            )
        })
        .await
        .map(drop)
    }

    pub async fn delete_exchange(&mut self, name: &str) -> Result<(), BenchError> {
        let delete = exchange::Delete {
            exchange: name.into(),
            ..Default::default()
        };
        let method = AMQPClass::Exchange(exchange::AMQPMethod::Delete(delete));
        self.rpc(method, "exchange.delete-ok", |reply| {
            matches!(
                reply,
                AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(_))
            )
        })
        .await
        .map(drop)
    }

    pub async fn bind_queue(
        &mut self,
        queue_name: &str,
        exchange_name: &str,
        routing_key: &str,
    ) -> Result<(), BenchError> {
        let bind = queue::Bind {
            queue: queue_name.into(),
            exchange: exchange_name.into(),
            routing_key: routing_key.into(),
            ..Default::default()
        };
        let method = AMQPClass::Queue(queue::AMQPMethod::Bind(bind));
        self.rpc(method, "queue.bind-ok", |reply| {
            matches!(reply, AMQPClass::Queue(queue::AMQPMethod::BindOk(_)))
        })
        .await
        .map(drop)
    }

    pub async fn unbind_queue(
        &mut self,
        queue_name: &str,
        exchange_name: &str,
        routing_key: &str,
    ) -> Result<(), BenchError> {
        let unbind = queue::Unbind {
            queue: queue_name.into(),
            exchange: exchange_name.into(),
            routing_key: routing_key.into(),
            ..Default::default()
        };
        let method = AMQPClass::Queue(queue::AMQPMethod::Unbind(unbind));
        self.rpc(method, "queue.unbind-ok", |reply| {
            matches!(reply, AMQPClass::Queue(queue::AMQPMethod::UnbindOk(_)))
        })
        .await
        .map(drop)
    }

    pub async fn confirm_select(&mut self) -> Result<(), BenchError> {
        let select = AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
            nowait: false,
        }));
        self.rpc(select, "confirm.select-ok", |reply| {
            matches!(reply, AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_)))
        })
        .await
        .map(drop)
    }

    pub async fn qos(&mut self, prefetch_count: u16) -> Result<(), BenchError> {
        let qos = AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count,
            global: false,
        }));
        self.rpc(qos, "basic.qos-ok", |reply| {
            matches!(reply, AMQPClass::Basic(basic::AMQPMethod::QosOk(_)))
        })
        .await
        .map(drop)
    }

    pub async fn consume(
        &mut self,
        queue_name: &str,
        no_ack: bool,
        arguments: &FieldTable,
    ) -> Result<(), BenchError> {
        let consume = basic::Consume {
            queue: queue_name.into(),
            no_ack,
            arguments: arguments.clone(),
            ..Default::default()
        };
        let method = AMQPClass::Basic(basic::AMQPMethod::Consume(consume));
        self.rpc(method, "basic.consume-ok", |reply| {
            matches!(reply, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_)))
        })
        .await
        .map(drop)
    }

    /// connection.close, then waits (bounded) for close-ok, skipping whatever was in flight.
    pub async fn close(mut self) -> Result<(), BenchError> {
        let close = connection::Close {
            reply_code: 200,
            reply_text: "bench done".into(),
            class_id: 0,
            method_id: 0,
        };
        self.send(
            0,
            &AMQPClass::Connection(connection::AMQPMethod::Close(close)),
        )?;
        bounded("connection.close-ok", async {
            self.flush().await?;
            loop {
                let frame = self.input.next_frame("connection.close-ok").await?;
                let close_ok = frame.frame_type == FRAME_METHOD
                    && frame.channel == 0
                    && frame.payload.get(..4) == Some(&[0, 10, 0, 51]);
                if close_ok {
                    return Ok(());
                }
            }
        })
        .await
    }

    /// Hands the socket to a hot loop: the read half keeps whatever was already buffered.
    pub fn into_split(self) -> (Input<OwnedReadHalf<TcpStream>>, WriteHalf) {
        let (read_half, write_half) = self.input.source.into_split();
        let input = Input {
            source: read_half,
            buffer: self.input.buffer,
            chunk_bytes: READ_CHUNK_BYTES,
            frame_max: self.input.frame_max,
        };
        (input, write_half)
    }

    /// Writes one heartbeat frame (connections held idle by connection-count).
    pub async fn send_heartbeat(&mut self) -> Result<(), BenchError> {
        crate::amqp::frame::write_heartbeat(&mut self.out);
        self.flush().await
    }
}

fn start_ok(uri: &Uri, connection_name: &str) -> AMQPClass {
    let mut capabilities = FieldTable::default();
    for capability in [
        "publisher_confirms",
        "basic.nack",
        "connection.blocked",
        "consumer_cancel_notify",
        "authentication_failure_close",
    ] {
        capabilities.insert(capability.into(), AMQPValue::Boolean(true));
    }
    let mut properties = FieldTable::default();
    properties.insert(
        "product".into(),
        AMQPValue::LongString("spatemq bench".into()),
    );
    properties.insert(
        "version".into(),
        AMQPValue::LongString(env!("CARGO_PKG_VERSION").into()),
    );
    properties.insert(
        "connection_name".into(),
        AMQPValue::LongString(connection_name.into()),
    );
    properties.insert("capabilities".into(), AMQPValue::FieldTable(capabilities));
    let response = format!("\0{}\0{}", uri.user, uri.password);
    AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
        client_properties: properties,
        mechanism: "PLAIN".into(),
        response: response.into(),
        locale: "en_US".into(),
    }))
}

fn unexpected(expected: &'static str, found: &AMQPClass) -> BenchError {
    let mut found = format!("{found:?}");
    found.truncate(200);
    BenchError::Unexpected { expected, found }
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
    use crate::amqp::hotpath::{encode_deliver, Delivery};

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
            assert_eq!(
                deliver_tag(&method.payload[..cut]),
                Err(CodecError::Truncated)
            );
        }
        assert_eq!(
            header_body_size(&header.payload.slice(..11)),
            Err(CodecError::Truncated)
        );
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
        encode_method(
            &mut out,
            0,
            &AMQPClass::Connection(connection::AMQPMethod::Close(close)),
        )
        .expect("encodes");
        let blocked = connection::Blocked {
            reason: "low memory".into(),
        };
        encode_method(
            &mut out,
            0,
            &AMQPClass::Connection(connection::AMQPMethod::Blocked(blocked)),
        )
        .expect("encodes");
        let close_frame = split_frame(&mut out, 0).expect("ok").expect("frame");
        let blocked_frame = split_frame(&mut out, 0).expect("ok").expect("frame");
        match control_method(&close_frame.payload) {
            Err(BenchError::ConnectionClosed {
                reply_code,
                reply_text,
            }) => {
                assert_eq!(reply_code, 320);
                assert!(reply_text.contains("shutdown"));
            }
            other => panic!("expected a connection close, got {other:?}"),
        }
        assert_eq!(
            control_method(&blocked_frame.payload).expect("flow"),
            Control::Blocked
        );
    }
}
