//! The MQTT 3.1.1 side of the hub: CONNECT with SAS authentication as edgeHub does it, SUBSCRIBE,
//! outputs routed to inputs, method responses, twin GET/PATCH, keep-alive, and limits. Packets
//! are parsed and written with rumqttc's codec, the same code the modules' client uses.

use crate::metrics::{ConnectFailedLabels, IdLabels};
use crate::state::{Hub, Session};
use bytes::{Bytes, BytesMut};
use edge::sas::SasToken;
use edge::topic::{self, Topic};
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Packet, PubAck, SubAck, SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::TlsAcceptor;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_KEEP_ALIVE: Duration = Duration::from_secs(600);
/// The topic and headers may add to a 256 KiB body; the body limit itself is checked separately.
const PACKET_SLACK: usize = 64 * 1024;
const EMPTY_TWIN: &[u8] = br#"{"desired":{"$version":1},"reported":{"$version":1}}"#;

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("connection closed by the client")]
    Eof,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed MQTT: {0}")]
    Codec(CodecError),
    #[error("{0}")]
    Protocol(String),
}

/// Accepts MQTT connections on `listener`, over TLS when `tls` is given.
pub async fn serve(
    hub: Arc<Hub>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    slots: Arc<Semaphore>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "MQTT accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = hub.settings.max_connections, "connection limit reached; refusing a connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let hub = hub.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => connection(hub, stream, peer).await,
                        Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                    }
                }
                None => connection(hub, stream, peer).await,
            }
        });
    }
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
            Err(e) => return Err(ConnError::Codec(e)),
        }
    }
}

/// Writes queued packets, batching what is ready before each flush.
async fn writer<W: AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::Receiver<Packet>) {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    while let Some(packet) = rx.recv().await {
        let mut next = Some(packet);
        while let Some(p) = next.take() {
            if p.write(&mut buf, usize::MAX).is_err() {
                return;
            }
            if buf.len() < 64 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            return;
        }
        buf.clear();
    }
    let _ = wr.shutdown().await;
}

/// Why a CONNECT is refused, with the CONNACK code edgeHub would send.
struct Refusal {
    code: ConnectReturnCode,
    reason: &'static str,
    detail: String,
}

