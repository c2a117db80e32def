//! The module's MQTT link to edgeHub: the session (watched by the watchdog), the message kind's
//! reconnects, and the delivery task that hands each reply to the exchange waiting for it.

use crate::config::Config;
use crate::kind::Kind;
use crate::recorder::Recorder;
use crate::replies::{Delivery, PendingReplies};
use crate::schedule::Schedule;
use anyhow::Result;
use edge::seed::MESSAGE_ENDPOINT;
use edge::session::Subscriptions;
use edge::{Incoming, ModuleClient, ModuleIdentity};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The connected session and the replies it owes to message exchanges.
pub(crate) struct Link {
    pub client: ModuleClient,
    pub pending: Arc<PendingReplies>,
}

impl Link {
    /// Connects (subscribed to the reply input when messages are measured), puts the session
    /// under the watchdog and starts routing the deliveries.
    pub(crate) async fn connect(
        identity: Arc<ModuleIdentity>,
        config: &Config,
        recorder: &Recorder,
        watchdog: &telemetry::Watchdog,
    ) -> Result<Self> {
        let messages = config.measures(Kind::Message);
        let (client, deliveries) = ModuleClient::connect(
            identity,
            Subscriptions {
                inputs: messages,
                methods: false,
            },
        )
        .await?;
        let session = client.heartbeat();
        watchdog.watch("the MQTT session", "its loop last turned", move || {
            telemetry::Progress {
                last: session.last(),
                due: session.due(),
            }
        });
        if messages {
            count_reconnects(&client, recorder.clone());
        }
        let pending = Arc::new(match config.schedule {
            Schedule::Closed => PendingReplies::default(),
            Schedule::Open { max_in_flight, .. } => PendingReplies::with_capacity(max_in_flight),
        });
        tokio::spawn(route_replies(deliveries, pending.clone(), recorder.clone()));
        Ok(Self { client, pending })
    }
}

/// Every (re)connect of the session restarts the message kind's time to first success.
fn count_reconnects(client: &ModuleClient, recorder: Recorder) {
    let mut connections = client.connections();
    tokio::spawn(async move {
        while connections.changed().await.is_ok() {
            recorder.reconnected(Kind::Message);
        }
    });
}

/// Hands each reply to its exchange, counts the ones no exchange waits for, and ignores anything
/// else, until the session ends.
async fn route_replies(
    mut deliveries: mpsc::Receiver<Incoming>,
    pending: Arc<PendingReplies>,
    recorder: Recorder,
) {
    while let Some(incoming) = deliveries.recv().await {
        match incoming {
            Incoming::Input {
                input,
                message,
                ack,
            } if input == MESSAGE_ENDPOINT => {
                match pending.complete(message) {
                    Delivery::Taken => {
                        // The woken exchange records its sample and, in the closed loop, sends
                        // the next request before this PUBACK is queued: the PUBACK is on no
                        // exchange's critical path, the request is.
                        tokio::task::yield_now().await;
                    }
                    Delivery::Ignored(why) => {
                        tracing::debug!(reason = why.as_str(), "reply ignored");
                        recorder.late(Kind::Message, why);
                    }
                }
                drop(ack);
            }
            Incoming::Input { input, .. } => {
                tracing::debug!(%input, "message on an unexpected input ignored")
            }
            Incoming::Method { request, .. } => {
                tracing::debug!(method = %request.method, "unexpected method request ignored")
            }
        }
    }
    pending.close();
}
