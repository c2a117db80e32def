//! Direct methods between modules: HTTPS `POST /twins/{d}/modules/{m}/methods` checked and answered
//! as edgeHub's TwinsController does (docs/protocol.md#invoking-a-direct-method-over-https),
//! forwarded over MQTT to the target module.

use crate::admission::{Admission, Ticket};
use crate::listener::{accept_loop, expelled, handshake};
use crate::metrics::{MethodDurationLabels, MethodLabels, MsTelemetry};
use crate::refusals::{Protocol, Reason};
use crate::state::Hub;
use bytes::Bytes;
use call::{invoke, validate};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use percent_encoding::percent_decode_str;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// A request body: edgeHub's HTTP limit; the payload inside is held to the method limit.
const MAX_BODY: usize = edge::topic::MAX_MESSAGE_SIZE;

mod call;
pub(crate) use call::new_guid;

/// Deadlines of the HTTPS side (the accept-to-authenticated deadline is the admission's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpLimits {
    /// For a request's headers, counted from when the connection starts waiting for them (so
    /// it is also how long an idle keep-alive connection stays open).
    pub header_timeout: Duration,
    /// For a request's body once its headers are in.
    pub body_timeout: Duration,
}

/// Serves direct-method calls over HTTPS on `listener`.
pub(crate) async fn serve(
    hub: Arc<Hub>,
    listener: TcpListener,
    tls: TlsAcceptor,
    admission: Arc<Admission>,
    limits: HttpLimits,
) {
    let https =
        move |hub, stream, peer, ticket| connection(hub, tls.clone(), stream, peer, ticket, limits);
    accept_loop(hub, listener, Protocol::Https, admission, https).await;
}

