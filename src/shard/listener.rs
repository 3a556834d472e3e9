//! Listening sockets: the probe that proves an address's port is free, and the listeners each
//! shard accepts on.
//!
//! Every shard listens on every address with SO_REUSEPORT, so every shard accepts (and
//! `balance` evens the connections out over the shards). SO_REUSEPORT would also let a second
//! broker share the port silently, hence the probe: a plain bind (without SO_REUSEPORT) that
//! fails while anyone listens there. The probe never listens, so the shards' listeners bind
//! beside it while it still holds the port, and it is dropped only once they have: a port the
//! kernel picked is never free in between (no other bind on port 0 is given it, no outgoing
//! connection takes it). An IPv6 socket is IPV6_V6ONLY, as RabbitMQ's are, so `::` and
//! `0.0.0.0` on one port do not collide; the option has to be set before bind, which monoio's
//! own bind cannot do, hence socket2.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};

use socket2::{Domain, Protocol, Socket, Type};

use crate::limits::LISTEN_BACKLOG;

/// A bound socket that holds a port and does not listen (see the module header).
pub type Probe = Socket;

/// Binds `address` without SO_REUSEPORT and without listening: fails with "address in use"
/// while another process listens there. Keep it until the shards listen, then drop it.
pub fn probe(address: SocketAddr) -> io::Result<Probe> {
    let socket = socket_for(address)?;
    socket.bind(&address.into())?;
    Ok(socket)
}

/// The address a probe holds (with the port the kernel picked for port 0).
pub fn probed_address(probe: &Probe) -> io::Result<SocketAddr> {
    probe.local_addr()?.as_socket().ok_or_else(|| io::Error::other("a probe bound to a non-IP address"))
}

/// A shard's listener on `address`, sharing the port with the other shards' listeners.
/// `legacy_driver`: the epoll driver needs a non-blocking socket; io_uring needs a blocking one.
pub fn shard_listener(address: SocketAddr, legacy_driver: bool) -> io::Result<monoio::net::TcpListener> {
    let socket = bind(address, true)?;
    socket.set_nonblocking(legacy_driver)?;
    monoio::net::TcpListener::from_std(StdListener::from(socket))
}

/// A listener of its own for one shard (`--per-shard-listeners`), on a port the kernel picks.
pub fn own_listener(address: SocketAddr, legacy_driver: bool) -> io::Result<monoio::net::TcpListener> {
    let socket = bind(SocketAddr::new(address.ip(), 0), false)?;
    socket.set_nonblocking(legacy_driver)?;
    monoio::net::TcpListener::from_std(StdListener::from(socket))
}

fn bind(address: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let socket = socket_for(address)?;
    socket.set_reuse_port(reuse_port)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket)
}

/// A TCP socket for `address`: IPV6_V6ONLY for IPv6, SO_REUSEADDR (a restart binds over the
/// last run's TIME_WAIT connections).
fn socket_for(address: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, Some(Protocol::TCP))?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    Ok(socket)
}

/// True when `error`, from a socket or bind on an IPv6 address, means the host has no IPv6
/// (module not loaded, or disabled by sysctl) rather than a problem with the address.
pub fn ipv6_unavailable(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_fails_while_a_shard_listener_holds_the_port_and_v6_does_not_collide_with_v4() {
        let first = probe(SocketAddr::from(([127, 0, 0, 1], 0))).expect("a free port");
        let port = probed_address(&first).expect("bound").port();
        drop(first);
        let v4 = bind(SocketAddr::from(([0, 0, 0, 0], port)), true).expect("0.0.0.0 on the port");
        let in_use = probe(SocketAddr::from(([127, 0, 0, 1], port))).expect_err("the port is taken");
        assert_eq!(in_use.kind(), io::ErrorKind::AddrInUse);
        match bind(SocketAddr::from(([0u16; 8], port)), true) {
            Ok(v6) => assert!(v6.only_v6().expect("readable option")),
            Err(error) if ipv6_unavailable(&error) => eprintln!("this host has no IPv6: {error}"),
            Err(error) => panic!(":: beside 0.0.0.0 on one port: {error}"),
        }
        drop(v4);
    }

    /// The shards' listeners bind beside a probe that still holds the port, connections reach
    /// them, and no bind on port 0 is given the port meanwhile.
    #[test]
    fn shards_listen_beside_the_probe_that_holds_the_port() {
        let held = probe(SocketAddr::from(([127, 0, 0, 1], 0))).expect("a free port");
        let address = probed_address(&held).expect("bound");
        let shards: Vec<Socket> = (0..2).map(|_| bind(address, true).expect("a shard beside the probe")).collect();
        let picked: Vec<u16> = (0..500)
            .map(|_| {
                let other = probe(SocketAddr::from(([127, 0, 0, 1], 0))).expect("another port");
                probed_address(&other).expect("bound").port()
            })
            .collect();
        assert!(!picked.contains(&address.port()), "a bind on port 0 was given the held port");
        let in_use = probe(address).expect_err("a second broker's probe while the shards listen");
        assert_eq!(in_use.kind(), io::ErrorKind::AddrInUse);
        drop(held);
        std::net::TcpStream::connect(address).expect("a connection reaches the shards");
        drop(shards);
    }
}
