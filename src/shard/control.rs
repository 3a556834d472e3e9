//! A shard's side of the control socket: operator requests read from the shard's control
//! inbox, answered on the asking thread's channel.
//!
//! Changes of users, vhosts, permissions and policies are applied by the definitions writer (shard 0),
//! logged and fsynced before they are answered, then published to every shard like any
//! definitions change. A shard that receives definitions closes the connections whose vhost
//! or user is gone (320, RabbitMQ's texts).

use std::rc::Rc;

use rustc_hash::FxHashMap;

use super::Shard;
use crate::amqp::connection::Connection;
use crate::broker::control::{
    AccountChange, ChannelInfo, ConnectionInfo, ControlAnswer, ControlMsg, ControlReply, ControlRequest,
    PublishRequest, QueueMetrics, ShardAsk, ShardMetrics, COMMIT_BATCH_BUCKETS, FSYNC_SECONDS_BUCKETS,
};
use crate::broker::durable::{
    permission_operation, policy_operation, user_limits_operation, user_operation, vhost_limits_operation,
};
use crate::broker::error::{AmqpError, CONNECTION_FORCED};
use crate::broker::messages::ShardMsg;
use crate::broker::policy::PolicyKind;
use crate::broker::queue::Settle;
use crate::broker::requests::QueueRequest;
use crate::store::definitions_log::DefinitionOp;

impl Shard {
    pub(super) fn handle_control(&self, message: ControlMsg) {
        let reply = message.reply;
        let answer = match message.request {
            ControlRequest::Ask(ask) => {
                // Answered when the shard asked answers, from the mailbox loop.
                let forward = Box::new(move |result| {
                    let _ = reply.send(Ok(ControlReply::Answer(result)));
                });
                match *ask {
                    ShardAsk::Admin(request) => {
                        let request = Box::new(request);
                        self.request_then(0, |reply| ShardMsg::Admin { request, reply }, forward);
                    }
                    ShardAsk::Queue { queue, request } => {
                        let make = |reply| ShardMsg::QueueOp { queue, request, reply: Some(reply) };
                        self.request_then(queue.owner(), make, forward);
                    }
                }
                return;
            }
            ControlRequest::Publish(publish) => Ok(ControlReply::Routed(self.publish_for_operator(*publish))),
            ControlRequest::Settle { queue, holder, sequences, requeue } => {
                let action = if requeue { Settle::Requeue } else { Settle::Discard };
                self.send(queue.owner(), ShardMsg::Settle { queue, holder, sequences, action });
                Ok(ControlReply::Done)
            }
            ControlRequest::ListConsumers => Ok(ControlReply::Consumers(
                self.queues.borrow().values().flat_map(|queue| queue.consumer_infos()).collect(),
            )),
            ControlRequest::ListChannels => Ok(ControlReply::Channels(self.channel_infos())),
            ControlRequest::Metrics { per_queue } => Ok(ControlReply::Metrics(Box::new(self.metrics(per_queue)))),
            ControlRequest::Change(change) => self.apply_account_change(*change),
            ControlRequest::ListQueues { vhost, name } => {
                Ok(ControlReply::Queues(self.queue_infos(vhost.as_deref(), name.as_deref())))
            }
            ControlRequest::ListConnections => Ok(ControlReply::Connections(self.connection_infos())),
            ControlRequest::CloseConnection { name, reason } => {
                let connections: Vec<_> = self
                    .connections
                    .borrow()
                    .values()
                    .filter(|connection| *connection.name.borrow() == name)
                    .cloned()
                    .collect();
                let error = AmqpError::new(CONNECTION_FORCED, &reason);
                for connection in &connections {
                    crate::info!("closing connection {} ({name}): {reason}", connection.id);
                    connection.force_close(&error);
                }
                Ok(ControlReply::Closed(connections.len()))
            }
            ControlRequest::Snapshot => Ok(ControlReply::Snapshot(self.snapshot())),
            ControlRequest::ListPolicies { kind, vhost } => self.list_policies(kind, vhost.as_deref()),
            ControlRequest::CatchUp { version } => {
                self.catch_up(version);
                Ok(ControlReply::Version(self.version()))
            }
            ControlRequest::Import(file) => self.import_definitions(&file),
        };
        // The operator may have given up waiting: nobody to tell then.
        let _ = reply.send(answer);
    }

