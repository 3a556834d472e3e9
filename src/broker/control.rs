//! What an operator asks a running broker through its control socket (`spatemq ctl`), as
//! plain data: the requests each shard answers and their answers.
//!
//! Changes of users, vhosts, permissions and policies go to the definitions writer (shard 0); listings
//! go to every shard, each answering for what it holds (the queues it owns, the connections
//! it serves). The answer travels back on a channel the asking thread waits on.

use std::sync::mpsc::Sender;

use super::passwords::PasswordHash;
use super::users::Permissions;

/// A request and where its answer goes.
pub struct ControlMsg {
    pub request: ControlRequest,
    pub reply: Sender<ControlAnswer>,
}

impl std::fmt::Debug for ControlMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ControlMsg({:?})", self.request)
    }
}

#[derive(Debug)]
pub enum ControlRequest {
    /// To the writer.
    Change(Box<AccountChange>),
    /// To every shard: the queues it owns (all vhosts when None).
    ListQueues { vhost: Option<String> },
    /// To every shard: the connections it serves.
    ListConnections,
    /// To every shard: close the connection with this name, if it serves it.
    CloseConnection { name: String, reason: String },
    /// To the writer: the users, vhosts and permissions (listings read the snapshot).
    Snapshot,
    /// To the writer: the policies (or operator policies) of a vhost, or of every vhost
    /// when None, in the order objects choose from them (highest priority first).
    ListPolicies { kind: super::policy::PolicyKind, vhost: Option<String> },
    /// To every shard: read the writer's mail up to definitions `version` (what a change
    /// just answered published), and say which version the shard now has. A change's effect
    /// on queues (a policy trimming them) is done on a shard once it has that version; the
    /// writer's message may still be on its way, so the asker repeats until every shard has it.
    CatchUp { version: u64 },
    /// To the writer: a whole definitions file, all or nothing.
    Import(Box<super::definitions_file::DefinitionsFile>),
}

/// A change of users, vhosts, permissions, limits or policies; each is logged durably before
/// it is answered. The HTTP API sends the same changes.
#[derive(Debug)]
pub enum AccountChange {
    AddUser {
        name: String,
        password: PasswordHash,
        tags: Vec<String>,
    },
    DeleteUser {
        name: String,
    },
    ChangePassword {
        name: String,
        password: PasswordHash,
    },
    SetTags {
        name: String,
        tags: Vec<String>,
    },
    AddVhost {
        name: String,
    },
    DeleteVhost {
        name: String,
    },
    SetPermissions {
        user: String,
        vhost: String,
        permissions: Box<Permissions>,
    },
    ClearPermissions {
        user: String,
        vhost: String,
    },
    SetVhostLimits {
        name: String,
        limits: super::users::VhostLimits,
    },
    SetUserLimits {
        name: String,
        limits: super::users::UserLimits,
    },
    /// Adds or replaces a policy or operator policy (validated by `Policy::parse`).
    SetPolicy(Box<super::policy::Policy>),
    /// "Parameter does not exist" when there is none of that name.
    ClearPolicy {
        kind: super::policy::PolicyKind,
        vhost: String,
        name: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct QueueInfo {
    pub vhost: String,
    pub name: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub exclusive: bool,
    pub messages_ready: u64,
    pub messages_unacknowledged: u64,
    pub consumers: u64,
    pub ready_bytes: u64,
    /// The names of its policy and operator policy ("" for none).
    pub policy: String,
    pub operator_policy: String,
    /// The two merged (empty without either).
    pub effective_policy_definition: serde_json::Map<String, serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionInfo {
    pub name: String,
    pub user: String,
    pub vhost: String,
    pub peer: String,
    pub channels: u64,
    pub shard: usize,
}

#[derive(Debug)]
pub enum ControlReply {
    Done,
    Queues(Vec<QueueInfo>),
    Connections(Vec<ConnectionInfo>),
    /// How many connections were closed.
    Closed(usize),
    Snapshot(std::sync::Arc<super::snapshot::Snapshot>),
    Policies(Vec<std::sync::Arc<super::policy::Policy>>),
    /// The definitions version a shard has.
    Version(u64),
    /// What an import kept as it was or ignored.
    Imported {
        warnings: Vec<String>,
    },
}

/// An error is a sentence for the operator.
pub type ControlAnswer = Result<ControlReply, String>;
