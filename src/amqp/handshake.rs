//! The connection handshake: protocol header, start/start-ok (PLAIN, AMQPLAIN), tune/tune-ok,
//! open/open-ok.
//!
//! Authentication follows RabbitMQ's defaults: user guest/guest, accepted from loopback
//! only; a refused login is connection.close 403 (the `authentication_failure_close`
//! capability). Ends with the negotiated heartbeat; the caller bounds it in time.
//!
//! A state machine without I/O: the shard's socket driver hands it the first bytes, then
//! frames, and it answers into the connection's output.

use amq_protocol::protocol::{connection as method, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};

use super::connection::{send_connection_close, Connection};
use super::port::Port;
use crate::broker::error::{AmqpError, ACCESS_REFUSED, COMMAND_INVALID, FRAME_ERROR, NOT_ALLOWED, UNEXPECTED_FRAME};
use crate::codec::frame::{FrameError, RawFrame, FRAME_METHOD, PROTOCOL_HEADER};
use crate::codec::methods::{encode_method, parse_method};
use crate::limits::{CHANNEL_MAX, FRAME_MAX_BYTES, FRAME_MIN_BYTES, HEARTBEAT_SECONDS};

pub const DEFAULT_USER: &str = "guest";
const DEFAULT_PASSWORD: &str = "guest";

/// Where a connection is in the handshake.
enum Stage {
    ProtocolHeader,
    StartOk,
    TuneOk,
    Open {
        heartbeat: u16,
    },
    /// Open-ok sent, or the connection refused: no frame is expected any more.
    Done,
}

/// What the socket driver does after handing the handshake some input.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Read more: the handshake goes on.
    Continue,
    /// The protocol header was accepted: drop this many bytes from the read buffer.
    HeaderAccepted(usize),
    /// connection.open-ok was sent; the client asked for heartbeats every so many seconds (0: none).
    Open { heartbeat: u16 },
    /// The connection was refused; what the client should hear is already in the output.
    Refused,
}

/// The handshake of one connection, fed bytes and frames by the socket driver; it writes its
/// answers to the connection's output and never touches a socket.
pub struct Handshake {
    stage: Stage,
    loopback_peer: bool,
}

impl Handshake {
    pub fn new(loopback_peer: bool) -> Handshake {
        Handshake { stage: Stage::ProtocolHeader, loopback_peer }
    }

    /// The largest frame the handshake accepts (frame_max is not negotiated yet).
    pub fn frame_max(&self, connection: &Connection) -> u32 {
        FRAME_MIN_BYTES.max(connection.frame_max.get())
    }

    /// Looks at the first bytes the client sent. A wrong header gets the header this broker
    /// speaks, then the socket closes (spec 4.2.2).
    pub fn protocol_header(&mut self, connection: &Connection, buffered: &[u8]) -> Step {
        debug_assert!(matches!(self.stage, Stage::ProtocolHeader), "the protocol header comes first");
        let length = PROTOCOL_HEADER.len();
        if buffered.len() < length && PROTOCOL_HEADER.starts_with(buffered) {
            return Step::Continue;
        }
        if buffered.len() < length || &buffered[..length] != PROTOCOL_HEADER {
            connection.write_with(|out| out.extend_from_slice(PROTOCOL_HEADER));
            self.stage = Stage::Done;
            return Step::Refused;
        }
        connection.write_with(|out| {
            let _ = encode_method(out, 0, &start_method());
        });
        self.stage = Stage::StartOk;
        Step::HeaderAccepted(length)
    }

    /// A frame that could not be read within the handshake's frame_max.
    pub fn frame_error(&mut self, connection: &Connection, error: FrameError) -> Step {
        self.stage = Stage::Done;
        send_connection_close(connection, &AmqpError::from_codec(error.reply_code(), error), 0, 0);
        Step::Refused
    }

