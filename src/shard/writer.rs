//! The definitions writer's side of the mailbox loop (shard 0 only).
//!
//! Applies a request to `Definitions`, publishes the new snapshot to every shard *before*
//! anything else is sent (so every later message from shard 0 is read after it), then
//! answers or forwards the work to the queue's owner.

use super::Shard;
use crate::broker::definitions::{Definitions, QueueDeclared};
use crate::broker::durable::queue_is_durable;
use crate::broker::error::{AmqpError, INTERNAL_ERROR};
use crate::broker::messages::{ReplyTo, ShardMsg};
use crate::broker::requests::{AdminRequest, QueueRequest, ReplyBody};
use crate::ids::{ConnId, QueueId};
use crate::limits::DEFINITIONS_COMPACT_MIN_RECORDS;
use crate::store::definitions_log::DefinitionOp;

/// The durable change a request makes, computed before it is applied (a delete or unbind
/// must be judged while both ends still exist). Queue declarations are judged after.
fn durable_change_before(definitions: &Definitions, request: &AdminRequest) -> Option<DefinitionOp> {
    match request {
        AdminRequest::ExchangeDeclare(declare) => {
            let exists = definitions
                .snapshot()
                .vhost(&declare.vhost)
                .is_some_and(|vhost| vhost.exchanges.contains_key(&declare.name));
            (!declare.passive && declare.durable && !exists).then(|| DefinitionOp::ExchangeDeclare {
                vhost: declare.vhost.clone(),
                name: declare.name.clone(),
                kind: declare.kind.clone(),
                auto_delete: declare.auto_delete,
                internal: declare.internal,
                arguments: declare.arguments.clone(),
            })
        }
        AdminRequest::ExchangeDelete { vhost, name, .. } => definitions
            .exchange_is_durable(vhost, name)
            .then(|| DefinitionOp::ExchangeDelete { vhost: vhost.clone(), name: name.clone() }),
        AdminRequest::Bind(binding) => definitions.durable_binding(binding).map(DefinitionOp::Bind),
        AdminRequest::Unbind(binding) => definitions.durable_binding(binding).map(DefinitionOp::Unbind),
        AdminRequest::QueueDeclare(_) | AdminRequest::QueueDelete { .. } | AdminRequest::ReleaseExclusive { .. } => {
            None
        }
    }
}

impl Shard {
    /// Appends a durable change to the definitions log and fsyncs it, before the client hears
    /// of it. A failure is answered as an internal error: the change is live but not durable.
    pub(super) fn log_definition(&self, change: &DefinitionOp) -> Result<(), AmqpError> {
        let Some(log) = &self.definitions_log else { return Ok(()) };
        let mut log = log.borrow_mut();
        log.append(change)
            .map_err(|error| AmqpError::new(INTERNAL_ERROR, format!("cannot write the definitions log: {error}")))?;
        if log.records() > DEFINITIONS_COMPACT_MIN_RECORDS {
            let operations =
                self.writer.as_ref().map(|writer| writer.borrow().durable_operations()).unwrap_or_default();
            if log.records() > operations.len() * 2 {
                if let Err(error) = log.compact(&operations) {
                    crate::warn!("definitions log compaction failed (the log stays valid): {error}");
                }
            }
        }
        Ok(())
    }

    pub(super) fn publish_definitions(&self) {
        let Some(writer) = &self.writer else { return };
        let changed = writer.borrow_mut().take_changed();
        if let Some(snapshot) = changed {
            for shard in 1..self.count {
                self.send(shard, ShardMsg::Definitions(snapshot.clone()));
            }
            self.mailboxes.announce_definitions(snapshot.version);
            let policy_epoch = self.snapshot.borrow().policy_epoch;
            *self.snapshot.borrow_mut() = snapshot;
            self.close_orphaned_connections();
            self.apply_new_policies(policy_epoch);
        }
    }

