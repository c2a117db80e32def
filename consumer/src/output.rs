//! The summaries printed every interval and at exit: the seed's table, the JSON line, or both.

use crate::cli::SummaryFormat;
use crate::config::Config;
use crate::kind::Kind;
use crate::render::{self, SummaryScope};
use crate::schedule::Schedule;
use crate::stats::IntervalStats;
use chrono::Utc;
use std::io::Write as _;
use std::time::Duration;

/// How summaries are printed.
#[derive(Clone)]
pub(crate) struct Output {
    pub format: SummaryFormat,
    pub kinds: Vec<Kind>,
    pub schedule: Schedule,
}

impl Output {
    /// The run's format, kinds and schedule.
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            format: config.summary_format,
            kinds: config.kinds.clone(),
            schedule: config.schedule,
        }
    }

    fn render(&self, scope: SummaryScope, stats: &IntervalStats, covered: Duration) -> String {
        let stamp = edge::time::round_trip_offset(Utc::now());
        let verdict = stats.verdict(&self.kinds);
        let mut out = String::new();
        if matches!(self.format, SummaryFormat::Table | SummaryFormat::Both) {
            match scope {
                SummaryScope::Interval | SummaryScope::Step => {
                    out.push_str(&render::render_table(
                        &stamp,
                        covered,
                        stats,
                        &self.kinds,
                        true,
                    ));
                    if let Some(v) = &verdict {
                        out.push_str(&render::render_verdict(v));
                    }
                }
                SummaryScope::Run => out.push_str(&render::render_run_table(
                    &stamp,
                    covered,
                    stats,
                    &self.kinds,
                    self.schedule,
                    verdict.as_ref(),
                )),
            }
        }
        if matches!(self.format, SummaryFormat::Json | SummaryFormat::Both) {
            out.push_str(&render::render_summary_json(
                scope,
                &stamp,
                covered,
                stats,
                &self.kinds,
                self.schedule,
                verdict.as_ref(),
            ));
            out.push('\n');
        }
        out
    }

    /// Renders (the verdict's bootstrap takes milliseconds of CPU) and writes off the async
    /// workers, in one write so tables from concurrent output never interleave.
    pub(crate) async fn print(&self, scope: SummaryScope, stats: IntervalStats, covered: Duration) {
        let this = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let out = this.render(scope, &stats, covered);
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(out.as_bytes());
            let _ = stdout.flush();
        })
        .await;
    }
}
