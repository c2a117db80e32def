//! The message exchange: a message to the producer's input with a correlation id, and the reply
//! that carries it back. Closed and open loop alike; replies are matched in [`PendingReplies`].

use super::{parse_reply, reply_span, sample, Common};
use crate::kind::Kind;
use crate::recorder::{Failure, Outcome};
use crate::replies::{CidClock, PendingReplies};
use edge::seed::MESSAGE_ENDPOINT;
use edge::{Message, ModuleClient};
use std::sync::Arc;
use std::time::Instant;

pub(crate) struct MessageExchange {
    pub common: Common,
    pub client: ModuleClient,
    pub pending: Arc<PendingReplies>,
    pub cids: CidClock,
}

impl MessageExchange {
    pub(crate) async fn run(&self, scheduled: Option<Instant>) {
        let start = scheduled.unwrap_or_else(Instant::now);
        let deadline = tokio::time::Instant::from_std(start + self.common.timeout);
        // The seed's contract: the correlation id is the send time, round-trip format.
        let sent = self.cids.next();
        let cid = edge::time::round_trip(sent);
        let reply = self.pending.expect(cid.clone());
        let mut message =
            Message::new(self.common.workload.message_body()).with_correlation_id(cid.as_str());
        telemetry::inject_current(|k, v| message.properties.insert(k, v));
        let sending =
            tokio::time::timeout_at(deadline, self.client.send_output(MESSAGE_ENDPOINT, message));
        let (outcome, why) = match sending.await {
            Ok(Ok(())) => match tokio::time::timeout_at(deadline, reply).await {
                Err(_) => {
                    self.pending.timed_out(&cid);
                    (Outcome::Timeout, format!("no reply to {cid}"))
                }
                Ok(Err(_)) => (
                    Outcome::Failed(Failure::Transport),
                    "the edge hub session ended".to_owned(),
                ),
                Ok(Ok(reply)) => self.replied(&reply, sent, start),
            },
            Ok(Err(e)) => {
                self.pending.abandon(&cid);
                (Outcome::Failed(Failure::Transport), edge::error_chain(&e))
            }
            Err(_) => {
                // Queued but not sent in time: a reply may still come, late.
                self.pending.timed_out(&cid);
                (Outcome::Timeout, format!("{cid} not sent in time"))
            }
        };
        self.common.conclude(outcome, &why, scheduled).await;
    }

    fn replied(
        &self,
        reply: &Message,
        sent: chrono::DateTime<chrono::Utc>,
        start: Instant,
    ) -> (Outcome, String) {
        let total = start.elapsed();
        let received = chrono::Utc::now();
        match parse_reply(&reply.body) {
            Ok((produced, _, padding)) => {
                self.common.workload.observe_reply(padding);
                reply_span(Kind::Message, |k| {
                    reply.properties.get(k).map(str::to_owned)
                });
                (
                    Outcome::Ok(sample(sent, produced, received, total)),
                    String::new(),
                )
            }
            Err(e) => (Outcome::Failed(Failure::Malformed), e),
        }
    }
}
