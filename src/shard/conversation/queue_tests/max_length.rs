//! x-max-length counts ready messages only: unacked ones are not counted while they are out,
//! and count again once they are requeued, when drop-head drops the oldest to fit.

use super::*;

fn get(name: &str, no_ack: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get { queue: name.into(), no_ack }))
}

/// The get-ok and the body of the one message a basic.get answered with.
fn got(client: &mut Client) -> (basic::GetOk, Vec<u8>) {
    let output = client.output();
    match output.as_slice() {
        [Out::Method { method: AMQPClass::Basic(basic::AMQPMethod::GetOk(ok)), .. }, Out::Header { .. }, Out::Body { body, .. }] => {
            (ok.clone(), body.to_vec())
        }
        other => panic!("expected get-ok with its content, got {other:?}"),
    }
}

#[test]
fn a_requeued_message_over_x_max_length_drops_the_oldest_ready_message() {
    let broker = Broker::new(3);
    let mut client = connected(&broker, 1);
    let arguments = [("x-max-length", AMQPValue::LongInt(1))];
    assert_answer(&mut client, declare_with("bounded", &arguments), declare_ok("bounded", 0, 0));
    client.publish(1, "", "bounded", &AMQPProperties::default(), b"first");
    client.send(1, get("bounded", false));
    let (first, _) = got(&mut client);
    // "first" is unacked, so the queue holds no ready message and takes "second".
    client.publish(1, "", "bounded", &AMQPProperties::default(), b"second");
    assert_eq!(counts(&mut client, "bounded"), (1, 0));
    let reject = basic::Reject { delivery_tag: first.delivery_tag, requeue: true };
    client.send(1, AMQPClass::Basic(basic::AMQPMethod::Reject(reject)));
    assert!(client.output().is_empty(), "basic.reject was answered");
    // Back in the queue, "first" is the oldest of two ready messages over a limit of one.
    client.send(1, get("bounded", true));
    let (ok, body) = got(&mut client);
    assert_eq!((body.as_slice(), ok.redelivered, ok.message_count), (&b"second"[..], false, 0));
    assert_eq!(counts(&mut client, "bounded"), (0, 0));
}
