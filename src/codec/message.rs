//! A published message as the broker keeps it: shared, immutable, never copied per queue.
//!
//! The properties stay in their wire encoding so a delivery forwards them byte for byte; the
//! few fields the broker needs are read from them on demand.

use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::Bytes;

use crate::codec::hotpath::{self, CodecError};

#[derive(Debug)]
pub struct Message {
    pub exchange: Bytes,
    pub routing_key: Bytes,
    /// Property flags and property list exactly as received in the content header.
    pub properties: Bytes,
    pub body: Bytes,
}

impl Message {
    pub fn persistent(&self) -> bool {
        hotpath::delivery_mode(&self.properties) == Some(2)
    }

    pub fn body_bytes(&self) -> usize {
        self.body.len()
    }

    /// The `expiration` property in milliseconds. Checks one flag bit first, so a message
    /// without one is never parsed. Err(text) for a value RabbitMQ refuses.
    pub fn expiration_ms(&self) -> Result<Option<u64>, String> {
        const EXPIRATION_FLAG: u16 = 1 << 8;
        let flags = match &self.properties[..] {
            [high, low, ..] => u16::from_be_bytes([*high, *low]),
            _ => return Ok(None),
        };
        if flags & EXPIRATION_FLAG == 0 {
            return Ok(None);
        }
        let properties = hotpath::parse_properties(&self.properties).map_err(|error| error.to_string())?;
        let Some(expiration) = properties.expiration() else {
            return Ok(None);
        };
        let text = expiration.as_str();
        parse_expiration(text).map(Some).map_err(|reason| format!("invalid expiration '{text}': {reason}"))
    }

    /// The `headers` property. Checks its flag bit first, so a message without headers is never
    /// parsed; None without headers or when the properties do not parse.
    pub fn headers(&self) -> Option<FieldTable> {
        let flags = match &self.properties[..] {
            [high, low, ..] => u16::from_be_bytes([*high, *low]),
            _ => return None,
        };
        if flags & hotpath::PROP_HEADERS == 0 {
            return None;
        }
        hotpath::parse_properties(&self.properties).ok()?.headers().clone()
    }

    /// A copy whose headers carry `x-delivery-count` = `count` (replacing one the publisher
    /// may have set), for one delivery of a returned message: only the properties are
    /// re-encoded, the body is shared.
    pub fn with_delivery_count(&self, count: u32) -> Result<Message, CodecError> {
        let properties = hotpath::parse_properties(&self.properties)?;
        let mut headers = properties.headers().clone().unwrap_or_default();
        headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(i64::from(count)));
        let properties = hotpath::encode_properties(&properties.with_headers(headers))?;
        Ok(Message {
            exchange: self.exchange.clone(),
            routing_key: self.routing_key.clone(),
            properties: Bytes::from(properties),
            body: self.body.clone(),
        })
    }
}

/// The longest per-message TTL RabbitMQ accepts: ten years, in milliseconds.
const EXPIRATION_MAX_MS: u64 = 315_360_000_000;

/// A per-message `expiration` property: milliseconds as a decimal string, read as Erlang's
/// `string:to_integer` reads it, with RabbitMQ's reasons (as `~p` prints them) for a value it
/// refuses.
pub fn parse_expiration(expiration: &str) -> Result<u64, String> {
    let (negative, unsigned) = match expiration.as_bytes().first() {
        Some(b'-') => (true, &expiration[1..]),
        Some(b'+') => (false, &expiration[1..]),
        _ => (false, expiration),
    };
    let digits_end = unsigned.bytes().position(|byte| !byte.is_ascii_digit()).unwrap_or(unsigned.len());
    if digits_end == 0 {
        return Err("no_integer".into());
    }
    let (digits, leftover) = unsigned.split_at(digits_end);
    if !leftover.is_empty() {
        return Err(format!("{{leftover_string,{}}}", erlang_string(leftover)));
    }
    let significant = digits.trim_start_matches('0');
    let shown = if significant.is_empty() { "0" } else { significant };
    let value = shown.parse::<u64>().ok().filter(|value| *value <= EXPIRATION_MAX_MS);
    match (negative && !significant.is_empty(), value) {
        (true, _) => Err(format!("{{value_negative,-{shown}}}")),
        (false, Some(value)) => Ok(value),
        (false, None) => Err(format!("{{value_too_large,{shown}}}")),
    }
}

