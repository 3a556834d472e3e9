//! The connection handshake: protocol header, start/start-ok (PLAIN, AMQPLAIN), tune/tune-ok,
//! open/open-ok.
//!
//! Authentication follows RabbitMQ's internal backend: the user and its password hash come
//! from the definitions snapshot; `guest` is accepted from loopback only (RabbitMQ's default
//! `loopback_users`); a refused login is connection.close 403 for a client with the
//! `authentication_failure_close` capability, a closed socket for others, and one log line
//! naming the user and the address (never the password). Errors before
//! connection.open are not told (RabbitMQ closes the socket), except the refused login and
//! a refused tune-ok. Ends with the negotiated heartbeat; the caller bounds it in time.
//!
//! A state machine without I/O: the shard's socket driver hands it the first bytes, then
//! frames, and it answers into the connection's output.

use amq_protocol::protocol::{connection as method, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};

use super::admission::{ConnectionLimits, ConnectionSlot, NamedLimits};
use super::connection::{send_connection_close, Connection};
use super::dispatch::{cannot_decode, Fault, NO_METHOD};
use super::port::Port;
use crate::broker::error::*;
use crate::broker::users::LOOPBACK_USERS;
use crate::codec::frame::{
    describe, is_well_formed, FrameError, RawFrame, FRAME_HEARTBEAT, FRAME_METHOD, PROTOCOL_HEADER,
};
use crate::codec::methods::{encode_method, is_known_method, parse_method};
use crate::limits::{FRAME_MAX_BYTES, FRAME_MIN_BYTES, HEARTBEAT_SECONDS};

/// A user name is logged up to this many bytes.
const LOGGED_NAME_MAX: usize = 128;
/// The AMQP 0-9 protocol header, which RabbitMQ answers as 0-9-1.
const PROTOCOL_HEADER_0_9: &[u8; 8] = b"AMQP\x01\x01\x00\x09";
/// RabbitMQ's smallest channel_max.
const CHANNEL_MIN: u32 = 1;

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
    limits: ConnectionLimits,
    /// Taken at connection.open: the connection's place under the node's connection limit.
    slot: Option<ConnectionSlot>,
    /// A replay of a handshake another shard already accepted (`shard::handover`): the
    /// password and the vhost permission are not checked again, as RabbitMQ keeps an open
    /// connection through a password change or a permission cleared.
    replay: bool,
}

impl Handshake {
    pub fn new(loopback_peer: bool) -> Handshake {
        Handshake {
            stage: Stage::ProtocolHeader,
            loopback_peer,
            limits: ConnectionLimits::default(),
            slot: None,
            replay: false,
        }
    }

    /// For the replay of a handshake another shard accepted (`shard::handover`).
    pub fn replaying(self) -> Handshake {
        Handshake { replay: true, ..self }
    }

    /// The configured channel_max and connection limit (RabbitMQ's defaults otherwise).
    pub fn with_limits(self, limits: ConnectionLimits) -> Handshake {
        Handshake { limits, ..self }
    }

    /// After `Step::Open`: the connection's slot under the node's limit, to be held until the
    /// connection is torn down.
    pub fn take_slot(&mut self) -> Option<ConnectionSlot> {
        self.slot.take()
    }

    /// The largest frame the handshake accepts (frame_max is not negotiated yet).
    pub fn frame_max(&self, connection: &Connection) -> u32 {
        FRAME_MIN_BYTES.max(connection.frame_max.get())
    }

    /// Looks at the first bytes the client sent. A wrong header gets the header this broker
    /// speaks, then the socket closes (spec 4.2.2). The AMQP 0-9 header is taken as 0-9-1, as
    /// RabbitMQ takes it.
    pub fn protocol_header(&mut self, connection: &Connection, buffered: &[u8]) -> Step {
        debug_assert!(matches!(self.stage, Stage::ProtocolHeader), "the protocol header comes first");
        let length = PROTOCOL_HEADER.len();
        let headers: [&[u8]; 2] = [PROTOCOL_HEADER, PROTOCOL_HEADER_0_9];
        if buffered.len() < length && headers.iter().any(|header| header.starts_with(buffered)) {
            return Step::Continue;
        }
        if !headers.iter().any(|header| buffered.get(..length) == Some(*header)) {
            connection.write_with(|out| out.extend_from_slice(PROTOCOL_HEADER));
            self.stage = Stage::Done;
            return Step::Refused;
        }
        connection.write_with(|out| {
            let _ = encode_method(out, 0, &start_method(connection.peer_certificate_cn.borrow().is_some()));
        });
        self.stage = Stage::StartOk;
        Step::HeaderAccepted(length)
    }

