//! The definitions log: durable exchanges, queues and bindings, users, vhosts, permissions,
//! limits and policies, one checksummed record per change, fsynced before the client is
//! answered.
//!
//! At start the log is replayed through the same `Definitions` methods clients use, then
//! compacted: the current state is written to a new file, fsynced, and renamed over the old
//! one (then the directory is fsynced), so a crash at any point leaves one complete log.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use amq_protocol::types::FieldTable;
use bytes::BufMut;

use super::record::{read_record, ReadOutcome, RECORD_HEADER_BYTES};
use crate::codec::methods::{decode_field_table, encode_field_table};

const KIND_EXCHANGE_DECLARE: u8 = 10;
const KIND_EXCHANGE_DELETE: u8 = 11;
const KIND_QUEUE_DECLARE: u8 = 12;
const KIND_QUEUE_DELETE: u8 = 13;
const KIND_BIND: u8 = 14;
const KIND_UNBIND: u8 = 15;
const KIND_SEEDED: u8 = 20;
const KIND_VHOST_ADD: u8 = 21;
const KIND_VHOST_DELETE: u8 = 22;
const KIND_USER_PUT: u8 = 23;
const KIND_USER_DELETE: u8 = 24;
const KIND_PERMISSION_SET: u8 = 25;
const KIND_PERMISSION_CLEAR: u8 = 26;
const KIND_VHOST_LIMITS: u8 = 27;
const KIND_USER_LIMITS: u8 = 28;
const KIND_POLICY_SET: u8 = 29;
const KIND_POLICY_CLEAR: u8 = 30;

#[derive(Clone, Debug, PartialEq)]
pub struct BindingDefinition {
    pub vhost: String,
    pub source: String,
    pub destination: String,
    pub destination_is_queue: bool,
    pub routing_key: String,
    pub arguments: FieldTable,
}

#[derive(Clone, Debug, PartialEq)]
pub enum DefinitionOp {
    ExchangeDeclare {
        vhost: String,
        name: String,
        kind: String,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
    },
    ExchangeDelete {
        vhost: String,
        name: String,
    },
    QueueDeclare {
        vhost: String,
        name: String,
        sequence: u64,
        auto_delete: bool,
        arguments: FieldTable,
    },
    QueueDelete {
        vhost: String,
        name: String,
    },
    Bind(BindingDefinition),
    Unbind(BindingDefinition),
    /// The defaults of a fresh data directory were created: never create them again, even
    /// when the operator deletes them.
    Seeded,
    VhostAdd {
        name: String,
    },
    /// Also removes everything in the vhost.
    VhostDelete {
        name: String,
    },
    /// Creates or replaces a user (its permissions stay). The hash is never the password.
    UserPut {
        name: String,
        hashing_algorithm: String,
        password_hash: String,
        tags: Vec<String>,
    },
    UserDelete {
        name: String,
    },
    PermissionSet {
        user: String,
        vhost: String,
        configure: String,
        write: String,
        read: String,
    },
    PermissionClear {
        user: String,
        vhost: String,
    },
    /// A negative limit is no limit.
    VhostLimits {
        name: String,
        max_connections: i64,
        max_queues: i64,
    },
    UserLimits {
        name: String,
        max_connections: i64,
    },
    /// Creates or replaces a policy (`operator`: an operator policy). The definition is its
    /// JSON text.
    PolicySet {
        operator: bool,
        vhost: String,
        name: String,
        pattern: String,
        apply_to: String,
        definition: String,
        priority: i64,
    },
    PolicyClear {
        operator: bool,
        vhost: String,
        name: String,
    },
}

pub struct DefinitionsLog {
    path: PathBuf,
    file: File,
    records: usize,
}

const FILE_NAME: &str = "definitions.log";

