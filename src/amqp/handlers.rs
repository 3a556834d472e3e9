//! Channel methods other than the hot path: channel.flow, exchange.*, queue.*, confirm.*,
//! tx.*, and the routing of basic.* to `basic.rs`.
//!
//! Each handler has the same small shape: decode → ask the owner of the state (the
//! definitions writer or the queue's shard) → encode the answer. Errors are returned; the
//! dispatcher closes the channel or the connection.

use amq_protocol::protocol::{channel, confirm, exchange, queue, tx, AMQPClass};

use super::access;
use super::dispatch::Dispatcher;
use super::port::Port;
use crate::broker::definitions::DEFAULT_VHOST;
use crate::broker::error::*;
use crate::broker::messages::ShardMsg;
use crate::broker::queue_args::QueueType;
use crate::broker::reply_to::REPLY_QUEUE;
use crate::broker::requests::{AdminRequest, Binding, ExchangeDeclare, QueueDeclare, QueueRequest, ReplyBody};
use crate::broker::routing::ExchangeKind;
use crate::broker::snapshot::QueueDef;
use crate::broker::users::{Access, Grant, ResourceKind};
use crate::limits::TX_PENDING_MAX;

impl<P: Port> Dispatcher<P> {
    pub async fn handle_method(&mut self, channel_id: u16, method: AMQPClass) -> Result<(), AmqpError> {
        match method {
            AMQPClass::Channel(channel::AMQPMethod::Flow(flow)) => {
                let reply = channel::AMQPMethod::FlowOk(channel::FlowOk { active: flow.active });
                self.send_method(channel_id, &AMQPClass::Channel(reply));
                Ok(())
            }
            AMQPClass::Channel(channel::AMQPMethod::Open(_)) => {
                Err(AmqpError::new(CHANNEL_ERROR, "second 'channel.open' seen"))
            }
            AMQPClass::Channel(channel::AMQPMethod::CloseOk(_))
            | AMQPClass::Channel(channel::AMQPMethod::FlowOk(_)) => Ok(()),
            AMQPClass::Exchange(method) => self.exchange_method(channel_id, method).await,
            AMQPClass::Queue(method) => self.queue_method(channel_id, method).await,
            AMQPClass::Basic(method) => self.basic_method(channel_id, method).await,
            AMQPClass::Confirm(confirm::AMQPMethod::Select(select)) => self.confirm_select(channel_id, select.nowait),
            AMQPClass::Tx(method) => self.tx_method(channel_id, method),
            _ => Err(AmqpError::new(COMMAND_INVALID, "method not allowed on a channel")),
        }
    }

    pub fn vhost(&self) -> String {
        let vhost = self.connection.vhost.borrow();
        if vhost.is_empty() {
            DEFAULT_VHOST.to_string()
        } else {
            vhost.clone()
        }
    }

    /// Sends a definitions change to the single writer (shard 0) and waits for its answer.
    pub async fn admin(&self, request: AdminRequest) -> Result<ReplyBody, AmqpError> {
        self.port.request(0, |reply| ShardMsg::Admin { request: Box::new(request), reply }).await
    }

    /// The connection's user and permissions, for checks the definitions writer makes.
    fn grant(&self) -> Grant {
        let user = self.connection.user.borrow().clone();
        let permissions = self.port.snapshot().permissions(&user, &self.vhost()).cloned();
        Grant { user, permissions }
    }

