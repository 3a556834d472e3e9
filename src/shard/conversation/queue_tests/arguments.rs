//! queue.declare arguments: equivalence on redeclare and every invalid argument refused.

use super::*;

/// The channel.close of declaring queue 'q' with the one argument `name` = `value`.
fn declare_refused(name: &str, value: AMQPValue) -> (u16, String, u16, u16) {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    client.send(1, declare_method(queue::Declare { arguments: table(&[(name, value)]), ..declare("q") }));
    let close = only_channel_close(&client.methods(), 1);
    assert!(!queue_exists(&mut client, 2, "q"), "a refused declare created the queue");
    close
}

/// RabbitMQ's close for an invalid queue argument: `reason` in Erlang's notation.
fn invalid_arg(name: &str, reason: &str) -> (u16, String, u16, u16) {
    let text = format!("PRECONDITION_FAILED - invalid arg '{name}' for queue 'q' in vhost '/': {reason}");
    (406, text, DECLARE.0, DECLARE.1)
}

/// Checks a refusal's code and text shape (each has a test with RabbitMQ's full text too).
fn assert_invalid_arg_refused(close: (u16, String, u16, u16), name: &str) {
    let (code, text, class_id, method_id) = close;
    assert_eq!((code, class_id, method_id), (406, DECLARE.0, DECLARE.1));
    let prefix = format!("PRECONDITION_FAILED - invalid arg '{name}' for queue 'q' in vhost '/': ");
    assert!(text.starts_with(&prefix), "{text}");
}

#[test]
fn redeclare_with_the_same_arguments_is_declare_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [("x-message-ttl", AMQPValue::LongInt(1000)), ("x-dead-letter-exchange", text("dlx"))];
    assert_answer(&mut client, declare_with("work", &arguments), declare_ok("work", 0, 0));
    assert_answer(&mut client, declare_with("work", &arguments), declare_ok("work", 0, 0));
}

#[test]
fn redeclare_with_an_added_argument_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    assert_channel_closed(
        &mut client,
        declare_with("work", &[("x-message-ttl", AMQPValue::LongInt(1000))]),
        406,
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'work' in vhost '/': received the value '1000' of type 'signedint' but current is none",
        DECLARE,
    );
}

#[test]
fn redeclare_without_an_argument_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [("x-max-length", AMQPValue::LongInt(10))];
    assert_answer(&mut client, declare_with("work", &arguments), declare_ok("work", 0, 0));
    assert_channel_closed(
        &mut client,
        declare_method(declare("work")),
        406,
        "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'work' in vhost '/': received none but current is the value '10' of type 'signedint'",
        DECLARE,
    );
}

#[test]
fn redeclare_with_another_argument_value_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [("x-single-active-consumer", AMQPValue::Boolean(true))];
    assert_answer(&mut client, declare_with("work", &arguments), declare_ok("work", 0, 0));
    client.send(1, declare_with("work", &[("x-single-active-consumer", AMQPValue::Boolean(false))]));
    let (code, text, class_id, method_id) = only_channel_close(&client.methods(), 1);
    assert_eq!((code, class_id, method_id), (406, DECLARE.0, DECLARE.1));
    let prefix =
        "PRECONDITION_FAILED - inequivalent arg 'x-single-active-consumer' for queue 'work' in vhost '/': received ";
    assert!(text.starts_with(prefix), "{text}");
}

#[test]
fn redeclare_with_another_argument_value_has_rabbitmq_text() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [("x-message-ttl", AMQPValue::LongInt(1000))];
    assert_answer(&mut client, declare_with("work", &arguments), declare_ok("work", 0, 0));
    assert_channel_closed(
        &mut client,
        declare_with("work", &[("x-message-ttl", AMQPValue::LongInt(2000))]),
        406,
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'work' in vhost '/': received '2000' but current is '1000'",
        DECLARE,
    );
}

#[test]
fn redeclare_with_an_argument_of_another_integer_width_is_declare_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [("x-message-ttl", AMQPValue::LongInt(1000))];
    assert_answer(&mut client, declare_with("work", &arguments), declare_ok("work", 0, 0));
    let wider = [("x-message-ttl", AMQPValue::LongLongInt(1000))];
    assert_answer(&mut client, declare_with("work", &wider), declare_ok("work", 0, 0));
}

#[test]
fn redeclare_with_another_unknown_argument_is_declare_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    assert_answer(&mut client, declare_with("work", &[("x-custom", text("a"))]), declare_ok("work", 0, 0));
    assert_answer(&mut client, declare_with("work", &[("x-custom", text("b"))]), declare_ok("work", 0, 0));
}

#[test]
fn redeclare_with_x_queue_type_classic_is_declare_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    assert_answer(&mut client, declare_with("work", &[("x-queue-type", text("classic"))]), declare_ok("work", 0, 0));
}

#[test]
fn redeclare_with_an_invalid_argument_is_inequivalent() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    declared(&mut client, "work");
    assert_channel_closed(
        &mut client,
        declare_with("work", &[("x-message-ttl", AMQPValue::LongInt(-1))]),
        406,
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'work' in vhost '/': received the value '-1' of type 'signedint' but current is none",
        DECLARE,
    );
}