/// One HTTPS connection: the TLS handshake, then HTTP/1.1 requests answered by `handle` until
/// the client closes it, a deadline passes or the admission expels it.
async fn connection(
    hub: Arc<Hub>,
    tls: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    ticket: Ticket,
    limits: HttpLimits,
) {
    let ticket = Arc::new(ticket);
    let Some(stream) = handshake(&hub, Protocol::Https, &tls, stream, peer, &ticket).await else {
        return;
    };
    let conn = Arc::new(Connection::new(peer, limits, ticket.clone()));
    let service = {
        let (hub, conn) = (hub.clone(), conn.clone());
        service_fn(move |req| {
            let (hub, conn) = (hub.clone(), conn.clone());
            async move {
                let mut response = handle(&hub, &conn, req).await;
                if !conn.ticket.is_established() {
                    // A stranger gets its answer and the connection closes.
                    response.headers_mut().insert(
                        hyper::header::CONNECTION,
                        hyper::header::HeaderValue::from_static("close"),
                    );
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    // A client's pool may open a spare connection it never uses: closing that is an idle
    // close (counted as `idle`, logged at debug), not a refusal worth a warning.
    let spoke = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(FirstByte {
        inner: stream,
        seen: spoke.clone(),
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .serve_connection(io, service);
    let result = tokio::select! {
        r = served => r,
        e = ticket.expelled() => {
            if spoke.load(Ordering::Relaxed) {
                return expelled(&hub, Protocol::Https, peer, e);
            }
            return idle(&hub, peer);
        }
    };
    ended(&hub, &conn, spoke.load(Ordering::Relaxed), result);
}

/// Logs (and for a stranger, refuses) how a served connection ended: a timeout before any
/// request is an idle close, before authentication a refusal, after it a kept-alive connection
/// nobody used again.
fn ended(hub: &Hub, conn: &Connection, spoke: bool, result: Result<(), hyper::Error>) {
    let peer = conn.peer;
    let header_timeout = conn.limits.header_timeout;
    match result {
        Ok(()) => {}
        Err(e) if e.is_timeout() && !spoke => idle(hub, peer),
        Err(e) if e.is_timeout() && !conn.ticket.is_established() => conn.refuse(
            hub,
            Reason::HeaderTimeout,
            "",
            &format_args!("request headers not received within {header_timeout:?}"),
        ),
        Err(e) if e.is_timeout() => {
            tracing::debug!(%peer, "idle HTTPS connection closed after {header_timeout:?}")
        }
        Err(e) if e.is_parse() || e.is_parse_too_large() => conn.refuse(
            hub,
            Reason::BadRequest,
            "",
            &format_args!("malformed HTTP: {e}"),
        ),
        Err(e) => {
            tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error")
        }
    }
}

/// A connection that completed TLS and never sent a byte of a request is closed quietly.
fn idle(hub: &Hub, peer: SocketAddr) {
    hub.refusals().count(Protocol::Https, Reason::Idle);
    tracing::debug!(%peer, "closed an HTTPS connection that never sent a request");
}

/// The TLS stream, noting when the client first sends something.
struct FirstByte<S> {
    inner: S,
    seen: Arc<AtomicBool>,
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstByte<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.seen.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstByte<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

pub(super) const JSON: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");

fn respond(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, JSON);
    r
}

fn message(status: StatusCode, text: impl Into<String>) -> Response<Full<Bytes>> {
    respond(status, json!({ "message": text.into() }))
}

/// edgeHub answers validation failures with a plain JSON string.
fn bad_request(text: impl Into<String>) -> Response<Full<Bytes>> {
    respond(StatusCode::BAD_REQUEST, Value::String(text.into()))
}

/// `(device, Some(module))` or `(device, None)` from the request path, borrowed unless escaped.
fn target(path: &str) -> Option<(Cow<'_, str>, Option<Cow<'_, str>>)> {
    fn dec(s: &str) -> Option<Cow<'_, str>> {
        percent_decode_str(s)
            .decode_utf8()
            .ok()
            .filter(|s| !s.is_empty())
    }
    let mut parts = path.trim_matches('/').split('/');
    let (Some("twins"), Some(device)) = (parts.next(), parts.next()) else {
        return None;
    };
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("modules"), Some(module), Some("methods"), None) => {
            Some((dec(device)?, Some(dec(module)?)))
        }
        (Some("methods"), None, None, None) => Some((dec(device)?, None)),
        _ => None,
    }
}

/// Whether `pair` is `{a}/{b}`, without building it.
fn is_pair(pair: &str, a: &str, b: &str) -> bool {
    pair.len() == a.len() + 1 + b.len()
        && pair.starts_with(a)
        && pair.as_bytes()[a.len()] == b'/'
        && pair.ends_with(b)
}

/// What one HTTPS connection keeps between its requests. A module's client sends every call on
/// one kept-alive connection with the same token, usually to the same target, so the token is
/// verified and the metric handles resolved once, not per call (hyper serves one request of a
/// connection at a time: the locks are never contended).
struct Connection {
    peer: SocketAddr,
    limits: HttpLimits,
    ticket: Arc<Ticket>,
    /// The last token that verified, for whom, and its expiry (unix seconds): the same token for
    /// the same caller again before then needs no second verification, as edgeHub caches
    /// credentials.
    verified: Mutex<Option<Verified>>,
    /// The metric handles of the last caller → target pair.
    handles: Mutex<Option<Handles>>,
}

struct Verified {
    token: String,
    caller: String,
    expiry: u64,
}

struct Handles {
    caller: String,
    target: String,
    calls: Counter,
    duration: Histogram,
}

impl Connection {
    fn new(peer: SocketAddr, limits: HttpLimits, ticket: Arc<Ticket>) -> Self {
        Self {
            peer,
            limits,
            ticket,
            verified: Mutex::new(None),
            handles: Mutex::new(None),
        }
    }

    fn refuse(&self, hub: &Hub, reason: Reason, caller: &str, detail: &dyn std::fmt::Display) {
        hub.refusals()
            .refuse(Protocol::Https, reason, Some(self.peer), caller, detail);
    }
}

/// The answer to a refused request (boxed: only refusals pay for it).
type Refused = Box<Response<Full<Bytes>>>;

/// The calling module as `x-ms-edge-moduleId` names it: `{device}/{module}`.
struct Caller<'a> {
    name: &'a str,
    device: &'a str,
}

async fn handle(
    hub: &Arc<Hub>,
    conn: &Connection,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    if parts.method != Method::POST {
        let detail = format_args!("{} is not served", parts.method);
        conn.refuse(hub, Reason::MethodNotAllowed, "", &detail);
        return message(
            StatusCode::METHOD_NOT_ALLOWED,
            "only POST /twins/{deviceId}/modules/{moduleId}/methods is served here",
        );
    }
    let Some((device, module)) = target(parts.uri.path()) else {
        conn.refuse(hub, Reason::NoSuchResource, "", &"no such resource");
        return message(
            StatusCode::NOT_FOUND,
            format!("no such resource: {}", parts.uri.path()),
        );
    };
    let caller = match authenticate(hub, conn, &parts.headers) {
        Ok(c) => c,
        Err(refused) => return *refused,
    };
    if !conn.ticket.establish() {
        let detail = "every HTTPS connection place is taken (--max-https-connections)";
        conn.refuse(hub, Reason::ConnectionLimit, caller.name, &detail);
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many connections to the hub; retry later",
        );
    }
    let body = match read_body(hub, conn, &caller, body).await {
        Ok(b) => b,
        Err(refused) => return *refused,
    };
    let call = match validate(&body) {
        Ok(c) => c,
        Err(why) => {
            conn.refuse(hub, Reason::BadRequest, caller.name, &why);
            return bad_request(why);
        }
    };
    let target_name = || match &module {
        Some(m) => format!("{device}/{m}"),
        None => device.clone().into_owned(),
    };
    let (calls, duration) = handles(hub, conn, &caller, &device, module.as_deref());
    calls.inc();
    let started = Instant::now();
    let response = match module.as_deref() {
        Some(m) if device == hub.settings().device_id => invoke(hub, m, &target_name, call).await,
        _ => message(
            StatusCode::NOT_FOUND,
            format!("Client {} not found", target_name()),
        ),
    };
    if response.status() == StatusCode::NOT_FOUND {
        let detail = format_args!(
            "method target {} is not connected or not subscribed to methods",
            target_name()
        );
        conn.refuse(hub, Reason::TargetNotFound, caller.name, &detail);
    }
    duration.observe(started.elapsed().as_secs_f64());
    response
}

/// The caller named by `x-ms-edge-moduleId`, on this device, proven by its SAS token (the
/// verifier MQTT CONNECT uses, with the same refusal reasons); else the refusal's response.
fn authenticate<'h>(
    hub: &Hub,
    conn: &Connection,
    headers: &'h HeaderMap,
) -> Result<Caller<'h>, Refused> {
    let name = headers
        .get("x-ms-edge-moduleid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some((device, module)) = name
        .split_once('/')
        .filter(|(d, m)| !d.is_empty() && !m.is_empty())
    else {
        let detail = "x-ms-edge-moduleId is missing or not {device}/{module}";
        conn.refuse(hub, Reason::BadCallerHeader, "", &detail);
        return Err(Box::new(message(
            StatusCode::BAD_REQUEST,
            "Invalid header value for x-ms-edge-moduleId",
        )));
    };
    if device != hub.settings().device_id {
        let detail = "the caller names another device than this edge device";
        conn.refuse(hub, Reason::OtherDevice, "", &detail);
        return Err(Box::new(message(
            StatusCode::UNAUTHORIZED,
            "Only modules on the same device can invoke DirectMethods",
        )));
    }
    let caller = Caller { name, device };
    let token = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let now = edge::sas::now_unix();
    let mut verified = conn.verified.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(v) = verified.as_ref() {
        if now < v.expiry && v.token == token && v.caller == name {
            return Ok(caller);
        }
    }
    let hosts = [
        hub.settings().iothub_hostname.as_str(),
        hub.settings().gateway_hostname.as_str(),
    ];
    match hub.identities().verify(token, &hosts, device, module) {
        Ok(expiry) => {
            *verified = Some(Verified {
                token: token.to_owned(),
                caller: name.to_owned(),
                expiry,
            });
            Ok(caller)
        }
        Err(e) => {
            *verified = None;
            let known = hub.identities().keys(module).is_some();
            conn.refuse(hub, e.reason(), if known { name } else { "" }, &e);
            Err(Box::new(message(
                StatusCode::UNAUTHORIZED,
                format!("Unable to authenticate {name}: {e}"),
            )))
        }
    }
}

/// The request body, within its size and time limits.
async fn read_body(
    hub: &Hub,
    conn: &Connection,
    caller: &Caller<'_>,
    body: Incoming,
) -> Result<Bytes, Refused> {
    let timeout = conn.limits.body_timeout;
    match tokio::time::timeout(timeout, Limited::new(body, MAX_BODY).collect()).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(_)) => {
            let detail = format_args!("request body larger than {MAX_BODY} bytes");
            conn.refuse(hub, Reason::BodyTooLarge, caller.name, &detail);
            Err(Box::new(bad_request(format!(
                "The request body is larger than {MAX_BODY} bytes"
            ))))
        }
        Err(_) => {
            let detail = format_args!("request body not received within {timeout:?}");
            conn.refuse(hub, Reason::BodyTimeout, caller.name, &detail);
            Err(Box::new(bad_request(format!(
                "The request body was not received within {timeout:?}"
            ))))
        }
    }
}

