//! Permission checks of a connection's user in its vhost, where RabbitMQ's channel makes them
//! (configure on declare/delete, write on publish and on a binding's destination, read on
//! consume, get, purge and on a binding's source).
//!
//! The user's permissions are looked up once per definitions version and kept on the
//! connection; a publish compares the exchange with the last one it was allowed to reach, so
//! the steady publish path costs one version compare and one name compare.

use std::sync::Arc;

use super::connection::Connection;
use crate::broker::error::AmqpError;
use crate::broker::snapshot::Snapshot;
use crate::broker::users::{check_access, Access, Permissions, ResourceKind};

#[derive(Default)]
pub struct AccessCache {
    /// The definitions version `permissions` was read from (None: not read yet).
    version: Option<u64>,
    permissions: Option<Arc<Permissions>>,
    /// The exchange the last allowed publish went to.
    publish_allowed: Option<Vec<u8>>,
}

/// The user's permissions in the connection's vhost, as of `snapshot`.
fn permissions(connection: &Connection, snapshot: &Snapshot) -> Option<Arc<Permissions>> {
    let mut cache = connection.access.borrow_mut();
    if cache.version != Some(snapshot.version) {
        cache.permissions = snapshot.permissions(&connection.user.borrow(), &connection.vhost.borrow()).cloned();
        cache.version = Some(snapshot.version);
        cache.publish_allowed = None;
    }
    cache.permissions.clone()
}

pub fn check(
    connection: &Connection,
    snapshot: &Snapshot,
    access: Access,
    kind: ResourceKind,
    name: &str,
) -> Result<(), AmqpError> {
    let permissions = permissions(connection, snapshot);
    check_access(permissions.as_deref(), access, kind, name, &connection.vhost.borrow(), &connection.user.borrow())
}

pub fn configure_queue(connection: &Connection, snapshot: &Snapshot, name: &str) -> Result<(), AmqpError> {
    check(connection, snapshot, Access::Configure, ResourceKind::Queue, name)
}

pub fn read_queue(connection: &Connection, snapshot: &Snapshot, name: &str) -> Result<(), AmqpError> {
    check(connection, snapshot, Access::Read, ResourceKind::Queue, name)
}

pub fn configure_exchange(connection: &Connection, snapshot: &Snapshot, name: &str) -> Result<(), AmqpError> {
    check(connection, snapshot, Access::Configure, ResourceKind::Exchange, name)
}

pub fn read_exchange(connection: &Connection, snapshot: &Snapshot, name: &str) -> Result<(), AmqpError> {
    check(connection, snapshot, Access::Read, ResourceKind::Exchange, name)
}

pub fn write_exchange(connection: &Connection, snapshot: &Snapshot, name: &str) -> Result<(), AmqpError> {
    check(connection, snapshot, Access::Write, ResourceKind::Exchange, name)
}

/// Write permission on the exchange of a basic.publish, with the verdict cached.
pub fn publish(connection: &Connection, snapshot: &Snapshot, exchange: &[u8]) -> Result<(), AmqpError> {
    {
        let cache = connection.access.borrow();
        if cache.version == Some(snapshot.version) && cache.publish_allowed.as_deref() == Some(exchange) {
            return Ok(());
        }
    }
    write_exchange(connection, snapshot, &String::from_utf8_lossy(exchange))?;
    connection.access.borrow_mut().publish_allowed = Some(exchange.to_vec());
    Ok(())
}