#[test]
fn valid_arguments_are_declare_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [
        ("x-message-ttl", AMQPValue::LongInt(0)),
        ("x-expires", AMQPValue::LongInt(60_000)),
        ("x-max-length", AMQPValue::LongLongInt(0)),
        ("x-max-length-bytes", AMQPValue::ShortInt(1024)),
        ("x-overflow", text("reject-publish-dlx")),
        ("x-dead-letter-exchange", text("")),
        ("x-dead-letter-routing-key", text("dead")),
        ("x-max-priority", AMQPValue::ShortShortUInt(255)),
        ("x-single-active-consumer", AMQPValue::Boolean(true)),
        ("x-queue-type", text("classic")),
        ("x-custom", text("anything")),
    ];
    assert_answer(&mut client, declare_with("work", &arguments), declare_ok("work", 0, 0));
}

#[test]
fn negative_x_message_ttl_is_406() {
    assert_eq!(
        declare_refused("x-message-ttl", AMQPValue::LongInt(-1)),
        invalid_arg("x-message-ttl", "{value_negative,-1}")
    );
}

#[test]
fn x_message_ttl_of_a_string_is_406() {
    assert_invalid_arg_refused(declare_refused("x-message-ttl", text("60")), "x-message-ttl");
}

#[test]
fn x_message_ttl_of_a_string_has_rabbitmq_reason() {
    let expected = invalid_arg("x-message-ttl", "\"expected integer, got longstr\"");
    assert_eq!(declare_refused("x-message-ttl", text("60")), expected);
}

#[test]
fn x_message_ttl_above_the_erlang_timer_limit_is_declare_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [("x-message-ttl", AMQPValue::LongLongInt(4_294_967_296))];
    assert_answer(&mut client, declare_with("work", &arguments), declare_ok("work", 0, 0));
}

#[test]
fn zero_x_expires_is_406() {
    assert_eq!(declare_refused("x-expires", AMQPValue::LongInt(0)), invalid_arg("x-expires", "{value_zero,0}"));
}

#[test]
fn negative_x_expires_is_406() {
    assert_eq!(declare_refused("x-expires", AMQPValue::LongInt(-5)), invalid_arg("x-expires", "{value_negative,-5}"));
}

#[test]
fn x_expires_of_a_boolean_is_406() {
    assert_invalid_arg_refused(declare_refused("x-expires", AMQPValue::Boolean(true)), "x-expires");
}

#[test]
fn x_expires_of_a_boolean_has_rabbitmq_reason() {
    let expected = invalid_arg("x-expires", "\"expected integer, got bool\"");
    assert_eq!(declare_refused("x-expires", AMQPValue::Boolean(true)), expected);
}

#[test]
fn negative_x_max_length_is_406() {
    assert_eq!(
        declare_refused("x-max-length", AMQPValue::LongInt(-1)),
        invalid_arg("x-max-length", "{value_negative,-1}")
    );
}

#[test]
fn negative_x_max_length_bytes_is_406() {
    let expected = invalid_arg("x-max-length-bytes", "{value_negative,-2}");
    assert_eq!(declare_refused("x-max-length-bytes", AMQPValue::LongLongInt(-2)), expected);
}

#[test]
fn x_max_length_of_a_string_is_406() {
    assert_invalid_arg_refused(declare_refused("x-max-length", text("10")), "x-max-length");
}

#[test]
fn unknown_x_overflow_is_406() {
    assert_invalid_arg_refused(declare_refused("x-overflow", text("drop-tail")), "x-overflow");
}

#[test]
fn unknown_x_overflow_has_rabbitmq_reason() {
    assert_eq!(declare_refused("x-overflow", text("drop-tail")), invalid_arg("x-overflow", "invalid_overflow"));
}

#[test]
fn x_overflow_of_an_integer_is_406() {
    assert_invalid_arg_refused(declare_refused("x-overflow", AMQPValue::LongInt(1)), "x-overflow");
}

#[test]
fn x_overflow_of_an_integer_names_its_amqp_type() {
    let expected = invalid_arg("x-overflow", "{unacceptable_type,signedint}");
    assert_eq!(declare_refused("x-overflow", AMQPValue::LongInt(1)), expected);
}

#[test]
fn x_dead_letter_exchange_of_an_integer_is_406() {
    let (code, text, class_id, method_id) = declare_refused("x-dead-letter-exchange", AMQPValue::LongInt(1));
    assert_eq!((code, class_id, method_id), (406, DECLARE.0, DECLARE.1));
    assert!(text.starts_with("PRECONDITION_FAILED - invalid "), "{text}");
    assert!(text.contains("'x-dead-letter-exchange'") && text.contains("queue 'q' in vhost '/'"), "{text}");
}

#[test]
fn x_dead_letter_exchange_of_an_integer_has_rabbitmq_text() {
    let text =
        "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'";
    let expected = (406, text.to_string(), DECLARE.0, DECLARE.1);
    assert_eq!(declare_refused("x-dead-letter-exchange", AMQPValue::LongInt(1)), expected);
}

