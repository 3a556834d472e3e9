//! The management API's way to the shards: the control inboxes (`control::ask`), as
//! `spatemq ctl` uses them. Definitions changes go to the writer (shard 0), queue work to the
//! queue's owner, listings to every shard; reads of definitions use the writer's snapshot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::broker::control::{
    AccountChange, ChannelInfo, ConnectionInfo, ConsumerInfo, ControlReply, ControlRequest, MessageStats,
    PublishRequest, QueueInfo, ShardAsk, ShardMetrics,
};
use crate::broker::error::{AmqpError, INTERNAL_ERROR};
use crate::broker::requests::{AdminRequest, QueueRequest, ReplyBody};
use crate::broker::snapshot::Snapshot;
use crate::control::{ask, ask_all, wait_for_every_shard, AskError};
use crate::ids::{ConnId, Holder, QueueId};
use crate::shard::mailbox::Mailboxes;

use super::api::ApiError;

/// How long a change waits for the other shards to apply it.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection numbers the API uses for its own holders (basic.get, publish): far above any
/// a shard gives its connections, so a late message for one reaches no connection.
const API_CONNECTION_BASE: u64 = 1 << 62;

pub struct Broker {
    pub mailboxes: Arc<Mailboxes>,
    next_holder: AtomicU64,
}

impl Broker {
    pub fn new(mailboxes: Arc<Mailboxes>) -> Broker {
        Broker { mailboxes, next_holder: AtomicU64::new(1) }
    }

    pub fn ask(&self, shard: usize, request: ControlRequest) -> Result<ControlReply, ApiError> {
        ask(&self.mailboxes, shard, request).map_err(ask_error)
    }

    fn ask_all(&self, request: impl Fn() -> ControlRequest) -> Result<Vec<ControlReply>, ApiError> {
        ask_all(&self.mailboxes, request).map_err(ask_error)
    }

    /// The writer's definitions: every change made through it is in them.
    pub fn snapshot(&self) -> Result<Arc<Snapshot>, ApiError> {
        match self.ask(0, ControlRequest::Snapshot)? {
            ControlReply::Snapshot(snapshot) => Ok(snapshot),
            other => Err(unexpected(&other)),
        }
    }

    /// Applies a definitions change through the writer, and returns once every shard has it,
    /// so it is in effect everywhere when the request is answered (a login next sees a new
    /// password, a queue a new policy), as when RabbitMQ answers.
    pub fn change(&self, change: AccountChange) -> Result<(), ApiError> {
        self.ask(0, ControlRequest::Change(Box::new(change)))?;
        self.wait_for_every_shard()
    }

    fn wait_for_every_shard(&self) -> Result<(), ApiError> {
        let version = self.snapshot()?.version;
        let shards = self.mailboxes.shards();
        if !wait_for_every_shard(shards, version, CATCH_UP_TIMEOUT, |shard, request| self.ask(shard, request))? {
            let reason = "the broker did not apply the change in time";
            return Err(ApiError::new(503, "service_unavailable", reason));
        }
        Ok(())
    }

    /// A request of a connection's kind; the AMQP error is kept for the caller to map.
    pub fn request(&self, ask: ShardAsk) -> Result<Result<ReplyBody, AmqpError>, ApiError> {
        match self.ask(0, ControlRequest::Ask(Box::new(ask)))? {
            ControlReply::Answer(answer) => Ok(answer),
            other => Err(unexpected(&other)),
        }
    }

    pub fn admin(&self, request: AdminRequest) -> Result<ReplyBody, ApiError> {
        self.request(ShardAsk::Admin(request))?.map_err(ApiError::from_amqp)
    }

    pub fn queue_op(&self, queue: QueueId, request: QueueRequest) -> Result<ReplyBody, ApiError> {
        self.request(ShardAsk::Queue { queue, request })?.map_err(ApiError::from_amqp)
    }

    pub fn publish(&self, publish: PublishRequest) -> Result<bool, ApiError> {
        match self.ask(0, ControlRequest::Publish(Box::new(publish)))? {
            ControlReply::Routed(routed) => Ok(routed),
            other => Err(unexpected(&other)),
        }
    }

