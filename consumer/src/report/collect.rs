//! What the report needs besides the recorder's figures: each summary interval's point as it is
//! printed, and the run's settings. Builds the [`Report`] of the run so far (`GET /report`) or of
//! the whole run (`--report FILE`, at exit).

use super::{render, IntervalPoint, KindFigures, Report, Scope};
use crate::config::Config;
use crate::kind::Kind;
use crate::recorder::Recorder;
use crate::schedule::Schedule;
use crate::stats::IntervalStats;
use chrono::Utc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const HTML: &str = "text/html; charset=utf-8";

/// The run's log for the report: shared by the summary loop, the /report page and the exit.
pub struct RunLog {
    started: Instant,
    kinds: Vec<Kind>,
    settings: Vec<(String, String)>,
    points: Mutex<Points>,
    sweep: Mutex<Option<super::sweep::SweepFigures>>,
}

struct Points {
    done: Vec<IntervalPoint>,
    /// When the last interval was taken (the open one starts there).
    last: Instant,
}

impl RunLog {
    pub fn new(kinds: Vec<Kind>, settings: Vec<(String, String)>) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Self {
            started: now,
            kinds,
            settings,
            points: Mutex::new(Points {
                done: Vec::new(),
                last: now,
            }),
            sweep: Mutex::new(None),
        })
    }

    /// A sweep's steps so far (replaces the previous figures).
    pub fn sweep(&self, figures: super::sweep::SweepFigures) {
        if let Ok(mut s) = self.sweep.lock() {
            *s = Some(figures);
        }
    }

    /// Adds the interval just taken (it covered `covered`, and ends now).
    pub fn interval(&self, stats: &IntervalStats, covered: Duration) {
        let end = self.started.elapsed().as_secs_f64();
        if let Ok(mut p) = self.points.lock() {
            p.done.push(IntervalPoint::from_stats(
                end,
                covered.as_secs_f64(),
                stats,
                &self.kinds,
            ));
            p.last = Instant::now();
        }
    }

    fn report(&self, scope: Scope, run: &IntervalStats, open: Option<&IntervalStats>) -> Report {
        let elapsed = self.started.elapsed().as_secs_f64();
        let mut intervals = Vec::new();
        if let Ok(p) = self.points.lock() {
            intervals.clone_from(&p.done);
            if let Some(open) = open {
                let seconds = p.last.elapsed().as_secs_f64();
                if seconds > 0.05 {
                    intervals.push(IntervalPoint::from_stats(
                        elapsed,
                        seconds,
                        open,
                        &self.kinds,
                    ));
                }
            }
        }
        let mut settings = self.settings.clone();
        settings.push(("elapsed".into(), humantime_secs(elapsed)));
        Report {
            scope,
            generated: edge::time::round_trip_offset(Utc::now()),
            elapsed_s: elapsed,
            kinds: self.kinds.clone(),
            figures: self
                .kinds
                .iter()
                .map(|&k| KindFigures::from_stats(k, run.kind(k)))
                .collect(),
            intervals,
            verdict: run.verdict(&self.kinds),
            settings,
            sweep: self.sweep.lock().ok().and_then(|s| s.clone()),
        }
    }

    /// The run so far: every interval taken, plus the open one.
    pub fn live(&self, recorder: &Recorder) -> String {
        let open = recorder.current_interval();
        let mut run = recorder.run_total();
        run.absorb(&open);
        render(&self.report(Scope::Live, &run, Some(&open)))
    }

    /// The whole run, once its last interval has been taken.
    pub fn finished(&self, run: &IntervalStats) -> String {
        render(&self.report(Scope::Final, run, None))
    }
}

fn humantime_secs(s: f64) -> String {
    humantime::format_duration(Duration::from_millis((s * 1000.0) as u64)).to_string()
}

/// `GET /report` on the metrics port.
pub fn pages(log: Arc<RunLog>, recorder: Recorder) -> telemetry::Pages {
    Arc::new(move |path: &str| (path == "/report").then(|| (log.live(&recorder), HTML)))
}

/// Renders the whole run and writes it to `path` (off the async workers).
pub async fn write_final(
    log: Arc<RunLog>,
    run: IntervalStats,
    path: std::path::PathBuf,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let shown = path.display().to_string();
    // Whole or not at all: a browser reloading the page never sees half of it.
    tokio::task::spawn_blocking(move || {
        edge::files::write_atomic(&path, log.finished(&run).as_bytes(), 0o644)
    })
    .await
    .context("rendering the report")?
    .with_context(|| format!("writing the report to {shown} (REPORT_FILE)"))?;
    tracing::info!("report written to {shown}");
    Ok(())
}

/// The settings the page lists.
pub fn settings(config: &Config, identity: &edge::ModuleIdentity) -> Vec<(String, String)> {
    let schedule = config.schedule;
    let duration = |d: Duration| humantime::format_duration(d).to_string();
    let kinds: Vec<&str> = config.kinds.iter().map(|k| k.label()).collect();
    let gateway = if identity.uses_workload_api() {
        format!(
            "IoT Edge device: edgeHub at {} (identity from the workload API)",
            identity.gateway_hostname
        )
    } else {
        format!(
            "{} via a connection string (the local hub, or development)",
            identity.gateway_hostname
        )
    };
    vec![
        (
            "schedule".into(),
            match schedule {
                Schedule::Closed => {
                    "closed loop: each kind's next exchange starts when the previous one ends (a benchmark)"
                        .into()
                }
                Schedule::Open {
                    rate,
                    max_in_flight,
                } => format!(
                    "open loop: {rate} exchanges/s of each kind on a fixed schedule, at most {max_in_flight} in flight (a canary)"
                ),
            },
        ),
        ("rate (EXCHANGE_RATE)".into(), schedule.rate().to_string()),
        ("kinds".into(), kinds.join(", ")),
        ("summary interval".into(), duration(config.summary_interval)),
        ("exchange timeout".into(), duration(config.exchange_timeout)),
        ("gateway".into(), gateway),
        (
            "gateway ports".into(),
            format!(
                "MQTT {}, HTTPS {}",
                identity.mqtt_port, identity.https_port
            ),
        ),
        (
            "device / modules".into(),
            format!(
                "{}: {} calls {}",
                identity.device_id, identity.module_id, config.producer
            ),
        ),
        (
            "versions".into(),
            format!(
                "consumer {} (iotedge-method-vs-message)",
                env!("CARGO_PKG_VERSION")
            ),
        ),
        (
            "started".into(),
            edge::time::round_trip_offset(Utc::now()),
        ),
    ]
}
