//! The commands of the control socket, with `rabbitmqctl`'s names, arguments and output:
//! each parses its arguments, asks the shards through their control inboxes, and formats the
//! answer as a table or a banner line.

use std::sync::Arc;

use serde_json::Value;

use super::{AskError, Options, Outcome, EXIT_DATA, EXIT_UNAVAILABLE, EXIT_USAGE};
use crate::broker::control::{AccountChange, ControlReply, ControlRequest, QueueInfo};
use crate::broker::passwords::PasswordHash;
use crate::broker::policy::PolicyKind;
use crate::broker::snapshot::Snapshot;
use crate::broker::users::{parse_limits, parse_tags, Permissions, UserLimits, VhostLimits};
use crate::broker::{definitions_file, definitions_import};
use crate::shard::mailbox::Mailboxes;

pub const COMMANDS: &str = "\
Users:
    add_user USER PASSWORD            change_password USER PASSWORD
    delete_user USER                  authenticate_user USER PASSWORD
    set_user_tags USER [TAG ...]      list_users
Vhosts:
    add_vhost VHOST                   delete_vhost VHOST
    list_vhosts
Permissions:
    set_permissions [-p VHOST] USER CONFIGURE WRITE READ
    clear_permissions [-p VHOST] USER
    list_permissions [-p VHOST]       list_user_permissions USER
Limits (JSON as rabbitmqctl takes it; a negative value is no limit):
    set_vhost_limits [-p VHOST] '{\"max-connections\": N, \"max-queues\": N}'
    clear_vhost_limits [-p VHOST]     list_vhost_limits [-p VHOST]
    set_user_limits USER '{\"max-connections\": N}'
    clear_user_limits USER max-connections|all   list_user_limits USER
Monitoring:
    list_queues [-p VHOST] [COLUMN ...]   (name messages messages_ready messages_unacknowledged
                                           consumers durable auto_delete exclusive vhost
                                           message_bytes_ready policy operator_policy
                                           effective_policy_definition)
    list_connections [COLUMN ...]         (name user vhost peer_host peer_port channels state)
    close_connection NAME EXPLANATION
Policies (JSON definitions as rabbitmqctl takes them; --priority default 0, --apply-to default all):
    set_policy [-p VHOST] [--priority N] [--apply-to queues|exchanges|all] NAME PATTERN DEFINITION
    clear_policy [-p VHOST] NAME      list_policies [-p VHOST]
    set_operator_policy [-p VHOST] [--priority N] [--apply-to queues|exchanges|all] NAME PATTERN DEFINITION
    clear_operator_policy [-p VHOST] NAME   list_operator_policies [-p VHOST]
Definitions:
    export_definitions FILE|-         import_definitions [-p VHOST] FILE
Options: -p VHOST (default /), -q/--quiet (no banner), -s/--silent (no headers either)
";

