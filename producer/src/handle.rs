//! Answering one request: a method call or a message, each in its own span, with the current
//! time, the caller's trace context and the configured padding.

use crate::metrics::ProducerMetrics;
use chrono::Utc;
use edge::seed::{TimeReply, TimeRequest, MESSAGE_ENDPOINT, METHOD_NAME};
use edge::{Message, MethodRequest, ModuleClient};
use std::time::Instant;
use tracing::Instrument;

/// A reply as sent: the seed's `UtcTime`, our trace context and the workload's padding.
#[derive(serde::Serialize)]
struct Reply<'a> {
    #[serde(flatten)]
    time: TimeReply,
    /// Built once at start-up (`REPLY_BYTES`); absent when empty, as the seed's reply.
    #[serde(skip_serializing_if = "str::is_empty")]
    padding: &'a str,
}

/// The reply's JSON, written in one buffer sized for it.
fn reply_body(padding: &str) -> serde_json::Result<Vec<u8>> {
    let mut time = TimeReply {
        utc_time: edge::time::round_trip(Utc::now()),
        trace: Default::default(),
    };
    telemetry::inject_current(|k, v| {
        time.trace.insert(k.to_owned(), v);
    });
    let mut body = Vec::with_capacity(padding.len() + 256);
    serde_json::to_writer(&mut body, &Reply { time, padding })?;
    Ok(body)
}

/// Answers a direct method call: `GetTimeMethod` with the time, anything else with 501.
pub(crate) async fn on_method(
    client: &ModuleClient,
    metrics: &ProducerMetrics,
    padding: &str,
    request: MethodRequest,
) {
    let started = Instant::now();
    if request.method != METHOD_NAME {
        tracing::warn!(method = %request.method, "unknown method; answering 501");
        let body = serde_json::json!({ "message": format!("method {} is not implemented; this producer answers {METHOD_NAME}", request.method) });
        let _ = client.respond(&request, 501, body.to_string()).await;
        return;
    }
    // The seed sent no payload; ours carries trace context.
    let carried: TimeRequest = serde_json::from_slice(&request.payload).unwrap_or_default();
    let span = tracing::info_span!(
        "handle GetTimeMethod",
        otel.kind = "server",
        kind = "method"
    );
    telemetry::set_remote_parent(&span, |k| carried.trace.get(k).map(String::as_str));
    async {
        let body = match reply_body(padding) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the reply");
                let _ = client.respond(&request, 500, "{}").await;
                return;
            }
        };
        if client.respond(&request, 200, body).await.is_err() {
            tracing::warn!("session closed before the method response was sent");
        }
    }
    .instrument(span)
    .await;
    metrics.method_handled.inc();
    metrics
        .method_duration
        .observe(started.elapsed().as_secs_f64());
}

/// Answers a `GetTimeMessage` input with the time on the output of that name; ignores other inputs.
pub(crate) async fn on_message(
    client: &ModuleClient,
    metrics: &ProducerMetrics,
    padding: &str,
    input: &str,
    message: Message,
) {
    let started = Instant::now();
    if input != MESSAGE_ENDPOINT {
        tracing::debug!(
            input,
            "message on an input this producer does not serve; ignored"
        );
        return;
    }
    let span = tracing::info_span!(
        "handle GetTimeMessage",
        otel.kind = "server",
        kind = "message"
    );
    telemetry::set_remote_parent(&span, |k| message.properties.get(k));
    async {
        let body = match reply_body(padding) {
            Ok(b) => b,
            Err(e) => return tracing::error!(error = %e, "cannot encode the reply"),
        };
        let mut reply = Message::new(body);
        if let Some(cid) = message.correlation_id() {
            reply.properties.insert(edge::bag::CORRELATION_ID, cid);
        }
        telemetry::inject_current(|k, v| reply.properties.insert(k, v));
        if client.send_output(MESSAGE_ENDPOINT, reply).await.is_err() {
            tracing::warn!("session closed before the reply was sent");
        }
    }
    .instrument(span)
    .await;
    metrics.message_handled.inc();
    metrics
        .message_duration
        .observe(started.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_carry_the_asked_padding_beside_the_seed_fields() {
        let body = reply_body(&edge::payload::padding(16 * 1024)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["padding"].as_str().map(str::len), Some(16 * 1024));
        let seed: TimeReply = serde_json::from_slice(&body).unwrap();
        assert!(
            edge::time::parse(&seed.utc_time).is_some(),
            "{}",
            seed.utc_time
        );
        // No padding: the seed's reply exactly.
        let plain: serde_json::Value = serde_json::from_slice(&reply_body("").unwrap()).unwrap();
        assert_eq!(plain.as_object().map(|o| o.len()), Some(1), "{plain}");
    }
}
