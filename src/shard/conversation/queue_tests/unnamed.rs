//! queue.declare without a name: server-named amq.gen queues.

use super::*;

#[test]
fn declare_without_a_name_creates_an_amq_gen_queue() {
    let broker = Broker::new(3);
    let mut client = connected(&broker, 2);
    let name = server_named(&mut client);
    let suffix = name.strip_prefix("amq.gen-").unwrap_or_else(|| panic!("{name}"));
    assert_eq!(suffix.len(), 22, "{name}");
    assert!(suffix.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'), "{name}");
    assert_ne!(server_named(&mut client), name, "two server-named queues share a name");
    let mut other = connected(&broker, 0);
    assert!(queue_exists(&mut other, 2, &name));
}

#[test]
fn passive_redeclare_of_a_server_named_queue_is_declare_ok() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let name = server_named(&mut client);
    assert_eq!(counts(&mut client, &name), (0, 0));
}

#[test]
fn redeclare_of_a_server_named_queue_is_403() {
    let broker = Broker::new(1);
    let mut client = connected(&broker, 0);
    let name = server_named(&mut client);
    let text = format!("ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'");
    assert_channel_closed(&mut client, declare_method(declare(&name)), 403, &text, DECLARE);
}