/// Runs one command.
pub fn execute(args: &[String], input: Option<String>, mailboxes: &Mailboxes) -> Outcome {
    let Some((command, rest)) = args.split_first() else {
        return Outcome::fail(EXIT_USAGE, format!("no command given\n\n{COMMANDS}"));
    };
    let options = match super::options(rest) {
        Ok(options) => options,
        Err(problem) => return Outcome::fail(EXIT_USAGE, problem),
    };
    let run = Run { options, mailboxes };
    let result = match command.as_str() {
        "add_user" => run.change("add_user USER PASSWORD", 2, "Adding user \"{0}\" ...", |args| {
            Ok(AccountChange::AddUser { name: args[0].clone(), password: hash(&args[1])?, tags: vec![] })
        }),
        "delete_user" => run.change("delete_user USER", 1, "Deleting user \"{0}\" ...", |args| {
            Ok(AccountChange::DeleteUser { name: args[0].clone() })
        }),
        "change_password" => {
            run.change("change_password USER PASSWORD", 2, "Changing password for user \"{0}\" ...", |args| {
                Ok(AccountChange::ChangePassword { name: args[0].clone(), password: hash(&args[1])? })
            })
        }
        "set_user_tags" => run.set_user_tags(),
        "authenticate_user" => run.authenticate_user(),
        "list_users" => run.list_users(),
        "add_vhost" => run.change("add_vhost VHOST", 1, "Adding vhost \"{0}\" ...", |args| {
            Ok(AccountChange::AddVhost { name: args[0].clone() })
        }),
        "delete_vhost" => run.change("delete_vhost VHOST", 1, "Deleting vhost \"{0}\" ...", |args| {
            Ok(AccountChange::DeleteVhost { name: args[0].clone() })
        }),
        "list_vhosts" => run.list_vhosts(),
        "set_permissions" => run.set_permissions(),
        "clear_permissions" => run.clear_permissions(),
        "list_permissions" => run.list_permissions(),
        "list_user_permissions" => run.list_user_permissions(),
        "set_vhost_limits" => run.set_vhost_limits(),
        "clear_vhost_limits" => run.clear_vhost_limits(),
        "list_vhost_limits" => run.list_vhost_limits(),
        "set_user_limits" => run.set_user_limits(),
        "clear_user_limits" => run.clear_user_limits(),
        "list_user_limits" => run.list_user_limits(),
        "list_queues" => run.list_queues(),
        "list_connections" => run.list_connections(),
        "close_connection" => run.close_connection(),
        "set_policy" => run.set_policy(PolicyKind::Policy),
        "clear_policy" => run.clear_policy(PolicyKind::Policy),
        "list_policies" => run.list_policies(PolicyKind::Policy),
        "set_operator_policy" => run.set_policy(PolicyKind::Operator),
        "clear_operator_policy" => run.clear_policy(PolicyKind::Operator),
        "list_operator_policies" => run.list_policies(PolicyKind::Operator),
        "export_definitions" => run.export_definitions(),
        "import_definitions" => run.import_definitions(input),
        other => Err(Outcome::fail(EXIT_USAGE, format!("unknown command '{other}'\n\n{COMMANDS}"))),
    };
    result.unwrap_or_else(|failure| failure)
}

pub(super) struct Run<'a> {
    pub(super) options: Options,
    mailboxes: &'a Mailboxes,
}

pub(super) type Step<T> = Result<T, Outcome>;

