//! The hub's shared state and its router: connected sessions (`session.rs`), per-module
//! delivery queues (`delivery.rs`), pending method calls (`methods.rs`), and `Hub::route`
//! (`routing.rs`), which takes a message a module sent to the queues of the module inputs its
//! routes name.
//!
//! The message path allocates little: each connection keeps a `SenderRouting` with its bag
//! buffers and, per output it sends on, the routes whose FROM matches with their label values
//! and metric handles resolved once; a message is decoded into reused buffers, encoded once for
//! all its targets, and queued as its topic, that encoded bag, its body and an `Arc`.
//!
//! With a [`Store`], what is queued is also handed to it (`persistence.rs`), and what the store
//! held when the hub started is queued again first (`Hub::restore`).

mod delivery;
mod methods;
mod persistence;
mod routing;
mod session;
#[cfg(test)]
mod tests;

pub use session::{PublishError, Session};

use crate::faults::{Faults, Path};
use crate::identities::Identities;
use crate::metrics::{
    DropReason, DroppedLabels, HubMetrics, IdLabels, MsTelemetry, ReceivedLabels, SharedLabel,
};
use crate::refusals::Refusals;
use crate::routes::{Route, RouteTable, Sink};
use crate::store::Store;
use bytes::Bytes;
use delivery::{deliver, Delivery, DeliveryQueue, Routed, Via};
use edge::bag::{BagBuffer, CONNECTION_DEVICE_ID, CONNECTION_MODULE_ID, OUTPUT_NAME};
use edge::error_chain;
use edge::topic::{check_deliverable, DeliveryError};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Limits and names the hub runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub device_id: String,
    pub iothub_hostname: String,
    pub gateway_hostname: String,
    pub ack_timeout: Duration,
    pub queue_size: usize,
    pub default_ttl: Duration,
    pub max_message_size: usize,
    pub max_connections: usize,
    /// Sends of one input message (the first and the resends) before it is dropped, so one
    /// message a module never acknowledges cannot hold its queue forever.
    pub max_delivery_attempts: u32,
    /// Faults to inject on purpose (none by default).
    pub faults: Vec<crate::faults::Fault>,
    /// How long a method call that waited for its target to subscribe waits after the
    /// subscription (edgeHub: 3 s; the hub: none by default).
    pub method_subscribe_delay: Duration,
}

/// Why a message a module sent cannot be routed; the sender is refused.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("bad property bag: {0}")]
    Bag(#[from] edge::bag::BagError),
    #[error("cannot be delivered to {target}/inputs/{input}: {error}")]
    Undeliverable {
        target: String,
        input: String,
        #[source]
        error: DeliveryError,
    },
}

/// The running hub's shared state: what every listener, connection and delivery task holds
/// (`Arc<Hub>`). Its parts are reached through methods, so what it keeps can change behind them.
pub struct Hub {
    settings: Settings,
    identities: Identities,
    routes: RouteTable,
    metrics: HubMetrics,
    refusals: Refusals,
    faults: Faults,
    /// Where queued messages are kept across restarts; `None`: in memory only.
    store: Option<Arc<Store>>,
    /// A failed store write is logged once until one succeeds again.
    store_failed: AtomicBool,
    /// Every task the hub spawns runs under this token and tracker, so `stop` ends them all.
    shutdown: CancellationToken,
    tasks: TaskTracker,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    queues: Mutex<HashMap<String, Arc<DeliveryQueue>>>,
    /// Method calls waiting for their response, by request id: the session the request went to
    /// (only it may answer) and the caller's channel.
    pending_methods: Mutex<HashMap<String, methods::PendingMethod>>,
    next_session: AtomicU64,
    upstream_logged: AtomicBool,
    /// Woken whenever a session subscribes to direct methods: a call waiting for its target
    /// (`connectTimeoutInSeconds`) waits on it instead of polling.
    methods_subscribed: tokio::sync::Notify,
}

/// Counts one dropped message in `edgehub_messages_dropped_total{reason,from,from_route_output}`.
fn count_drop(metrics: &HubMetrics, reason: DropReason, from: &SharedLabel, output: &SharedLabel) {
    metrics
        .messages_dropped
        .get_or_create(&DroppedLabels {
            reason,
            from: from.clone(),
            from_route_output: output.clone(),
            ms_telemetry: MsTelemetry,
        })
        .inc();
}

