//! The hub's shared state and its router: connected sessions (`session.rs`), per-module
//! delivery queues (`delivery.rs`), pending method calls, and `Hub::route`, which takes a message
//! a module sent to the queues of the module inputs its routes name.
//!
//! The message path allocates little: each connection keeps a `SenderRouting` with its bag
//! buffers and, per output it sends on, the routes whose FROM matches with their label values
//! and metric handles resolved once; a message is decoded into reused buffers, encoded once for
//! all its targets, and queued as its topic, that encoded bag, its body and an `Arc`.
//!
//! With a [`Store`], what is queued is also handed to it (`persistence.rs`), and what the store
//! held when the hub started is queued again first (`Hub::restore`).

mod delivery;
mod persistence;
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

/// A method call waiting for its response: the session the request went to and the caller.
type PendingMethod = (u64, oneshot::Sender<(u16, Bytes)>);

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
    pending_methods: Mutex<HashMap<String, PendingMethod>>,
    next_session: AtomicU64,
    upstream_logged: AtomicBool,
    /// Woken whenever a session subscribes to direct methods: a call waiting for its target
    /// (`connectTimeoutInSeconds`) waits on it instead of polling.
    methods_subscribed: tokio::sync::Notify,
}

/// Outputs of one connection whose routes are kept resolved; messages on further outputs are
/// routed just the same, resolving their routes each time.
const CACHED_OUTPUTS: usize = 64;

/// What routing one connection's messages needs every time, kept in its [`Session`].
#[derive(Default)]
pub(crate) struct SenderRouting {
    /// The message being routed, decoded into reused buffers.
    bag: BagBuffer,
    /// Its bag as delivered (without `$.on`, with `$.cdid`/`$.cmid`), encoded once.
    encoded: String,
    /// Indices into `OutputRoutes::routes` of the routes the message takes.
    matched: Vec<usize>,
    /// Its deliveries, all built and checked before any is queued.
    pending: Vec<(Arc<DeliveryQueue>, Routed)>,
    /// `edgehub_message_size_bytes` of this connection.
    message_size: Option<Histogram>,
    /// Per output name; `without_output` for messages that name none.
    outputs: HashMap<Box<str>, Arc<OutputRoutes>>,
    without_output: Option<Arc<OutputRoutes>>,
}

/// The routes a connection's messages on one output can take, resolved once.
struct OutputRoutes {
    /// `/messages/modules/{m}/outputs/{o}` or `/messages/modules/{m}`: the message source.
    source: String,
    /// The labels of what this output sends: the sender and the output ("" without one).
    from: SharedLabel,
    output: SharedLabel,
    received: Counter,
    /// The routes whose FROM takes this source, in table order (WHERE is evaluated per message).
    routes: Vec<RouteUse>,
}

struct RouteUse {
    /// Index into the route table.
    route: usize,
    /// `None` for `$upstream`.
    target: Option<(Arc<DeliveryQueue>, Arc<Delivery>)>,
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

    /// Routes a message a module sent; returns how many endpoints took it. Every delivery is
    /// built and checked before any is queued: a message that cannot reach one of its targets
    /// is refused whole (before the PUBACK), never queued to block that module's input.
    pub fn route(
        self: &Arc<Self>,
        sender: &Session,
        bag_encoded: &str,
        body: Bytes,
    ) -> Result<usize, RouteError> {
        // Only this connection's read loop routes its messages: never contended, and the
        // buffers are cleared before each use, so a poisoned lock holds nothing stale.
        let mut routing = sender.routing.lock().unwrap_or_else(|e| e.into_inner());
        let routing = &mut *routing;
        let taken = self.route_with(sender, routing, bag_encoded, body);
        routing.pending.clear();
        taken
    }

    fn route_with(
        self: &Arc<Self>,
        sender: &Session,
        routing: &mut SenderRouting,
        bag_encoded: &str,
        body: Bytes,
    ) -> Result<usize, RouteError> {
        routing.bag.decode(bag_encoded)?;
        let out = self.resolved_output(sender, routing);
        out.received.inc();
        (self.message_size(sender, &mut routing.message_size)).observe(body.len() as f64);
        if !self.match_routes(sender, &out, routing) {
            self.dropped(DropReason::NoRoute, &out);
            tracing::debug!(from = %sender.name, source = %out.source, "no route matches; message dropped");
            return Ok(0);
        }
        self.encode_delivered_bag(sender, routing);
        let upstream = self.build_deliveries(&out, routing, &body)?;
        for _ in 0..upstream {
            self.dropped(DropReason::Upstream, &out);
        }
        let pending = &mut routing.pending;
        pending.retain(|_| {
            let drop = self.faults.drop(Path::Messages);
            if drop {
                self.dropped(DropReason::Fault, &out);
            }
            !drop
        });
        if let Some(store) = &self.store {
            if !self.persist(store, pending) {
                self.unacknowledged(&out, pending.len());
            }
        }
        Ok(self.enqueue(&out, pending))
    }