impl Run<'_> {
    pub(super) fn vhost(&self) -> String {
        self.options.vhost.clone().unwrap_or_else(|| "/".to_string())
    }

    fn arguments(&self, count: usize, usage: &str) -> Step<&[String]> {
        if self.options.positional.len() != count {
            return Err(Outcome::fail(EXIT_USAGE, format!("usage: {usage}")));
        }
        Ok(&self.options.positional)
    }

    /// Asks shard `shard` and waits for its answer.
    /// Applies a definitions change through the writer and returns once every shard has it,
    /// so it is in effect everywhere when the command ends, as when rabbitmqctl returns (a
    /// login next sees a new password).
    fn apply(&self, change: AccountChange) -> Step<()> {
        self.ask(0, ControlRequest::Change(Box::new(change)))?;
        self.wait_for_every_shard()
    }

    pub(super) fn ask(&self, shard: usize, request: ControlRequest) -> Step<ControlReply> {
        self.ask_failing_with(shard, request, EXIT_DATA)
    }

    /// Asks like `ask`; a refusal exits with `failure_code`.
    pub(super) fn ask_failing_with(
        &self,
        shard: usize,
        request: ControlRequest,
        failure_code: i32,
    ) -> Step<ControlReply> {
        super::ask(self.mailboxes, shard, request).map_err(|error| failure_with(error, failure_code))
    }

    pub(super) fn shard_count(&self) -> usize {
        self.mailboxes.shards()
    }

    fn ask_all(&self, request: impl Fn() -> ControlRequest) -> Step<Vec<ControlReply>> {
        super::ask_all(self.mailboxes, request).map_err(failure)
    }

    pub(super) fn snapshot(&self) -> Step<Arc<Snapshot>> {
        match self.ask(0, ControlRequest::Snapshot)? {
            ControlReply::Snapshot(snapshot) => Ok(snapshot),
            other => Err(unexpected(&other)),
        }
    }

    pub(super) fn banner(&self, text: String) -> String {
        if self.options.quiet {
            String::new()
        } else {
            text + "\n"
        }
    }

    /// A table: header line (unless silent) and tab-separated rows.
    pub(super) fn table(&self, banner: String, header: &[&str], rows: Vec<Vec<String>>) -> Outcome {
        let mut out = self.banner(banner);
        if !self.options.silent {
            out.push_str(&header.join("\t"));
            out.push('\n');
        }
        for row in rows {
            out.push_str(&row.join("\t"));
            out.push('\n');
        }
        Outcome::ok(out)
    }

    /// A change of users, vhosts or permissions: `count` arguments, the banner with `{0}` for
    /// the first argument.
    fn change(
        &self,
        usage: &str,
        count: usize,
        banner: &str,
        make: impl FnOnce(&[String]) -> Result<AccountChange, String>,
    ) -> Step<Outcome> {
        let args = self.arguments(count, usage)?;
        let change = make(args).map_err(|problem| Outcome::fail(EXIT_DATA, format!("Error:\n{problem}")))?;
        self.apply(change)?;
        Ok(Outcome::ok(self.banner(banner.replace("{0}", &args[0]))))
    }

    fn set_user_tags(&self) -> Step<Outcome> {
        let Some((user, tags)) = self.options.positional.split_first() else {
            return Err(Outcome::fail(EXIT_USAGE, "usage: set_user_tags USER [TAG ...]"));
        };
        let tags = parse_tags(tags.iter().map(String::as_str));
        let banner = format!("Setting tags for user \"{user}\" to [{}] ...", tags.join(", "));
        self.apply(AccountChange::SetTags { name: user.clone(), tags })?;
        Ok(Outcome::ok(self.banner(banner)))
    }

    fn authenticate_user(&self) -> Step<Outcome> {
        let args = self.arguments(2, "authenticate_user USER PASSWORD")?;
        let snapshot = self.snapshot()?;
        let verified = snapshot.user(&args[0]).is_some_and(|user| user.password.verify(args[1].as_bytes()));
        if !verified {
            return Err(Outcome::fail(EXIT_DATA, format!("Error: failed to authenticate user \"{}\"", args[0])));
        }
        Ok(Outcome::ok(format!("{}Success\n", self.banner(format!("Authenticating user \"{}\" ...", args[0])))))
    }

    fn list_users(&self) -> Step<Outcome> {
        self.arguments(0, "list_users")?;
        let snapshot = self.snapshot()?;
        let mut users: Vec<_> = snapshot.users.values().collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        let rows = users.iter().map(|user| vec![user.name.clone(), format!("[{}]", user.tags.join(", "))]).collect();
        Ok(self.table("Listing users ...".into(), &["user", "tags"], rows))
    }

    fn list_vhosts(&self) -> Step<Outcome> {
        self.arguments(0, "list_vhosts")?;
        let snapshot = self.snapshot()?;
        let mut names: Vec<_> = snapshot.vhosts.keys().cloned().collect();
        names.sort();
        Ok(self.table("Listing vhosts ...".into(), &["name"], names.into_iter().map(|name| vec![name]).collect()))
    }

    fn set_permissions(&self) -> Step<Outcome> {
        let args = self.arguments(4, "set_permissions [-p VHOST] USER CONFIGURE WRITE READ")?;
        let permissions = Permissions::new(&args[1], &args[2], &args[3])
            .map_err(|problem| Outcome::fail(EXIT_DATA, format!("Error:\n{problem}")))?;
        let (user, vhost) = (args[0].clone(), self.vhost());
        let banner = format!("Setting permissions for user \"{user}\" in vhost \"{vhost}\" ...");
        self.apply(AccountChange::SetPermissions { user, vhost, permissions: Box::new(permissions) })?;
        Ok(Outcome::ok(self.banner(banner)))
    }

    fn clear_permissions(&self) -> Step<Outcome> {
        let args = self.arguments(1, "clear_permissions [-p VHOST] USER")?;
        let (user, vhost) = (args[0].clone(), self.vhost());
        let banner = format!("Clearing permissions for user \"{user}\" in vhost \"{vhost}\" ...");
        self.apply(AccountChange::ClearPermissions { user, vhost })?;
        Ok(Outcome::ok(self.banner(banner)))
    }

    fn list_permissions(&self) -> Step<Outcome> {
        self.arguments(0, "list_permissions [-p VHOST]")?;
        let vhost = self.vhost();
        let snapshot = self.snapshot()?;
        if snapshot.vhost(&vhost).is_none() {
            return Err(Outcome::fail(EXIT_DATA, format!("Error:\nvhost '{vhost}' does not exist")));
        }
        let mut users: Vec<_> = snapshot.users.values().collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        let rows = users
            .iter()
            .filter_map(|user| {
                let permissions = user.permissions.get(&vhost)?;
                Some(permission_row(&user.name, permissions))
            })
            .collect();
        let banner = format!("Listing permissions for vhost \"{vhost}\" ...");
        Ok(self.table(banner, &["user", "configure", "write", "read"], rows))
    }

    fn list_user_permissions(&self) -> Step<Outcome> {
        let args = self.arguments(1, "list_user_permissions USER")?;
        let snapshot = self.snapshot()?;
        let Some(user) = snapshot.user(&args[0]) else {
            return Err(Outcome::fail(EXIT_DATA, format!("Error:\nuser '{}' does not exist", args[0])));
        };
        let mut vhosts: Vec<_> = user.permissions.iter().collect();
        vhosts.sort_by(|a, b| a.0.cmp(b.0));
        let rows = vhosts.into_iter().map(|(vhost, permissions)| permission_row(vhost, permissions)).collect();
        let banner = format!("Listing permissions for user \"{}\" ...", args[0]);
        Ok(self.table(banner, &["vhost", "configure", "write", "read"], rows))
    }

    fn set_vhost_limits(&self) -> Step<Outcome> {
        let args = self.arguments(1, "set_vhost_limits [-p VHOST] JSON")?;
        let vhost = self.vhost();
        let current = self.snapshot()?.vhost(&vhost).map(|found| found.limits).unwrap_or_default();
        let mut limits = current;
        for (key, limit) in parse_limits(&args[0], &["max-connections", "max-queues"]).map_err(data_error)? {
            match key.as_str() {
                "max-connections" => limits.max_connections = limit,
                _ => limits.max_queues = limit,
            }
        }
        let banner = format!("Applying limits to vhost \"{vhost}\" ...");
        self.apply(AccountChange::SetVhostLimits { name: vhost, limits })?;
        Ok(Outcome::ok(self.banner(banner)))
    }

    fn clear_vhost_limits(&self) -> Step<Outcome> {
        self.arguments(0, "clear_vhost_limits [-p VHOST]")?;
        let vhost = self.vhost();
        let banner = format!("Clearing limits for vhost \"{vhost}\" ...");
        let limits = VhostLimits::default();
        self.apply(AccountChange::SetVhostLimits { name: vhost, limits })?;
        Ok(Outcome::ok(self.banner(banner)))
    }

    fn list_vhost_limits(&self) -> Step<Outcome> {
        self.arguments(0, "list_vhost_limits [-p VHOST]")?;
        let vhost = self.vhost();
        let snapshot = self.snapshot()?;
        let Some(found) = snapshot.vhost(&vhost) else {
            return Err(Outcome::fail(EXIT_DATA, format!("Error:\nvhost '{vhost}' does not exist")));
        };
        let mut object = serde_json::Map::new();
        if let Some(max) = found.limits.max_connections {
            object.insert("max-connections".into(), max.into());
        }
        if let Some(max) = found.limits.max_queues {
            object.insert("max-queues".into(), max.into());
        }
        let banner = self.banner(format!("Listing limits for vhost \"{vhost}\" ..."));
        Ok(Outcome::ok(format!("{banner}{}\n", Value::Object(object))))
    }

    fn set_user_limits(&self) -> Step<Outcome> {
        let args = self.arguments(2, "set_user_limits USER JSON")?;
        let mut limits = UserLimits::default();
        for (_, limit) in parse_limits(&args[1], &["max-connections"]).map_err(data_error)? {
            limits.max_connections = limit;
        }
        let banner = format!("Setting user limits to \"{}\" for user \"{}\" ...", args[1], args[0]);
        let change = AccountChange::SetUserLimits { name: args[0].clone(), limits };
        self.apply(change)?;
        Ok(Outcome::ok(self.banner(banner)))
    }

    fn clear_user_limits(&self) -> Step<Outcome> {
        let args = self.arguments(2, "clear_user_limits USER max-connections|all")?;
        if !matches!(args[1].as_str(), "max-connections" | "all") {
            return Err(Outcome::fail(EXIT_USAGE, format!("Error: unknown limit '{}'", args[1])));
        }
        let banner = format!("Clearing \"{}\" limit for user \"{}\" ...", args[1], args[0]);
        let change = AccountChange::SetUserLimits { name: args[0].clone(), limits: UserLimits::default() };
        self.apply(change)?;
        Ok(Outcome::ok(self.banner(banner)))
    }

    fn list_user_limits(&self) -> Step<Outcome> {
        let args = self.arguments(1, "list_user_limits USER")?;
        let snapshot = self.snapshot()?;
        let Some(user) = snapshot.user(&args[0]) else {
            return Err(Outcome::fail(EXIT_DATA, format!("Error:\nuser '{}' does not exist", args[0])));
        };
        let mut object = serde_json::Map::new();
        if let Some(max) = user.limits.max_connections {
            object.insert("max-connections".into(), max.into());
        }
        let banner = self.banner(format!("Listing limits for user \"{}\" ...", args[0]));
        Ok(Outcome::ok(format!("{banner}{}\n", Value::Object(object))))
    }

    fn list_queues(&self) -> Step<Outcome> {
        let columns = columns(&self.options.positional, &["name", "messages"], QUEUE_COLUMNS)?;
        let vhost = self.vhost();
        let mut queues: Vec<QueueInfo> = Vec::new();
        for reply in self.ask_all(|| ControlRequest::ListQueues { vhost: Some(vhost.clone()), name: None })? {
            match reply {
                ControlReply::Queues(found) => queues.extend(found),
                other => return Err(unexpected(&other)),
            }
        }
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        let rows =
            queues.iter().map(|queue| columns.iter().map(|column| queue_column(queue, column)).collect()).collect();
        let header: Vec<&str> = columns.iter().map(String::as_str).collect();
        let banner = format!("Timeout: 60.0 seconds ...\nListing queues for vhost {vhost} ...");
        Ok(self.table(banner, &header, rows))
    }

    fn list_connections(&self) -> Step<Outcome> {
        let columns =
            columns(&self.options.positional, &["user", "peer_host", "peer_port", "state"], CONNECTION_COLUMNS)?;
        let mut connections = Vec::new();
        for reply in self.ask_all(|| ControlRequest::ListConnections)? {
            match reply {
                ControlReply::Connections(found) => connections.extend(found),
                other => return Err(unexpected(&other)),
            }
        }
        connections.sort_by(|a, b| a.name.cmp(&b.name));
        let rows = connections
            .iter()
            .map(|connection| {
                let (host, port) = split_host_port(&connection.peer);
                columns
                    .iter()
                    .map(|column| match column.as_str() {
                        "name" => connection.name.clone(),
                        "user" => connection.user.clone(),
                        "vhost" => connection.vhost.clone(),
                        "peer_host" => host.clone(),
                        "peer_port" => port.clone(),
                        "channels" => connection.channels.to_string(),
                        _ => "running".to_string(),
                    })
                    .collect()
            })
            .collect();
        let header: Vec<&str> = columns.iter().map(String::as_str).collect();
        Ok(self.table("Listing connections ...".into(), &header, rows))
    }

    fn close_connection(&self) -> Step<Outcome> {
        let args = self.arguments(2, "close_connection NAME EXPLANATION")?;
        let (name, reason) = (args[0].clone(), args[1].clone());
        let mut closed = 0;
        for reply in self.ask_all(|| ControlRequest::CloseConnection { name: name.clone(), reason: reason.clone() })? {
            if let ControlReply::Closed(count) = reply {
                closed += count;
            }
        }
        if closed == 0 {
            return Err(Outcome::fail(EXIT_DATA, format!("Error:\nno connection named \"{name}\"")));
        }
        Ok(Outcome::ok(self.banner(format!("Closing connection \"{name}\", reason: {reason}..."))))
    }

    fn export_definitions(&self) -> Step<Outcome> {
        let args = self.arguments(1, "export_definitions FILE|-")?;
        let snapshot = self.snapshot()?;
        let document = definitions_file::to_json(&definitions_import::export(&snapshot));
        let banner = if args[0] == "-" {
            String::new()
        } else {
            self.banner(format!("Exporting definitions in JSON to a file at \"{}\" ...", args[0]))
        };
        Ok(Outcome { out: banner, file: Some(document), ..Outcome::default() })
    }

    fn import_definitions(&self, input: Option<String>) -> Step<Outcome> {
        let args = self.arguments(1, "import_definitions FILE")?;
        let Some(input) = input else {
            return Err(Outcome::fail(EXIT_USAGE, "import_definitions: the file's content did not arrive"));
        };
        // With -p: a single vhost's definitions (as the HTTP API exports them), into that vhost.
        let parsed = match &self.options.vhost {
            Some(vhost) => definitions_file::parse_for_vhost(input.as_bytes(), vhost),
            None => definitions_file::parse(input.as_bytes()),
        };
        let parsed = parsed
            .and_then(|parsed| definitions_file::validate(&parsed.definitions).map(|()| parsed))
            .map_err(|error| Outcome::fail(EXIT_DATA, format!("Error: {} was not imported:\n{error}", args[0])))?;
        let mut out = self.banner(format!("Importing definitions in JSON from a file at \"{}\" ...", args[0]));
        let warnings = match self.ask(0, ControlRequest::Import(Box::new(parsed.definitions)))? {
            ControlReply::Imported { warnings } => warnings,
            other => return Err(unexpected(&other)),
        };
        let mut err = String::new();
        for warning in parsed.warnings.iter().chain(&warnings) {
            err.push_str(&format!("warning: {warning}\n"));
        }
        if !self.options.quiet {
            out.push_str("Definitions imported.\n");
        }
        Ok(Outcome { out, err, ..Outcome::default() })
    }
}

