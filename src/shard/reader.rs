//! The reading half of a connection's socket: whole frames out of its bytes, read in chunks
//! that grow and shrink with the traffic, and, while the connection may still hand over to
//! another shard (`handover`), the transcript of what the client sent.

use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, OwnedReadHalf};
use monoio::net::TcpStream;

use super::handover;
use crate::amqp::connection::Connection;
use crate::codec::frame::{split_frame, FrameError, RawFrame};
use crate::limits::{READ_CHUNK_BYTES, READ_CHUNK_MIN_BYTES};
use crate::tls::TlsReader;

pub(super) enum ReadError {
    Closed,
    Frame(FrameError),
}

/// The read half with its buffer: hands out whole frames, reading more only when needed.
pub(super) struct FrameReader {
    pub(super) half: OwnedReadHalf<TcpStream>,
    pub(super) buffer: BytesMut,
    /// amqps: the socket carries TLS records, decrypted into `buffer`.
    pub(super) tls: Option<TlsReader>,
    pub(super) connection: Rc<Connection>,
    /// Bytes asked of the socket per read: doubles while reads fill what was asked, halves
    /// while they bring back little (`READ_CHUNK_MIN_BYTES`..=`READ_CHUNK_BYTES`).
    pub(super) read_size: usize,
    /// What the client sent so far, while the connection may still hand over (`handover`).
    pub(super) transcript: Option<BytesMut>,
}

impl FrameReader {
    /// Reads more bytes into the buffer; false on end of stream or error.
    pub(super) async fn fill(&mut self) -> bool {
        if let Some(tls) = &mut self.tls {
            let connection = &self.connection;
            let wake_writer = || connection.wake_writer_for_transport();
            return match tls.fill(&mut self.half, &mut self.buffer, READ_CHUNK_BYTES, wake_writer).await {
                Ok(more) => more,
                Err(reason) => {
                    crate::debug!("connection {}: TLS error: {reason}", connection.id);
                    false
                }
            };
        }
        let mut buffer = std::mem::take(&mut self.buffer);
        if buffer.is_empty() && buffer.capacity() > 2 * self.read_size {
            // Quiet again after a burst: the large buffer goes (once the message bodies
            // that point into it are gone) and the wait for the next bytes holds a small one.
            buffer = BytesMut::new();
        }
        if buffer.capacity() - buffer.len() < self.read_size / 2 {
            buffer.reserve(self.read_size);
        }
        let length = buffer.len();
        let capacity = buffer.capacity();
        let asked = capacity - length;
        let (result, slice) = self.half.read(buffer.slice_mut(length..capacity)).await;
        self.buffer = slice.into_inner();
        match result {
            Ok(read) if read > 0 => {
                self.read_size = next_read_size(self.read_size, asked, read);
                true
            }
            _ => false,
        }
    }

    /// Reads and drops whatever arrives until end of stream, for at most `limit`.
    pub(super) async fn drain(&mut self, limit: Duration) {
        let discard = async {
            loop {
                self.buffer.clear();
                if !self.fill().await {
                    return;
                }
            }
        };
        let _ = monoio::time::timeout(limit, discard).await;
    }

    pub(super) fn buffered(&self) -> &[u8] {
        &self.buffer
    }

    pub(super) fn consume(&mut self, count: usize) {
        let consumed = self.buffer.split_to(count.min(self.buffer.len()));
        if let Some(transcript) = &mut self.transcript {
            transcript.extend_from_slice(&consumed);
        }
    }

    /// Keeps `frame` in the transcript, or stops keeping one past its bound.
    pub(super) fn record(&mut self, frame: &RawFrame) {
        if let Some(transcript) = &mut self.transcript {
            if transcript.len() + frame.payload.len() + 8 > handover::TRANSCRIPT_MAX_BYTES {
                self.transcript = None;
            } else {
                handover::append_frame(transcript, frame);
            }
        }
    }

    pub(super) fn next_buffered(&mut self, frame_max: u32) -> Result<Option<RawFrame>, FrameError> {
        split_frame(&mut self.buffer, frame_max)
    }

    pub(super) async fn next_frame(&mut self, frame_max: u32) -> Result<RawFrame, ReadError> {
        loop {
            if let Some(frame) = self.next_buffered(frame_max).map_err(ReadError::Frame)? {
                return Ok(frame);
            }
            if !self.fill().await {
                return Err(ReadError::Closed);
            }
        }
    }
}

/// The next read size: twice as large after a read that filled all it was given, half as
/// large after one that brought back less than an eighth of the read size.
fn next_read_size(read_size: usize, asked: usize, read: usize) -> usize {
    if read >= asked {
        (read_size * 2).min(READ_CHUNK_BYTES)
    } else if read < read_size / 8 {
        (read_size / 2).max(READ_CHUNK_MIN_BYTES)
    } else {
        read_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_size_doubles_on_full_reads_and_halves_on_small_ones_within_bounds() {
        let mut size = READ_CHUNK_MIN_BYTES;
        while size < READ_CHUNK_BYTES {
            let next = next_read_size(size, size, size);
            assert_eq!(next, size * 2);
            size = next;
        }
        assert_eq!(next_read_size(size, size, size), READ_CHUNK_BYTES, "never past the largest");
        assert_eq!(next_read_size(size, size, size / 2), size, "a half-full read keeps the size");
        assert_eq!(next_read_size(size, size, 8), size / 2);
        assert_eq!(next_read_size(READ_CHUNK_MIN_BYTES, READ_CHUNK_MIN_BYTES, 8), READ_CHUNK_MIN_BYTES);
    }
}
