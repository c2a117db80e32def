//! The module's MQTT session with edgeHub (docs/protocol.md#the-mqtt-connection): exact client
//! id and username, QoS 1 outputs with `$.on`, inputs and method requests delivered on a
//! channel, each acknowledged once the module is done with it ([`Ack`]), reconnect with bounded
//! exponential backoff, subscriptions restored, and the SAS token renewed before expiry. Its loop
//! keeps a [`Heartbeat`] for the module's watchdog.

use crate::bag::{PropertyBag, OUTPUT_NAME};
use crate::identity::{IdentityError, ModuleIdentity};
use crate::message::{Message, MethodRequest};
use crate::tls::{self, TlsError};
use crate::topic::{self, Topic};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, NetworkOptions, Packet, Publish,
    QoS, TlsConfiguration, Transport,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// edgeHub's message limit (body and topic) plus the packet's own header bytes; rumqttc's
/// default (10 KiB) is far below it.
pub const MAX_PACKET_SIZE: usize = crate::topic::MAX_MESSAGE_SIZE + 1024;
const KEEP_ALIVE: Duration = Duration::from_secs(60);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// TCP connect, TLS and CONNACK; also each flush of a connected session.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest rumqttc's `poll` goes without returning when all is well: connected and idle, it
/// sends a PINGREQ every keep-alive (and flushes it within the connection timeout); connecting,
/// it gives up after the connection timeout.
const POLL_BOUND: Duration =
    Duration::from_secs(KEEP_ALIVE.as_secs() + 2 * CONNECTION_TIMEOUT.as_secs());
const CLIENT_TYPE: &str = concat!(
    "iotedge-method-vs-message/",
    env!("CARGO_PKG_VERSION"),
    " (rust)"
);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("gateway CA: {0}")]
    Tls(#[from] TlsError),
    #[error("the MQTT session has ended")]
    Closed,
    #[error("message property bag: {0}")]
    Bag(#[from] crate::bag::BagError),
}

/// What edgeHub delivers to the module, with its acknowledgement.
#[derive(Debug)]
pub enum Incoming {
    Input {
        input: String,
        message: Message,
        ack: Ack,
    },
    Method {
        request: MethodRequest,
        ack: Ack,
    },
}

/// The PUBACK of one delivery, sent when this is dropped: when the module is done with the
/// message, as the Azure IoT SDKs complete a message once its handler returns. So a reply the
/// handler sends leaves before the acknowledgement, not behind it (rumqttc would otherwise write
/// the PUBACK before handing the message over, on every exchange's critical path), and a module
/// that stops mid-message gets it again. edgeHub sends a module input its next message only after
/// this one's PUBACK: an `Ack` held on to holds that input back.
#[must_use = "the delivery is acknowledged when its Ack is dropped"]
pub struct Ack {
    client: AsyncClient,
    /// Only the QoS and packet id are used; `None` once sent.
    publish: Option<Publish>,
    /// The connection it came on: a packet id means nothing on a later one (the hub sends the
    /// message again there), so an `Ack` that outlives its connection sends nothing.
    connection: u64,
    connections: watch::Receiver<u64>,
}

impl Ack {
    fn new(client: &AsyncClient, publish: &Publish, connected: &watch::Sender<u64>) -> Self {
        let mut ack = Publish::new("", publish.qos, Vec::new());
        ack.pkid = publish.pkid;
        let connections = connected.subscribe();
        let connection = *connections.borrow();
        Self {
            client: client.clone(),
            publish: Some(ack),
            connection,
            connections,
        }
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pkid = self.publish.as_ref().map(|p| p.pkid);
        f.debug_struct("Ack").field("pkid", &pkid).finish()
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        let Some(publish) = self.publish.take() else {
            return;
        };
        if *self.connections.borrow() != self.connection {
            return;
        }
        // The session's request queue is full (or closed): wait for room off this thread's way.
        if self.client.try_ack(&publish).is_err() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let client = self.client.clone();
                runtime.spawn(async move { client.ack(&publish).await });
            }
        }
    }
}