const QUEUE_COLUMNS: &[&str] = &[
    "name",
    "messages",
    "messages_ready",
    "messages_unacknowledged",
    "consumers",
    "durable",
    "auto_delete",
    "exclusive",
    "vhost",
    "message_bytes_ready",
    "policy",
    "operator_policy",
    "effective_policy_definition",
];
const CONNECTION_COLUMNS: &[&str] = &["name", "user", "vhost", "peer_host", "peer_port", "channels", "state"];

fn columns(asked: &[String], default: &[&str], known: &[&str]) -> Step<Vec<String>> {
    if asked.is_empty() {
        return Ok(default.iter().map(|column| column.to_string()).collect());
    }
    for column in asked {
        if !known.contains(&column.as_str()) {
            return Err(Outcome::fail(
                EXIT_USAGE,
                format!("Error: invalid column '{column}'; the columns are: {}", known.join(", ")),
            ));
        }
    }
    Ok(asked.to_vec())
}

fn queue_column(queue: &QueueInfo, column: &str) -> String {
    match column {
        "name" => queue.name.clone(),
        "messages" => (queue.messages_ready + queue.messages_unacknowledged).to_string(),
        "messages_ready" => queue.messages_ready.to_string(),
        "messages_unacknowledged" => queue.messages_unacknowledged.to_string(),
        "consumers" => queue.consumers.to_string(),
        "durable" => queue.durable.to_string(),
        "auto_delete" => queue.auto_delete.to_string(),
        "exclusive" => queue.exclusive.to_string(),
        "vhost" => queue.vhost.clone(),
        "message_bytes_ready" => queue.ready_bytes.to_string(),
        "policy" => queue.policy.clone(),
        "operator_policy" => queue.operator_policy.clone(),
        // Compact JSON, as list_policies prints definitions; nothing without a policy.
        "effective_policy_definition" if queue.effective_policy_definition.is_empty() => String::new(),
        "effective_policy_definition" => Value::Object(queue.effective_policy_definition.clone()).to_string(),
        _ => String::new(),
    }
}

