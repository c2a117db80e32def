//! The one request/response client every broker row uses: a requester and a responder, two rumqttc
//! clients with TCP_NODELAY, QoS 1 both ways, 4 hops (requester → broker → responder → broker →
//! requester). Only the topics, the credentials and the transport differ between brokers.

use anyhow::{bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, NetworkOptions, Outgoing,
    Packet, QoS, TlsConfiguration, Transport,
};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Bytes per request and reply, the same for every broker (the seed's JSON time reply is ~50).
pub const PAYLOAD_LEN: usize = 64;
/// A broker that answers nothing for this long has failed the run.
const STALL: Duration = Duration::from_secs(10);

/// One MQTT client of the exchange.
#[derive(Clone, Debug)]
pub struct Peer {
    pub client_id: String,
    /// Username and password (the hub: IoT Hub username and a SAS token).
    pub login: Option<(String, String)>,
    /// What it subscribes to (QoS 1).
    pub subscribe: String,
    /// Where it publishes (QoS 1).
    pub publish: String,
}

/// A broker and the two clients' identities on it.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub requester: Peer,
    pub responder: Peer,
}

/// Timed part of a segment.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Exchanges before this are not recorded (connections, caches, the broker's first routes).
    pub warmup: Duration,
    pub measure: Duration,
}

/// What one segment measured; `before`/`after` are the probe's readings at the window's edges.
pub struct Outcome<S> {
    /// Latency of each exchange completed in the window, nanoseconds.
    pub hist: Histogram<u64>,
    pub completed: u64,
    /// Replies to an earlier segment's requests, acknowledged and ignored.
    pub stale: u64,
    pub elapsed: Duration,
    pub before: S,
    pub after: S,
}

pub fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant digits; values in nanoseconds.
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid histogram bounds")
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A request: its segment, its sequence number and when it was sent (nanoseconds since
/// [`epoch`]), padded to [`PAYLOAD_LEN`]; the responder echoes it as the reply.
fn request(segment: u64, seq: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(PAYLOAD_LEN);
    b.put_u64_le(segment);
    b.put_u64_le(seq);
    b.put_u64_le(epoch().elapsed().as_nanos() as u64);
    b.resize(PAYLOAD_LEN, 0);
    b.freeze()
}

fn field(payload: &[u8], index: usize) -> Option<u64> {
    let bytes = payload.get(index * 8..index * 8 + 8)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// A number no earlier segment of this process used.
fn next_segment() -> u64 {
    static SEGMENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    SEGMENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Connects one client and returns once its subscription is acknowledged.
pub(crate) async fn connect(target: &Target, peer: &Peer) -> Result<(AsyncClient, EventLoop)> {
    let mut options = MqttOptions::new(&peer.client_id, &target.host, target.port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_inflight(100)
        .set_max_packet_size(1 << 20, 1 << 20);
    if let Some((user, password)) = &peer.login {
        options.set_credentials(user, password);
    }
    if let Some(tls) = &target.tls {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.clone(),
        )));
    }
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network.set_connection_timeout(10);
    eventloop.set_network_options(network);
    client
        .subscribe(peer.subscribe.clone(), QoS::AtLeastOnce)
        .await?;
    let deadline = Instant::now() + STALL;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, eventloop.poll())
            .await
            .with_context(|| {
                format!(
                    "{} not subscribed within {STALL:?} on {}:{}",
                    peer.client_id, target.host, target.port
                )
            })?
            .with_context(|| {
                format!(
                    "{} connecting to {}:{}",
                    peer.client_id, target.host, target.port
                )
            })?;
        match event {
            Event::Incoming(Packet::ConnAck(ack)) if ack.code != ConnectReturnCode::Success => {
                bail!("{} refused: {:?}", peer.client_id, ack.code)
            }
            Event::Incoming(Packet::SubAck(_)) => return Ok((client, eventloop)),
            _ => {}
        }
    }
}

