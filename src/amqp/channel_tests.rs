//! Unit tests of `channel.rs`: publisher confirms, unacked deliveries and their timeouts, the
//! channel's modes, and what closing releases.

use super::*;

#[test]
fn a_lone_confirm_is_not_multiple_and_does_not_wait_for_earlier_publishes() {
    let mut confirms = Confirms::new();
    let first = confirms.start(1);
    let second = confirms.start(2);
    let third = confirms.start(0);
    assert_eq!(confirms.take_all(), [ConfirmAnswer::Ack { delivery_tag: third, multiple: false }]);
    confirms.confirmed(first, true);
    assert_eq!(confirms.take_all(), [ConfirmAnswer::Ack { delivery_tag: first, multiple: false }]);
    confirms.confirmed(second, true);
    assert_eq!(confirms.take_all(), [], "second waits for its other queue");
    confirms.confirmed(second, true);
    assert_eq!(confirms.take_all(), [ConfirmAnswer::Ack { delivery_tag: second, multiple: false }]);
}

#[test]
fn a_publish_routed_by_an_owner_shard_waits_for_its_count_and_its_queues_in_any_order() {
    let mut confirms = Confirms::new();
    let early = confirms.start(ROUTED_BY_OWNER);
    confirms.confirmed(early, true);
    assert_eq!(confirms.take_all(), [], "a queue's confirm came before the owner's count");
    confirms.routed(early, 2);
    assert_eq!(confirms.take_all(), [], "one of two queues still to confirm");
    confirms.confirmed(early, true);
    assert_eq!(confirms.take_all(), [ConfirmAnswer::Ack { delivery_tag: early, multiple: false }]);
    let dropped = confirms.start(ROUTED_BY_OWNER);
    confirms.routed(dropped, 0);
    assert_eq!(confirms.take_all(), [ConfirmAnswer::Ack { delivery_tag: dropped, multiple: false }]);
}

#[test]
fn confirms_below_every_outstanding_publish_coalesce_into_one_multiple_ack() {
    let mut confirms = Confirms::new();
    let sequences: Vec<u64> = (0..5).map(|_| confirms.start(1)).collect();
    for sequence in [1, 2, 4, 5] {
        confirms.confirmed(sequence, true);
    }
    assert_eq!(
        confirms.take_all(),
        [
            ConfirmAnswer::Ack { delivery_tag: 2, multiple: true },
            ConfirmAnswer::Ack { delivery_tag: 4, multiple: false },
            ConfirmAnswer::Ack { delivery_tag: 5, multiple: false },
        ]
    );
    confirms.confirmed(sequences[2], true);
    assert_eq!(confirms.take_all(), [ConfirmAnswer::Ack { delivery_tag: 3, multiple: false }]);
}

#[test]
fn a_nack_stops_the_coalesced_acks_and_is_coalesced_itself() {
    let mut confirms = Confirms::new();
    let sequences: Vec<u64> = (0..3).map(|_| confirms.start(1)).collect();
    confirms.confirmed(sequences[0], true);
    confirms.confirmed(sequences[1], false);
    confirms.confirmed(sequences[2], true);
    assert_eq!(
        confirms.take_all(),
        [
            ConfirmAnswer::Ack { delivery_tag: 1, multiple: true },
            ConfirmAnswer::Ack { delivery_tag: 3, multiple: false },
            ConfirmAnswer::Nack { delivery_tag: 2, multiple: false },
        ]
    );
    let lone = confirms.start(1);
    confirms.confirmed(lone, false);
    assert_eq!(confirms.take_all(), [ConfirmAnswer::Nack { delivery_tag: lone, multiple: true }]);
}

