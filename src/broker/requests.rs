//! Requests that change definitions, sent by a connection's shard to the single writer, and
//! the answers that travel back.
//!
//! Plain data only: what the client asked, already decoded, and what the broker replies.

use amq_protocol::types::FieldTable;

use super::queue::Payload;
use super::users::Grant;
use crate::ids::{ConnId, Holder, QueueId};

#[derive(Debug)]
pub struct ExchangeDeclare {
    pub vhost: String,
    pub name: String,
    pub kind: String,
    pub passive: bool,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
    /// The declaring client's rights (None: the operator's request).
    pub grant: Option<Grant>,
}

#[derive(Debug)]
pub struct QueueDeclare {
    pub vhost: String,
    pub name: String,
    pub passive: bool,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    pub conn: ConnId,
    /// The declaring client's rights (None: the operator's request).
    pub grant: Option<Grant>,
}

/// A binding between a source exchange and a queue or another exchange.
#[derive(Debug)]
pub struct Binding {
    pub vhost: String,
    pub source: String,
    pub destination: String,
    pub destination_is_queue: bool,
    pub routing_key: String,
    pub arguments: FieldTable,
    pub conn: ConnId,
}

#[derive(Debug)]
pub enum AdminRequest {
    ExchangeDeclare(ExchangeDeclare),
    ExchangeDelete {
        vhost: String,
        name: String,
        if_unused: bool,
    },
    QueueDeclare(QueueDeclare),
    /// `holder`: the deleting channel, whose own consumers are cancelled after delete-ok.
    QueueDelete {
        vhost: String,
        name: String,
        if_unused: bool,
        if_empty: bool,
        holder: Holder,
    },
    Bind(Binding),
    Unbind(Binding),
    /// connection.close: the connection's exclusive queues go before close-ok is sent.
    ReleaseExclusive {
        conn: ConnId,
    },
}

/// Operations on one queue, executed by its owner shard.
#[derive(Debug)]
pub enum QueueRequest {
    /// Answer a queue.declare-ok with the queue's counts.
    DeclareOk,
    Consume {
        holder: Holder,
        consumer_tag: crate::ids::ConsumerTag,
        /// The channel's key for the consumer (`ConsumerKey`).
        consumer: crate::ids::ConsumerKey,
        no_ack: bool,
        exclusive: bool,
        prefetch_count: u32,
        nowait: bool,
        /// The consumer argument `x-priority` (0 without one).
        priority: i32,
        /// Where a stream's consumer starts (`x-stream-offset`); None for other queues. Boxed:
        /// every mailbox slot is as large as the largest message.
        stream_offset: Option<Box<crate::broker::stream_args::StreamOffset>>,
    },
    Cancel {
        holder: Holder,
        consumer_tag: crate::ids::ConsumerTag,
    },
    /// The consumer's prefetch limit changed (its channel's global basic.qos did).
    Prefetch {
        holder: Holder,
        consumer_tag: crate::ids::ConsumerTag,
        prefetch_count: u32,
    },
    Get {
        holder: Holder,
        no_ack: bool,
    },
    Purge,
    Delete {
        if_unused: bool,
        if_empty: bool,
        /// The channel that asked (none when the broker deletes): its consumers are left out
        /// of the cancels sent at once and listed in `ReplyBody::QueueDeleted`.
        deleting: Option<Holder>,
    },
}

#[derive(Debug)]
pub struct GotMessage {
    pub queue: QueueId,
    pub sequence: u64,
    pub payload: Payload,
    pub redelivered: bool,
    pub message_count: u32,
    /// The `x-delivery-count` header to add; None for none (see `Delivery`).
    pub delivery_count: Option<u32>,
}

#[derive(Debug)]
pub enum ReplyBody {
    Done,
    QueueDeclareOk {
        name: String,
        message_count: u32,
        consumer_count: u32,
    },
    /// queue.declare of a queue that exists: the asker gets the counts from the queue's shard
    /// itself, so they include what its channel published before (the same mailbox path).
    ExistingQueue(crate::ids::QueueId),
    MessageCount(u32),
    /// queue.delete-ok's count, and the deleting channel's consumers the queue had: the channel
    /// sends their basic.cancel after delete-ok.
    QueueDeleted {
        message_count: u32,
        cancelled: Vec<crate::ids::ConsumerTag>,
    },
    ConsumeOk,
    Get(Option<GotMessage>),
}
