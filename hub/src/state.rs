//! The hub's shared state: connected sessions, per-module delivery queues, pending method calls.

use crate::faults::{Faults, Path};
use crate::identities::Identities;
use crate::metrics::{DroppedLabels, HubMetrics, QueueLabels, SendDurationLabels, SentLabels};
use crate::refusals::Refusals;
use crate::routes::{RouteTable, Sink};
use bytes::Bytes;
use edge::bag::{PropertyBag, CONNECTION_DEVICE_ID, CONNECTION_MODULE_ID};
use edge::topic::{check_deliverable, DeliveryError};
use rumqttc::mqttbytes::v4::{Packet, Publish};
use rumqttc::mqttbytes::QoS;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Notify};
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

/// A module's live MQTT connection.
pub struct Session {
    pub id: u64,
    pub module: String,
    /// `{device}/{module}`.
    pub name: Arc<str>,
    pub outbound: mpsc::Sender<Packet>,
    pub inputs: AtomicBool,
    /// Granted QoS for method requests + 1; 0 = not subscribed.
    pub methods: AtomicU8,
    next_pkid: AtomicU16,
    acks: Mutex<HashMap<u16, oneshot::Sender<()>>>,
    pub closed: Notify,
    pub is_closed: AtomicBool,
    pub twin_version: AtomicU64,
}

impl Session {
    pub fn new(id: u64, module: String, name: Arc<str>, outbound: mpsc::Sender<Packet>) -> Self {
        Self {
            id,
            module,
            name,
            outbound,
            inputs: AtomicBool::new(false),
            methods: AtomicU8::new(0),
            next_pkid: AtomicU16::new(1),
            acks: Mutex::new(HashMap::new()),
            closed: Notify::new(),
            is_closed: AtomicBool::new(false),
            twin_version: AtomicU64::new(1),
        }
    }

    fn pkid(&self) -> u16 {
        loop {
            let id = self.next_pkid.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    /// Publishes with QoS 1 and returns a receiver completed by the client's PUBACK.
    pub async fn publish_acked(
        &self,
        topic: String,
        payload: Bytes,
        dup: bool,
    ) -> Result<oneshot::Receiver<()>, PublishError> {
        check_deliverable(&topic, payload.len())?;
        let pkid = self.pkid();
        let (tx, rx) = oneshot::channel();
        if let Ok(mut acks) = self.acks.lock() {
            acks.insert(pkid, tx);
        }
        let mut publish = Publish::from_bytes(topic, QoS::AtLeastOnce, payload);
        publish.pkid = pkid;
        publish.dup = dup;
        self.outbound
            .send(Packet::Publish(publish))
            .await
            .map_err(|_| PublishError::Closed)?;
        Ok(rx)
    }

    /// Publishes with the given QoS, not waiting for an acknowledgement.
    pub async fn publish(
        &self,
        topic: String,
        payload: Bytes,
        qos: QoS,
    ) -> Result<(), PublishError> {
        check_deliverable(&topic, payload.len())?;
        let mut publish = Publish::from_bytes(topic, qos, payload);
        if qos != QoS::AtMostOnce {
            publish.pkid = self.pkid();
        }
        self.outbound
            .send(Packet::Publish(publish))
            .await
            .map_err(|_| PublishError::Closed)
    }

    /// Whether a delivery waits for the PUBACK with this packet id.
    pub fn awaits(&self, pkid: u16) -> bool {
        self.acks.lock().is_ok_and(|a| a.contains_key(&pkid))
    }

    pub fn acknowledged(&self, pkid: u16) {
        let waiter = self.acks.lock().ok().and_then(|mut a| a.remove(&pkid));
        if let Some(tx) = waiter {
            let _ = tx.send(());
        }
    }

    pub fn close(&self) {
        self.is_closed.store(true, Ordering::SeqCst);
        self.closed.notify_waiters();
    }
}

/// Why a PUBLISH to a module did not go out.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Undeliverable(#[from] DeliveryError),
    #[error("the connection closed")]
    Closed,
}

/// A message waiting for delivery to one module input.
pub struct Routed {
    pub topic: String,
    pub body: Bytes,
    pub from: Arc<str>,
    pub from_output: String,
    pub input: String,
    pub priority: u8,
    pub expires: Instant,
}

/// Store-and-forward queue of one target module: one message in flight, as edgeHub does.
pub struct DeliveryQueue {
    pub module: String,
    items: Mutex<VecDeque<Routed>>,
    wake: Notify,
}

pub struct Hub {
    pub settings: Settings,
    pub identities: Identities,
    pub routes: RouteTable,
    pub metrics: HubMetrics,
    pub refusals: Refusals,
    pub faults: Faults,
    /// Every task the hub spawns runs under this token and tracker, so `stop` ends them all.
    shutdown: CancellationToken,
    tasks: TaskTracker,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    queues: Mutex<HashMap<String, Arc<DeliveryQueue>>>,
    pending_methods: Mutex<HashMap<String, oneshot::Sender<(u16, Bytes)>>>,
    next_session: AtomicU64,
    upstream_logged: AtomicBool,
}

/// What a module message looks like to a route's WHERE clause.
struct RoutingView<'a> {
    device: &'a str,
    module: &'a str,
    output: Option<&'a str>,
    bag: &'a PropertyBag,
}

