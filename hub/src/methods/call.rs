//! One direct method call, from the checked request body to the module's answer: the body read
//! without copying the payload, the target's session, the request over MQTT, the response
//! written around the module's payload as it came. Nothing here looks inside a payload.

use super::{message, respond, JSON};
use crate::state::{Hub, Session};
use bytes::Bytes;
use edge::payload::METHOD_PAYLOAD_LIMIT;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use rand::RngCore;
use rumqttc::mqttbytes::QoS;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A checked invocation request. The payload is a slice of the request body: it goes on to the
/// module as it came, unparsed and uncopied.
pub(super) struct Call<'a> {
    pub name: Cow<'a, str>,
    pub payload: Bytes,
    pub response_timeout: Duration,
    pub connect_timeout: Duration,
}

/// The request body's fields, each kept as the JSON text it was sent as.
#[derive(serde::Deserialize)]
struct Body<'a> {
    #[serde(rename = "methodName", borrow)]
    method_name: Option<&'a RawValue>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
    #[serde(rename = "responseTimeoutInSeconds", borrow)]
    response_timeout: Option<&'a RawValue>,
    #[serde(rename = "connectTimeoutInSeconds", borrow)]
    connect_timeout: Option<&'a RawValue>,
}

/// Checks the body as edgeHub's `TwinsController` does; the error is the text of its 400.
pub(super) fn validate(body: &Bytes) -> Result<Call<'_>, String> {
    let fields: Body<'_> = serde_json::from_slice(body)
        .map_err(|e| format!("The request body is not valid JSON: {e}"))?;
    let name = fields
        .method_name
        .and_then(|raw| string(raw.get()))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| "methodName is required".to_owned())?;
    if name.chars().count() > 100 {
        return Err("methodName cannot be longer than 100 characters".into());
    }
    let seconds = |raw: Option<&RawValue>, key: &str, default, lo, hi| -> Result<u64, String> {
        match raw.map(|r| serde_json::from_str::<Value>(r.get())) {
            None | Some(Ok(Value::Null)) => Ok(default),
            Some(Ok(v)) if v.as_u64().is_some_and(|s| (lo..=hi).contains(&s)) => {
                Ok(v.as_u64().unwrap_or(default))
            }
            Some(_) => Err(format!("{key} must be an integer between {lo} and {hi}")),
        }
    };
    let response = seconds(
        fields.response_timeout,
        "responseTimeoutInSeconds",
        30,
        5,
        300,
    )?;
    let connect = seconds(fields.connect_timeout, "connectTimeoutInSeconds", 0, 0, 300)?;
    let payload = match fields.payload.map(RawValue::get) {
        None | Some("null") => Bytes::new(),
        Some(raw) => body.slice_ref(raw.as_bytes()),
    };
    if payload.len() > METHOD_PAYLOAD_LIMIT {
        return Err(format!(
            "payload is {} bytes; the limit is {METHOD_PAYLOAD_LIMIT}",
            payload.len()
        ));
    }
    Ok(Call {
        name,
        payload,
        response_timeout: Duration::from_secs(response),
        connect_timeout: Duration::from_secs(connect),
    })
}

/// A JSON string's value: borrowed when it has no escapes (a method name never does).
fn string(json: &str) -> Option<Cow<'_, str>> {
    match serde_json::from_str::<&str>(json) {
        Ok(s) => Some(Cow::Borrowed(s)),
        Err(_) => serde_json::from_str::<String>(json).ok().map(Cow::Owned),
    }
}

/// A request id as edgeHub makes them: a random (version 4) GUID, lower case.
pub(crate) fn new_guid() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut id = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            id.push('-');
        }
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    id
}

/// Sends `call` to `module` of this device and answers with its response, or 404 when it is not
/// there, or 504 when it does not answer in time or its connection closes first.
pub(super) async fn invoke(
    hub: &Arc<Hub>,
    module: &str,
    target_name: &(dyn Fn() -> String + Sync),
    call: Call<'_>,
) -> Response<Full<Bytes>> {
    let not_found = || {
        message(
            StatusCode::NOT_FOUND,
            format!("Client {} not found", target_name()),
        )
    };
    let Some(session) = subscribed_target(hub, module, call.connect_timeout).await else {
        return not_found();
    };
    if let Some(delay) = hub.faults().delay(crate::faults::Path::Methods) {
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
    let forward = !hub.faults().drop(crate::faults::Path::Methods);
    // Requests go at the QoS the module subscribed with, at most 1 (IoT Hub has no QoS 2).
    let qos = match session.methods_qos() {
        Some(QoS::AtLeastOnce | QoS::ExactlyOnce) => QoS::AtLeastOnce,
        _ => QoS::AtMostOnce,
    };
    let topic = edge::topic::method_request(&call.name, &rid);
    if forward && session.publish(topic, call.payload, qos).await.is_err() {
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
        Some((status, payload)) => method_result(status, &payload),
        None => {
            hub.forget_method(&rid);
            message(
                StatusCode::GATEWAY_TIMEOUT,
                format!("Timed out waiting for device to respond to method request {rid}"),
            )
        }
    }
}

/// `{"status":…,"payload":…}` written around the module's payload as it came (one buffer, no
/// parse tree); a payload that is not JSON is passed on as a JSON string, an empty one as null.
fn method_result(status: u16, payload: &[u8]) -> Response<Full<Bytes>> {
    let mut out = Vec::with_capacity(payload.len() + 32);
    out.push(b'{');
    let _ = write!(out, "\"status\":{status},\"payload\":");
    if payload.is_empty() {
        out.extend_from_slice(b"null");
    } else if serde_json::from_slice::<&RawValue>(payload).is_ok() {
        out.extend_from_slice(payload);
    } else {
        let text = String::from_utf8_lossy(payload);
        if serde_json::to_writer(&mut out, &text).is_err() {
            return respond(StatusCode::INTERNAL_SERVER_ERROR, Value::Null);
        }
    }
    out.push(b'}');
    let mut r = Response::new(Full::new(Bytes::from(out)));
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, JSON);
    r
}

