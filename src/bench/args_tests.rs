//! Tests for the bench command line: every flag, the defaults, and the error for bad values.

use amq_protocol::types::AMQPValue;

use super::*;

fn run(line: &str) -> BenchArgs {
    match parse(line.split_whitespace().map(String::from)) {
        Ok(Parsed::Run(args)) => *args,
        other => panic!("{line:?} gave {other:?}"),
    }
}

fn error(line: &str) -> ArgsError {
    match parse(line.split_whitespace().map(String::from)) {
        Err(error) => error,
        Ok(parsed) => panic!("{line:?} was accepted: {parsed:?}"),
    }
}

#[test]
fn throughput_defaults_match_perftest() {
    let args = run("throughput");
    assert_eq!(args.scenario, Scenario::Throughput);
    assert_eq!(args.uri, Uri::parse(DEFAULT_URI).expect("valid"));
    assert_eq!((args.publishers, args.consumers), (1, 1));
    assert_eq!(args.size_bytes, 16);
    assert_eq!(args.time_seconds, Some(10), "10 s when nothing bounds the run");
    assert_eq!((args.publisher_messages, args.consumer_messages), (None, None));
    assert_eq!((args.publisher_rate, args.consumer_rate), (None, None));
    assert!(!args.persistent && !args.json && !args.measure_latency);
    assert_eq!((args.confirm, args.ack_every, args.prefetch_count), (0, 0, 0));
    assert_eq!(args.exchange, "");
    assert_eq!(args.exchange_type, "direct");
    assert_eq!(args.routing_key, None);
    assert_eq!(args.queue_names(), vec!["perf-test".to_string()]);
    assert!(args.queue_arguments.inner().is_empty());
    assert!(args.threads >= 1);
}

#[test]
fn every_throughput_flag_is_read() {
    let args = run("throughput --uri amqp://u:p@h:5691/v -x 3 -y 4 -s 1024 -z 7 \
         --pmessages 100 --cmessages 200 --rate 1000 --consumer-rate 500 --persistent \
         --confirm 50 --ack 10 --prefetch 100 -e ex -t topic -k key \
         --queue-pattern q-% --queue-pattern-from 2 --queue-pattern-to 4 \
         --queue-args {\"x-max-length\":5} --consumer-args {\"x-priority\":1} \
         --measure-latency --json --threads 3");
    assert_eq!((args.uri.host.as_str(), args.uri.port), ("h", 5691));
    assert_eq!((args.uri.user.as_str(), args.uri.vhost.as_str()), ("u", "v"));
    assert_eq!((args.publishers, args.consumers, args.size_bytes), (3, 4, 1024));
    assert_eq!(args.time_seconds, Some(7));
    assert_eq!(args.publisher_messages, Some(100));
    assert_eq!(args.consumer_messages, Some(200));
    assert_eq!((args.publisher_rate, args.consumer_rate), (Some(1000), Some(500)));
    assert!(args.persistent && args.measure_latency && args.json);
    assert_eq!((args.confirm, args.ack_every, args.prefetch_count), (50, 10, 100));
    assert_eq!((args.exchange.as_str(), args.exchange_type.as_str()), ("ex", "topic"));
    assert_eq!(args.routing_key.as_deref(), Some("key"));
    assert_eq!(args.queue_names(), vec!["q-2", "q-3", "q-4"]);
    assert_eq!(args.queue_arguments.inner().get("x-max-length"), Some(&AMQPValue::LongLongInt(5)));
    assert_eq!(args.consumer_arguments.inner().get("x-priority"), Some(&AMQPValue::LongLongInt(1)));
    assert_eq!(args.threads, 3);
}

#[test]
fn long_flags_take_inline_values_and_queue_is_named() {
    let args = run("throughput --publishers=2 --consumers=0 --size=8 --queue=orders --time=1");
    assert_eq!((args.publishers, args.consumers, args.size_bytes), (2, 0, 8));
    assert_eq!(args.queue_names(), vec!["orders".to_string()]);
}

#[test]
fn a_message_count_replaces_the_default_time() {
    assert_eq!(run("throughput --pmessages 10").time_seconds, None);
    assert_eq!(run("throughput --cmessages 10").time_seconds, None);
    assert_eq!(run("throughput --pmessages 10 -z 3").time_seconds, Some(3));
}

#[test]
fn other_scenarios_read_their_own_flags() {
    let args = run("queue-count --queues 50 --json --queue-args {}");
    assert_eq!((args.scenario, args.queues, args.json), (Scenario::QueueCount, 50, true));
    let args = run("connection-count --connections 20 --hold 3");
    assert_eq!((args.connections, args.hold_seconds), (20, 3));
    assert_eq!(run("bind-churn --bindings 7").bindings, 7);
    let args = run("connection-churn --connections 9 --threads 1");
    assert_eq!((args.scenario, args.connections), (Scenario::ConnectionChurn, 9));
    assert_eq!(run("queue-count").queues, 1000);
}

#[test]
fn help_is_not_an_error() {
    for line in ["--help", "-h", "help", "throughput --help", "bind-churn -h"] {
        assert!(matches!(parse(line.split_whitespace().map(String::from)), Ok(Parsed::Help)));
    }
    assert!(HELP.contains("--queue-pattern"));
}

