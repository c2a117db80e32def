//! The direct-method rendezvous: calls waiting for their response, keyed by request id, and the
//! wake-up of calls waiting for their target to subscribe.

use super::*;

/// A method call waiting for its response: the session the request went to and the caller.
pub(super) type PendingMethod = (u64, oneshot::Sender<(u16, Bytes)>);

impl Hub {
    /// Registers a method call sent to the session numbered `session`; its response, from that
    /// session only, completes the receiver.
    pub fn expect_method_response(
        &self,
        rid: &str,
        session: u64,
    ) -> oneshot::Receiver<(u16, Bytes)> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending_methods.lock() {
            p.insert(rid_key(rid).into_owned(), (session, tx));
        }
        rx
    }

    /// A session subscribed to direct methods: wakes the calls waiting for their target.
    pub(crate) fn methods_subscribed(&self) {
        self.methods_subscribed.notify_waiters();
    }

    /// Resolves at the next [`methods_subscribed`](Self::methods_subscribed) after this call.
    pub(crate) fn next_methods_subscription(&self) -> tokio::sync::futures::Notified<'_> {
        self.methods_subscribed.notified()
    }

    pub fn forget_method(&self, rid: &str) {
        if let Ok(mut p) = self.pending_methods.lock() {
            p.remove(rid_key(rid).as_ref());
        }
    }

    /// A method response from the session numbered `session`: completes the call it answers if
    /// that call went to this session (a call belongs to the connection it was sent on).
    pub fn method_response(&self, rid: &str, session: u64, status: u16, payload: Bytes) -> bool {
        let key = rid_key(rid);
        let key = key.as_ref();
        let waiter = self
            .pending_methods
            .lock()
            .ok()
            .and_then(|mut p| match p.get(key) {
                Some((s, _)) if *s == session => p.remove(key),
                _ => None,
            });
        match waiter {
            Some((_, tx)) => tx.send((status, payload)).is_ok(),
            None => false,
        }
    }
}

/// A request id as pending calls are keyed: compared ignoring case, as edgeHub does; the hub's
/// own ids are lower case already, so the common case takes no copy.
fn rid_key(rid: &str) -> std::borrow::Cow<'_, str> {
    if rid.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(rid.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(rid)
    }
}
