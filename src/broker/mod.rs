//! Broker state independent of the wire: identifiers, messages, exchanges and their routing
//! tables, the definitions writer, RabbitMQ's definitions file and password hashes, and the queue
//! state machine. Nothing here does I/O.

pub(crate) mod accounts;
pub(crate) mod consistent_hash;
pub(crate) mod control;
pub(crate) mod dead_letter;
pub(crate) mod dedup;
pub(crate) mod definitions;
pub(crate) mod delayed;
// Read and written by `ctl export_definitions`/`import_definitions` and `--definitions`, and
// `passwords` by users and login, once they are wired; until then nothing outside the tests
// calls them.
pub(crate) mod definitions_file;
pub(crate) mod definitions_import;
pub(crate) mod durable;
mod equivalence;
pub(crate) mod error;
pub(crate) mod handovers;
mod headers_match;
pub(crate) mod messages;
pub(crate) mod owned_exchange;
mod packed;
pub(crate) mod passwords;
pub(crate) mod payload;
pub(crate) mod placement;
pub(crate) mod policy;
mod policy_changes;
mod priority;
pub(crate) mod queue;
pub(crate) mod queue_args;
pub(crate) mod ready;
pub(crate) mod recovery;
pub(crate) mod reply_to;
pub(crate) mod requests;
pub(crate) mod routing;
mod sequence_table;
pub(crate) mod snapshot;
pub(crate) mod stream_args;
mod topic;
pub(crate) mod users;
