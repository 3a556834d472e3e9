//! Broker state independent of the wire: identifiers, messages, exchanges and their routing
//! tables, the definitions writer, and the queue state machine. Nothing here does I/O.

pub(crate) mod accounts;
pub(crate) mod control;
pub(crate) mod dead_letter;
pub(crate) mod definitions;
pub(crate) mod durable;
mod equivalence;
pub(crate) mod error;
mod headers_match;
pub(crate) mod messages;
pub(crate) mod passwords;
pub(crate) mod placement;
mod priority;
pub(crate) mod queue;
pub(crate) mod queue_args;
pub(crate) mod ready;
pub(crate) mod recovery;
pub(crate) mod reply_to;
pub(crate) mod requests;
pub(crate) mod routing;
pub(crate) mod snapshot;
mod topic;
pub(crate) mod users;
