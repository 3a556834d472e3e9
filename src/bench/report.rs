//! What the user sees: the one-line progress report each second (stderr), the summary at the
//! end (stdout), and with `--json` one JSON object as the last stdout line, so scripts can
//! take `tail -n 1`.
//!
//! Owns formatting only; the numbers come from the scenarios. A failed run still prints what
//! it achieved, plus an `error` field, and the caller exits non-zero.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::args::BenchArgs;
use super::error::BenchError;
use super::stats::{cpu_seconds, CountersSnapshot, LatencySummary};

pub fn progress_line(
    elapsed: Duration,
    publish_rate: f64,
    consume_rate: f64,
    latency: Option<LatencySummary>,
) -> String {
    let mut line = format!(
        "time: {:.1}s, sent: {:.0} msgs/s, received: {:.0} msgs/s",
        elapsed.as_secs_f64(),
        publish_rate,
        consume_rate
    );
    if let Some(latency) = latency {
        let _ = write!(line, ", latency p50: {:.3} ms, p99: {:.3} ms", latency.p50_ms, latency.p99_ms);
    }
    line
}

pub struct ThroughputResult {
    pub publishers: u32,
    pub consumers: u32,
    pub size_bytes: usize,
    pub elapsed: Duration,
    pub avg_pub_rate: f64,
    pub avg_consume_rate: f64,
    pub counters: CountersSnapshot,
    pub latency: Option<LatencySummary>,
    pub failure: Option<BenchError>,
}

impl ThroughputResult {
    /// A run that failed before any message moved.
    pub fn failed(args: &BenchArgs, error: BenchError) -> ThroughputResult {
        ThroughputResult {
            publishers: args.publishers,
            consumers: args.consumers,
            size_bytes: args.size_bytes,
            elapsed: Duration::ZERO,
            avg_pub_rate: 0.0,
            avg_consume_rate: 0.0,
            counters: CountersSnapshot::default(),
            latency: None,
            failure: Some(error),
        }
    }

    pub fn into_report(self) -> Report {
        let counters = self.counters;
        let mut report = Report::new("throughput", self.elapsed, self.failure);
        report.add("publishers", self.publishers, "");
        report.add("consumers", self.consumers, "");
        report.add("size_bytes", self.size_bytes, "bytes");
        report.add("published", counters.published, "messages");
        report.add("confirmed", counters.confirmed, "messages");
        report.add("nacked", counters.nacked, "messages");
        report.add("returned", counters.returned, "messages");
        report.add("consumed", counters.consumed, "messages");
        report.add("avg_pub_rate", self.avg_pub_rate.round(), "msgs/s");
        report.add("avg_consume_rate", self.avg_consume_rate.round(), "msgs/s");
        if let Some(latency) = self.latency {
            let summary = json!({
                "min": latency.min_ms,
                "p50": latency.p50_ms,
                "p90": latency.p90_ms,
                "p99": latency.p99_ms,
                "p999": latency.p999_ms,
                "max": latency.max_ms,
            });
            report.lines.push(format!(
                "latency_ms: min {:.3}, p50 {:.3}, p90 {:.3}, p99 {:.3}, p99.9 {:.3}, max {:.3}",
                latency.min_ms, latency.p50_ms, latency.p90_ms, latency.p99_ms, latency.p999_ms, latency.max_ms
            ));
            report.fields.insert("latency_ms".into(), summary);
        }
        report
    }
}

/// A scenario's results as text lines and JSON fields, filled in the same order.
pub struct Report {
    lines: Vec<String>,
    fields: Map<String, Value>,
    failure: Option<BenchError>,
}

impl Report {
    pub fn new(scenario: &str, elapsed: Duration, failure: Option<BenchError>) -> Report {
        let mut report =
            Report { lines: vec![format!("spatemq bench {scenario}: summary")], fields: Map::new(), failure };
        report.fields.insert("scenario".into(), json!(scenario));
        report.add("elapsed_seconds", round3(elapsed.as_secs_f64()), "s");
        report
    }

    pub fn add(&mut self, name: &str, value: impl Into<Value>, unit: &str) {
        let value = value.into();
        let line = if unit.is_empty() { format!("{name}: {value}") } else { format!("{name}: {value} {unit}") };
        self.lines.push(line);
        self.fields.insert(name.into(), value);
    }

    /// Prints the summary (and JSON line), the error if any; true when the run succeeded.
    pub fn print(mut self, json_line: bool) -> bool {
        let cpu = cpu_seconds();
        let elapsed = self.fields.get("elapsed_seconds").and_then(Value::as_f64).unwrap_or(0.0);
        self.add("bench_cpu_seconds", round3(cpu), "s");
        let share = if elapsed > 0.0 { cpu / elapsed } else { 0.0 };
        self.add("bench_cpu_cores", round3(share), "cores busy on average");
        let failure = self.failure.take();
        if let Some(error) = &failure {
            eprintln!("spatemq bench: {error}");
            self.fields.insert("error".into(), json!(error.to_string()));
        }
        for line in &self.lines {
            println!("{line}");
        }
        if json_line {
            println!("{}", Value::Object(self.fields));
        }
        failure.is_none()
    }
}

pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_shows_latency_only_when_measured() {
        let line = progress_line(Duration::from_millis(2500), 1234.4, 1000.0, None);
        assert_eq!(line, "time: 2.5s, sent: 1234 msgs/s, received: 1000 msgs/s");
        let latency = LatencySummary { min_ms: 0.1, p50_ms: 0.25, p90_ms: 0.5, p99_ms: 1.5, p999_ms: 2.0, max_ms: 3.0 };
        let line = progress_line(Duration::from_secs(1), 1.0, 1.0, Some(latency));
        assert!(line.ends_with("latency p50: 0.250 ms, p99: 1.500 ms"), "{line}");
    }

    #[test]
    fn throughput_json_has_the_promised_fields() {
        let result = ThroughputResult {
            publishers: 1,
            consumers: 1,
            size_bytes: 16,
            elapsed: Duration::from_secs(2),
            avg_pub_rate: 10.0,
            avg_consume_rate: 9.0,
            counters: CountersSnapshot { published: 20, confirmed: 20, nacked: 0, returned: 0, consumed: 18 },
            latency: None,
            failure: None,
        };
        let report = result.into_report();
        for field in ["avg_pub_rate", "avg_consume_rate", "elapsed_seconds", "published", "consumed", "confirmed"] {
            assert!(report.fields.contains_key(field), "{field}");
        }
        assert_eq!(report.fields.get("consumed"), Some(&json!(18)));
        assert!(report.lines.iter().any(|line| line == "avg_pub_rate: 10.0 msgs/s"));
    }
}