/// The ring keeps only what lies from the oldest outstanding publish on: settled ones in
/// between hold their place, a publish settled at start (no queue) holds one only behind
/// an outstanding publish, and a confirm for a settled or unknown sequence changes nothing.
#[test]
fn the_outstanding_ring_follows_settles_in_any_order_and_empties() {
    let mut confirms = Confirms::new();
    let first = confirms.start(1);
    let unrouted = confirms.start(0);
    let third = confirms.start(2);
    assert_eq!((confirms.first_outstanding, confirms.outstanding.len()), (first, 3));
    assert_eq!(confirms.take_all(), [ConfirmAnswer::Ack { delivery_tag: unrouted, multiple: false }]);
    confirms.confirmed(third, true);
    confirms.confirmed(third, false);
    assert_eq!(confirms.take_all(), [ConfirmAnswer::Nack { delivery_tag: third, multiple: false }]);
    confirms.confirmed(third, true);
    assert_eq!(confirms.take_all(), [], "a settled publish is not answered twice");
    assert_eq!(confirms.outstanding.len(), 3, "the front is still outstanding");
    confirms.confirmed(first, true);
    assert!(confirms.outstanding.is_empty(), "every place behind the front was settled");
    assert_eq!(confirms.take_all(), [ConfirmAnswer::Ack { delivery_tag: first, multiple: false }]);
    confirms.confirmed(99, true);
    confirms.confirmed(0, true);
    assert_eq!(confirms.take_all(), []);
    let late = confirms.start(0);
    assert!(confirms.outstanding.is_empty(), "a publish settled at start needs no place");
    assert_eq!(confirms.take_all(), [ConfirmAnswer::Ack { delivery_tag: late, multiple: false }]);
    for _ in 0..10_000 {
        let sequence = confirms.start(1);
        confirms.confirmed(sequence, true);
    }
    assert!(confirms.outstanding.is_empty());
    assert_eq!(confirms.take_answers(|_| {}), 10_000);
}

#[test]
fn unknown_single_tag_is_refused_and_multiple_takes_all_below() {
    let mut channel = Channel::new(1, 0);
    for sequence in 1..=3 {
        let tag = channel.next_delivery_tag();
        channel.unacked.insert(tag, UnackedDelivery::new(QueueId(7), sequence, None));
    }
    assert!(channel.take_unacked(9, false).is_none());
    let taken = channel.take_unacked(2, true).expect("tags 1 and 2");
    assert_eq!(taken.get(&QueueId(7)), Some(&vec![1, 2]));
    assert_eq!(channel.unacked.len(), 1);
}

#[test]
fn the_oldest_unacked_delivery_is_overdue_one_millisecond_after_its_timeout() {
    let mut channel = Channel::new(1, 0);
    let mut first = UnackedDelivery::new(QueueId(7), 1, Some(500));
    first.delivered_at_ms = 1_000;
    channel.unacked.insert(4, first);
    channel.unacked.insert(5, UnackedDelivery::new(QueueId(7), 2, None));
    let oldest = channel.oldest_unacked().expect("two unacked");
    assert_eq!(oldest.sequence, 1);
    assert_eq!(oldest.overdue_at_ms(), Some(1_501), "RabbitMQ closes when now - delivered > timeout");
    assert_eq!(UnackedDelivery::new(QueueId(7), 3, None).overdue_at_ms(), None);
}

#[test]
fn a_channel_is_in_one_mode_at_a_time() {
    let mut confirming = Channel::new(1, 0);
    assert_eq!(confirming.select_confirms(), Ok(()));
    assert_eq!(confirming.select_confirms(), Ok(()), "select again is no change");
    assert_eq!(confirming.select_transaction(), Err(ModeConflict::AlreadyConfirming));
    assert!(confirming.confirms_mut().is_some() && confirming.transaction_mut().is_none());
    let mut transactional = Channel::new(2, 0);
    assert_eq!(transactional.select_transaction(), Ok(()));
    assert_eq!(transactional.select_confirms(), Err(ModeConflict::AlreadyTransactional));
    assert!(transactional.transaction_mut().is_some() && transactional.confirms_mut().is_none());
}

#[test]
fn closing_releases_what_the_channel_holds_and_ends_its_current_opening() {
    let mut channel = Channel::new(3, 7);
    assert!(channel.is_current(7) && !channel.is_current(6));
    channel.touch(2);
    let tag = channel.next_delivery_tag();
    channel.unacked.insert(tag, UnackedDelivery::new(QueueId(7), 1, None));
    assert_eq!(channel.begin_closing(), 1 << 2, "the shards that held something are named");
    assert_eq!(channel.unacked.len(), 0);
    assert!(!channel.is_open() && !channel.is_current(7));
}
