//! Durable definitions across a clean restart and a crash: durable exchanges, queues and the
//! bindings between them come back; non-durable and exclusive ones, and deleted ones, do not.

use super::*;
use crate::common::process::{BrokerProcess, DataDir};

/// The names one test declares.
struct Declared {
    exchange: String,
    queue: String,
    unbound_queue: String,
    deleted_queue: String,
    transient_exchange: String,
    transient_queue: String,
    exclusive_queue: String,
}

impl Declared {
    fn new() -> Declared {
        Declared {
            exchange: unique("x-durable"),
            queue: unique("q-durable"),
            unbound_queue: unique("q-unbound"),
            deleted_queue: unique("q-deleted"),
            transient_exchange: unique("x-transient"),
            transient_queue: unique("q-transient"),
            exclusive_queue: unique("q-exclusive"),
        }
    }
}

/// Declares everything and returns the connection that owns the exclusive queue, which the
/// caller keeps open until the broker stops.
async fn declare_everything(uri: &str, names: &Declared) -> Connection {
    let (conn, ch) = connect_channel(uri).await;
    let durable_exchange = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    within(
        T,
        ch.exchange_declare(
            names.exchange.as_str().into(),
            ExchangeKind::Direct,
            durable_exchange,
            FieldTable::default(),
        ),
    )
    .await
    .expect("declare the durable exchange");
    within(
        T,
        ch.exchange_declare(
            names.transient_exchange.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("declare the transient exchange");
    for queue in [&names.queue, &names.unbound_queue, &names.deleted_queue] {
        declare_durable_queue(&ch, queue).await;
    }
    declare_queue(&ch, &names.transient_queue).await;
    let durable_exclusive = QueueDeclareOptions { durable: true, exclusive: true, ..QueueDeclareOptions::default() };
    declare_queue_with(&ch, &names.exclusive_queue, durable_exclusive).await;
    for queue in [&names.queue, &names.unbound_queue] {
        bind(&ch, queue, &names.exchange, "key").await;
    }
    within(
        T,
        ch.queue_unbind(
            names.unbound_queue.as_str().into(),
            names.exchange.as_str().into(),
            "key".into(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("queue.unbind");
    within(T, ch.queue_delete(names.deleted_queue.as_str().into(), QueueDeleteOptions::default()))
        .await
        .expect("queue.delete");
    conn
}

async fn assert_only_durable_definitions_remain(uri: &str, names: &Declared) {
    let (conn, ch) = confirm_channel(uri).await;
    let passive_exchange = ExchangeDeclareOptions { passive: true, ..ExchangeDeclareOptions::default() };
    within(
        T,
        ch.exchange_declare(
            names.exchange.as_str().into(),
            ExchangeKind::Direct,
            passive_exchange,
            FieldTable::default(),
        ),
    )
    .await
    .expect("the durable exchange is back");
    assert_eq!(message_count(&ch, &names.queue).await, 0, "the durable queue is back, empty");
    assert_eq!(message_count(&ch, &names.unbound_queue).await, 0, "the unbound durable queue is back");
    // The binding is back: a publish through the exchange reaches the bound queue only.
    let body = unique("through-the-binding");
    publish_confirmed(&ch, &names.exchange, "key", std::slice::from_ref(&body), persistent()).await;
    assert_eq!(drain_bodies(uri, &names.queue).await, vec![body], "the durable binding routes");
    assert_eq!(message_count(&ch, &names.unbound_queue).await, 0, "the removed binding stays removed");
    assert_queue_missing(&conn, &names.deleted_queue).await;
    assert_queue_missing(&conn, &names.transient_queue).await;
    assert_queue_missing(&conn, &names.exclusive_queue).await;
    assert_exchange_missing(&conn, &names.transient_exchange).await;
    close_conn(&conn).await;
}

restart_tests! {
    async fn durable_definitions_survive_sigterm_and_sigkill(shards: usize) {
        let data = DataDir::new();
        let names = Declared::new();
        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let exclusive_owner = declare_everything(broker.uri(), &names).await;
        broker.stop_cleanly();
        drop(exclusive_owner);

        let broker = BrokerProcess::start(data.path(), shards, &[]);
        assert_only_durable_definitions_remain(broker.uri(), &names).await;
        broker.kill();

        let broker = BrokerProcess::start(data.path(), shards, &[]);
        assert_only_durable_definitions_remain(broker.uri(), &names).await;
        broker.stop_cleanly();
    }

    async fn definitions_declared_just_before_a_crash_survive_it(shards: usize) {
        let data = DataDir::new();
        let names = Declared::new();
        let broker = BrokerProcess::start(data.path(), shards, &[]);
        let exclusive_owner = declare_everything(broker.uri(), &names).await;
        // Every declare was answered, so each is on disk: no clean shutdown is needed.
        broker.kill();
        drop(exclusive_owner);

        let broker = BrokerProcess::start(data.path(), shards, &[]);
        assert_only_durable_definitions_remain(broker.uri(), &names).await;
        broker.stop_cleanly();
    }
}
