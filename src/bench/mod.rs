//! `spatemq bench`: the bundled load generator (the equivalent of RabbitMQ PerfTest and
//! lavinmqperf), for SpateMQ or any other AMQP 0-9-1 broker.
//!
//! It must never be the bottleneck: publishers pack many messages into each socket write,
//! consumers handle a whole socket read per pass with the hand-written codec, and clients
//! spread over one monoio runtime per thread. Every run stops by itself and every wait on the
//! broker is bounded. This module only dispatches; each scenario lives in its own file.

mod args;
mod client;
mod confirms;
mod consumer;
mod error;
mod field_table;
mod flags;
mod publisher;
mod report;
mod runtime;
mod scenarios;
mod stats;
mod throughput;
mod tls;
mod uri;
mod wire;

use std::process::ExitCode;

use args::{Parsed, Scenario};

/// Runs `spatemq bench <arguments>`: 0 on success, 1 when the run failed, 2 for bad flags.
pub fn main(arguments: impl IntoIterator<Item = String>) -> ExitCode {
    let args = match args::parse(arguments) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            print!("{}", args::HELP);
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("spatemq bench: {problem}");
            return ExitCode::from(2);
        }
    };
    let report = match args.scenario {
        Scenario::Throughput => throughput::run(&args).into_report(),
        Scenario::QueueCount => scenarios::queue_count(&args),
        Scenario::ConnectionCount => scenarios::connection_count(&args),
        Scenario::BindChurn => scenarios::bind_churn(&args),
        Scenario::ConnectionChurn => scenarios::connection_churn(&args),
    };
    if report.print(args.json) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
