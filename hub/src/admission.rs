//! Connection admission: a small budget and a short deadline for connections that have not
//! authenticated yet, and a separate cap for those that have. When the unauthenticated budget is
//! full, a new connection evicts the oldest unauthenticated one, so a flood of idle or slow
//! connections can never lock an honest module out: its connection is newer than the flood's and
//! authenticates in milliseconds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub(crate) struct Admission {
    /// Unauthenticated connections by arrival order.
    pending: Mutex<BTreeMap<u64, Arc<Eviction>>>,
    pending_limit: usize,
    next_id: AtomicU64,
    established: Arc<Semaphore>,
    /// From accept to authenticated.
    deadline: Duration,
}

#[derive(Default)]
struct Eviction {
    evicted: AtomicBool,
    notify: Notify,
}

/// Why an unauthenticated connection must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expelled {
    /// Newer connections needed its place in the unauthenticated budget.
    Evicted,
    /// It did not authenticate within the deadline.
    Expired,
}

/// One accepted connection's place in the admission budget; dropping it frees the place.
pub(crate) struct Ticket {
    id: u64,
    admission: Arc<Admission>,
    eviction: Arc<Eviction>,
    deadline: Instant,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    established: AtomicBool,
}

impl Admission {
    pub(crate) fn new(
        pending_limit: usize,
        established_limit: usize,
        deadline: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            pending: Mutex::new(BTreeMap::new()),
            pending_limit: pending_limit.max(1),
            next_id: AtomicU64::new(0),
            established: Arc::new(Semaphore::new(established_limit)),
            deadline,
        })
    }

    /// Admits a new connection as unauthenticated, evicting the oldest ones if the budget is full.
    pub(crate) fn arrive(self: &Arc<Self>) -> Ticket {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let eviction = Arc::new(Eviction::default());
        if let Ok(mut pending) = self.pending.lock() {
            while pending.len() >= self.pending_limit {
                let Some((_, oldest)) = pending.pop_first() else {
                    break;
                };
                oldest.evicted.store(true, Ordering::Release);
                oldest.notify.notify_one();
            }
            pending.insert(id, eviction.clone());
        }
        Ticket {
            id,
            admission: self.clone(),
            eviction,
            deadline: Instant::now() + self.deadline,
            permit: Mutex::new(None),
            established: AtomicBool::new(false),
        }
    }

    /// Unauthenticated connections held now.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }
}

impl Ticket {
    /// The connection authenticated: it leaves the unauthenticated budget and takes a place
    /// among established connections. `false` when those are all taken.
    pub(crate) fn establish(&self) -> bool {
        if self.is_established() {
            return true;
        }
        let Ok(permit) = self.admission.established.clone().try_acquire_owned() else {
            return false;
        };
        if let Ok(mut p) = self.permit.lock() {
            *p = Some(permit);
        }
        if let Ok(mut pending) = self.admission.pending.lock() {
            pending.remove(&self.id);
        }
        self.established.store(true, Ordering::Release);
        true
    }

    pub(crate) fn is_established(&self) -> bool {
        self.established.load(Ordering::Acquire)
    }

    /// Resolves when the connection is evicted, or its deadline (counted from its arrival)
    /// passes, before it established; never resolves once it has established.
    pub(crate) async fn expelled(&self) -> Expelled {
        let evicted = async {
            loop {
                if self.eviction.evicted.load(Ordering::Acquire) && !self.is_established() {
                    return;
                }
                self.eviction.notify.notified().await;
            }
        };
        tokio::select! {
            _ = evicted => Expelled::Evicted,
            _ = tokio::time::sleep_until(self.deadline) => {
                if self.is_established() {
                    std::future::pending::<()>().await;
                }
                Expelled::Expired
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.is_established() {
            if let Ok(mut pending) = self.admission.pending.lock() {
                pending.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_budget_evicts_the_oldest_unauthenticated_connection() {
        let a = Admission::new(2, 10, Duration::from_secs(60));
        let first = a.arrive();
        let _second = a.arrive();
        let third = a.arrive();
        assert_eq!(a.pending(), 2);
        assert_eq!(first.expelled().await, Expelled::Evicted);
        assert!(third.establish());
        assert_eq!(a.pending(), 1);
        // An established connection is never evicted.
        let _more: Vec<Ticket> = (0..5).map(|_| a.arrive()).collect();
        let quiet = tokio::time::timeout(Duration::from_millis(50), third.expelled()).await;
        assert!(quiet.is_err());
    }

    #[tokio::test]
    async fn the_deadline_expels_only_unauthenticated_connections() {
        let a = Admission::new(10, 10, Duration::from_millis(20));
        let slow = a.arrive();
        assert_eq!(slow.expelled().await, Expelled::Expired);
        let quick = a.arrive();
        assert!(quick.establish());
        let quiet = tokio::time::timeout(Duration::from_millis(100), quick.expelled()).await;
        assert!(quiet.is_err());
        drop(slow);
        assert_eq!(a.pending(), 0);
    }

    #[tokio::test]
    async fn established_connections_are_capped() {
        let a = Admission::new(10, 1, Duration::from_secs(60));
        let one = a.arrive();
        let two = a.arrive();
        assert!(one.establish());
        assert!(!two.establish());
        drop(one);
        assert!(two.establish());
    }
}
