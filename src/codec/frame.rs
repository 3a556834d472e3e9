//! AMQP 0-9-1 framing: splitting the inbound byte stream into raw frames and
//! writing frames to an outbound buffer.
//!
//! This module owns the 7-byte frame header, the frame-end octet and the
//! frame_max checks, plus the bounds-checked `Reader` and field-table walker
//! the payload codecs share. It must not interpret methods, content headers
//! or bodies: that belongs to the sibling codec modules. It never copies
//! payload bytes on the inbound side and never panics on network input.

use std::fmt;

use std::ops::Range;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::hotpath::CodecError;

pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;
/// Smallest frame_max a peer may negotiate; also the limit in force before
/// connection.tune-ok has been received.
pub const FRAME_MIN_SIZE: u32 = 4096;
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// Frame type (1) + channel (2) + payload size (4).
pub const FRAME_HEADER_LEN: usize = 7;
/// Header plus the trailing frame-end octet: what frame_max counts on top of
/// the payload.
pub const FRAME_OVERHEAD: u32 = 8;
/// Upper bound applied when frame_max is 0 ("no limit"), so a hostile size
/// field cannot make us buffer gigabytes for a single frame. Outbound bodies
/// are chunked to the same bound so our own peers always accept our frames.
pub const FRAME_MAX_HARD_CAP: u32 = 128 * 1024 * 1024;

/// One complete frame; `payload` excludes the header and the frame-end octet
/// and shares the receive buffer's allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFrame {
    pub frame_type: u8,
    pub channel: u16,
    pub payload: Bytes,
}

/// Framing violations. All of them are connection errors (the stream can no
/// longer be trusted to be frame-aligned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// `size` is the payload size field of a frame of `frame_type`; `frame_max`
    /// the limit it broke (0 when none was negotiated and the hard cap applied).
    TooLarge { frame_type: u8, size: u32, frame_max: u32 },
    /// The octet after the payload, `found`, is not frame-end. `frame` is the
    /// frame as RabbitMQ's text shows it (`describe`: its type and its payload,
    /// or the first 16 octets of a longer one).
    BadFrameEnd { frame: String, found: u8 },
}

impl FrameError {
    /// AMQP reply code for connection.close.
    pub fn reply_code(&self) -> u16 {
        match self {
            FrameError::TooLarge { .. } | FrameError::BadFrameEnd { .. } => 501,
        }
    }
}

