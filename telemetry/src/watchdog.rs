//! The modules' watchdog. edgeAgent restarts a module whose process exits (`restartPolicy:
//! always`) but ignores Docker's health status, so a module that hangs stays hung unless it ends
//! itself. Each piece of a module's own work (an exchange loop, the MQTT session, a request
//! handler, the metrics server) reports its progress here; when one of them is overdue and has
//! made no progress for `WATCHDOG_TIMEOUT`, the watchdog logs one line saying what stopped and
//! exits the process with [`EXIT_CODE`].
//!
//! Each piece has a bound: the longest it goes without progress when it is healthy (an exchange
//! loop: the exchange timeout, as a hub that is down is progress — failures and timeouts are
//! counted). Past its bound it is *overdue*, and `GET /healthz` answers 503 with the reason; once
//! it has also been silent for `WATCHDOG_TIMEOUT`, the process exits.
//!
//! The hot path pays one [`Pulse::beat`]: a monotonic clock read and two relaxed atomic stores,
//! no allocation, no lock. The judging runs on a thread of its own, so a blocked async runtime
//! cannot keep it from acting.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The process's exit status when the watchdog ends it (1 stays "an error at start-up or run").
pub const EXIT_CODE: i32 = 3;

/// What every bound gets on top, for timers and the scheduler being a little late.
pub const SLACK: Duration = Duration::from_secs(1);

/// A sentinel for "nothing owed" (an idle handler).
const IDLE: u64 = u64::MAX;

/// A piece of work's progress as the watchdog reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// When it last made progress.
    pub last: Instant,
    /// From when it is overdue unless it makes progress meanwhile; `None`: idle, nothing owed.
    pub due: Option<Instant>,
}

/// The progress of one piece of work, reported by the work itself.
#[derive(Debug)]
pub struct Pulse {
    anchor: Instant,
    bound_ms: u64,
    /// Milliseconds since `anchor`.
    last_ms: AtomicU64,
    /// Milliseconds since `anchor`, or [`IDLE`].
    due_ms: AtomicU64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Pulse {
    /// A pulse that beats once now and must beat again within `bound`.
    pub fn new(bound: Duration) -> Self {
        let pulse = Self {
            anchor: Instant::now(),
            bound_ms: millis(bound),
            last_ms: AtomicU64::new(0),
            due_ms: AtomicU64::new(0),
        };
        pulse.beat();
        pulse
    }

    /// Progress: the work must make progress again within its bound.
    #[inline]
    pub fn beat(&self) {
        let now = millis(self.anchor.elapsed());
        self.last_ms.store(now, Ordering::Relaxed);
        self.due_ms
            .store(now.saturating_add(self.bound_ms), Ordering::Relaxed);
    }

    /// Nothing to do (a handler waiting for work): nothing is owed until the next beat.
    #[inline]
    pub fn idle(&self) {
        self.due_ms.store(IDLE, Ordering::Relaxed);
    }

    pub fn progress(&self) -> Progress {
        let at = |ms: u64| self.anchor + Duration::from_millis(ms);
        let due = self.due_ms.load(Ordering::Relaxed);
        Progress {
            last: at(self.last_ms.load(Ordering::Relaxed)),
            due: (due != IDLE).then(|| at(due)),
        }
    }
}

struct Watched {
    /// "the method loop"
    what: String,
    /// "last exchange finished"
    last_event: &'static str,
    read: Box<dyn Fn() -> Progress + Send + Sync>,
}

struct Inner {
    timeout: Duration,
    anchor: Instant,
    anchor_wall: SystemTime,
    watched: Mutex<Vec<Watched>>,
    stopping: AtomicBool,
    /// Milliseconds since `anchor` when the watchdog last found the whole process had been
    /// stopped (SIGSTOP, a paused VM): time before it is not held against anyone.
    resumed_ms: AtomicU64,
}

/// A piece of work that is overdue.
#[derive(Debug, Clone, PartialEq)]
pub struct Stall {
    pub what: String,
    pub last_event: &'static str,
    /// How long it has made no progress.
    pub silence: Duration,
    /// When it last made progress (wall clock, for the log).
    pub last: SystemTime,
    /// Silent for the watchdog's timeout: the process exits.
    pub fatal: bool,
}

impl Stall {
    fn describe(&self) -> String {
        format!(
            "{} made no progress for {:.1}s ({} at {})",
            self.what,
            self.silence.as_secs_f64(),
            self.last_event,
            rfc3339_millis(self.last)
        )
    }
}

/// The watchdog of one process: cheap to clone, shared by the work it watches, the metrics
/// server (`/healthz`) and its own thread.
#[derive(Clone)]
pub struct Watchdog(Arc<Inner>);

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("timeout", &self.0.timeout)
            .finish_non_exhaustive()
    }
}