/// `properties` (flags and list, as received) with a header `key` = `value` (a long-long, type
/// `l`) added to their headers table, every other byte as it was: the cheap path for a header
/// the broker adds to every delivery (a stream's `x-stream-offset`). None when the table may
/// already name `key` (its name appears in it), when the flags continue past one word, or when
/// the properties are cut short: the caller then parses and re-encodes them.
pub fn with_long_header(properties: &[u8], key: &[u8], value: i64) -> Option<Vec<u8>> {
    const CONTENT_TYPE: u16 = 1 << 15;
    const CONTENT_ENCODING: u16 = 1 << 14;
    const CONTINUATION: u16 = 1;
    let key_length = u8::try_from(key.len()).ok()?;
    let flags = match properties {
        [] => 0,
        [high, low, ..] => u16::from_be_bytes([*high, *low]),
        [_] => return None,
    };
    if flags & CONTINUATION != 0 {
        return None;
    }
    // The headers table follows content-type and content-encoding, two short strings.
    let mut table_at = 2;
    for bit in [CONTENT_TYPE, CONTENT_ENCODING] {
        if flags & bit != 0 {
            table_at += 1 + usize::from(*properties.get(table_at)?);
        }
    }
    if table_at > properties.len().max(2) {
        return None;
    }
    let mut entry = Vec::with_capacity(1 + key.len() + 9);
    entry.push(key_length);
    entry.extend_from_slice(key);
    entry.push(b'l');
    entry.extend_from_slice(&value.to_be_bytes());
    let mut out = Vec::with_capacity(properties.len().max(2) + 4 + entry.len());
    if flags & hotpath::PROP_HEADERS == 0 {
        out.extend_from_slice(&(flags | hotpath::PROP_HEADERS).to_be_bytes());
        out.extend_from_slice(properties.get(2..table_at).unwrap_or_default());
        out.extend_from_slice(&u32::try_from(entry.len()).ok()?.to_be_bytes());
        out.extend_from_slice(&entry);
        out.extend_from_slice(properties.get(table_at..).unwrap_or_default());
        return Some(out);
    }
    let length_bytes = properties.get(table_at..table_at + 4)?;
    let table_length = u32::from_be_bytes(length_bytes.try_into().ok()?) as usize;
    let table = properties.get(table_at + 4..table_at + 4 + table_length)?;
    if table.windows(key.len() + 1).any(|window| window[0] == key_length && &window[1..] == key) {
        return None;
    }
    out.extend_from_slice(&properties[..table_at]);
    out.extend_from_slice(&u32::try_from(table_length + entry.len()).ok()?.to_be_bytes());
    out.extend_from_slice(table);
    out.extend_from_slice(&entry);
    out.extend_from_slice(&properties[table_at + 4 + table_length..]);
    Some(out)
}