/// RabbitMQ's texts: the frame (`describe`; an oversized one is refused before its payload is
/// read, so it shows none) and the Erlang term of the error, whose limit is frame_max less the
/// 8 octets of frame overhead. Without a negotiated frame_max the hard cap stands in for it
/// (RabbitMQ has no limit there).
impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { frame_type, size, frame_max } => {
                let limit = frame_limit(*frame_max).saturating_sub(FRAME_OVERHEAD);
                let frame = describe(*frame_type, &[]);
                write!(f, "FRAME_ERROR - {frame}: {{frame_too_large,{size},{limit}}}")
            }
            FrameError::BadFrameEnd { frame, found } => {
                write!(f, "FRAME_ERROR - {frame}: {{invalid_frame_end_marker,{found}}}")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Largest whole frame (header + payload + end) allowed under `frame_max`,
/// for the frames we write.
fn frame_limit(frame_max: u32) -> u32 {
    if frame_max == 0 {
        FRAME_MAX_HARD_CAP
    } else {
        frame_max.min(FRAME_MAX_HARD_CAP)
    }
}

/// Largest payload an outbound frame may carry under `frame_max`. A
/// frame_max below the spec minimum is raised to it, so that body chunking
/// always makes progress.
pub fn max_payload_len(frame_max: u32) -> usize {
    let frame_max = if frame_max == 0 { 0 } else { frame_max.max(FRAME_MIN_SIZE) };
    (frame_limit(frame_max) - FRAME_OVERHEAD) as usize
}

/// Largest payload an inbound frame may carry under `frame_max`. RabbitMQ lets a
/// payload reach frame_max itself, 8 octets over what frame_max allows, because
/// many clients leave out the frame overhead; so do we. The hard cap applies
/// as for outbound frames.
fn inbound_payload_max(frame_max: u32) -> u32 {
    if frame_max == 0 {
        FRAME_MAX_HARD_CAP - FRAME_OVERHEAD
    } else {
        frame_max.min(FRAME_MAX_HARD_CAP - FRAME_OVERHEAD)
    }
}

/// Splits one frame off the front of `buffer`, whatever its type: as RabbitMQ, a frame of an
/// unknown type is read whole and refused afterwards (see `is_well_formed`).
///
/// Returns `Ok(None)` until a whole frame is buffered. The size field is
/// checked as soon as the header is complete, so an oversized frame is
/// rejected before any of its payload is buffered.
pub fn split_frame(buffer: &mut BytesMut, frame_max: u32) -> Result<Option<RawFrame>, FrameError> {
    let [frame_type, c0, c1, s0, s1, s2, s3, ..] = buffer[..] else {
        return Ok(None);
    };
    let size = u32::from_be_bytes([s0, s1, s2, s3]);
    if size > inbound_payload_max(frame_max) {
        return Err(FrameError::TooLarge { frame_type, size, frame_max });
    }
    let end_offset = FRAME_HEADER_LEN + size as usize;
    let Some(&found) = buffer.get(end_offset) else {
        return Ok(None);
    };
    if found != FRAME_END {
        let frame = describe(frame_type, &buffer[FRAME_HEADER_LEN..end_offset]);
        return Err(FrameError::BadFrameEnd { frame, found });
    }
    // One split per frame: the header and the frame-end octet are stepped over, not split off,
    // so the read buffer's shared count changes once per frame (it is an atomic).
    buffer.advance(FRAME_HEADER_LEN);
    let payload = buffer.split_to(size as usize).freeze();
    buffer.advance(1);
    Ok(Some(RawFrame { frame_type, channel: u16::from_be_bytes([c0, c1]), payload }))
}

/// Whether RabbitMQ's command assembler can analyze the frame: a known type with a payload
/// long enough for its fixed fields (a heartbeat has none). Any other frame is its
/// `unknown_frame` (501).
pub fn is_well_formed(frame_type: u8, payload: &[u8]) -> bool {
    match frame_type {
        FRAME_METHOD => payload.len() >= 4,
        FRAME_HEADER => payload.len() >= 12,
        FRAME_BODY => true,
        FRAME_HEARTBEAT => payload.is_empty(),
        _ => false,
    }
}

/// A frame as RabbitMQ's error texts describe it: `type 3, all octets = <<"hello">>`, or the
/// `first 16 octets` of a longer payload.
pub fn describe(frame_type: u8, payload: &[u8]) -> String {
    let (label, shown) = match payload.get(..16) {
        Some(first) if payload.len() > 16 => ("first 16", first),
        _ => ("all", payload),
    };
    format!("type {frame_type}, {label} octets = {}", erlang_binary(shown))
}

/// A binary as Erlang's `~p` prints it: `<<"text">>` when every byte is printable Latin-1,
/// else `<<1,2,3>>`.
pub fn erlang_binary(bytes: &[u8]) -> String {
    let printable = |byte: u8| matches!(byte, 32..=126 | 160..=255 | 8..=13 | 27);
    if bytes.is_empty() || !bytes.iter().all(|byte| printable(*byte)) {
        return erlang_bytes(bytes);
    }
    let mut text = String::from("<<\"");
    for &byte in bytes {
        match byte {
            b'"' => text.push_str("\\\""),
            b'\\' => text.push_str("\\\\"),
            b'\n' => text.push_str("\\n"),
            b'\r' => text.push_str("\\r"),
            b'\t' => text.push_str("\\t"),
            11 => text.push_str("\\v"),
            8 => text.push_str("\\b"),
            12 => text.push_str("\\f"),
            27 => text.push_str("\\e"),
            other => text.push(char::from(other)),
        }
    }
    text.push_str("\">>");
    text
}

/// A binary as Erlang's `~w` prints it: always the byte values, `<<0,0,0,1>>`.
pub fn erlang_bytes(bytes: &[u8]) -> String {
    let values: Vec<String> = bytes.iter().map(|byte| byte.to_string()).collect();
    format!("<<{}>>", values.join(","))
}

pub fn write_heartbeat(out: &mut BytesMut) {
    out.put_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

/// Writes a complete frame. Fails only if the payload cannot be described by
/// the 32-bit size field (or the hard cap), in which case nothing is written.
pub fn write_frame(out: &mut BytesMut, frame_type: u8, channel: u16, payload: &[u8]) -> Result<(), FrameError> {
    let size = checked_size(frame_type, payload.len())?;
    out.reserve(payload.len() + FRAME_OVERHEAD as usize);
    out.put_u8(frame_type);
    out.put_u16(channel);
    out.put_u32(size);
    out.put_slice(payload);
    out.put_u8(FRAME_END);
    Ok(())
}

/// Writes a frame whose payload is produced in place by `fill`, so encoders
/// need no temporary buffer: the header is reserved first and its size field
/// patched once the payload length is known. On any error the output is
/// truncated back to where it was, leaving no partial frame behind.
pub fn write_frame_with<E: From<FrameError>>(
    out: &mut BytesMut,
    frame_type: u8,
    channel: u16,
    fill: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Result<(), E> {
    let start = out.len();
    out.put_u8(frame_type);
    out.put_u16(channel);
    out.put_u32(0);
    let result = fill(out).and_then(|()| {
        let payload_len = out.len() - start - FRAME_HEADER_LEN;
        let size = checked_size(frame_type, payload_len)?;
        if let Some(slot) = out.get_mut(start + 3..start + FRAME_HEADER_LEN) {
            slot.copy_from_slice(&size.to_be_bytes());
        }
        out.put_u8(FRAME_END);
        Ok(())
    });
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn checked_size(frame_type: u8, payload_len: usize) -> Result<u32, FrameError> {
    match u32::try_from(payload_len) {
        Ok(size) if size <= FRAME_MAX_HARD_CAP - FRAME_OVERHEAD => Ok(size),
        _ => {
            let size = u32::try_from(payload_len).unwrap_or(u32::MAX);
            Err(FrameError::TooLarge { frame_type, size, frame_max: 0 })
        }
    }
}

/// Deepest table/array nesting accepted. amq-protocol parses nested values
/// recursively, so an unbounded depth lets a few kilobytes of input overflow
/// the stack; real headers (e.g. x-death) nest about four levels.
pub const MAX_FIELD_NESTING: u32 = 32;

/// Bounds-checked cursor over a payload. Every read either succeeds or
/// returns `Truncated`; positions are kept so callers can slice `Bytes`.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, position: 0 }
    }

    pub(super) fn position(&self) -> usize {
        self.position
    }

    pub(super) fn is_empty(&self) -> bool {
        self.position >= self.bytes.len()
    }

    pub(super) fn take(&mut self, len: usize) -> Result<&'a [u8], CodecError> {
        let end = self.position.checked_add(len).ok_or(CodecError::Truncated)?;
        let taken = self.bytes.get(self.position..end).ok_or(CodecError::Truncated)?;
        self.position = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        self.take(N)?.try_into().map_err(|_| CodecError::Truncated)
    }

    pub(super) fn u8(&mut self) -> Result<u8, CodecError> {
        self.array::<1>().map(u8::from_be_bytes)
    }

    pub(super) fn u16(&mut self) -> Result<u16, CodecError> {
        self.array::<2>().map(u16::from_be_bytes)
    }

    pub(super) fn u32(&mut self) -> Result<u32, CodecError> {
        self.array::<4>().map(u32::from_be_bytes)
    }

    pub(super) fn u64(&mut self) -> Result<u64, CodecError> {
        self.array::<8>().map(u64::from_be_bytes)
    }

    /// Range of a short string's contents within the payload.
    pub(super) fn short_str_range(&mut self) -> Result<Range<usize>, CodecError> {
        let len = usize::from(self.u8()?);
        let start = self.position;
        self.take(len)?;
        Ok(start..self.position)
    }

    /// A short string that amq-protocol will later accept (UTF-8).
    pub(super) fn utf8_short_str(&mut self) -> Result<&'a str, CodecError> {
        let len = usize::from(self.u8()?);
        std::str::from_utf8(self.take(len)?).map_err(|_| CodecError::InvalidUtf8)
    }

    /// Skips a 32-bit length-prefixed value without looking inside.
    pub(super) fn long_str(&mut self) -> Result<&'a [u8], CodecError> {
        let len = self.u32()?;
        self.take(usize::try_from(len).map_err(|_| CodecError::Truncated)?)
    }

    pub(super) fn finish(&self) -> Result<(), CodecError> {
        match self.bytes.len().saturating_sub(self.position) {
            0 => Ok(()),
            extra => Err(CodecError::TrailingBytes { extra }),
        }
    }
}

