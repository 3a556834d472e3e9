//! Mutations of a conversation, on frames (drop, duplicate, swap, splice) and on bytes (bit
//! flips, interesting values, truncation, size fields, channels, class and method ids).
//!
//! Most mutations keep the framing valid and damage what is inside, so the inputs reach the
//! method parsers and the handlers; the framing is corrupted on purpose by a few of them
//! (`size_override`, `end_override`, and the byte-stream mutations applied after writing).

use super::rng::Rng;
use super::seeds::Frame;
use crate::codec::frame::{FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD};

/// Octets that tend to sit on boundaries: zero, sign bits, all ones, the frame-end octet, the
/// frame types, the field-table type letters for nested values.
const INTERESTING_BYTES: [u8; 14] = [0, 1, 2, 3, 8, 0x7F, 0x80, 0xCE, 0xFE, 0xFF, b'F', b'A', b'S', b'V'];

/// Values for 16, 32 and 64-bit fields: lengths at and around frame_max and the body limit,
/// and the extremes.
const INTERESTING_WIDE: [u64; 14] =
    [0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 4088, 4096, 131_064, 131_072, 134_217_728, 0x7FFF_FFFF, 0xFFFF_FFFF, u64::MAX];

const CLASS_IDS: [u16; 10] = [10, 20, 30, 40, 50, 60, 85, 90, 0, 0xFFFF];
const METHOD_IDS: [u16; 22] =
    [10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 60, 61, 70, 71, 72, 80, 90, 100, 110, 111, 120, 0];
const CHANNELS: [u16; 8] = [0, 1, 2, 3, 2047, 2048, 0x7FFF, 0xFFFF];

/// Applies one to `rounds` random mutations to `frames`; `donor` offers frames to splice in.
pub(super) fn mutate_frames(rng: &mut Rng, frames: &mut Vec<Frame>, donor: &[Frame], rounds: usize) {
    for _ in 0..1 + rng.below(rounds) {
        mutate_once(rng, frames, donor);
    }
}

fn mutate_once(rng: &mut Rng, frames: &mut Vec<Frame>, donor: &[Frame]) {
    if frames.is_empty() {
        frames.extend(donor.iter().take(4).cloned());
        return;
    }
    let at = rng.below(frames.len());
    match rng.below(16) {
        0 => flip_bit(rng, &mut frames[at].payload),
        1 => replace_byte(rng, &mut frames[at].payload),
        2 => replace_wide(rng, &mut frames[at].payload),
        3 => truncate(rng, &mut frames[at].payload),
        4 => insert_bytes(rng, &mut frames[at].payload),
        5 => remove_bytes(rng, &mut frames[at].payload),
        6 => frames[at].channel = random_channel(rng),
        7 => set_method_ids(rng, &mut frames[at]),
        8 => {
            let any = rng.byte();
            frames[at].frame_type = *rng.pick(&[FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT, any]);
        }
        9 => corrupt_framing(rng, &mut frames[at]),
        10 => {
            let copy = frames[at].clone();
            frames.insert(rng.below(frames.len() + 1), copy);
        }
        11 => {
            frames.remove(at);
        }
        12 => {
            let other = rng.below(frames.len());
            frames.swap(at, other);
        }
        13 => splice(rng, frames, donor),
        14 => set_body_size(rng, &mut frames[at]),
        _ => {
            // A run of copies: many channels, many publishes, many acks from one frame.
            let copy = frames[at].clone();
            let copies = 1 + rng.below(64);
            let channel_step = rng.chance(1, 2);
            for index in 0..copies {
                let mut frame = copy.clone();
                if channel_step {
                    frame.channel = frame.channel.wrapping_add(index as u16 + 1);
                }
                frames.insert(at + 1, frame);
            }
        }
    }
}

fn random_channel(rng: &mut Rng) -> u16 {
    if rng.chance(1, 2) {
        *rng.pick(&CHANNELS)
    } else {
        rng.next_u64() as u16
    }
}

fn flip_bit(rng: &mut Rng, payload: &mut [u8]) {
    if !payload.is_empty() {
        let at = rng.below(payload.len());
        payload[at] ^= 1 << rng.below(8);
    }
}

fn replace_byte(rng: &mut Rng, payload: &mut [u8]) {
    if !payload.is_empty() {
        let at = rng.below(payload.len());
        payload[at] = if rng.chance(3, 4) { *rng.pick(&INTERESTING_BYTES) } else { rng.byte() };
    }
}

/// Writes an interesting 16, 32 or 64-bit value (big-endian, as every AMQP field) at a random
/// offset: lengths of strings and tables, delivery tags, body sizes, prefetch counts.
fn replace_wide(rng: &mut Rng, payload: &mut [u8]) {
    let width = *rng.pick(&[2usize, 4, 8]);
    if payload.len() < width {
        return;
    }
    let at = rng.below(payload.len() - width + 1);
    let mut value = *rng.pick(&INTERESTING_WIDE);
    if rng.chance(1, 4) {
        value = value.wrapping_add(rng.below(3) as u64).wrapping_sub(1);
    }
    let bytes = value.to_be_bytes();
    payload[at..at + width].copy_from_slice(&bytes[8 - width..]);
}

