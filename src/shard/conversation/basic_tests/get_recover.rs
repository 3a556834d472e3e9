//! basic.get and basic.recover, and basic methods only the server sends.

use super::*;

fn recover_async(requeue: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::RecoverAsync(basic::RecoverAsync { requeue }))
}

#[test]
fn get_on_an_empty_queue_is_answered_with_get_empty() {
    let broker = Broker::new(2);
    let mut client = client_on(&broker, 1);
    declare_queue(&mut client, "empty");
    client.send(1, get("empty", false));
    assert!(got(&client.output()).is_none());
}

#[test]
fn get_returns_the_oldest_message_and_the_count_left_behind_it() {
    let broker = Broker::new(3);
    queue_with_messages(&broker, "fifo", 3);
    let mut client = client_on(&broker, 1);
    client.send(1, get("fifo", false));
    let (ok, body) = got(&client.output()).expect("a message");
    assert_eq!(body, b"m1");
    assert_eq!((ok.delivery_tag, ok.redelivered, ok.message_count), (1, false, 2));
    assert_eq!((ok.exchange.as_str(), ok.routing_key.as_str()), ("", "fifo"));
    client.send(1, get("fifo", true));
    let (ok, body) = got(&client.output()).expect("a message");
    assert_eq!((ok.delivery_tag, ok.message_count, body), (2, 1, b"m2".to_vec()));
}

#[test]
fn get_on_a_missing_queue_closes_the_channel_with_404() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, get("missing", false));
    assert_channel_closed(&mut client, (404, "NOT_FOUND - no queue 'missing' in vhost '/'", 60, 70));
}

#[test]
fn get_without_a_queue_name_and_no_queue_declared_closes_the_channel_with_404() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, get("", false));
    assert_channel_closed(&mut client, (404, "NOT_FOUND - no previously declared queue", 60, 70));
}

#[test]
fn get_on_another_connections_exclusive_queue_closes_the_channel_with_405() {
    let broker = Broker::new(3);
    let mut owner = client_on(&broker, 1);
    owner.send(1, declare_with("private", true));
    owner.output();
    let mut other = client_on(&broker, 2);
    other.send(1, get("private", true));
    assert_channel_closed(&mut other, (405, LOCKED_EXCLUSIVE, 60, 70));
}

#[test]
fn get_and_consumer_deliveries_share_the_channels_delivery_tags() {
    let broker = Broker::new(3);
    queue_with_messages(&broker, "gets", 1);
    queue_with_messages(&broker, "consumed", 1);
    let mut client = client_on(&broker, 1);
    client.send(1, get("gets", false));
    let (ok, _) = got(&client.output()).expect("a message");
    let received = start_consumer(&mut client, "consumed", "c");
    assert_eq!((ok.delivery_tag, received[0].delivery_tag), (1, 2));
}

#[test]
fn recover_requeues_unacked_messages_as_redelivered() {
    let broker = Broker::new(3);
    queue_with_messages(&broker, "recovered", 2);
    let mut client = client_on(&broker, 1);
    assert_eq!(start_consumer(&mut client, "recovered", "c").len(), 2);
    client.send(1, recover(true));
    let output = client.output();
    assert!(
        output.iter().any(|out| matches!(
            out,
            Out::Method { channel: 1, method: AMQPClass::Basic(basic::AMQPMethod::RecoverOk(_)) }
        )),
        "{output:?}"
    );
    let again = deliveries(&output);
    assert_eq!(bodies(&again), vec![b"m1" as &[u8], b"m2"]);
    assert!(again.iter().all(|message| message.redelivered), "{again:?}");
    assert_eq!(again.iter().map(|message| message.delivery_tag).collect::<Vec<_>>(), vec![3, 4]);
}

#[test]
fn recover_async_requeues_without_an_answer() {
    let broker = Broker::new(2);
    queue_with_messages(&broker, "quietly", 1);
    let mut client = client_on(&broker, 1);
    client.send(1, get("quietly", false));
    assert!(got(&client.output()).is_some());
    client.send(1, recover_async(true));
    assert!(client.output().is_empty());
    client.send(1, get("quietly", true));
    let (ok, _) = got(&client.output()).expect("the requeued message");
    assert!(ok.redelivered);
}

#[test]
fn recover_without_requeue_closes_the_connection_with_540() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, recover(false));
    assert_connection_closed(&mut client, (540, "NOT_IMPLEMENTED - requeue=false", 60, 110));
}

#[test]
fn recover_async_without_requeue_closes_the_connection_with_540() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, recover_async(false));
    assert_connection_closed(&mut client, (540, "NOT_IMPLEMENTED - requeue=false", 60, 100));
}

#[test]
fn a_server_method_sent_by_a_client_closes_the_connection_with_503() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})));
    let methods = client.methods();
    assert_eq!(connection_close(&methods).map(|close| close.0), Some(503), "{methods:?}");
    assert!(client.closed);
}

#[test]
fn a_server_method_sent_by_a_client_is_an_unimplemented_method() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})));
    assert_connection_closed(&mut client, (503, "COMMAND_INVALID - unimplemented method", 60, 11));
}
