//! Store-and-forward delivery to module inputs: one queue per target module, one message in
//! flight, each acknowledged by PUBACK before the next (edgeHub's `DeviceMessageHandler`).
//!
//! A queue keeps one lane per route priority and always sends from the highest (0 first; a route
//! without a priority has edgeHub's default, the lowest), as edgeHub keeps a store per endpoint
//! and priority and serves the highest first: lower priorities wait while higher ones have
//! messages. Within a lane, messages go in the order they were routed. A message sent and not
//! acknowledged yet is sent again before anything else.
//!
//! Everything a delivery needs besides the message itself — the topic's prefix, the metric label
//! values and handles — is a [`Delivery`] resolved once per (sender connection, output, route) by
//! the router and shared by every message it routes that way, so a message carries only its
//! topic, its encoded bag, its body and an `Arc`.
//!
//! With a store (`crate::store`), every queued message is also there under its sequence number
//! (`Routed::seq`): handed to it as it is queued, removed when it leaves the queue (acknowledged
//! or dropped), so a restarted hub delivers what was waiting.

use super::{Hub, PublishError};
use crate::faults::Path;
use crate::metrics::{
    DropReason, HubMetrics, MsTelemetry, ProcessDurationLabels, QueueLabels, RetryLabels,
    SendDurationLabels, SendMessageToModule, SentLabels, SharedLabel,
};
use crate::store::{Record, Store};
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// What a route delivers to: the sender's labels, the target input, priority and time to live.
pub(crate) struct Via<'a> {
    /// The sender's `{device}/{module}`.
    pub from: SharedLabel,
    /// The sender's output ("" without one).
    pub from_output: SharedLabel,
    pub input: &'a str,
    pub priority: u32,
    pub ttl: Duration,
}

/// The series a delivery records once a message was sent, resolved at its first success.
struct SentHandles {
    count: Counter,
    send: Histogram,
    process: Histogram,
}

/// One route's delivery of one sender's output: where the topic starts, the labels, and the
/// metric handles, resolved once and shared by every message routed that way.
pub(crate) struct Delivery {
    /// `devices/{d}/modules/{target}/inputs/{input}`.
    topic_prefix: String,
    pub(super) from: SharedLabel,
    pub(super) from_output: SharedLabel,
    /// The target's `{device}/{module}`.
    to: SharedLabel,
    pub(super) input: SharedLabel,
    pub(super) priority: u32,
    pub(super) ttl: Duration,
    /// The endpoint's id, `{device}/{module}/{input}`: `edgehub_queue_length{endpoint}` and
    /// `edgehub_operation_retry_total{id}`.
    endpoint: SharedLabel,
    /// `edgehub_queue_length{endpoint,priority}`, shared with every delivery to that lane.
    length: Gauge,
    sent: OnceLock<SentHandles>,
    retried: OnceLock<Counter>,
}

impl Delivery {
    pub(super) fn new(queue: &DeliveryQueue, metrics: &HubMetrics, via: Via<'_>) -> Self {
        let endpoint: SharedLabel = format!("{}/{}", queue.to, via.input).into();
        let length = metrics
            .queue_length
            .get_or_create(&QueueLabels {
                endpoint: endpoint.clone(),
                priority: via.priority,
                ms_telemetry: MsTelemetry,
            })
            .clone();
        Self {
            topic_prefix: edge::topic::input_prefix(&queue.device, &queue.module, via.input),
            from: via.from,
            from_output: via.from_output,
            to: queue.to.clone(),
            input: via.input.into(),
            priority: via.priority,
            ttl: via.ttl,
            endpoint,
            length,
            sent: OnceLock::new(),
            retried: OnceLock::new(),
        }
    }

    /// The topic of a message with this encoded bag.
    pub(super) fn topic(&self, bag: &str) -> String {
        edge::topic::input_with_bag(&self.topic_prefix, bag)
    }

