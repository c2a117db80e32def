//! The run's summaries: one every interval (or one per sweep step) until the run is stopped, then
//! at exit the last (partial) interval, the whole run, the sweep's table and the HTML report.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::output::Output;
use crate::recorder::Recorder;
use crate::render::SummaryScope;
use crate::report::collect::{self, RunLog};
use crate::schedule::OpenLoop;
use crate::sweep::{self, StepResult};
use crate::workload::Workload;
use anyhow::Result;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the summaries read and where they go.
pub(crate) struct Summaries<'a> {
    config: &'a Config,
    recorder: &'a Recorder,
    workload: &'a Workload,
    report_log: &'a Arc<RunLog>,
    output: Output,
}

/// How far the summaries got when the run stopped.
pub(crate) struct Measured {
    /// When the loops had started: the whole run's length counts from here.
    started: Instant,
    /// When the last interval was taken (the partial one at exit starts there).
    last: Instant,
    /// A sweep's steps that ran to their end.
    steps: Option<Vec<StepResult>>,
}

impl<'a> Summaries<'a> {
    pub(crate) fn new(config: &'a Config, metrics: &'a Metrics) -> Self {
        Self {
            config,
            recorder: &metrics.recorder,
            workload: &metrics.workload,
            report_log: &metrics.report_log,
            output: Output::new(config),
        }
    }
}

impl Summaries<'_> {
    /// Prints a summary every interval until `stop` is cancelled; a sweep's steps are its
    /// summaries instead, and it ends after the last one.
    pub(crate) async fn until_stopped(
        &self,
        stop: &CancellationToken,
        open_loop: Option<&OpenLoop>,
    ) -> Measured {
        let started = Instant::now();
        match &self.config.plan {
            Some(plan) => {
                let driver = sweep::Driver {
                    plan,
                    recorder: self.recorder,
                    workload: self.workload,
                    open_loop,
                    report_log: self.report_log,
                    output: &self.output,
                };
                Measured {
                    started,
                    last: started,
                    steps: Some(driver.run(stop).await),
                }
            }
            None => Measured {
                started,
                last: self.every_interval(stop).await,
                steps: None,
            },
        }
    }

    /// The interval summaries; returns when the last one was taken.
    async fn every_interval(&self, stop: &CancellationToken) -> Instant {
        let interval = self.config.summary_interval;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let stats = self.recorder.take_interval();
                    // The next interval starts now, not once this one is printed.
                    last = Instant::now();
                    self.report_log.interval(&stats, interval);
                    self.output.print(SummaryScope::Interval, stats, interval).await;
                }
                _ = stop.cancelled() => return last,
            }
        }
    }

    /// Once the loops have ended and the late replies are in: the last (partial) interval, the
    /// whole run, the sweep's table; the report's file if one is asked for (its error, if any,
    /// is the run's).
    pub(crate) async fn at_exit(&self, measured: Measured) -> Result<()> {
        if self.config.plan.is_none() {
            let (stats, covered) = (self.recorder.take_interval(), measured.last.elapsed());
            self.report_log.interval(&stats, covered);
            self.output
                .print(SummaryScope::Interval, stats, covered)
                .await;
        } else {
            // Replies after the last step: not a step's.
            self.recorder.discard_interval();
        }
        let run = self.recorder.run_total();
        let report_written = match &self.config.report {
            Some(path) => {
                collect::write_final(self.report_log.clone(), run.clone(), path.clone()).await
            }
            None => Ok(()),
        };
        self.output
            .print(SummaryScope::Run, run, measured.started.elapsed())
            .await;
        if let (Some(plan), Some(steps)) = (&self.config.plan, measured.steps) {
            sweep::print_final(&self.output, plan, steps).await;
        }
        report_written
    }
}