impl crate::routes::MessageProperties for RoutingView<'_> {
    fn system(&self, name: &str) -> Option<&str> {
        match name {
            "connectionDeviceId" => Some(self.device),
            "connectionModuleId" => Some(self.module),
            "outputName" => self.output,
            "messageId" => self.bag.get("$.mid"),
            "correlationId" => self.bag.get("$.cid"),
            "contentType" => self.bag.get("$.ct"),
            "contentEncoding" => self.bag.get("$.ce"),
            "userId" => self.bag.get("$.uid"),
            "to" => self.bag.get("$.to"),
            _ => None,
        }
    }
    fn application(&self, name: &str) -> Option<&str> {
        if name.starts_with("$.") {
            return None;
        }
        self.bag.get(name)
    }
}

impl Hub {
    pub fn new(
        settings: Settings,
        identities: Identities,
        routes: RouteTable,
        metrics: HubMetrics,
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
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            sessions: Mutex::new(HashMap::new()),
            queues: Mutex::new(HashMap::new()),
            pending_methods: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            upstream_logged: AtomicBool::new(false),
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
        hub
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
        let q = Arc::new(DeliveryQueue {
            module: module.to_owned(),
            items: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
        });
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
        let mut bag = PropertyBag::decode(bag_encoded)?;
        let output = bag.remove(edge::bag::OUTPUT_NAME);
        let device = &self.settings.device_id;
        let module = sender.module.as_str();
        let route_output = output.clone().unwrap_or_default();
        self.metrics
            .messages_received
            .get_or_create(&crate::metrics::ReceivedLabels {
                id: sender.name.to_string(),
                route_output: route_output.clone(),
            })
            .inc();
        self.metrics
            .message_size
            .get_or_create(&crate::metrics::IdLabels {
                id: sender.name.to_string(),
            })
            .observe(body.len() as f64);
        let source = match &output {
            Some(o) => format!("/messages/modules/{module}/outputs/{o}"),
            None => format!("/messages/modules/{module}"),
        };
        let view = RoutingView {
            device,
            module,
            output: output.as_deref(),
            bag: &bag,
        };
        let matched: Vec<&crate::routes::Route> = self
            .routes
            .routes()
            .iter()
            .filter(|r| r.matches(&source, &view))
            .collect();
        if matched.is_empty() {
            self.dropped("no_route", sender, &route_output);
            tracing::debug!(from = %sender.name, %source, "no route matches; message dropped");
            return Ok(0);
        }
        bag.insert(CONNECTION_DEVICE_ID, device.as_str());
        bag.insert(CONNECTION_MODULE_ID, module);
        let mut deliveries = Vec::with_capacity(matched.len());
        let mut upstream = 0;
        for route in matched {
            match &route.sink {
                Sink::Upstream => {
                    upstream += 1;
                    if !self.upstream_logged.swap(true, Ordering::Relaxed) {
                        tracing::warn!(route = %route.name, "route sends to $upstream; there is no IoT Hub behind the local hub, so such messages are counted in edgehub_messages_dropped_total{{reason=\"upstream\"}} and dropped (logged once)");
                    }
                }
                Sink::Module {
                    module: target,
                    input,
                } => {
                    let ttl = route
                        .time_to_live_secs
                        .map(Duration::from_secs)
                        .unwrap_or(self.settings.default_ttl);
                    let topic = edge::topic::input(device, target, input, &bag);
                    check_deliverable(&topic, body.len()).map_err(|error| {
                        RouteError::Undeliverable {
                            target: target.clone(),
                            input: input.clone(),
                            error,
                        }
                    })?;
                    let routed = Routed {
                        topic,
                        body: body.clone(),
                        from: sender.name.clone(),
                        from_output: route_output.clone(),
                        input: input.clone(),
                        priority: route.priority,
                        expires: Instant::now() + ttl,
                    };
                    deliveries.push((target, routed));
                }
            }
        }
        for _ in 0..upstream {
            self.dropped("upstream", sender, &route_output);
        }
        let mut taken = 0;
        for (target, routed) in deliveries {
            if self.faults.drop(Path::Messages) {
                self.dropped("fault", sender, &route_output);
                continue;
            }
            if self.enqueue(target, routed) {
                taken += 1;
            } else {
                self.dropped("queue_overflow", sender, &route_output);
            }
        }
        Ok(taken)
    }

