//! The module's metrics: the recorder's and the workload's series in one registry, served on
//! /metrics with the live HTML report (`GET /report`, from the run's log) and the watchdog's
//! /healthz.

use crate::config::Config;
use crate::recorder::Recorder;
use crate::report::collect::{self, RunLog};
use crate::workload::Workload;
use anyhow::Result;
use edge::ModuleIdentity;
use std::sync::Arc;

/// Where the run's figures go: what the exchanges record, what the requests carry, and the
/// report's log of intervals.
pub(crate) struct Metrics {
    pub recorder: Recorder,
    pub workload: Arc<Workload>,
    pub report_log: Arc<RunLog>,
}

impl Metrics {
    /// Registers the series and serves them; the server runs until it is dropped.
    pub(crate) async fn serve(
        config: &Config,
        identity: &ModuleIdentity,
        watchdog: &telemetry::Watchdog,
    ) -> Result<(Self, telemetry::MetricsServer)> {
        let mut registry = telemetry::new_registry("consumer");
        let recorder = Recorder::register(&mut registry);
        let workload = Workload::register(
            &mut registry,
            &config.request_sizes(),
            config.schedule.rate(),
        );
        let report_log = RunLog::new(config.kinds.clone(), collect::settings(config, identity));
        let server = telemetry::serve_module_metrics_watched(
            config.metrics_addr,
            registry,
            config.metrics_addr_file.as_deref(),
            Some(collect::pages(report_log.clone(), recorder.clone())),
            Some(watchdog.clone()),
        )
        .await?;
        let metrics = Self {
            recorder,
            workload,
            report_log,
        };
        Ok((metrics, server))
    }
}