/// "1.2.3.4:5" → ("1.2.3.4", "5"); "[::1]:5" → ("::1", "5").
fn split_host_port(address: &str) -> (String, String) {
    match address.rsplit_once(':') {
        Some((host, port)) => (host.trim_start_matches('[').trim_end_matches(']').to_string(), port.to_string()),
        None => (address.to_string(), String::new()),
    }
}

/// A row of list_permissions / list_user_permissions: who or where, then the three patterns.
fn permission_row(first: &str, permissions: &Permissions) -> Vec<String> {
    std::iter::once(first).chain(permissions.sources()).map(str::to_string).collect()
}

fn failure(error: AskError) -> Outcome {
    failure_with(error, EXIT_DATA)
}

/// A refusal exits with `code` and the broker's reason; a broker that cannot answer with 69.
fn failure_with(error: AskError, code: i32) -> Outcome {
    match error {
        AskError::Refused(problem) => Outcome::fail(code, format!("Error:\n{problem}")),
        other => Outcome::fail(EXIT_UNAVAILABLE, other.to_string()),
    }
}

pub(super) fn data_error(problem: String) -> Outcome {
    Outcome::fail(EXIT_DATA, format!("Error:\n{problem}"))
}

fn hash(password: &str) -> Result<PasswordHash, String> {
    PasswordHash::new(password.as_bytes()).map_err(|error| error.to_string())
}

fn unexpected(reply: &ControlReply) -> Outcome {
    Outcome::fail(EXIT_DATA, format!("unexpected answer from the broker: {reply:?}"))
}
