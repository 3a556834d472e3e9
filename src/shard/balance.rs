//! Where an accepted connection is served: on the shard with the fewest connections.
//!
//! Every shard accepts on every listening address (SO_REUSEPORT), and the kernel picks the
//! listener by a hash of the client's address and port, so two connections land on one shard
//! as often as on two, and with both on one shard the other may idle. In two runs of
//! `scripts/placement.sh` scenario a moved 1.31–1.55M msg/s with the publisher and the consumer
//! on one shard and 1.38–1.96M with one on each. So the shard that accepts a socket serves it
//! only if no shard has fewer connections; otherwise it hands the socket, before reading a byte
//! of it, to the shard with the fewest, which serves it as if it had accepted it. The counts
//! are shared relaxed atomics (`Mailboxes::connection_placed`): a count a moment old places a
//! connection no worse than the kernel's hash would. A connection to a shard's own listener
//! (`--per-shard-listeners`) is never moved: that listener exists to reach that shard.
//!
//! A connection counts from its placement until its serving task ends, whatever ended it
//! (a refused handshake, a TLS failure, a close).
//!
//! Placement before the first byte cannot know a connection's role. One later move exists: a
//! confirm-mode publisher whose first publish goes only to queues of its own shard is handed,
//! with a transcript of its set-up, to the shard with the fewest connections (`handover`,
//! `hand_over` here).

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;

use monoio::net::TcpStream;

use super::Shard;
use crate::broker::messages::{AdoptedSocket, Resume, ShardMsg};

/// Serves `stream`, accepted on `shard`, there or on the shard with the fewest connections
/// (`balanced`).
pub fn place(
    shard: &Rc<Shard>,
    stream: TcpStream,
    loopback_peer: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
    balanced: bool,
) {
    let target = if balanced { shard.mailboxes.fewest_connections(shard.id) } else { shard.id };
    shard.mailboxes.connection_placed(target);
    if target == shard.id {
        serve_here(shard, stream, loopback_peer, tls, Start::Fresh { movable: balanced });
        return;
    }
    // SAFETY: `into_raw_fd` gives up the stream's only reference to the descriptor, which
    // the `OwnedFd` then owns alone.
    let socket = unsafe { OwnedFd::from_raw_fd(stream.into_raw_fd()) };
    shard.send(target, ShardMsg::Adopt(Box::new(AdoptedSocket { socket, loopback_peer, tls, resume: None })));
}

/// Serves the sockets other shards handed to this one in the last turn.
pub fn serve_adopted(shard: &Rc<Shard>) {
    let adopted = std::mem::take(&mut *shard.adopted.borrow_mut());
    for AdoptedSocket { socket, loopback_peer, tls, resume } in adopted {
        // SAFETY: as in `place`: the descriptor moves from one owner to the next.
        let stream = unsafe { std::net::TcpStream::from_raw_fd(socket.into_raw_fd()) };
        let moved = resume.is_some();
        match TcpStream::from_std(stream) {
            Ok(stream) => {
                let start = match resume {
                    Some(resume) => Start::Resumed(resume),
                    None => Start::Fresh { movable: true },
                };
                serve_here(shard, stream, loopback_peer, tls, start)
            }
            Err(error) => {
                crate::warn!("shard {}: cannot serve a socket handed over by another shard: {error}", shard.id);
                shard.mailboxes.connection_gone(shard.id);
                if moved {
                    // It opened on the shard that handed it over, which did not count it closed.
                    shard.connection_counts.note_closed();
                }
            }
        }
    }
}

/// How a socket's serving starts: from its first byte (`movable`: it may hand over at its
/// first publish, `handover`), or from a transcript another shard hands over with it.
pub enum Start {
    Fresh { movable: bool },
    Resumed(Resume),
}

/// Hands a served connection's socket to shard `target` (`handover`): the count of
/// connections moves with it when this shard's serving task ends.
pub fn hand_over(shard: &Shard, socket: OwnedFd, loopback_peer: bool, target: usize, resume: Resume) {
    shard.mailboxes.connection_placed(target);
    let adopted = AdoptedSocket { socket, loopback_peer, tls: None, resume: Some(resume) };
    shard.send(target, ShardMsg::Adopt(Box::new(adopted)));
}

fn serve_here(
    shard: &Rc<Shard>,
    stream: TcpStream,
    loopback_peer: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
    start: Start,
) {
    let placed = Placed(shard.clone());
    monoio::spawn(async move {
        let shard = placed.0.clone();
        match tls {
            None => super::socket::serve(shard, stream, loopback_peer, start).await,
            Some(tls) => super::socket::serve_tls(shard, stream, loopback_peer, tls).await,
        }
        drop(placed);
    });
}

/// Takes the connection off its shard's count when its serving task ends.
struct Placed(Rc<Shard>);

impl Drop for Placed {
    fn drop(&mut self) {
        self.0.mailboxes.connection_gone(self.0.id);
    }
}
