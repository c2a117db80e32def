//! Direct-method edge cases as edgeHub has them. A call belongs to the target's connection
//! (`DeviceMessageHandler`): when that connection closes before the response, the caller gets
//! 504 at once, and a response to that call from the module's next connection is not taken. A
//! call parked until its target subscribes waits `--method-subscribe-delay` after the
//! subscription (edgeHub's fixed 3 s in `InvokeMethodHandler`; none by default).

use edge::session::Subscriptions;
use edge::{Incoming, ModuleClient};
use std::time::Duration;

mod support;

const MANIFEST: &str = r#"{"modulesContent":{
  "$edgeAgent":{"properties.desired":{"modules":{"a":{},"b":{}}}},
  "$edgeHub":{"properties.desired":{"routes":{
     "r":"FROM /messages/modules/a/outputs/x INTO BrokeredEndpoint(\"/modules/b/inputs/x\")"}}}}}"#;

/// The longest response timeout edgeHub allows: a caller answered before it is over was not
/// answered by the timeout.
const RESPONSE_TIMEOUT_SECS: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_gets_504_at_once_when_the_target_disconnects_mid_call() {
    let hub = support::start("method-disconnect", MANIFEST, &[])
        .await
        .unwrap();
    let (b, mut b_rx) = ModuleClient::connect(hub.identity("b"), Subscriptions::METHODS)
        .await
        .unwrap();
    hub.wait_for_session("b", "subscribed to methods", |s| s.takes_methods())
        .await;
    let hub = std::sync::Arc::new(hub);
    let call = {
        let hub = hub.clone();
        tokio::spawn(async move {
            support::call_method(&hub, "a", "b", "Slow", RESPONSE_TIMEOUT_SECS).await
        })
    };
    // b has the request and closes its connection without answering.
    let request = match tokio::time::timeout(Duration::from_secs(10), b_rx.recv()).await {
        Ok(Some(Incoming::Method { request, .. })) => request,
        other => panic!("expected the method request, got {other:?}"),
    };
    b.disconnect().await;
    drop(b_rx);

    // b's next connection answers the call: too late, it belonged to the closed one.
    let (b2, _b2_rx) = ModuleClient::connect(hub.identity("b"), Subscriptions::METHODS)
        .await
        .unwrap();
    hub.wait_for_session("b", "subscribed to methods again", |s| s.takes_methods())
        .await;
    let _ = b2
        .respond(
            &request,
            200,
            bytes::Bytes::from_static(br#"{"late":true}"#),
        )
        .await;

    // Far less than the response timeout: a hub that waited for it fails here.
    let answered = tokio::time::timeout(Duration::from_secs(60), call).await;
    let Ok(Ok((status, body))) = answered else {
        panic!(
            "no answer while the response timeout ({RESPONSE_TIMEOUT_SECS} s) runs: {answered:?}"
        );
    };
    assert_eq!(status, 504, "{body}");
    assert!(
        body.starts_with(
            r#"{"message":"Timed out waiting for device to respond to method request "#
        ),
        "{body}"
    );
    b2.disconnect().await;
    match std::sync::Arc::try_unwrap(hub) {
        Ok(hub) => hub.running.stop().await,
        Err(_) => panic!("the call task still holds the hub"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_call_waits_the_subscribe_delay_after_the_subscription() {
    let hub = support::start(
        "method-subscribe-delay",
        MANIFEST,
        &["--method-subscribe-delay", "2s"],
    )
    .await
    .unwrap();
    let hub = std::sync::Arc::new(hub);
    // The first call comes before b subscribes: parked (connectTimeoutInSeconds 30).
    let parked = {
        let hub = hub.clone();
        tokio::spawn(
            async move { support::call_method_waiting(&hub, "a", "b", "Parked", 30).await },
        )
    };
    hub.wait_for_method_calls(1).await;
    let (b, mut b_rx) = ModuleClient::connect(hub.identity("b"), Subscriptions::METHODS)
        .await
        .unwrap();
    hub.wait_for_session("b", "subscribed to methods", |s| s.takes_methods())
        .await;
    // The second comes after the subscription: sent at once, so it overtakes the parked one.
    let direct = {
        let hub = hub.clone();
        tokio::spawn(async move { support::call_method(&hub, "a", "b", "Direct", 30).await })
    };
    let mut order = Vec::new();
    while order.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(30), b_rx.recv()).await {
            Ok(Some(Incoming::Method { request, .. })) => {
                order.push(request.method.clone());
                b.respond(&request, 200, bytes::Bytes::from_static(b"{}"))
                    .await
                    .unwrap();
            }
            other => panic!("expected a method request, got {other:?} after {order:?}"),
        }
    }
    assert_eq!(order, ["Direct", "Parked"]);
    for call in [parked, direct] {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    b.disconnect().await;
    match std::sync::Arc::try_unwrap(hub) {
        Ok(hub) => hub.running.stop().await,
        Err(_) => panic!("a call task still holds the hub"),
    }
}
