//! A tiny hand-written AMQP 0-9-1 frame codec for tests that must send what a
//! well-behaved client never would.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;

/// Builds method-frame arguments.
#[derive(Default, Clone)]
pub struct Args(pub Vec<u8>);

impl Args {
    pub fn new() -> Self {
        Args(Vec::new())
    }
    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    pub fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn shortstr(mut self, s: &str) -> Self {
        assert!(s.len() < 256);
        self.0.push(s.len() as u8);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    pub fn longstr(mut self, s: &[u8]) -> Self {
        self.0.extend_from_slice(&(s.len() as u32).to_be_bytes());
        self.0.extend_from_slice(s);
        self
    }
    /// An empty field table.
    pub fn empty_table(self) -> Self {
        self.u32(0)
    }
    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
}

/// A whole frame: type, channel, payload and the end octet.
pub fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.push(kind);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.push(FRAME_END);
    out
}

/// A method frame for `class.method` with `args`.
pub fn method(channel: u16, class: u16, meth: u16, args: Args) -> Vec<u8> {
    let mut payload = Vec::with_capacity(args.0.len() + 4);
    payload.extend_from_slice(&class.to_be_bytes());
    payload.extend_from_slice(&meth.to_be_bytes());
    payload.extend_from_slice(&args.0);
    frame(FRAME_METHOD, channel, &payload)
}

/// A content header frame for class basic (60) with no properties.
pub fn content_header(channel: u16, body_size: u64) -> Vec<u8> {
    let payload = Args::new().u16(60).u16(0).u64(body_size).u16(0).0;
    frame(FRAME_HEADER, channel, &payload)
}

/// A decoded incoming frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub channel: u16,
    pub payload: Vec<u8>,
}

impl Frame {
    /// `(class, method)` of a method frame.
    pub fn method_id(&self) -> Option<(u16, u16)> {
        if self.kind != FRAME_METHOD || self.payload.len() < 4 {
            return None;
        }
        Some((
            u16::from_be_bytes([self.payload[0], self.payload[1]]),
            u16::from_be_bytes([self.payload[2], self.payload[3]]),
        ))
    }

    /// Reply code and text of a connection.close / channel.close frame.
    pub fn close_reason(&self) -> Option<(u16, String)> {
        let id = self.method_id()?;
        if id != (10, 50) && id != (20, 40) {
            return None;
        }
        let p = &self.payload[4..];
        let code = u16::from_be_bytes([p[0], p[1]]);
        let len = p[2] as usize;
        let text = String::from_utf8_lossy(&p[3..3 + len]).into_owned();
        Some((code, text))
    }
}

/// What the connection tuning settled on.
#[derive(Debug, Clone, Copy)]
pub struct Tune {
    pub channel_max: u16,
    pub frame_max: u32,
    pub heartbeat: u16,
}

/// A raw client socket.
pub struct RawClient {
    pub sock: TcpStream,
    pub tune: Option<Tune>,
}

