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

#[derive(Clone)]
struct Sample {
    at: Instant,
    values: Vec<f64>,
    rates: Vec<f64>,
}

#[derive(Default)]
pub struct Rates {
    samples: Mutex<HashMap<String, Sample>>,
}

/// What a `message_stats` object counts: a queue's own counts, or those and the channel-side
/// ones (confirms, unroutable returns) for vhosts and the overview.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Queue,
    WithChannels,
}

const QUEUE_NAMES: [&str; 4] = ["publish", "deliver_get", "ack", "redeliver"];
const CHANNEL_NAMES: [&str; 2] = ["confirm", "return_unroutable"];

fn counts(stats: &MessageStats, counted: Counted) -> Vec<(&'static str, u64)> {
    let mut counts: Vec<_> =
        QUEUE_NAMES.into_iter().zip([stats.publish, stats.deliver_get, stats.ack, stats.redeliver]).collect();
    if counted == Counted::WithChannels {
        counts.extend(CHANNEL_NAMES.into_iter().zip([stats.confirm, stats.return_unroutable]));
    }
    counts
}

fn rounded(rate: f64) -> f64 {
    (rate * 10.0).round() / 10.0
}

/// How a sampled value changes: a counter only grows (a drop is an object made again: no
/// rate), a gauge may go down (a negative rate).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Rates {
    /// Per-second rates of `values` of `object` (a key naming it and what is sampled), from the
    /// change since the sample before, taken at least `SAMPLE_INTERVAL` earlier; 0 until
    /// there are two samples.
    pub fn rates(&self, object: &str, values: &[f64], kind: Kind) -> Vec<f64> {
        let now = Instant::now();
        let Ok(mut samples) = self.samples.lock() else {
            return vec![0.0; values.len()];
        };
        if samples.len() >= OBJECTS_MAX && !samples.contains_key(object) {
            samples.clear();
        }
        let fresh = || Sample { at: now, values: values.to_vec(), rates: vec![0.0; values.len()] };
        let sample = samples.entry(object.to_string()).or_insert_with(fresh);
        if sample.values.len() != values.len() {
            *sample = fresh();
        }
        let elapsed = now.duration_since(sample.at);
        if elapsed >= SAMPLE_INTERVAL {
            let seconds = elapsed.as_secs_f64();
            for ((rate, now), before) in sample.rates.iter_mut().zip(values).zip(&sample.values) {
                let change = now - before;
                *rate = if kind == Kind::Counter && change < 0.0 { 0.0 } else { change / seconds };
            }
            sample.at = now;
            sample.values = values.to_vec();
        }
        sample.rates.clone()
    }

    /// The `message_stats` object of `object` (a key naming it) with these counts.
    pub fn message_stats(&self, object: &str, stats: &MessageStats, counted: Counted) -> Value {
        let counts = counts(stats, counted);
        let values: Vec<f64> = counts.iter().map(|(_, count)| *count as f64).collect();
        let rates = self.rates(object, &values, Kind::Counter);
        let mut fields = Map::new();
        for ((name, count), rate) in counts.into_iter().zip(rates) {
            fields.insert(name.to_string(), json!(count));
            fields.insert(format!("{name}_details"), json!({"rate": rounded(rate)}));
        }
        Value::Object(fields)
    }

    /// Adds RabbitMQ's queue depth fields (`messages`, `messages_ready`,
    /// `messages_unacknowledged`, each with its `*_details.rate`, the change per second) to a
    /// queue, vhost or overview object named `object`.
    pub fn with_message_counts(&self, object: &str, mut fields: Value, ready: u64, unacked: u64) -> Value {
        let depths = [("messages", ready + unacked), ("messages_ready", ready), ("messages_unacknowledged", unacked)];
        let values: Vec<f64> = depths.iter().map(|(_, count)| *count as f64).collect();
        let rates = self.rates(&format!("depth\u{0}{object}"), &values, Kind::Gauge);
        if let Value::Object(fields) = &mut fields {
            for ((name, count), rate) in depths.into_iter().zip(rates) {
                fields.insert(name.to_string(), json!(count));
                fields.insert(format!("{name}_details"), json!({"rate": rounded(rate)}));
            }
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(rates: &Rates, object: &str) {
        if let Ok(mut samples) = rates.samples.lock() {
            if let Some(sample) = samples.get_mut(object) {
                sample.at -= Duration::from_secs(2);
            }
        }
    }

    #[test]
    fn counts_are_shown_with_a_rate_from_two_samples() {
        let rates = Rates::default();
        let first = rates.message_stats("q", &MessageStats { publish: 10, ..Default::default() }, Counted::Queue);
        assert_eq!((first["publish"].clone(), first["publish_details"]["rate"].clone()), (json!(10), json!(0.0)));
        assert!(first.get("confirm").is_none(), "a queue has no channel-side counts: {first}");
        age(&rates, "q");
        let second =
            rates.message_stats("q", &MessageStats { publish: 30, ack: 4, ..Default::default() }, Counted::Queue);
        assert_eq!(second["publish_details"]["rate"], json!(10.0));
        assert_eq!(second["ack_details"]["rate"], json!(2.0));
        assert_eq!(second["deliver_get"], json!(0));
    }

    #[test]
    fn vhosts_and_the_overview_count_confirms_and_returns() {
        let rates = Rates::default();
        let stats = MessageStats { confirm: 6, return_unroutable: 2, ..Default::default() };
        rates.message_stats("o", &MessageStats::default(), Counted::WithChannels);
        age(&rates, "o");
        let shown = rates.message_stats("o", &stats, Counted::WithChannels);
        assert_eq!((shown["confirm"].clone(), shown["return_unroutable"].clone()), (json!(6), json!(2)));
        assert_eq!(shown["confirm_details"]["rate"], json!(3.0));
        assert_eq!(shown["return_unroutable_details"]["rate"], json!(1.0));
    }

    #[test]
    fn depth_rates_go_down_as_well_as_up_and_counter_drops_give_no_rate() {
        let rates = Rates::default();
        rates.with_message_counts("q", json!({}), 10, 0);
        age(&rates, "depth\u{0}q");
        let shown = rates.with_message_counts("q", json!({}), 4, 2);
        assert_eq!((shown["messages"].clone(), shown["messages_ready"].clone()), (json!(6), json!(4)));
        assert_eq!(shown["messages_ready_details"]["rate"], json!(-3.0));
        assert_eq!(shown["messages_unacknowledged_details"]["rate"], json!(1.0));
        rates.rates("c", &[100.0], Kind::Counter);
        age(&rates, "c");
        assert_eq!(rates.rates("c", &[40.0], Kind::Counter), vec![0.0]);
    }
}
