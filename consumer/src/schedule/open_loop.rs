//! The open loop: exchanges start at fixed instants `t0 + offset + i·period` whatever the replies
//! do, at most `max_in_flight` of each kind at once. A due exchange that finds them all running is
//! recorded as skipped, never dropped; a late scheduler starts every missed exchange at once
//! (burst), each timed from its own planned instant — so a stall shows in every exchange it
//! delayed (coordinated omission, as wrk2 avoids it).
//!
//! The schedule runs on its own small thread rather than on a tokio timer: tokio's timer has 1 ms
//! granularity and fired 1–2 ms late here (p50 1.5 ms at 50/s), which would be charged to every
//! exchange of a sub-millisecond round trip; a thread sleeping to the instant wakes within ~0.1 ms
//! and only hands each exchange to the runtime (no blocking inside async code).
//!
//! [`OpenLoop::stop`] (or a drop) hangs up the thread's channel, which wakes it at once.

use crate::kind::Kind;
use crate::recorder::{Outcome, Recorder};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Starts one exchange planned for the given instant; the permit is released when it ends.
pub type Starter = Box<dyn FnMut(Instant, OwnedSemaphorePermit) + Send>;

/// One kind's schedule.
pub struct Lane {
    pub kind: Kind,
    /// Phase within the period (the kinds are staggered so their exchanges do not collide).
    pub offset: Duration,
    pub start: Starter,
}

struct Running {
    kind: Kind,
    next: Instant,
    permits: Arc<Semaphore>,
    start: Starter,
}

/// A running open-loop schedule; [`OpenLoop::stop`], or a drop, ends it.
pub struct OpenLoop {
    /// Dropped to stop the thread (its receiver sees the hang-up).
    hang_up: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    permits: Vec<Arc<Semaphore>>,
    max_in_flight: usize,
    /// The period in nanoseconds, which a sweep changes between steps.
    period: Arc<AtomicU64>,
}

fn period_nanos(rate: f64) -> u64 {
    Duration::from_secs_f64(1.0 / rate)
        .as_nanos()
        .try_into()
        .unwrap_or(u64::MAX)
}

impl OpenLoop {
    /// Starts `lanes` at `rate` exchanges per second each, until [`stop`](Self::stop).
    pub fn start(
        rate: f64,
        max_in_flight: usize,
        lanes: Vec<Lane>,
        recorder: Recorder,
    ) -> std::io::Result<Self> {
        let period = Arc::new(AtomicU64::new(period_nanos(rate)));
        let t0 = Instant::now();
        let running: Vec<Running> = lanes
            .into_iter()
            .map(|l| Running {
                kind: l.kind,
                next: t0 + l.offset,
                permits: Arc::new(Semaphore::new(max_in_flight)),
                start: l.start,
            })
            .collect();
        let permits = running.iter().map(|r| r.permits.clone()).collect();
        let (hang_up, stopped) = mpsc::channel::<()>();
        let shared = period.clone();
        let thread = std::thread::Builder::new()
            .name("open-loop".into())
            .spawn(move || run(&shared, running, &recorder, &stopped))?;
        Ok(Self {
            hang_up: Some(hang_up),
            thread: Some(thread),
            permits,
            max_in_flight,
            period,
        })
    }

    /// From the next planned instant on, `rate` exchanges per second of each kind (a sweep's
    /// step; the instants already planned stay).
    pub fn set_rate(&self, rate: f64) {
        self.period.store(period_nanos(rate), Ordering::Relaxed);
    }

    /// Stops scheduling and waits up to `grace` for the exchanges in flight to end.
    pub async fn stop(mut self, grace: Duration) {
        self.hang_up = None;
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        let all = u32::try_from(self.max_in_flight).unwrap_or(u32::MAX);
        let drained = async {
            for p in &self.permits {
                let _ = p.acquire_many(all).await;
            }
        };
        if tokio::time::timeout(grace, drained).await.is_err() {
            tracing::info!(
                "exchanges still in flight at exit are not counted (they had not ended)"
            );
        }
    }
}