impl RawClient {
    /// Connects to `addr` (host:port) with 5 s read/write timeouts.
    pub fn connect(addr: &str) -> RawClient {
        let sock = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        sock.set_read_timeout(Some(Duration::from_secs(5))).expect("set read timeout");
        sock.set_write_timeout(Some(Duration::from_secs(5))).expect("set write timeout");
        sock.set_nodelay(true).ok();
        RawClient { sock, tune: None }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).expect("write to the broker");
    }

    /// Sends, tolerating a peer that already closed the socket.
    pub fn send_lossy(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.sock.write_all(bytes)
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; n];
        self.sock.read_exact(&mut buf)?;
        Ok(buf)
    }

    /// Reads one frame.
    pub fn read_frame(&mut self) -> std::io::Result<Frame> {
        let head = self.read_exact(7)?;
        let kind = head[0];
        let channel = u16::from_be_bytes([head[1], head[2]]);
        let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
        let mut rest = self.read_exact(size + 1)?;
        let end = rest.pop();
        if end != Some(FRAME_END) {
            return Err(std::io::Error::new(ErrorKind::InvalidData, "bad frame end from broker"));
        }
        Ok(Frame { kind, channel, payload: rest })
    }

    /// Reads frames until a method frame arrives (skipping heartbeats).
    pub fn read_method(&mut self) -> Frame {
        loop {
            let f = self.read_frame().expect("read a frame from the broker");
            if f.kind == FRAME_HEARTBEAT {
                continue;
            }
            return f;
        }
    }

    /// Reads a method frame and checks it is `class.method`.
    #[track_caller]
    pub fn expect_method(&mut self, class: u16, meth: u16) -> Frame {
        let f = self.read_method();
        assert_eq!(
            f.method_id(),
            Some((class, meth)),
            "expected method {class}.{meth}, got {f:?} (close reason: {:?})",
            f.close_reason()
        );
        f
    }

    /// Performs the handshake as guest/guest on vhost "/", tuning to the
    /// server's proposal with heartbeats off.
    pub fn handshake(&mut self) -> Tune {
        self.handshake_with_heartbeat(0)
    }

    /// The handshake of `handshake`, asking for a heartbeat every `heartbeat` seconds.
    pub fn handshake_with_heartbeat(&mut self, heartbeat: u16) -> Tune {
        self.send(PROTOCOL_HEADER);
        self.expect_method(10, 10); // connection.start
        self.send(&method(
            0,
            10,
            11,
            Args::new().empty_table().shortstr("PLAIN").longstr(b"\0guest\0guest").shortstr("en_US"),
        ));
        let tune_frame = self.expect_method(10, 30);
        let p = &tune_frame.payload[4..];
        let tune = Tune {
            channel_max: u16::from_be_bytes([p[0], p[1]]),
            frame_max: u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
            heartbeat: u16::from_be_bytes([p[6], p[7]]),
        };
        self.send(&method(0, 10, 31, Args::new().u16(tune.channel_max).u32(tune.frame_max).u16(heartbeat)));
        self.send(&method(0, 10, 40, Args::new().shortstr("/").shortstr("").u8(0)));
        self.expect_method(10, 41);
        self.tune = Some(tune);
        tune
    }

    /// Opens channel `ch`.
    pub fn open_channel(&mut self, ch: u16) {
        self.send(&method(ch, 20, 10, Args::new().shortstr("")));
        self.expect_method(20, 11);
    }

    /// Expects a connection.close with `code`; answers close-ok; then expects
    /// the broker to close the socket within 5 s. Returns the reply text.
    #[track_caller]
    pub fn expect_connection_close(&mut self, code: u16) -> String {
        let loc = std::panic::Location::caller();
        let f = loop {
            match self.read_frame() {
                Ok(f) if f.kind == FRAME_HEARTBEAT => continue,
                Ok(f) if f.method_id() == Some((10, 50)) => break f,
                Ok(f) if f.kind == FRAME_METHOD => {
                    panic!("expected connection.close {code}, got method {:?} ({loc})", f.method_id())
                }
                Ok(_) => continue,
                Err(e) => panic!("expected connection.close {code}, read failed: {e} ({loc})"),
            }
        };
        let (got, text) = f.close_reason().expect("close reason");
        assert_eq!(got, code, "connection.close reply code (text: {text:?}) ({loc})");
        let _ = self.send_lossy(&method(0, 10, 51, Args::new()));
        self.expect_eof(5);
        text
    }

    /// Like [`RawClient::expect_connection_close`], but also accepts the
    /// broker dropping the socket without a connection.close. Returns the
    /// reply text when a close was sent. Fails if the connection stays open
    /// for 5 s or if a close carries another code.
    #[track_caller]
    pub fn expect_connection_close_or_drop(&mut self, code: u16) -> Option<String> {
        let loc = std::panic::Location::caller();
        let f = loop {
            match self.read_frame() {
                Ok(f) if f.kind == FRAME_HEARTBEAT => continue,
                Ok(f) if f.method_id() == Some((10, 50)) => break f,
                Ok(f) if f.kind == FRAME_METHOD => {
                    panic!("expected connection.close {code}, got method {:?} ({loc})", f.method_id())
                }
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    panic!("the broker neither closed the connection nor the socket within 5 s ({loc})")
                }
                Err(_) => return None,
            }
        };
        let (got, text) = f.close_reason().expect("close reason");
        assert_eq!(got, code, "connection.close reply code (text: {text:?}) ({loc})");
        let _ = self.send_lossy(&method(0, 10, 51, Args::new()));
        self.expect_eof(5);
        Some(text)
    }

    /// Expects the broker to close the socket within `secs` seconds (any
    /// bytes still arriving are discarded).
    #[track_caller]
    pub fn expect_eof(&mut self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("the broker did not close the socket within {secs} s");
            }
            self.sock.set_read_timeout(Some(left)).ok();
            match self.sock.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    panic!("the broker did not close the socket within {secs} s")
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // A reset also means the socket is closed.
                Err(_) => return,
            }
        }
    }
}