    /// What messages on the output the decoded bag names (`$.on`) need: kept by the connection,
    /// or resolved now (and kept, for up to `CACHED_OUTPUTS` outputs).
    fn resolved_output(
        self: &Arc<Self>,
        sender: &Session,
        routing: &mut SenderRouting,
    ) -> Arc<OutputRoutes> {
        let SenderRouting {
            bag,
            outputs,
            without_output,
            ..
        } = routing;
        let Some(output) = bag.get(OUTPUT_NAME) else {
            return without_output
                .get_or_insert_with(|| Arc::new(self.output_routes(sender, None)))
                .clone();
        };
        if let Some(out) = outputs.get(output) {
            return out.clone();
        }
        let out = Arc::new(self.output_routes(sender, Some(output)));
        if outputs.len() < CACHED_OUTPUTS {
            outputs.insert(output.into(), out.clone());
        }
        out
    }

    /// `edgehub_message_size_bytes` of this connection, resolved at its first message.
    fn message_size<'r>(&self, sender: &Session, kept: &'r mut Option<Histogram>) -> &'r Histogram {
        kept.get_or_insert_with(|| {
            let labels = IdLabels {
                id: sender.name.clone(),
            };
            self.metrics.message_size.get_or_create(&labels).clone()
        })
    }

    /// Keeps in `routing.matched` the routes of `out` whose WHERE the decoded message meets;
    /// whether there is any.
    fn match_routes(
        &self,
        sender: &Session,
        out: &OutputRoutes,
        routing: &mut SenderRouting,
    ) -> bool {
        let SenderRouting { bag, matched, .. } = routing;
        // `$.on` is still in the bag here; WHERE sees it only as `outputName`, never as an
        // application property (`$.` names are system properties).
        let view = crate::routes::RoutingView {
            device: &self.settings.device_id,
            module: &sender.module,
            output: bag.get(OUTPUT_NAME),
            bag,
        };
        let routes = self.routes.routes();
        matched.clear();
        matched.extend(
            (out.routes.iter().enumerate())
                .filter(|(_, u)| routes[u.route].matches(&out.source, &view))
                .map(|(i, _)| i),
        );
        !matched.is_empty()
    }

    /// The bag as delivered, encoded once for every target: without `$.on`, with the sender's
    /// `$.cdid` and `$.cmid`.
    fn encode_delivered_bag(&self, sender: &Session, routing: &mut SenderRouting) {
        let SenderRouting { bag, encoded, .. } = routing;
        bag.remove(OUTPUT_NAME);
        bag.insert(CONNECTION_DEVICE_ID, &self.settings.device_id);
        bag.insert(CONNECTION_MODULE_ID, &sender.module);
        encoded.clear();
        bag.encode_into(encoded);
    }

    /// The message's delivery to each matched route's module input, built and checked into
    /// `routing.pending` (the first that cannot be delivered refuses the message); returns how
    /// many matched routes send to `$upstream` instead.
    fn build_deliveries(
        &self,
        out: &OutputRoutes,
        routing: &mut SenderRouting,
        body: &Bytes,
    ) -> Result<usize, RouteError> {
        let SenderRouting {
            encoded,
            matched,
            pending,
            ..
        } = routing;
        let routes = self.routes.routes();
        let mut shared_bag: Option<Arc<str>> = None;
        let now = Instant::now();
        let mut upstream = 0;
        for &i in matched.iter() {
            let use_ = &out.routes[i];
            let route = &routes[use_.route];
            let Some((queue, via)) = &use_.target else {
                upstream += 1;
                if !self.upstream_logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!(route = %route.name, "route sends to $upstream; there is no IoT Hub behind the local hub, so such messages are counted in edgehub_messages_dropped_total{{reason=\"upstream\"}} and dropped (logged once)");
                }
                continue;
            };
            let topic = via.topic(encoded);
            check_deliverable(&topic, body.len())
                .map_err(|error| undeliverable(route, queue, error))?;
            let routed = Routed {
                topic: Some(topic),
                bag: shared_bag
                    .get_or_insert_with(|| Arc::from(encoded.as_str()))
                    .clone(),
                body: body.clone(),
                via: via.clone(),
                received: Some(now),
                expires: now + via.ttl,
                seq: None,
            };
            pending.push((queue.clone(), routed));
        }
        Ok(upstream)
    }

    /// Queues each delivery; one whose queue is full is dropped and counted. Returns how many
    /// were queued.
    fn enqueue(
        &self,
        out: &OutputRoutes,
        pending: &mut Vec<(Arc<DeliveryQueue>, Routed)>,
    ) -> usize {
        let mut taken = 0;
        for (queue, routed) in pending.drain(..) {
            if queue.push(routed, self.settings.queue_size) {
                taken += 1;
            } else {
                tracing::warn!(target_module = %queue.module, capacity = self.settings.queue_size, "delivery queue full; message dropped (edgehub_messages_dropped_total{{reason=\"queue_overflow\"}})");
                self.dropped(DropReason::QueueOverflow, out);
            }
        }
        taken
    }

    /// Resolves what messages from `sender` on `output` need: their source, their labels and
    /// counters, and the routes whose FROM takes them with the target queues and deliveries.
    fn output_routes(self: &Arc<Self>, sender: &Session, output: Option<&str>) -> OutputRoutes {
        let module = &sender.module;
        let source = match output {
            Some(o) => format!("/messages/modules/{module}/outputs/{o}"),
            None => format!("/messages/modules/{module}"),
        };
        let from = sender.name.clone();
        let output: SharedLabel = output.unwrap_or_default().into();
        let received = self
            .metrics
            .messages_received
            .get_or_create(&ReceivedLabels {
                id: from.clone(),
                route_output: output.clone(),
                ms_telemetry: MsTelemetry,
            })
            .clone();
        let routes = (self.routes.routes().iter().enumerate())
            .filter(|(_, r)| r.source.matches(&source))
            .map(|(i, r)| RouteUse {
                route: i,
                target: match &r.sink {
                    Sink::Upstream => None,
                    Sink::Module {
                        module: target,
                        input,
                    } => {
                        let queue = self.queue(target);
                        let ttl = (r.time_to_live_secs.map(Duration::from_secs))
                            .unwrap_or(self.settings.default_ttl);
                        let via = Via {
                            from: from.clone(),
                            from_output: output.clone(),
                            input,
                            priority: r.priority,
                            ttl,
                        };
                        let via = Delivery::new(&queue, &self.metrics, via);
                        Some((queue, Arc::new(via)))
                    }
                },
            })
            .collect();
        OutputRoutes {
            source,
            from,
            output,
            received,
            routes,
        }
    }

    fn dropped(&self, reason: DropReason, out: &OutputRoutes) {
        count_drop(&self.metrics, reason, &out.from, &out.output);
    }

    /// `count` deliveries of a message the store did not take: edgeHub's
    /// `edgehub_messages_unack_total{reason="storage_failure"}` (ours are still queued in memory).
    fn unacknowledged(&self, out: &OutputRoutes, count: usize) {
        self.metrics
            .messages_unack
            .get_or_create(&crate::metrics::UnackLabels {
                reason: crate::metrics::StorageFailure,
                from: out.from.clone(),
                from_route_output: out.output.clone(),
                ms_telemetry: MsTelemetry,
            })
            .inc_by(count as u64);
    }

    /// Registers a method call sent to the session numbered `session`; its response, from that
    /// session only, completes the receiver.
    pub fn expect_method_response(
        &self,
        rid: &str,
        session: u64,
    ) -> oneshot::Receiver<(u16, Bytes)> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending_methods.lock() {
            p.insert(rid_key(rid).into_owned(), (session, tx));
        }
        rx
    }

    /// A session subscribed to direct methods: wakes the calls waiting for their target.
    pub(crate) fn methods_subscribed(&self) {
        self.methods_subscribed.notify_waiters();
    }

    /// Resolves at the next [`methods_subscribed`](Self::methods_subscribed) after this call.
    pub(crate) fn next_methods_subscription(&self) -> tokio::sync::futures::Notified<'_> {
        self.methods_subscribed.notified()
    }

    pub fn forget_method(&self, rid: &str) {
        if let Ok(mut p) = self.pending_methods.lock() {
            p.remove(rid_key(rid).as_ref());
        }
    }

    /// A method response from the session numbered `session`: completes the call it answers if
    /// that call went to this session (a call belongs to the connection it was sent on).
    pub fn method_response(&self, rid: &str, session: u64, status: u16, payload: Bytes) -> bool {
        let key = rid_key(rid);
        let key = key.as_ref();
        let waiter = self
            .pending_methods
            .lock()
            .ok()
            .and_then(|mut p| match p.get(key) {
                Some((s, _)) if *s == session => p.remove(key),
                _ => None,
            });
        match waiter {
            Some((_, tx)) => tx.send((status, payload)).is_ok(),
            None => false,
        }
    }
}

/// Why a route's module input cannot take a message (its topic or size).
fn undeliverable(route: &Route, queue: &DeliveryQueue, error: DeliveryError) -> RouteError {
    let Sink::Module { input, .. } = &route.sink else {
        unreachable!("a route with a delivery sends to a module")
    };
    RouteError::Undeliverable {
        target: queue.module.clone(),
        input: input.clone(),
        error,
    }
}

/// A request id as pending calls are keyed: compared ignoring case, as edgeHub does; the hub's
/// own ids are lower case already, so the common case takes no copy.
fn rid_key(rid: &str) -> std::borrow::Cow<'_, str> {
    if rid.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(rid.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(rid)
    }
}