    fn dropped(&self, reason: &'static str, sender: &Session, output: &str) {
        self.metrics
            .messages_dropped
            .get_or_create(&DroppedLabels {
                reason,
                from: sender.name.to_string(),
                from_route_output: output.to_owned(),
            })
            .inc();
    }

    fn enqueue(self: &Arc<Self>, module: &str, routed: Routed) -> bool {
        let q = self.queue(module);
        let len = {
            let Ok(mut items) = q.items.lock() else {
                return false;
            };
            if items.len() >= self.settings.queue_size {
                tracing::warn!(target_module = module, capacity = self.settings.queue_size, "delivery queue full; message dropped (edgehub_messages_dropped_total{{reason=\"queue_overflow\"}})");
                return false;
            }
            items.push_back(routed);
            items.len()
        };
        self.queue_gauge(module).set(len as i64);
        q.wake.notify_one();
        true
    }

    fn queue_gauge(&self, module: &str) -> prometheus_client::metrics::gauge::Gauge {
        self.metrics
            .queue_length
            .get_or_create(&QueueLabels {
                endpoint: format!("/modules/{module}/inputs"),
                priority: "0".into(),
            })
            .clone()
    }

    /// Registers a pending method call; the response completes the receiver.
    pub fn expect_method_response(&self, rid: &str) -> oneshot::Receiver<(u16, Bytes)> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending_methods.lock() {
            p.insert(rid.to_ascii_lowercase(), tx);
        }
        rx
    }

    pub fn forget_method(&self, rid: &str) {
        if let Ok(mut p) = self.pending_methods.lock() {
            p.remove(&rid.to_ascii_lowercase());
        }
    }

    pub fn method_response(&self, rid: &str, status: u16, payload: Bytes) -> bool {
        let waiter = self
            .pending_methods
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&rid.to_ascii_lowercase()));
        match waiter {
            Some(tx) => tx.send((status, payload)).is_ok(),
            None => false,
        }
    }
}

