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

use std::future::Future;
use std::time::Duration;

use amq_protocol::protocol::{basic, channel, confirm, connection, exchange, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::BytesMut;
use monoio::io::{AsyncWriteRentExt, OwnedReadHalf, Splitable};
use monoio::net::TcpStream;

use super::error::BenchError;
use super::uri::Uri;
use super::wire::{control_method, Control, Input, WriteHalf, CONTROL_READ_CHUNK_BYTES, READ_CHUNK_BYTES};
use crate::codec::frame::{FRAME_HEARTBEAT, FRAME_METHOD, FRAME_MIN_SIZE, PROTOCOL_HEADER};
use crate::codec::methods::{encode_method, parse_method};

/// Longest the bench waits for any single answer from the broker (handshake, declare, close).
pub const BROKER_WAIT_SECONDS: u64 = 30;
/// frame_max we ask for: RabbitMQ's default, so bodies up to ~128 KiB travel in one frame.
pub const FRAME_MAX_BYTES: u32 = 128 * 1024;
/// The one channel every bench connection uses.
pub const CHANNEL: u16 = 1;

/// Bounds `future` by `BROKER_WAIT_SECONDS`. A timed-out connection must be abandoned: the
/// cancelled read may have consumed bytes.
pub async fn bounded<T>(
    waiting_for: &'static str,
    future: impl Future<Output = Result<T, BenchError>>,
) -> Result<T, BenchError> {
    let limit = Duration::from_secs(BROKER_WAIT_SECONDS);
    match monoio::time::timeout(limit, future).await {
        Ok(result) => result,
        Err(_) => Err(BenchError::Timeout { waiting_for, seconds: BROKER_WAIT_SECONDS }),
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
    /// `amqps://`: encrypts what `flush` writes.
    tls_writer: Option<crate::tls::TlsWriter>,
    out: BytesMut,
    /// Seconds between heartbeats agreed in tune-ok; 0 means none.
    pub heartbeat_seconds: u16,
}

impl Client {
    /// TCP connect plus the whole handshake, bounded by `BROKER_WAIT_SECONDS`.
    pub async fn connect(uri: &Uri, connection_name: &str) -> Result<Client, BenchError> {
        bounded("the connection handshake", Client::handshake(uri, connection_name)).await
    }

    async fn handshake(uri: &Uri, connection_name: &str) -> Result<Client, BenchError> {
        let address = uri.address();
        let mut stream = match TcpStream::connect(address.as_str()).await {
            Ok(stream) => stream,
            Err(source) => return Err(BenchError::Connect { address, source }),
        };
        // Small frames (acks, confirms) must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let (tls_reader, tls_writer) = match &uri.tls {
            None => (None, None),
            Some(options) => {
                let established = super::tls::connect(&mut stream, uri, options).await?;
                (Some(established.reader), Some(established.writer))
            }
        };
        let mut input = Input::from_parts(
            stream,
            BytesMut::with_capacity(CONTROL_READ_CHUNK_BYTES),
            CONTROL_READ_CHUNK_BYTES,
            FRAME_MIN_SIZE,
        );
        if let Some(tls_reader) = tls_reader {
            input = input.with_tls(tls_reader);
        }
        let mut client = Client { input, tls_writer, out: BytesMut::with_capacity(4096), heartbeat_seconds: 0 };
        client.out.extend_from_slice(PROTOCOL_HEADER);
        client.flush().await?;
        let start = match client.next_method("connection.start").await? {
            AMQPClass::Connection(connection::AMQPMethod::Start(start)) => start,
            other => return Err(unexpected("connection.start", &other)),
        };
        let mechanisms = String::from_utf8_lossy(start.mechanisms.as_bytes()).to_string();
        if !mechanisms.split(' ').any(|mechanism| mechanism == "PLAIN") {
            return Err(BenchError::Handshake(format!("the broker offers {mechanisms:?}, the bench speaks PLAIN")));
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
        let tune_ok = connection::TuneOk { channel_max: tune.channel_max, frame_max, heartbeat: tune.heartbeat };
        client.send(0, &AMQPClass::Connection(connection::AMQPMethod::TuneOk(tune_ok)))?;
        let open = connection::Open { virtual_host: uri.vhost.as_str().into() };
        client.send(0, &AMQPClass::Connection(connection::AMQPMethod::Open(open)))?;
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
        let mut out = std::mem::take(&mut self.out);
        let result = match &mut self.tls_writer {
            None => {
                let (result, written) = self.input.source_mut().write_all(out).await;
                out = written;
                result.map(drop)
            }
            Some(tls) => tls.write(self.input.source_mut(), &out).await,
        };
        out.clear();
        self.out = out;
        result.map_err(BenchError::io("a write"))
    }

    /// The next method frame, answering a broker close with close-ok and returning its error.
    async fn next_method(&mut self, expected: &'static str) -> Result<AMQPClass, BenchError> {
        loop {
            let frame = self.input.next_frame(expected).await?;
            match frame.frame_type {
                FRAME_HEARTBEAT => continue,
                FRAME_METHOD => {}
                other => return Err(BenchError::Unexpected { expected, found: format!("a frame of type {other}") }),
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
            BenchError::ChannelClosed { .. } => AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
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
        self.rpc(open, "channel.open-ok", |reply| matches!(reply, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_))))
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
        self.rpc(method, "queue.declare-ok", |reply| matches!(reply, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_))))
            .await
            .map(drop)
    }

    pub async fn delete_queue(&mut self, name: &str) -> Result<(), BenchError> {
        let delete = queue::Delete { queue: name.into(), ..Default::default() };
        let method = AMQPClass::Queue(queue::AMQPMethod::Delete(delete));
        self.rpc(method, "queue.delete-ok", |reply| matches!(reply, AMQPClass::Queue(queue::AMQPMethod::DeleteOk(_))))
            .await
            .map(drop)
    }

    pub async fn declare_exchange(&mut self, name: &str, kind: &str, durable: bool) -> Result<(), BenchError> {
        self.declare_exchange_with(name, kind, durable, FieldTable::default()).await
    }

    pub async fn declare_exchange_with(
        &mut self,
        name: &str,
        kind: &str,
        durable: bool,
        arguments: FieldTable,
    ) -> Result<(), BenchError> {
        let declare =
            exchange::Declare { exchange: name.into(), kind: kind.into(), durable, arguments, ..Default::default() };
        let method = AMQPClass::Exchange(exchange::AMQPMethod::Declare(declare));
        self.rpc(method, "exchange.declare-ok", |reply| {
            matches!(reply, AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(_)))
        })
        .await
        .map(drop)
    }

    pub async fn delete_exchange(&mut self, name: &str) -> Result<(), BenchError> {
        let delete = exchange::Delete { exchange: name.into(), ..Default::default() };
        let method = AMQPClass::Exchange(exchange::AMQPMethod::Delete(delete));
        self.rpc(method, "exchange.delete-ok", |reply| {
            matches!(reply, AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(_)))
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
        self.rpc(method, "queue.bind-ok", |reply| matches!(reply, AMQPClass::Queue(queue::AMQPMethod::BindOk(_))))
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
        self.rpc(method, "queue.unbind-ok", |reply| matches!(reply, AMQPClass::Queue(queue::AMQPMethod::UnbindOk(_))))
            .await
            .map(drop)
    }

    pub async fn confirm_select(&mut self) -> Result<(), BenchError> {
        let select = AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: false }));
        self.rpc(select, "confirm.select-ok", |reply| {
            matches!(reply, AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_)))
        })
        .await
        .map(drop)
    }

    pub async fn qos(&mut self, prefetch_count: u16) -> Result<(), BenchError> {
        let qos = AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos { prefetch_count, global: false }));
        self.rpc(qos, "basic.qos-ok", |reply| matches!(reply, AMQPClass::Basic(basic::AMQPMethod::QosOk(_))))
            .await
            .map(drop)
    }

    pub async fn consume(&mut self, queue_name: &str, no_ack: bool, arguments: &FieldTable) -> Result<(), BenchError> {
        let method = consume_method(queue_name, no_ack, arguments);
        self.rpc(method, "basic.consume-ok", |reply| matches!(reply, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_))))
            .await
            .map(drop)
    }

    /// basic.consume on each of `queue_names`. Only the first waits for its consume-ok: once it
    /// has one, that queue may deliver (at once, if it holds messages) before the others'
    /// consume-oks arrive, so those are sent without waiting and the consume loop passes over
    /// their consume-oks; a refusal closes the channel, which ends the run with the broker's
    /// reply code and text.
    pub async fn consume_all(
        &mut self,
        queue_names: &[String],
        no_ack: bool,
        arguments: &FieldTable,
    ) -> Result<(), BenchError> {
        let Some((first, others)) = queue_names.split_first() else {
            return Ok(());
        };
        self.consume(first, no_ack, arguments).await?;
        for queue_name in others {
            self.send(CHANNEL, &consume_method(queue_name, no_ack, arguments))?;
        }
        self.flush().await
    }

    /// connection.close, then waits (bounded) for close-ok, skipping whatever was in flight.
    pub async fn close(mut self) -> Result<(), BenchError> {
        let close = connection::Close { reply_code: 200, reply_text: "bench done".into(), class_id: 0, method_id: 0 };
        self.send(0, &AMQPClass::Connection(connection::AMQPMethod::Close(close)))?;
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
        let frame_max = self.input.frame_max;
        let (stream, buffer, tls_reader) = self.input.into_parts();
        let (read_half, write_half) = stream.into_split();
        let mut input = Input::from_parts(read_half, buffer, READ_CHUNK_BYTES, frame_max);
        if let Some(tls_reader) = tls_reader {
            input = input.with_tls(tls_reader);
        }
        (input, WriteHalf::new(write_half, self.tls_writer))
    }

    /// Writes one heartbeat frame (connections held idle by connection-count).
    pub async fn send_heartbeat(&mut self) -> Result<(), BenchError> {
        crate::codec::frame::write_heartbeat(&mut self.out);
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
    properties.insert("product".into(), AMQPValue::LongString("spatemq bench".into()));
    properties.insert("version".into(), AMQPValue::LongString(env!("CARGO_PKG_VERSION").into()));
    properties.insert("connection_name".into(), AMQPValue::LongString(connection_name.into()));
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

/// basic.consume of `queue_name` with a broker-chosen consumer tag.
fn consume_method(queue_name: &str, no_ack: bool, arguments: &FieldTable) -> AMQPClass {
    let consume =
        basic::Consume { queue: queue_name.into(), no_ack, arguments: arguments.clone(), ..Default::default() };
    AMQPClass::Basic(basic::AMQPMethod::Consume(consume))
}