/// When the session's loop last turned and until when it may legitimately stay away (waiting in
/// `poll`, or sleeping before a reconnect): a module's watchdog reads it. "Connected or retrying"
/// both turn it; a loop stuck anywhere else (a full delivery channel, a deadlock on its own request
/// queue) does not.
#[derive(Debug, Clone)]
pub struct Heartbeat(Arc<Beats>);

#[derive(Debug)]
struct Beats {
    anchor: Instant,
    /// Milliseconds since `anchor`.
    last_ms: AtomicU64,
    /// Milliseconds since `anchor`; `u64::MAX` once the session has ended.
    due_ms: AtomicU64,
}

impl Heartbeat {
    fn new() -> Self {
        let beats = Beats {
            anchor: Instant::now(),
            last_ms: AtomicU64::new(0),
            due_ms: AtomicU64::new(0),
        };
        let heartbeat = Self(Arc::new(beats));
        heartbeat.beat(POLL_BOUND);
        heartbeat
    }

    fn millis(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    /// The loop turned; it turns again within `bound`.
    fn beat(&self, bound: Duration) {
        let now = Self::millis(self.0.anchor.elapsed());
        self.0.last_ms.store(now, Ordering::Relaxed);
        self.0
            .due_ms
            .store(now.saturating_add(Self::millis(bound)), Ordering::Relaxed);
    }

    /// The session ended (a DISCONNECT sent, or the module dropped it): nothing is owed.
    fn ended(&self) {
        self.0.due_ms.store(u64::MAX, Ordering::Relaxed);
    }

    /// When the loop last turned.
    pub fn last(&self) -> Instant {
        self.0.anchor + Duration::from_millis(self.0.last_ms.load(Ordering::Relaxed))
    }

    /// When the loop is overdue unless it turns meanwhile; `None` once the session has ended.
    pub fn due(&self) -> Option<Instant> {
        let due = self.0.due_ms.load(Ordering::Relaxed);
        (due != u64::MAX).then(|| self.0.anchor + Duration::from_millis(due))
    }
}

/// Which deliveries to subscribe to (as the SDKs, only what a handler exists for).
#[derive(Debug, Clone, Copy, Default)]
pub struct Subscriptions {
    pub inputs: bool,
    pub methods: bool,
}

impl Subscriptions {
    pub const NONE: Self = Self {
        inputs: false,
        methods: false,
    };
    pub const INPUTS: Self = Self {
        inputs: true,
        methods: false,
    };
    pub const METHODS: Self = Self {
        inputs: false,
        methods: true,
    };
    pub const ALL: Self = Self {
        inputs: true,
        methods: true,
    };
}

/// A connected module: send outputs and method responses; deliveries arrive on the receiver
/// returned by [`ModuleClient::connect`].
#[derive(Clone)]
pub struct ModuleClient {
    client: AsyncClient,
    identity: Arc<ModuleIdentity>,
    /// `devices/{d}/modules/{m}/messages/events/`, built once.
    events_prefix: Arc<str>,
    /// How many times the session has connected (CONNACK received) so far.
    connections: watch::Receiver<u64>,
    heartbeat: Heartbeat,
}

impl ModuleClient {
    /// Connects (in the background, retrying) and returns the client and the delivery stream.
    pub async fn connect(
        identity: Arc<ModuleIdentity>,
        subscriptions: Subscriptions,
    ) -> Result<(Self, mpsc::Receiver<Incoming>), SessionError> {
        let ca = identity.trust_bundle().await?;
        let tls = tls::client_config(&ca, &[])?;
        let (token, expiry) = identity.token(identity.token_lifetime.ttl).await?;
        let mut options = MqttOptions::new(
            identity.name(),
            identity.gateway_hostname.clone(),
            identity.mqtt_port,
        );
        options
            .set_credentials(
                topic::username(
                    &identity.iothub_hostname,
                    &identity.device_id,
                    &identity.module_id,
                    CLIENT_TYPE,
                ),
                token,
            )
            .set_clean_session(false)
            .set_keep_alive(KEEP_ALIVE)
            .set_max_packet_size(MAX_PACKET_SIZE, MAX_PACKET_SIZE)
            .set_inflight(100)
            // Deliveries are acknowledged when handled (`Ack`).
            .set_manual_acks(true)
            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(tls),
            )));
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        let mut network = NetworkOptions::new();
        // Nagle would add 40-90 ms to every exchange (docs/architecture.md#performance-choices).
        network.set_tcp_nodelay(true);
        network.set_connection_timeout(CONNECTION_TIMEOUT.as_secs());
        eventloop.set_network_options(network);

        let (tx, rx) = mpsc::channel(1024);
        let (connected, connections) = watch::channel(0);
        let heartbeat = Heartbeat::new();
        let driver = Driver {
            connected,
            identity: identity.clone(),
            client: client.clone(),
            subscriptions,
            deliveries: tx,
            token_expiry: expiry,
            heartbeat: heartbeat.clone(),
        };
        let ended = heartbeat.clone();
        tokio::spawn(async move {
            driver.run(eventloop).await;
            ended.ended();
        });
        // The output topic with an empty bag: each send appends its own.
        let events_prefix = topic::output(
            &identity.device_id,
            &identity.module_id,
            &PropertyBag::new(),
        );
        Ok((
            Self {
                client,
                identity,
                events_prefix: events_prefix.into(),
                connections,
                heartbeat,
            },
            rx,
        ))
    }

    pub fn identity(&self) -> &ModuleIdentity {
        &self.identity
    }

    /// The number of times the session has connected (each CONNACK, the first included); it
    /// changes on every reconnect.
    pub fn connections(&self) -> watch::Receiver<u64> {
        self.connections.clone()
    }

    /// The session loop's heartbeat, for a watchdog.
    pub fn heartbeat(&self) -> Heartbeat {
        self.heartbeat.clone()
    }

    /// Sends `message` to `output` (QoS 1, `$.on` set). Returns once the session has queued it.
    pub async fn send_output(&self, output: &str, message: Message) -> Result<(), SessionError> {
        let mut topic = String::with_capacity(self.events_prefix.len() + 96);
        topic.push_str(&self.events_prefix);
        let mut bag = PropertyBag::new();
        bag.insert(OUTPUT_NAME, output);
        for (k, v) in message.properties.iter().filter(|(k, _)| *k != OUTPUT_NAME) {
            bag.insert(k, v);
        }
        bag.encode_into(&mut topic);
        self.client
            .publish_bytes(topic, QoS::AtLeastOnce, false, message.body)
            .await
            .map_err(|_| SessionError::Closed)
    }

    /// Answers a method request with a status and a JSON payload.
    pub async fn respond(
        &self,
        request: &MethodRequest,
        status: u16,
        payload: impl Into<bytes::Bytes>,
    ) -> Result<(), SessionError> {
        self.client
            .publish_bytes(
                topic::method_response(status, &request.rid),
                QoS::AtLeastOnce,
                false,
                payload.into(),
            )
            .await
            .map_err(|_| SessionError::Closed)
    }

    /// Sends DISCONNECT; the background session ends.
    pub async fn disconnect(&self) {
        let _ = self.client.disconnect().await;
    }
}

