//! Content assembly: the header and body frames that follow basic.publish, and the checks a
//! complete publish passes before it is routed, in RabbitMQ 3.10's order.
//!
//! RabbitMQ assembles content in its reader, whatever the state of the channel, and checks
//! the message only once its last body frame is in (immediate, size, exchange, reply-to,
//! user-id, expiration). This file does the same: a closing channel still assembles (and then
//! drops) a publish, and a message over the size limit is counted, not kept, until its end.

use std::sync::Arc;

use bytes::Bytes;

use super::channel::{BodyParts, Content};
use super::dispatch::{fault, method_frame_expected, Dispatcher, MethodResult, BASIC_PUBLISH, CLASS_BASIC};
use super::port::Port;
use crate::broker::error::*;
use crate::codec::frame::{RawFrame, FRAME_BODY, FRAME_HEADER};
use crate::codec::hotpath::{self, ContentHeader, Publish};
use crate::codec::message::Message;
use crate::limits::MESSAGE_BODY_MAX_BYTES_LIMIT;

const HEADER_EXPECTED: &str = "expected content header for class 60, got non content header frame instead";
const BODY_EXPECTED: &str = "expected content body, got non content body frame instead";

impl<P: Port> Dispatcher<P> {
    /// basic.publish was decoded: its content header is due next.
    pub(super) fn start_content(&mut self, channel_id: u16, publish: Publish) -> MethodResult {
        if let Some(channel) = self.connection.channels.borrow_mut().get_mut(&channel_id) {
            channel.content = Content::Assembling { publish, header: None, body: BodyParts::Empty };
        }
        Ok(())
    }

    /// A method frame arrived: refused while a publish's content is still due.
    pub(super) fn expect_no_content(&self, channel_id: u16) -> MethodResult {
        let channels = self.connection.channels.borrow();
        match channels.get(&channel_id).map(|channel| &channel.content) {
            None | Some(Content::Idle) => Ok(()),
            Some(Content::Assembling { header: None, .. }) => Err(unexpected(HEADER_EXPECTED)),
            Some(Content::Assembling { header: Some(_), .. } | Content::Overrun) => Err(unexpected(BODY_EXPECTED)),
        }
    }

    /// A content header or body frame on an open or closing channel. The channel's content
    /// state takes it in place; a frame out of order leaves the channel without a publish in
    /// progress.
    pub(super) fn content_frame(&mut self, channel_id: u16, frame: RawFrame) -> MethodResult {
        let max_size = self.port.max_message_size_bytes();
        let (publish, header, body) = {
            let mut channels = self.connection.channels.borrow_mut();
            let Some(channel) = channels.get_mut(&channel_id) else {
                return Ok(());
            };
            match assemble(&mut channel.content, frame, max_size) {
                Ok(false) => return Ok(()),
                Ok(true) => match std::mem::replace(&mut channel.content, Content::Idle) {
                    Content::Assembling { publish, header: Some(header), body } => (publish, header, body.freeze()),
                    _ => return Err(method_frame_expected()),
                },
                Err(fault) => {
                    channel.content = Content::Idle;
                    return Err(fault);
                }
            }
        };
        self.complete_publish(channel_id, publish, header, body)
    }

    /// The last frame of a publish is in: RabbitMQ's checks, then the transaction or routing.
    /// A publish completed on a closing channel is dropped.
    fn complete_publish(
        &mut self,
        channel_id: u16,
        publish: Publish,
        header: ContentHeader,
        body: Bytes,
    ) -> MethodResult {
        let open = self.connection.channels.borrow().get(&channel_id).is_some_and(|channel| channel.is_open());
        if !open {
            return Ok(());
        }
        self.check_publish(&publish, &header).map_err(|error| fault(error, BASIC_PUBLISH))?;
        let properties =
            self.rewrite_reply_to(channel_id, header.properties).map_err(|error| fault(error, BASIC_PUBLISH))?;
        check_user_id(&self.connection.user.borrow(), &properties, || {
            let user = self.connection.user.borrow();
            self.port.snapshot().user(&user).is_some_and(|found| found.has_tag("impersonator"))
        })
        .map_err(|error| fault(error, BASIC_PUBLISH))?;
        let mandatory = publish.mandatory;
        // The names move into the message: no reference count changes on the read buffer.
        let message =
            Arc::new(Message { exchange: publish.exchange, routing_key: publish.routing_key, properties, body });
        if let Err(text) = message.expiration_ms() {
            return Err(fault(AmqpError::new(PRECONDITION_FAILED, text), BASIC_PUBLISH));
        }
        let held = {
            let mut channels = self.connection.channels.borrow_mut();
            match channels.get_mut(&channel_id).and_then(|channel| channel.transaction_mut()) {
                Some(transaction) => {
                    transaction
                        .hold_publish(mandatory, message.clone())
                        .map_err(|error| fault(error, BASIC_PUBLISH))?;
                    true
                }
                None => false,
            }
        };
        if !held {
            self.route_and_send(channel_id, mandatory, message);
        }
        Ok(())
    }

