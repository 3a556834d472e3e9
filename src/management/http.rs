//! HTTP/1.1 serving for the broker's HTTP endpoints: hyper on one thread with a
//! current-thread tokio runtime, a listener of its own, and plain `Request` → `Response`
//! handlers that know nothing of hyper (so they are testable without a socket).
//!
//! The management API uses it now; the Prometheus endpoint (a second listener) and the web
//! UI's static assets are meant to be served by the same machinery. Each request's body is
//! read whole, up to `BODY_MAX_BYTES` (413 beyond), within `REQUEST_TIMEOUT` (a slow or
//! half-sent request is closed); the handler then runs on a small pool of blocking threads,
//! because it waits for the shards' answers. Nothing here touches shard state.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

/// The largest request body read (a definitions import travels in one).
pub const BODY_MAX_BYTES: usize = 32 * 1024 * 1024;
/// A body declared larger than `BODY_MAX_BYTES` but at most this is read and dropped before
/// the 413, so the client sees the answer; a larger one is answered at once.
const DRAIN_MAX_BYTES: u64 = 2 * BODY_MAX_BYTES as u64;
/// A request's headers and body must arrive within this time; the connection is closed after.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed at accept.
const CONNECTIONS_MAX: usize = 512;
/// Threads that run handlers (they wait on the shards).
const HANDLER_THREADS: usize = 4;

/// A request as a handler sees it: the body read whole.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path as sent, still percent-encoded.
    pub path: String,
    /// The query string without `?` ("" without one).
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub peer: SocketAddr,
    pub body: Bytes,
}

impl Request {
    /// A header's value (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response {
        Response { status, headers: vec![("content-type", content_type.to_string())], body: body.into() }
    }

    pub fn empty(status: u16) -> Response {
        Response { status, headers: Vec::new(), body: Bytes::new() }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// A listener served on its own thread until `stop`.
pub struct HttpServer {
    pub address: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<tokio::sync::Notify>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.waker.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shut();
        }
    }
}

/// Binds `address` (errors are the caller's to report at start).
pub fn bind(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves `handler` on `listener` on a thread named `name`.
pub fn serve(name: &str, listener: std::net::TcpListener, handler: Handler) -> std::io::Result<HttpServer> {
    let address = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(HANDLER_THREADS)
        .thread_name(format!("{name}-handler"))
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let waker = Arc::new(tokio::sync::Notify::new());
    let (stopping, woken) = (stop.clone(), waker.clone());
    let thread = std::thread::Builder::new().name(name.to_string()).spawn(move || {
        runtime.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(error) => {
                    crate::error!("HTTP listener on {address} cannot be used: {error}");
                    return;
                }
            };
            accept_loop(listener, handler, stopping, woken).await;
        });
    })?;
    Ok(HttpServer { address, stop, waker, thread: Some(thread) })
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    handler: Handler,
    stop: Arc<AtomicBool>,
    waker: Arc<tokio::sync::Notify>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = waker.notified() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                crate::warn!("HTTP accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= CONNECTIONS_MAX {
            continue;
        }
        let _ = stream.set_nodelay(true);
        open.fetch_add(1, Ordering::Relaxed);
        let (handler, open) = (handler.clone(), open.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(request, peer, handler.clone()));
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(REQUEST_TIMEOUT)
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), service);
            let _ = connection.await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn respond(
    request: hyper::Request<Incoming>,
    peer: SocketAddr,
    handler: Handler,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, mut body) = request.into_parts();
    let too_large = || {
        to_hyper(super::api::error_response(
            413,
            "payload_too_large",
            format!("the request body is over {BODY_MAX_BYTES} bytes"),
        ))
    };
    let declared = parts.headers.get(hyper::header::CONTENT_LENGTH).and_then(|value| value.to_str().ok());
    if let Some(length) =
        declared.and_then(|value| value.parse::<u64>().ok()).filter(|length| *length > BODY_MAX_BYTES as u64)
    {
        // Read the body (within bounds) before answering: closing a socket with unread bytes
        // resets it, and a client still sending would lose the 413 with the reset.
        if length <= DRAIN_MAX_BYTES {
            let drain = async { while let Some(Ok(_)) = body.frame().await {} };
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, drain).await;
        }
        return Ok(too_large());
    }
    let body = match tokio::time::timeout(REQUEST_TIMEOUT, Limited::new(body, BODY_MAX_BYTES).collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return Ok(too_large());
        }
        // A body cut short or too slow: nothing sensible to answer, the connection goes.
        _ => return Ok(close_now()),
    };
    let request = Request {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers: parts
            .headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
            .collect(),
        peer,
        body,
    };
    let response = match tokio::task::spawn_blocking(move || handler(request)).await {
        Ok(response) => response,
        Err(_) => super::api::error_response(500, "internal_server_error", "the request handler failed"),
    };
    Ok(to_hyper(response))
}

fn to_hyper(response: Response) -> hyper::Response<Full<Bytes>> {
    let mut built = hyper::Response::builder().status(response.status);
    for (name, value) in &response.headers {
        built = built.header(*name, value.as_str());
    }
    built.body(Full::new(response.body)).unwrap_or_else(|_| close_now())
}

fn close_now() -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = hyper::StatusCode::REQUEST_TIMEOUT;
    response.headers_mut().insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
    response
}
