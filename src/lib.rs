//! SpateMQ: an AMQP 0-9-1 message broker built thread-per-core.
//!
//! The binary (`src/main.rs`) is a thin shell over this library. The library exports only what
//! the binary, the criterion benches and the integration tests use: the configuration, the
//! server, logging, the `spatemq bench` entry point, and in `internals` the handful of pieces
//! the benches and tests measure or compare against. Everything else is private to the crate;
//! `docs/architecture.md` draws the layers.

mod alarms;
#[cfg(test)]
mod allocation;
mod amqp;
pub mod bench;
mod broker;
mod clock;
mod codec;
pub mod config;
mod control;
pub mod ctl;
pub mod host_checks;
mod ids;
mod limits;
pub mod logging;
mod management;
pub mod server;
mod shard;
mod store;
mod tls;

/// Pieces of the broker that the criterion benches and the black-box tests use directly. Not
/// an API for other programs: names here follow the code, not a compatibility promise.
pub mod internals {
    pub use crate::amqp::publish_path::PublishPath;
    pub use crate::broker::messages::ShardMsg;
    pub use crate::broker::placement::queue_owner;
    pub use crate::broker::routing::{ExchangeKind, RoutingTable};
    pub use crate::codec::frame::split_frame;
    pub use crate::codec::message::Message;
    pub use crate::ids::{ConnId, Holder, QueueId};
    pub use crate::shard::mailbox::Mailboxes;
    pub use crate::store::record::MessageRecord;
    pub use crate::store::Store;

    /// The hot-path codec functions the codec benchmark times.
    pub mod hotpath {
        pub use crate::codec::hotpath::{
            encode_deliver, encode_publish, parse_content_header, parse_publish, Delivery,
        };
    }
}