    /// Routes with this shard's snapshot and sends the message to every queue it reaches, as
    /// a channel without confirms does. Whether any queue took it.
    fn publish_for_operator(&self, publish: PublishRequest) -> bool {
        let snapshot = self.snapshot();
        let mut routes = Vec::new();
        if let Some(vhost) = snapshot.vhost(&publish.vhost) {
            if let Some(exchange) = vhost.exchanges.get(&publish.exchange) {
                let properties = publish.message.properties.clone();
                let mut headers = move || crate::codec::hotpath::parse_properties(&properties).ok();
                vhost.route_with_alternates(exchange, &publish.message.routing_key, &mut headers, &mut routes);
            }
        }
        for queue in &routes {
            let message = ShardMsg::Publish {
                queue: *queue,
                message: publish.message.clone(),
                publisher: publish.publisher,
                publish_sequence: None,
            };
            self.send(queue.owner(), message);
        }
        !routes.is_empty()
    }

    fn channel_infos(&self) -> Vec<ChannelInfo> {
        let mut infos = Vec::new();
        for connection in self.connections.borrow().values() {
            for channel in connection.channels.borrow().values() {
                infos.push(ChannelInfo {
                    connection: connection.name.borrow().clone(),
                    number: channel.id,
                    user: connection.user.borrow().clone(),
                    vhost: connection.vhost.borrow().clone(),
                    consumers: channel.consumers.len() as u64,
                    unacked: channel.unacked.len() as u64,
                    prefetch_count: channel.prefetch_count,
                    confirm: channel.is_confirming(),
                });
            }
        }
        infos
    }

    /// Counts for a Prometheus scrape, all from this shard's own fields.
    fn metrics(&self, per_queue: bool) -> ShardMetrics {
        let connections = self.connections.borrow();
        let channels = connections.values().map(|connection| connection.channels.borrow().len() as u64).sum();
        let queues = self.queues.borrow();
        let mut metrics = ShardMetrics {
            shard: self.id,
            mailbox_depth: self.mailboxes.depth(self.id) as u64,
            connections: connections.len() as u64,
            channels,
            connections_opened: self.connection_counts.opened.get(),
            connections_closed: self.connection_counts.closed.get(),
            fsyncs: self.sync_signal.fsyncs.get(),
            fsync_micros: self.sync_signal.fsync_micros.get(),
            fsync_buckets: self.sync_signal.fsync_latency.counts(FSYNC_SECONDS_BUCKETS.len() + 1),
            commit_batch_buckets: self.sync_signal.commit_batch.counts(COMMIT_BATCH_BUCKETS.len() + 1),
            commit_batch_sum: self.sync_signal.confirmed_messages.get(),
            loop_turns: self.work_counts.loop_turns.get(),
            cpu_micros: crate::clock::thread_cpu_ns() / 1_000,
            store_written_bytes: self.with_store(|store| store.written_total_bytes()).unwrap_or(0),
            compacted_segments: self.work_counts.compacted_segments.get(),
            compacted_messages: self.work_counts.compacted_messages.get(),
            packed_messages: self.work_counts.packed_messages.get(),
            paging_pauses: self.connection_counts.paging_pauses.get(),
            pressure_pauses: self.connection_counts.pressure_pauses.get(),
            vhost_stats: self.channel_stats_per_vhost(&connections),
            queues: queues.len() as u64,
            ..ShardMetrics::default()
        };
        for queue in queues.values() {
            let counts = QueueMetrics {
                vhost: String::new(),
                name: String::new(),
                messages_ready: u64::from(queue.message_count()),
                messages_unacked: u64::from(queue.unacked_count()),
                ready_bytes: queue.ready_bytes(),
                consumers: u64::from(queue.consumer_count()),
                stats: queue.stats(),
            };
            metrics.totals.add(&counts);
            if per_queue {
                let vhost = queue.definition.vhost.clone();
                metrics.per_queue.push(QueueMetrics { vhost, name: queue.definition.name.clone(), ..counts });
            }
        }
        metrics.consumers = metrics.totals.consumers;
        metrics
    }