    fn sent(&self, metrics: &HubMetrics) -> &SentHandles {
        self.sent.get_or_init(|| SentHandles {
            count: (metrics.messages_sent)
                .get_or_create(&SentLabels {
                    from: self.from.clone(),
                    to: self.to.clone(),
                    from_route_output: self.from_output.clone(),
                    to_route_input: self.input.clone(),
                    priority: self.priority,
                    ms_telemetry: MsTelemetry,
                })
                .clone(),
            send: (metrics.message_send_duration)
                .get_or_create(&SendDurationLabels {
                    from: self.from.clone(),
                    to: self.to.clone(),
                    from_route_output: self.from_output.clone(),
                    to_route_input: self.input.clone(),
                })
                .clone(),
            process: (metrics.message_process_duration)
                .get_or_create(&ProcessDurationLabels {
                    from: self.from.clone(),
                    to: self.to.clone(),
                    priority: self.priority,
                    ms_telemetry: MsTelemetry,
                })
                .clone(),
        })
    }

    fn retried(&self, metrics: &HubMetrics) -> &Counter {
        self.retried.get_or_init(|| {
            (metrics.operation_retry)
                .get_or_create(&RetryLabels {
                    id: self.endpoint.clone(),
                    operation: SendMessageToModule,
                    ms_telemetry: MsTelemetry,
                })
                .clone()
        })
    }

    pub(super) fn dropped(&self, metrics: &HubMetrics, reason: DropReason) {
        super::count_drop(metrics, reason, &self.from, &self.from_output);
    }
}

/// A message waiting for delivery to one module input.
pub(crate) struct Routed {
    /// Built (and checked) when the message was routed; the first send takes it, a resend
    /// builds it again from `bag`.
    pub(super) topic: Option<String>,
    /// The encoded bag as delivered, shared by every target of the message.
    pub(super) bag: Arc<str>,
    pub(super) body: Bytes,
    pub(super) via: Arc<Delivery>,
    /// When the hub received it: the start of `edgehub_message_process_duration_seconds`
    /// (`None` for a message restored from the store, as edgeHub times only what it received).
    pub(super) received: Option<Instant>,
    pub(super) expires: Instant,
    /// Its number in the store; `None` without one (or when writing it failed).
    pub(super) seq: Option<u64>,
}

impl Routed {
    /// What the store keeps of it for `module`.
    pub(super) fn record(&self, module: &SharedLabel, expires: std::time::SystemTime) -> Record {
        Record {
            module: module.clone(),
            input: self.via.input.clone(),
            from: self.via.from.clone(),
            from_output: self.via.from_output.clone(),
            priority: self.via.priority,
            expires,
            bag: self.bag.clone(),
            body: self.body.clone(),
        }
    }
}

/// The first message of one lane, as the delivery task sees it.
struct Head {
    priority: u32,
    body: Bytes,
    via: Arc<Delivery>,
    received: Option<Instant>,
    expires: Instant,
}

/// The waiting messages of one module: one lane per priority, the highest (lowest number) first.
#[derive(Default)]
struct Lanes {
    by_priority: BTreeMap<u32, VecDeque<Routed>>,
    len: usize,
}

/// Store-and-forward queue of one target module: one message in flight, as edgeHub does.
pub(crate) struct DeliveryQueue {
    pub(crate) module: String,
    device: String,
    /// The module's name as the store records it.
    pub(super) name: SharedLabel,
    store: Option<Arc<Store>>,
    /// `{device}/{module}`: the `to` label of what this queue delivers.
    to: SharedLabel,
    items: Mutex<Lanes>,
    pub(super) wake: Notify,
}

impl DeliveryQueue {
    pub(super) fn new(device: &str, module: &str, store: Option<Arc<Store>>) -> Self {
        Self {
            module: module.to_owned(),
            device: device.to_owned(),
            name: module.into(),
            store,
            to: format!("{device}/{module}").into(),
            items: Mutex::new(Lanes::default()),
            wake: Notify::new(),
        }
    }

    /// Appends `routed` to its priority's lane unless `capacity` messages wait already (then it
    /// leaves the store too); whether it did.
    pub(super) fn push(&self, routed: Routed, capacity: usize) -> bool {
        let via = routed.via.clone();
        {
            let Ok(mut items) = self.items.lock() else {
                return false;
            };
            if items.len >= capacity {
                drop(items);
                self.forget(&routed);
                return false;
            }
            items.len += 1;
            let lane = items.by_priority.entry(via.priority).or_default();
            lane.push_back(routed);
        }
        via.length.inc();
        self.wake.notify_one();
        true
    }

