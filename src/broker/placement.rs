//! Which shard owns a queue, and which routes an exchange that keeps state (`owned_exchange.rs`).
//!
//! Named queues go to a stable hash of (vhost, name), so every shard computes the same owner
//! without asking anyone and a restart puts a durable queue back where it was for the same
//! shard count. Exclusive and server-named queues stay on the declaring connection's shard:
//! RPC reply queues then never cross a thread.

/// FNV-1a over the vhost, a zero byte, and the queue name.
pub fn queue_owner(vhost: &str, queue: &str, shard_count: usize) -> usize {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for byte in vhost.bytes().chain(std::iter::once(0)).chain(queue.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    (hash % shard_count.max(1) as u64) as usize
}

/// The shard that routes publishes to an exchange that deduplicates or delays
/// (`owned_exchange.rs`): placed as a queue of the same name would be, so every shard finds it
/// without asking and a restart keeps it where it was for the same shard count.
pub fn exchange_owner(vhost: &str, exchange: &str, shard_count: usize) -> usize {
    queue_owner(vhost, exchange, shard_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_stable_and_in_range() {
        for name in ["a", "b", "tasks", "image_resize_queue_1"] {
            let owner = queue_owner("/", name, 3);
            assert!(owner < 3);
            assert_eq!(owner, queue_owner("/", name, 3));
        }
        assert_eq!(queue_owner("/", "x", 1), 0);
    }

    #[test]
    fn placement_spreads_queues() {
        let mut counts = [0usize; 3];
        for index in 0..300 {
            counts[queue_owner("/", &format!("q{index}"), 3)] += 1;
        }
        assert!(counts.iter().all(|&count| count > 50), "{counts:?}");
    }
}