    pub(super) fn handle_admin(&self, request: AdminRequest, reply: ReplyTo) {
        let Some(writer) = &self.writer else {
            self.reply(reply, Err(AmqpError::new(INTERNAL_ERROR, "definitions request sent to a non-writer shard")));
            return;
        };
        if let AdminRequest::ReleaseExclusive { conn } = request {
            // Gone from the definitions now (the answer carries the new version, so the
            // closing connection's shard sees it before close-ok); the owners drop the state.
            let released = writer.borrow_mut().release_exclusive(conn);
            self.publish_definitions();
            for definition in released {
                let request = QueueRequest::Delete { if_unused: false, if_empty: false, deleting: None };
                self.send(definition.id.owner(), ShardMsg::QueueOp { queue: definition.id, request, reply: None });
            }
            self.reply(reply, Ok(ReplyBody::Done));
            return;
        }
        let (result, durable_change) = {
            let mut definitions = writer.borrow_mut();
            let before = durable_change_before(&definitions, &request);
            let result = match &request {
                AdminRequest::ExchangeDeclare(declare) => definitions.declare_exchange(declare).map(|()| None),
                AdminRequest::ExchangeDelete { vhost, name, if_unused } => {
                    definitions.delete_exchange(vhost, name, *if_unused).map(|()| None)
                }
                AdminRequest::Bind(binding) => definitions.bind(binding).map(|()| None),
                AdminRequest::Unbind(binding) => definitions.unbind(binding).map(|()| None),
                AdminRequest::QueueDeclare(declare) => definitions.declare_queue(declare).map(Some),
                AdminRequest::QueueDelete { vhost, name, holder, .. } => definitions
                    .queue_for_delete(vhost, name, holder.conn)
                    .map(|found| found.map(QueueDeclared::Existing)),
                AdminRequest::ReleaseExclusive { .. } => Ok(None),
            };
            let change = match &result {
                Ok(Some(QueueDeclared::Created(definition))) if queue_is_durable(definition) => {
                    Some(DefinitionOp::QueueDeclare {
                        vhost: definition.vhost.clone(),
                        name: definition.name.clone(),
                        sequence: definition.id.sequence(),
                        auto_delete: definition.auto_delete,
                        arguments: definition.arguments.clone(),
                    })
                }
                Ok(_) => before,
                Err(_) => None,
            };
            (result, change)
        };
        let result = match (result, durable_change) {
            (Ok(outcome), Some(change)) => self.log_definition(&change).map(|()| outcome),
            (result, _) => result,
        };
        self.publish_definitions();
        match (result, request) {
            (Err(error), _) => self.reply(reply, Err(error)),
            (Ok(Some(QueueDeclared::Created(definition))), _) => {
                let owner = definition.id.owner();
                self.send(owner, ShardMsg::CreateQueue { definition, reply: Some(reply) });
            }
            (
                Ok(Some(QueueDeclared::Existing(definition))),
                AdminRequest::QueueDelete { if_unused, if_empty, holder, .. },
            ) => {
                let request = QueueRequest::Delete { if_unused, if_empty, deleting: Some(holder) };
                self.send(
                    definition.id.owner(),
                    ShardMsg::QueueOp { queue: definition.id, request, reply: Some(reply) },
                );
            }
            (Ok(Some(QueueDeclared::Existing(definition))), _) => {
                self.reply(reply, Ok(ReplyBody::ExistingQueue(definition.id)));
            }
            (Ok(None), AdminRequest::QueueDelete { .. }) => {
                self.reply(reply, Ok(ReplyBody::QueueDeleted { message_count: 0, cancelled: Vec::new() }))
            }
            (Ok(None), _) => self.reply(reply, Ok(ReplyBody::Done)),
        }
    }

    pub(super) fn handle_queue_deleted(&self, vhost: &str, queue: QueueId, reply: Option<ReplyTo>, answer: ReplyBody) {
        if let Some(writer) = &self.writer {
            let definition = writer.borrow().queue_by_id(vhost, queue);
            if let Some(definition) = definition.filter(|definition| queue_is_durable(definition)) {
                let change =
                    DefinitionOp::QueueDelete { vhost: definition.vhost.clone(), name: definition.name.clone() };
                if let Err(error) = self.log_definition(&change) {
                    crate::error!("{}", error.reply_text);
                }
            }
            // A queue deleted with its vhost is already gone from the definitions.
            let vhost_exists = writer.borrow().snapshot().vhost(vhost).is_some();
            if vhost_exists {
                if let Err(error) = writer.borrow_mut().remove_queue(vhost, queue) {
                    crate::warn!("removing deleted queue {queue:?}: {error}");
                }
            }
        }
        self.publish_definitions();
        if let Some(reply) = reply {
            self.reply(reply, Ok(answer));
        }
    }

    pub(super) fn handle_auto_delete(&self, vhost: &str, name: &str, queue: QueueId) {
        let still_there = self
            .snapshot()
            .vhost(vhost)
            .and_then(|vhost| vhost.queues.get(name))
            .is_some_and(|definition| definition.id == queue);
        if still_there {
            // Only if still unused when the owner reads this: a consumer may have come back.
            let request = QueueRequest::Delete { if_unused: true, if_empty: false, deleting: None };
            self.send(queue.owner(), ShardMsg::QueueOp { queue, request, reply: None });
        }
    }

    pub(super) fn handle_connection_gone(&self, conn: ConnId) {
        let Some(writer) = &self.writer else { return };
        let exclusive = writer.borrow().exclusive_queues_of(conn);
        for definition in exclusive {
            let request = QueueRequest::Delete { if_unused: false, if_empty: false, deleting: None };
            self.send(definition.id.owner(), ShardMsg::QueueOp { queue: definition.id, request, reply: None });
        }
    }
}
