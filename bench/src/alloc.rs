//! `bench --alloc`: heap allocations per routed message in the hub.
//!
//! Method: the hub runs in this process on its own tokio runtime, whose threads (workers and
//! blocking pool) set a thread-local flag when they start; the global allocator counts only
//! allocations made on flagged threads. The clients run on the main thread's runtime, so nothing
//! they allocate is counted, and nothing has to be subtracted. Counters are read at the edges of
//! the measured window; the delta divided by the exchanges completed in it gives allocations per
//! exchange, and each exchange is two routed messages (request and reply), each with its PUBLISH
//! in, PUBACK out, delivery PUBLISH out and PUBACK in. An idle period of the same length with no
//! client connected gives the background rate (timers), which is subtracted.
#![allow(unsafe_code)] // a counting global allocator is unsafe by definition

use crate::brokers::{self, HubAccess};
use crate::exchange::{self, Window};
use anyhow::{Context, Result};
use clap::Parser;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

mod method;

pub struct Counting;

thread_local! {
    static TRACKED: Cell<bool> = const { Cell::new(false) };
}
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static REALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

#[inline]
fn tracked() -> bool {
    // try_with: allocations during thread teardown, after the slot is gone, are not counted.
    TRACKED.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counters
// are atomics and the thread-local is a const-initialised Cell that never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if tracked() {
            ALLOCS.fetch_add(1, Relaxed);
            BYTES.fetch_add(layout.size() as u64, Relaxed);
        }
        // SAFETY: forwarded as received.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if tracked() {
            ALLOCS.fetch_add(1, Relaxed);
            BYTES.fetch_add(layout.size() as u64, Relaxed);
        }
        // SAFETY: forwarded as received.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if tracked() {
            REALLOCS.fetch_add(1, Relaxed);
            BYTES.fetch_add(new_size.saturating_sub(layout.size()) as u64, Relaxed);
        }
        // SAFETY: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Marks the calling thread as the hub's: its allocations count from now on.
pub fn track_this_thread() {
    TRACKED.with(|t| t.set(true));
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub allocs: u64,
    pub reallocs: u64,
    pub bytes: u64,
}

pub fn counters() -> Counters {
    Counters {
        allocs: ALLOCS.load(Relaxed),
        reallocs: REALLOCS.load(Relaxed),
        bytes: BYTES.load(Relaxed),
    }
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    fn sub(self, o: Counters) -> Counters {
        Counters {
            allocs: self.allocs.saturating_sub(o.allocs),
            reallocs: self.reallocs.saturating_sub(o.reallocs),
            bytes: self.bytes.saturating_sub(o.bytes),
        }
    }
}

/// One measured configuration.
#[derive(Debug, serde::Serialize)]
pub struct AllocRow {
    pub name: String,
    pub exchanges: u64,
    /// 2 per message exchange (request and reply); 0 for a method call.
    pub routed_messages: u64,
    /// Per message exchange (two routed messages) or per method call: the two paths compared.
    pub allocs_per_exchange: f64,
    pub reallocs_per_exchange: f64,
    pub bytes_per_exchange: f64,
    /// Message rows only.
    pub allocs_per_routed_message: Option<f64>,
    pub reallocs_per_routed_message: Option<f64>,
    pub bytes_per_routed_message: Option<f64>,
    pub idle_allocs_per_second: f64,
    /// Latency and rate of the same window (the in-process hub, for orientation only).
    pub p50_us: f64,
    pub rate: f64,
}

/// Starts the hub in-process on a tracked runtime and measures the plain and TLS paths.
pub async fn run(dir: &Path, seconds: f64) -> Result<Vec<AllocRow>> {
    // As in the hub binary: a current-thread runtime, here driven by a tracked thread of its own
    // until told to stop.
    let hub_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let hub_handle = hub_rt.handle().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let hub_thread = std::thread::Builder::new()
        .name("hub".into())
        .spawn(move || {
            track_this_thread();
            hub_rt.block_on(async {
                let _ = stopped.await;
            });
        })?;
    let state = dir.join("alloc-hub");
    std::fs::create_dir_all(&state)?;
    let manifest = state.join("deployment.json");
    std::fs::write(&manifest, brokers::MANIFEST)?;
    let config = hub::Args::parse_from([
        "hub".as_ref(),
        "--bind".as_ref(),
        "127.0.0.1".as_ref(),
        "--hostname".as_ref(),
        brokers::HUB_HOST.as_ref(),
        "--mqtt-port".as_ref(),
        "0".as_ref(),
        "--https-port".as_ref(),
        "0".as_ref(),
        "--metrics-port".as_ref(),
        "0".as_ref(),
        "--plain-mqtt-port".as_ref(),
        "0".as_ref(),
        "--deployment".as_ref(),
        manifest.as_os_str(),
        "--state-dir".as_ref(),
        state.as_os_str(),
    ])
    .config();
    let running = hub_handle
        .spawn(async move { hub::start(&config).await })
        .await
        .context("hub task")??;
    let result = measure(&state, seconds).await;
    running.stop().await;
    let _ = stop.send(());
    let _ = tokio::task::spawn_blocking(move || hub_thread.join()).await;
    result
}

