//! Store-and-forward delivery to module inputs: one queue per target module, one message in
//! flight, each acknowledged by PUBACK before the next (edgeHub's `DeviceMessageHandler`).
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
    DropReason, HubMetrics, QueueLabels, SendDurationLabels, SentLabels, SharedLabel,
};
use crate::store::{Record, Store};
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// One route's delivery of one sender's output: where the topic starts, the labels, and the
/// metric handles, resolved once and shared by every message routed that way.
pub(crate) struct Delivery {
    /// `devices/{d}/modules/{target}/inputs/{input}`.
    topic_prefix: String,
    /// The sender's `{device}/{module}`.
    pub(super) from: SharedLabel,
    /// The sender's output ("" without one).
    pub(super) from_output: SharedLabel,
    /// The target's `{device}/{module}`.
    to: SharedLabel,
    pub(super) input: SharedLabel,
    priority: u8,
    pub(super) ttl: Duration,
    /// `edgehub_messages_sent_total` and `edgehub_message_send_duration_seconds` of this
    /// delivery, resolved at its first success, so the series appear only once one was sent.
    sent: OnceLock<(Counter, Histogram)>,
}

impl Delivery {
    pub(super) fn new(
        queue: &DeliveryQueue,
        topic_prefix: String,
        from: SharedLabel,
        from_output: SharedLabel,
        input: &str,
        priority: u8,
        ttl: Duration,
    ) -> Self {
        Self {
            topic_prefix,
            from,
            from_output,
            to: queue.to.clone(),
            input: input.into(),
            priority,
            ttl,
            sent: OnceLock::new(),
        }
    }

    /// The topic of a message with this encoded bag.
    pub(super) fn topic(&self, bag: &str) -> String {
        edge::topic::input_with_bag(&self.topic_prefix, bag)
    }

