//! Direct methods between modules: HTTPS `POST /twins/{d}/modules/{m}/methods` checked and answered
//! as edgeHub's TwinsController does (docs/protocol.md#invoking-a-direct-method-over-https),
//! forwarded over MQTT to the target module.

use crate::admission::{Admission, Ticket};
use crate::listener::{accept_loop, expelled, handshake};
use crate::metrics::{MethodDurationLabels, MethodLabels, MsTelemetry};
use crate::refusals::{Protocol, Reason};
use crate::state::Hub;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use percent_encoding::percent_decode_str;
use rand::RngCore;
use rumqttc::mqttbytes::QoS;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const MAX_BODY: usize = 256 * 1024;
const MAX_PAYLOAD: usize = 128 * 1024;

/// Deadlines of the HTTPS side (the accept-to-authenticated deadline is the admission's).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpLimits {
    /// For a request's headers, counted from when the connection starts waiting for them (so
    /// it is also how long an idle keep-alive connection stays open).
    pub header_timeout: Duration,
    /// For a request's body once its headers are in.
    pub body_timeout: Duration,
}

pub(crate) async fn serve(
    hub: Arc<Hub>,
    listener: TcpListener,
    tls: TlsAcceptor,
    admission: Arc<Admission>,
    limits: HttpLimits,
) {
    let https = move |hub: Arc<Hub>, stream, peer, ticket| {
        let tls = tls.clone();
        async move {
            let refuse = |reason, detail: &dyn std::fmt::Display| {
                hub.refusals
                    .refuse(Protocol::Https, reason, Some(peer), "", detail)
            };
            let ticket = Arc::new(ticket);
            let Some(stream) = handshake(&hub, Protocol::Https, &tls, stream, peer, &ticket).await
            else {
                return;
            };
            let service = {
                let (hub, ticket) = (hub.clone(), ticket.clone());
                service_fn(move |req| {
                    let (hub, ticket) = (hub.clone(), ticket.clone());
                    async move {
                        let mut response = handle(&hub, &ticket, peer, limits, req).await;
                        if !ticket.is_established() {
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
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true)
                .serve_connection(
                    TokioIo::new(FirstByte {
                        inner: stream,
                        seen: spoke.clone(),
                    }),
                    service,
                );
            let result = tokio::select! {
                r = conn => r,
                e = ticket.expelled() => {
                    if spoke.load(Ordering::Relaxed) {
                        return expelled(&hub, Protocol::Https, peer, e);
                    }
                    return idle(&hub, peer);
                }
            };
            match result {
                Ok(()) => {}
                Err(e) if e.is_timeout() && !spoke.load(Ordering::Relaxed) => idle(&hub, peer),
                Err(e) if e.is_timeout() && !ticket.is_established() => refuse(
                    Reason::HeaderTimeout,
                    &format_args!(
                        "request headers not received within {:?}",
                        limits.header_timeout
                    ),
                ),
                Err(e) if e.is_timeout() => {
                    tracing::debug!(%peer, "idle HTTPS connection closed after {:?}", limits.header_timeout)
                }
                Err(e) if e.is_parse() || e.is_parse_too_large() => {
                    refuse(Reason::BadRequest, &format_args!("malformed HTTP: {e}"))
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error")
                }
            }
        }
    };
    accept_loop(hub, listener, Protocol::Https, admission, https).await;
}

/// A connection that completed TLS and never sent a byte of a request is closed quietly.
fn idle(hub: &Hub, peer: SocketAddr) {
    hub.refusals.count(Protocol::Https, Reason::Idle);
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

fn respond(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

fn message(status: StatusCode, text: impl Into<String>) -> Response<Full<Bytes>> {
    respond(status, json!({ "message": text.into() }))
}

/// edgeHub answers validation failures with a plain JSON string.
fn bad_request(text: impl Into<String>) -> Response<Full<Bytes>> {
    respond(StatusCode::BAD_REQUEST, Value::String(text.into()))
}

/// `(device, Some(module))` or `(device, None)` from the request path.
fn target(path: &str) -> Option<(String, Option<String>)> {
    let dec = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
            .filter(|s| !s.is_empty())
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["twins", d, "modules", m, "methods"] => Some((dec(d)?, Some(dec(m)?))),
        ["twins", d, "methods"] => Some((dec(d)?, None)),
        _ => None,
    }
}

struct Call {
    name: String,
    payload: Bytes,
    response_timeout: Duration,
    connect_timeout: Duration,
}

fn validate(body: &[u8]) -> Result<Call, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("The request body is not valid JSON: {e}"))?;
    let name = v.get("methodName").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        return Err("methodName is required".into());
    }
    if name.chars().count() > 100 {
        return Err("methodName cannot be longer than 100 characters".into());
    }
    let seconds = |key: &str, default: u64, lo: u64, hi: u64| -> Result<u64, String> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(x) => match x.as_u64() {
                Some(s) if (lo..=hi).contains(&s) => Ok(s),
                _ => Err(format!("{key} must be an integer between {lo} and {hi}")),
            },
        }
    };
    let response = seconds("responseTimeoutInSeconds", 30, 5, 300)?;
    let connect = seconds("connectTimeoutInSeconds", 0, 0, 300)?;
    let payload = match v.get("payload") {
        None | Some(Value::Null) => Bytes::new(),
        Some(p) => Bytes::from(p.to_string()),
    };
    if payload.len() > MAX_PAYLOAD {
        return Err(format!(
            "payload is {} bytes; the limit is {MAX_PAYLOAD}",
            payload.len()
        ));
    }
    Ok(Call {
        name: name.to_owned(),
        payload,
        response_timeout: Duration::from_secs(response),
        connect_timeout: Duration::from_secs(connect),
    })
}

