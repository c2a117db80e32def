//! The MQTT 3.1.1 side of the hub: CONNECT with SAS authentication as edgeHub does it, SUBSCRIBE,
//! outputs routed to inputs, method responses, twin GET/PATCH, keep-alive, and limits. Packets
//! are parsed and written with rumqttc's codec, the same code the modules' client uses.

mod connect;

use crate::admission::{Admission, Ticket};
use crate::listener::{accept_loop, expelled, handshake};
use crate::metrics::{
    EdgeHubSide, GetTwinDurationLabels, GetTwinLabels, IdLabels, MsTelemetry,
    ReportedDurationLabels, ReportedLabels,
};
use crate::refusals::{Protocol, Reason};
use crate::state::{Hub, PublishError, RouteError, Session};
use bytes::{Bytes, BytesMut};
use edge::topic::{self, Subscription, Topic};
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, Subscribe, SubscribeReasonCode,
    UnsubAck,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;

const MAX_KEEP_ALIVE: Duration = Duration::from_secs(600);
/// The topic and headers may add to a 256 KiB body; the body limit itself is checked separately.
const PACKET_SLACK: usize = 64 * 1024;
/// A stranger's first packet: a CONNECT with a SAS token is well under 2 KiB.
const MAX_CONNECT_PACKET: usize = 16 * 1024;
/// A client that does not read what the hub writes for this long is cut off, so a stalled
/// reader cannot hold the hub's writer (and what waits on it) forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const EMPTY_TWIN: &[u8] = br#"{"desired":{"$version":1},"reported":{"$version":1}}"#;

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("connection closed by the client")]
    Eof,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("replaced by a newer connection")]
    Replaced,
    #[error("{0}")]
    Fault(String),
    #[error("{1}")]
    Refused(Reason, String),
}

impl From<CodecError> for ConnError {
    fn from(e: CodecError) -> Self {
        ConnError::Refused(Reason::MalformedPacket, format!("malformed MQTT: {e}"))
    }
}

/// Accepts MQTT connections on `listener`, over TLS when `tls` is given.
pub(crate) async fn serve(
    hub: Arc<Hub>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    admission: Arc<Admission>,
) {
    let mqtt = move |hub: Arc<Hub>, stream, peer, ticket: Ticket| {
        let tls = tls.clone();
        async move {
            match tls {
                Some(acceptor) => {
                    let handshake =
                        handshake(&hub, Protocol::Mqtt, &acceptor, stream, peer, &ticket);
                    if let Some(stream) = handshake.await {
                        connection(hub, stream, peer, ticket).await;
                    }
                }
                None => connection(hub, stream, peer, ticket).await,
            }
        }
    };
    accept_loop(hub, listener, Protocol::Mqtt, admission, mqtt).await;
}