fn authenticate(hub: &Hub, connect: &Connect) -> Result<String, Refusal> {
    let refuse = |code, reason, detail: String| Refusal {
        code,
        reason,
        detail,
    };
    let Some(login) = &connect.login else {
        return Err(refuse(
            ConnectReturnCode::BadUserNamePassword,
            "no_credentials",
            "CONNECT has no username/password".into(),
        ));
    };
    let id = topic::parse_username(&login.username).map_err(|e| {
        refuse(
            ConnectReturnCode::BadUserNamePassword,
            "bad_username",
            e.to_string(),
        )
    })?;
    let Some(module) = id.module else {
        return Err(refuse(
            ConnectReturnCode::NotAuthorized,
            "not_a_module",
            format!(
                "{} is a device identity; this hub serves modules",
                id.device
            ),
        ));
    };
    let expected_client_id = format!("{}/{}", id.device, module);
    if connect.client_id != expected_client_id {
        return Err(refuse(
            ConnectReturnCode::NotAuthorized,
            "client_id_mismatch",
            format!(
                "client id {:?} must equal {expected_client_id:?} (from the username)",
                connect.client_id
            ),
        ));
    }
    if id.device != hub.settings.device_id {
        return Err(refuse(
            ConnectReturnCode::NotAuthorized,
            "unknown_device",
            format!("device {:?} is not this edge device", id.device),
        ));
    }
    let Some(keys) = hub.identities.keys(&module) else {
        return Err(refuse(
            ConnectReturnCode::NotAuthorized,
            "unknown_module",
            format!("module {module:?} has no identity on this hub"),
        ));
    };
    let token = SasToken::parse(&login.password)
        .map_err(|e| refuse(ConnectReturnCode::NotAuthorized, "bad_token", e.to_string()))?;
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let hosts = [
        hub.settings.iothub_hostname.as_str(),
        hub.settings.gateway_hostname.as_str(),
    ];
    token
        .verify(
            &hosts,
            &id.device,
            Some(&module),
            &keys,
            edge::sas::now_unix(),
        )
        .map_err(|e| {
            let reason = match e {
                edge::sas::SasError::Expired(_) => "token_expired",
                edge::sas::SasError::BadSignature => "bad_signature",
                _ => "bad_token",
            };
            refuse(ConnectReturnCode::NotAuthorized, reason, e.to_string())
        })?;
    Ok(module)
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    hub: Arc<Hub>,
    stream: S,
    peer: SocketAddr,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let max_packet = hub.settings.max_message_size + PACKET_SLACK;
    let mut buf = BytesMut::with_capacity(4096);
    let connect = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        read_packet(&mut rd, &mut buf, max_packet),
    )
    .await
    {
        Ok(Ok(Packet::Connect(c))) => c,
        Ok(Ok(other)) => {
            tracing::info!(%peer, packet = ?packet_kind(&other), "first packet is not CONNECT; closing");
            return;
        }
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "closing a connection that did not CONNECT");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "no CONNECT within 10 s; closing");
            return;
        }
    };
    let module = match authenticate(&hub, &connect) {
        Ok(m) => m,
        Err(r) => {
            tracing::warn!(%peer, client_id = %connect.client_id, reason = r.reason, detail = %r.detail, code = ?r.code, "connection refused");
            hub.metrics
                .connect_failed
                .get_or_create(&ConnectFailedLabels {
                    id: connect.client_id.clone(),
                    reason: r.reason,
                })
                .inc();
            let mut out = BytesMut::new();
            if ConnAck::new(r.code, false).write(&mut out).is_ok() {
                let _ = wr.write_all(&out).await;
                let _ = wr.flush().await;
            }
            let _ = wr.shutdown().await;
            return;
        }
    };
    let (tx, rx) = mpsc::channel(1024);
    let writer_task = tokio::spawn(writer(wr, rx));
    let name: Arc<str> = format!("{}/{module}", hub.settings.device_id).into();
    let session = Arc::new(Session::new(
        hub.next_session_id(),
        module,
        name.clone(),
        tx.clone(),
    ));
    if tx
        .send(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Success,
            false,
        )))
        .await
        .is_err()
    {
        return;
    }
    hub.attach(session.clone());
    hub.metrics
        .connect_success
        .get_or_create(&IdLabels {
            id: name.to_string(),
        })
        .inc();
    let keep_alive = Duration::from_secs(connect.keep_alive as u64).min(MAX_KEEP_ALIVE);
    tracing::info!(client = %name, %peer, keep_alive = ?keep_alive, "client connected");

    let result = session_loop(&hub, &session, &mut rd, &mut buf, max_packet, keep_alive).await;
    match &result {
        Ok(()) | Err(ConnError::Eof) => tracing::info!(client = %name, "client disconnected"),
        Err(e) => tracing::warn!(client = %name, error = %e, "closing the client's connection"),
    }
    session.close();
    hub.detach(&session);
    hub.metrics
        .disconnects
        .get_or_create(&IdLabels {
            id: name.to_string(),
        })
        .inc();
    drop(tx);
    drop(session);
    // Let queued packets (e.g. a last PUBACK) go out, but not forever.
    let _ = tokio::time::timeout(Duration::from_secs(1), writer_task).await;
}

