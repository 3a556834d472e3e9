//! Request/reply between shards: a connection task sends a request and awaits the answer that
//! the mailbox loop later hands back by request number.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::Shard;
use crate::broker::error::AmqpError;
use crate::broker::messages::{ReplyTo, ShardMsg};
use crate::broker::requests::ReplyBody;

use crate::amqp::port::ReplyHook;

#[derive(Default)]
pub struct PendingReply {
    result: RefCell<Option<Result<ReplyBody, AmqpError>>>,
    waker: RefCell<Option<Waker>>,
    /// Runs in the mailbox loop the moment the reply arrives, before any later message is
    /// handled: basic.consume-ok is written there so it precedes the first delivery.
    hook: RefCell<Option<ReplyHook>>,
    /// Takes the answer instead of a waiting task (`request_then`).
    forward: RefCell<Option<Forward>>,
}

/// Where the answer of a request nobody awaits goes: the operator's requests (control socket,
/// management API) are answered on another thread's channel.
pub type Forward = Box<dyn FnOnce(Result<ReplyBody, AmqpError>)>;

struct AwaitReply(Rc<PendingReply>);

impl Future for AwaitReply {
    type Output = Result<ReplyBody, AmqpError>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(result) = self.0.result.borrow_mut().take() {
            return Poll::Ready(result);
        }
        *self.0.waker.borrow_mut() = Some(context.waker().clone());
        Poll::Pending
    }
}

impl Shard {
    pub async fn request_with_hook(
        &self,
        to: usize,
        make: impl FnOnce(ReplyTo) -> ShardMsg,
        hook: Option<ReplyHook>,
    ) -> Result<ReplyBody, AmqpError> {
        let request_id = self.next_request.get();
        self.next_request.set(request_id + 1);
        let slot = Rc::new(PendingReply::default());
        *slot.hook.borrow_mut() = hook;
        self.pending.borrow_mut().insert(request_id, slot.clone());
        self.send(to, make(ReplyTo { shard: self.id, request_id }));
        AwaitReply(slot).await
    }

    /// Sends a request like `request_with_hook` without a task to wait: `forward` gets the
    /// answer in the mailbox loop the moment it arrives.
    pub(super) fn request_then(&self, to: usize, make: impl FnOnce(ReplyTo) -> ShardMsg, forward: Forward) {
        let request_id = self.next_request.get();
        self.next_request.set(request_id + 1);
        let slot = Rc::new(PendingReply::default());
        *slot.forward.borrow_mut() = Some(forward);
        self.pending.borrow_mut().insert(request_id, slot);
        self.send(to, make(ReplyTo { shard: self.id, request_id }));
    }

    pub(super) fn complete_request(&self, request_id: u64, result: Result<ReplyBody, AmqpError>) {
        let slot = self.pending.borrow_mut().remove(&request_id);
        if let Some(slot) = slot {
            let hook = slot.hook.borrow_mut().take();
            if let Some(hook) = hook {
                hook(&result);
            }
            let forward = slot.forward.borrow_mut().take();
            if let Some(forward) = forward {
                forward(result);
                return;
            }
            *slot.result.borrow_mut() = Some(result);
            if let Some(waker) = slot.waker.borrow_mut().take() {
                waker.wake();
            }
        }
    }

    /// Answers a request, stamped with this shard's definitions version.
    pub fn reply(&self, reply: ReplyTo, result: Result<ReplyBody, AmqpError>) {
        let version = self.version();
        self.send(reply.shard, ShardMsg::Reply { reply, version, result });
    }
}
