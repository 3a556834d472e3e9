//! What an operator asks a running broker through its control socket (`spatemq ctl`), as
//! plain data: the requests each shard answers and their answers.
//!
//! Changes of users, vhosts, permissions and policies go to the definitions writer (shard 0); listings
//! go to every shard, each answering for what it holds (the queues it owns, the connections
//! it serves). The answer travels back on a channel the asking thread waits on.

use std::sync::mpsc::Sender;

use std::sync::Arc;

use super::error::AmqpError;
use super::passwords::PasswordHash;
use super::requests::{AdminRequest, QueueRequest, ReplyBody};
use super::users::Permissions;
use crate::codec::message::Message;
use crate::ids::{Holder, QueueId};

/// A request and where its answer goes.
pub struct ControlMsg {
    pub request: ControlRequest,
    pub reply: Sender<ControlAnswer>,
}

impl std::fmt::Debug for ControlMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ControlMsg({:?})", self.request)
    }
}

#[derive(Debug)]
pub enum ControlRequest {
    /// To the writer.
    Change(Box<AccountChange>),
    /// To every shard: the queues it owns (all vhosts when None).
    /// The queues of a vhost (of every vhost without one); with a name, only that queue.
    ListQueues { vhost: Option<String>, name: Option<String> },
    /// To every shard: the connections it serves.
    ListConnections,
    /// To every shard: close the connection with this name, if it serves it.
    CloseConnection { name: String, reason: String },
    /// To the writer: the users, vhosts and permissions (listings read the snapshot).
    Snapshot,
    /// To the writer: the policies (or operator policies) of a vhost, or of every vhost
    /// when None, in the order objects choose from them (highest priority first).
    ListPolicies { kind: super::policy::PolicyKind, vhost: Option<String> },
    /// To every shard: read the writer's mail up to definitions `version` (what a change
    /// just answered published), and say which version the shard now has. A change's effect
    /// on queues (a policy trimming them) is done on a shard once it has that version; the
    /// writer's message may still be on its way, so the asker repeats until every shard has it.
    CatchUp { version: u64 },
    /// To the writer: a whole definitions file, all or nothing.
    Import(Box<super::definitions_file::DefinitionsFile>),
    /// To any shard: the same request a connection of that shard would send (a declare to
    /// the writer, an operation to a queue's owner); its answer comes back as
    /// `ControlReply::Answer`, with the AMQP error a client would get.
    Ask(Box<ShardAsk>),
    /// To any shard: route a message with that shard's snapshot and send it to its queues, as
    /// basic.publish without confirms does; answered with `ControlReply::Routed`.
    Publish(Box<PublishRequest>),
    /// To any shard: settle messages taken with `ShardAsk::Queue` + `QueueRequest::Get` on the
    /// queue's owner (requeue or discard), as a channel's ack/reject would.
    Settle { queue: QueueId, holder: Holder, sequences: Vec<u64>, requeue: bool },
    /// To every shard: the consumers of the queues it owns.
    ListConsumers,
    /// To every shard: the channels of the connections it serves.
    ListChannels,
    /// To every shard: its counts for a Prometheus scrape, with one entry per queue it owns
    /// when `per_queue` (else only their sums).
    Metrics { per_queue: bool },
}

/// A request of a connection's kind, sent on by the shard that reads it.
#[derive(Debug)]
pub enum ShardAsk {
    /// To the definitions writer (shard 0).
    Admin(AdminRequest),
    /// To the queue's owner.
    Queue { queue: QueueId, request: QueueRequest },
}

#[derive(Debug)]
pub struct PublishRequest {
    pub vhost: String,
    /// "" for the default exchange.
    pub exchange: String,
    pub message: Arc<Message>,
    pub publisher: Holder,
}

