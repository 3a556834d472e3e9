//! basic.ack, basic.nack and basic.reject: unknown tags, multiple, requeue and discard.

use super::*;

fn nack(delivery_tag: u64, multiple: bool, requeue: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Nack(basic::Nack { delivery_tag, multiple, requeue }))
}

fn reject(delivery_tag: u64, requeue: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Reject(basic::Reject { delivery_tag, requeue }))
}

#[test]
fn ack_of_an_unknown_delivery_tag_closes_the_channel_with_406() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, ack(7, false));
    assert_channel_closed(&mut client, (406, "PRECONDITION_FAILED - unknown delivery tag 7", 60, 80));
}

#[test]
fn nack_of_an_unknown_delivery_tag_closes_the_channel_with_406() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, nack(7, false, true));
    assert_channel_closed(&mut client, (406, "PRECONDITION_FAILED - unknown delivery tag 7", 60, 120));
}

#[test]
fn reject_of_an_unknown_delivery_tag_closes_the_channel_with_406() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, reject(7, true));
    assert_channel_closed(&mut client, (406, "PRECONDITION_FAILED - unknown delivery tag 7", 60, 90));
}

#[test]
fn ack_multiple_of_an_unknown_tag_with_nothing_unacked_closes_the_channel_with_406() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, ack(3, true));
    assert_channel_closed(&mut client, (406, "PRECONDITION_FAILED - unknown delivery tag 3", 60, 80));
}

#[test]
fn ack_multiple_of_tag_0_with_nothing_unacked_is_accepted() {
    let broker = Broker::new(1);
    let mut client = client_on(&broker, 0);
    client.send(1, ack(0, true));
    assert!(client.output().is_empty());
    client.send(1, qos(1, false));
    assert_eq!(client.methods().len(), 1, "the channel is still open");
}

#[test]
fn a_second_ack_of_the_same_delivery_closes_the_channel_with_406() {
    let broker = Broker::new(2);
    queue_with_messages(&broker, "twice", 1);
    let mut client = client_on(&broker, 0);
    client.send(1, get("twice", false));
    let (ok, _) = got(&client.output()).expect("one message");
    client.send(1, ack(ok.delivery_tag, false));
    assert!(client.output().is_empty());
    client.send(1, ack(ok.delivery_tag, false));
    assert_channel_closed(&mut client, (406, "PRECONDITION_FAILED - unknown delivery tag 1", 60, 80));
}

#[test]
fn ack_of_a_no_ack_delivery_closes_the_channel_with_406() {
    let broker = Broker::new(2);
    queue_with_messages(&broker, "auto", 1);
    let mut client = client_on(&broker, 0);
    client.send(1, get("auto", true));
    let (ok, _) = got(&client.output()).expect("one message");
    client.send(1, ack(ok.delivery_tag, false));
    assert_channel_closed(&mut client, (406, "PRECONDITION_FAILED - unknown delivery tag 1", 60, 80));
}

#[test]
fn ack_multiple_settles_every_delivery_up_to_its_tag() {
    let broker = Broker::new(3);
    queue_with_messages(&broker, "many", 3);
    let mut client = client_on(&broker, 1);
    let received = start_consumer(&mut client, "many", "c");
    assert_eq!(received.iter().map(|message| message.delivery_tag).collect::<Vec<_>>(), vec![1, 2, 3]);
    client.send(1, ack(2, true));
    assert!(client.output().is_empty());
    client.send(1, ack(3, false));
    assert!(client.output().is_empty());
    client.send(1, ack(1, false));
    assert_channel_closed(&mut client, (406, "PRECONDITION_FAILED - unknown delivery tag 1", 60, 80));
}

#[test]
fn ack_multiple_of_tag_0_settles_every_delivery() {
    let broker = Broker::new(2);
    queue_with_messages(&broker, "all", 3);
    let mut client = client_on(&broker, 1);
    assert_eq!(start_consumer(&mut client, "all", "c").len(), 3);
    client.send(1, ack(0, true));
    client.send(1, recover(true));
    let methods = client.methods();
    assert!(
        matches!(methods.as_slice(), [(1, AMQPClass::Basic(basic::AMQPMethod::RecoverOk(_)))]),
        "nothing is left to redeliver: {methods:?}"
    );
}

#[test]
fn ack_multiple_of_a_tag_never_delivered_closes_the_channel_with_406() {
    let broker = Broker::new(2);
    queue_with_messages(&broker, "beyond", 2);
    let mut client = client_on(&broker, 1);
    assert_eq!(start_consumer(&mut client, "beyond", "c").len(), 2);
    client.send(1, ack(5, true));
    assert_channel_closed(&mut client, (406, "PRECONDITION_FAILED - unknown delivery tag 5", 60, 80));
}

#[test]
fn nack_with_requeue_redelivers_with_the_redelivered_flag() {
    let broker = Broker::new(3);
    queue_with_messages(&broker, "again", 1);
    let mut client = client_on(&broker, 1);
    let first = start_consumer(&mut client, "again", "c");
    assert_eq!((first.len(), first[0].redelivered), (1, false));
    client.send(1, nack(first[0].delivery_tag, false, true));
    let second = deliveries(&client.output());
    assert_eq!(second.len(), 1, "{second:?}");
    assert_eq!((second[0].delivery_tag, second[0].redelivered), (2, true));
    assert_eq!(second[0].body, b"m1");
}

#[test]
fn nack_multiple_with_requeue_redelivers_every_delivery_up_to_its_tag() {
    let broker = Broker::new(2);
    queue_with_messages(&broker, "batch", 3);
    let mut client = client_on(&broker, 0);
    for _ in 0..3 {
        client.send(1, get("batch", false));
        assert!(got(&client.output()).is_some());
    }
    client.send(1, nack(2, true, true));
    assert!(client.output().is_empty());
    let mut redelivered = Vec::new();
    for _ in 0..2 {
        client.send(1, get("batch", false));
        let (ok, body) = got(&client.output()).expect("a requeued message");
        redelivered.push((ok.redelivered, body));
    }
    assert_eq!(redelivered, vec![(true, b"m1".to_vec()), (true, b"m2".to_vec())]);
    client.send(1, get("batch", false));
    assert!(got(&client.output()).is_none(), "m3 is still unacked, not requeued");
}

#[test]
fn reject_without_requeue_discards_the_message() {
    let broker = Broker::new(2);
    queue_with_messages(&broker, "discard", 1);
    let mut client = client_on(&broker, 0);
    client.send(1, get("discard", false));
    let (ok, _) = got(&client.output()).expect("one message");
    client.send(1, reject(ok.delivery_tag, false));
    assert!(client.output().is_empty());
    client.send(1, recover(true));
    client.output();
    client.send(1, get("discard", true));
    assert!(got(&client.output()).is_none());
}

#[test]
fn reject_with_requeue_puts_the_message_back_as_redelivered() {
    let broker = Broker::new(2);
    queue_with_messages(&broker, "back", 1);
    let mut client = client_on(&broker, 0);
    client.send(1, get("back", false));
    let (ok, _) = got(&client.output()).expect("one message");
    client.send(1, reject(ok.delivery_tag, true));
    client.send(1, get("back", true));
    let (again, body) = got(&client.output()).expect("the requeued message");
    assert!(again.redelivered);
    assert_eq!((again.delivery_tag, body), (2, b"m1".to_vec()));
}
