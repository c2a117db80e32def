//! The direct-method exchange: one HTTPS call through the pooled method client. A call that
//! outlives the exchange timeout is left to finish in the background (so its connection is not
//! torn down, and a late reply is counted once, never as a sample).

use super::{parse_reply, reply_span, sample, Common};
use crate::kind::Kind;
use crate::recorder::{Failure, LateReply, Outcome};
use crate::workload::MethodPayload;
use chrono::Utc;
use edge::seed::METHOD_NAME;
use edge::{InvokeError, InvokeFailure, MethodClient, MethodTarget};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

pub(crate) struct MethodExchange {
    pub common: Common,
    pub client: Arc<MethodClient>,
    /// The producer, its request URI built once.
    pub target: MethodTarget,
    /// Calls still running after their exchange timed out.
    pub overdue: Arc<AtomicUsize>,
}

fn failure(e: &InvokeError) -> Outcome {
    match e.failure() {
        InvokeFailure::Timeout => Outcome::Timeout,
        InvokeFailure::Refused => Outcome::Failed(Failure::HubRefused),
        InvokeFailure::Transport => Outcome::Failed(Failure::Transport),
        InvokeFailure::Tls => Outcome::Failed(Failure::Tls),
        InvokeFailure::Malformed => Outcome::Failed(Failure::Malformed),
    }
}

impl MethodExchange {
    pub(crate) async fn run(&self, scheduled: Option<Instant>) {
        let timeout = self.common.timeout;
        // The seed's payload had only what the producer ignores; ours carries trace context
        // and the workload's padding (built once, shared here).
        let mut trace = std::collections::BTreeMap::new();
        telemetry::inject_current(|k, v| {
            trace.insert(k.to_owned(), v);
        });
        let padding = self.common.workload.method_padding();
        let sent = Utc::now();
        let start = scheduled.unwrap_or_else(Instant::now);
        // The client's own deadline (the hub's response timeout, at least 5 s, plus 5 s) bounds
        // the call; ours is the exchange timeout. Polled here, so a reply in time costs no task
        // hop; only a call that outlives the exchange is handed to a task of its own.
        let mut call = Box::pin(
            {
                let (client, target) = (self.client.clone(), self.target.clone());
                async move {
                    let payload = MethodPayload {
                        trace: &trace,
                        padding: &padding,
                    };
                    client.call(&target, METHOD_NAME, &payload, timeout).await
                }
            }
            .in_current_span(),
        );
        let result = match tokio::time::timeout_at(
            tokio::time::Instant::from_std(start + timeout),
            &mut call,
        )
        .await
        {
            Ok(r) => r,
            Err(_) => {
                self.watch_overdue(call);
                Err(InvokeError::Timeout(format!(
                    "no answer within {timeout:?}"
                )))
            }
        };
        let total = start.elapsed();
        let received = Utc::now();
        let (outcome, why) = match result {
            Ok(r) if r.status == 200 => match parse_reply(&r.payload) {
                Ok((produced, reply, padding)) => {
                    self.common.workload.observe_reply(padding);
                    reply_span(Kind::Method, |k| reply.trace.get(k).cloned());
                    (
                        Outcome::Ok(sample(sent, produced, received, total)),
                        String::new(),
                    )
                }
                Err(e) => (Outcome::Failed(Failure::Malformed), e),
            },
            Ok(r) => (
                Outcome::Failed(Failure::HubRefused),
                format!(
                    "producer answered status {} with {}",
                    r.status,
                    String::from_utf8_lossy(&r.payload)
                ),
            ),
            Err(e) => (failure(&e), edge::error_chain(&e)),
        };
        self.common.conclude(outcome, &why, scheduled).await;
        if matches!(outcome, Outcome::Failed(Failure::Transport | Failure::Tls)) {
            // The pooled connection is gone: the next call connects again.
            self.common.recorder.reconnected(Kind::Method);
        }
    }

    /// Lets a timed-out call finish; a reply from the producer is counted as late.
    fn watch_overdue(
        &self,
        call: impl std::future::Future<Output = Result<edge::MethodResult, InvokeError>>
            + Send
            + 'static,
    ) {
        let (recorder, overdue) = (self.common.recorder.clone(), self.overdue.clone());
        overdue.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            if call.await.is_ok() {
                recorder.late(Kind::Method, LateReply::AfterTimeout);
            }
            overdue.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// At exit: waits up to `grace` for timed-out calls to end, so a late reply is counted.
pub(crate) async fn drain(overdue: &AtomicUsize, grace: Duration) {
    let until = Instant::now() + grace;
    while overdue.load(Ordering::Relaxed) > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