    /// The checks RabbitMQ makes before it looks the resources up (the writer makes the rest).
    fn check_exchange_method(&self, method: &exchange::AMQPMethod) -> Result<(), AmqpError> {
        let snapshot = self.port.snapshot();
        let connection = &*self.connection;
        match method {
            // The type (503) and the default exchange (403) are judged first, by the writer.
            exchange::AMQPMethod::Declare(declare)
                if !declare.passive
                    && ExchangeKind::parse(declare.kind.as_str()).is_some()
                    && !declare.exchange.as_str().is_empty() =>
            {
                access::configure_exchange(connection, &snapshot, declare.exchange.as_str())
            }
            exchange::AMQPMethod::Delete(delete)
                if !delete.exchange.as_str().is_empty() && !delete.exchange.as_str().starts_with("amq.") =>
            {
                access::configure_exchange(connection, &snapshot, delete.exchange.as_str())
            }
            exchange::AMQPMethod::Bind(exchange::Bind { source, destination, .. })
            | exchange::AMQPMethod::Unbind(exchange::Unbind { source, destination, .. }) => {
                access::write_exchange(connection, &snapshot, destination.as_str())?;
                if source.as_str().is_empty() || destination.as_str().is_empty() {
                    return Ok(());
                }
                access::read_exchange(connection, &snapshot, source.as_str())
            }
            _ => Ok(()),
        }
    }

