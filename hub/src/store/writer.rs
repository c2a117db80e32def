//! The writer thread: batches, nets out and commits the store's changes, and syncs the file.

use super::*;

/// The writer thread: waits for a first change, gathers what follows for [`COMMIT_DELAY`] (a
/// flush or the close ends the wait), commits it as one transaction, and syncs the file once
/// commits have waited [`SYNC_INTERVAL`], on a flush, and at the end.
pub(super) fn run(db: Database, file: std::fs::File, changes: &Changes, path: &Path) {
    let mut writer = Writer {
        db,
        file,
        changes,
        path,
        unsynced: None,
        failed_logged: false,
    };
    let mut batch = Vec::new();
    loop {
        let pending = writer.wait_for_a_change();
        let mut pending = writer.gather(pending);
        std::mem::swap(&mut batch, &mut pending.ops);
        let closed = pending.closed;
        drop(pending);
        writer.write(net_changes(&mut batch), closed);
        if closed {
            return;
        }
    }
}

/// What the writer thread works with.
struct Writer<'a> {
    db: Database,
    /// A second handle of the database's file, to sync it.
    file: std::fs::File,
    changes: &'a Changes,
    path: &'a Path,
    /// Since when a commit has not been synced.
    unsynced: Option<Instant>,
    /// A failed commit is logged once until one succeeds again.
    failed_logged: bool,
}

impl<'a> Writer<'a> {
    /// Idle: waits for a first change (or the close), syncing what waits for it when its time
    /// comes.
    fn wait_for_a_change(&mut self) -> MutexGuard<'a, Pending> {
        let changes = self.changes;
        let mut pending = changes.lock();
        while pending.ops.is_empty() && !pending.closed {
            pending.idle = true;
            let Some(since) = self.unsynced else {
                pending = changes
                    .wake
                    .wait(pending)
                    .unwrap_or_else(|e| e.into_inner());
                continue;
            };
            let left = (since + SYNC_INTERVAL).saturating_duration_since(Instant::now());
            let (guard, waited) = (changes.wake)
                .wait_timeout(pending, left)
                .unwrap_or_else(|e| e.into_inner());
            pending = guard;
            if waited.timed_out() && pending.ops.is_empty() {
                drop(pending);
                self.sync();
                pending = changes.lock();
            }
        }
        pending.idle = false;
        pending
    }

    /// Gathering: changes append without waking this thread for [`COMMIT_DELAY`]; only a flush
    /// or the close end the wait early.
    fn gather(&self, mut pending: MutexGuard<'a, Pending>) -> MutexGuard<'a, Pending> {
        let until = Instant::now() + COMMIT_DELAY;
        while !pending.closed && !pending.ops.iter().any(|op| matches!(op, Op::Flush(_))) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            pending = (self.changes.wake)
                .wait_timeout(pending, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        pending
    }

    /// Commits a batch, syncs when a flush, the close or the interval asks for it, and answers
    /// the flushes.
    fn write(&mut self, batch: NetChanges, closed: bool) {
        let NetChanges {
            puts,
            removes,
            flushes,
        } = batch;
        if !puts.is_empty() || !removes.is_empty() {
            self.try_commit(&puts, &removes);
        }
        let due = (self.unsynced).is_some_and(|since| since.elapsed() >= SYNC_INTERVAL);
        if !flushes.is_empty() || closed || due {
            self.sync();
        }
        for reply in flushes {
            let _ = reply.send(());
        }
    }

    /// Commits one batch; a failure is logged (once until a commit succeeds), the messages stay
    /// queued in memory.
    fn try_commit(&mut self, puts: &[(u64, Record)], removes: &[u64]) {
        match commit(&self.db, puts, removes) {
            Ok(()) => self.failed_logged = false,
            Err(e) if !self.failed_logged => {
                self.failed_logged = true;
                tracing::error!(store = %self.path.display(), error = %e, "hub store: commit failed; the messages stay queued in memory only (logged once until a commit succeeds)");
            }
            Err(_) => {}
        }
        self.unsynced.get_or_insert_with(Instant::now);
    }

    fn sync(&mut self) {
        if self.unsynced.take().is_some() {
            if let Err(e) = self.file.sync_data() {
                tracing::error!(store = %self.path.display(), error = %e, "hub store: sync to disk failed");
            }
        }
    }
}

/// What a batch comes to: a message put and removed within it cancels out.
pub(super) struct NetChanges {
    pub(super) puts: Vec<(u64, Record)>,
    pub(super) removes: Vec<u64>,
    /// Who waits for this batch to be committed and synced.
    pub(super) flushes: Vec<mpsc::SyncSender<()>>,
}

/// Empties `batch` (its capacity is kept for the next) into what it changes.
pub(super) fn net_changes(batch: &mut Vec<Op>) -> NetChanges {
    let mut removed: std::collections::HashSet<u64> = batch
        .iter()
        .filter_map(|op| match op {
            Op::Remove(seq) => Some(*seq),
            _ => None,
        })
        .collect();
    let mut puts = Vec::new();
    let mut flushes = Vec::new();
    for op in batch.drain(..) {
        match op {
            Op::Put(seq, record) if !removed.remove(&seq) => puts.push((seq, record)),
            Op::Put(..) | Op::Remove(_) => {}
            Op::Flush(reply) => flushes.push(reply),
        }
    }
    let mut removes: Vec<u64> = removed.into_iter().collect();
    removes.sort_unstable();
    NetChanges {
        puts,
        removes,
        flushes,
    }
}

#[allow(clippy::result_large_err)] // redb's error, logged by the writer
fn commit(db: &Database, puts: &[(u64, Record)], removes: &[u64]) -> Result<(), redb::Error> {
    // A durable commit as far as redb knows (it frees pages); the backend leaves out the sync.
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(MESSAGES)?;
        for (seq, r) in puts {
            let row: Row<'_> = (
                &r.module,
                &r.input,
                &r.from,
                &r.from_output,
                row_priority(r.priority),
                unix_ms(r.expires),
                &r.bag,
                &r.body,
            );
            table.insert(*seq, row)?;
        }
        for seq in removes {
            table.remove(*seq)?;
        }
    }
    txn.commit()?;
    Ok(())
}