/// The target's session once it is subscribed to methods, waiting up to `connect_timeout` for
/// that (woken by each subscription, no polling). A call that had to wait is sent
/// `--method-subscribe-delay` after the subscription (edgeHub: a fixed 3 s,
/// `InvokeMethodHandler.cs`; the hub: none by default).
async fn subscribed_target(
    hub: &Hub,
    module: &str,
    connect_timeout: Duration,
) -> Option<Arc<Session>> {
    let subscribed = || hub.session(module).filter(|s| s.takes_methods());
    if let Some(s) = subscribed() {
        return Some(s);
    }
    let deadline = tokio::time::Instant::from_std(Instant::now() + connect_timeout);
    loop {
        // Registered before looking, so a subscription in between is not missed.
        let next = hub.next_methods_subscription();
        tokio::pin!(next);
        next.as_mut().enable();
        if subscribed().is_some() {
            break;
        }
        if tokio::time::timeout_at(deadline, next).await.is_err() {
            return None;
        }
    }
    let delay = hub.settings().method_subscribe_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    subscribed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_like_edgehub_and_passes_the_payload_through() {
        let body = Bytes::from_static(br#"{"methodName":"m","payload": {"a": 1}}"#);
        let ok = validate(&body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.response_timeout, Duration::from_secs(30));
        assert_eq!(ok.name, "m");
        // As sent, spaces and all: the module gets the caller's JSON.
        assert_eq!(&ok.payload[..], br#"{"a": 1}"#);
        let null = Bytes::from_static(br#"{"methodName":"m","payload":null}"#);
        assert!(validate(&null)
            .map(|c| c.payload.is_empty())
            .unwrap_or(false));
        let escaped = Bytes::from_static(br#"{"methodName":"a\u0062c"}"#);
        assert_eq!(
            validate(&escaped).map(|c| c.name.into_owned()).ok(),
            Some("abc".into())
        );
        for bad in [
            &br#"{"payload":1}"#[..],
            br#"not json"#,
            br#"{"methodName":5}"#,
            br#"{"methodName":""}"#,
            br#"{"methodName":"m","responseTimeoutInSeconds":4}"#,
            br#"{"methodName":"m","responseTimeoutInSeconds":301}"#,
            br#"{"methodName":"m","responseTimeoutInSeconds":"30"}"#,
            br#"{"methodName":"m","connectTimeoutInSeconds":-1}"#,
        ] {
            let body = Bytes::copy_from_slice(bad);
            assert!(validate(&body).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let long = Bytes::from(format!(r#"{{"methodName":"{}"}}"#, "x".repeat(101)));
        assert!(validate(&long).is_err());
        let big = format!(
            r#"{{"methodName":"m","payload":"{}"}}"#,
            "x".repeat(128 * 1024)
        );
        let e = validate(&Bytes::from(big)).err().unwrap_or_default();
        assert!(e.contains("the limit is 131072"), "{e}");
    }

    #[test]
    fn guids_look_like_guids() {
        let g = new_guid();
        assert_eq!(g.len(), 36);
        let groups: Vec<usize> = g.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&g[14..15], "4");
        assert!(g
            .chars()
            .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(g, new_guid());
    }

    #[test]
    fn results_wrap_the_payload_as_it_came() {
        use http_body_util::BodyExt as _;
        let body = |r: Response<Full<Bytes>>| futures_body(r.into_body().collect());
        fn futures_body(
            f: impl std::future::Future<
                Output = Result<http_body_util::Collected<Bytes>, std::convert::Infallible>,
            >,
        ) -> String {
            let rt = tokio::runtime::Builder::new_current_thread().build();
            let bytes = rt
                .ok()
                .and_then(|rt| rt.block_on(f).ok())
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        assert_eq!(
            body(method_result(200, br#"{"UtcTime":"x"}"#)),
            r#"{"status":200,"payload":{"UtcTime":"x"}}"#
        );
        assert_eq!(
            body(method_result(500, b"")),
            r#"{"status":500,"payload":null}"#
        );
        assert_eq!(
            body(method_result(200, b"not \"json\"")),
            r#"{"status":200,"payload":"not \"json\""}"#
        );
    }
}