/// A change of users, vhosts, permissions, limits or policies; each is logged durably before
/// it is answered. The HTTP API sends the same changes.
#[derive(Debug)]
pub enum AccountChange {
    AddUser {
        name: String,
        password: PasswordHash,
        tags: Vec<String>,
    },
    DeleteUser {
        name: String,
    },
    ChangePassword {
        name: String,
        password: PasswordHash,
    },
    SetTags {
        name: String,
        tags: Vec<String>,
    },
    AddVhost {
        name: String,
    },
    DeleteVhost {
        name: String,
    },
    SetPermissions {
        user: String,
        vhost: String,
        permissions: Box<Permissions>,
    },
    ClearPermissions {
        user: String,
        vhost: String,
    },
    SetVhostLimits {
        name: String,
        limits: super::users::VhostLimits,
    },
    SetUserLimits {
        name: String,
        limits: super::users::UserLimits,
    },
    /// Adds or replaces a policy or operator policy (validated by `Policy::parse`).
    SetPolicy(Box<super::policy::Policy>),
    /// "Parameter does not exist" when there is none of that name.
    ClearPolicy {
        kind: super::policy::PolicyKind,
        vhost: String,
        name: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct QueueInfo {
    pub vhost: String,
    pub name: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub exclusive: bool,
    pub messages_ready: u64,
    pub messages_unacknowledged: u64,
    pub consumers: u64,
    pub ready_bytes: u64,
    /// The names of its policy and operator policy ("" for none).
    pub policy: String,
    pub operator_policy: String,
    /// The two merged (empty without either).
    pub effective_policy_definition: serde_json::Map<String, serde_json::Value>,
    pub stats: MessageStats,
}

/// A queue's message counts, kept by its owner shard in plain fields (no atomics on the hot
/// path) and summed by whoever asks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageStats {
    /// Messages enqueued.
    pub publish: u64,
    /// Deliveries to consumers and basic.get answers.
    pub deliver_get: u64,
    pub ack: u64,
    /// Deliveries and gets of messages delivered before.
    pub redeliver: u64,
    /// Publishes confirmed to confirm-mode channels (channel side: 0 for a queue).
    pub confirm: u64,
    /// Mandatory publishes returned with 312 NO_ROUTE (channel side: 0 for a queue).
    pub return_unroutable: u64,
}

impl MessageStats {
    pub fn add(&mut self, other: &MessageStats) {
        self.publish += other.publish;
        self.deliver_get += other.deliver_get;
        self.ack += other.ack;
        self.redeliver += other.redeliver;
        self.confirm += other.confirm;
        self.return_unroutable += other.return_unroutable;
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionInfo {
    pub id: crate::ids::ConnId,
    pub name: String,
    pub user: String,
    pub vhost: String,
    pub peer: String,
    pub channels: u64,
    pub shard: usize,
    pub tls: bool,
    pub frame_max: u32,
    pub channel_max: u16,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChannelInfo {
    /// The connection's name.
    pub connection: String,
    pub number: u16,
    pub user: String,
    pub vhost: String,
    pub consumers: u64,
    pub unacked: u64,
    pub prefetch_count: u32,
    pub confirm: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConsumerInfo {
    pub vhost: String,
    pub queue: String,
    pub tag: String,
    pub holder: Holder,
    pub no_ack: bool,
    pub prefetch_count: u32,
    pub exclusive: bool,
    pub priority: i32,
}

#[derive(Debug)]
pub enum ControlReply {
    Done,
    Queues(Vec<QueueInfo>),
    Connections(Vec<ConnectionInfo>),
    /// How many connections were closed.
    Closed(usize),
    Snapshot(std::sync::Arc<super::snapshot::Snapshot>),
    Policies(Vec<std::sync::Arc<super::policy::Policy>>),
    /// The definitions version a shard has.
    Version(u64),
    /// What an import kept as it was or ignored.
    Imported {
        warnings: Vec<String>,
    },
    /// The answer to a `ShardAsk`.
    Answer(Result<ReplyBody, AmqpError>),
    /// Whether a published message reached a queue.
    Routed(bool),
    Consumers(Vec<ConsumerInfo>),
    Channels(Vec<ChannelInfo>),
    Metrics(Box<ShardMetrics>),
}

/// Upper bounds (seconds) of the fdatasync latency histogram.
pub const FSYNC_SECONDS_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];
/// Upper bounds of the confirms-per-group-commit histogram.
pub const COMMIT_BATCH_BUCKETS: &[u64] = &[1, 4, 16, 64, 256, 1024, 4096, 16384];

/// The slot of `value` in a histogram with these upper bounds (the last slot is past them).
pub fn bucket_of<T: PartialOrd>(bounds: &[T], value: &T) -> usize {
    bounds.iter().position(|bound| value <= bound).unwrap_or(bounds.len())
}

/// One shard's counts for a Prometheus scrape, read from its own state when asked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShardMetrics {
    pub shard: usize,
    /// Messages waiting in the shard's mailboxes (from every shard, and operator requests).
    pub mailbox_depth: u64,
    pub connections: u64,
    pub channels: u64,
    /// Consumers of the queues it owns.
    pub consumers: u64,
    /// Connections that completed the handshake on this shard / of those, ended.
    pub connections_opened: u64,
    pub connections_closed: u64,
    /// Group-commit fdatasyncs and the time they took, summed.
    pub fsyncs: u64,
    pub fsync_micros: u64,
    /// How many fdatasyncs took at most each of `FSYNC_SECONDS_BUCKETS` (not cumulative; one
    /// more slot for the slower ones).
    pub fsync_buckets: Vec<u64>,
    /// How many group commits released at most each of `COMMIT_BATCH_BUCKETS` confirms (as
    /// `fsync_buckets`).
    pub commit_batch_buckets: Vec<u64>,
    /// Confirms released by group commits (the batch histogram's sum).
    pub commit_batch_sum: u64,
    /// Turns of the shard's mailbox loop, and the CPU time its thread has used.
    pub loop_turns: u64,
    pub cpu_micros: u64,
    /// Bytes written to the shard's segment files since it started.
    pub store_written_bytes: u64,
    /// Compaction: segments emptied of their ready messages, and the messages copied out.
    pub compacted_segments: u64,
    pub compacted_messages: u64,
    /// Waiting in-memory messages packed by the shard's sweep.
    pub packed_messages: u64,
    /// Times a connection of the shard waited for a shard's paged-out writes to reach disk.
    pub paging_pauses: u64,
    /// Times a connection of the shard that only publishes waited for another shard's deep
    /// queue (`shard::pressure`).
    pub pressure_pauses: u64,
    /// Channel-side counts (`confirm`, `return_unroutable`) of the shard's connections, per
    /// vhost, closed connections included.
    pub vhost_stats: Vec<(String, MessageStats)>,
    /// Over the queues it owns.
    pub queues: u64,
    pub totals: QueueMetrics,
    /// One per queue it owns, when asked for them (`totals` has empty names).
    pub per_queue: Vec<QueueMetrics>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueMetrics {
    pub vhost: String,
    pub name: String,
    pub messages_ready: u64,
    pub messages_unacked: u64,
    pub ready_bytes: u64,
    pub consumers: u64,
    pub stats: MessageStats,
}

impl QueueMetrics {
    pub fn add(&mut self, other: &QueueMetrics) {
        self.messages_ready += other.messages_ready;
        self.messages_unacked += other.messages_unacked;
        self.ready_bytes += other.ready_bytes;
        self.consumers += other.consumers;
        self.stats.add(&other.stats);
    }
}

/// An error is a sentence for the operator.
pub type ControlAnswer = Result<ControlReply, String>;