    /// The next frame of the handshake, which must be the method the stage expects.
    pub fn frame(&mut self, port: &impl Port, connection: &Connection, frame: RawFrame) -> Step {
        if frame.frame_type != FRAME_METHOD || frame.channel != 0 {
            let error = AmqpError::new(UNEXPECTED_FRAME, "expected a method frame on channel 0");
            return self.refuse(connection, error, (0, 0));
        }
        let method = match parse_method(&frame.payload) {
            Ok(method) => method,
            Err(error) => return self.refuse(connection, AmqpError::from_codec(error.reply_code(), error), (0, 0)),
        };
        match (std::mem::replace(&mut self.stage, Stage::Done), method) {
            (Stage::StartOk, AMQPClass::Connection(method::AMQPMethod::StartOk(start_ok))) => {
                self.start_ok(connection, &start_ok)
            }
            (Stage::StartOk, _) => {
                self.refuse(connection, AmqpError::new(COMMAND_INVALID, "expected connection.start-ok"), (10, 11))
            }
            (Stage::TuneOk, AMQPClass::Connection(method::AMQPMethod::TuneOk(tune_ok))) => {
                self.tune_ok(connection, &tune_ok)
            }
            (Stage::TuneOk, _) => {
                self.refuse(connection, AmqpError::new(COMMAND_INVALID, "expected connection.tune-ok"), (10, 31))
            }
            (Stage::Open { heartbeat }, AMQPClass::Connection(method::AMQPMethod::Open(open))) => {
                self.open(port, connection, &open, heartbeat)
            }
            (Stage::Open { .. }, _) => {
                self.refuse(connection, AmqpError::new(COMMAND_INVALID, "expected connection.open"), (10, 40))
            }
            (Stage::ProtocolHeader | Stage::Done, _) => Step::Refused,
        }
    }

    fn start_ok(&mut self, connection: &Connection, start_ok: &method::StartOk) -> Step {
        connection.supports_blocked.set(announces_capability(&start_ok.client_properties, "connection.blocked"));
        if let Err(error) = authenticate(start_ok, self.loopback_peer) {
            return self.refuse(connection, error, (10, 11));
        }
        let tune = AMQPClass::Connection(method::AMQPMethod::Tune(method::Tune {
            channel_max: CHANNEL_MAX,
            frame_max: FRAME_MAX_BYTES,
            heartbeat: HEARTBEAT_SECONDS,
        }));
        connection.write_with(|out| {
            let _ = encode_method(out, 0, &tune);
        });
        self.stage = Stage::TuneOk;
        Step::Continue
    }

    fn tune_ok(&mut self, connection: &Connection, tune_ok: &method::TuneOk) -> Step {
        let frame_max = if tune_ok.frame_max == 0 { FRAME_MAX_BYTES } else { tune_ok.frame_max.min(FRAME_MAX_BYTES) };
        if frame_max < FRAME_MIN_BYTES {
            let error = AmqpError::new(FRAME_ERROR, format!("frame_max={frame_max} < {FRAME_MIN_BYTES} min size"));
            return self.refuse(connection, error, (10, 31));
        }
        connection.frame_max.set(frame_max);
        let channel_max = if tune_ok.channel_max == 0 { CHANNEL_MAX } else { tune_ok.channel_max.min(CHANNEL_MAX) };
        connection.channel_max.set(channel_max);
        self.stage = Stage::Open { heartbeat: tune_ok.heartbeat };
        Step::Continue
    }

    fn open(&mut self, port: &impl Port, connection: &Connection, open: &method::Open, heartbeat: u16) -> Step {
        let vhost = open.virtual_host.as_str().to_string();
        if port.snapshot().vhost(&vhost).is_none() {
            return self.refuse(connection, AmqpError::new(NOT_ALLOWED, format!("vhost {vhost} not found")), (10, 40));
        }
        *connection.vhost.borrow_mut() = vhost;
        let open_ok = AMQPClass::Connection(method::AMQPMethod::OpenOk(method::OpenOk {}));
        connection.write_with(|out| {
            let _ = encode_method(out, 0, &open_ok);
        });
        self.stage = Stage::Done;
        Step::Open { heartbeat }
    }

    fn refuse(&mut self, connection: &Connection, error: AmqpError, ids: (u16, u16)) -> Step {
        crate::info!("connection {} refused: {}", connection.id, error.reply_text);
        send_connection_close(connection, &error, ids.0, ids.1);
        self.stage = Stage::Done;
        Step::Refused
    }
}