    /// The channel-side counts of its connections, open and closed, per vhost.
    fn channel_stats_per_vhost(
        &self,
        connections: &FxHashMap<u64, Rc<Connection>>,
    ) -> Vec<(String, crate::broker::control::MessageStats)> {
        let mut per_vhost = self.connection_counts.closed_stats.borrow().clone();
        for connection in connections.values() {
            let stats = connection.channel_stats();
            if stats != crate::broker::control::MessageStats::default() {
                per_vhost.entry(connection.vhost.borrow().clone()).or_default().add(&stats);
            }
        }
        let mut list: Vec<_> = per_vhost.into_iter().collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }

    fn queue_infos(&self, vhost: Option<&str>, name: Option<&str>) -> Vec<crate::broker::control::QueueInfo> {
        let queues = self.queues.borrow();
        let mut infos: Vec<_> = queues
            .values()
            .filter(|queue| vhost.is_none_or(|vhost| queue.definition.vhost == vhost))
            .filter(|queue| name.is_none_or(|name| queue.definition.name == name))
            .map(|queue| crate::broker::control::QueueInfo {
                vhost: queue.definition.vhost.clone(),
                name: queue.definition.name.clone(),
                durable: queue.definition.durable,
                auto_delete: queue.definition.auto_delete,
                exclusive: queue.definition.exclusive_owner.is_some(),
                messages_ready: u64::from(queue.message_count()),
                messages_unacknowledged: u64::from(queue.unacked_count()),
                consumers: u64::from(queue.consumer_count()),
                ready_bytes: queue.ready_bytes(),
                policy: queue.definition.policies.policy_name().to_string(),
                operator_policy: queue.definition.policies.operator_policy_name().to_string(),
                effective_policy_definition: queue.definition.policies.effective_definition(),
                stats: queue.stats(),
            })
            .collect();
        infos.sort_by(|a, b| (&a.vhost, &a.name).cmp(&(&b.vhost, &b.name)));
        infos
    }

    fn list_policies(&self, kind: PolicyKind, vhost: Option<&str>) -> ControlAnswer {
        let snapshot = self.snapshot();
        let policies = match vhost {
            Some(name) => match snapshot.vhost(name) {
                Some(found) => found.policies.list(kind).to_vec(),
                None => return Err(format!("Virtual host '{name}' does not exist")),
            },
            None => {
                let mut vhosts: Vec<_> = snapshot.vhosts.values().collect();
                vhosts.sort_by(|a, b| a.name.cmp(&b.name));
                vhosts.iter().flat_map(|found| found.policies.list(kind).iter().cloned()).collect()
            }
        };
        Ok(ControlReply::Policies(policies))
    }

    fn connection_infos(&self) -> Vec<ConnectionInfo> {
        self.connections
            .borrow()
            .values()
            .map(|connection| ConnectionInfo {
                id: connection.id,
                name: connection.name.borrow().clone(),
                user: connection.user.borrow().clone(),
                vhost: connection.vhost.borrow().clone(),
                peer: connection.name.borrow().split(" -> ").next().unwrap_or_default().to_string(),
                channels: connection.channels.borrow().len() as u64,
                shard: self.id,
                tls: connection.is_tls.get(),
                frame_max: connection.frame_max.get(),
                channel_max: connection.channel_max.get(),
            })
            .collect()
    }

