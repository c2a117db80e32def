//! What the producer runs with, apart from how it was given (flags or environment).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The producer's settings, checked: built by [`crate::Args::config`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Where /metrics is served.
    pub metrics_addr: SocketAddr,
    /// Where the bound metrics address is written (for launchers that ask for port 0).
    pub metrics_addr_file: Option<PathBuf>,
    /// How often the count line is printed.
    pub summary_interval: Duration,
    /// How long the session, the handler or the metrics server may make no progress before the
    /// process exits; zero: never.
    pub watchdog_timeout: Duration,
    /// Bytes of padding in every reply, within a method response's limit.
    pub reply_bytes: usize,
    /// Test only: the request handler blocks for good on the first request after this long.
    pub test_freeze_after: Option<Duration>,
}