    async fn exchange_method(&mut self, channel_id: u16, method: exchange::AMQPMethod) -> Result<(), AmqpError> {
        self.check_exchange_method(&method)?;
        let vhost = self.vhost();
        let conn = self.connection.id;
        let (request, nowait, reply) = match method {
            exchange::AMQPMethod::Declare(declare) => (
                AdminRequest::ExchangeDeclare(ExchangeDeclare {
                    vhost,
                    name: declare.exchange.to_string(),
                    kind: declare.kind.to_string(),
                    passive: declare.passive,
                    durable: declare.durable,
                    auto_delete: declare.auto_delete,
                    internal: declare.internal,
                    arguments: declare.arguments,
                    grant: Some(self.grant()),
                }),
                declare.nowait,
                exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {}),
            ),
            exchange::AMQPMethod::Delete(delete) => (
                AdminRequest::ExchangeDelete { vhost, name: delete.exchange.to_string(), if_unused: delete.if_unused },
                delete.nowait,
                exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {}),
            ),
            exchange::AMQPMethod::Bind(bind) => (
                AdminRequest::Bind(Binding {
                    vhost,
                    source: bind.source.to_string(),
                    destination: bind.destination.to_string(),
                    destination_is_queue: false,
                    routing_key: bind.routing_key.to_string(),
                    arguments: bind.arguments,
                    conn,
                }),
                bind.nowait,
                exchange::AMQPMethod::BindOk(exchange::BindOk {}),
            ),
            exchange::AMQPMethod::Unbind(unbind) => (
                AdminRequest::Unbind(Binding {
                    vhost,
                    source: unbind.source.to_string(),
                    destination: unbind.destination.to_string(),
                    destination_is_queue: false,
                    routing_key: unbind.routing_key.to_string(),
                    arguments: unbind.arguments,
                    conn,
                }),
                unbind.nowait,
                exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {}),
            ),
            // A method only the server sends (declare-ok and the like): RabbitMQ's catch-all.
            _ => return Err(AmqpError::new(COMMAND_INVALID, "unimplemented method")),
        };
        self.admin(request).await?;
        if !nowait {
            self.send_method(channel_id, &AMQPClass::Exchange(reply));
        }
        Ok(())
    }

    /// queue.bind and queue.unbind: write on the queue, then read on the exchange (the
    /// default exchange is refused by the writer in between, as RabbitMQ orders them).
    fn check_queue_binding(&self, queue: &str, exchange: &str) -> Result<(), AmqpError> {
        let snapshot = self.port.snapshot();
        access::check(&self.connection, &snapshot, Access::Write, ResourceKind::Queue, queue)?;
        if exchange.is_empty() {
            return Ok(());
        }
        access::read_exchange(&self.connection, &snapshot, exchange)
    }

    /// An empty queue name means the channel's last declared queue (spec, RabbitMQ).
    pub fn queue_name(&self, channel_id: u16, name: &str) -> Result<String, AmqpError> {
        if !name.is_empty() {
            return Ok(name.to_string());
        }
        let channels = self.connection.channels.borrow();
        channels
            .get(&channel_id)
            .and_then(|channel| channel.last_queue.clone())
            .ok_or_else(|| AmqpError::new(NOT_FOUND, "no previously declared queue"))
    }

    async fn queue_method(&mut self, channel_id: u16, method: queue::AMQPMethod) -> Result<(), AmqpError> {
        let vhost = self.vhost();
        let conn = self.connection.id;
        match method {
            queue::AMQPMethod::Declare(declare) => self.queue_declare(channel_id, declare).await,
            queue::AMQPMethod::Bind(bind) => {
                let destination = self.queue_name(channel_id, bind.queue.as_str())?;
                self.check_queue_binding(&destination, bind.exchange.as_str())?;
                let binding = Binding {
                    vhost,
                    source: bind.exchange.to_string(),
                    routing_key: routing_key_shortcut(bind.queue.as_str(), bind.routing_key.as_str(), &destination),
                    destination,
                    destination_is_queue: true,
                    arguments: bind.arguments,
                    conn,
                };
                self.admin(AdminRequest::Bind(binding)).await?;
                if !bind.nowait {
                    self.send_method(channel_id, &AMQPClass::Queue(queue::AMQPMethod::BindOk(queue::BindOk {})));
                }
                Ok(())
            }
            queue::AMQPMethod::Unbind(unbind) => {
                let destination = self.queue_name(channel_id, unbind.queue.as_str())?;
                self.check_queue_binding(&destination, unbind.exchange.as_str())?;
                let binding = Binding {
                    vhost,
                    source: unbind.exchange.to_string(),
                    routing_key: routing_key_shortcut(unbind.queue.as_str(), unbind.routing_key.as_str(), &destination),
                    destination,
                    destination_is_queue: true,
                    arguments: unbind.arguments,
                    conn,
                };
                self.admin(AdminRequest::Unbind(binding)).await?;
                self.send_method(channel_id, &AMQPClass::Queue(queue::AMQPMethod::UnbindOk(queue::UnbindOk {})));
                Ok(())
            }
            queue::AMQPMethod::Purge(purge) => {
                let name = self.queue_name(channel_id, purge.queue.as_str())?;
                access::read_queue(&self.connection, &self.port.snapshot(), &name)?;
                let definition = self.resolve_queue(&name)?;
                if QueueType::of(&definition.arguments) == QueueType::Stream {
                    return Err(crate::broker::stream_args::not_supported("queue.purge", &name, &vhost));
                }
                let queue_id = definition.id;
                let reply = self
                    .port
                    .request(queue_id.owner(), |reply| ShardMsg::QueueOp {
                        queue: queue_id,
                        request: QueueRequest::Purge,
                        reply: Some(reply),
                    })
                    .await?;
                if !purge.nowait {
                    let message_count = if let ReplyBody::MessageCount(count) = reply { count } else { 0 };
                    let ok = queue::AMQPMethod::PurgeOk(queue::PurgeOk { message_count });
                    self.send_method(channel_id, &AMQPClass::Queue(ok));
                }
                Ok(())
            }
            queue::AMQPMethod::Delete(delete) => {
                let name = self.queue_name(channel_id, delete.queue.as_str())?;
                access::configure_queue(&self.connection, &self.port.snapshot(), &name)?;
                let queue_type = self.port.snapshot().vhost(&vhost).and_then(|found| found.queues.get(&name).cloned());
                if let Some(definition) = queue_type {
                    check_quorum_delete(&definition, delete.if_unused, delete.if_empty)?;
                }
                let holder = self.connection.holder(channel_id);
                let request = AdminRequest::QueueDelete {
                    vhost,
                    name,
                    if_unused: delete.if_unused,
                    if_empty: delete.if_empty,
                    holder,
                };
                let (message_count, cancelled) = match self.admin(request).await? {
                    ReplyBody::QueueDeleted { message_count, cancelled } => (message_count, cancelled),
                    _ => (0, Vec::new()),
                };
                if !delete.nowait {
                    let ok = queue::AMQPMethod::DeleteOk(queue::DeleteOk { message_count });
                    self.send_method(channel_id, &AMQPClass::Queue(ok));
                }
                // This channel's own consumers of the queue hear of it after delete-ok, as
                // from RabbitMQ (py-amqp fails a delete whose answer comes after a cancel).
                for consumer_tag in cancelled {
                    self.connection.consumer_cancelled(holder, &consumer_tag);
                }
                Ok(())
            }
            // A method only the server sends (declare-ok and the like): RabbitMQ's catch-all.
            _ => Err(AmqpError::new(COMMAND_INVALID, "unimplemented method")),
        }
    }

    async fn queue_declare(&mut self, channel_id: u16, declare: queue::Declare) -> Result<(), AmqpError> {
        if declare.queue.as_str().starts_with(REPLY_QUEUE) {
            return self.declare_reply_queue(channel_id, &declare).await;
        }
        let name = declare.queue.to_string();
        // A server-named queue is checked by the writer, once it has its name; a reserved
        // name is refused by the writer first, as RabbitMQ checks the name first.
        if !declare.passive && !name.is_empty() && !name.starts_with("amq.") {
            access::configure_queue(&self.connection, &self.port.snapshot(), &name)?;
        }
        if declare.passive {
            if let Ok(definition) = self.resolve_queue(&name) {
                // Straight to the owner, as basic.publish and basic.get go: the count then
                // includes every message this channel published before (RabbitMQ's order).
                // A queue this shard does not know yet takes the writer's path below.
                let reply = self.declare_ok_from_owner(definition.id, &name).await?;
                return self.answer_queue_declare(channel_id, declare.nowait, reply);
            }
        }
        if declare.exclusive && !declare.passive {
            self.connection.declared_exclusive.set(true);
        }
        let request = AdminRequest::QueueDeclare(QueueDeclare {
            vhost: self.vhost(),
            name: name.clone(),
            passive: declare.passive,
            durable: declare.durable,
            exclusive: declare.exclusive,
            auto_delete: declare.auto_delete,
            arguments: declare.arguments,
            conn: self.connection.id,
            grant: Some(self.grant()),
        });
        let reply = match self.admin(request).await? {
            ReplyBody::ExistingQueue(queue) => self.declare_ok_from_owner(queue, &name).await?,
            reply => reply,
        };
        self.answer_queue_declare(channel_id, declare.nowait, reply)
    }

    /// declare-ok of an existing queue, asked of its shard on the path this channel's
    /// publishes take; a queue deleted meanwhile is 404 as for any missing queue.
    async fn declare_ok_from_owner(&self, queue: crate::ids::QueueId, name: &str) -> Result<ReplyBody, AmqpError> {
        let request = QueueRequest::DeclareOk;
        let reply = self.port.request(queue.owner(), |reply| ShardMsg::QueueOp { queue, request, reply: Some(reply) });
        let vhost = self.vhost();
        reply.await.map_err(|error| match error.reply_code {
            NOT_FOUND => AmqpError::not_found("queue", name, &vhost),
            _ => error,
        })
    }

    fn answer_queue_declare(&mut self, channel_id: u16, nowait: bool, reply: ReplyBody) -> Result<(), AmqpError> {
        let ReplyBody::QueueDeclareOk { name, message_count, consumer_count } = reply else {
            return Err(AmqpError::new(INTERNAL_ERROR, "unexpected answer to queue.declare"));
        };
        if let Some(channel) = self.connection.channels.borrow_mut().get_mut(&channel_id) {
            channel.last_queue = Some(name.clone());
        }
        if !nowait {
            let ok =
                queue::AMQPMethod::DeclareOk(queue::DeclareOk { queue: name.into(), message_count, consumer_count });
            self.send_method(channel_id, &AMQPClass::Queue(ok));
        }
        Ok(())
    }

    /// Finds a queue in this shard's snapshot, refusing another connection's exclusive queue.
    pub fn resolve_queue(&self, name: &str) -> Result<std::sync::Arc<crate::broker::snapshot::QueueDef>, AmqpError> {
        let vhost = self.vhost();
        let snapshot = self.port.snapshot();
        let definition = snapshot
            .vhost(&vhost)
            .and_then(|found| found.queues.get(name).cloned())
            .ok_or_else(|| AmqpError::not_found("queue", name, &vhost))?;
        match definition.exclusive_owner {
            Some(owner) if owner != self.connection.id => Err(AmqpError::exclusive_locked(name, &vhost)),
            _ => Ok(definition),
        }
    }

    fn confirm_select(&mut self, channel_id: u16, nowait: bool) -> Result<(), AmqpError> {
        {
            let mut channels = self.connection.channels.borrow_mut();
            let Some(channel) = channels.get_mut(&channel_id) else {
                return Ok(());
            };
            if channel.select_confirms().is_err() {
                return Err(AmqpError::new(PRECONDITION_FAILED, "cannot switch from tx to confirm mode"));
            }
        }
        if !nowait {
            self.send_method(channel_id, &AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})));
        }
        Ok(())
    }

    fn tx_method(&mut self, channel_id: u16, method: tx::AMQPMethod) -> Result<(), AmqpError> {
        let not_transactional = || AmqpError::new(PRECONDITION_FAILED, "channel is not transactional");
        let reply = match method {
            tx::AMQPMethod::Select(_) => {
                let mut channels = self.connection.channels.borrow_mut();
                let Some(channel) = channels.get_mut(&channel_id) else {
                    return Ok(());
                };
                if channel.select_transaction().is_err() {
                    return Err(AmqpError::new(PRECONDITION_FAILED, "cannot switch from confirm to tx mode"));
                }
                tx::AMQPMethod::SelectOk(tx::SelectOk {})
            }
            tx::AMQPMethod::Commit(_) => {
                let pending = {
                    let mut channels = self.connection.channels.borrow_mut();
                    let transaction = channels.get_mut(&channel_id).and_then(|channel| channel.transaction_mut());
                    std::mem::take(transaction.ok_or_else(not_transactional)?)
                };
                if pending.publishes.len() + pending.acks.len() > TX_PENDING_MAX {
                    return Err(AmqpError::new(PRECONDITION_FAILED, "transaction too large"));
                }
                for ack in pending.acks {
                    self.apply_ack(channel_id, ack)?;
                }
                for (mandatory, message) in pending.publishes {
                    self.route_and_send(channel_id, mandatory, message);
                }
                tx::AMQPMethod::CommitOk(tx::CommitOk {})
            }
            tx::AMQPMethod::Rollback(_) => {
                let mut channels = self.connection.channels.borrow_mut();
                let transaction = channels.get_mut(&channel_id).and_then(|channel| channel.transaction_mut());
                *transaction.ok_or_else(not_transactional)? = Default::default();
                tx::AMQPMethod::RollbackOk(tx::RollbackOk {})
            }
            _ => return Err(AmqpError::new(COMMAND_INVALID, "unexpected tx method from a client")),
        };
        self.send_method(channel_id, &AMQPClass::Tx(reply));
        Ok(())
    }
}

/// RabbitMQ's shortcut: queue.bind and queue.unbind without a queue name and without a routing
/// key use the channel's last declared queue and its name as the routing key.
fn routing_key_shortcut(queue_name: &str, routing_key: &str, resolved_queue: &str) -> String {
    if queue_name.is_empty() && routing_key.is_empty() {
        resolved_queue.to_string()
    } else {
        routing_key.to_string()
    }
}

/// RabbitMQ 3.10's quorum queues refuse queue.delete with if-unused or if-empty (540, a
/// connection error).
fn check_quorum_delete(definition: &QueueDef, if_unused: bool, if_empty: bool) -> Result<(), AmqpError> {
    if QueueType::of(&definition.arguments) != QueueType::Quorum {
        return Ok(());
    }
    let flag = match (if_unused, if_empty) {
        (true, _) => "if-unused",
        (false, true) => "if-empty",
        (false, false) => return Ok(()),
    };
    let text = format!(
        "cannot delete queue '{}' in vhost '{}'. queue.delete operations with {flag} flag set are not supported by quorum queues",
        definition.name, definition.vhost
    );
    Err(AmqpError::new(NOT_IMPLEMENTED, text))
}