/// Validates a field table (length prefix included) with the same value
/// types amq-protocol accepts, bounding the nesting depth.
pub(super) fn skip_field_table(reader: &mut Reader<'_>, depth: u32) -> Result<(), CodecError> {
    if depth >= MAX_FIELD_NESTING {
        return Err(CodecError::NestingTooDeep);
    }
    let mut entries = Reader::new(reader.long_str()?);
    while !entries.is_empty() {
        entries.utf8_short_str()?;
        skip_field_value(&mut entries, depth + 1)?;
    }
    Ok(())
}

fn skip_field_array(reader: &mut Reader<'_>, depth: u32) -> Result<(), CodecError> {
    if depth >= MAX_FIELD_NESTING {
        return Err(CodecError::NestingTooDeep);
    }
    let mut values = Reader::new(reader.long_str()?);
    while !values.is_empty() {
        skip_field_value(&mut values, depth + 1)?;
    }
    Ok(())
}

fn skip_field_value(reader: &mut Reader<'_>, depth: u32) -> Result<(), CodecError> {
    // Type letters follow RabbitMQ's table (as amq-protocol does): 's' is a
    // short int, 'l'/'L' are 64-bit, 'x' a byte array, 'V' void.
    let fixed_len = match reader.u8()? {
        b'V' => 0,
        b't' | b'b' | b'B' => 1,
        b's' | b'u' | b'U' => 2,
        b'I' | b'i' | b'f' => 4,
        b'D' => 5,
        b'l' | b'L' | b'd' | b'T' => 8,
        b'S' | b'x' => return reader.long_str().map(drop),
        b'A' => return skip_field_array(reader, depth),
        b'F' => return skip_field_table(reader, depth),
        type_id => return Err(CodecError::UnknownFieldType { type_id }),
    };
    reader.take(fixed_len).map(drop)
}