    /// A holder of the API's own, for one request's gets or publishes.
    pub fn holder(&self) -> Holder {
        let local = API_CONNECTION_BASE + self.next_holder.fetch_add(1, Ordering::Relaxed);
        Holder { conn: ConnId { shard: 0, local }, channel: 1, incarnation: 0 }
    }

    pub fn queues(&self, vhost: Option<&str>) -> Result<Vec<QueueInfo>, ApiError> {
        self.queues_named(vhost, None)
    }

    /// One queue, if it exists: each shard looks only for that name.
    pub fn queue(&self, vhost: &str, name: &str) -> Result<Option<QueueInfo>, ApiError> {
        Ok(self.queues_named(Some(vhost), Some(name))?.into_iter().next())
    }

    fn queues_named(&self, vhost: Option<&str>, name: Option<&str>) -> Result<Vec<QueueInfo>, ApiError> {
        let mut queues = Vec::new();
        let request =
            || ControlRequest::ListQueues { vhost: vhost.map(str::to_string), name: name.map(str::to_string) };
        for reply in self.ask_all(request)? {
            match reply {
                ControlReply::Queues(found) => queues.extend(found),
                other => return Err(unexpected(&other)),
            }
        }
        Ok(queues)
    }

    pub fn connections(&self) -> Result<Vec<ConnectionInfo>, ApiError> {
        let mut connections = Vec::new();
        for reply in self.ask_all(|| ControlRequest::ListConnections)? {
            match reply {
                ControlReply::Connections(found) => connections.extend(found),
                other => return Err(unexpected(&other)),
            }
        }
        Ok(connections)
    }

    pub fn channels(&self) -> Result<Vec<ChannelInfo>, ApiError> {
        let mut channels = Vec::new();
        for reply in self.ask_all(|| ControlRequest::ListChannels)? {
            match reply {
                ControlReply::Channels(found) => channels.extend(found),
                other => return Err(unexpected(&other)),
            }
        }
        Ok(channels)
    }

    pub fn consumers(&self) -> Result<Vec<ConsumerInfo>, ApiError> {
        let mut consumers = Vec::new();
        for reply in self.ask_all(|| ControlRequest::ListConsumers)? {
            match reply {
                ControlReply::Consumers(found) => consumers.extend(found),
                other => return Err(unexpected(&other)),
            }
        }
        Ok(consumers)
    }

    /// Every shard's counts for a Prometheus scrape, in shard order.
    pub fn metrics(&self, per_queue: bool) -> Result<Vec<ShardMetrics>, ApiError> {
        let mut shards = Vec::new();
        for reply in self.ask_all(|| ControlRequest::Metrics { per_queue })? {
            match reply {
                ControlReply::Metrics(found) => shards.push(*found),
                other => return Err(unexpected(&other)),
            }
        }
        Ok(shards)
    }

    /// The channel-side counts (confirms, unroutable returns) of every shard's connections,
    /// per vhost.
    pub fn channel_stats(&self) -> Result<HashMap<String, MessageStats>, ApiError> {
        let mut per_vhost: HashMap<String, MessageStats> = HashMap::new();
        for shard in self.metrics(false)? {
            for (vhost, stats) in shard.vhost_stats {
                per_vhost.entry(vhost).or_default().add(&stats);
            }
        }
        Ok(per_vhost)
    }

    /// Closes every connection named `name`; how many there were.
    pub fn close_connection(&self, name: &str, reason: &str) -> Result<usize, ApiError> {
        let request = || ControlRequest::CloseConnection { name: name.to_string(), reason: reason.to_string() };
        let mut closed = 0;
        for reply in self.ask_all(request)? {
            if let ControlReply::Closed(count) = reply {
                closed += count;
            }
        }
        Ok(closed)
    }
}

fn ask_error(error: AskError) -> ApiError {
    match error {
        AskError::Refused(reason) => ApiError::bad_request(reason),
        other => ApiError::new(503, "service_unavailable", other.to_string()),
    }
}

fn unexpected(reply: &ControlReply) -> ApiError {
    ApiError::from_amqp(AmqpError::new(INTERNAL_ERROR, format!("unexpected answer from the broker: {reply:?}")))
}