    /// A frame that could not be read within the handshake's frame_max.
    pub fn frame_error(&mut self, connection: &Connection, error: FrameError) -> Step {
        self.fail(connection, AmqpError::from_codec(error.reply_code(), error), NO_METHOD)
    }

    /// The next frame of the handshake, checked as RabbitMQ's reader checks it: a frame on
    /// another channel, then its shape, then heartbeats (ignored), then the method the stage
    /// expects.
    pub fn frame(&mut self, port: &impl Port, connection: &Connection, frame: RawFrame) -> Step {
        if matches!(self.stage, Stage::ProtocolHeader | Stage::Done) {
            return Step::Refused;
        }
        if frame.channel != 0 {
            let error = AmqpError::new(UNEXPECTED_FRAME, describe(frame.frame_type, &frame.payload));
            return self.fail(connection, error, NO_METHOD);
        }
        if !is_well_formed(frame.frame_type, &frame.payload) {
            let text = format!("{}: unknown_frame", describe(frame.frame_type, &frame.payload));
            return self.fail(connection, AmqpError::new(FRAME_ERROR, text), NO_METHOD);
        }
        match frame.frame_type {
            FRAME_HEARTBEAT => return Step::Continue,
            FRAME_METHOD => {}
            other => {
                let error = AmqpError::new(UNEXPECTED_FRAME, describe(other, &frame.payload));
                return self.fail(connection, error, NO_METHOD);
            }
        }
        let ids = crate::codec::hotpath::method_ids(&frame.payload).unwrap_or_default();
        if !is_known_method(ids.0, ids.1) {
            // RabbitMQ's reader crashes on a method id it does not know: the socket closes.
            self.stage = Stage::Done;
            return Step::Refused;
        }
        let method = match parse_method(&frame.payload) {
            Ok(method) => method,
            Err(_) => {
                let Fault { error, class_id, method_id } = cannot_decode(&frame.payload, ids);
                return self.fail(connection, error, (class_id, method_id));
            }
        };
        match (&self.stage, method) {
            (Stage::StartOk, AMQPClass::Connection(method::AMQPMethod::StartOk(start_ok))) => {
                self.start_ok(port, connection, &start_ok)
            }
            (Stage::TuneOk, AMQPClass::Connection(method::AMQPMethod::TuneOk(tune_ok))) => {
                self.tune_ok(connection, &tune_ok)
            }
            (Stage::Open { heartbeat }, AMQPClass::Connection(method::AMQPMethod::Open(open))) => {
                let heartbeat = *heartbeat;
                self.open(port, connection, &open, heartbeat)
            }
            (stage, _) => {
                let text = format!("unexpected method in connection state {}", stage.name());
                self.fail(connection, AmqpError::new(CHANNEL_ERROR, text), ids)
            }
        }
    }

    fn start_ok(&mut self, port: &impl Port, connection: &Connection, start_ok: &method::StartOk) -> Step {
        let properties = &start_ok.client_properties;
        connection.supports_blocked.set(announces_capability(properties, "connection.blocked"));
        connection.supports_cancel_notify.set(announces_capability(properties, "consumer_cancel_notify"));
        let told = announces_capability(properties, "authentication_failure_close");
        let mechanism = start_ok.mechanism.as_str();
        let external = connection.peer_certificate_cn.borrow().clone();
        let credentials = match (mechanism, external) {
            // SASL EXTERNAL (RabbitMQ's rabbitmq_auth_mechanism_ssl): the user is the verified
            // client certificate's CN; no password is asked.
            ("EXTERNAL", Some(common_name)) => {
                if let Err(reason) = self.authenticate_external(port, &common_name) {
                    crate::info!(
                        "connection {} ({}) refused: {reason}, mechanism EXTERNAL",
                        connection.id,
                        connection.name.borrow()
                    );
                    return self.refuse_login(connection, mechanism, told);
                }
                *connection.user.borrow_mut() = common_name;
                return self.send_tune(connection);
            }
            ("PLAIN", _) => parse_plain(start_ok.response.as_bytes()),
            ("AMQPLAIN", _) => parse_amqplain(start_ok.response.as_bytes()),
            _ => {
                let error = AmqpError::new(COMMAND_INVALID, format!("unknown authentication mechanism '{mechanism}'"));
                return self.fail(connection, error, (10, 11));
            }
        };
        let Some((user, password)) = credentials else {
            let error = AmqpError::new(SYNTAX_ERROR, format!("malformed {mechanism} response"));
            return self.fail(connection, error, (10, 11));
        };
        let checked = if self.replay { Ok(()) } else { self.authenticate(port, &user, &password) };
        if let Err(reason) = checked {
            crate::info!(
                "connection {} ({}) refused: {reason}, mechanism {mechanism}",
                connection.id,
                connection.name.borrow()
            );
            return self.refuse_login(connection, mechanism, told);
        }
        *connection.user.borrow_mut() = user;
        self.send_tune(connection)
    }

