//! Allocations in the hub per direct method call, counted as the message rows are (only the hub
//! runtime's thread, the idle rate subtracted). The caller is the modules' own client
//! (`edge::invoke::MethodClient`: one kept-alive HTTPS connection, a cached SAS token); the target
//! module answers over MQTT over TLS as the producer does; one call in flight. A call is the
//! method path's whole exchange (HTTPS request in, request PUBLISH out, response PUBLISH in, HTTPS
//! response out), so it compares with one message *exchange*: two routed messages.

use super::{counters, AllocRow};
use crate::brokers::{HubAccess, DEVICE};
use crate::exchange::{self, new_histogram, Window};
use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use edge::contract::{vars, Endpoints, IdentitiesFile};
use edge::identity::ModuleIdentity;
use edge::invoke::MethodClient;
use edge::topic::{self, Topic};
use rumqttc::{Event, Packet, QoS};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The seed's reply, as the producer sends it.
const REPLY: &[u8] = br#"{"UtcTime":"2026-12-04T12:00:00.0000000Z"}"#;
const METHOD: &str = "GetTimeMethod";
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Measures `window` of method calls from module `req` to module `resp`.
pub async fn measure(access: &HubAccess, window: Window, idle: f64) -> Result<AllocRow> {
    let (stop, responder) = start_responder(access).await?;
    let caller = caller(access).await?;
    // The consumer's request: its trace context, serialized once by the client per call.
    let payload = serde_json::json!({
        "trace": { "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" }
    });
    let target = caller.target(DEVICE, "resp")?;
    let call = || caller.call(&target, METHOD, &payload, CALL_TIMEOUT);
    let warmup_end = Instant::now() + window.warmup;
    while Instant::now() < warmup_end {
        let r = call().await.context("method call (warm-up)")?;
        ensure!(r.status == 200, "method call answered {}", r.status);
    }
    let mut hist = new_histogram();
    let mut completed = 0u64;
    let before = counters();
    let t0 = Instant::now();
    while t0.elapsed() < window.measure {
        let sent = Instant::now();
        let r = call().await.context("method call")?;
        ensure!(r.status == 200, "method call answered {}", r.status);
        let _ = hist.record(sent.elapsed().as_nanos() as u64);
        completed += 1;
    }
    let elapsed = t0.elapsed();
    let d = counters() - before;
    let _ = stop.send(());
    responder.await.context("responder task")??;
    let calls = completed.max(1) as f64;
    let allocs = (d.allocs as f64 - idle * elapsed.as_secs_f64()).max(0.0);
    Ok(AllocRow {
        name: "hub-method-1".into(),
        exchanges: completed,
        routed_messages: 0,
        allocs_per_exchange: allocs / calls,
        allocs_per_routed_message: None,
        reallocs_per_routed_message: None,
        bytes_per_routed_message: None,
        reallocs_per_exchange: d.reallocs as f64 / calls,
        bytes_per_exchange: d.bytes as f64 / calls,
        idle_allocs_per_second: idle,
        p50_us: hist.value_at_quantile(0.5) as f64 / 1e3,
        rate: completed as f64 / elapsed.as_secs_f64().max(1e-9),
    })
}

/// The method's target, module `resp`, over MQTT over TLS: answers every request with 200.
async fn start_responder(
    access: &HubAccess,
) -> Result<(oneshot::Sender<()>, tokio::task::JoinHandle<Result<()>>)> {
    let mut target = access.tls();
    target.responder.subscribe = topic::METHODS_SUBSCRIBE.into();
    let (client, mut eventloop) = exchange::connect(&target, &target.responder).await?;
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                event = eventloop.poll() => {
                    let Event::Incoming(Packet::Publish(p)) = event.context("responder connection")? else {
                        continue;
                    };
                    if let Topic::MethodRequest { rid, .. } = topic::parse(&p.topic) {
                        let reply = topic::method_response(200, rid);
                        client
                            .publish_bytes(reply, QoS::AtLeastOnce, false, Bytes::from_static(REPLY))
                            .await?;
                    }
                }
            }
        }
        exchange::disconnect(&client, &mut eventloop).await;
        Ok(())
    });
    Ok((stop, task))
}

/// Module `req`'s method client, with the identity the local run would give it.
async fn caller(access: &HubAccess) -> Result<MethodClient> {
    let endpoints = Endpoints::read(&access.state_dir)?;
    let identities = IdentitiesFile::read(&endpoints.identities)?;
    let connection_string = identities.connection_string("req")?.to_string();
    let ca = endpoints.ca.to_string_lossy().into_owned();
    let https_port = access.https_port.to_string();
    let identity = ModuleIdentity::from_lookup(|name| match name {
        vars::CONNECTION_STRING => Some(connection_string.clone()),
        vars::CA_CERTIFICATE_FILE => Some(ca.clone()),
        vars::HTTPS_PORT => Some(https_port.clone()),
        _ => None,
    })?;
    Ok(MethodClient::new(Arc::new(identity)).await?)
}