async fn measure(state: &Path, seconds: f64) -> Result<Vec<AllocRow>> {
    let (access, _) = brokers::hub_access(state)?;
    let window = Window {
        warmup: Duration::from_millis(500),
        measure: Duration::from_secs_f64(seconds),
    };
    let idle = idle_rate(&access, window.measure).await?;
    let mut rows = Vec::new();
    for (name, target, inflight) in [
        ("hub-plain-1", access.plain(), 1),
        ("hub-plain-64", access.plain(), 64),
        ("hub-tls-1", access.tls(), 1),
    ] {
        let o = exchange::run(&target, inflight, window, counters).await?;
        let d = o.after - o.before;
        let background = idle * o.elapsed.as_secs_f64();
        let exchanges = o.completed.max(1) as f64;
        let per_exchange = |n: f64| n / exchanges;
        let allocs = (d.allocs as f64 - background).max(0.0);
        rows.push(AllocRow {
            name: name.into(),
            exchanges: o.completed,
            routed_messages: 2 * o.completed,
            allocs_per_exchange: per_exchange(allocs),
            reallocs_per_exchange: per_exchange(d.reallocs as f64),
            bytes_per_exchange: per_exchange(d.bytes as f64),
            allocs_per_routed_message: Some(per_exchange(allocs) / 2.0),
            reallocs_per_routed_message: Some(per_exchange(d.reallocs as f64) / 2.0),
            bytes_per_routed_message: Some(per_exchange(d.bytes as f64) / 2.0),
            idle_allocs_per_second: idle,
            p50_us: o.hist.value_at_quantile(0.5) as f64 / 1e3,
            rate: o.completed as f64 / o.elapsed.as_secs_f64().max(1e-9),
        });
    }
    rows.push(method::measure(&access, window, idle).await?);
    Ok(rows)
}

/// Allocations per second on the hub's threads while no client is connected (its timers).
async fn idle_rate(access: &HubAccess, period: Duration) -> Result<f64> {
    // One short exchange first, so lazily built state exists before the idle reading.
    let target = access.plain();
    let _ = exchange::run(
        &target,
        1,
        Window {
            warmup: Duration::from_millis(100),
            measure: Duration::from_millis(100),
        },
        || (),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = counters();
    tokio::time::sleep(period).await;
    let d = counters() - before;
    Ok(d.allocs as f64 / period.as_secs_f64())
}

pub fn print(rows: &[AllocRow]) {
    println!();
    println!("Allocations in the hub per exchange (hub in-process on its one thread, counting allocator):");
    println!(
        "{:<14} {:>10} {:>10} {:>10} {:>11} {:>10} {:>13} {:>8} {:>8}",
        "row",
        "exchanges",
        "allocs/ex",
        "allocs/msg",
        "reallocs/ex",
        "bytes/ex",
        "idle allocs/s",
        "p50 µs",
        "rate/s"
    );
    for r in rows {
        let per_msg = r
            .allocs_per_routed_message
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        println!(
            "{:<14} {:>10} {:>10.1} {:>10} {:>11.1} {:>10.0} {:>13.1} {:>8.1} {:>8.0}",
            r.name,
            r.exchanges,
            r.allocs_per_exchange,
            per_msg,
            r.reallocs_per_exchange,
            r.bytes_per_exchange,
            r.idle_allocs_per_second,
            r.p50_us,
            r.rate
        );
    }
    println!(
        "method: only allocations on the hub runtime's thread are counted (a thread-local flag set\n\
         when it starts; the clients run on another runtime), as the delta over the measured window;\n\
         the idle rate (no client connected) is subtracted. A message exchange (hub-plain/tls rows) is\n\
         two routed messages, each PUBLISH in + PUBACK out + delivery PUBLISH out + PUBACK in; a method\n\
         call (hub-method-1: HTTPS caller, target over MQTT/TLS) is HTTPS request in + request PUBLISH\n\
         out + response PUBLISH in + HTTPS response out. bytes = requested sizes (realloc: growth\n\
         only), not a live-memory figure."
    );
}