    /// Applies a change on the writer, logs it, publishes the new definitions.
    fn apply_account_change(&self, change: AccountChange) -> ControlAnswer {
        let Some(writer) = &self.writer else {
            return Err("account change sent to a shard that does not write definitions".into());
        };
        let (operation, dropped_queues) = {
            let mut definitions = writer.borrow_mut();
            let mut dropped = Vec::new();
            let operation = match change {
                AccountChange::AddUser { name, password, tags } => {
                    definitions.add_user(&name, password, tags)?;
                    definitions.snapshot().user(&name).map(|user| user_operation(user))
                }
                AccountChange::DeleteUser { name } => {
                    definitions.delete_user(&name)?;
                    Some(DefinitionOp::UserDelete { name })
                }
                AccountChange::ChangePassword { name, password } => {
                    definitions.change_password(&name, password)?;
                    definitions.snapshot().user(&name).map(|user| user_operation(user))
                }
                AccountChange::SetTags { name, tags } => {
                    definitions.set_tags(&name, tags)?;
                    definitions.snapshot().user(&name).map(|user| user_operation(user))
                }
                AccountChange::AddVhost { name } => {
                    definitions.create_vhost(&name)?;
                    Some(DefinitionOp::VhostAdd { name })
                }
                AccountChange::DeleteVhost { name } => {
                    dropped = definitions.delete_vhost(&name)?;
                    Some(DefinitionOp::VhostDelete { name })
                }
                AccountChange::SetPermissions { user, vhost, permissions } => {
                    let operation = permission_operation(&user, &vhost, &permissions);
                    definitions.set_permissions(&user, &vhost, *permissions)?;
                    Some(operation)
                }
                AccountChange::SetVhostLimits { name, limits } => {
                    definitions.set_vhost_limits(&name, limits)?;
                    Some(vhost_limits_operation(&name, limits))
                }
                AccountChange::SetUserLimits { name, limits } => {
                    definitions.set_user_limits(&name, limits)?;
                    Some(user_limits_operation(&name, limits))
                }
                AccountChange::ClearPermissions { user, vhost } => {
                    definitions.clear_permissions(&user, &vhost)?;
                    Some(DefinitionOp::PermissionClear { user, vhost })
                }
                AccountChange::SetPolicy(policy) => {
                    let operation = policy_operation(&policy);
                    definitions.set_policy(*policy)?;
                    Some(operation)
                }
                AccountChange::ClearPolicy { kind, vhost, name } => {
                    definitions.clear_policy(kind, &vhost, &name)?;
                    Some(DefinitionOp::PolicyClear { operator: kind == PolicyKind::Operator, vhost, name })
                }
            };
            (operation, dropped)
        };
        let logged = match &operation {
            Some(operation) => self.log_definition(operation).map_err(|error| error.reply_text),
            None => Ok(()),
        };
        self.publish_definitions();
        // The vhost's queues go with it: each owner drops its messages (their records are
        // freed, and compaction gives the disk space back).
        for queue in dropped_queues {
            let request = QueueRequest::Delete { if_unused: false, if_empty: false, deleting: None };
            self.send(queue.id.owner(), ShardMsg::QueueOp { queue: queue.id, request, reply: None });
        }
        logged.map(|()| ControlReply::Done)
    }

    /// Imports a definitions file on the writer: all of it or nothing; then the definitions
    /// log is rewritten in one atomic compaction and the new queues are created on their
    /// owners.
    fn import_definitions(&self, file: &crate::broker::definitions_file::DefinitionsFile) -> ControlAnswer {
        let Some(writer) = &self.writer else {
            return Err("import sent to a shard that does not write definitions".into());
        };
        let imported = writer.borrow_mut().import(file)?;
        if let Some(log) = &self.definitions_log {
            let operations = writer.borrow().durable_operations();
            if let Err(error) = log.borrow_mut().compact(&operations) {
                crate::error!("definitions imported but not stored: {error}");
                return Err(format!("the definitions were applied but cannot be stored: {error}"));
            }
        }
        self.publish_definitions();
        for definition in imported.created_queues {
            let owner = definition.id.owner();
            self.send(owner, ShardMsg::CreateQueue { definition, reply: None });
        }
        Ok(ControlReply::Imported { warnings: imported.warnings })
    }

    /// After new definitions: connections whose vhost or user is gone are closed, as
    /// RabbitMQ's connection tracking closes them.
    pub(super) fn close_orphaned_connections(&self) {
        let snapshot = self.snapshot();
        let connections: Vec<_> = self.connections.borrow().values().cloned().collect();
        for connection in connections {
            let vhost = connection.vhost.borrow().clone();
            let user = connection.user.borrow().clone();
            let reason = if snapshot.vhost(&vhost).is_none() {
                format!("vhost '{vhost}' is deleted")
            } else if snapshot.user(&user).is_none() {
                format!("user '{user}' is deleted")
            } else {
                continue;
            };
            crate::info!("closing connection {} ({}): {reason}", connection.id, connection.name.borrow());
            connection.force_close(&AmqpError::new(CONNECTION_FORCED, reason));
        }
    }
}
