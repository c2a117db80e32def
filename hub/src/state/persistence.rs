//! The hub's side of the store (`crate::store`): what a restarted hub queues again, and what a
//! routed message leaves there.

use super::delivery::{Delivery, DeliveryQueue, Via};
use super::{error_chain, Hub, Routed};
use crate::metrics::{DropReason, SharedLabel};
use crate::store::Store;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

impl Hub {
    /// Queues what `store` held when it was opened, in order; drops (and counts) what expired
    /// meanwhile. Logs one line per module input.
    pub(super) fn restore(self: &Arc<Self>, store: &Store) {
        let loaded = store.take_loaded();
        if loaded.is_empty() {
            return;
        }
        let (now, wall) = (Instant::now(), SystemTime::now());
        // (restored, expired, overflowed) per (module, input).
        let mut counts: BTreeMap<(SharedLabel, SharedLabel), (u64, u64, u64)> = BTreeMap::new();
        let mut deliveries: HashMap<
            (SharedLabel, SharedLabel, SharedLabel, SharedLabel, u32),
            Arc<Delivery>,
        > = HashMap::new();
        for (seq, r) in loaded {
            let queue = self.queue(&r.module);
            let via = deliveries
                .entry((
                    r.module.clone(),
                    r.input.clone(),
                    r.from.clone(),
                    r.from_output.clone(),
                    r.priority,
                ))
                .or_insert_with(|| {
                    let via = Via {
                        from: r.from.clone(),
                        from_output: r.from_output.clone(),
                        input: &r.input,
                        priority: r.priority,
                        ttl: Duration::ZERO,
                    };
                    Arc::new(Delivery::new(&queue, &self.metrics, via))
                })
                .clone();
            let count = counts
                .entry((r.module.clone(), r.input.clone()))
                .or_default();
            let left = r.expires.duration_since(wall).unwrap_or_default();
            if left.is_zero() {
                count.1 += 1;
                via.dropped(&self.metrics, DropReason::TtlExpiry);
                store.remove(seq);
                continue;
            }
            let routed = Routed {
                topic: None,
                bag: r.bag,
                body: r.body,
                via: via.clone(),
                received: None,
                expires: now
                    .checked_add(left)
                    .unwrap_or(now + Duration::from_secs(1 << 32)),
                seq: Some(seq),
            };
            if queue.push(routed, self.settings.queue_size) {
                count.0 += 1;
            } else {
                count.2 += 1;
                via.dropped(&self.metrics, DropReason::QueueOverflow);
            }
        }
        for ((module, input), (restored, expired, overflowed)) in counts {
            tracing::info!(store = %store.path().display(), target_module = %module, %input, restored, expired, overflowed, "store: {restored} message(s) queued again for {module}/inputs/{input}; {expired} expired while the hub was stopped (edgehub_messages_dropped_total{{reason=\"ttl_expiry\"}}){}", if overflowed > 0 { format!("; {overflowed} beyond --queue-size dropped (queue_overflow)") } else { String::new() });
        }
    }

    /// Hands a message's deliveries to the store (committed within its `COMMIT_DELAY`) as they are
    /// queued. A store that is gone is logged, and the message is queued in memory only (it would
    /// be lost if the hub stopped before delivering it). Whether the store took it.
    pub(super) fn persist(
        &self,
        store: &Store,
        pending: &mut [(Arc<DeliveryQueue>, Routed)],
    ) -> bool {
        if pending.is_empty() {
            return true;
        }
        let wall = SystemTime::now();
        let records = pending.iter().map(|(queue, routed)| {
            let expires = wall
                .checked_add(routed.via.ttl)
                .unwrap_or(wall + Duration::from_secs(1 << 32));
            routed.record(&queue.name, expires)
        });
        match store.put(records) {
            Ok(seqs) => {
                for ((_, routed), seq) in pending.iter_mut().zip(seqs) {
                    routed.seq = Some(seq);
                }
                self.store_failed.store(false, Ordering::Relaxed);
                true
            }
            Err(e) => {
                if !self.store_failed.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %error_chain(&e), "message not written to the hub store; queued in memory only, so it is lost if the hub stops before delivering it (logged once until a write succeeds)");
                }
                false
            }
        }
    }
}