pub(crate) fn new_guid() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

async fn handle(
    hub: &Arc<Hub>,
    ticket: &Ticket,
    peer: SocketAddr,
    limits: HttpLimits,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let refuse = |reason: Reason, caller: &str, detail: &str| {
        hub.refusals
            .refuse(Protocol::Https, reason, Some(peer), caller, &detail)
    };
    if req.method() != Method::POST {
        refuse(
            Reason::MethodNotAllowed,
            "",
            &format!("{} is not served", req.method()),
        );
        return message(
            StatusCode::METHOD_NOT_ALLOWED,
            "only POST /twins/{deviceId}/modules/{moduleId}/methods is served here",
        );
    }
    let Some((device, module)) = target(req.uri().path()) else {
        refuse(Reason::NoSuchResource, "", "no such resource");
        return message(
            StatusCode::NOT_FOUND,
            format!("no such resource: {}", req.uri().path()),
        );
    };
    // The caller: x-ms-edge-moduleId names it, the SAS token must prove it.
    let caller = req
        .headers()
        .get("x-ms-edge-moduleid")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once('/'))
        .map(|(d, m)| (d.to_owned(), m.to_owned()));
    let Some((caller_device, caller_module)) =
        caller.filter(|(d, m)| !d.is_empty() && !m.is_empty())
    else {
        refuse(
            Reason::BadCallerHeader,
            "",
            "x-ms-edge-moduleId is missing or not {device}/{module}",
        );
        return message(
            StatusCode::BAD_REQUEST,
            "Invalid header value for x-ms-edge-moduleId",
        );
    };
    let caller_name = format!("{caller_device}/{caller_module}");
    if caller_device != hub.settings.device_id {
        refuse(
            Reason::OtherDevice,
            "",
            "the caller names another device than this edge device",
        );
        return message(
            StatusCode::UNAUTHORIZED,
            "Only modules on the same device can invoke DirectMethods",
        );
    }
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let hosts = [
        hub.settings.iothub_hostname.as_str(),
        hub.settings.gateway_hostname.as_str(),
    ];
    let verified = (hub.identities).verify(auth, &hosts, &caller_device, &caller_module);
    if let Err(why) = verified.map_err(|e| e.to_string()) {
        let known = hub.identities.keys(&caller_module).is_some();
        refuse(
            Reason::Unauthorized,
            if known { &caller_name } else { "" },
            &why,
        );
        return message(
            StatusCode::UNAUTHORIZED,
            format!("Unable to authenticate {caller_device}/{caller_module}: {why}"),
        );
    }
    if !ticket.establish() {
        refuse(
            Reason::ConnectionLimit,
            &caller_name,
            "every HTTPS connection place is taken (--max-https-connections)",
        );
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many connections to the hub; retry later",
        );
    }
    let body = tokio::time::timeout(
        limits.body_timeout,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await;
    let body = match body {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => {
            refuse(
                Reason::BodyTooLarge,
                &caller_name,
                &format!("request body larger than {MAX_BODY} bytes"),
            );
            return bad_request(format!("The request body is larger than {MAX_BODY} bytes"));
        }
        Err(_) => {
            refuse(
                Reason::BodyTimeout,
                &caller_name,
                &format!("request body not received within {:?}", limits.body_timeout),
            );
            return bad_request(format!(
                "The request body was not received within {:?}",
                limits.body_timeout
            ));
        }
    };
    let call = match validate(&body) {
        Ok(c) => c,
        Err(why) => {
            refuse(Reason::BadRequest, &caller_name, &why);
            return bad_request(why);
        }
    };
    let target_name = match &module {
        Some(m) => format!("{device}/{m}"),
        None => device.clone(),
    };
    // As edgeHub: the count names the calling module, the duration only its device.
    let labels = MethodLabels {
        from: caller_name.clone(),
        to: target_name.clone(),
        ms_telemetry: MsTelemetry,
    };
    hub.metrics.direct_methods.get_or_create(&labels).inc();
    let duration_labels = MethodDurationLabels {
        from: caller_device.clone(),
        to: target_name.clone(),
    };
    let started = Instant::now();
    let response = invoke(hub, &device, module.as_deref(), &target_name, call).await;
    if response.status() == StatusCode::NOT_FOUND {
        refuse(
            Reason::TargetNotFound,
            &caller_name,
            &format!("method target {target_name} is not connected or not subscribed to methods"),
        );
    }
    hub.metrics
        .direct_method_duration
        .get_or_create(&duration_labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn invoke(
    hub: &Arc<Hub>,
    device: &str,
    module: Option<&str>,
    target_name: &str,
    call: Call,
) -> Response<Full<Bytes>> {
    let not_found = || {
        message(
            StatusCode::NOT_FOUND,
            format!("Client {target_name} not found"),
        )
    };
    let (Some(module), true) = (module, device == hub.settings.device_id) else {
        return not_found();
    };
    let Some(session) = subscribed_target(hub, module, call.connect_timeout).await else {
        return not_found();
    };
    if let Some(delay) = hub.faults.delay(crate::faults::Path::Methods) {
        tokio::time::sleep(delay).await;
    }
    let rid = new_guid();
    let answer = hub.expect_method_response(&rid, session.id);
    // The call belongs to this connection: if it closes first, edgeHub answers 504 at once
    // (`DeviceMessageHandler`), and no later connection's response is taken.
    let closed = session.closed.notified();
    tokio::pin!(closed);
    closed.as_mut().enable();
    // Fault injection: never forwarded, so the caller gets edgeHub's 504 after its timeout.
    let forward = !hub.faults.drop(crate::faults::Path::Methods);
    let qos = if session.methods.load(Ordering::SeqCst) > 1 {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    };
    if forward
        && session
            .publish(
                edge::topic::method_request(&call.name, &rid),
                call.payload,
                qos,
            )
            .await
            .is_err()
    {
        hub.forget_method(&rid);
        return not_found();
    }
    let answered = tokio::select! {
        biased;
        r = tokio::time::timeout(call.response_timeout, answer) => r.ok().and_then(Result::ok),
        _ = &mut closed => None,
        _ = std::future::ready(()), if session.is_closed.load(Ordering::SeqCst) => None,
    };
    match answered {
        Some((status, payload)) => {
            let payload = if payload.is_empty() {
                Value::Null
            } else {
                // A module may answer with something that is not JSON; pass it on as a string.
                serde_json::from_slice(&payload).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&payload).into_owned())
                })
            };
            respond(
                StatusCode::OK,
                json!({ "status": status, "payload": payload }),
            )
        }
        None => {
            hub.forget_method(&rid);
            message(
                StatusCode::GATEWAY_TIMEOUT,
                format!("Timed out waiting for device to respond to method request {rid}"),
            )
        }
    }
}