async fn session_loop<R: AsyncRead + Unpin>(
    hub: &Arc<Hub>,
    session: &Arc<Session>,
    rd: &mut R,
    buf: &mut BytesMut,
    max_packet: usize,
    keep_alive: Duration,
) -> Result<(), ConnError> {
    // MQTT-3.1.2-24: no packet within 1.5 × keep-alive means the client is gone.
    let idle_limit = if keep_alive.is_zero() {
        Duration::from_secs(u32::MAX as u64)
    } else {
        keep_alive * 3 / 2
    };
    loop {
        let packet = tokio::select! {
            r = tokio::time::timeout(idle_limit, read_packet(rd, buf, max_packet)) => match r {
                Ok(p) => p?,
                Err(_) => return Err(ConnError::Protocol(format!("keep-alive expired: nothing received for {idle_limit:?}"))),
            },
            _ = session.closed.notified() => return Err(ConnError::Protocol("replaced by a newer connection".into())),
        };
        let reply = |p: Packet| async {
            session
                .outbound
                .send(p)
                .await
                .map_err(|_| ConnError::Protocol("writer closed".into()))
        };
        match packet {
            Packet::Publish(publish) => {
                if publish.qos == QoS::ExactlyOnce {
                    return Err(ConnError::Protocol(
                        "QoS 2 is not supported by IoT Hub/edgeHub".into(),
                    ));
                }
                if publish.payload.len() > hub.settings.max_message_size {
                    return Err(ConnError::Protocol(format!(
                        "message of {} bytes exceeds the {} byte limit",
                        publish.payload.len(),
                        hub.settings.max_message_size
                    )));
                }
                handle_publish(hub, session, &publish.topic, publish.payload).await?;
                if publish.qos == QoS::AtLeastOnce {
                    reply(Packet::PubAck(PubAck::new(publish.pkid))).await?;
                }
            }
            Packet::PubAck(ack) => session.acknowledged(ack.pkid),
            Packet::Subscribe(sub) => {
                let mut codes = Vec::with_capacity(sub.filters.len());
                for f in &sub.filters {
                    let granted = if f.qos == QoS::AtMostOnce {
                        QoS::AtMostOnce
                    } else {
                        QoS::AtLeastOnce
                    };
                    codes.push(SubscribeReasonCode::Success(granted));
                    classify_subscription(hub, session, &f.path, Some(granted));
                }
                reply(Packet::SubAck(SubAck::new(sub.pkid, codes))).await?;
                hub.wake(&session.module);
            }
            Packet::Unsubscribe(unsub) => {
                for f in &unsub.topics {
                    classify_subscription(hub, session, f, None);
                }
                reply(Packet::UnsubAck(UnsubAck::new(unsub.pkid))).await?;
            }
            Packet::PingReq => reply(Packet::PingResp).await?,
            Packet::Disconnect => return Ok(()),
            Packet::Connect(_) => {
                return Err(ConnError::Protocol(
                    "second CONNECT on one connection".into(),
                ))
            }
            other => {
                return Err(ConnError::Protocol(format!(
                    "unexpected {:?} from a client",
                    packet_kind(&other)
                )))
            }
        }
    }
}

fn classify_subscription(hub: &Hub, session: &Session, filter: &str, granted: Option<QoS>) {
    let inputs = topic::inputs_filter(&hub.settings.device_id, &session.module);
    if filter == topic::METHODS_SUBSCRIBE {
        let v = granted.map(|q| q as u8 + 1).unwrap_or(0);
        session.methods.store(v, Ordering::SeqCst);
    } else if filter == inputs
        || filter
            == format!(
                "devices/{}/modules/{}/#",
                hub.settings.device_id, session.module
            )
    {
        session.inputs.store(granted.is_some(), Ordering::SeqCst);
    } else if filter.starts_with("$iothub/twin/") {
        // Twin responses go to whoever asks; nothing to record.
    } else {
        tracing::debug!(client = %session.name, %filter, "subscription to an unknown topic accepted and ignored (as edgeHub does)");
    }
}

async fn handle_publish(
    hub: &Arc<Hub>,
    session: &Arc<Session>,
    topic_name: &str,
    payload: Bytes,
) -> Result<(), ConnError> {
    match topic::parse(topic_name) {
        Topic::Events {
            device,
            module,
            bag,
        } => {
            if device != hub.settings.device_id || module != Some(session.module.as_str()) {
                return Err(ConnError::Protocol(format!(
                    "{} published on another identity's topic {topic_name:?}",
                    session.name
                )));
            }
            hub.route(session, bag, payload).map_err(|e| {
                ConnError::Protocol(format!("bad property bag in {topic_name:?}: {e}"))
            })?;
        }
        Topic::MethodResponse { status, rid } => {
            if !hub.method_response(rid, status, payload) {
                tracing::info!(client = %session.name, rid, "method response for no pending call (it may have timed out)");
            }
        }
        Topic::TwinGet { rid } => {
            hub.metrics
                .gettwin
                .get_or_create(&IdLabels {
                    id: session.name.to_string(),
                })
                .inc();
            session
                .publish(
                    topic::twin_response(200, rid, None),
                    Bytes::from_static(EMPTY_TWIN),
                    QoS::AtMostOnce,
                )
                .await;
        }
        Topic::TwinReportedPatch { rid } => {
            hub.metrics
                .reported_properties
                .get_or_create(&IdLabels {
                    id: session.name.to_string(),
                })
                .inc();
            let version = session.twin_version.fetch_add(1, Ordering::Relaxed) + 1;
            session
                .publish(
                    topic::twin_response(204, rid, Some(version)),
                    Bytes::new(),
                    QoS::AtMostOnce,
                )
                .await;
        }
        _ => {
            tracing::info!(client = %session.name, topic = topic_name, "publish to an unsupported topic ignored")
        }
    }
    Ok(())
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