/// A delivery read off a raw socket.
#[derive(Debug, Clone)]
pub struct RawDelivery {
    pub delivery_tag: u64,
    pub redelivered: bool,
    pub body: Vec<u8>,
}

fn read_shortstr(p: &[u8], at: &mut usize) -> String {
    let len = p[*at] as usize;
    let s = String::from_utf8_lossy(&p[*at + 1..*at + 1 + len]).into_owned();
    *at += 1 + len;
    s
}

impl RawClient {
    /// Connects, handshakes and opens channel 1.
    pub fn connect_ready(addr: &str) -> RawClient {
        let mut c = RawClient::connect(addr);
        c.handshake();
        c.open_channel(1);
        c
    }

    /// basic.qos with a per-consumer prefetch count.
    pub fn qos(&mut self, ch: u16, prefetch: u16) {
        self.send(&method(ch, 60, 10, Args::new().u32(0).u16(prefetch).u8(0)));
        self.expect_method(60, 11);
    }

    /// A synchronous round trip (basic.qos with `prefetch`) that skips any
    /// deliveries arriving meanwhile; proves earlier frames were processed.
    pub fn qos_skipping_deliveries(&mut self, ch: u16, prefetch: u16) {
        self.send(&method(ch, 60, 10, Args::new().u32(0).u16(prefetch).u8(0)));
        loop {
            let f = self.read_frame().expect("read a frame from the broker");
            if f.method_id() == Some((60, 11)) {
                return;
            }
            if f.kind == FRAME_METHOD && f.method_id() != Some((60, 60)) {
                panic!("expected basic.qos-ok, got {:?} (close: {:?})", f.method_id(), f.close_reason());
            }
        }
    }

    /// basic.consume with a server-generated tag; returns the tag.
    pub fn consume(&mut self, ch: u16, queue: &str, no_ack: bool) -> String {
        let bits = if no_ack { 0b10 } else { 0 };
        self.send(&method(ch, 60, 20, Args::new().u16(0).shortstr(queue).shortstr("").u8(bits).empty_table()));
        let f = self.expect_method(60, 21);
        let mut at = 4;
        read_shortstr(&f.payload, &mut at)
    }

    /// basic.publish of `body` (one body frame) to `exchange` / `key`.
    pub fn publish(&mut self, ch: u16, exchange: &str, key: &str, body: &[u8]) {
        let mut out = method(ch, 60, 40, Args::new().u16(0).shortstr(exchange).shortstr(key).u8(0));
        out.extend(content_header(ch, body.len() as u64));
        out.extend(frame(FRAME_BODY, ch, body));
        self.send(&out);
    }

    /// Reads the next basic.deliver with its content.
    pub fn read_delivery(&mut self) -> RawDelivery {
        let f = self.expect_method(60, 60);
        let p = &f.payload;
        let mut at = 4;
        let _tag = read_shortstr(p, &mut at);
        let delivery_tag = u64::from_be_bytes(p[at..at + 8].try_into().expect("8 bytes"));
        at += 8;
        let redelivered = p[at] & 1 == 1;
        let header = self.read_frame().expect("content header");
        assert_eq!(header.kind, FRAME_HEADER, "expected a content header, got {header:?}");
        let size = u64::from_be_bytes(header.payload[4..12].try_into().expect("8 bytes")) as usize;
        let mut body = Vec::with_capacity(size);
        while body.len() < size {
            let b = self.read_frame().expect("content body");
            assert_eq!(b.kind, FRAME_BODY, "expected a content body, got {b:?}");
            body.extend_from_slice(&b.payload);
        }
        RawDelivery { delivery_tag, redelivered, body }
    }

    /// basic.ack of one delivery.
    pub fn ack(&mut self, ch: u16, delivery_tag: u64) {
        self.send(&method(ch, 60, 80, Args::new().u64(delivery_tag).u8(0)));
    }

    /// Drops the TCP connection without any AMQP close.
    pub fn drop_connection(self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        drop(self.sock);
    }
}