    fn send_tune(&mut self, connection: &Connection) -> Step {
        let tune = AMQPClass::Connection(method::AMQPMethod::Tune(method::Tune {
            channel_max: self.limits.channel_max,
            frame_max: FRAME_MAX_BYTES,
            heartbeat: HEARTBEAT_SECONDS,
        }));
        connection.write_with(|out| {
            let _ = encode_method(out, 0, &tune);
        });
        self.stage = Stage::TuneOk;
        Step::Continue
    }

    /// RabbitMQ's internal backend: the user exists, its password hash matches, and a
    /// loopback-only user comes from loopback. The error is the log's reason.
    fn authenticate(&self, port: &impl Port, user: &str, password: &str) -> Result<(), String> {
        let shown: String = user.chars().take(LOGGED_NAME_MAX).collect();
        let snapshot = port.snapshot();
        let verified = snapshot.user(user).is_some_and(|found| found.password.verify(password.as_bytes()));
        if !verified {
            return Err(format!("user '{shown}' - invalid credentials"));
        }
        if LOOPBACK_USERS.contains(&user) && !self.loopback_peer {
            return Err(format!("user '{shown}' can only connect via localhost"));
        }
        Ok(())
    }

    /// EXTERNAL: the certificate's CN names an existing user (loopback-only users still only
    /// from loopback).
    fn authenticate_external(&self, port: &impl Port, user: &str) -> Result<(), String> {
        let shown: String = user.chars().take(LOGGED_NAME_MAX).collect();
        if port.snapshot().user(user).is_none() {
            return Err(format!("user '{shown}' (certificate CN) - invalid credentials"));
        }
        if LOOPBACK_USERS.contains(&user) && !self.loopback_peer {
            return Err(format!("user '{shown}' can only connect via localhost"));
        }
        Ok(())
    }

    /// RabbitMQ's auth_fail: the client hears a generic text (with no method: 0/0) only if it
    /// announced `authentication_failure_close`; the reason stays in the log.
    fn refuse_login(&mut self, connection: &Connection, mechanism: &str, told: bool) -> Step {
        if told {
            let text = format!(
                "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
            );
            send_connection_close(connection, &AmqpError::new(ACCESS_REFUSED, text), 0, 0);
        }
        self.stage = Stage::Done;
        Step::Refused
    }

    fn tune_ok(&mut self, connection: &Connection, tune_ok: &method::TuneOk) -> Step {
        let checks = [
            negotiate("frame_max", FRAME_MIN_BYTES, FRAME_MAX_BYTES, tune_ok.frame_max),
            negotiate("channel_max", CHANNEL_MIN, u32::from(self.limits.channel_max), u32::from(tune_ok.channel_max)),
        ];
        if let Some(error) = checks.into_iter().flatten().next() {
            // Still tuning: RabbitMQ 3.10 closes the socket without a word (checked against
            // the running broker by the differential test), and so does this.
            return self.fail(connection, error, (10, 30));
        }
        connection.frame_max.set(tune_ok.frame_max);
        connection.channel_max.set(tune_ok.channel_max);
        self.stage = Stage::Open { heartbeat: tune_ok.heartbeat };
        Step::Continue
    }

