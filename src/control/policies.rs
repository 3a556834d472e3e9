//! `set_policy`, `clear_policy`, `list_policies` and their operator-policy twins, with
//! `rabbitmqctl`'s arguments, banners, output and exit codes: a definition RabbitMQ refuses
//! is "Validation failed" and the reason, exit code 69; a missing vhost exits with 65; a bad
//! `--priority` or a wrong number of arguments is a usage error (64).
//!
//! The policy is validated here (`Policy::parse`, the same check the HTTP API and the
//! definitions import use) and applied by the definitions writer, which logs it before it
//! answers.

use super::commands::{Run, Step};

use super::{Outcome, ANSWER_TIMEOUT, EXIT_DATA, EXIT_UNAVAILABLE, EXIT_USAGE};
use crate::broker::control::{AccountChange, ControlReply, ControlRequest};
use crate::broker::policy::{parse_definition, validation_failed, Policy, PolicyInput, PolicyKind};

const SET_USAGE: &str =
    "[--vhost <vhost>] [--priority <priority>] [--apply-to <apply-to>] <name> <pattern> <definition>";

fn command_name(kind: PolicyKind, verb: &str) -> String {
    match kind {
        PolicyKind::Policy => format!("{verb}_policy"),
        PolicyKind::Operator => format!("{verb}_operator_policy"),
    }
}

impl Run<'_> {
    pub(super) fn set_policy(&self, kind: PolicyKind) -> Step<Outcome> {
        let usage = format!("{} {SET_USAGE}", command_name(kind, "set"));
        let args = &self.options.positional;
        if args.len() != 3 {
            let problem = if args.len() < 3 { "not enough arguments." } else { "too many arguments." };
            return Err(Outcome::fail(EXIT_USAGE, format!("Error (argument validation): {problem}\nusage: {usage}")));
        }
        let priority_text = self.options.priority.clone().unwrap_or_else(|| "0".into());
        let Ok(priority) = priority_text.parse::<i64>() else {
            return Err(Outcome::fail(
                EXIT_USAGE,
                format!("Error (argument validation): Invalid options for this command:\n--priority : {priority_text}\nusage: {usage}"),
            ));
        };
        let apply_to = self.options.apply_to.clone().unwrap_or_else(|| "all".into());
        let (name, pattern, definition_text) = (&args[0], &args[1], &args[2]);
        let vhost = self.vhost();
        let what = match kind {
            PolicyKind::Policy => "policy",
            PolicyKind::Operator => "operator policy override",
        };
        let banner = self.banner(format!(
            "Setting {what} \"{name}\" for pattern \"{pattern}\" to \"{definition_text}\" with priority \"{priority}\" for vhost \"{vhost}\" ..."
        ));
        let failed = |code: i32, err: String| Outcome { code, out: banner.clone(), err, file: None };
        if self.snapshot()?.vhost(&vhost).is_none() {
            return Err(failed(EXIT_DATA, format!("Virtual host '{vhost}' does not exist\n")));
        }
        let definition = parse_definition(definition_text)
            .map_err(|problem| failed(EXIT_UNAVAILABLE, format!("Error:\n{problem}\n")))?;
        let input =
            PolicyInput { kind, vhost: &vhost, name, pattern, apply_to: &apply_to, definition: &definition, priority };
        let policy = Policy::parse(&input)
            .map_err(|reason| failed(EXIT_UNAVAILABLE, format!("Error:\n{}", validation_failed(&reason))))?;
        let change = AccountChange::SetPolicy(Box::new(policy));
        self.ask_failing_with(0, ControlRequest::Change(Box::new(change)), EXIT_UNAVAILABLE)
            .map_err(|outcome| Outcome { out: banner.clone(), ..outcome })?;
        self.wait_for_every_shard()?;
        Ok(Outcome::ok(banner))
    }

    pub(super) fn clear_policy(&self, kind: PolicyKind) -> Step<Outcome> {
        let usage = format!("{} [--vhost <vhost>] <name>", command_name(kind, "clear"));
        let [name] = self.options.positional.as_slice() else {
            return Err(Outcome::fail(
                EXIT_USAGE,
                format!("Error (argument validation): wrong number of arguments\nusage: {usage}"),
            ));
        };
        let vhost = self.vhost();
        let what = match kind {
            PolicyKind::Policy => "policy",
            PolicyKind::Operator => "operator policy",
        };
        let banner = self.banner(format!("Clearing {what} \"{name}\" on vhost \"{vhost}\" ..."));
        let change = AccountChange::ClearPolicy { kind, vhost, name: name.clone() };
        self.ask_failing_with(0, ControlRequest::Change(Box::new(change)), EXIT_UNAVAILABLE)
            .map_err(|outcome| Outcome { out: banner.clone(), ..outcome })?;
        self.wait_for_every_shard()?;
        Ok(Outcome::ok(banner))
    }

    /// Returns once every shard has the definitions the writer has now, so the change is in
    /// effect on every queue when the command ends, as when rabbitmqctl returns (a client
    /// publishing next finds the new limits).
    pub(super) fn wait_for_every_shard(&self) -> Step<()> {
        let ControlReply::Snapshot(snapshot) = self.ask(0, ControlRequest::Snapshot)? else {
            return Err(Outcome::fail(EXIT_DATA, "unexpected answer from the broker"));
        };
        let ask = |shard, request| self.ask(shard, request);
        if !super::wait_for_every_shard(self.shard_count(), snapshot.version, ANSWER_TIMEOUT, ask)? {
            return Err(Outcome::fail(EXIT_UNAVAILABLE, "the broker did not apply the change in time"));
        }
        Ok(())
    }

    /// Lowest priority first, as `rabbit_policy:list_formatted` sorts them.
    pub(super) fn list_policies(&self, kind: PolicyKind) -> Step<Outcome> {
        if !self.options.positional.is_empty() {
            let usage = format!("{} [--vhost <vhost>]", command_name(kind, "list"));
            return Err(Outcome::fail(
                EXIT_USAGE,
                format!("Error (argument validation): too many arguments.\nusage: {usage}"),
            ));
        }
        let vhost = self.vhost();
        let banner = match kind {
            PolicyKind::Policy => format!("Listing policies for vhost \"{vhost}\" ..."),
            PolicyKind::Operator => format!("Listing operator policy overrides for vhost \"{vhost}\" ..."),
        };
        let request = ControlRequest::ListPolicies { kind, vhost: Some(vhost.clone()) };
        let mut policies = match self.ask(0, request) {
            Ok(ControlReply::Policies(policies)) => policies,
            Ok(other) => return Err(Outcome::fail(EXIT_DATA, format!("unexpected answer from the broker: {other:?}"))),
            // The writer's only refusal: the vhost is missing (rabbitmqctl prints it bare).
            Err(refused) if refused.code == EXIT_DATA => {
                return Err(Outcome {
                    code: EXIT_DATA,
                    out: self.banner(banner),
                    err: format!("Virtual host '{vhost}' does not exist\n"),
                    file: None,
                })
            }
            Err(other) => return Err(other),
        };
        policies.sort_by(|a, b| a.priority.cmp(&b.priority).then_with(|| a.name.cmp(&b.name)));
        let rows = policies
            .iter()
            .map(|policy| {
                vec![
                    policy.vhost.clone(),
                    policy.name.clone(),
                    policy.pattern.clone(),
                    policy.apply_to.as_str().to_string(),
                    policy.definition_json(),
                    policy.priority.to_string(),
                ]
            })
            .collect();
        Ok(self.table(banner, &["vhost", "name", "pattern", "apply-to", "definition", "priority"], rows))
    }
}
