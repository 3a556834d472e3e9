//! Unit tests of the queue state machine: effects in, effects out, no sockets.

use super::*;
use crate::broker::ready::NoRecords;
use crate::ids::ConnId;
use amq_protocol::types::FieldTable;
use bytes::Bytes;

fn queue() -> Queue {
    queue_with(FieldTable::default())
}

fn queue_with(arguments: FieldTable) -> Queue {
    Queue::new(Arc::new(QueueDef {
        id: QueueId::new(0, 1),
        vhost: "/".into(),
        name: "q".into(),
        durable: false,
        exclusive_owner: None,
        auto_delete: false,
        arguments,
        policies: Default::default(),
    }))
}

fn message(body: &'static [u8]) -> Payload {
    Payload::Memory(Arc::new(Message {
        exchange: Bytes::new(),
        routing_key: Bytes::from_static(b"q"),
        properties: Bytes::from_static(&[0, 0]),
        body: Bytes::from_static(body),
    }))
}

fn settings(no_ack: bool, exclusive: bool, prefetch_count: u32) -> ConsumerSettings {
    ConsumerSettings { key: ConsumerKey::default(), no_ack, exclusive, prefetch_count, priority: 0 }
}

fn holder(channel: u16) -> Holder {
    Holder { conn: ConnId { shard: 0, local: 1 }, channel, incarnation: 0 }
}

fn delivered(effects: &mut Vec<Effect>) -> Vec<(u16, u64, bool)> {
    effects
        .drain(..)
        .filter_map(|effect| match effect {
            Effect::Deliver(delivery) => Some((delivery.holder.channel, delivery.sequence, delivery.redelivered)),
            Effect::ConsumerCancelled { .. } | Effect::Mark { .. } | Effect::DeadLetter { .. } => None,
        })
        .collect()
}

#[test]
fn prefetch_limits_unacked_deliveries() {
    let mut queue = queue();
    let mut effects = Vec::new();
    queue.add_consumer(holder(1), "c".into(), settings(false, false, 2)).expect("consume");
    for _ in 0..5 {
        queue.enqueue(message(b"x"), Arrival::default(), &mut effects, &NoRecords);
    }
    assert_eq!(delivered(&mut effects).len(), 2);
    queue.settle(holder(1), &[1], Settle::Ack, &mut effects, &NoRecords);
    assert_eq!(delivered(&mut effects), vec![(1, 3, false)]);
}

#[test]
fn round_robin_between_consumers() {
    let mut queue = queue();
    let mut effects = Vec::new();
    queue.add_consumer(holder(1), "a".into(), settings(true, false, 0)).expect("consume");
    queue.add_consumer(holder(2), "b".into(), settings(true, false, 0)).expect("consume");
    for _ in 0..4 {
        queue.enqueue(message(b"x"), Arrival::default(), &mut effects, &NoRecords);
    }
    let channels: Vec<u16> = delivered(&mut effects).iter().map(|(channel, _, _)| *channel).collect();
    assert_eq!(channels, vec![1, 2, 1, 2]);
}

#[test]
fn requeue_restores_original_position_with_redelivered() {
    let mut queue = queue();
    let mut effects = Vec::new();
    for _ in 0..3 {
        queue.enqueue(message(b"x"), Arrival::default(), &mut effects, &NoRecords);
    }
    let first = queue.get(holder(1), false, &mut effects, &NoRecords).expect("first");
    queue.settle(holder(1), &[first.sequence], Settle::Requeue, &mut effects, &NoRecords);
    let again = queue.get(holder(1), true, &mut effects, &NoRecords).expect("again");
    assert_eq!(again.sequence, first.sequence);
    assert!(again.redelivered);
    assert_eq!(queue.message_count(), 2);
}

#[test]
fn channel_gone_requeues_to_other_consumer() {
    let mut queue = queue();
    let mut effects = Vec::new();
    queue.add_consumer(holder(1), "a".into(), settings(false, false, 1)).expect("consume");
    queue.enqueue(message(b"x"), Arrival::default(), &mut effects, &NoRecords);
    assert_eq!(delivered(&mut effects), vec![(1, 1, false)]);
    queue.add_consumer(holder(2), "b".into(), settings(false, false, 1)).expect("consume");
    queue.channel_gone(holder(1), &mut effects, &NoRecords);
    assert_eq!(delivered(&mut effects), vec![(2, 1, true)]);
}

