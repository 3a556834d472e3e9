//! The limits the configuration puts on connections, driven frame by frame: the channel_max
//! offered in connection.tune (`--channel-max`), the node's connection limit checked at
//! connection.open (`--max-connections`), and the largest message (`--max-message-size`).

use amq_protocol::protocol::connection as method;

use super::*;
use crate::codec::frame::PROTOCOL_HEADER;

fn broker_with(shards: usize, configure: impl FnOnce(&mut Config)) -> Broker {
    let mut config = Config::defaults();
    config.shards = shards;
    configure(&mut config);
    Broker::with_config(config)
}

/// A client on `shard` that logged in as guest; returns it with the connection.tune it read.
fn tuned(broker: &Broker, shard: usize) -> (Client<'_>, method::Tune) {
    let mut client = broker.connect_raw(shard, true);
    assert_eq!(client.handshake_bytes(PROTOCOL_HEADER), Step::HeaderAccepted(8));
    client.output();
    assert_eq!(client.handshake_method(start_ok("PLAIN", b"\0guest\0guest")), Step::Continue);
    let methods = client.methods();
    let [(0, AMQPClass::Connection(method::AMQPMethod::Tune(tune)))] = methods.as_slice() else {
        panic!("expected connection.tune, got {methods:?}");
    };
    let tune = tune.clone();
    (client, tune)
}

/// A client through tune-ok (with the broker's offer) that now sends connection.open.
fn open_on<'broker>(broker: &'broker Broker, shard: usize, vhost: &str) -> (Client<'broker>, Step) {
    let (mut client, tune) = tuned(broker, shard);
    assert_eq!(client.handshake_method(tune_ok(tune.channel_max, tune.frame_max, 0)), Step::Continue);
    let step = client.handshake_method(open(vhost));
    (client, step)
}

const NODE_LIMIT_REACHED: &str = "NOT_ALLOWED - connection refused: node connection limit (2) is reached";

#[test]
fn tune_offers_the_configured_channel_max_and_a_tune_ok_above_it_is_refused() {
    let broker = broker_with(1, |config| config.channel_max = 16);
    let (mut greedy, tune) = tuned(&broker, 0);
    assert_eq!(tune.channel_max, 16);
    assert_eq!(greedy.handshake_method(tune_ok(17, FRAME_MAX_BYTES, 0)), Step::Refused);
    assert!(greedy.output().is_empty(), "RabbitMQ closes the socket without a word while tuning");
    let (mut client, step) = open_on(&broker, 0, "/");
    assert!(matches!(step, Step::Open { .. }), "{step:?}");
    assert_eq!(client.connection.channel_max.get(), 16);
    client.output();
    for channel in 1..=16 {
        client.open_channel(channel);
    }
    client.send(17, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})));
    let (code, text, _, _) = connection_close(&client.methods()).expect("connection.close");
    assert_eq!(code, 530);
    assert!(text.contains("negotiated channel_max (16)"), "{text}");
}

#[test]
fn one_connection_over_the_node_limit_is_refused_at_open_with_530_on_any_shard() {
    let broker = broker_with(2, |config| config.max_connections = Some(2));
    let (first, step) = open_on(&broker, 0, "/");
    assert!(matches!(step, Step::Open { .. }), "{step:?}");
    let (_second, step) = open_on(&broker, 1, "/");
    assert!(matches!(step, Step::Open { .. }), "{step:?}");
    for shard in [0, 1] {
        let (mut refused, step) = open_on(&broker, shard, "/");
        assert_eq!(step, Step::Refused, "shard {shard}");
        assert_eq!(connection_close(&refused.methods()), Some((530, NODE_LIMIT_REACHED.into(), 10, 40)));
    }
    // The connections that were refused took no slot; a closed one gives its slot back.
    drop(first);
    let (_third, step) = open_on(&broker, 1, "/");
    assert!(matches!(step, Step::Open { .. }), "a closed connection made room: {step:?}");
}

#[test]
fn an_open_refused_for_its_vhost_keeps_no_slot() {
    let broker = broker_with(1, |config| config.max_connections = Some(1));
    let (mut lost, step) = open_on(&broker, 0, "nowhere");
    assert_eq!(step, Step::Refused);
    assert_eq!(connection_close(&lost.methods()), Some((530, "NOT_ALLOWED - vhost nowhere not found".into(), 10, 40)));
    let (_client, step) = open_on(&broker, 0, "/");
    assert!(matches!(step, Step::Open { .. }), "{step:?}");
}

#[test]
fn without_a_limit_many_connections_open() {
    let broker = broker_with(1, |_| {});
    let clients: Vec<_> = (0..100).map(|_| open_on(&broker, 0, "/")).collect();
    assert!(clients.iter().all(|(_, step)| matches!(step, Step::Open { .. })));
}

#[test]
fn a_message_over_the_configured_size_closes_its_channel_after_its_body() {
    let broker = broker_with(1, |config| config.max_message_size = 1000);
    let mut client = broker.connect(0);
    client.open_channel(1);
    client.send(1, super::channel_tests::declare("sized"));
    client.output();
    client.publish(1, "", "sized", &AMQPProperties::default(), &[b'x'; 1000]);
    assert!(client.methods().is_empty(), "a message of exactly the limit is taken");
    client.publish(1, "", "sized", &AMQPProperties::default(), &[b'x'; 1001]);
    assert_eq!(
        channel_close(&client.methods(), 1),
        Some((406, "PRECONDITION_FAILED - message size 1001 is larger than configured max size 1000".into(), 60, 40))
    );
    assert!(!client.closed, "a channel error, not a connection error");
}