/// The count and duration handles of this caller → target pair: kept from the connection's
/// previous call when it was the same pair, else resolved (and kept). As edgeHub: the count
/// names the calling module, the duration only its device.
fn handles(
    hub: &Hub,
    conn: &Connection,
    caller: &Caller<'_>,
    device: &str,
    module: Option<&str>,
) -> (Counter, Histogram) {
    let mut kept = conn.handles.lock().unwrap_or_else(|e| e.into_inner());
    let same = kept.as_ref().is_some_and(|h| {
        h.caller == caller.name
            && match module {
                Some(m) => is_pair(&h.target, device, m),
                None => h.target == device,
            }
    });
    let h = match kept.as_mut() {
        Some(h) if same => h,
        _ => kept.insert(resolve_handles(hub, caller, device, module)),
    };
    (h.calls.clone(), h.duration.clone())
}

fn resolve_handles(hub: &Hub, caller: &Caller<'_>, device: &str, module: Option<&str>) -> Handles {
    let target = match module {
        Some(m) => format!("{device}/{m}"),
        None => device.to_owned(),
    };
    let calls = MethodLabels {
        from: caller.name.to_owned(),
        to: target.clone(),
        ms_telemetry: MsTelemetry,
    };
    let duration = MethodDurationLabels {
        from: caller.device.to_owned(),
        to: target.clone(),
    };
    Handles {
        caller: caller.name.to_owned(),
        calls: hub.metrics().direct_methods.get_or_create(&calls).clone(),
        duration: hub
            .metrics()
            .direct_method_duration
            .get_or_create(&duration)
            .clone(),
        target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let t = |p: &str| target(p).map(|(d, m)| (d.into_owned(), m.map(Cow::into_owned)));
        assert_eq!(
            t("/twins/d/modules/m/methods"),
            Some(("d".into(), Some("m".into())))
        );
        assert_eq!(t("/twins/d%2Dx/methods"), Some(("d-x".into(), None)));
        assert_eq!(t("/twins//modules/m/methods"), None);
        assert_eq!(t("/twins/d/modules/m/methods/x"), None);
        assert_eq!(t("/other"), None);
    }

    #[test]
    fn pairs_compare_without_building_them() {
        assert!(is_pair("dev/mod", "dev", "mod"));
        assert!(!is_pair("dev/mod", "de", "v/mod"));
        assert!(!is_pair("dev/mod", "dev", "mo"));
    }
}
