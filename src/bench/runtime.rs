//! Client threads: one OS thread and one monoio runtime each, with connections spread over
//! them round-robin, so the load generator uses every core the way the broker does.
//!
//! A thread first connects all its clients (handshake, channel, qos, consume, confirm.select),
//! then meets the other threads and the watcher at a barrier, so no publisher starts before
//! every consumer is subscribed. A setup failure still reaches the barrier (nobody waits
//! forever) and is reported through `Shared::fail`.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::Duration;

use super::client::Client;
use super::consumer::{self, ConsumerPlan};
use super::error::BenchError;
use super::publisher::{self, PublisherPlan};
use super::throughput::Shared;
use super::uri::Uri;

/// How often a client thread checks whether the run was stopped.
const STOP_CHECK: Duration = Duration::from_millis(20);
/// Time given to final acks to reach the socket once every client of a thread is done.
const FINAL_FLUSH: Duration = Duration::from_millis(100);

/// One connection of the throughput scenario, numbered within its kind.
pub enum Role {
    Publisher(usize, Arc<PublisherPlan>),
    Consumer(usize, Arc<ConsumerPlan>),
}

/// Runs `future` to completion on a fresh runtime of the calling thread.
pub fn block_on<T>(future: impl Future<Output = Result<T, BenchError>>) -> Result<T, BenchError> {
    let mut runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .map_err(|error| BenchError::Runtime(error.to_string()))?;
    runtime.block_on(future)
}

/// Deals `items` round-robin into at most `threads` non-empty groups.
pub fn spread<T>(items: Vec<T>, threads: usize) -> Vec<Vec<T>> {
    let groups = threads.clamp(1, items.len().max(1));
    let mut spread: Vec<Vec<T>> = (0..groups).map(|_| Vec::new()).collect();
    for (index, item) in items.into_iter().enumerate() {
        spread[index % groups].push(item);
    }
    spread
}

pub fn start_threads(
    threads: Vec<Vec<Role>>,
    uri: &Uri,
    shared: &Arc<Shared>,
    barrier: &Arc<Barrier>,
) -> Result<Vec<JoinHandle<()>>, BenchError> {
    let mut handles = Vec::with_capacity(threads.len());
    for (number, roles) in threads.into_iter().enumerate() {
        let (uri, shared, barrier) = (uri.clone(), shared.clone(), barrier.clone());
        let handle = std::thread::Builder::new()
            .name(format!("bench-{number}"))
            .spawn(move || client_thread(roles, uri, shared, barrier))
            .map_err(|error| BenchError::Runtime(error.to_string()))?;
        handles.push(handle);
    }
    Ok(handles)
}

fn client_thread(roles: Vec<Role>, uri: Uri, shared: Arc<Shared>, barrier: Arc<Barrier>) {
    let built = monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build();
    let mut runtime = match built {
        Ok(runtime) => runtime,
        Err(error) => {
            shared.fail(BenchError::Runtime(error.to_string()));
            barrier.wait();
            return;
        }
    };
    let clients = match runtime.block_on(connect_all(roles, &uri)) {
        Ok(clients) => clients,
        Err(error) => {
            shared.fail(error);
            Vec::new()
        }
    };
    barrier.wait();
    if !shared.stopping() {
        runtime.block_on(run_all(clients, shared));
    }
}

async fn connect_all(roles: Vec<Role>, uri: &Uri) -> Result<Vec<(Client, Role)>, BenchError> {
    let mut clients = Vec::with_capacity(roles.len());
    for role in roles {
        let name = match &role {
            Role::Publisher(index, _) => format!("spatemq bench publisher {index}"),
            Role::Consumer(index, _) => format!("spatemq bench consumer {index}"),
        };
        let mut client = Client::connect(uri, &name).await?;
        client.open_channel().await?;
        match &role {
            Role::Publisher(_, plan) if plan.confirm > 0 => client.confirm_select().await?,
            Role::Publisher(..) => {}
            Role::Consumer(_, plan) => consumer::setup(&mut client, plan).await?,
        }
        clients.push((client, role));
    }
    Ok(clients)
}

async fn run_all(clients: Vec<(Client, Role)>, shared: Arc<Shared>) {
    let running = Rc::new(Cell::new(clients.len()));
    for (client, role) in clients {
        let (shared, running) = (shared.clone(), running.clone());
        monoio::spawn(async move {
            let result = match role {
                Role::Publisher(_, plan) => publisher::run(client, plan, shared.clone()).await,
                Role::Consumer(_, plan) => consumer::run(client, plan, shared.clone()).await,
            };
            if let Err(error) = result {
                if !shared.stopping() {
                    shared.fail(error);
                }
            }
            running.set(running.get() - 1);
        });
    }
    while running.get() > 0 && !shared.stopping() {
        monoio::time::sleep(STOP_CHECK).await;
    }
    if !shared.stopping() {
        monoio::time::sleep(FINAL_FLUSH).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_deals_round_robin_without_empty_threads() {
        assert_eq!(spread(vec![1, 2, 3, 4, 5], 2), vec![vec![1, 3, 5], vec![2, 4]]);
        assert_eq!(spread(vec![1, 2], 8), vec![vec![1], vec![2]]);
        assert_eq!(spread(Vec::<u8>::new(), 4), vec![Vec::<u8>::new()]);
        assert_eq!(spread(vec![1], 0), vec![vec![1]]);
    }
}