#[test]
fn x_dead_letter_routing_key_without_an_exchange_is_406() {
    assert_invalid_arg_refused(declare_refused("x-dead-letter-routing-key", text("dead")), "x-dead-letter-routing-key");
}

#[test]
fn x_dead_letter_routing_key_without_an_exchange_has_rabbitmq_reason() {
    let expected = invalid_arg("x-dead-letter-routing-key", "routing_key_but_no_dlx_defined");
    assert_eq!(declare_refused("x-dead-letter-routing-key", text("dead")), expected);
}

#[test]
fn x_dead_letter_routing_key_of_an_integer_is_406() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [("x-dead-letter-exchange", text("dlx")), ("x-dead-letter-routing-key", AMQPValue::LongInt(7))];
    client.send(1, declare_with("q", &arguments));
    assert_invalid_arg_refused(only_channel_close(&client.methods(), 1), "x-dead-letter-routing-key");
}

#[test]
fn x_max_priority_above_255_is_406() {
    assert_invalid_arg_refused(declare_refused("x-max-priority", AMQPValue::LongInt(256)), "x-max-priority");
}

#[test]
fn x_max_priority_above_255_has_rabbitmq_reason() {
    let expected = invalid_arg("x-max-priority", "{max_value_exceeded,256}");
    assert_eq!(declare_refused("x-max-priority", AMQPValue::LongInt(256)), expected);
}

#[test]
fn negative_x_max_priority_is_406() {
    let expected = invalid_arg("x-max-priority", "{value_negative,-1}");
    assert_eq!(declare_refused("x-max-priority", AMQPValue::LongInt(-1)), expected);
}

#[test]
fn zero_x_max_priority_is_declare_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [("x-max-priority", AMQPValue::LongInt(0))];
    assert_answer(&mut client, declare_with("work", &arguments), declare_ok("work", 0, 0));
}

#[test]
fn x_single_active_consumer_of_a_string_is_406() {
    let expected = invalid_arg("x-single-active-consumer", "{unacceptable_type,longstr}");
    assert_eq!(declare_refused("x-single-active-consumer", text("true")), expected);
}

#[test]
fn unknown_x_queue_type_is_406() {
    assert_invalid_arg_refused(declare_refused("x-queue-type", text("lazy")), "x-queue-type");
}

#[test]
fn unknown_x_queue_type_has_rabbitmq_reason() {
    let expected = invalid_arg("x-queue-type", "\"unsupported queue type 'lazy'\"");
    assert_eq!(declare_refused("x-queue-type", text("lazy")), expected);
}

#[test]
fn the_type_of_x_dead_letter_exchange_is_checked_before_the_other_arguments() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [("x-queue-type", text("lazy")), ("x-dead-letter-exchange", AMQPValue::LongInt(1))];
    let text =
        "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'";
    assert_channel_closed(&mut client, declare_with("q", &arguments), 406, text, DECLARE);
}

#[test]
fn x_queue_type_is_checked_before_the_other_arguments() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let arguments = [("x-expires", AMQPValue::LongInt(0)), ("x-queue-type", text("lazy"))];
    let (_, text, _, _) = invalid_arg("x-queue-type", "\"unsupported queue type 'lazy'\"");
    assert_channel_closed(&mut client, declare_with("q", &arguments), 406, &text, DECLARE);
}

#[test]
fn x_message_ttl_above_ten_years_is_406() {
    let ten_years_and_one_ms = AMQPValue::LongLongInt(315_360_000_001);
    let expected = invalid_arg("x-message-ttl", "{value_too_large,315360000001}");
    assert_eq!(declare_refused("x-message-ttl", ten_years_and_one_ms), expected);
}

#[test]
fn an_unknown_x_queue_mode_is_406() {
    let expected = invalid_arg("x-queue-mode", "\"unsupported queue mode 'eager'\"");
    assert_eq!(declare_refused("x-queue-mode", text("eager")), expected);
}

/// A stream must be durable, as in RabbitMQ 3.10 (the declare here is not).
#[test]
fn a_non_durable_stream_is_406() {
    let refusal = "PRECONDITION_FAILED - invalid property 'non-durable' for queue 'q' in vhost '/'".to_string();
    assert_eq!(declare_refused("x-queue-type", text("stream")), (406, refusal, DECLARE.0, DECLARE.1));
}

/// An extension: RabbitMQ 3.10 refuses x-delivery-limit on a classic queue whatever its value.
#[test]
fn negative_x_delivery_limit_is_406() {
    let expected = invalid_arg("x-delivery-limit", "{value_negative,-1}");
    assert_eq!(declare_refused("x-delivery-limit", AMQPValue::LongInt(-1)), expected);
}

/// An extension: RabbitMQ 3.10 ignores a queue's x-consumer-timeout argument.
#[test]
fn negative_x_consumer_timeout_is_406() {
    let expected = invalid_arg("x-consumer-timeout", "{value_negative,-1}");
    assert_eq!(declare_refused("x-consumer-timeout", AMQPValue::LongInt(-1)), expected);
}