#[test]
fn exclusive_consumer_blocks_others() {
    let mut queue = queue();
    queue.add_consumer(holder(1), "a".into(), settings(false, true, 0)).expect("consume");
    let error = queue.add_consumer(holder(2), "b".into(), settings(false, false, 0)).expect_err("exclusive");
    assert_eq!(error.reply_code, ACCESS_REFUSED);
}

#[test]
fn flow_credit_bounds_no_ack_deliveries() {
    let mut queue = queue();
    let mut effects = Vec::new();
    queue.add_consumer(holder(1), "a".into(), settings(true, false, 0)).expect("consume");
    for _ in 0..(CONSUMER_FLOW_WINDOW + 10) {
        queue.enqueue(message(b"x"), Arrival::default(), &mut effects, &NoRecords);
    }
    assert_eq!(delivered(&mut effects).len(), CONSUMER_FLOW_WINDOW as usize);
    queue.credit(holder(1), ConsumerKey::default(), 5, &mut effects, &NoRecords);
    assert_eq!(delivered(&mut effects).len(), 5);
}

fn deliveries_by_consumer(effects: &mut Vec<Effect>) -> Vec<(ConsumerKey, u64)> {
    effects
        .drain(..)
        .filter_map(|effect| match effect {
            Effect::Deliver(delivery) => Some((delivery.consumer, delivery.sequence)),
            _ => None,
        })
        .collect()
}

#[test]
fn acks_reach_the_consumer_they_name_on_a_shared_channel() {
    // Two consumers on one channel, told apart by their keys alone.
    let mut queue = queue();
    let mut effects = Vec::new();
    let (one, two) = (ConsumerKey(1), ConsumerKey(2));
    let manual = |key| ConsumerSettings { key, ..settings(false, false, 1) };
    queue.add_consumer(holder(1), "one".into(), manual(one)).expect("one");
    queue.add_consumer(holder(1), "two".into(), manual(two)).expect("two");
    for _ in 0..3 {
        queue.enqueue(message(b"x"), Arrival::default(), &mut effects, &NoRecords);
    }
    assert_eq!(deliveries_by_consumer(&mut effects), vec![(one, 1), (two, 2)], "one each, at prefetch 1");
    // Acking two's message frees two alone.
    queue.settle(holder(1), &[2], Settle::Ack, &mut effects, &NoRecords);
    assert_eq!(deliveries_by_consumer(&mut effects), vec![(two, 3)]);
    assert_eq!(queue.unacked_count(), 2);
}

#[test]
fn flow_credit_reaches_the_consumer_it_names_on_a_shared_channel() {
    let mut queue = queue();
    let mut effects = Vec::new();
    let (one, two) = (ConsumerKey(1), ConsumerKey(2));
    let no_ack = |key| ConsumerSettings { key, ..settings(true, false, 0) };
    queue.add_consumer(holder(1), "one".into(), no_ack(one)).expect("one");
    for _ in 0..CONSUMER_FLOW_WINDOW {
        queue.enqueue(message(b"x"), Arrival::default(), &mut effects, &NoRecords);
    }
    assert_eq!(deliveries_by_consumer(&mut effects).len(), CONSUMER_FLOW_WINDOW as usize);
    queue.add_consumer(holder(1), "two".into(), no_ack(two)).expect("two");
    queue.cancel_consumer(holder(1), "two");
    queue.enqueue(message(b"x"), Arrival::default(), &mut effects, &NoRecords);
    assert!(deliveries_by_consumer(&mut effects).is_empty(), "one is out of credit");
    // Credit for another key of the same channel (a consumer gone meanwhile) is not one's.
    queue.credit(holder(1), two, 5, &mut effects, &NoRecords);
    assert!(deliveries_by_consumer(&mut effects).is_empty());
    queue.credit(holder(1), one, 5, &mut effects, &NoRecords);
    assert_eq!(deliveries_by_consumer(&mut effects).len(), 1);
}