struct Driver {
    connected: watch::Sender<u64>,
    identity: Arc<ModuleIdentity>,
    client: AsyncClient,
    subscriptions: Subscriptions,
    deliveries: mpsc::Sender<Incoming>,
    token_expiry: u64,
    heartbeat: Heartbeat,
}

impl Driver {
    async fn run(mut self, mut eventloop: EventLoop) {
        let mut backoff = BACKOFF_MIN;
        let name = self.identity.name();
        // One timer for the whole session, moved when the token changes (not re-armed per event).
        let margin = self.identity.token_lifetime.renew_margin;
        let renew = tokio::time::sleep_until(renew_at(self.token_expiry, margin));
        tokio::pin!(renew);
        loop {
            self.heartbeat.beat(POLL_BOUND);
            let event = tokio::select! {
                event = eventloop.poll() => event,
                _ = &mut renew => {
                    tracing::info!(module = %name, "renewing the SAS token: reconnecting with a fresh one");
                    self.renew_token(&mut eventloop).await;
                    renew.as_mut().reset(renew_at(self.token_expiry, margin));
                    // Drop the connection; the next poll reconnects with the new password and
                    // re-sends anything unacknowledged.
                    eventloop.clean();
                    continue;
                }
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    tracing::info!(module = %name, gateway = %self.identity.gateway_hostname, port = self.identity.mqtt_port, code = ?ack.code, "connected to edge hub");
                    backoff = BACKOFF_MIN;
                    self.subscribe().await;
                    self.connected.send_modify(|n| *n += 1);
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let ack = Ack::new(&self.client, &publish, &self.connected);
                    if let Some(incoming) = classify(&publish.topic, publish.payload, ack) {
                        if self.deliveries.send(incoming).await.is_err() {
                            return; // nobody listens any more
                        }
                    } else {
                        tracing::warn!(module = %name, topic = %publish.topic, "ignored a publish on an unexpected topic");
                    }
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                    tracing::info!(module = %name, "disconnected");
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    if matches!(e, ConnectionError::RequestsDone) {
                        return;
                    }
                    tracing::warn!(module = %name, error = %e, retry_in = ?backoff, "edge hub connection lost; reconnecting");
                    // Retrying is progress: the sleep (and a token renewal) is owed back.
                    self.heartbeat.beat(backoff + POLL_BOUND);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    if self
                        .identity
                        .token_lifetime
                        .due(self.token_expiry, crate::sas::now_unix())
                    {
                        self.renew_token(&mut eventloop).await;
                        renew.as_mut().reset(renew_at(self.token_expiry, margin));
                    }
                }
            }
        }
    }

    async fn renew_token(&mut self, eventloop: &mut EventLoop) {
        let lifetime = self.identity.token_lifetime;
        match self.identity.token(lifetime.ttl).await {
            Ok((token, expiry)) => {
                let username = eventloop
                    .mqtt_options
                    .credentials()
                    .map(|l| l.username)
                    .unwrap_or_default();
                eventloop.mqtt_options.set_credentials(username, token);
                self.token_expiry = expiry;
            }
            Err(e) => {
                tracing::error!(module = %self.identity.name(), error = %e, "cannot renew the SAS token; retrying later");
                self.token_expiry = crate::sas::now_unix() + lifetime.renew_margin.as_secs() + 30;
            }
        }
    }

    async fn subscribe(&self) {
        let mut filters = Vec::new();
        if self.subscriptions.inputs {
            filters.push(topic::inputs_filter(
                &self.identity.device_id,
                &self.identity.module_id,
            ));
        }
        if self.subscriptions.methods {
            filters.push(topic::METHODS_SUBSCRIBE.to_owned());
        }
        if filters.is_empty() {
            return;
        }
        let filters = filters
            .into_iter()
            .map(|f| rumqttc::SubscribeFilter::new(f, QoS::AtLeastOnce));
        if let Err(e) = self.client.subscribe_many(filters).await {
            tracing::error!(module = %self.identity.name(), error = %e, "cannot subscribe");
        }
    }
}