#[test]
fn bad_values_say_which_flag_and_why() {
    let message = error("throughput -x many").to_string();
    assert!(message.contains("-x") || message.contains("--publishers"), "{message}");
    assert!(message.contains("many"), "{message}");
    assert!(matches!(error("throughput --time 0"), ArgsError::BadValue { flag: "--time", .. }));
    assert!(matches!(error("throughput --size -1"), ArgsError::BadValue { flag: "--size", .. }));
    assert!(matches!(error("throughput --prefetch 70000"), ArgsError::BadValue { flag: "--prefetch", .. }));
    assert!(matches!(error("throughput --uri http://h"), ArgsError::BadValue { flag: "--uri", .. }));
    assert!(matches!(error("throughput --uri amqps://h?verify=maybe"), ArgsError::BadValue { flag: "--uri", .. }));
    assert!(matches!(error("throughput --queue-args [1]"), ArgsError::BadValue { flag: "--queue-args", .. }));
    assert!(matches!(error("throughput --persistent=yes"), ArgsError::BadValue { flag: "--persistent", .. }));
    let long_name = format!("throughput --queue {}", "q".repeat(256));
    assert!(matches!(error(&long_name), ArgsError::BadValue { flag: "--queue", .. }));
}

#[test]
fn unknown_and_misplaced_flags_are_refused() {
    assert_eq!(error(""), ArgsError::MissingScenario);
    assert_eq!(error("speed"), ArgsError::UnknownScenario("speed".into()));
    assert_eq!(error("throughput --fast"), ArgsError::UnknownFlag("--fast".into()));
    assert_eq!(error("throughput --size"), ArgsError::MissingValue("--size"));
    assert_eq!(error("throughput --queues 5"), ArgsError::NotForScenario { flag: "--queues", scenario: "throughput" });
    assert!(error("queue-count -x 1").to_string().contains("does not apply to the queue-count scenario"));
}

#[test]
fn rules_between_flags_are_checked() {
    let rules = [
        ("throughput -x 0 -y 0", "at least one publisher"),
        ("throughput --measure-latency -s 4", "at least 8"),
        ("throughput --ack 100 --prefetch 10", "must not exceed --prefetch"),
        ("throughput --queue-pattern q --queue-pattern-to 3", "'%'"),
        ("throughput --queue-pattern q-%", "needs --queue-pattern-to"),
        ("throughput --queue-pattern-to 3", "need --queue-pattern"),
        ("throughput --queue-pattern q-% --queue-pattern-from 5 --queue-pattern-to 4", "above"),
        ("throughput --queue-pattern q-% --queue-pattern-to 200000", "more than 100000"),
        ("throughput --queue a --queue-pattern q-% --queue-pattern-to 2", "exclude"),
        ("throughput -s 200000000", "128 MiB"),
    ];
    for (line, expected) in rules {
        let message = error(line).to_string();
        assert!(message.contains(expected), "{line:?}: {message}");
    }
}

#[test]
fn every_flag_has_its_scenarios_and_every_scenario_table_entry_is_a_flag() {
    use clap::CommandFactory;
    let command = super::flags::Flags::command();
    let ids: Vec<&str> =
        command.get_arguments().map(|argument| argument.get_id().as_str()).filter(|id| *id != "help").collect();
    for id in &ids {
        assert!(super::flags::long_name(id).is_some(), "--{id} has no entry in FLAGS");
    }
    for (long, _) in super::flags::FLAGS {
        assert!(
            ids.iter().any(|id| long[2..].replace('-', "_") == *id),
            "FLAGS names {long}, which clap does not know"
        );
    }
}

#[test]
fn delay_ms_declares_a_delayed_exchange_and_needs_one() {
    let args = run("throughput --delay-ms 250 -e later -t topic");
    assert_eq!(args.delay_ms, Some(250));
    assert_eq!((args.exchange.as_str(), args.exchange_type.as_str()), ("later", "topic"));
    assert_eq!(run("throughput").delay_ms, None);
    let message = error("throughput --delay-ms 250").to_string();
    assert!(message.contains("--delay-ms needs --exchange"), "{message}");
    assert!(matches!(error("queue-count --delay-ms 5"), ArgsError::NotForScenario { .. }));
}

#[test]
fn delay_spread_draws_up_to_delay_ms_and_needs_it() {
    let args = run("throughput --delay-ms 60000 --delay-spread -e later");
    assert!(args.delay_spread);
    assert!(!run("throughput --delay-ms 60000 -e later").delay_spread);
    let message = error("throughput --delay-spread -e later").to_string();
    assert!(message.contains("--delay-spread needs --delay-ms"), "{message}");
}

#[test]
fn stream_flags_set_the_queue_type_and_the_consumer_offset() {
    let args = run("throughput --queue-type stream --stream-offset first --ack 10 --prefetch 100");
    assert_eq!(args.queue_type().as_deref(), Some("stream"));
    assert_eq!(args.consumer_arguments.inner().get("x-stream-offset"), Some(&AMQPValue::LongString("first".into())));
    let numeric = run("throughput --queue-type stream --stream-offset 42 --ack 1 --prefetch 1");
    assert_eq!(numeric.consumer_arguments.inner().get("x-stream-offset"), Some(&AMQPValue::LongLongInt(42)));
    assert_eq!(run("throughput --queue-type classic").queue_type(), None);
    let rules = [
        ("throughput --queue-type stream", "needs --ack and --prefetch"),
        ("throughput --queue-type stream --ack 1", "needs --ack and --prefetch"),
        ("throughput --stream-offset first --ack 1 --prefetch 1", "needs --queue-type stream"),
        ("throughput --queue-type lazy", "expected classic, quorum or stream"),
    ];
    for (line, expected) in rules {
        let message = error(line).to_string();
        assert!(message.contains(expected), "{line:?}: {message}");
    }
}
