//! What a run is asked to do, once checked: built from the command line by `Args::config` (which
//! refuses what cannot run, with the reason), read by `run` and the parts it starts.

use crate::cli::SummaryFormat;
use crate::kind::Kind;
use crate::schedule::Schedule;
use crate::sweep::Plan;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A checked run: which kinds, on what schedule, with what workload, printed how.
#[derive(Debug, Clone)]
pub struct Config {
    /// The measured kinds, in display order (messages first); never empty.
    pub kinds: Vec<Kind>,
    pub schedule: Schedule,
    /// A sweep's steps (`SWEEP`), or `None` for one workload until stopped.
    pub plan: Option<Plan>,
    /// Bytes of padding in every request (`PAYLOAD_BYTES`), within both kinds' limits.
    pub payload_bytes: usize,
    pub summary_interval: Duration,
    pub summary_format: SummaryFormat,
    /// Deadline of one exchange (longer than zero).
    pub exchange_timeout: Duration,
    /// Module id of the producer.
    pub producer: String,
    /// Where /metrics (and /report, /healthz) is served.
    pub metrics_addr: SocketAddr,
    /// Where to write the bound metrics address, for launchers that ask for port 0.
    pub metrics_addr_file: Option<PathBuf>,
    /// Where to write the HTML report at exit.
    pub report: Option<PathBuf>,
    /// 0 turns the watchdog off; else longer than `exchange_timeout`.
    pub watchdog_timeout: Duration,
    /// TEST ONLY: when exchanges block for good, to show the watchdog acting.
    pub freeze: Option<Freeze>,
}

/// TEST ONLY (`TEST_FREEZE_AFTER`, `TEST_FREEZE_KIND`): after `after`, every exchange of `kind`
/// (of both kinds when `None`) that starts blocks for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freeze {
    pub after: Duration,
    pub kind: Option<Kind>,
}

impl Config {
    /// Whether `kind` is measured (`EnableMethod`, `EnableMessage`).
    pub fn measures(&self, kind: Kind) -> bool {
        self.kinds.contains(&kind)
    }

    /// The request sizes the workload prepares: a payload sweep's, or `PAYLOAD_BYTES`.
    pub fn request_sizes(&self) -> Vec<usize> {
        self.plan
            .as_ref()
            .map_or_else(|| vec![self.payload_bytes], Plan::sizes)
    }

    /// Test only: when `kind`'s exchanges freeze, if they do.
    pub(crate) fn freeze_at(&self, kind: Kind, start: Instant) -> Option<Instant> {
        let freeze = self.freeze?;
        freeze
            .kind
            .is_none_or(|k| k == kind)
            .then_some(start + freeze.after)
    }
}