/// The target's session once it is subscribed to methods, waiting up to `connect_timeout` for
/// that. A call that had to wait is sent `--method-subscribe-delay` after the subscription
/// (edgeHub: a fixed 3 s, `InvokeMethodHandler.cs`; the hub: none by default).
async fn subscribed_target(
    hub: &Hub,
    module: &str,
    connect_timeout: Duration,
) -> Option<Arc<crate::state::Session>> {
    let subscribed = || hub.session(module).filter(|s| s.takes_methods());
    if let Some(s) = subscribed() {
        return Some(s);
    }
    let deadline = Instant::now() + connect_timeout;
    loop {
        if subscribed().is_some() {
            break;
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delay = hub.settings.method_subscribe_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    subscribed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        assert_eq!(
            target("/twins/d/modules/m/methods"),
            Some(("d".into(), Some("m".into())))
        );
        assert_eq!(target("/twins/d%2Dx/methods"), Some(("d-x".into(), None)));
        assert_eq!(target("/twins//modules/m/methods"), None);
        assert_eq!(target("/other"), None);
    }

    #[test]
    fn validates_like_edgehub() {
        let ok = validate(br#"{"methodName":"m","payload":{"a":1}}"#).unwrap();
        assert_eq!(ok.response_timeout, Duration::from_secs(30));
        assert_eq!(&ok.payload[..], br#"{"a":1}"#);
        assert!(validate(br#"{"methodName":"m","payload":null}"#)
            .unwrap()
            .payload
            .is_empty());
        for bad in [
            &br#"{"payload":1}"#[..],
            br#"not json"#,
            br#"{"methodName":"m","responseTimeoutInSeconds":4}"#,
            br#"{"methodName":"m","responseTimeoutInSeconds":301}"#,
            br#"{"methodName":"m","connectTimeoutInSeconds":-1}"#,
        ] {
            assert!(validate(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let long = format!(r#"{{"methodName":"{}"}}"#, "x".repeat(101));
        assert!(validate(long.as_bytes()).is_err());
    }

    #[test]
    fn guids_look_like_guids() {
        let g = new_guid();
        assert_eq!(g.len(), 36);
        assert_eq!(g.matches('-').count(), 4);
    }
}