    /// The head of `lane`, or with `None` of the highest lane that has messages.
    fn head(&self, lane: Option<u32>) -> Option<Head> {
        let items = self.items.lock().ok()?;
        let (priority, m) = match lane {
            Some(p) => (p, items.by_priority.get(&p)?.front()?),
            None => (items.by_priority.iter()).find_map(|(p, l)| l.front().map(|m| (*p, m)))?,
        };
        Some(Head {
            priority,
            body: m.body.clone(),
            via: m.via.clone(),
            received: m.received,
            expires: m.expires,
        })
    }

    /// The head's topic for a send: the one built when it was routed, or a new one.
    fn head_topic(&self, lane: u32) -> Option<String> {
        let mut items = self.items.lock().ok()?;
        let m = items.by_priority.get_mut(&lane)?.front_mut()?;
        Some(m.topic.take().unwrap_or_else(|| m.via.topic(&m.bag)))
    }

    /// Removes the head of `lane`, from the store too.
    fn pop(&self, lane: u32) -> Option<Routed> {
        let m = {
            let mut items = self.items.lock().ok()?;
            let m = items.by_priority.get_mut(&lane)?.pop_front()?;
            items.len -= 1;
            m
        };
        m.via.length.dec();
        self.forget(&m);
        Some(m)
    }

    fn forget(&self, m: &Routed) {
        if let (Some(store), Some(seq)) = (&self.store, m.seq) {
            store.remove(seq);
        }
    }

    /// Drops (and counts) every expired message at the front of a lane, until no lane's front
    /// has expired; whether the head of `resend` was one of them.
    fn drop_expired(&self, metrics: &HubMetrics, resend: Option<u32>) -> bool {
        let mut dropped_resend = false;
        loop {
            let now = Instant::now();
            let expired = self.items.lock().ok().and_then(|items| {
                (items.by_priority.iter())
                    .find(|(_, l)| l.front().is_some_and(|m| now > m.expires))
                    .map(|(p, _)| *p)
            });
            let Some(lane) = expired else {
                return dropped_resend;
            };
            dropped_resend |= resend == Some(lane);
            self.drop_head(lane, metrics, DropReason::TtlExpiry, None);
        }
    }

    /// Removes the head of `lane` for good: counted in `edgehub_messages_dropped_total{reason}`
    /// and logged once with the module, the input and why.
    fn drop_head(
        &self,
        lane: u32,
        metrics: &HubMetrics,
        reason: DropReason,
        why: Option<&dyn std::fmt::Display>,
    ) {
        if let Some(m) = self.pop(lane) {
            if let Some(why) = why {
                tracing::warn!(target_module = %self.module, input = %m.via.input, from = %m.via.from, reason = reason.as_str(), "message dropped: {why}");
            }
            m.via.dropped(metrics, reason);
        }
    }
}

/// What became of one send.
enum Outcome {
    Acknowledged,
    /// No PUBACK within the ack timeout, or the connection closed first: send it again.
    Unacknowledged,
    /// Not sent: the connection is gone; look again.
    NotSent,
    /// Dropped as undeliverable: on to the next message.
    Dropped,
}