/// A string as Erlang's `~p` prints it: quoted when printable, else its character codes.
fn erlang_string(text: &str) -> String {
    if text.chars().all(|character| (' '..='~').contains(&character)) {
        let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
        return format!("\"{escaped}\"");
    }
    let codes: Vec<String> = text.chars().map(|character| u32::from(character).to_string()).collect();
    format!("[{}]", codes.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::BasicProperties;
    use amq_protocol::types::FieldTable;

    #[test]
    fn expirations_are_read_as_rabbitmq_reads_them() {
        assert_eq!(parse_expiration("60000"), Ok(60_000));
        assert_eq!(parse_expiration("+5"), Ok(5));
        assert_eq!(parse_expiration("-0"), Ok(0));
        assert_eq!(parse_expiration("-1"), Err("{value_negative,-1}".into()));
        assert_eq!(parse_expiration("soon"), Err("no_integer".into()));
        assert_eq!(parse_expiration(""), Err("no_integer".into()));
        assert_eq!(parse_expiration("10s"), Err("{leftover_string,\"s\"}".into()));
        assert_eq!(parse_expiration("315360000000"), Ok(315_360_000_000));
        assert_eq!(parse_expiration("315360000001"), Err("{value_too_large,315360000001}".into()));
        assert_eq!(
            parse_expiration("99999999999999999999999"),
            Err("{value_too_large,99999999999999999999999}".into())
        );
    }

    #[test]
    fn a_long_header_is_spliced_into_the_table_and_everything_else_kept() {
        let read = |properties: &[u8]| hotpath::parse_properties(properties).expect("parses");
        let offset_of = |properties: &BasicProperties| {
            properties.headers().as_ref().and_then(|headers| headers.inner().get("x-stream-offset").cloned())
        };
        // No properties at all.
        let spliced = with_long_header(&[], b"x-stream-offset", 42).expect("splices");
        assert_eq!(offset_of(&read(&spliced)), Some(AMQPValue::LongLongInt(42)));
        // Properties before and after the table, and a table of its own.
        let mut headers = FieldTable::default();
        headers.insert("app".into(), AMQPValue::LongInt(7));
        let rich = BasicProperties::default()
            .with_content_type("text/plain".into())
            .with_content_encoding("gzip".into())
            .with_headers(headers)
            .with_delivery_mode(2)
            .with_correlation_id("c-1".into());
        let spliced = with_long_header(&hotpath::encode_properties(&rich).expect("encode"), b"x-stream-offset", -3)
            .expect("splices");
        let parsed = read(&spliced);
        assert_eq!(offset_of(&parsed), Some(AMQPValue::LongLongInt(-3)));
        let headers = parsed.headers().clone().expect("headers");
        assert_eq!(headers.inner().get("app"), Some(&AMQPValue::LongInt(7)));
        assert_eq!(parsed.content_type().as_ref().map(|text| text.as_str()), Some("text/plain"));
        assert_eq!(parsed.content_encoding().as_ref().map(|text| text.as_str()), Some("gzip"));
        assert_eq!(
            (parsed.delivery_mode(), parsed.correlation_id().as_ref().map(|text| text.as_str())),
            (&Some(2), Some("c-1"))
        );
        // Without a table: content-type before, delivery mode after.
        let plain = BasicProperties::default().with_content_type("a/b".into()).with_delivery_mode(1);
        let spliced = with_long_header(&hotpath::encode_properties(&plain).expect("encode"), b"x-stream-offset", 9)
            .expect("splices");
        let parsed = read(&spliced);
        assert_eq!(offset_of(&parsed), Some(AMQPValue::LongLongInt(9)));
        assert_eq!(
            (parsed.delivery_mode(), parsed.content_type().as_ref().map(|text| text.as_str())),
            (&Some(1), Some("a/b"))
        );
        // A table that already names the key is left to the slow path, as are cut-short bytes.
        let mut named = FieldTable::default();
        named.insert("x-stream-offset".into(), AMQPValue::LongInt(1));
        let named = hotpath::encode_properties(&BasicProperties::default().with_headers(named)).expect("encode");
        assert_eq!(with_long_header(&named, b"x-stream-offset", 5), None);
        assert_eq!(with_long_header(&named[..named.len() - 1], b"x-stream-offset", 5), None);
        assert_eq!(with_long_header(&[0x80], b"x-stream-offset", 5), None);
    }

    #[test]
    fn delivery_count_replaces_the_header_and_keeps_the_rest() {
        let mut headers = FieldTable::default();
        headers.insert("app".into(), AMQPValue::LongInt(7));
        headers.insert("x-delivery-count".into(), AMQPValue::LongInt(99));
        let properties = BasicProperties::default().with_headers(headers).with_delivery_mode(2);
        let original = Message {
            exchange: Bytes::from_static(b"ex"),
            routing_key: Bytes::from_static(b"rk"),
            properties: Bytes::from(hotpath::encode_properties(&properties).expect("encode")),
            body: Bytes::from_static(b"body"),
        };
        let counted = original.with_delivery_count(3).expect("re-encode");
        let parsed = hotpath::parse_properties(&counted.properties).expect("parse");
        let headers = parsed.headers().clone().expect("headers");
        assert_eq!(headers.inner().get("x-delivery-count"), Some(&AMQPValue::LongLongInt(3)));
        assert_eq!(headers.inner().get("app"), Some(&AMQPValue::LongInt(7)));
        assert_eq!(parsed.delivery_mode(), &Some(2));
        assert_eq!(counted.body.as_ptr(), original.body.as_ptr(), "the body is shared, not copied");
    }
}
