//! Matching message replies to their exchanges by correlation id, and accounting for the replies
//! no exchange waits for any more: a reply after its exchange timed out (late), a further copy of
//! a reply already taken (a hub resend after a lost PUBACK) and a reply to an id this consumer
//! does not remember (unmatched). Each is counted once and otherwise ignored.

use crate::recorder::LateReply;
use chrono::{DateTime, Utc};
use edge::Message;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How many ended exchanges are remembered to tell a late or duplicate reply from an unmatched
/// one (at 1,000 exchanges a second, the last 16 s).
const REMEMBERED: usize = 16_384;

/// Send times that are unique correlation ids: the seed's `$.cid` is the send time in round-trip
/// format (100 ns ticks), and two sends within one tick get consecutive ticks.
#[derive(Default)]
pub(crate) struct CidClock(AtomicI64);

impl CidClock {
    const TICKS_PER_SECOND: i64 = 10_000_000;

    pub(crate) fn next(&self) -> DateTime<Utc> {
        let now = Utc::now();
        let ticks = now.timestamp() * Self::TICKS_PER_SECOND
            + i64::from((now.timestamp_subsec_nanos() / 100).min(9_999_999));
        let previous = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(ticks.max(last + 1))
            })
            .unwrap_or(ticks);
        let t = ticks.max(previous + 1);
        DateTime::from_timestamp(
            t.div_euclid(Self::TICKS_PER_SECOND),
            (t.rem_euclid(Self::TICKS_PER_SECOND) * 100) as u32,
        )
        .unwrap_or(now)
    }
}

/// How a remembered exchange ended, for the replies that come after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Timed out and no reply yet: the next one is late.
    TimedOut,
    /// A reply was taken (in time or late): any further one is a duplicate.
    Replied,
}

/// Where a reply went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// To its waiting exchange.
    Taken,
    /// Nobody waits for it: count it.
    Ignored(LateReply),
}

/// The message exchanges waiting for a reply, by correlation id, so that concurrent exchanges
/// each get their own reply (a method's reply comes back on its own HTTP request).
#[derive(Default)]
pub(crate) struct PendingReplies(Mutex<PendingMap>);

#[derive(Default)]
struct PendingMap {
    waiting: HashMap<String, oneshot::Sender<Message>>,
    ended: HashMap<String, Ended>,
    /// `ended`'s ids, oldest first, to forget beyond `REMEMBERED`.
    order: VecDeque<String>,
    /// Timed-out exchanges whose reply has not come (yet).
    owed: usize,
    closed: bool,
}

impl PendingMap {
    fn remember(&mut self, cid: String, how: Ended) {
        if how == Ended::TimedOut {
            self.owed += 1;
        }
        if self.ended.insert(cid.clone(), how) == Some(Ended::TimedOut) {
            self.owed -= 1;
        } else {
            self.order.push_back(cid);
        }
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                if self.ended.remove(&old) == Some(Ended::TimedOut) {
                    self.owed -= 1;
                }
            }
        }
    }
}