/// Delivers one module's queue, highest priority first, one message in flight, each
/// acknowledged by PUBACK before the next (edgeHub's `DeviceMessageHandler` semantics). A
/// message that cannot be sent, or is sent `max_delivery_attempts` times without a PUBACK, is
/// dropped, counted and logged, so the queue always moves.
pub(super) async fn deliver(hub: Arc<Hub>, queue: Arc<DeliveryQueue>) {
    let metrics = &hub.metrics;
    let mut attempts: u32 = 0;
    // The lane of a message sent and not acknowledged: it is sent again before anything else.
    let mut resend: Option<u32> = None;
    loop {
        let notified = queue.wake.notified();
        let head = queue.head(resend);
        if head.is_none() && resend.take().is_some() {
            attempts = 0;
            continue;
        }
        if let Some(h) = head.as_ref().filter(|h| Instant::now() > h.expires) {
            (attempts, resend) = (0, None);
            // Expiry is what the time-to-live is for: counted, not logged per message. Checked
            // before anyone is there to take it, so expired messages do not wait for a module
            // that stays offline (within a second: the wait below wakes up to look).
            queue.drop_head(h.priority, metrics, DropReason::TtlExpiry, None);
            continue;
        }
        let session = hub
            .session(&queue.module)
            .filter(|s| s.takes_inputs() && !s.is_closed.load(Ordering::SeqCst));
        let (Some(head), Some(session)) = (head, session) else {
            // Nobody to send to: what expired behind the head of any lane goes too, as
            // edgeHub's cleanup drops expired messages wherever they wait.
            if queue.drop_expired(metrics, resend) {
                (attempts, resend) = (0, None);
            }
            // Nothing to send or nobody to send to: wait for a message or a subscription.
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
            continue;
        };
        if attempts >= hub.settings.max_delivery_attempts {
            (attempts, resend) = (0, None);
            let why = format!(
                "sent {} times without a PUBACK within {:?}",
                hub.settings.max_delivery_attempts, hub.settings.ack_timeout
            );
            queue.drop_head(
                head.priority,
                metrics,
                DropReason::NotAcknowledged,
                Some(&why),
            );
            continue;
        }
        match send_head(&hub, &queue, &session, &head, attempts).await {
            Outcome::Acknowledged | Outcome::Dropped => (attempts, resend) = (0, None),
            Outcome::Unacknowledged => {
                attempts += 1;
                resend = Some(head.priority);
                head.via.retried(metrics).inc();
            }
            Outcome::NotSent => {}
        }
    }
}

/// Sends the head of its lane once and waits for its PUBACK (or the ack timeout, or the
/// connection's end); an acknowledged message leaves the queue and is counted as sent.
async fn send_head(
    hub: &Hub,
    queue: &DeliveryQueue,
    session: &super::Session,
    head: &Head,
    attempts: u32,
) -> Outcome {
    let metrics = &hub.metrics;
    if let Some(delay) = hub.faults.delay(Path::Messages) {
        tokio::time::sleep(delay).await;
    }
    // Only this task removes a lane's head, so it is still the message peeked at.
    let Some(topic) = queue.head_topic(head.priority) else {
        return Outcome::NotSent;
    };
    let started = Instant::now();
    let pkid = match session
        .publish_acked(topic, head.body.clone(), attempts > 0)
        .await
    {
        Ok(pkid) => pkid,
        Err(PublishError::Undeliverable(e)) => {
            queue.drop_head(head.priority, metrics, DropReason::Undeliverable, Some(&e));
            return Outcome::Dropped;
        }
        Err(PublishError::Closed) => return Outcome::NotSent, // wait for the next connection
    };
    let handles = head.via.sent(metrics);
    if let Some(received) = head.received {
        // edgeHub times every send of it from its arrival (`MessageProcessingLatency`).
        handles
            .process
            .observe(started.saturating_duration_since(received).as_secs_f64());
    }
    tokio::select! {
        _ = tokio::time::timeout(hub.settings.ack_timeout, session.acknowledgement(pkid)) => {}
        _ = session.closed.notified() => {}
    }
    // Whichever woke first, the PUBACK decides: one read just before the client's
    // DISCONNECT (or the timeout) still completes the message, which is not sent again.
    if !session.awaits(pkid) {
        if queue.pop(head.priority).is_some() {
            handles.count.inc();
            handles.send.observe(started.elapsed().as_secs_f64());
        }
        return Outcome::Acknowledged;
    }
    // Sent again under a new packet id; a PUBACK for this one is ignored from now on.
    session.forget(pkid);
    if !session.is_closed.load(Ordering::SeqCst) {
        tracing::warn!(client = %session.name, timeout = ?hub.settings.ack_timeout, attempt = attempts + 1, of = hub.settings.max_delivery_attempts, "Message completion response not received; will resend");
    }
    Outcome::Unacknowledged
}
