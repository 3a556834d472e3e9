//! `message_stats` with RabbitMQ's `*_details.rate`: the counts come from the queues' owner
//! shards (`MessageStats`, plain per-queue fields summed when asked); the rates are computed
//! here, per object, from the change between two samples at least a second apart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::broker::control::MessageStats;

/// Samples are taken at most this often per object; a request in between gets the last rate.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Objects remembered at most; past it the memory starts over (rates read 0 once).
const OBJECTS_MAX: usize = 100_000;

#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    counts: [u64; 4],
    rates: [f64; 4],
}

#[derive(Default)]
pub struct Rates {
    samples: Mutex<HashMap<String, Sample>>,
}

const NAMES: [&str; 4] = ["publish", "deliver_get", "ack", "redeliver"];

fn counts(stats: &MessageStats) -> [u64; 4] {
    [stats.publish, stats.deliver_get, stats.ack, stats.redeliver]
}

/// Adds RabbitMQ's queue depth fields (`messages`, `messages_ready`,
/// `messages_unacknowledged`, each with a `*_details.rate` of 0: depth rates are not sampled)
/// to a queue, vhost or overview object.
pub fn with_message_counts(mut object: Value, ready: u64, unacked: u64) -> Value {
    if let Value::Object(fields) = &mut object {
        for (name, count) in
            [("messages", ready + unacked), ("messages_ready", ready), ("messages_unacknowledged", unacked)]
        {
            fields.insert(name.to_string(), json!(count));
            fields.insert(format!("{name}_details"), json!({"rate": 0.0}));
        }
    }
    object
}

impl Rates {
    /// The `message_stats` object of `object` (a key naming it) with these counts.
    pub fn message_stats(&self, object: &str, stats: &MessageStats) -> Value {
        let now = Instant::now();
        let counts = counts(stats);
        let rates = match self.samples.lock() {
            Ok(mut samples) => {
                if samples.len() >= OBJECTS_MAX && !samples.contains_key(object) {
                    samples.clear();
                }
                let fresh = Sample { at: now, counts, rates: [0.0; 4] };
                let sample = samples.entry(object.to_string()).or_insert(fresh);
                let elapsed = now.duration_since(sample.at);
                if elapsed >= SAMPLE_INTERVAL {
                    let seconds = elapsed.as_secs_f64();
                    for ((rate, now), before) in sample.rates.iter_mut().zip(counts).zip(sample.counts) {
                        // A count that went down belongs to a queue made again: no rate.
                        *rate = now.saturating_sub(before) as f64 / seconds;
                    }
                    sample.at = now;
                    sample.counts = counts;
                }
                sample.rates
            }
            Err(_) => [0.0; 4],
        };
        let mut object = Map::new();
        for (index, name) in NAMES.iter().enumerate() {
            object.insert((*name).to_string(), json!(counts[index]));
            let rounded = (rates[index] * 10.0).round() / 10.0;
            object.insert(format!("{name}_details"), json!({"rate": rounded}));
        }
        Value::Object(object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_shown_with_a_rate_from_two_samples() {
        let rates = Rates::default();
        let first = rates.message_stats("q", &MessageStats { publish: 10, ..Default::default() });
        assert_eq!((first["publish"].clone(), first["publish_details"]["rate"].clone()), (json!(10), json!(0.0)));
        if let Ok(mut samples) = rates.samples.lock() {
            if let Some(sample) = samples.get_mut("q") {
                sample.at -= Duration::from_secs(2);
            }
        }
        let second = rates.message_stats("q", &MessageStats { publish: 30, ack: 4, ..Default::default() });
        assert_eq!(second["publish_details"]["rate"], json!(10.0));
        assert_eq!(second["ack_details"]["rate"], json!(2.0));
        assert_eq!(second["deliver_get"], json!(0));
    }
}