#[cfg(test)]
mod tests {
    use super::super::hotpath::parse_properties;
    use super::*;

    fn frame_bytes(frame_type: u8, channel: u16, payload: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        write_frame(&mut out, frame_type, channel, payload).expect("small frame");
        out
    }

    #[test]
    fn incomplete_header_waits() {
        let full = frame_bytes(FRAME_METHOD, 1, b"abc");
        for cut in 0..FRAME_HEADER_LEN {
            let mut buffer = BytesMut::from(&full[..cut]);
            assert_eq!(split_frame(&mut buffer, 4096), Ok(None));
            assert_eq!(buffer.len(), cut, "nothing consumed");
        }
    }

    #[test]
    fn incomplete_payload_waits() {
        let full = frame_bytes(FRAME_BODY, 3, b"hello world");
        for cut in FRAME_HEADER_LEN..full.len() {
            let mut buffer = BytesMut::from(&full[..cut]);
            assert_eq!(split_frame(&mut buffer, 4096), Ok(None), "cut at {cut}");
        }
        let mut buffer = full.clone();
        let frame = split_frame(&mut buffer, 4096).expect("valid").expect("complete");
        assert_eq!(frame.frame_type, FRAME_BODY);
        assert_eq!(frame.channel, 3);
        assert_eq!(&frame.payload[..], b"hello world");
        assert!(buffer.is_empty());
    }