/// When to reconnect with a fresh token: `margin` before `expiry` (unix seconds).
fn renew_at(expiry: u64, margin: Duration) -> tokio::time::Instant {
    let left = expiry
        .saturating_sub(margin.as_secs())
        .saturating_sub(crate::sas::now_unix());
    tokio::time::Instant::now() + Duration::from_secs(left)
}

/// The delivery a publish is, or `None` (and `ack` acknowledges it at once).
fn classify(topic_name: &str, payload: bytes::Bytes, ack: Ack) -> Option<Incoming> {
    match topic::parse(topic_name) {
        Topic::Input { input, bag, .. } => Some(Incoming::Input {
            input: input.to_owned(),
            message: Message {
                body: payload,
                properties: PropertyBag::decode(bag).ok()?,
            },
            ack,
        }),
        Topic::MethodRequest { method, rid } => Some(Incoming::Method {
            request: MethodRequest {
                method: method.to_owned(),
                rid: rid.to_owned(),
                payload,
            },
            ack,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_owes_a_turn_within_its_bound_until_the_session_ends() {
        let heartbeat = Heartbeat::new();
        let due = heartbeat.due().unwrap();
        assert_eq!(
            due.duration_since(heartbeat.last()).as_secs(),
            POLL_BOUND.as_secs()
        );
        heartbeat.beat(Duration::from_secs(3));
        assert_eq!(
            heartbeat.due().unwrap().duration_since(heartbeat.last()),
            Duration::from_secs(3)
        );
        heartbeat.ended();
        assert_eq!(heartbeat.due(), None);
    }
}
