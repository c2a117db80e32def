//! W3C trace context carried in message properties and method payloads, and the current trace
//! id for exemplars. A carrier is anything that can set or get string pairs.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use std::fmt::Write as _;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct SetFn<F: FnMut(&str, String)>(F);
impl<F: FnMut(&str, String)> Injector for SetFn<F> {
    fn set(&mut self, key: &str, value: String) {
        (self.0)(key, value)
    }
}

struct GetFn<'a, F: Fn(&str) -> Option<&'a str>>(F, std::marker::PhantomData<&'a ()>);
impl<'a, F: Fn(&str) -> Option<&'a str>> Extractor for GetFn<'a, F> {
    fn get(&self, key: &str) -> Option<&str> {
        (self.0)(key)
    }
    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// Writes `traceparent` (and `tracestate` when set) of the current span through `set`.
/// Writes nothing when tracing is off or the span is not sampled-in.
pub fn inject_current(set: impl FnMut(&str, String)) {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    TraceContextPropagator::new().inject_context(&cx, &mut SetFn(set));
}

/// Makes the remote context read through `get` the parent of `span` (call before entering it).
pub fn set_remote_parent<'a>(span: &tracing::Span, get: impl Fn(&str) -> Option<&'a str>) {
    let parent = TraceContextPropagator::new().extract(&GetFn(get, std::marker::PhantomData));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// A trace id as an exemplar label value, written as 32 lower-case hex digits without allocating.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct TraceId(pub [u8; 16]);

impl EncodeLabelValue for TraceId {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for b in self.0 {
            write!(encoder, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The exemplar label set: `{trace_id="…"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceExemplar {
    pub trace_id: TraceId,
}

/// The current span's trace id when it is sampled (so an exemplar never points at a trace that
/// was not exported).
pub fn current_trace_id() -> Option<TraceExemplar> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    (sc.is_valid() && sc.is_sampled()).then(|| TraceExemplar {
        trace_id: TraceId(sc.trace_id().to_bytes()),
    })
}