fn truncate(rng: &mut Rng, payload: &mut Vec<u8>) {
    let keep = rng.below(payload.len() + 1);
    payload.truncate(keep);
}

fn insert_bytes(rng: &mut Rng, payload: &mut Vec<u8>) {
    let at = rng.below(payload.len() + 1);
    let count = 1 + rng.below(16);
    let inserted: Vec<u8> =
        (0..count).map(|_| if rng.chance(1, 2) { *rng.pick(&INTERESTING_BYTES) } else { rng.byte() }).collect();
    payload.splice(at..at, inserted);
}

fn remove_bytes(rng: &mut Rng, payload: &mut Vec<u8>) {
    if payload.is_empty() {
        return;
    }
    let start = rng.below(payload.len());
    let end = (start + 1 + rng.below(16)).min(payload.len());
    payload.drain(start..end);
}

/// Another method in the same frame: known pairs (so the arguments are read as another
/// method's), unknown ones, and methods only a server may send.
fn set_method_ids(rng: &mut Rng, frame: &mut Frame) {
    let (class_id, method_id) = if rng.chance(3, 4) {
        (*rng.pick(&CLASS_IDS), *rng.pick(&METHOD_IDS))
    } else {
        (rng.next_u64() as u16, rng.next_u64() as u16)
    };
    frame.frame_type = FRAME_METHOD;
    if frame.payload.len() < 4 {
        frame.payload.resize(4, 0);
    }
    frame.payload[..2].copy_from_slice(&class_id.to_be_bytes());
    frame.payload[2..4].copy_from_slice(&method_id.to_be_bytes());
}

/// A size field that disagrees with the payload, or a frame-end octet that is not 0xCE.
fn corrupt_framing(rng: &mut Rng, frame: &mut Frame) {
    if rng.chance(1, 3) {
        frame.end_override = Some(if rng.chance(1, 2) { rng.byte() } else { FRAME_END ^ 1 });
        return;
    }
    let length = frame.payload.len() as u64;
    let size = match rng.below(3) {
        0 => *rng.pick(&INTERESTING_WIDE),
        1 => length + rng.below(8) as u64 + 1,
        _ => length.saturating_sub(rng.below(8) as u64 + 1),
    };
    frame.size_override = Some(size as u32);
}

/// The body size of a content header: zero, one, the limits, or a little off the true size.
fn set_body_size(rng: &mut Rng, frame: &mut Frame) {
    if frame.frame_type != FRAME_HEADER || frame.payload.len() < 12 {
        return replace_wide(rng, &mut frame.payload);
    }
    let current = u64::from_be_bytes(frame.payload[4..12].try_into().expect("8 bytes"));
    let size = match rng.below(3) {
        0 => *rng.pick(&INTERESTING_WIDE),
        1 => current.wrapping_add(1 + rng.below(8) as u64),
        _ => current.saturating_sub(1 + rng.below(8) as u64),
    };
    frame.payload[4..12].copy_from_slice(&size.to_be_bytes());
}

/// Inserts a run of frames from another conversation.
fn splice(rng: &mut Rng, frames: &mut Vec<Frame>, donor: &[Frame]) {
    if donor.is_empty() {
        return;
    }
    let start = rng.below(donor.len());
    let end = (start + 1 + rng.below(8)).min(donor.len());
    let at = rng.below(frames.len() + 1);
    frames.splice(at..at, donor[start..end].iter().cloned());
}

/// Damages the written byte stream where frame boundaries no longer mean anything: a flipped
/// bit anywhere, a cut, a run of garbage.
pub(super) fn mutate_stream(rng: &mut Rng, bytes: &mut Vec<u8>) {
    match rng.below(4) {
        0 => flip_bit(rng, bytes),
        1 => replace_byte(rng, bytes),
        2 => truncate(rng, bytes),
        _ => insert_bytes(rng, bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_change_the_conversation_and_are_reproducible() {
        let seed: Vec<Frame> = super::super::seeds::captures().remove(1).frames;
        let run = |seed_value: u64| {
            let mut rng = Rng::new(seed_value);
            let mut frames = seed.clone();
            mutate_frames(&mut rng, &mut frames, &seed, 4);
            let mut bytes = Vec::new();
            frames.iter().for_each(|frame| frame.write(&mut bytes));
            bytes
        };
        let mut original = Vec::new();
        seed.iter().for_each(|frame| frame.write(&mut original));
        let changed = (0..100).filter(|&seed_value| run(seed_value) != original).count();
        assert!(changed > 80, "only {changed} of 100 mutated inputs differ from the seed");
        assert_eq!(run(7), run(7));
    }
}