impl Watchdog {
    /// A watchdog that ends the process after `timeout` without progress; zero: it never does
    /// (`/healthz` still reports what is overdue).
    pub fn new(timeout: Duration) -> Self {
        Self(Arc::new(Inner {
            timeout,
            anchor: Instant::now(),
            anchor_wall: SystemTime::now(),
            watched: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            resumed_ms: AtomicU64::new(0),
        }))
    }

    pub fn timeout(&self) -> Duration {
        self.0.timeout
    }

    /// Watches a piece of work that reports through the returned pulse and is overdue when it has
    /// not beaten for `bound` (plus [`SLACK`]). `what` names it in the log ("the method loop"),
    /// `last_event` says what a beat is ("last exchange finished").
    pub fn pulse(
        &self,
        what: impl Into<String>,
        last_event: &'static str,
        bound: Duration,
    ) -> Arc<Pulse> {
        let pulse = Arc::new(Pulse::new(bound + SLACK));
        let read = pulse.clone();
        self.watch(what, last_event, move || read.progress());
        pulse
    }

    /// Watches a piece of work whose progress is read by `read` (work that keeps its own
    /// heartbeat, such as the MQTT session).
    pub fn watch(
        &self,
        what: impl Into<String>,
        last_event: &'static str,
        read: impl Fn() -> Progress + Send + Sync + 'static,
    ) {
        let watched = Watched {
            what: what.into(),
            last_event,
            read: Box::new(read),
        };
        self.0
            .watched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(watched);
    }

    /// The process is stopping on purpose: its work ends, which is no hang.
    pub fn stop(&self) {
        self.0.stopping.store(true, Ordering::Relaxed);
    }

    /// The worst overdue piece of work at `now` (the longest silent), if any.
    pub fn stall(&self, now: Instant) -> Option<Stall> {
        let inner = &self.0;
        let resumed =
            inner.anchor + Duration::from_millis(inner.resumed_ms.load(Ordering::Relaxed));
        let watched = inner.watched.lock().unwrap_or_else(|e| e.into_inner());
        watched
            .iter()
            .filter_map(|w| {
                let p = (w.read)();
                let due = p.due?;
                // A stop of the whole process is no one's fault: time before it does not count.
                let shift = resumed.saturating_duration_since(p.last);
                if now <= due + shift {
                    return None;
                }
                let silence = now.saturating_duration_since(p.last + shift);
                Some(Stall {
                    what: w.what.clone(),
                    last_event: w.last_event,
                    silence,
                    last: self.wall(p.last),
                    fatal: !inner.timeout.is_zero() && silence >= inner.timeout,
                })
            })
            .max_by_key(|s| s.silence)
    }

    /// What `/healthz` answers: `Ok`, or why not.
    pub fn health(&self) -> Result<(), String> {
        if self.0.stopping.load(Ordering::Relaxed) {
            return Err("the module is stopping".to_owned());
        }
        match self.stall(Instant::now()) {
            None => Ok(()),
            Some(stall) if self.0.timeout.is_zero() => Err(format!(
                "{}; the watchdog is off (WATCHDOG_TIMEOUT=0)",
                stall.describe()
            )),
            Some(stall) => Err(format!(
                "{}; at {:?} the watchdog exits so the runtime restarts the module",
                stall.describe(),
                self.0.timeout
            )),
        }
    }

