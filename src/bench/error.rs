//! Why a bench run failed, with the broker's own reply code and text when it closed on us.
//!
//! Every failure the load generator can meet has a variant here; the scenario prints it and
//! exits non-zero. Nothing in the bench panics on what a broker sends.

use std::fmt;
use std::io;

use crate::codec::frame::FrameError;
use crate::codec::hotpath::CodecError;

#[derive(Debug)]
pub enum BenchError {
    /// Name resolution or TCP connect failed.
    Connect { address: String, source: io::Error },
    /// A read or write on an open connection failed.
    Io { during: &'static str, source: io::Error },
    /// The broker closed the socket without connection.close.
    Eof { during: &'static str },
    /// A bounded wait on the broker ran out.
    Timeout { waiting_for: &'static str, seconds: u64 },
    /// The broker sent connection.close.
    ConnectionClosed { reply_code: u16, reply_text: String },
    /// The broker sent channel.close.
    ChannelClosed { reply_code: u16, reply_text: String },
    /// The broker refused our login mechanism or asked for something we do not speak.
    Handshake(String),
    /// `amqps://`: the TLS settings or the TLS handshake failed.
    Tls(String),
    /// A frame or method we cannot parse.
    Codec(CodecError),
    /// A method that makes no sense at this point.
    Unexpected { expected: &'static str, found: String },
    /// The client threads or runtimes could not start.
    Runtime(String),
    /// A count-bounded run stopped moving.
    Stalled { seconds: u64 },
}

impl BenchError {
    pub fn io(during: &'static str) -> impl FnOnce(io::Error) -> BenchError {
        move |source| BenchError::Io { during, source }
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Connect { address, source } => {
                write!(f, "cannot connect to {address}: {source}")
            }
            BenchError::Io { during, source } => write!(f, "I/O error during {during}: {source}"),
            BenchError::Eof { during } => {
                write!(f, "the broker closed the connection during {during}")
            }
            BenchError::Timeout { waiting_for, seconds } => {
                write!(f, "no answer from the broker within {seconds} s while waiting for {waiting_for}")
            }
            BenchError::ConnectionClosed { reply_code, reply_text } => {
                write!(f, "the broker closed the connection: {reply_code} {reply_text}")
            }
            BenchError::ChannelClosed { reply_code, reply_text } => {
                write!(f, "the broker closed the channel: {reply_code} {reply_text}")
            }
            BenchError::Handshake(message) => write!(f, "handshake failed: {message}"),
            BenchError::Tls(message) => write!(f, "TLS: {message}"),
            BenchError::Codec(error) => write!(f, "bad data from the broker: {error}"),
            BenchError::Unexpected { expected, found } => {
                write!(f, "expected {expected} from the broker, got {found}")
            }
            BenchError::Runtime(message) => write!(f, "cannot start the client threads: {message}"),
            BenchError::Stalled { seconds } => {
                write!(f, "no message was published, confirmed or consumed for {seconds} s")
            }
        }
    }
}

impl std::error::Error for BenchError {}

impl From<CodecError> for BenchError {
    fn from(error: CodecError) -> Self {
        BenchError::Codec(error)
    }
}

impl From<FrameError> for BenchError {
    fn from(error: FrameError) -> Self {
        BenchError::Codec(CodecError::Frame(error))
    }
}
