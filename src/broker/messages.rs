//! What shards say to each other through their mailboxes.
//!
//! Every variant is plain data. A reply carries the definitions version of the shard that sent
//! it, so the receiver first catches up with the writer when it is behind: a client that got
//! declare-ok can route to what it declared (read-your-writes).

use std::sync::Arc;

use crate::broker::error::AmqpError;
use crate::broker::queue::{Delivery, Settle};
use crate::broker::reply_to::ReplyAddress;
use crate::broker::requests::{AdminRequest, QueueRequest, ReplyBody};
use crate::broker::snapshot::{QueueDef, Snapshot};
use crate::codec::message::Message;
pub use crate::ids::ConfirmTo;
use crate::ids::{ConnId, ConsumerKey, ConsumerTag, Holder, QueueId};

/// An accepted client socket on its way to the shard that will serve it.
#[derive(Debug)]
pub struct AdoptedSocket {
    pub socket: std::os::fd::OwnedFd,
    pub loopback_peer: bool,
    /// The amqps listener's TLS settings when it was accepted there.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// A connection another shard served until its first publish (`shard::handover`).
    pub resume: Option<Resume>,
}

/// What a shard taking over a served connection needs besides its socket: what the client sent
/// so far (the handshake and channel set-up), to replay without answering, then the bytes read
/// after it, from the first publish on.
#[derive(Debug)]
pub struct Resume {
    pub transcript: bytes::Bytes,
    pub pending: bytes::Bytes,
}

/// Where an answer goes: the requesting shard and its request number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyTo {
    pub shard: usize,
    pub request_id: u64,
}

#[derive(Debug)]
pub enum ShardMsg {
    /// Writer → every shard: the new definitions.
    Definitions(Arc<Snapshot>),
    /// Accepting shard → a shard with fewer connections: serve this socket as if it had been
    /// accepted there (`shard::balance`).
    Adopt(Box<AdoptedSocket>),
    /// Writer → owner: create the queue's state, then answer the declare.
    CreateQueue {
        definition: Arc<QueueDef>,
        reply: Option<ReplyTo>,
    },
    /// Connection shard → writer.
    Admin {
        request: Box<AdminRequest>,
        reply: ReplyTo,
    },
    /// Owner → writer: the queue is gone from its owner; forget it and its bindings, then
    /// answer with `answer` (`ReplyBody::QueueDeleted`).
    QueueDeleted {
        vhost: String,
        queue: QueueId,
        reply: Option<ReplyTo>,
        answer: Box<ReplyBody>,
    },
    /// Owner → writer: an auto-delete queue lost its last consumer.
    AutoDelete {
        vhost: String,
        name: String,
        queue: QueueId,
    },
    /// Connection shard → writer: delete the connection's exclusive queues.
    ConnectionGone {
        conn: ConnId,
    },
    /// Connection shard → owner.
    /// `publish_sequence` is set when the publisher's channel is in confirm mode.
    Publish {
        queue: QueueId,
        message: Arc<Message>,
        publisher: Holder,
        publish_sequence: Option<u64>,
    },
    /// A delayed exchange's holder → owner: a due stored message's copy (`broker::delayed`).
    Handover(Box<crate::broker::delayed::HandoverCopy>),
    /// Owner → holder, before the copy's confirm: the segment holding the copy and its
    /// hand-over record, which the holder keeps until the held message's removal mark is
    /// written (so the proof outlives the need for it).
    HandoverStored {
        confirm: ConfirmTo,
        segment: Arc<crate::store::segment::Segment>,
    },
    /// Connection shard → an exchange's owner shard: a publish to an exchange that
    /// deduplicates or delays (`owned_exchange.rs`).
    OwnerPublish(Box<crate::broker::owned_exchange::OwnerPublish>),
    /// Exchange owner → publisher's shard: how many queues that publish reached.
    OwnerRouted(Box<crate::broker::owned_exchange::OwnerRouted>),
    QueueOp {
        queue: QueueId,
        request: QueueRequest,
        reply: Option<ReplyTo>,
    },
    Settle {
        queue: QueueId,
        holder: Holder,
        sequences: Vec<u64>,
        action: Settle,
    },
    Credit {
        queue: QueueId,
        holder: Holder,
        consumer: ConsumerKey,
        count: u32,
    },
    ChannelGone {
        holder: Holder,
    },
    /// Owner → connection shard.
    Deliver(Delivery),
    /// `ok` false: the message could not be stored; the publisher gets a nack.
    Confirmed {
        confirm: ConfirmTo,
        ok: bool,
    },
    /// A group commit's confirms for one publisher channel, in the order they were published:
    /// one message, one lookup of the connection and its channel, for all of them.
    ConfirmedMany {
        holder: Holder,
        sequences: Vec<u64>,
        ok: bool,
    },
    /// Owner → connection shard: a publish was refused (store poisoned); close the channel.
    PublishRefused {
        holder: Holder,
        error: AmqpError,
    },
    ConsumerCancelled {
        holder: Holder,
        consumer_tag: ConsumerTag,
    },
    /// Publisher's shard → the requester's connection shard: a direct reply-to message, for
    /// that channel's reply consumer if it is still there (dropped otherwise).
    DirectReply {
        address: ReplyAddress,
        message: Arc<Message>,
    },
    /// Any shard → the requester's connection shard: is this reply consumer still there
    /// (queue.declare of its reply name)? Answered with `Done` or an error.
    ReplyConsumerExists {
        address: ReplyAddress,
        reply: ReplyTo,
    },
    /// Any shard → requesting shard.
    Reply {
        reply: ReplyTo,
        version: u64,
        result: Result<ReplyBody, AmqpError>,
    },
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_stay_small() {
        // Every mailbox slot is one ShardMsg: large variants are boxed to keep slots small.
        assert!(std::mem::size_of::<super::ShardMsg>() <= 128, "{}", std::mem::size_of::<super::ShardMsg>());
    }
}