/// Delivers one module's queue in order, one message in flight, each acknowledged by PUBACK
/// before the next (edgeHub's `DeviceMessageHandler` semantics). A message that cannot be sent,
/// or is sent `max_delivery_attempts` times without a PUBACK, is dropped, counted and logged,
/// so the queue always moves.
async fn deliver(hub: Arc<Hub>, queue: Arc<DeliveryQueue>) {
    let device = hub.settings.device_id.clone();
    let to = format!("{device}/{}", queue.module);
    let mut attempts: u32 = 0;
    loop {
        let notified = queue.wake.notified();
        let head = queue.items.lock().ok().and_then(|items| {
            items
                .front()
                .map(|m| (m.topic.clone(), m.body.clone(), m.expires))
        });
        let session = hub
            .session(&queue.module)
            .filter(|s| s.inputs.load(Ordering::SeqCst) && !s.is_closed.load(Ordering::SeqCst));
        let (Some((topic, body, expires)), Some(session)) = (head, session) else {
            // Nothing to send or nobody to send to: wait for a message or a subscription.
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
            continue;
        };
        if Instant::now() > expires {
            attempts = 0;
            // Expiry is what the time-to-live is for: counted, not logged per message.
            drop_head(&hub, &queue, "ttl_expiry", None);
            continue;
        }
        if attempts >= hub.settings.max_delivery_attempts {
            attempts = 0;
            let why = format!(
                "sent {} times without a PUBACK within {:?}",
                hub.settings.max_delivery_attempts, hub.settings.ack_timeout
            );
            drop_head(&hub, &queue, "not_acknowledged", Some(&why));
            continue;
        }
        if let Some(delay) = hub.faults.delay(Path::Messages) {
            tokio::time::sleep(delay).await;
        }
        let started = Instant::now();
        let ack = match session.publish_acked(topic, body, attempts > 0).await {
            Ok(ack) => ack,
            Err(PublishError::Undeliverable(e)) => {
                attempts = 0;
                drop_head(&hub, &queue, "undeliverable", Some(&e));
                continue;
            }
            Err(PublishError::Closed) => continue, // wait for the next connection
        };
        attempts += 1;
        let outcome = tokio::select! {
            r = tokio::time::timeout(hub.settings.ack_timeout, ack) => r.ok().and_then(|r| r.ok()),
            _ = session.closed.notified() => None,
        };
        match outcome {
            Some(()) => {
                attempts = 0;
                if let Some(m) = pop(&hub, &queue) {
                    let elapsed = started.elapsed().as_secs_f64();
                    hub.metrics
                        .messages_sent
                        .get_or_create(&SentLabels {
                            from: m.from.to_string(),
                            to: to.clone(),
                            from_route_output: m.from_output.clone(),
                            to_route_input: m.input.clone(),
                            priority: m.priority.to_string(),
                        })
                        .inc();
                    hub.metrics
                        .message_send_duration
                        .get_or_create(&SendDurationLabels {
                            from: m.from.to_string(),
                            to: to.clone(),
                            from_route_output: m.from_output,
                            to_route_input: m.input,
                        })
                        .observe(elapsed);
                }
            }
            None => {
                if !session.is_closed.load(Ordering::SeqCst) {
                    tracing::warn!(client = %session.name, timeout = ?hub.settings.ack_timeout, attempt = attempts, of = hub.settings.max_delivery_attempts, "Message completion response not received; will resend");
                }
            }
        }
    }
}

/// Removes the queue's head for good: counted in `edgehub_messages_dropped_total{reason}` and
/// logged once with the module, the input and why.
fn drop_head(
    hub: &Hub,
    queue: &DeliveryQueue,
    reason: &'static str,
    why: Option<&dyn std::fmt::Display>,
) {
    if let Some(m) = pop(hub, queue) {
        if let Some(why) = why {
            tracing::warn!(target_module = %queue.module, input = %m.input, from = %m.from, reason, "message dropped: {why}");
        }
        hub.metrics
            .messages_dropped
            .get_or_create(&DroppedLabels {
                reason,
                from: m.from.to_string(),
                from_route_output: m.from_output,
            })
            .inc();
    }
}

fn pop(hub: &Hub, queue: &DeliveryQueue) -> Option<Routed> {
    let (m, len) = {
        let mut items = queue.items.lock().ok()?;
        let m = items.pop_front();
        (m, items.len())
    };
    hub.queue_gauge(&queue.module).set(len as i64);
    m
}