    fn sent(&self, metrics: &HubMetrics) -> &(Counter, Histogram) {
        self.sent.get_or_init(|| {
            let sent = metrics
                .messages_sent
                .get_or_create(&SentLabels {
                    from: self.from.clone(),
                    to: self.to.clone(),
                    from_route_output: self.from_output.clone(),
                    to_route_input: self.input.clone(),
                    priority: self.priority,
                })
                .clone();
            let duration = metrics
                .message_send_duration
                .get_or_create(&SendDurationLabels {
                    from: self.from.clone(),
                    to: self.to.clone(),
                    from_route_output: self.from_output.clone(),
                    to_route_input: self.input.clone(),
                })
                .clone();
            (sent, duration)
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

/// Store-and-forward queue of one target module: one message in flight, as edgeHub does.
pub(crate) struct DeliveryQueue {
    pub(crate) module: String,
    /// The module's name as the store records it.
    pub(super) name: SharedLabel,
    store: Option<Arc<Store>>,
    /// `{device}/{module}`: the `to` label of what this queue delivers.
    to: SharedLabel,
    items: Mutex<VecDeque<Routed>>,
    pub(super) wake: Notify,
    /// `edgehub_queue_length{endpoint="/modules/{module}/inputs"}`, resolved at the first use.
    length: OnceLock<Gauge>,
}

impl DeliveryQueue {
    pub(super) fn new(device: &str, module: &str, store: Option<Arc<Store>>) -> Self {
        Self {
            module: module.to_owned(),
            name: module.into(),
            store,
            to: format!("{device}/{module}").into(),
            items: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            length: OnceLock::new(),
        }
    }

    /// Appends `routed` unless `capacity` messages wait already (then it leaves the store too);
    /// whether it did.
    pub(super) fn push(&self, metrics: &HubMetrics, routed: Routed, capacity: usize) -> bool {
        let len = {
            let Ok(mut items) = self.items.lock() else {
                return false;
            };
            if items.len() >= capacity {
                drop(items);
                self.forget(&routed);
                return false;
            }
            items.push_back(routed);
            items.len()
        };
        self.length(metrics).set(len as i64);
        self.wake.notify_one();
        true
    }

    fn length(&self, metrics: &HubMetrics) -> &Gauge {
        self.length.get_or_init(|| {
            metrics
                .queue_length
                .get_or_create(&QueueLabels {
                    endpoint: format!("/modules/{}/inputs", self.module).into(),
                    priority: 0,
                })
                .clone()
        })
    }

    /// The head's body and expiry.
    fn head(&self) -> Option<(Bytes, Instant)> {
        let items = self.items.lock().ok()?;
        items.front().map(|m| (m.body.clone(), m.expires))
    }

    /// The head's topic for a send: the one built when it was routed, or a new one.
    fn head_topic(&self) -> Option<String> {
        let mut items = self.items.lock().ok()?;
        let m = items.front_mut()?;
        Some(m.topic.take().unwrap_or_else(|| m.via.topic(&m.bag)))
    }

    /// Removes the head, from the store too.
    fn pop(&self, metrics: &HubMetrics) -> Option<Routed> {
        let (m, len) = {
            let mut items = self.items.lock().ok()?;
            let m = items.pop_front();
            (m, items.len())
        };
        self.length(metrics).set(len as i64);
        if let Some(m) = &m {
            self.forget(m);
        }
        m
    }

    fn forget(&self, m: &Routed) {
        if let (Some(store), Some(seq)) = (&self.store, m.seq) {
            store.remove(seq);
        }
    }

    /// Removes the head for good: counted in `edgehub_messages_dropped_total{reason}` and
    /// logged once with the module, the input and why.
    fn drop_head(
        &self,
        metrics: &HubMetrics,
        reason: DropReason,
        why: Option<&dyn std::fmt::Display>,
    ) {
        if let Some(m) = self.pop(metrics) {
            if let Some(why) = why {
                tracing::warn!(target_module = %self.module, input = %m.via.input, from = %m.via.from, reason = reason.as_str(), "message dropped: {why}");
            }
            m.via.dropped(metrics, reason);
        }
    }
}

/// Delivers one module's queue in order, one message in flight, each acknowledged by PUBACK
/// before the next (edgeHub's `DeviceMessageHandler` semantics). A message that cannot be sent,
/// or is sent `max_delivery_attempts` times without a PUBACK, is dropped, counted and logged,
/// so the queue always moves.
pub(super) async fn deliver(hub: Arc<Hub>, queue: Arc<DeliveryQueue>) {
    let metrics = &hub.metrics;
    let mut attempts: u32 = 0;
    loop {
        let notified = queue.wake.notified();
        let head = queue.head();
        if head
            .as_ref()
            .is_some_and(|(_, expires)| Instant::now() > *expires)
        {
            attempts = 0;
            // Expiry is what the time-to-live is for: counted, not logged per message. Checked
            // before anyone is there to take it, so expired messages do not wait for a module
            // that stays offline (within a second: the wait below wakes up to look).
            queue.drop_head(metrics, DropReason::TtlExpired, None);
            continue;
        }
        let session = hub
            .session(&queue.module)
            .filter(|s| s.inputs.load(Ordering::SeqCst) && !s.is_closed.load(Ordering::SeqCst));
        let (Some((body, expires)), Some(session)) = (head, session) else {
            // Nothing to send or nobody to send to: wait for a message or a subscription.
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
            continue;
        };
        if Instant::now() > expires {
            attempts = 0;
            queue.drop_head(metrics, DropReason::TtlExpired, None);
            continue;
        }
        if attempts >= hub.settings.max_delivery_attempts {
            attempts = 0;
            let why = format!(
                "sent {} times without a PUBACK within {:?}",
                hub.settings.max_delivery_attempts, hub.settings.ack_timeout
            );
            queue.drop_head(metrics, DropReason::NotAcknowledged, Some(&why));
            continue;
        }
        if let Some(delay) = hub.faults.delay(Path::Messages) {
            tokio::time::sleep(delay).await;
        }
        // Only this task removes the head, so it is still the message peeked at above.
        let Some(topic) = queue.head_topic() else {
            continue;
        };
        let started = Instant::now();
        let pkid = match session.publish_acked(topic, body, attempts > 0).await {
            Ok(pkid) => pkid,
            Err(PublishError::Undeliverable(e)) => {
                attempts = 0;
                queue.drop_head(metrics, DropReason::Undeliverable, Some(&e));
                continue;
            }
            Err(PublishError::Closed) => continue, // wait for the next connection
        };
        attempts += 1;
        tokio::select! {
            _ = tokio::time::timeout(hub.settings.ack_timeout, session.acknowledgement(pkid)) => {}
            _ = session.closed.notified() => {}
        }
        // Whichever woke first, the PUBACK decides: one read just before the client's
        // DISCONNECT (or the timeout) still completes the message, which is not sent again.
        if !session.awaits(pkid) {
            attempts = 0;
            if let Some(m) = queue.pop(metrics) {
                let elapsed = started.elapsed().as_secs_f64();
                let (sent, duration) = m.via.sent(metrics);
                sent.inc();
                duration.observe(elapsed);
            }
        } else {
            // Sent again under a new packet id; a PUBACK for this one is ignored from now on.
            session.forget(pkid);
            if !session.is_closed.load(Ordering::SeqCst) {
                tracing::warn!(client = %session.name, timeout = ?hub.settings.ack_timeout, attempt = attempts, of = hub.settings.max_delivery_attempts, "Message completion response not received; will resend");
            }
        }
    }
}
