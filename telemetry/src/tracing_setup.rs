//! Logs through `tracing` (RUST_LOG respected) and, when an OTLP endpoint is configured, spans
//! exported over gRPC or HTTP/protobuf. No endpoint means no exporter and no cost.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

/// Where and how to export spans. [`TraceOptions::from_env`] reads the standard `OTEL_*` variables.
#[derive(Debug, Clone)]
pub struct TraceOptions {
    pub service_name: String,
    /// Full traces URL for HTTP (…/v1/traces) or the gRPC endpoint; `None` disables export.
    pub endpoint: Option<String>,
    pub protocol: OtlpProtocol,
    /// Parent-based ratio sampler; `None` leaves the SDK's default (`OTEL_TRACES_SAMPLER*` or always on).
    pub sample_ratio: Option<f64>,
}

impl TraceOptions {
    /// Logs only, no span export.
    pub fn disabled(service: &str) -> Self {
        Self {
            service_name: service.to_owned(),
            endpoint: None,
            protocol: OtlpProtocol::HttpProtobuf,
            sample_ratio: None,
        }
    }

    pub fn from_env(default_service: &str) -> Result<Self, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let protocol = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .as_deref()
        {
            None | Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
            Some("grpc") => OtlpProtocol::Grpc,
            Some(other) => {
                return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported: use grpc or http/protobuf"
            ))
            }
        };
        // The signal-specific endpoint is used as is; the generic one gets /v1/traces for HTTP.
        let endpoint = match (
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(e), _) => Some(e),
            (None, Some(base)) if protocol == OtlpProtocol::HttpProtobuf => {
                Some(format!("{}/v1/traces", base.trim_end_matches('/')))
            }
            (None, base) => base,
        };
        Ok(Self {
            service_name: var("OTEL_SERVICE_NAME").unwrap_or_else(|| default_service.to_owned()),
            endpoint,
            protocol,
            sample_ratio: None,
        })
    }
}

/// Keeps the exporter alive; [`Tracing::shutdown`] flushes pending spans.
pub struct Tracing {
    provider: Option<SdkTracerProvider>,
}

impl Tracing {
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes and stops the exporter (off the async workers: the SDK call blocks).
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let _ = tokio::task::spawn_blocking(move || {
                let _ = provider.force_flush();
                let _ = provider.shutdown_with_timeout(Duration::from_secs(5));
            })
            .await;
        }
    }
}

/// Installs the global subscriber: logs to stderr, spans to OTLP when configured.
/// Must run inside a tokio runtime (the gRPC exporter needs one).
pub fn init_tracing(options: &TraceOptions) -> Result<Tracing, String> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    let Some(endpoint) = options.endpoint.as_deref() else {
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(fmt)
            .try_init();
        return Ok(Tracing { provider: None });
    };
    let exporter = match options.protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(5))
            .build(),
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(5))
            .build(),
    }
    .map_err(|e| format!("cannot set up the OTLP exporter for {endpoint}: {e}"))?;
    let exporter = crate::export_watch::WatchedExporter::new(exporter, endpoint);
    let resource = Resource::builder()
        .with_service_name(options.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.namespace",
            "iotedge-method-vs-message",
        ))
        .build();
    let mut builder = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource);
    if let Some(ratio) = options.sample_ratio {
        builder = builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))));
    }
    let provider = builder.build();
    let tracer = provider.tracer(options.service_name.clone());
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .try_init();
    tracing::info!(endpoint, protocol = ?options.protocol, service = %options.service_name, "exporting traces over OTLP");
    Ok(Tracing {
        provider: Some(provider),
    })
}

/// A module's tracing: the standard `OTEL_*` environment, with `sample_ratio` when one is given.
pub fn init_module_tracing(service: &str, sample_ratio: Option<f64>) -> anyhow::Result<Tracing> {
    let mut options = TraceOptions::from_env(service).map_err(anyhow::Error::msg)?;
    options.sample_ratio = sample_ratio.or(options.sample_ratio);
    init_tracing(&options).map_err(anyhow::Error::msg)
}