impl Hub {
    /// A hub whose queues are kept in memory only.
    pub fn new(
        settings: Settings,
        identities: Identities,
        routes: RouteTable,
        metrics: HubMetrics,
    ) -> Arc<Self> {
        Self::with_store(settings, identities, routes, metrics, None)
    }

    /// A hub whose queues are kept in `store` too; what the store holds is queued again (in
    /// order, expired messages dropped and counted as `ttl_expiry`).
    pub fn with_store(
        settings: Settings,
        identities: Identities,
        routes: RouteTable,
        metrics: HubMetrics,
        store: Option<Arc<Store>>,
    ) -> Arc<Self> {
        let refusals = Refusals::new(metrics.refusals.clone());
        let faults = Faults::new(settings.faults.clone(), &metrics.faults_injected);
        let hub = Arc::new(Self {
            settings,
            identities,
            routes,
            metrics,
            refusals,
            faults,
            store,
            store_failed: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            sessions: Mutex::new(HashMap::new()),
            queues: Mutex::new(HashMap::new()),
            pending_methods: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            upstream_logged: AtomicBool::new(false),
            methods_subscribed: tokio::sync::Notify::new(),
        });
        // Queues for every routed-to module exist from the start, so messages wait for them.
        let targets: Vec<String> = hub
            .routes
            .routes()
            .iter()
            .filter_map(|r| match &r.sink {
                Sink::Module { module, .. } => Some(module.clone()),
                Sink::Upstream => None,
            })
            .collect();
        for t in targets {
            hub.queue(&t);
        }
        if let Some(store) = hub.store.clone() {
            hub.restore(&store);
        }
        hub
    }

    /// The limits and names the hub runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The module identities that may connect and call methods.
    pub fn identities(&self) -> &Identities {
        &self.identities
    }

    /// The routes from the deployment manifest.
    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    /// The hub's metric families (edgeHub's names).
    pub(crate) fn metrics(&self) -> &HubMetrics {
        &self.metrics
    }

    /// Where refused connections and requests are logged and counted.
    pub(crate) fn refusals(&self) -> &Refusals {
        &self.refusals
    }

    /// The faults injected on purpose (none by default).
    pub(crate) fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Spawns a task the hub owns: it ends when the hub stops, and `stop` waits for it.
    pub(crate) fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let token = self.shutdown.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = task => {}
            }
        })
    }

    /// Ends every task the hub spawned (listeners, connections, deliveries) and waits for them.
    pub(crate) async fn shut_down(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        // Every delivery has ended: what is still queued is in the store; make the removals
        // durable and release the file, so a new hub can open it.
        if let Some(store) = &self.store {
            store.close();
        }
        // Sessions and queues hold channels to tasks that are gone now.
        if let Ok(mut s) = self.sessions.lock() {
            s.clear();
        }
    }

    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    pub fn session(&self, module: &str) -> Option<Arc<Session>> {
        self.sessions.lock().ok()?.get(module).cloned()
    }

    /// Registers a new session; an older one for the same module is closed (MQTT takeover).
    pub fn attach(&self, session: Arc<Session>) {
        let old = self
            .sessions
            .lock()
            .ok()
            .and_then(|mut s| s.insert(session.module.clone(), session.clone()));
        if let Some(old) = old {
            tracing::info!(client = %old.name, "a new connection replaces the previous one");
            old.close();
        }
        self.metrics.connected_clients.set(self.connected() as i64);
        self.wake(&session.module);
    }

    pub fn detach(&self, session: &Session) {
        if let Ok(mut s) = self.sessions.lock() {
            if s.get(&session.module).map(|c| c.id) == Some(session.id) {
                s.remove(&session.module);
            }
        }
        self.metrics.connected_clients.set(self.connected() as i64);
    }

    pub fn connected(&self) -> usize {
        self.sessions.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Subscriptions changed: a waiting delivery may proceed.
    pub fn wake(&self, module: &str) {
        let q = self.queues.lock().ok().and_then(|q| q.get(module).cloned());
        if let Some(q) = q {
            q.wake.notify_one();
        }
    }

    fn queue(self: &Arc<Self>, module: &str) -> Arc<DeliveryQueue> {
        let Ok(mut queues) = self.queues.lock() else {
            unreachable!("queue lock poisoned")
        };
        if let Some(q) = queues.get(module) {
            return q.clone();
        }
        let q = Arc::new(DeliveryQueue::new(
            &self.settings.device_id,
            module,
            self.store.clone(),
        ));
        queues.insert(module.to_owned(), q.clone());
        self.spawn(deliver(self.clone(), q.clone()));
        q
    }
}