/// Sends DISCONNECT and drives the event loop until it is written.
pub(crate) async fn disconnect(client: &AsyncClient, eventloop: &mut EventLoop) {
    if client.disconnect().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// The responder: echoes every request's payload to its publish topic until told to stop.
async fn respond(
    client: AsyncClient,
    mut eventloop: EventLoop,
    topic: String,
    mut stop: oneshot::Receiver<()>,
) -> Result<()> {
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            event = eventloop.poll() => {
                if let Event::Incoming(Packet::Publish(p)) = event.context("responder connection")? {
                    client.publish_bytes(topic.clone(), QoS::AtLeastOnce, false, p.payload).await?;
                }
            }
        }
    }
    disconnect(&client, &mut eventloop).await;
    Ok(())
}

#[derive(PartialEq, Eq)]
enum Phase {
    Warmup,
    Measure,
    Drain,
}

/// Runs one segment: `inflight` exchanges kept outstanding, a warm-up, then the measured window,
/// then the outstanding exchanges drained. `probe` is read at the window's two edges (broker CPU,
/// allocation counters…).
pub async fn run<S>(
    target: &Target,
    inflight: usize,
    window: Window,
    mut probe: impl FnMut() -> S,
) -> Result<Outcome<S>> {
    let (rclient, reventloop) = connect(target, &target.responder).await?;
    let (stop_tx, stop_rx) = oneshot::channel();
    let responder = tokio::spawn(respond(
        rclient,
        reventloop,
        target.responder.publish.clone(),
        stop_rx,
    ));
    let result = requester(target, inflight, window, &mut probe).await;
    let _ = stop_tx.send(());
    let responded = responder.await;
    let outcome = result?;
    responded.context("responder task")??;
    Ok(outcome)
}

async fn requester<S>(
    target: &Target,
    inflight: usize,
    window: Window,
    probe: &mut impl FnMut() -> S,
) -> Result<Outcome<S>> {
    let (client, mut eventloop) = connect(target, &target.requester).await?;
    let topic = target.requester.publish.clone();
    // The hub keeps a module's undelivered messages across its connections, as edgeHub does: a
    // reply whose PUBACK an earlier segment's requester did not send before it left comes to
    // this one. Such replies are acknowledged and ignored, or they would add exchanges in flight.
    let segment = next_segment();
    let mut stale = 0u64;
    let mut hist = new_histogram();
    let mut seq = 0u64;
    let mut outstanding = 0usize;
    let mut completed = 0u64;
    let mut phase = Phase::Warmup;
    let (mut before, mut after) = (None, None);
    let (mut began, mut ended) = (Instant::now(), Instant::now());
    let warm_end = Instant::now() + window.warmup;
    let measure_end = warm_end + window.measure;
    for _ in 0..inflight {
        seq += 1;
        client
            .publish_bytes(
                topic.clone(),
                QoS::AtLeastOnce,
                false,
                request(segment, seq),
            )
            .await?;
        outstanding += 1;
    }
    while outstanding > 0 {
        let event = tokio::time::timeout(STALL, eventloop.poll())
            .await
            .with_context(|| {
                format!("no reply within {STALL:?} ({outstanding} exchanges outstanding)")
            })?
            .context("requester connection")?;
        let Event::Incoming(Packet::Publish(p)) = event else {
            continue;
        };
        let now = Instant::now();
        if field(&p.payload, 0) != Some(segment) {
            stale += 1;
            continue;
        }
        outstanding -= 1;
        if phase == Phase::Warmup && now >= warm_end {
            phase = Phase::Measure;
            before = Some(probe());
            began = now;
        }
        if phase == Phase::Measure && now >= measure_end {
            phase = Phase::Drain;
            after = Some(probe());
            ended = now;
        }
        if phase == Phase::Measure {
            let sent = field(&p.payload, 2).context("reply payload too short")?;
            let latency = (now - epoch()).as_nanos() as u64 - sent;
            hist.saturating_record(latency.max(1_000));
            completed += 1;
        }
        if phase != Phase::Drain {
            seq += 1;
            client
                .publish_bytes(
                    topic.clone(),
                    QoS::AtLeastOnce,
                    false,
                    request(segment, seq),
                )
                .await?;
            outstanding += 1;
        }
    }
    disconnect(&client, &mut eventloop).await;
    match (before, after) {
        (Some(before), Some(after)) => Ok(Outcome {
            hist,
            completed,
            stale,
            elapsed: ended - began,
            before,
            after,
        }),
        _ => bail!("the window never completed"),
    }
}
