//! The definitions writer's side of the mailbox loop (shard 0 only).
//!
//! Applies a request to `Definitions`, publishes the new snapshot to every shard *before*
//! anything else is sent (so every later message from shard 0 is read after it), then
//! answers or forwards the work to the queue's owner.

use super::messages::{ReplyTo, ShardMsg};
use super::Shard;
use crate::broker::definitions::QueueDeclared;
use crate::broker::error::{AmqpError, INTERNAL_ERROR};
use crate::broker::ids::{ConnId, QueueId};
use crate::broker::requests::{AdminRequest, QueueRequest, ReplyBody};

impl Shard {
    fn publish_definitions(&self) {
        let Some(writer) = &self.writer else { return };
        let changed = writer.borrow_mut().take_changed();
        if let Some(snapshot) = changed {
            for shard in 1..self.count {
                self.send(shard, ShardMsg::Definitions(snapshot.clone()));
            }
            *self.snapshot.borrow_mut() = snapshot;
        }
    }

    pub(super) fn handle_admin(&self, request: AdminRequest, reply: ReplyTo) {
        let Some(writer) = &self.writer else {
            self.reply(
                reply,
                Err(AmqpError::new(
                    INTERNAL_ERROR,
                    "definitions request sent to a non-writer shard",
                )),
            );
            return;
        };
        let result = {
            let mut definitions = writer.borrow_mut();
            match &request {
                AdminRequest::ExchangeDeclare(declare) => {
                    definitions.declare_exchange(declare).map(|()| None)
                }
                AdminRequest::ExchangeDelete {
                    vhost,
                    name,
                    if_unused,
                } => definitions
                    .delete_exchange(vhost, name, *if_unused)
                    .map(|()| None),
                AdminRequest::Bind(binding) => definitions.bind(binding).map(|()| None),
                AdminRequest::Unbind(binding) => definitions.unbind(binding).map(|()| None),
                AdminRequest::QueueDeclare(declare) => definitions.declare_queue(declare).map(Some),
                AdminRequest::QueueDelete {
                    vhost, name, conn, ..
                } => definitions
                    .queue_for_delete(vhost, name, *conn)
                    .map(|found| found.map(QueueDeclared::Existing)),
            }
        };
        self.publish_definitions();
        match (result, request) {
            (Err(error), _) => self.reply(reply, Err(error)),
            (Ok(Some(QueueDeclared::Created(definition))), _) => {
                let owner = definition.id.owner();
                self.send(
                    owner,
                    ShardMsg::CreateQueue {
                        definition,
                        reply: Some(reply),
                    },
                );
            }
            (
                Ok(Some(QueueDeclared::Existing(definition))),
                AdminRequest::QueueDelete {
                    if_unused,
                    if_empty,
                    ..
                },
            ) => {
                let request = QueueRequest::Delete {
                    if_unused,
                    if_empty,
                };
                self.send(
                    definition.id.owner(),
                    ShardMsg::QueueOp {
                        queue: definition.id,
                        request,
                        reply: Some(reply),
                    },
                );
            }
            (Ok(Some(QueueDeclared::Existing(definition))), _) => {
                let request = QueueRequest::DeclareOk;
                self.send(
                    definition.id.owner(),
                    ShardMsg::QueueOp {
                        queue: definition.id,
                        request,
                        reply: Some(reply),
                    },
                );
            }
            (Ok(None), AdminRequest::QueueDelete { .. }) => {
                self.reply(reply, Ok(ReplyBody::MessageCount(0)))
            }
            (Ok(None), _) => self.reply(reply, Ok(ReplyBody::Done)),
        }
    }

    pub(super) fn handle_queue_deleted(
        &self,
        vhost: &str,
        queue: QueueId,
        reply: Option<ReplyTo>,
        message_count: u32,
    ) {
        if let Some(writer) = &self.writer {
            if let Err(error) = writer.borrow_mut().remove_queue(vhost, queue) {
                crate::warn!("removing deleted queue {queue:?}: {error}");
            }
        }
        self.publish_definitions();
        if let Some(reply) = reply {
            self.reply(reply, Ok(ReplyBody::MessageCount(message_count)));
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
            let request = QueueRequest::Delete {
                if_unused: true,
                if_empty: false,
            };
            self.send(
                queue.owner(),
                ShardMsg::QueueOp {
                    queue,
                    request,
                    reply: None,
                },
            );
        }
    }

    pub(super) fn handle_connection_gone(&self, conn: ConnId) {
        let Some(writer) = &self.writer else { return };
        let exclusive = writer.borrow().exclusive_queues_of(conn);
        for definition in exclusive {
            let request = QueueRequest::Delete {
                if_unused: false,
                if_empty: false,
            };
            self.send(
                definition.id.owner(),
                ShardMsg::QueueOp {
                    queue: definition.id,
                    request,
                    reply: None,
                },
            );
        }
    }
}
