//! The definitions writer's side of policies: setting and clearing a policy, and choosing again
//! the policies of every queue and exchange of its vhost, as RabbitMQ's
//! `rabbit_policy:update_matched_objects` does. Queues whose choice changed get a new
//! definition and the snapshot a new `policy_epoch`, which tells their owner shards to look.
//!
//! Errors are sentences for the operator, with `rabbitmqctl`'s texts.

use std::sync::Arc;

use super::definitions::Definitions;
use super::policy::{Policy, PolicyKind};
use super::snapshot::{Exchange, QueueDef};

impl Definitions {
    /// Adds or replaces a policy (validated by `Policy::parse`) in its vhost.
    pub fn set_policy(&mut self, policy: Policy) -> Result<(), String> {
        let vhost = policy.vhost.clone();
        self.update_policies(&vhost, |policies| {
            policies.put(Arc::new(policy));
            Ok(())
        })
    }

    /// Removes a policy; one that does not exist is RabbitMQ's "Parameter does not exist".
    /// As RabbitMQ, a missing vhost is that too.
    pub fn clear_policy(&mut self, kind: PolicyKind, vhost: &str, name: &str) -> Result<(), String> {
        if self.snapshot().vhost(vhost).is_none() {
            return Err("Parameter does not exist".into());
        }
        self.update_policies(vhost, |policies| {
            if policies.remove(kind, name) {
                Ok(())
            } else {
                Err("Parameter does not exist".into())
            }
        })
    }

    fn update_policies(
        &mut self,
        vhost_name: &str,
        change: impl FnOnce(&mut super::policy::VhostPolicies) -> Result<(), String>,
    ) -> Result<(), String> {
        let Some(found) = self.snapshot().vhost(vhost_name) else {
            return Err(format!("Virtual host '{vhost_name}' does not exist"));
        };
        let mut policies = found.policies.clone();
        change(&mut policies)?;
        let snapshot = self.snapshot_mut();
        let Some(vhost) = snapshot.vhosts.get_mut(vhost_name) else {
            return Err(format!("Virtual host '{vhost_name}' does not exist"));
        };
        let vhost = Arc::make_mut(vhost);
        vhost.policies = policies;
        let mut queues_changed = false;
        for queue in vhost.queues.values_mut() {
            let chosen = vhost.policies.for_queue(&queue.name);
            if !chosen.same_as(&queue.policies) {
                *queue = Arc::new(QueueDef { policies: chosen, ..QueueDef::clone(queue) });
                queues_changed = true;
            }
        }
        for exchange in vhost.exchanges.values_mut() {
            let chosen = vhost.policies.for_exchange(&exchange.name);
            let same = match (&chosen, &exchange.policy) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if !same {
                *exchange = Arc::new(Exchange { policy: chosen, ..Exchange::clone(exchange) });
            }
        }
        if queues_changed {
            snapshot.policy_epoch += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::broker::policy::PolicyInput;
    use crate::broker::requests::QueueDeclare;
    use crate::ids::ConnId;

    fn policy(kind: PolicyKind, vhost: &str, name: &str, pattern: &str, definition: serde_json::Value) -> Policy {
        let serde_json::Value::Object(definition) = definition else { panic!("an object") };
        Policy::parse(&PolicyInput {
            kind,
            vhost,
            name,
            pattern,
            apply_to: "all",
            definition: &definition,
            priority: 0,
        })
        .expect("valid")
    }

    fn declare(definitions: &mut Definitions, name: &str) {
        let request = QueueDeclare {
            vhost: "/".into(),
            name: name.into(),
            passive: false,
            durable: true,
            exclusive: false,
            auto_delete: false,
            arguments: Default::default(),
            conn: ConnId { shard: 0, local: 1 },
            grant: None,
        };
        definitions.declare_queue(&request).expect("declared");
    }

    fn queue_policy(definitions: &Definitions, name: &str) -> String {
        let queue = definitions.snapshot().vhost("/").expect("vhost").queues.get(name).expect("queue").clone();
        queue.policies.policy_name().to_string()
    }

    #[test]
    fn setting_and_clearing_a_policy_rechooses_existing_and_new_queues() {
        let mut definitions = Definitions::new(2);
        declare(&mut definitions, "orders");
        let epoch = definitions.snapshot().policy_epoch;
        definitions
            .set_policy(policy(PolicyKind::Policy, "/", "limit", "^ord", json!({"max-length": 1})))
            .expect("set");
        assert_eq!(queue_policy(&definitions, "orders"), "limit");
        assert!(definitions.snapshot().policy_epoch > epoch);
        declare(&mut definitions, "ordinals");
        assert_eq!(queue_policy(&definitions, "ordinals"), "limit");
        definitions.clear_policy(PolicyKind::Policy, "/", "limit").expect("cleared");
        assert_eq!(queue_policy(&definitions, "orders"), "");
        assert_eq!(
            definitions.clear_policy(PolicyKind::Policy, "/", "limit").expect_err("gone"),
            "Parameter does not exist"
        );
        assert_eq!(
            definitions.clear_policy(PolicyKind::Policy, "nope", "limit").expect_err("no vhost"),
            "Parameter does not exist"
        );
        assert_eq!(
            definitions
                .set_policy(policy(PolicyKind::Policy, "nope", "p", ".*", json!({"max-length": 1})))
                .expect_err("no vhost"),
            "Virtual host 'nope' does not exist"
        );
    }

    #[test]
    fn policies_survive_the_compacted_log() {
        let mut definitions = Definitions::new(2);
        declare(&mut definitions, "orders");
        definitions
            .set_policy(policy(PolicyKind::Policy, "/", "limit", "^ord", json!({"max-length": 1})))
            .expect("set");
        definitions
            .set_policy(policy(PolicyKind::Operator, "/", "cap", ".*", json!({"message-ttl": 5})))
            .expect("set operator policy");
        let operations = definitions.durable_operations();
        let defaults = crate::broker::accounts::Defaults::default();
        let replayed = Definitions::from_log(2, &operations, &defaults).expect("replayed");
        let queue = replayed.snapshot().vhost("/").expect("vhost").queues.get("orders").expect("queue").clone();
        assert_eq!((queue.policies.policy_name(), queue.policies.operator_policy_name()), ("limit", "cap"));
        let vhost = replayed.snapshot().vhost("/").expect("vhost").clone();
        assert_eq!(
            vhost.policies.get(PolicyKind::Operator, "cap").expect("kept").definition_json(),
            r#"{"message-ttl":5}"#
        );
        assert_eq!(replayed.durable_operations(), operations, "compaction is stable");
    }

    #[test]
    fn exchanges_get_their_policy_and_a_deleted_vhost_takes_its_policies() {
        let mut definitions = Definitions::new(2);
        definitions.create_vhost("apps").expect("vhost");
        definitions
            .set_policy(policy(PolicyKind::Policy, "apps", "ae", "^amq\\.direct$", json!({"alternate-exchange": "x"})))
            .expect("set");
        let vhost = definitions.snapshot().vhost("apps").expect("vhost").clone();
        assert_eq!(
            vhost.exchanges.get("amq.direct").and_then(|exchange| exchange.policy.clone()).expect("policy").name,
            "ae"
        );
        assert!(vhost.exchanges.get("amq.fanout").expect("exchange").policy.is_none());
        definitions.delete_vhost("apps").expect("deleted");
        definitions.create_vhost("apps").expect("again");
        assert!(definitions.snapshot().vhost("apps").expect("vhost").policies.is_empty());
    }
}