    fn open(&mut self, port: &impl Port, connection: &Connection, open: &method::Open, heartbeat: u16) -> Step {
        // RabbitMQ checks the node's connection limit first, then the vhost.
        let mut slot = match self.limits.slots.take() {
            Ok(slot) => slot,
            Err(error) => return self.refuse(connection, error, (10, 40)),
        };
        let vhost = open.virtual_host.as_str().to_string();
        let snapshot = port.snapshot();
        if snapshot.vhost(&vhost).is_none() {
            return self.refuse(connection, AmqpError::new(NOT_ALLOWED, format!("vhost {vhost} not found")), (10, 40));
        }
        let user = connection.user.borrow().clone();
        let named = NamedLimits {
            vhost: &vhost,
            vhost_max: snapshot.vhost(&vhost).and_then(|found| found.limits.max_connections),
            user: &user,
            user_max: snapshot.user(&user).and_then(|found| found.limits.max_connections),
        };
        if let Err(error) = self.limits.slots.admit(&mut slot, &named) {
            return self.refuse(connection, error, (10, 40));
        }
        if !self.replay && snapshot.permissions(&user, &vhost).is_none() {
            let text = format!("access to vhost '{vhost}' refused for user '{user}'");
            return self.refuse(connection, AmqpError::new(NOT_ALLOWED, text), (10, 40));
        }
        *connection.vhost.borrow_mut() = vhost;
        self.slot = Some(slot);
        let open_ok = AMQPClass::Connection(method::AMQPMethod::OpenOk(method::OpenOk {}));
        connection.write_with(|out| {
            let _ = encode_method(out, 0, &open_ok);
        });
        self.stage = Stage::Done;
        Step::Open { heartbeat }
    }

    /// An error in the handshake, as RabbitMQ's reader handles it: told to the client while
    /// opening; while starting or tuning the socket closes without a word (RabbitMQ does not
    /// trust the client yet).
    fn fail(&mut self, connection: &Connection, error: AmqpError, ids: (u16, u16)) -> Step {
        if matches!(self.stage, Stage::Open { .. }) {
            return self.refuse(connection, error, ids);
        }
        crate::info!("connection {} dropped in the handshake: {}", connection.id, error.reply_text);
        self.stage = Stage::Done;
        Step::Refused
    }

    fn refuse(&mut self, connection: &Connection, error: AmqpError, ids: (u16, u16)) -> Step {
        crate::info!("connection {} refused: {}", connection.id, error.reply_text);
        send_connection_close(connection, &error, ids.0, ids.1);
        self.stage = Stage::Done;
        Step::Refused
    }
}

impl Stage {
    /// RabbitMQ's name of the connection state.
    fn name(&self) -> &'static str {
        match self {
            Stage::ProtocolHeader => "pre_init",
            Stage::StartOk => "starting",
            Stage::TuneOk => "tuning",
            Stage::Open { .. } => "opening",
            Stage::Done => "closed",
        }
    }
}

/// RabbitMQ's validate_negotiated_integer_value: the client's value may not be below the
/// minimum, nor 0 ("no limit") or above the broker's maximum.
fn negotiate(field: &str, minimum: u32, maximum: u32, client: u32) -> Option<AmqpError> {
    if client != 0 && client < minimum {
        let text = format!("negotiated {field} = {client} is lower than the minimum allowed value ({minimum})");
        return Some(AmqpError::new(NOT_ALLOWED, text));
    }
    if client == 0 || client > maximum {
        let detail = if field == "channel_max" && client == 0 { " (no limit)" } else { "" };
        let text =
            format!("negotiated {field} = {client}{detail} is higher than the maximum allowed value ({maximum})");
        return Some(AmqpError::new(NOT_ALLOWED, text));
    }
    None
}

fn announces_capability(client_properties: &FieldTable, capability: &str) -> bool {
    match client_properties.inner().get("capabilities") {
        Some(AMQPValue::FieldTable(capabilities)) => {
            matches!(capabilities.inner().get(capability), Some(AMQPValue::Boolean(true)))
        }
        _ => false,
    }
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

/// connection.start; EXTERNAL is offered to a client that presented a verified certificate.
fn start_method(external: bool) -> AMQPClass {
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
        mechanisms: LongString::from(if external { "EXTERNAL PLAIN AMQPLAIN" } else { "PLAIN AMQPLAIN" }),
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