impl DefinitionsLog {
    /// Opens the log and returns it with every operation it holds, in order. A damaged tail
    /// (a crash during an append) is reported and ignored.
    pub fn open(data_dir: &Path) -> io::Result<(DefinitionsLog, Vec<DefinitionOp>)> {
        let path = data_dir.join(FILE_NAME);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(error),
        };
        let mut operations = Vec::new();
        let mut offset = 0;
        loop {
            match read_record(&bytes, offset) {
                ReadOutcome::End => break,
                ReadOutcome::Damaged { reason } => {
                    crate::warn!("definitions log: {reason} at offset {offset}; later records are dropped");
                    break;
                }
                ReadOutcome::Record { kind, payload, next } => {
                    match decode(kind, payload) {
                        Some(operation) => operations.push(operation),
                        None => crate::warn!("definitions log: undecodable record at offset {offset} skipped"),
                    }
                    offset = next;
                }
            }
        }
        let file = super::files::options().create(true).append(true).open(&path)?;
        // The log's appends are fsynced, its name is not: put it (and a new data directory's own
        // name) on disk before the first definition is answered. At every open: a log created
        // by a run that stopped before this sync would otherwise never get it.
        super::files::sync_dir_and_parents(data_dir, 1)?;
        let records = operations.len();
        Ok((DefinitionsLog { path, file, records }, operations))
    }

    /// Appends one change and fsyncs it.
    pub fn append(&mut self, operation: &DefinitionOp) -> io::Result<()> {
        let mut out = Vec::new();
        encode(&mut out, operation)?;
        self.file.write_all(&out)?;
        self.file.sync_data()?;
        self.records += 1;
        Ok(())
    }

    pub fn records(&self) -> usize {
        self.records
    }

    /// Replaces the log with `operations` (the current state): write new, fsync, rename.
    pub fn compact(&mut self, operations: &[DefinitionOp]) -> io::Result<()> {
        let temporary = self.path.with_extension("log.new");
        let mut out = Vec::new();
        for operation in operations {
            encode(&mut out, operation)?;
        }
        {
            let mut file = super::files::options().write(true).create(true).truncate(true).open(&temporary)?;
            file.write_all(&out)?;
            file.sync_all()?;
        }
        std::fs::rename(&temporary, &self.path)?;
        if let Some(dir) = self.path.parent() {
            super::files::sync_dir(dir)?;
        }
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.records = operations.len();
        Ok(())
    }
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    let bytes = &text.as_bytes()[..text.len().min(u16::MAX as usize)];
    out.put_u16_le(bytes.len() as u16);
    out.put_slice(bytes);
}

/// A text that may pass 64 KiB (a policy's definition).
fn put_long_text(out: &mut Vec<u8>, text: &str) {
    out.put_u32_le(text.len() as u32);
    out.put_slice(text.as_bytes());
}

fn put_table(out: &mut Vec<u8>, table: &FieldTable) -> io::Result<()> {
    let bytes = encode_field_table(table).map_err(|error| io::Error::other(error.to_string()))?;
    out.put_u32_le(bytes.len() as u32);
    out.put_slice(&bytes);
    Ok(())
}

fn put_binding(out: &mut Vec<u8>, binding: &BindingDefinition) -> io::Result<()> {
    put_text(out, &binding.vhost);
    put_text(out, &binding.source);
    put_text(out, &binding.destination);
    out.put_u8(u8::from(binding.destination_is_queue));
    put_text(out, &binding.routing_key);
    put_table(out, &binding.arguments)
}

fn encode(out: &mut Vec<u8>, operation: &DefinitionOp) -> io::Result<()> {
    let start = out.len();
    out.put_u64_le(0);
    match operation {
        DefinitionOp::ExchangeDeclare { vhost, name, kind, auto_delete, internal, arguments } => {
            out.put_u8(KIND_EXCHANGE_DECLARE);
            put_text(out, vhost);
            put_text(out, name);
            put_text(out, kind);
            out.put_u8(u8::from(*auto_delete));
            out.put_u8(u8::from(*internal));
            put_table(out, arguments)?;
        }
        DefinitionOp::ExchangeDelete { vhost, name } => {
            out.put_u8(KIND_EXCHANGE_DELETE);
            put_text(out, vhost);
            put_text(out, name);
        }
        DefinitionOp::QueueDeclare { vhost, name, sequence, auto_delete, arguments } => {
            out.put_u8(KIND_QUEUE_DECLARE);
            put_text(out, vhost);
            put_text(out, name);
            out.put_u64_le(*sequence);
            out.put_u8(u8::from(*auto_delete));
            put_table(out, arguments)?;
        }
        DefinitionOp::QueueDelete { vhost, name } => {
            out.put_u8(KIND_QUEUE_DELETE);
            put_text(out, vhost);
            put_text(out, name);
        }
        DefinitionOp::Bind(binding) => {
            out.put_u8(KIND_BIND);
            put_binding(out, binding)?;
        }
        DefinitionOp::Unbind(binding) => {
            out.put_u8(KIND_UNBIND);
            put_binding(out, binding)?;
        }
        DefinitionOp::Seeded => out.put_u8(KIND_SEEDED),
        DefinitionOp::VhostAdd { name } => {
            out.put_u8(KIND_VHOST_ADD);
            put_text(out, name);
        }
        DefinitionOp::VhostDelete { name } => {
            out.put_u8(KIND_VHOST_DELETE);
            put_text(out, name);
        }
        DefinitionOp::UserPut { name, hashing_algorithm, password_hash, tags } => {
            out.put_u8(KIND_USER_PUT);
            put_text(out, name);
            put_text(out, hashing_algorithm);
            put_text(out, password_hash);
            put_text(out, &tags.join(","));
        }
        DefinitionOp::UserDelete { name } => {
            out.put_u8(KIND_USER_DELETE);
            put_text(out, name);
        }
        DefinitionOp::PermissionSet { user, vhost, configure, write, read } => {
            out.put_u8(KIND_PERMISSION_SET);
            for text in [user, vhost, configure, write, read] {
                put_text(out, text);
            }
        }
        DefinitionOp::PermissionClear { user, vhost } => {
            out.put_u8(KIND_PERMISSION_CLEAR);
            put_text(out, user);
            put_text(out, vhost);
        }
        DefinitionOp::VhostLimits { name, max_connections, max_queues } => {
            out.put_u8(KIND_VHOST_LIMITS);
            put_text(out, name);
            out.put_i64_le(*max_connections);
            out.put_i64_le(*max_queues);
        }
        DefinitionOp::UserLimits { name, max_connections } => {
            out.put_u8(KIND_USER_LIMITS);
            put_text(out, name);
            out.put_i64_le(*max_connections);
        }
        DefinitionOp::PolicySet { operator, vhost, name, pattern, apply_to, definition, priority } => {
            out.put_u8(KIND_POLICY_SET);
            out.put_u8(u8::from(*operator));
            put_text(out, vhost);
            put_text(out, name);
            put_long_text(out, pattern);
            put_text(out, apply_to);
            put_long_text(out, definition);
            out.put_i64_le(*priority);
        }
        DefinitionOp::PolicyClear { operator, vhost, name } => {
            out.put_u8(KIND_POLICY_CLEAR);
            out.put_u8(u8::from(*operator));
            put_text(out, vhost);
            put_text(out, name);
        }
    }
    let body = &out[start + RECORD_HEADER_BYTES..];
    let length = body.len() as u32;
    let checksum = crc32c::crc32c(body);
    out[start..start + 4].copy_from_slice(&length.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&checksum.to_le_bytes());
    Ok(())
}

struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.position..self.position + count)?;
        self.position += count;
        Some(slice)
    }
    fn flag(&mut self) -> Option<bool> {
        Some(self.take(1)?[0] != 0)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn text(&mut self) -> Option<String> {
        let length = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
        String::from_utf8(self.take(usize::from(length))?.to_vec()).ok()
    }
    fn long_text(&mut self) -> Option<String> {
        let length = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        String::from_utf8(self.take(length as usize)?.to_vec()).ok()
    }
    fn table(&mut self) -> Option<FieldTable> {
        let length = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        decode_field_table(self.take(length as usize)?).ok()
    }
    fn binding(&mut self) -> Option<BindingDefinition> {
        Some(BindingDefinition {
            vhost: self.text()?,
            source: self.text()?,
            destination: self.text()?,
            destination_is_queue: self.flag()?,
            routing_key: self.text()?,
            arguments: self.table()?,
        })
    }
}

fn decode(kind: u8, payload: &[u8]) -> Option<DefinitionOp> {
    let mut cursor = Cursor { bytes: payload, position: 0 };
    let operation = match kind {
        KIND_EXCHANGE_DECLARE => DefinitionOp::ExchangeDeclare {
            vhost: cursor.text()?,
            name: cursor.text()?,
            kind: cursor.text()?,
            auto_delete: cursor.flag()?,
            internal: cursor.flag()?,
            arguments: cursor.table()?,
        },
        KIND_EXCHANGE_DELETE => DefinitionOp::ExchangeDelete { vhost: cursor.text()?, name: cursor.text()? },
        KIND_QUEUE_DECLARE => DefinitionOp::QueueDeclare {
            vhost: cursor.text()?,
            name: cursor.text()?,
            sequence: cursor.u64()?,
            auto_delete: cursor.flag()?,
            arguments: cursor.table()?,
        },
        KIND_QUEUE_DELETE => DefinitionOp::QueueDelete { vhost: cursor.text()?, name: cursor.text()? },
        KIND_BIND => DefinitionOp::Bind(cursor.binding()?),
        KIND_UNBIND => DefinitionOp::Unbind(cursor.binding()?),
        KIND_SEEDED => DefinitionOp::Seeded,
        KIND_VHOST_ADD => DefinitionOp::VhostAdd { name: cursor.text()? },
        KIND_VHOST_DELETE => DefinitionOp::VhostDelete { name: cursor.text()? },
        KIND_USER_PUT => DefinitionOp::UserPut {
            name: cursor.text()?,
            hashing_algorithm: cursor.text()?,
            password_hash: cursor.text()?,
            tags: cursor.text()?.split(',').filter(|tag| !tag.is_empty()).map(str::to_string).collect(),
        },
        KIND_USER_DELETE => DefinitionOp::UserDelete { name: cursor.text()? },
        KIND_PERMISSION_SET => DefinitionOp::PermissionSet {
            user: cursor.text()?,
            vhost: cursor.text()?,
            configure: cursor.text()?,
            write: cursor.text()?,
            read: cursor.text()?,
        },
        KIND_PERMISSION_CLEAR => DefinitionOp::PermissionClear { user: cursor.text()?, vhost: cursor.text()? },
        KIND_VHOST_LIMITS => DefinitionOp::VhostLimits {
            name: cursor.text()?,
            max_connections: cursor.u64()? as i64,
            max_queues: cursor.u64()? as i64,
        },
        KIND_USER_LIMITS => DefinitionOp::UserLimits { name: cursor.text()?, max_connections: cursor.u64()? as i64 },
        KIND_POLICY_SET => DefinitionOp::PolicySet {
            operator: cursor.flag()?,
            vhost: cursor.text()?,
            name: cursor.text()?,
            pattern: cursor.long_text()?,
            apply_to: cursor.text()?,
            definition: cursor.long_text()?,
            priority: cursor.u64()? as i64,
        },
        KIND_POLICY_CLEAR => {
            DefinitionOp::PolicyClear { operator: cursor.flag()?, vhost: cursor.text()?, name: cursor.text()? }
        }
        _ => return None,
    };
    (cursor.position == payload.len()).then_some(operation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::AMQPValue;

    #[test]
    fn operations_survive_reopen_and_compaction() {
        let dir = std::env::temp_dir().join(format!("spatemq-deflog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let mut arguments = FieldTable::default();
        arguments.insert("x-max-length".into(), AMQPValue::LongInt(5));
        let operations = vec![
            DefinitionOp::ExchangeDeclare {
                vhost: "/".into(),
                name: "logs".into(),
                kind: "fanout".into(),
                auto_delete: false,
                internal: false,
                arguments: FieldTable::default(),
            },
            DefinitionOp::QueueDeclare {
                vhost: "/".into(),
                name: "q".into(),
                sequence: 9,
                auto_delete: false,
                arguments,
            },
            DefinitionOp::Bind(BindingDefinition {
                vhost: "/".into(),
                source: "logs".into(),
                destination: "q".into(),
                destination_is_queue: true,
                routing_key: "".into(),
                arguments: FieldTable::default(),
            }),
            DefinitionOp::Seeded,
            DefinitionOp::VhostAdd { name: "apps".into() },
            DefinitionOp::UserPut {
                name: "bob".into(),
                hashing_algorithm: "rabbit_password_hashing_sha256".into(),
                password_hash: "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR".into(),
                tags: vec!["monitoring".into(), "management".into()],
            },
            DefinitionOp::PermissionSet {
                user: "bob".into(),
                vhost: "apps".into(),
                configure: "".into(),
                write: "^bob-".into(),
                read: ".*".into(),
            },
            DefinitionOp::PermissionClear { user: "bob".into(), vhost: "apps".into() },
            DefinitionOp::VhostLimits { name: "apps".into(), max_connections: 10, max_queues: -1 },
            DefinitionOp::UserLimits { name: "bob".into(), max_connections: 2 },
            DefinitionOp::PolicySet {
                operator: false,
                vhost: "apps".into(),
                name: "limit".into(),
                pattern: "^orders\\.".into(),
                apply_to: "queues".into(),
                definition: r#"{"max-length":5}"#.into(),
                priority: -3,
            },
            DefinitionOp::PolicyClear { operator: true, vhost: "apps".into(), name: "cap".into() },
            DefinitionOp::UserDelete { name: "bob".into() },
            DefinitionOp::VhostDelete { name: "apps".into() },
        ];
        {
            let (mut log, existing) = DefinitionsLog::open(&dir).expect("open");
            assert!(existing.is_empty());
            for operation in &operations {
                log.append(operation).expect("append");
            }
        }
        let (mut log, read) = DefinitionsLog::open(&dir).expect("reopen");
        assert_eq!(read, operations);
        log.compact(&operations[1..]).expect("compact");
        let (_, compacted) = DefinitionsLog::open(&dir).expect("reopen compacted");
        assert_eq!(compacted, operations[1..].to_vec());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn torn_tail_keeps_earlier_operations() {
        let dir = std::env::temp_dir().join(format!("spatemq-deflog-torn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        {
            let (mut log, _) = DefinitionsLog::open(&dir).expect("open");
            log.append(&DefinitionOp::QueueDelete { vhost: "/".into(), name: "a".into() }).expect("append");
            log.append(&DefinitionOp::QueueDelete { vhost: "/".into(), name: "b".into() }).expect("append");
        }
        let path = dir.join(FILE_NAME);
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 3]).expect("truncate");
        let (_, read) = DefinitionsLog::open(&dir).expect("reopen");
        assert_eq!(read, vec![DefinitionOp::QueueDelete { vhost: "/".into(), name: "a".into() }]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
