//! A module's live MQTT connection as the hub's state sees it: the packets queued for it, what it
//! subscribed to, the PUBACKs its deliveries wait for, and what routing its own messages needs
//! again and again (`SenderRouting`).

use bytes::Bytes;
use edge::topic::{check_deliverable, DeliveryError};
use rumqttc::mqttbytes::v4::{Packet, Publish};
use rumqttc::mqttbytes::QoS;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};

/// A module's live MQTT connection.
pub struct Session {
    pub id: u64,
    pub module: String,
    /// `{device}/{module}`.
    pub name: Arc<str>,
    pub outbound: mpsc::Sender<Packet>,
    inputs: AtomicBool,
    /// Granted QoS for method requests + 1; 0 = not subscribed (one atomic byte, read on every
    /// call): only `methods_qos` and `set_methods_qos` know the coding.
    methods: AtomicU8,
    next_pkid: AtomicU16,
    /// Packet ids of QoS 1 publishes still waiting for their PUBACK; `acked` wakes the waiters
    /// when one leaves. (A waiter that gave up leaves its id here, so a late PUBACK for it is
    /// still recognised as one, as before.)
    acks: Mutex<HashSet<u16>>,
    acked: Notify,
    pub closed: Notify,
    pub(crate) is_closed: AtomicBool,
    pub(crate) twin_version: AtomicU64,
    /// Buffers and resolved handles for routing this connection's messages; only `Hub::route`
    /// takes it, from this connection's read loop, so it is never contended.
    pub(super) routing: Mutex<super::routing::SenderRouting>,
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
            acks: Mutex::new(HashSet::new()),
            acked: Notify::new(),
            closed: Notify::new(),
            is_closed: AtomicBool::new(false),
            twin_version: AtomicU64::new(1),
            routing: Mutex::default(),
        }
    }

    /// Subscribed to its inputs (deliveries may go to it).
    pub fn takes_inputs(&self) -> bool {
        self.inputs.load(Ordering::SeqCst)
    }

    /// Records a SUBSCRIBE to its inputs (`true`) or an UNSUBSCRIBE (`false`).
    pub(crate) fn set_takes_inputs(&self, subscribed: bool) {
        self.inputs.store(subscribed, Ordering::SeqCst);
    }

    /// Subscribed to method requests (calls may go to it).
    pub fn takes_methods(&self) -> bool {
        self.methods_qos().is_some()
    }

    /// The QoS granted for method requests; `None` when not subscribed to them.
    pub fn methods_qos(&self) -> Option<QoS> {
        match self.methods.load(Ordering::SeqCst) {
            0 => None,
            1 => Some(QoS::AtMostOnce),
            2 => Some(QoS::AtLeastOnce),
            _ => Some(QoS::ExactlyOnce),
        }
    }

    /// Records a SUBSCRIBE to method requests granted with `qos`, or (`None`) an UNSUBSCRIBE.
    pub(crate) fn set_methods_qos(&self, qos: Option<QoS>) {
        let coded = qos.map_or(0, |q| q as u8 + 1);
        self.methods.store(coded, Ordering::SeqCst);
    }

    fn pkid(&self) -> u16 {
        loop {
            let id = self.next_pkid.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    /// Publishes with QoS 1; returns the packet id whose PUBACK [`Session::acknowledgement`]
    /// waits for.
    pub async fn publish_acked(
        &self,
        topic: String,
        payload: Bytes,
        dup: bool,
    ) -> Result<u16, PublishError> {
        check_deliverable(&topic, payload.len())?;
        let pkid = self.pkid();
        if let Ok(mut acks) = self.acks.lock() {
            acks.insert(pkid);
        }
        let mut publish = Publish::from_bytes(topic, QoS::AtLeastOnce, payload);
        publish.pkid = pkid;
        publish.dup = dup;
        self.outbound
            .send(Packet::Publish(publish))
            .await
            .map_err(|_| PublishError::Closed)?;
        Ok(pkid)
    }

    /// Completes when the client has acknowledged the publish with packet id `pkid`.
    pub async fn acknowledgement(&self, pkid: u16) {
        loop {
            let acked = self.acked.notified();
            tokio::pin!(acked);
            // Registered before the check, so a PUBACK between the two is not missed.
            acked.as_mut().enable();
            if !self.awaits(pkid) {
                return;
            }
            acked.await;
        }
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
        self.acks.lock().is_ok_and(|a| a.contains(&pkid))
    }

    pub fn acknowledged(&self, pkid: u16) {
        let waited = self.acks.lock().is_ok_and(|mut a| a.remove(&pkid));
        if waited {
            self.acked.notify_waiters();
        }
    }

    /// Stops waiting for `pkid`: a PUBACK for it from now on is ignored.
    pub fn forget(&self, pkid: u16) {
        if let Ok(mut a) = self.acks.lock() {
            a.remove(&pkid);
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