    /// The line the watchdog logs before it ends the process.
    pub fn exit_line(stall: &Stall) -> String {
        format!(
            "watchdog: {}; exiting so the runtime restarts the module",
            stall.describe()
        )
    }

    /// Starts the watchdog's thread (nothing when the timeout is zero): when a piece of work is
    /// overdue and silent for the timeout, it logs [`Watchdog::exit_line`] and exits with
    /// [`EXIT_CODE`].
    pub fn start(&self) -> std::io::Result<()> {
        self.start_with(|line| {
            // The log may block (a full pipe): it gets two seconds, then the process exits anyway.
            let (done, wait) = std::sync::mpsc::channel();
            let logger = std::thread::Builder::new()
                .name("watchdog-log".into())
                .spawn(move || {
                    tracing::error!("{line}");
                    let _ = done.send(());
                });
            if logger.is_ok() {
                let _ = wait.recv_timeout(Duration::from_secs(2));
            }
            std::process::exit(EXIT_CODE);
        })
    }

    /// [`Watchdog::start`] with what to do instead of logging and exiting (tests).
    pub fn start_with(&self, fire: impl FnOnce(String) + Send + 'static) -> std::io::Result<()> {
        let timeout = self.0.timeout;
        if timeout.is_zero() {
            return Ok(());
        }
        let every = (timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(1));
        let watchdog = self.clone();
        std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                let mut checked = Instant::now();
                loop {
                    std::thread::sleep(every);
                    if watchdog.0.stopping.load(Ordering::Relaxed) {
                        return;
                    }
                    let now = Instant::now();
                    if now.saturating_duration_since(checked) > every * 2 + Duration::from_secs(2) {
                        // This thread slept far longer than asked: the whole process was stopped.
                        let since = millis(now.saturating_duration_since(watchdog.0.anchor));
                        watchdog.0.resumed_ms.store(since, Ordering::Relaxed);
                        tracing::info!(
                            paused = ?now.saturating_duration_since(checked),
                            "the process was stopped for a while; the watchdog does not count it"
                        );
                    } else if let Some(stall) = watchdog.stall(now).filter(|s| s.fatal) {
                        return fire(Self::exit_line(&stall));
                    }
                    checked = now;
                }
            })?;
        Ok(())
    }

    fn wall(&self, at: Instant) -> SystemTime {
        let inner = &self.0;
        match at.checked_duration_since(inner.anchor) {
            Some(after) => inner.anchor_wall + after,
            None => inner.anchor_wall - inner.anchor.saturating_duration_since(at),
        }
    }
}

