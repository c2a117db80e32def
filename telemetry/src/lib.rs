//! Observability shared by the hub and the modules: one Prometheus registry per process served on
//! `/metrics` (OpenMetrics with exemplars, or the classic text format), process and build-info
//! metrics, tracing with optional OTLP export, W3C trace-context carriers, and the modules'
//! watchdog with its `/healthz` and `healthcheck` client.
#![forbid(unsafe_code)]

pub mod carrier;
mod export_watch;
pub mod healthcheck;
pub mod metrics_server;
pub mod process;
pub mod tracing_setup;
pub mod watchdog;

pub use carrier::{current_trace_id, inject_current, set_remote_parent, TraceId};
pub use healthcheck::healthcheck;
pub use metrics_server::{
    serve_metrics, serve_metrics_watched, serve_metrics_with, serve_module_metrics,
    serve_module_metrics_watched, serve_module_metrics_with, MetricsServer, Pages,
};
pub use tracing_setup::{init_module_tracing, init_tracing, TraceOptions, Tracing};
pub use watchdog::{Progress, Pulse, Watchdog};

use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// A registry with the process collector and `iotedge_build_info{version,module}` already in it.
pub fn new_registry(module: &str) -> Registry {
    let mut registry = Registry::default();
    register_process_metrics(&mut registry, module);
    registry
}

/// Adds `process_*` and `iotedge_build_info{version,module}` to `registry`.
pub fn register_process_metrics(registry: &mut Registry, module: &str) {
    registry.register_collector(Box::new(process::ProcessCollector::new()));
    export_watch::register(registry);
    registry.register(
        "iotedge_build",
        "Build of this process: version and module name",
        Info::new(vec![
            ("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
            ("module".to_owned(), module.to_owned()),
        ]),
    );
}