    #[test]
    fn oversized_rejected_from_header_alone() {
        // A payload of 4097 under frame_max 4096; only the header has arrived.
        let mut buffer = BytesMut::from(&[FRAME_BODY, 0, 1, 0, 0, 0x10, 0x01][..]);
        let error = split_frame(&mut buffer, 4096).expect_err("too large");
        assert_eq!(error, FrameError::TooLarge { frame_type: FRAME_BODY, size: 4097, frame_max: 4096 });
        assert_eq!(error.to_string(), "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,4097,4088}");
        // A payload of frame_max itself is accepted (still incomplete), as RabbitMQ allows.
        let mut buffer = BytesMut::from(&[FRAME_BODY, 0, 1, 0, 0, 0x10, 0x00][..]);
        assert_eq!(split_frame(&mut buffer, 4096), Ok(None));
        // frame_max 0 still has the hard cap, even for a u32::MAX size field.
        let mut buffer = BytesMut::from(&[FRAME_BODY, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF][..]);
        let err = split_frame(&mut buffer, 0).expect_err("hard cap");
        assert_eq!(err.reply_code(), 501);
        assert!(err.to_string().starts_with("FRAME_ERROR"));
    }

    #[test]
    fn bad_frame_end_rejected() {
        let mut buffer = frame_bytes(FRAME_METHOD, 1, b"xyz");
        let last = buffer.len() - 1;
        buffer[last] = 0xCD;
        let err = split_frame(&mut buffer, 4096).expect_err("bad end");
        assert_eq!(err, FrameError::BadFrameEnd { frame: "type 1, all octets = <<\"xyz\">>".into(), found: 0xCD });
        assert_eq!(err.reply_code(), 501);
        assert_eq!(err.to_string(), "FRAME_ERROR - type 1, all octets = <<\"xyz\">>: {invalid_frame_end_marker,205}");
    }

    #[test]
    fn a_frame_of_unknown_type_is_read_whole_and_not_well_formed() {
        let mut buffer = frame_bytes(7, 1, b"");
        let frame = split_frame(&mut buffer, 4096).expect("read whole").expect("a frame");
        assert!(!is_well_formed(frame.frame_type, &frame.payload));
        assert_eq!(describe(7, b""), "type 7, all octets = <<>>");
    }

    #[test]
    fn payloads_are_described_as_erlang_prints_them() {
        assert_eq!(describe(3, b"hello"), "type 3, all octets = <<\"hello\">>");
        assert_eq!(describe(1, &[0, 60]), "type 1, all octets = <<0,60>>");
        assert_eq!(describe(3, b"say \"hi\"\n"), "type 3, all octets = <<\"say \\\"hi\\\"\\n\">>");
        assert_eq!(describe(3, &[b'x'; 20]), "type 3, first 16 octets = <<\"xxxxxxxxxxxxxxxx\">>");
        assert_eq!(erlang_bytes(b"ab"), "<<97,98>>");
    }

    #[test]
    fn several_frames_in_one_buffer() {
        let mut buffer = frame_bytes(FRAME_METHOD, 1, b"one");
        write_heartbeat(&mut buffer);
        buffer.extend_from_slice(&frame_bytes(FRAME_BODY, 2, b"three"));
        buffer.extend_from_slice(&frame_bytes(FRAME_HEADER, 4, b"four")[..5]);
        let first = split_frame(&mut buffer, 0).expect("ok").expect("frame");
        let second = split_frame(&mut buffer, 0).expect("ok").expect("frame");
        let third = split_frame(&mut buffer, 0).expect("ok").expect("frame");
        assert_eq!((first.frame_type, first.channel, &first.payload[..]), (1, 1, &b"one"[..]));
        assert_eq!((second.frame_type, second.channel, second.payload.len()), (8, 0, 0));
        assert_eq!((third.frame_type, third.channel, &third.payload[..]), (3, 2, &b"three"[..]));
        assert_eq!(split_frame(&mut buffer, 0), Ok(None));
        assert_eq!(buffer.len(), 5);
    }