    /// immediate, the size limit, then the exchange: RabbitMQ's order.
    fn check_publish(&mut self, publish: &Publish, header: &ContentHeader) -> Result<(), AmqpError> {
        if publish.immediate {
            return Err(AmqpError::new(NOT_IMPLEMENTED, "immediate=true"));
        }
        if let Some(error) = too_large(header.body_size, self.port.max_message_size_bytes()) {
            return Err(error);
        }
        // Checked under this definitions version already: permission, existence, not internal.
        if self.route_cache.exchange_ok(self.port.snapshot_version(), &publish.exchange) {
            return Ok(());
        }
        let snapshot = self.port.snapshot();
        super::access::publish(&self.connection, &snapshot, &publish.exchange)?;
        let exchange = String::from_utf8_lossy(&publish.exchange);
        let vhost_name = self.connection.vhost.borrow().clone();
        let found = snapshot.vhost(&vhost_name).and_then(|vhost| vhost.exchanges.get(exchange.as_ref()).cloned());
        match found {
            None => Err(AmqpError::not_found("exchange", &exchange, &vhost_name)),
            Some(found) if found.internal => Err(AmqpError::new(
                ACCESS_REFUSED,
                format!("cannot publish to internal exchange '{exchange}' in vhost '{vhost_name}'"),
            )),
            Some(_) => {
                self.route_cache.note_exchange_ok(snapshot.version, &publish.exchange);
                Ok(())
            }
        }
    }
}

/// RabbitMQ's refusal of a body over `--max-message-size`, in its words: "configured" unless
/// the limit is RabbitMQ's ceiling of 512 MiB.
fn too_large(body_size: u64, max_size: u64) -> Option<AmqpError> {
    if body_size <= max_size {
        return None;
    }
    let configured = if max_size == MESSAGE_BODY_MAX_BYTES_LIMIT { "" } else { "configured " };
    let text = format!("message size {body_size} is larger than {configured}max size {max_size}");
    Some(AmqpError::new(PRECONDITION_FAILED, text))
}

/// Takes a content frame into `content`: true when it completed the publish (header and whole
/// body in), false when more frames are due or the body overran (RabbitMQ then waits for the
/// next method, its error). Err for a frame out of order or a bad header; the caller then
/// leaves the channel idle.
fn assemble(content: &mut Content, frame: RawFrame, max_size: u64) -> Result<bool, super::dispatch::Fault> {
    match content {
        Content::Idle => Err(method_frame_expected()),
        Content::Overrun if frame.frame_type == FRAME_BODY => Ok(false),
        Content::Overrun => Err(unexpected(BODY_EXPECTED)),
        Content::Assembling { header: header @ None, body, .. } => {
            if frame.frame_type != FRAME_HEADER {
                return Err(unexpected(HEADER_EXPECTED));
            }
            let parsed = content_header(frame.payload)?;
            // A body over the limit is refused once it is all in, as RabbitMQ does; meanwhile
            // only its length is kept.
            if parsed.body_size > max_size {
                *body = BodyParts::Dropped { length: 0 };
            }
            let complete = parsed.body_size == 0;
            *header = Some(parsed);
            Ok(complete)
        }
        Content::Assembling { header: Some(header), body, .. } => {
            if frame.frame_type != FRAME_BODY {
                return Err(unexpected(BODY_EXPECTED));
            }
            let body_size = header.body_size;
            let received = body.len() + frame.payload.len() as u64;
            if received > body_size {
                // RabbitMQ's assembler subtracts past zero and then waits for a body that never
                // ends; the next method is its error. The bytes are not kept meanwhile.
                *content = Content::Overrun;
                return Ok(false);
            }
            body.push(frame.payload, body_size);
            Ok(received == body_size)
        }
    }
}

/// A content header frame's payload: class basic, weight 0, a property list that parses.
fn content_header(payload: Bytes) -> Result<ContentHeader, super::dispatch::Fault> {
    let field = |range: std::ops::Range<usize>| {
        payload.get(range).map_or(0, |bytes| bytes.iter().fold(0u64, |value, byte| value << 8 | u64::from(*byte)))
    };
    let (class_id, weight) = (field(0..2), field(2..4));
    if weight != 0 {
        return Err(unexpected(HEADER_EXPECTED));
    }
    if class_id != u64::from(CLASS_BASIC) {
        return Err(unexpected(&format!("expected content header for class 60, got one for class {class_id} instead")));
    }
    hotpath::take_content_header(payload)
        .map_err(|error| fault(AmqpError::from_codec(error.reply_code(), error), BASIC_PUBLISH))
}

fn unexpected(text: &str) -> super::dispatch::Fault {
    fault(AmqpError::new(UNEXPECTED_FRAME, text), BASIC_PUBLISH)
}

/// RabbitMQ refuses a user-id property that differs from the authenticated user, unless the
/// user has the `impersonator` tag. Checked only when the property is present, so the hot
/// path pays one flag test.
fn check_user_id(user: &str, properties: &[u8], impersonator: impl FnOnce() -> bool) -> Result<(), AmqpError> {
    const USER_ID_FLAG: u16 = 1 << 4;
    let flags = match properties {
        [high, low, ..] => u16::from_be_bytes([*high, *low]),
        _ => return Ok(()),
    };
    if flags & USER_ID_FLAG == 0 {
        return Ok(());
    }
    let parsed =
        hotpath::parse_properties(properties).map_err(|error| AmqpError::from_codec(error.reply_code(), error))?;
    match parsed.user_id() {
        Some(user_id) if user_id.as_str() != user && !impersonator() => Err(AmqpError::new(
            PRECONDITION_FAILED,
            format!("user_id property set to '{user_id}' but authenticated user was '{user}'"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_refusal_says_configured_unless_the_limit_is_rabbitmqs_ceiling() {
        assert!(too_large(1000, 1000).is_none());
        let error = too_large(1001, 1000).expect("over the limit");
        assert_eq!(
            (error.reply_code, error.reply_text.as_str()),
            (406, "PRECONDITION_FAILED - message size 1001 is larger than configured max size 1000")
        );
        let ceiling = MESSAGE_BODY_MAX_BYTES_LIMIT;
        let error = too_large(ceiling + 1, ceiling).expect("over the ceiling");
        assert_eq!(error.reply_text, "PRECONDITION_FAILED - message size 536870913 is larger than max size 536870912");
    }
}