fn arguments(entries: &[(&str, i64)], dead_letter_exchange: bool) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in entries {
        table.insert((*name).into(), amq_protocol::types::AMQPValue::LongLongInt(*value));
    }
    if dead_letter_exchange {
        table.insert("x-dead-letter-exchange".into(), amq_protocol::types::AMQPValue::LongString("dlx".into()));
    }
    table
}

fn dead_reasons(effects: &mut Vec<Effect>) -> Vec<DeathReason> {
    effects
        .drain(..)
        .filter_map(|effect| match effect {
            Effect::DeadLetter { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

#[test]
fn max_length_drops_the_head_and_dead_letters_it() {
    let mut queue = queue_with(arguments(&[("x-max-length", 2)], true));
    let mut effects = Vec::new();
    for _ in 0..3 {
        queue.enqueue(message(b"x"), Arrival::default(), &mut effects, &NoRecords);
    }
    assert_eq!(dead_reasons(&mut effects), vec![DeathReason::MaxLength]);
    assert_eq!(queue.message_count(), 2);
    assert_eq!(queue.get(holder(1), true, &mut effects, &NoRecords).expect("head").sequence, 2);
}

#[test]
fn reject_publish_refuses_at_the_limit() {
    let mut table = arguments(&[("x-max-length-bytes", 3)], false);
    table.insert("x-overflow".into(), amq_protocol::types::AMQPValue::LongString("reject-publish".into()));
    let mut queue = queue_with(table);
    let mut effects = Vec::new();
    assert!(!queue.refuses(2));
    queue.enqueue(message(b"xy"), Arrival::default(), &mut effects, &NoRecords);
    assert!(queue.refuses(2), "2 + 2 bytes exceed 3");
    assert!(!queue.refuses(1));
}

#[test]
fn expired_messages_are_never_delivered() {
    let mut queue = queue_with(arguments(&[], true));
    let mut effects = Vec::new();
    queue.enqueue(message(b"x"), Arrival { expiration_ms: Some(50), priority: 0 }, &mut effects, &NoRecords);
    queue.enqueue(message(b"y"), Arrival::default(), &mut effects, &NoRecords);
    assert_eq!(queue.expire(clock::now_ms() + 50, 10, &mut effects, &NoRecords), 1);
    assert_eq!(dead_reasons(&mut effects), vec![DeathReason::Expired]);
    assert_eq!(queue.message_count(), 1);
    assert!(queue.timed());
}

#[test]
fn a_message_with_a_ttl_of_0_no_consumer_takes_at_once_dies_at_once() {
    let mut queue = queue_with(arguments(&[], true));
    let mut effects = Vec::new();
    queue.enqueue(message(b"x"), Arrival { expiration_ms: Some(0), priority: 0 }, &mut effects, &NoRecords);
    assert_eq!(dead_reasons(&mut effects), vec![DeathReason::Expired]);
    assert_eq!(queue.message_count(), 0);
    assert!(queue.get(holder(1), true, &mut effects, &NoRecords).is_none());
}

#[test]
fn a_message_with_a_ttl_of_0_goes_to_a_consumer_that_can_take_it() {
    let mut queue = queue();
    let mut effects = Vec::new();
    queue.add_consumer(holder(1), "c".into(), settings(true, false, 0)).expect("consume");
    queue.enqueue(message(b"x"), Arrival { expiration_ms: Some(0), priority: 0 }, &mut effects, &NoRecords);
    assert_eq!(delivered(&mut effects), vec![(1, 1, false)]);
}

#[test]
fn rejected_message_is_dead_lettered() {
    let mut queue = queue_with(arguments(&[], true));
    let mut effects = Vec::new();
    queue.enqueue(message(b"x"), Arrival::default(), &mut effects, &NoRecords);
    let got = queue.get(holder(1), false, &mut effects, &NoRecords).expect("get");
    queue.settle(holder(1), &[got.sequence], Settle::Discard, &mut effects, &NoRecords);
    assert_eq!(dead_reasons(&mut effects), vec![DeathReason::Rejected]);
}

#[test]
fn higher_priority_consumer_gets_messages_first() {
    let mut queue = queue();
    let mut effects = Vec::new();
    queue.add_consumer(holder(1), "low".into(), settings(true, false, 0)).expect("consume");
    let high = ConsumerSettings { priority: 5, ..settings(false, false, 1) };
    queue.add_consumer(holder(2), "high".into(), high).expect("consume");
    for _ in 0..3 {
        queue.enqueue(message(b"x"), Arrival::default(), &mut effects, &NoRecords);
    }
    // The high-priority consumer takes one (its prefetch), the rest go to the other.
    let channels: Vec<u16> = delivered(&mut effects).iter().map(|(channel, _, _)| *channel).collect();
    assert_eq!(channels, vec![2, 1, 1]);
}

/// (sequence, x-delivery-count to send) of each delivery in `effects`.
fn delivery_counts(effects: &mut Vec<Effect>) -> Vec<(u64, Option<u32>)> {
    effects
        .drain(..)
        .filter_map(|effect| match effect {
            Effect::Deliver(delivery) => Some((delivery.sequence, delivery.delivery_count)),
            _ => None,
        })
        .collect()
}

#[test]
fn each_return_counts_in_x_delivery_count_with_a_delivery_limit() {
    let mut queue = queue_with(arguments(&[("x-delivery-limit", 5)], false));
    let mut effects = Vec::new();
    queue.add_consumer(holder(1), "a".into(), settings(false, false, 1)).expect("consume");
    queue.enqueue(message(b"x"), Arrival::default(), &mut effects, &NoRecords);
    assert_eq!(delivery_counts(&mut effects), vec![(1, None)], "a first delivery carries no count");
    queue.settle(holder(1), &[1], Settle::Requeue, &mut effects, &NoRecords);
    assert_eq!(delivery_counts(&mut effects), vec![(1, Some(1))]);
    queue.channel_gone(holder(1), &mut effects, &NoRecords);
    let got = queue.get(holder(2), false, &mut effects, &NoRecords).expect("returned by the closed channel");
    assert_eq!((got.delivery_count, got.redelivered), (Some(2), true));
}

#[test]
fn without_a_delivery_limit_no_count_is_sent() {
    let mut queue = queue();
    let mut effects = Vec::new();
    queue.enqueue(message(b"x"), Arrival::default(), &mut effects, &NoRecords);
    for _ in 0..3 {
        let got = queue.get(holder(1), false, &mut effects, &NoRecords).expect("get");
        assert_eq!(got.delivery_count, None);
        queue.settle(holder(1), &[got.sequence], Settle::Requeue, &mut effects, &NoRecords);
    }
    assert_eq!(queue.message_count(), 1, "no limit: the message always comes back");
}

#[test]
fn one_return_beyond_the_delivery_limit_dead_letters_with_reason_delivery_limit() {
    let mut queue = queue_with(arguments(&[("x-delivery-limit", 1)], true));
    let mut effects = Vec::new();
    queue.enqueue(message(b"x"), Arrival::default(), &mut effects, &NoRecords);
    let first = queue.get(holder(1), false, &mut effects, &NoRecords).expect("first");
    queue.settle(holder(1), &[first.sequence], Settle::Requeue, &mut effects, &NoRecords);
    assert!(dead_reasons(&mut effects).is_empty(), "one return is within a limit of 1");
    let second = queue.get(holder(1), false, &mut effects, &NoRecords).expect("second");
    assert_eq!(second.delivery_count, Some(1));
    queue.settle(holder(1), &[second.sequence], Settle::Requeue, &mut effects, &NoRecords);
    assert_eq!(dead_reasons(&mut effects), vec![DeathReason::DeliveryLimit]);
    assert_eq!(queue.message_count(), 0);
}

#[test]
fn delivery_limit_zero_drops_at_the_first_return_without_dead_letter_exchange() {
    let mut queue = queue_with(arguments(&[("x-delivery-limit", 0)], false));
    let mut effects = Vec::new();
    queue.enqueue(message(b"x"), Arrival::default(), &mut effects, &NoRecords);
    let got = queue.get(holder(1), false, &mut effects, &NoRecords).expect("get");
    queue.settle(holder(1), &[got.sequence], Settle::Requeue, &mut effects, &NoRecords);
    assert!(dead_reasons(&mut effects).is_empty(), "no dead-letter exchange: dropped");
    assert_eq!(queue.message_count(), 0);
    assert!(queue.get(holder(1), true, &mut effects, &NoRecords).is_none());
}

#[test]
fn an_expires_policy_starts_its_lease_when_it_is_applied_and_clearing_it_ends_it() {
    let mut queue = queue();
    let mut effects = Vec::new();
    let definition: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(r#"{"expires": 1000}"#).expect("json");
    let input = crate::broker::policy::PolicyInput {
        kind: crate::broker::policy::PolicyKind::Policy,
        vhost: "/",
        name: "lease",
        pattern: ".*",
        apply_to: "queues",
        definition: &definition,
        priority: 0,
    };
    let policy = Arc::new(crate::broker::policy::Policy::parse(&input).expect("valid"));
    let with_policy = QueueDef {
        policies: crate::broker::policy::AppliedPolicies { policy: Some(policy), operator: None },
        ..QueueDef::clone(&queue.definition)
    };
    let applied_at_ms = clock::now_ms();
    queue.apply_policies(Arc::new(with_policy), &mut effects, &NoRecords);
    assert!(!queue.unused_for_too_long(applied_at_ms + 500));
    assert!(queue.unused_for_too_long(applied_at_ms + 5_000));
    let plain = QueueDef { policies: Default::default(), ..QueueDef::clone(&queue.definition) };
    queue.apply_policies(Arc::new(plain), &mut effects, &NoRecords);
    assert!(!queue.unused_for_too_long(applied_at_ms + 50_000), "no lease without the policy");
    assert!(effects.is_empty());
}

fn quorum(entries: &[(&str, i64)]) -> FieldTable {
    let mut table = arguments(entries, false);
    table.insert("x-queue-type".into(), amq_protocol::types::AMQPValue::LongString("quorum".into()));
    table
}

#[test]
fn a_quorum_queue_counts_returns_in_x_delivery_count_without_a_limit() {
    let mut queue = queue_with(quorum(&[]));
    let mut effects = Vec::new();
    queue.add_consumer(holder(1), "a".into(), settings(false, false, 1)).expect("consume");
    queue.enqueue(message(b"x"), Arrival::default(), &mut effects, &NoRecords);
    assert_eq!(delivery_counts(&mut effects), vec![(1, None)], "a first delivery carries no count");
    queue.settle(holder(1), &[1], Settle::Requeue, &mut effects, &NoRecords);
    assert_eq!(delivery_counts(&mut effects), vec![(1, Some(1))]);
    queue.settle(holder(1), &[1], Settle::Requeue, &mut effects, &NoRecords);
    assert_eq!(delivery_counts(&mut effects), vec![(1, Some(2))]);
    assert_eq!(queue.message_count(), 0, "no limit: the message keeps coming back");
}

#[test]
fn a_quorum_queue_basic_get_always_carries_x_delivery_count() {
    let mut queue = queue_with(quorum(&[]));
    let mut effects = Vec::new();
    queue.enqueue(message(b"x"), Arrival::default(), &mut effects, &NoRecords);
    let first = queue.get(holder(1), false, &mut effects, &NoRecords).expect("first");
    assert_eq!((first.delivery_count, first.redelivered), (Some(0), false));
    queue.settle(holder(1), &[first.sequence], Settle::Requeue, &mut effects, &NoRecords);
    let second = queue.get(holder(1), false, &mut effects, &NoRecords).expect("second");
    assert_eq!((second.delivery_count, second.redelivered), (Some(1), true));
}

#[test]
fn a_quorum_queue_delivery_limit_drops_one_return_beyond_it() {
    let mut queue = queue_with(quorum(&[("x-delivery-limit", 1)]));
    let mut effects = Vec::new();
    queue.enqueue(message(b"x"), Arrival::default(), &mut effects, &NoRecords);
    for _ in 0..2 {
        let got = queue.get(holder(1), false, &mut effects, &NoRecords).expect("within the limit");
        queue.settle(holder(1), &[got.sequence], Settle::Requeue, &mut effects, &NoRecords);
    }
    assert_eq!(queue.message_count(), 0, "the second return is one more than the limit");
}

#[test]
fn a_negative_quorum_delivery_limit_drops_at_the_first_return_as_rabbitmq_does() {
    let mut queue = queue_with(quorum(&[("x-delivery-limit", -1)]));
    let mut effects = Vec::new();
    queue.enqueue(message(b"x"), Arrival::default(), &mut effects, &NoRecords);
    let got = queue.get(holder(1), false, &mut effects, &NoRecords).expect("get");
    queue.settle(holder(1), &[got.sequence], Settle::Requeue, &mut effects, &NoRecords);
    assert_eq!(queue.message_count(), 0);
}

#[test]
fn a_quorum_queue_appends_a_nacked_message_behind_the_others() {
    let mut queue = queue_with(quorum(&[]));
    let mut effects = Vec::new();
    for body in [b"a", b"b", b"c"] {
        queue.enqueue(message(body), Arrival::default(), &mut effects, &NoRecords);
    }
    let first = queue.get(holder(1), false, &mut effects, &NoRecords).expect("a");
    queue.settle(holder(1), &[first.sequence], Settle::Requeue, &mut effects, &NoRecords);
    let order: Vec<(u64, bool)> = (0..3)
        .map(|_| queue.get(holder(1), true, &mut effects, &NoRecords).expect("ready"))
        .map(|got| (got.sequence, got.redelivered))
        .collect();
    assert_eq!(order, vec![(2, false), (3, false), (1, true)]);
}

#[test]
fn a_quorum_queue_puts_a_message_of_a_closed_channel_back_in_front() {
    let mut queue = queue_with(quorum(&[]));
    let mut effects = Vec::new();
    for body in [b"a", b"b"] {
        queue.enqueue(message(body), Arrival::default(), &mut effects, &NoRecords);
    }
    queue.get(holder(1), false, &mut effects, &NoRecords).expect("a");
    queue.channel_gone(holder(1), &mut effects, &NoRecords);
    let got = queue.get(holder(2), true, &mut effects, &NoRecords).expect("a again");
    assert_eq!((got.sequence, got.redelivered), (1, true));
}

#[test]
fn a_stored_message_reaches_its_consumer_alone_and_its_reference_goes_with_the_last_mark() {
    let dir = std::env::temp_dir().join(format!("spatemq-queue-marks-{}", std::process::id()));
    let mut store = crate::store::Store::open(&dir, 1, 1 << 20, None).expect("open a store");
    let record = crate::store::record::MessageRecord::plain(1, 1, b"x");
    let reference = store.append(&record).expect("append");
    let segment = reference.segment.clone();
    let references = || Arc::strong_count(&segment);
    let before = references();
    let stored = || Payload::Stored { reference: reference.clone(), cached: message(b"x").message().cloned() };
    let mut effects = Vec::new();
    for (no_ack, what) in [(false, "acknowledged"), (true, "no-ack")] {
        let mut queue = queue();
        queue.add_consumer(holder(1), "c".into(), settings(no_ack, false, 0)).expect("consume");
        queue.enqueue(stored(), Arrival::default(), &mut effects, &NoRecords);
        let mut marks = Vec::new();
        for effect in effects.drain(..) {
            match effect {
                Effect::Deliver(delivery) => {
                    assert!(matches!(delivery.payload, Payload::Memory(_)), "{what}: the message alone");
                }
                Effect::Mark { reference, mark, .. } => marks.push((reference, mark)),
                other => panic!("{what}: unexpected {other:?}"),
            }
        }
        let expected = if no_ack { Mark::Removed } else { Mark::Delivered };
        assert_eq!(marks.iter().map(|(_, mark)| *mark).collect::<Vec<_>>(), vec![expected], "{what}");
        // The mark holds one reference; an unacked entry holds another.
        assert_eq!(references(), before + 1 + usize::from(!no_ack), "{what}");
        drop(marks);
        if !no_ack {
            queue.settle(holder(1), &[1], Settle::Ack, &mut effects, &NoRecords);
            assert!(matches!(effects.as_slice(), [Effect::Mark { mark: Mark::Removed, .. }]));
            // The entry's own reference moved into the removal mark.
            assert_eq!(references(), before + 1, "{what}: only the mark holds it");
            effects.clear();
        }
        assert_eq!(references(), before, "{what}: nothing holds the segment after the last mark");
    }
    drop(reference);
    let _ = std::fs::remove_dir_all(&dir);
}