    #[test]
    fn payload_is_zero_copy() {
        let mut buffer = frame_bytes(FRAME_BODY, 9, &[0xAB; 1000]);
        write_heartbeat(&mut buffer);
        let base = buffer.as_ptr() as usize;
        let end = base + buffer.len();
        let frame = split_frame(&mut buffer, 0).expect("ok").expect("frame");
        let payload_at = frame.payload.as_ptr() as usize;
        assert_eq!(payload_at, base + FRAME_HEADER_LEN);
        assert!(payload_at + frame.payload.len() <= end);
    }

    #[test]
    fn write_frame_with_patches_size_and_rolls_back() {
        let mut out = BytesMut::from(&b"keep"[..]);
        write_frame_with::<FrameError>(&mut out, FRAME_METHOD, 5, |out| {
            out.put_slice(b"payload");
            Ok(())
        })
        .expect("fits");
        assert_eq!(&out[..4], b"keep");
        assert_eq!(&out[4..], &frame_bytes(FRAME_METHOD, 5, b"payload")[..]);
        let before = out.clone();
        let failed = write_frame_with(&mut out, FRAME_METHOD, 5, |out| {
            out.put_slice(b"partial");
            Err(FrameError::BadFrameEnd { frame: String::new(), found: 0 })
        });
        assert!(failed.is_err());
        assert_eq!(out, before);
    }

    /// A field table whose one value is `containers - 1` arrays nested in
    /// each other, written outside-in in linear time.
    fn nested_table(containers: usize) -> Vec<u8> {
        let arrays = containers - 1;
        let mut table = Vec::with_capacity(arrays * 5 + 8);
        table.extend_from_slice(&((arrays * 5 + 3) as u32).to_be_bytes());
        table.extend_from_slice(&[1, b'k']);
        for level in 0..arrays {
            table.push(b'A');
            table.extend_from_slice(&(((arrays - level - 1) * 5 + 1) as u32).to_be_bytes());
        }
        table.push(b'V');
        table
    }

    #[test]
    fn field_nesting_depth_is_bounded() {
        let limit = MAX_FIELD_NESTING as usize;
        let walk = |containers| skip_field_table(&mut Reader::new(&nested_table(containers)), 0);
        assert_eq!(walk(1), Ok(()));
        assert_eq!(walk(limit), Ok(()));
        assert_eq!(walk(limit + 1), Err(CodecError::NestingTooDeep));
        assert_eq!(walk(50_000), Err(CodecError::NestingTooDeep));
        // The same bound keeps hostile headers away from amq-protocol's
        // recursive parser, which overflows the stack on deep nesting.
        let properties = |containers| [&[0x20, 0][..], &nested_table(containers)].concat();
        assert!(parse_properties(&properties(limit)).is_ok());
        let err = parse_properties(&properties(50_000)).expect_err("too deep");
        assert_eq!((err.clone(), err.reply_code()), (CodecError::NestingTooDeep, 502));
        let unknown = [0, 0, 0, 3, 1, b'k', b'Z'];
        let err = skip_field_table(&mut Reader::new(&unknown), 0);
        assert_eq!(err, Err(CodecError::UnknownFieldType { type_id: b'Z' }));
    }

    #[test]
    fn heartbeat_and_payload_limits() {
        let mut out = BytesMut::new();
        write_heartbeat(&mut out);
        assert_eq!(&out[..], &[8, 0, 0, 0, 0, 0, 0, 0xCE]);
        assert_eq!(max_payload_len(4096), 4088);
        assert_eq!(max_payload_len(100), 4088, "raised to the spec minimum");
        assert_eq!(max_payload_len(0), (FRAME_MAX_HARD_CAP - 8) as usize);
        assert_eq!(&PROTOCOL_HEADER[..], b"AMQP\x00\x00\x09\x01");
    }
}
