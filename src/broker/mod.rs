//! Broker state independent of the wire: identifiers, messages, exchanges and their routing
//! tables, the definitions writer, and the queue state machine. Nothing here does I/O.

pub mod dead_letter;
pub mod definitions;
pub mod durable;
pub mod error;
pub mod headers_match;
pub mod messages;
pub mod placement;
pub mod priority;
pub mod queue;
pub mod queue_args;
pub mod ready;
pub mod recovery;
pub mod reply_to;
pub mod requests;
pub mod routing;
pub mod snapshot;
pub mod topic;