fn run(
    period: &AtomicU64,
    mut lanes: Vec<Running>,
    recorder: &Recorder,
    stopped: &mpsc::Receiver<()>,
) {
    loop {
        let Some(lane) = lanes.iter_mut().min_by_key(|l| l.next) else {
            return;
        };
        let due = lane.next;
        let now = Instant::now();
        if due > now {
            match stopped.recv_timeout(due - now) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            if Instant::now() < due {
                continue; // woken early: sleep the rest
            }
        } else if !matches!(stopped.try_recv(), Err(TryRecvError::Empty)) {
            return;
        }
        match lane.permits.clone().try_acquire_owned() {
            Ok(permit) => (lane.start)(due, permit),
            Err(_) => recorder.record(lane.kind, Outcome::Skipped),
        }
        lane.next = due + Duration::from_nanos(period.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;
    use std::sync::Mutex;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exchanges_start_on_schedule_and_the_bound_skips_instead_of_dropping() {
        let recorder = Recorder::register(&mut Registry::default());
        let planned: Arc<Mutex<Vec<(Kind, Instant)>>> = Arc::default();
        let held: Arc<Mutex<Vec<OwnedSemaphorePermit>>> = Arc::default();
        let lane = |kind: Kind, offset_ms: u64, keep: bool| {
            let (planned, held) = (planned.clone(), held.clone());
            Lane {
                kind,
                offset: Duration::from_millis(offset_ms),
                start: Box::new(move |at, permit| {
                    planned.lock().unwrap().push((kind, at));
                    // A method "exchange" that never ends holds its permit; messages end at once.
                    if keep {
                        held.lock().unwrap().push(permit);
                    }
                }),
            }
        };
        let lanes = vec![lane(Kind::Message, 0, false), lane(Kind::Method, 5, true)];
        let open = OpenLoop::start(100.0, 3, lanes, recorder.clone()).unwrap();
        tokio::time::sleep(Duration::from_millis(295)).await;
        open.stop(Duration::from_millis(10)).await;
        let planned = planned.lock().unwrap().clone();
        let of = |k| -> Vec<Instant> {
            planned
                .iter()
                .filter(|(kind, _)| *kind == k)
                .map(|(_, t)| *t)
                .collect()
        };
        let (messages, methods) = (of(Kind::Message), of(Kind::Method));
        // Planned instants are exact multiples of the period, whatever the thread's wake-ups.
        assert!(messages.len() >= 25, "{}", messages.len());
        assert!(messages
            .windows(2)
            .all(|w| w[1] - w[0] == Duration::from_millis(10)));
        assert_eq!(methods[0] - messages[0], Duration::from_millis(5));
        // Three methods started and never ended: every later one is counted as skipped.
        assert_eq!(methods.len(), 3);
        let stats = recorder.take_interval();
        assert_eq!(stats.message.skipped, 0);
        assert!(
            stats.method.skipped as usize + 3 >= messages.len() - 1,
            "{} skipped, {} messages",
            stats.method.skipped,
            messages.len()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_late_schedule_bursts_every_missed_exchange_with_its_own_instant() {
        let recorder = Recorder::register(&mut Registry::default());
        let planned: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let p = planned.clone();
        let mut first = true;
        let lanes = vec![Lane {
            kind: Kind::Message,
            offset: Duration::ZERO,
            start: Box::new(move |at, _permit| {
                p.lock().unwrap().push(at);
                if first {
                    // The scheduler itself stalls for 100 ms (10 periods).
                    first = false;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }),
        }];
        let open = OpenLoop::start(100.0, 100, lanes, recorder).unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        open.stop(Duration::from_millis(10)).await;
        let planned = planned.lock().unwrap().clone();
        assert!(planned.len() >= 14, "{}", planned.len());
        assert!(planned
            .windows(2)
            .all(|w| w[1] - w[0] == Duration::from_millis(10)));
    }
}