/// `2024-05-01T12:00:00.123Z`.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        let at = |s: u64, ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(s * 1000 + ms);
        assert_eq!(rfc3339_millis(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(at(951_782_400, 7)),
            "2000-02-29T00:00:00.007Z"
        );
        assert_eq!(
            rfc3339_millis(at(1_735_689_599, 999)),
            "2024-12-31T23:59:59.999Z"
        );
        assert_eq!(
            rfc3339_millis(at(4_107_542_400, 0)),
            "2100-03-01T00:00:00.000Z"
        );
    }

    #[test]
    fn work_is_overdue_past_its_bound_and_fatal_after_the_timeout() {
        let dog = Watchdog::new(Duration::from_secs(10));
        let method = dog.pulse(
            "the method loop",
            "last exchange finished",
            Duration::from_secs(2),
        );
        let handler = dog.pulse(
            "the request handler",
            "it last took a request",
            Duration::ZERO,
        );
        handler.idle();
        let t0 = method.progress().last;
        assert_eq!(dog.stall(t0 + Duration::from_secs(2)), None);
        assert!(dog.health().is_ok());

        // Past its bound (2 s + slack): overdue, not yet fatal.
        let stall = dog.stall(t0 + Duration::from_secs(4)).unwrap();
        assert_eq!(stall.what, "the method loop");
        assert!(!stall.fatal);
        assert_eq!(stall.silence, Duration::from_secs(4));
        let fatal = dog.stall(t0 + Duration::from_secs(10)).unwrap();
        assert!(fatal.fatal);
        let line = Watchdog::exit_line(&fatal);
        assert!(
            line.starts_with("watchdog: the method loop made no progress for 10.0s (last exchange finished at 20"),
            "{line}"
        );
        assert!(
            line.ends_with("Z); exiting so the runtime restarts the module"),
            "{line}"
        );

        // A beat clears it; an idle handler owes nothing however long it waits.
        method.beat();
        let t1 = method.progress().last;
        assert_eq!(dog.stall(t1 + Duration::from_secs(2)), None);
        // A busy handler is owed back within its bound (0 + slack); the method loop is not due.
        handler.beat();
        let stall = dog
            .stall(handler.progress().last + Duration::from_millis(1500))
            .unwrap();
        assert_eq!(stall.what, "the request handler");

        dog.stop();
        assert_eq!(dog.health(), Err("the module is stopping".to_owned()));
    }

    #[test]
    fn zero_never_fires_but_still_reports() {
        let dog = Watchdog::new(Duration::ZERO);
        let p = dog.pulse("the message loop", "last exchange finished", Duration::ZERO);
        let stall = dog
            .stall(p.progress().last + Duration::from_secs(3600))
            .unwrap();
        assert!(!stall.fatal);
        std::thread::sleep(SLACK + Duration::from_millis(50));
        let why = dog.health().unwrap_err();
        assert!(why.contains("the message loop made no progress"), "{why}");
        assert!(
            why.ends_with("the watchdog is off (WATCHDOG_TIMEOUT=0)"),
            "{why}"
        );
        // No thread, nothing fired.
        dog.start_with(|line| panic!("fired: {line}")).unwrap();
    }

    #[test]
    fn the_thread_fires_once_for_a_stalled_pulse_and_not_for_a_beating_one() {
        let dog = Watchdog::new(Duration::from_millis(1500));
        let beating = dog.pulse("the method loop", "last exchange finished", Duration::ZERO);
        let _stalled = dog.pulse("the message loop", "last exchange finished", Duration::ZERO);
        let (tx, rx) = std::sync::mpsc::channel();
        dog.start_with(move |line| {
            let _ = tx.send(line);
        })
        .unwrap();
        let started = Instant::now();
        let line = loop {
            beating.beat();
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                break line;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "never fired");
        };
        assert!(
            line.starts_with("watchdog: the message loop made no progress for "),
            "{line}"
        );
        // Fatal at max(bound + slack, timeout) = 1.5 s, checked every 150 ms.
        let after = started.elapsed();
        assert!(after >= Duration::from_millis(1400), "{after:?}");
        assert!(after < Duration::from_secs(5), "{after:?}");
    }

    #[test]
    fn a_stopped_process_is_forgiven() {
        let dog = Watchdog::new(Duration::from_secs(10));
        let p = dog.pulse("the method loop", "last exchange finished", Duration::ZERO);
        let last = p.progress().last;
        // The process "resumed" 30 s after the last beat: silence counts from then.
        let resumed = last + Duration::from_secs(30);
        dog.0.resumed_ms.store(
            millis(resumed.duration_since(dog.0.anchor)),
            Ordering::Relaxed,
        );
        assert_eq!(dog.stall(resumed + Duration::from_millis(500)), None);
        let stall = dog.stall(resumed + Duration::from_secs(4)).unwrap();
        // The resumption is kept in whole milliseconds.
        assert!(
            (stall.silence.as_secs_f64() - 4.0).abs() < 0.01,
            "{stall:?}"
        );
        assert!(!stall.fatal);
    }
}
