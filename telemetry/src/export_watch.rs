//! OTLP export failures made visible: every failed export is counted
//! (`iotedge_otlp_export_failures_total`, spans lost in `iotedge_otlp_spans_lost_total`) and
//! warned about naming the endpoint, at most once a minute with the number since the last line.
//! Export runs on the batch processor's own thread; the exchange path only hands spans to its
//! bounded queue and never waits for the collector.

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often a failing collector is mentioned in the log.
const WARN_EVERY: Duration = Duration::from_secs(60);

struct ExportMetrics {
    failures: Counter,
    spans_lost: Counter,
}

fn metrics() -> &'static ExportMetrics {
    static METRICS: OnceLock<ExportMetrics> = OnceLock::new();
    METRICS.get_or_init(|| ExportMetrics {
        failures: Counter::default(),
        spans_lost: Counter::default(),
    })
}

/// Registers the export-failure counters (zero while nothing is exported).
pub(crate) fn register(registry: &mut Registry) {
    let m = metrics();
    registry.register(
        "iotedge_otlp_export_failures",
        "OTLP span exports that failed (collector unreachable, refused or timed out)",
        m.failures.clone(),
    );
    registry.register(
        "iotedge_otlp_spans_lost",
        "Spans in OTLP exports that failed",
        m.spans_lost.clone(),
    );
}

/// Wraps the OTLP exporter: the same exports, with failures counted and logged.
#[derive(Debug)]
pub(crate) struct WatchedExporter<E> {
    inner: E,
    endpoint: String,
    /// When the last warning was written, and failures since.
    warned: Mutex<(Option<Instant>, u64)>,
}

impl<E> WatchedExporter<E> {
    pub(crate) fn new(inner: E, endpoint: &str) -> Self {
        Self {
            inner,
            endpoint: endpoint.to_owned(),
            warned: Mutex::new((None, 0)),
        }
    }

    fn failed(&self, spans: usize, error: &dyn std::fmt::Display) {
        let m = metrics();
        m.failures.inc();
        m.spans_lost.inc_by(spans as u64);
        let Ok(mut warned) = self.warned.lock() else {
            return;
        };
        warned.1 += 1;
        let due = warned.0.is_none_or(|at| at.elapsed() >= WARN_EVERY);
        if due {
            let failures = std::mem::take(&mut warned.1);
            warned.0 = Some(Instant::now());
            tracing::warn!(endpoint = %self.endpoint, failures, "OTLP export to {} failed: {error}; spans are dropped, exchanges go on (counted in iotedge_otlp_export_failures_total; next warning in a minute at the earliest)", self.endpoint);
        }
    }
}

impl<E: SpanExporter> SpanExporter for WatchedExporter<E> {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let spans = batch.len();
        let export = self.inner.export(batch);
        async move {
            let result = export.await;
            if let Err(e) = &result {
                self.failed(spans, e);
            }
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}