async fn read_packet<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Packet, ConnError> {
    loop {
        match Packet::read(buf, max) {
            Ok(p) => return Ok(p),
            Err(CodecError::InsufficientBytes(n)) => {
                buf.reserve(n.max(4096));
                match rd.read_buf(buf).await {
                    Ok(0) => return Err(ConnError::Eof),
                    Ok(_) => {}
                    // A client that drops TLS without close_notify has still just left.
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        return Err(ConnError::Eof)
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes queued packets, batching what is ready before each flush. Ends with the reason
/// when the client stops reading or a packet cannot be encoded.
async fn writer<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<Packet>,
    failed: oneshot::Sender<ConnError>,
) {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    while let Some(packet) = rx.recv().await {
        let mut next = Some(packet);
        while let Some(p) = next.take() {
            // Sizes were checked before queueing (`check_deliverable`); this is the backstop.
            if let Err(e) = p.write(&mut buf, edge::session::MAX_PACKET_SIZE) {
                let _ = failed.send(ConnError::Refused(
                    Reason::Undeliverable,
                    format!("cannot encode a {} for the client: {e}", packet_kind(&p)),
                ));
                return;
            }
            if buf.len() < 64 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        let write = async {
            wr.write_all(&buf).await?;
            wr.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = failed.send(ConnError::Io(e));
                return;
            }
            Err(_) => {
                let _ = failed.send(ConnError::Refused(
                    Reason::SlowReader,
                    format!("the client read nothing for {WRITE_TIMEOUT:?}"),
                ));
                return;
            }
        }
        buf.clear();
    }
    let _ = wr.shutdown().await;
}

/// One MQTT connection from its first packet to its end: the CONNECT checked and answered,
/// the session registered, its packets handled, and everything it held released.
async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    hub: Arc<Hub>,
    stream: S,
    peer: SocketAddr,
    ticket: Ticket,
) {
    let (mut rd, wr) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(4096);
    let first = tokio::select! {
        r = read_packet(&mut rd, &mut buf, MAX_CONNECT_PACKET) => r,
        e = ticket.expelled() => return expelled(&hub, Protocol::Mqtt, peer, e),
    };
    let Some(connect) = connect::first_connect(&hub, peer, first) else {
        return;
    };
    let module = match connect::admit(&hub, &connect, &ticket) {
        Ok(m) => m,
        Err(refusal) => return connect::refuse(&hub, peer, &connect, refusal, wr).await,
    };
    let (tx, rx) = mpsc::channel(1024);
    let (failed_tx, writer_failed) = oneshot::channel();
    let writer_task = hub.spawn(writer(wr, rx, failed_tx));
    let Some(session) = open_session(&hub, module, tx).await else {
        return;
    };
    let keep_alive = Duration::from_secs(connect.keep_alive as u64).min(MAX_KEEP_ALIVE);
    tracing::info!(client = %session.name, %peer, keep_alive = ?keep_alive, "client connected");
    let mut handler = Handler::new(hub.clone(), session, rd, buf, keep_alive, writer_failed);
    let result = handler.run().await;
    log_end(&hub, peer, &handler.session.name, result);
    close_session(&hub, handler.session);
    // Let queued packets (e.g. a last PUBACK) go out, but not forever; the writer ends once
    // every sender of its channel (the session's) is gone.
    let _ = tokio::time::timeout(Duration::from_secs(1), writer_task).await;
    drop(ticket);
}

/// Registers the authenticated client's session (closing an older one of the same module) and
/// confirms it with CONNACK 0; `None` if the connection is gone already.
async fn open_session(
    hub: &Hub,
    module: String,
    outbound: mpsc::Sender<Packet>,
) -> Option<Arc<Session>> {
    let name: Arc<str> = format!("{}/{module}", hub.settings().device_id).into();
    let session = Arc::new(Session::new(
        hub.next_session_id(),
        module,
        name.clone(),
        outbound,
    ));
    let connack = ConnAck::new(ConnectReturnCode::Success, false);
    session.outbound.send(Packet::ConnAck(connack)).await.ok()?;
    hub.attach(session.clone());
    (hub.metrics().connect_success)
        .get_or_create(&IdLabels { id: name })
        .inc();
    Some(session)
}

/// Logs how a connection ended; a rule the client broke is a refusal.
fn log_end(hub: &Hub, peer: SocketAddr, name: &str, result: Result<(), ConnError>) {
    match result {
        Ok(()) | Err(ConnError::Eof) => tracing::info!(client = %name, "client disconnected"),
        Err(ConnError::Refused(reason, detail)) => {
            hub.refusals().refuse(
                Protocol::Mqtt,
                reason,
                Some(peer),
                name,
                &format_args!("closing the connection: {detail}"),
            );
        }
        Err(e) => tracing::info!(client = %name, "client connection ended: {e}"),
    }
}

/// Unregisters an ended connection's session, so no delivery or method call waits for it, and
/// drops the connection's hold on it.
fn close_session(hub: &Hub, session: Arc<Session>) {
    session.close();
    hub.detach(&session);
    (hub.metrics().disconnects)
        .get_or_create(&IdLabels {
            id: session.name.clone(),
        })
        .inc();
}

/// A rule broken by the client: the connection is closed and the refusal counted.
fn violation(detail: String) -> ConnError {
    ConnError::Refused(Reason::ProtocolViolation, detail)
}

/// An authenticated connection's read side (as mini-redis's `Handler`): reads the client's
/// packets and answers each, until the client leaves or breaks a rule, stays silent past its
/// keep-alive, stops reading, or the hub closes the connection.
struct Handler<R> {
    hub: Arc<Hub>,
    session: Arc<Session>,
    rd: R,
    buf: BytesMut,
    max_packet: usize,
    /// No packet for this long means the client is gone.
    idle_limit: Duration,
    /// Why the writer task stopped (the client does not read, or a packet cannot be encoded).
    writer_failed: oneshot::Receiver<ConnError>,
}

impl<R: AsyncRead + Unpin> Handler<R> {
    fn new(
        hub: Arc<Hub>,
        session: Arc<Session>,
        rd: R,
        buf: BytesMut,
        keep_alive: Duration,
        writer_failed: oneshot::Receiver<ConnError>,
    ) -> Self {
        // MQTT-3.1.2-24: no packet within 1.5 × keep-alive means the client is gone.
        let idle_limit = if keep_alive.is_zero() {
            Duration::from_secs(u32::MAX as u64)
        } else {
            keep_alive * 3 / 2
        };
        let max_packet = hub.settings().max_message_size + PACKET_SLACK;
        Self {
            hub,
            session,
            rd,
            buf,
            max_packet,
            idle_limit,
            writer_failed,
        }
    }

    /// Handles packets until the connection ends; `Ok` when the client sent DISCONNECT.
    async fn run(&mut self) -> Result<(), ConnError> {
        // Fault injection: close this module's connection this long after it connected.
        let disconnect = self.hub.faults().disconnect_every(&self.session.module);
        let disconnect_at = tokio::time::Instant::now() + disconnect.unwrap_or(Duration::MAX / 4);
        let idle_limit = self.idle_limit;
        loop {
            let read = read_packet(&mut self.rd, &mut self.buf, self.max_packet);
            let packet = tokio::select! {
                r = tokio::time::timeout(idle_limit, read) => match r {
                    Ok(p) => p?,
                    Err(_) => return Err(ConnError::Refused(Reason::KeepAliveExpired, format!("keep-alive expired: nothing received for {idle_limit:?}"))),
                },
                _ = self.session.closed.notified() => return Err(ConnError::Replaced),
                e = &mut self.writer_failed => return Err(e.unwrap_or(ConnError::Eof)),
                _ = tokio::time::sleep_until(disconnect_at), if disconnect.is_some() => {
                    self.hub.faults().disconnected(&self.session.module);
                    return Err(ConnError::Fault(format!("disconnect:{} injected after {:?}", self.session.module, disconnect.unwrap_or_default())));
                }
            };
            if self.handle(packet).await?.is_break() {
                return Ok(());
            }
        }
    }

    /// Answers one packet; `Break` after the client's DISCONNECT.
    async fn handle(&self, packet: Packet) -> Result<ControlFlow<()>, ConnError> {
        match packet {
            Packet::Publish(publish) => self.publish(publish).await?,
            Packet::PubAck(ack) => {
                // A lost PUBACK (fault injection) leaves the delivery to time out and resend.
                let session = &self.session;
                if !(session.awaits(ack.pkid) && self.hub.faults().lose_ack(&session.module)) {
                    session.acknowledged(ack.pkid);
                }
            }
            Packet::Subscribe(sub) => self.subscribe(sub).await?,
            Packet::Unsubscribe(unsub) => {
                for f in &unsub.topics {
                    record_subscription(&self.session, f, None);
                }
                self.reply(Packet::UnsubAck(UnsubAck::new(unsub.pkid)))
                    .await?;
            }
            Packet::PingReq => self.reply(Packet::PingResp).await?,
            Packet::Disconnect => return Ok(ControlFlow::Break(())),
            Packet::Connect(_) => return Err(violation("second CONNECT on one connection".into())),
            other => {
                return Err(violation(format!(
                    "unexpected {} from a client",
                    packet_kind(&other)
                )))
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// A PUBLISH within the limits is handled, then acknowledged if QoS 1.
    async fn publish(&self, publish: Publish) -> Result<(), ConnError> {
        let max = self.hub.settings().max_message_size;
        if publish.qos == QoS::ExactlyOnce {
            return Err(violation(
                "QoS 2 is not supported by IoT Hub/edgeHub".into(),
            ));
        }
        if publish.payload.len() > max {
            return Err(ConnError::Refused(
                Reason::MessageTooLarge,
                format!(
                    "message of {} bytes exceeds the {max} byte limit",
                    publish.payload.len(),
                ),
            ));
        }
        let handed_over =
            handle_publish(&self.hub, &self.session, &publish.topic, publish.payload).await?;
        if publish.qos == QoS::AtLeastOnce {
            if handed_over {
                // The delivery (or the method's HTTP answer) is on the exchange's critical
                // path and this PUBACK is not: let the task that sends it write first.
                tokio::task::yield_now().await;
            }
            self.reply(Packet::PubAck(PubAck::new(publish.pkid)))
                .await?;
        }
        Ok(())
    }

    /// Grants every filter (QoS 0 as asked, else 1), then wakes what waits for this module's
    /// subscriptions: its deliveries, and method calls waiting for their target.
    async fn subscribe(&self, sub: Subscribe) -> Result<(), ConnError> {
        let mut codes = Vec::with_capacity(sub.filters.len());
        for f in &sub.filters {
            let granted = if f.qos == QoS::AtMostOnce {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            };
            codes.push(SubscribeReasonCode::Success(granted));
            record_subscription(&self.session, &f.path, Some(granted));
        }
        self.reply(Packet::SubAck(SubAck::new(sub.pkid, codes)))
            .await?;
        self.hub.wake(&self.session.module);
        if self.session.takes_methods() {
            self.hub.methods_subscribed();
        }
        Ok(())
    }

    async fn reply(&self, packet: Packet) -> Result<(), ConnError> {
        (self.session.outbound.send(packet).await).map_err(|_| ConnError::Eof)
    }
}

/// Records what a SUBSCRIBE (granted) or UNSUBSCRIBE (`None`) means, as edgeHub classifies
/// filters: any `devices/{..}/modules/{..}/#` means the module's own inputs.
fn record_subscription(session: &Session, filter: &str, granted: Option<QoS>) {
    match topic::classify_subscription(filter) {
        Subscription::Methods => session.set_methods_qos(granted),
        Subscription::ModuleMessages => session.set_takes_inputs(granted.is_some()),
        // Twin responses go to whoever asks; there are no desired-property patches or C2D here.
        Subscription::TwinResponses | Subscription::DesiredPropertyUpdates | Subscription::C2D => {}
        Subscription::Unknown => {
            let shown: String = filter.chars().take(200).collect();
            tracing::info!(client = %session.name, "Ignoring unknown subscription to topic {shown:?} for client {}.", session.name);
        }
    }
}

/// Handles a client's PUBLISH; whether it handed something to another task to send (a message
/// queued for a module, a method's answer).
async fn handle_publish(
    hub: &Arc<Hub>,
    session: &Arc<Session>,
    topic_name: &str,
    payload: Bytes,
) -> Result<bool, ConnError> {
    match topic::parse(topic_name) {
        Topic::Events {
            device,
            module,
            bag,
        } => {
            if device != hub.settings().device_id || module != Some(session.module.as_str()) {
                return Err(ConnError::Refused(
                    Reason::ForeignTopic,
                    format!(
                        "published on another identity's topic (devices/{}/modules/{})",
                        shorten(device),
                        shorten(module.unwrap_or(""))
                    ),
                ));
            }
            let queued = hub.route(session, bag, payload).map_err(|e| match e {
                RouteError::Bag(_) => ConnError::Refused(Reason::BadPropertyBag, e.to_string()),
                RouteError::Undeliverable { .. } => {
                    ConnError::Refused(Reason::Undeliverable, e.to_string())
                }
            })?;
            return Ok(queued > 0);
        }
        Topic::MethodResponse { status, rid } => {
            if hub.method_response(rid, session.id, status, payload) {
                return Ok(true);
            }
            tracing::info!(client = %session.name, rid, "method response for no pending call (it may have timed out)");
        }
        Topic::TwinGet { rid } => {
            let started = Instant::now();
            answer(
                session
                    .publish(
                        topic::twin_response(200, rid, None),
                        Bytes::from_static(EMPTY_TWIN),
                        QoS::AtMostOnce,
                    )
                    .await,
            )?;
            count_twin_get(hub, session, started);
        }
        Topic::TwinReportedPatch { rid } => {
            let started = Instant::now();
            let version = session.twin_version.fetch_add(1, Ordering::Relaxed) + 1;
            answer(
                session
                    .publish(
                        topic::twin_response(204, rid, Some(version)),
                        Bytes::new(),
                        QoS::AtMostOnce,
                    )
                    .await,
            )?;
            count_reported_update(hub, session, started);
        }
        _ => {
            tracing::info!(client = %session.name, topic = shorten(topic_name), "publish to an unsupported topic ignored")
        }
    }
    Ok(false)
}

/// A reply the client's own request made impossible (e.g. a request id too long for a topic).
fn answer(sent: Result<(), PublishError>) -> Result<(), ConnError> {
    match sent {
        Ok(()) | Err(PublishError::Closed) => Ok(()),
        Err(PublishError::Undeliverable(e)) => Err(ConnError::Refused(
            Reason::Undeliverable,
            format!("its request asks for a reply that cannot be sent: {e}"),
        )),
    }
}

/// At most 100 characters of something a client sent, for a log line.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn packet_kind(p: &Packet) -> &'static str {
    match p {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect => "DISCONNECT",
    }
}

/// `edgehub_gettwin_total` and `_duration_seconds` of a twin GET the hub answered itself
/// (`source="edge_hub"`, as edgeHub's `DeviceMessageHandler`).
fn count_twin_get(hub: &Hub, session: &Session, started: Instant) {
    let id = session.name.clone();
    (hub.metrics().gettwin_duration)
        .get_or_create(&GetTwinDurationLabels {
            source: EdgeHubSide,
            id: id.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    (hub.metrics().gettwin)
        .get_or_create(&GetTwinLabels {
            source: EdgeHubSide,
            id,
            ms_telemetry: MsTelemetry,
        })
        .inc();
}

/// `edgehub_reported_properties_total` and `_update_duration_seconds` of a reported-properties
/// patch the hub answered itself (`target="edge_hub"`).
fn count_reported_update(hub: &Hub, session: &Session, started: Instant) {
    let id = session.name.clone();
    (hub.metrics().reported_properties_duration)
        .get_or_create(&ReportedDurationLabels {
            target: EdgeHubSide,
            id: id.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    (hub.metrics().reported_properties)
        .get_or_create(&ReportedLabels {
            target: EdgeHubSide,
            id,
            ms_telemetry: MsTelemetry,
        })
        .inc();
}
