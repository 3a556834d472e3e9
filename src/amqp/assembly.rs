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
            channel.content = Content::AwaitingHeader(publish);
        }
        Ok(())
    }

    /// A method frame arrived: refused while a publish's content is still due.
    pub(super) fn expect_no_content(&self, channel_id: u16) -> MethodResult {
        let channels = self.connection.channels.borrow();
        match channels.get(&channel_id).map(|channel| &channel.content) {
            None | Some(Content::Idle) => Ok(()),
            Some(Content::AwaitingHeader(_)) => Err(unexpected(HEADER_EXPECTED)),
            Some(Content::AwaitingBody { .. } | Content::Overrun) => Err(unexpected(BODY_EXPECTED)),
        }
    }

    /// A content header or body frame on an open or closing channel.
    pub(super) fn content_frame(&mut self, channel_id: u16, frame: RawFrame) -> MethodResult {
        let state = {
            let mut channels = self.connection.channels.borrow_mut();
            let Some(channel) = channels.get_mut(&channel_id) else {
                return Ok(());
            };
            std::mem::replace(&mut channel.content, Content::Idle)
        };
        match (frame.frame_type, state) {
            (_, Content::Idle) => Err(method_frame_expected()),
            (FRAME_HEADER, Content::AwaitingHeader(publish)) => {
                self.content_header(channel_id, publish, &frame.payload)
            }
            (_, Content::AwaitingHeader(_)) => Err(unexpected(HEADER_EXPECTED)),
            (FRAME_BODY, Content::AwaitingBody { publish, header, body }) => {
                self.content_body(channel_id, publish, header, body, frame.payload)
            }
            (FRAME_BODY, Content::Overrun) => {
                self.set_content(channel_id, Content::Overrun);
                Ok(())
            }
            (_, Content::AwaitingBody { .. } | Content::Overrun) => Err(unexpected(BODY_EXPECTED)),
        }
    }

    fn set_content(&self, channel_id: u16, content: Content) {
        if let Some(channel) = self.connection.channels.borrow_mut().get_mut(&channel_id) {
            channel.content = content;
        }
    }

    fn content_header(&mut self, channel_id: u16, publish: Publish, payload: &Bytes) -> MethodResult {
        let field = |range: std::ops::Range<usize>| {
            payload.get(range).map_or(0, |bytes| bytes.iter().fold(0u64, |value, byte| value << 8 | u64::from(*byte)))
        };
        let (class_id, weight) = (field(0..2), field(2..4));
        if weight != 0 {
            return Err(unexpected(HEADER_EXPECTED));
        }
        if class_id != u64::from(CLASS_BASIC) {
            return Err(unexpected(&format!(
                "expected content header for class 60, got one for class {class_id} instead"
            )));
        }
        let header = hotpath::parse_content_header(payload)
            .map_err(|error| fault(AmqpError::from_codec(error.reply_code(), error), BASIC_PUBLISH))?;
        if header.body_size == 0 {
            return self.complete_publish(channel_id, publish, header, Bytes::new());
        }
        // A body over the limit is refused once it is all in, as RabbitMQ does; meanwhile only
        // its length is kept.
        let too_large = header.body_size > self.port.max_message_size_bytes();
        let body = if too_large { BodyParts::Dropped { length: 0 } } else { BodyParts::Empty };
        self.set_content(channel_id, Content::AwaitingBody { publish, header, body });
        Ok(())
    }

    fn content_body(
        &mut self,
        channel_id: u16,
        publish: Publish,
        header: ContentHeader,
        mut body: BodyParts,
        payload: Bytes,
    ) -> MethodResult {
        let received = body.len() + payload.len() as u64;
        if received > header.body_size {
            // RabbitMQ's assembler subtracts past zero and then waits for a body that never
            // ends; the next method is its error. The bytes are not kept meanwhile.
            self.set_content(channel_id, Content::Overrun);
            return Ok(());
        }
        body.push(payload, header.body_size);
        if received < header.body_size {
            self.set_content(channel_id, Content::AwaitingBody { publish, header, body });
            return Ok(());
        }
        self.complete_publish(channel_id, publish, header, body.freeze())
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
        let message = Arc::new(Message {
            exchange: publish.exchange.clone(),
            routing_key: publish.routing_key.clone(),
            properties,
            body,
        });
        if let Err(text) = message.expiration_ms() {
            return Err(fault(AmqpError::new(PRECONDITION_FAILED, text), BASIC_PUBLISH));
        }
        let held = {
            let mut channels = self.connection.channels.borrow_mut();
            match channels.get_mut(&channel_id).and_then(|channel| channel.transaction_mut()) {
                Some(transaction) => {
                    transaction
                        .hold_publish(publish.clone(), message.clone())
                        .map_err(|error| fault(error, BASIC_PUBLISH))?;
                    true
                }
                None => false,
            }
        };
        if !held {
            self.route_and_send(channel_id, &publish, message);
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