fn announces_capability(client_properties: &FieldTable, capability: &str) -> bool {
    match client_properties.inner().get("capabilities") {
        Some(AMQPValue::FieldTable(capabilities)) => {
            matches!(capabilities.inner().get(capability), Some(AMQPValue::Boolean(true)))
        }
        _ => false,
    }
}

fn authenticate(start_ok: &method::StartOk, loopback_peer: bool) -> Result<(), AmqpError> {
    let mechanism = start_ok.mechanism.as_str();
    let credentials = match mechanism {
        "PLAIN" => parse_plain(start_ok.response.as_bytes()),
        "AMQPLAIN" => parse_amqplain(start_ok.response.as_bytes()),
        _ => None,
    };
    let refused = || {
        AmqpError::new(
            ACCESS_REFUSED,
            format!(
                "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
            ),
        )
    };
    let Some((user, password)) = credentials else {
        return Err(refused());
    };
    if user != DEFAULT_USER || password != DEFAULT_PASSWORD {
        return Err(refused());
    }
    if !loopback_peer {
        return Err(AmqpError::new(ACCESS_REFUSED, "user 'guest' can only connect via localhost".to_string()));
    }
    Ok(())
}

/// PLAIN: `[authzid] NUL authcid NUL password`.
fn parse_plain(response: &[u8]) -> Option<(String, String)> {
    let mut parts = response.split(|byte| *byte == 0);
    let _authorization = parts.next()?;
    let user = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let password = String::from_utf8(parts.next()?.to_vec()).ok()?;
    Some((user, password))
}

/// AMQPLAIN: a field table without its length prefix, holding LOGIN and PASSWORD.
fn parse_amqplain(response: &[u8]) -> Option<(String, String)> {
    let (mut user, mut password) = (None, None);
    let mut rest = response;
    while !rest.is_empty() {
        let key_length = usize::from(*rest.first()?);
        let key = rest.get(1..1 + key_length)?;
        let kind = *rest.get(1 + key_length)?;
        if kind != b'S' {
            return None;
        }
        let length_bytes = rest.get(2 + key_length..6 + key_length)?;
        let length = u32::from_be_bytes(length_bytes.try_into().ok()?) as usize;
        let value = rest.get(6 + key_length..6 + key_length + length)?;
        let value = String::from_utf8(value.to_vec()).ok()?;
        match key {
            b"LOGIN" => user = Some(value),
            b"PASSWORD" => password = Some(value),
            _ => {}
        }
        rest = &rest[6 + key_length + length..];
    }
    Some((user?, password?))
}

fn start_method() -> AMQPClass {
    let mut capabilities = FieldTable::default();
    for capability in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        capabilities.insert(capability.into(), AMQPValue::Boolean(true));
    }
    let mut properties = FieldTable::default();
    properties.insert("capabilities".into(), AMQPValue::FieldTable(capabilities));
    for (key, value) in [
        ("product", "SpateMQ"),
        ("version", env!("CARGO_PKG_VERSION")),
        ("platform", "Rust"),
        ("cluster_name", "spatemq"),
        ("copyright", "The SpateMQ authors"),
        ("information", "Licensed under the Apache License 2.0"),
    ] {
        properties.insert(key.into(), AMQPValue::LongString(LongString::from(value)));
    }
    AMQPClass::Connection(method::AMQPMethod::Start(method::Start {
        version_major: 0,
        version_minor: 9,
        server_properties: properties,
        mechanisms: LongString::from("PLAIN AMQPLAIN"),
        locales: LongString::from("en_US"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_amqplain_credentials_parse() {
        assert_eq!(parse_plain(b"\0guest\0guest"), Some(("guest".into(), "guest".into())));
        let mut amqplain = Vec::new();
        for (key, value) in [("LOGIN", "guest"), ("PASSWORD", "secret")] {
            amqplain.push(key.len() as u8);
            amqplain.extend_from_slice(key.as_bytes());
            amqplain.push(b'S');
            amqplain.extend_from_slice(&(value.len() as u32).to_be_bytes());
            amqplain.extend_from_slice(value.as_bytes());
        }
        assert_eq!(parse_amqplain(&amqplain), Some(("guest".into(), "secret".into())));
        assert_eq!(parse_amqplain(&amqplain[..amqplain.len() - 1]), None);
    }
}
