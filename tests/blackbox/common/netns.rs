//! A remote client for tests: a network namespace of the test's own, joined to this host by a
//! veth pair with two private addresses, removed when dropped. A socket opened from a thread
//! that entered the namespace reaches the broker as another host would: from a non-loopback
//! address. Needs root (the tests and CI run as root); creation fails loudly otherwise.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct NetNs {
    pub name: String,
    host_link: String,
    /// This host's address on the pair: the broker listens here.
    pub host_ip: String,
    /// The namespace's address: the remote client comes from here.
    pub remote_ip: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip").args(args).output().map_err(|error| format!("ip {args:?}: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("ip {args:?}: {}", String::from_utf8_lossy(&output.stderr).trim()))
    }
}

impl NetNs {
    /// Creates the namespace and the pair, with addresses 10.231.N.1 (here) and 10.231.N.2
    /// (there), N chosen per process and test so that parallel tests do not collide.
    pub fn create() -> NetNs {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = (std::process::id() % 10_000) * 10 + n % 10;
        let subnet = 1 + (std::process::id().wrapping_mul(7).wrapping_add(n * 13)) % 250;
        let netns = NetNs {
            name: format!("spatemq-test-{id}"),
            host_link: format!("spq{id}h"),
            host_ip: format!("10.231.{subnet}.1"),
            remote_ip: format!("10.231.{subnet}.2"),
        };
        let remote_link = format!("spq{id}r");
        let host_cidr = format!("{}/24", netns.host_ip);
        let remote_cidr = format!("{}/24", netns.remote_ip);
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", &netns.name],
            vec!["link", "add", &netns.host_link, "type", "veth", "peer", "name", &remote_link],
            vec!["link", "set", &remote_link, "netns", &netns.name],
            vec!["addr", "add", &host_cidr, "dev", &netns.host_link],
            vec!["link", "set", &netns.host_link, "up"],
            vec!["-n", &netns.name, "addr", "add", &remote_cidr, "dev", &remote_link],
            vec!["-n", &netns.name, "link", "set", &remote_link, "up"],
            vec!["-n", &netns.name, "link", "set", "lo", "up"],
        ];
        for step in steps {
            if let Err(problem) = ip(&step) {
                drop(netns);
                panic!("cannot make a network namespace for the remote client (run the tests as root): {problem}");
            }
        }
        netns
    }

    /// Runs `work` on a thread inside the namespace: sockets it opens belong to it.
    pub fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|error| panic!("open {path}: {error}"));
            // SAFETY: setns on a namespace file this thread opened; it changes only this
            // thread's network namespace.
            let entered = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            assert_eq!(entered, 0, "setns into {path}: {}", std::io::Error::last_os_error());
            work()
        })
        .join()
        .expect("the remote client's thread")
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and with it this one.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_link]);
    }
}
