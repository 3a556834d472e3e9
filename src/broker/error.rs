//! AMQP errors raised by broker logic, with RabbitMQ's reply codes and texts.
//!
//! Texts follow RabbitMQ's wording where clients or tutorials show them to users (for example
//! "inequivalent arg 'durable' ..."), so a user switching brokers sees the same messages.

use std::fmt;

pub const CONTENT_TOO_LARGE: u16 = 311;
pub const NO_ROUTE: u16 = 312;
pub const NO_CONSUMERS: u16 = 313;
pub const CONNECTION_FORCED: u16 = 320;
pub const INVALID_PATH: u16 = 402;
pub const ACCESS_REFUSED: u16 = 403;
pub const NOT_FOUND: u16 = 404;
pub const RESOURCE_LOCKED: u16 = 405;
pub const PRECONDITION_FAILED: u16 = 406;
pub const FRAME_ERROR: u16 = 501;
pub const SYNTAX_ERROR: u16 = 502;
pub const COMMAND_INVALID: u16 = 503;
pub const CHANNEL_ERROR: u16 = 504;
pub const UNEXPECTED_FRAME: u16 = 505;
pub const RESOURCE_ERROR: u16 = 506;
pub const NOT_ALLOWED: u16 = 530;
pub const NOT_IMPLEMENTED: u16 = 540;
pub const INTERNAL_ERROR: u16 = 541;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmqpError {
    pub reply_code: u16,
    pub reply_text: String,
}

fn code_name(code: u16) -> &'static str {
    match code {
        CONTENT_TOO_LARGE => "CONTENT_TOO_LARGE",
        NO_ROUTE => "NO_ROUTE",
        NO_CONSUMERS => "NO_CONSUMERS",
        CONNECTION_FORCED => "CONNECTION_FORCED",
        INVALID_PATH => "INVALID_PATH",
        ACCESS_REFUSED => "ACCESS_REFUSED",
        NOT_FOUND => "NOT_FOUND",
        RESOURCE_LOCKED => "RESOURCE_LOCKED",
        PRECONDITION_FAILED => "PRECONDITION_FAILED",
        FRAME_ERROR => "FRAME_ERROR",
        SYNTAX_ERROR => "SYNTAX_ERROR",
        COMMAND_INVALID => "COMMAND_INVALID",
        CHANNEL_ERROR => "CHANNEL_ERROR",
        UNEXPECTED_FRAME => "UNEXPECTED_FRAME",
        RESOURCE_ERROR => "RESOURCE_ERROR",
        NOT_ALLOWED => "NOT_ALLOWED",
        NOT_IMPLEMENTED => "NOT_IMPLEMENTED",
        INTERNAL_ERROR => "INTERNAL_ERROR",
        _ => "ERROR",
    }
}

impl AmqpError {
    /// Builds `CODE_NAME - detail`, RabbitMQ's reply-text shape.
    pub fn new(reply_code: u16, detail: impl fmt::Display) -> AmqpError {
        AmqpError { reply_code, reply_text: format!("{} - {}", code_name(reply_code), detail) }
    }

    /// Wraps an error whose text already has RabbitMQ's `CODE_NAME - detail` shape. Syntax
    /// errors in method arguments are reported as RabbitMQ does: 501 "cannot decode".
    pub fn from_codec(reply_code: u16, text: impl fmt::Display) -> AmqpError {
        let text = text.to_string();
        let detail = text.split_once(" - ").map_or(text.as_str(), |(_, detail)| detail);
        if reply_code == SYNTAX_ERROR {
            return AmqpError::new(FRAME_ERROR, format!("cannot decode method frame: {detail}"));
        }
        AmqpError::new(reply_code, detail)
    }

    /// Connection-level codes close the connection; the rest close only the channel.
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self.reply_code,
            CONNECTION_FORCED
                | INVALID_PATH
                | FRAME_ERROR
                | SYNTAX_ERROR
                | COMMAND_INVALID
                | CHANNEL_ERROR
                | UNEXPECTED_FRAME
                | RESOURCE_ERROR
                | NOT_ALLOWED
                | NOT_IMPLEMENTED
                | INTERNAL_ERROR
        )
    }

    pub fn not_found(kind: &str, name: &str, vhost: &str) -> AmqpError {
        AmqpError::new(NOT_FOUND, format!("no {kind} '{name}' in vhost '{vhost}'"))
    }

    pub fn reserved_name(kind: &str, name: &str) -> AmqpError {
        AmqpError::new(ACCESS_REFUSED, format!("{kind} name '{name}' contains reserved prefix 'amq.*'"))
    }

    pub fn inequivalent(arg: &str, kind: &str, name: &str, vhost: &str, received: &str, current: &str) -> AmqpError {
        AmqpError::new(
            PRECONDITION_FAILED,
            format!("inequivalent arg '{arg}' for {kind} '{name}' in vhost '{vhost}': received '{received}' but current is '{current}'"),
        )
    }

    pub fn exclusive_locked(name: &str, vhost: &str) -> AmqpError {
        AmqpError::new(
            RESOURCE_LOCKED,
            format!(
                "cannot obtain exclusive access to locked queue '{name}' in vhost '{vhost}'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration."
            ),
        )
    }
}

impl fmt::Display for AmqpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reply_text, self.reply_code)
    }
}

impl std::error::Error for AmqpError {}