impl PendingReplies {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self(Mutex::new(PendingMap {
            waiting: HashMap::with_capacity(n),
            ..PendingMap::default()
        }))
    }

    /// Registers an exchange before its message is sent (the reply may beat the send's return).
    pub(crate) fn expect(&self, cid: String) -> oneshot::Receiver<Message> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.0.lock() {
            if !p.closed {
                p.waiting.insert(cid, tx);
            }
        }
        rx // dropped sender (session over): the receiver fails at once
    }

    /// The exchange timed out: its reply, if it comes, is late.
    pub(crate) fn timed_out(&self, cid: &str) {
        if let Ok(mut p) = self.0.lock() {
            if p.waiting.remove(cid).is_some() {
                p.remember(cid.to_owned(), Ended::TimedOut);
            }
        }
    }

    /// The exchange failed before its message left: no reply will come.
    pub(crate) fn abandon(&self, cid: &str) {
        if let Ok(mut p) = self.0.lock() {
            p.waiting.remove(cid);
        }
    }

    /// Hands a reply to its exchange, or says why nobody takes it.
    pub(crate) fn complete(&self, reply: Message) -> Delivery {
        let Some(cid) = reply.correlation_id().map(str::to_owned) else {
            return Delivery::Ignored(LateReply::Unmatched);
        };
        let Ok(mut p) = self.0.lock() else {
            return Delivery::Ignored(LateReply::Unmatched);
        };
        if let Some(tx) = p.waiting.remove(&cid) {
            // A failed send: the exchange timed out this instant and dropped its receiver.
            let delivery = match tx.send(reply) {
                Ok(()) => Delivery::Taken,
                Err(_) => Delivery::Ignored(LateReply::AfterTimeout),
            };
            p.remember(cid, Ended::Replied);
            return delivery;
        }
        match p.ended.get(&cid).copied() {
            Some(Ended::TimedOut) => {
                p.remember(cid, Ended::Replied);
                Delivery::Ignored(LateReply::AfterTimeout)
            }
            Some(Ended::Replied) => Delivery::Ignored(LateReply::Duplicate),
            None => Delivery::Ignored(LateReply::Unmatched),
        }
    }

    /// Timed-out exchanges still owed a reply.
    pub(crate) fn owed(&self) -> usize {
        self.0.lock().map(|p| p.owed).unwrap_or(0)
    }

    /// At exit: waits up to `grace` for the replies still owed, so they are counted as late.
    pub(crate) async fn drain(&self, grace: Duration) {
        let until = Instant::now() + grace;
        while self.owed() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The session's deliveries ended: every waiting exchange fails now, later ones at once.
    pub(crate) fn close(&self) {
        if let Ok(mut p) = self.0.lock() {
            p.closed = true;
            p.waiting.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn correlation_ids_are_unique_send_times_in_the_seeds_format() {
        let cids = CidClock::default();
        let before = Utc::now();
        let ids: Vec<String> = (0..10_000)
            .map(|_| edge::time::round_trip(cids.next()))
            .collect();
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        let first = edge::time::parse(&ids[0]).unwrap();
        assert!(
            (first - before).num_milliseconds().abs() < 1000,
            "{}",
            ids[0]
        );
        assert!(ids[0].ends_with('Z') && ids[0].len() == 28, "{}", ids[0]);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    fn reply(cid: &str, body: &'static str) -> Message {
        Message::new(Bytes::from_static(body.as_bytes())).with_correlation_id(cid)
    }

    #[tokio::test]
    async fn concurrent_message_replies_go_to_their_own_exchange() {
        let pending = PendingReplies::with_capacity(4);
        let a = pending.expect("a".into());
        let b = pending.expect("b".into());
        // Replies in the other order, and one for nobody.
        assert_eq!(pending.complete(reply("b", "to b")), Delivery::Taken);
        assert_eq!(
            pending.complete(reply("zzz", "foreign")),
            Delivery::Ignored(LateReply::Unmatched)
        );
        assert_eq!(pending.complete(reply("a", "to a")), Delivery::Taken);
        assert_eq!(&a.await.unwrap().body[..], b"to a");
        assert_eq!(&b.await.unwrap().body[..], b"to b");
        // When the session's deliveries end, waiting and later exchanges fail at once.
        let d = pending.expect("d".into());
        pending.close();
        assert!(d.await.is_err());
        assert!(pending.expect("e".into()).await.is_err());
    }

    #[tokio::test]
    async fn late_and_duplicate_replies_are_each_counted_once() {
        let pending = PendingReplies::with_capacity(4);
        // Answered, then a resend of the same reply: a duplicate, every time.
        let a = pending.expect("a".into());
        assert_eq!(pending.complete(reply("a", "1")), Delivery::Taken);
        assert!(a.await.is_ok());
        for _ in 0..2 {
            assert_eq!(
                pending.complete(reply("a", "again")),
                Delivery::Ignored(LateReply::Duplicate)
            );
        }
        // Timed out: the first reply is late, a copy of it a duplicate.
        let c = pending.expect("c".into());
        drop(c);
        pending.timed_out("c");
        assert_eq!(pending.owed(), 1);
        assert_eq!(
            pending.complete(reply("c", "late")),
            Delivery::Ignored(LateReply::AfterTimeout)
        );
        assert_eq!(pending.owed(), 0);
        assert_eq!(
            pending.complete(reply("c", "late again")),
            Delivery::Ignored(LateReply::Duplicate)
        );
        // The race: the exchange gave up (dropped its receiver) before it could say so.
        let d = pending.expect("d".into());
        drop(d);
        assert_eq!(
            pending.complete(reply("d", "just too late")),
            Delivery::Ignored(LateReply::AfterTimeout)
        );
        pending.timed_out("d"); // no longer waiting: nothing more is owed
        assert_eq!(pending.owed(), 0);
        // A failed send owes nothing.
        let _e = pending.expect("e".into());
        pending.abandon("e");
        assert_eq!(
            pending.complete(reply("e", "?")),
            Delivery::Ignored(LateReply::Unmatched)
        );
    }

    #[test]
    fn memory_is_bounded() {
        let pending = PendingReplies::default();
        for i in 0..REMEMBERED + 10 {
            let cid = i.to_string();
            let _rx = pending.expect(cid.clone());
            pending.timed_out(&cid);
        }
        assert_eq!(pending.owed(), REMEMBERED);
        let p = pending.0.lock().unwrap();
        assert_eq!((p.ended.len(), p.order.len()), (REMEMBERED, REMEMBERED));
    }
}
