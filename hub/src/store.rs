//! The hub's persistent store-and-forward queue: every message waiting for a module input (queued
//! while the module is offline, or sent and not acknowledged yet) is kept in a redb database
//! under the state directory, so a restarted hub — also one that was killed — delivers it.
//!
//! One table maps a sequence number, increasing across restarts, to the message: target module
//! and input, sender and output (its metric labels), route priority, expiry as unix time, the
//! encoded property bag and the body. Order per module input is the order of the numbers.
//!
//! Writes go through one thread, behind the message path: `put` and `remove` only append the
//! change to a list under a lock; the thread is woken (a futex call) only by the first change
//! after it went idle, never per message. It gathers what arrives within [`COMMIT_DELAY`] and
//! commits it as one transaction; a message put and removed in the same batch (delivered and
//! acknowledged within the delay, the usual case with the module online) is never written at
//! all, so the store costs the message path almost nothing until messages actually wait.
//!
//! What survives what, as with edgeHub's RocksDB store (writes not synced): a commit is in the
//! operating system's page cache when it returns and reaches the disk by an fsync at most
//! [`SYNC_INTERVAL`] later. A killed hub loses what was routed within the last [`COMMIT_DELAY`]
//! (plus the commit itself); a power cut loses at most [`SYNC_INTERVAL`] more. A removal not yet
//! committed means that message is delivered once more after a restart (at least once, as MQTT
//! QoS 1). Waiting for an fsync before each PUBACK would cost about a millisecond per message,
//! several times a whole hop through the hub (measured with `scripts/bench.sh`).

use bytes::Bytes;
use redb::backends::FileBackend;
use redb::{Database, ReadableTable, StorageBackend, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod writer;

/// The store's file in the state directory.
pub const FILE_NAME: &str = "store.redb";

/// How long the writer gathers changes before it commits them.
pub const COMMIT_DELAY: Duration = Duration::from_millis(5);

/// How long a commit may stay in the page cache before it is synced to the disk.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// redb's file backend with the sync of each commit left to the writer's clock (see the module
/// documentation); everything else is the file backend's.
#[derive(Debug)]
struct PageCacheBackend(FileBackend);

impl StorageBackend for PageCacheBackend {
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
    fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.0.read(offset, len)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self, _eventual: bool) -> std::io::Result<()> {
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.write(offset, data)
    }
}

/// sequence → (module, input, from, from output, priority, expires unix ms, bag, body). The
/// priority is one byte: 0-9 as is, [`DEFAULT_ROW_PRIORITY`] for a route without one.
type Row<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    u8,
    u64,
    &'a str,
    &'a [u8],
);
/// The stored byte of a route without a priority (edgeHub's default, 2000000000).
const DEFAULT_ROW_PRIORITY: u8 = u8::MAX;

fn row_priority(priority: u32) -> u8 {
    u8::try_from(priority)
        .ok()
        .filter(|p| *p != DEFAULT_ROW_PRIORITY)
        .unwrap_or(DEFAULT_ROW_PRIORITY)
}

fn record_priority(row: u8) -> u32 {
    match row {
        DEFAULT_ROW_PRIORITY => crate::routes::DEFAULT_PRIORITY,
        p => u32::from(p),
    }
}

const MESSAGES: TableDefinition<u64, Row<'static>> = TableDefinition::new("messages");

/// One stored message for one module input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub module: Arc<str>,
    pub input: Arc<str>,
    /// The sender's `{device}/{module}` and output ("" without one): the labels it is counted by.
    pub from: Arc<str>,
    pub from_output: Arc<str>,
    /// The route's priority: 0-9, or `routes::DEFAULT_PRIORITY`.
    pub priority: u32,
    pub expires: SystemTime,
    /// The encoded property bag as delivered.
    pub bag: Arc<str>,
    pub body: Bytes,
}

/// What the store could not do; each keeps redb's error as its source.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("hub store {} cannot be opened (to start with an empty store, remove {} — the messages queued in it will be lost)", path.display(), path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("hub store {} is in use by another process (another hub on the same --state-dir?)", path.display())]
    InUse {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("hub store {}: its writer thread is gone", path.display())]
    Closed { path: PathBuf },
}

enum Op {
    Put(u64, Record),
    Remove(u64),
    Flush(mpsc::SyncSender<()>),
}

/// The changes waiting for the writer thread.
#[derive(Default)]
struct Pending {
    ops: Vec<Op>,
    /// The writer waits for a first change: the next one wakes it.
    idle: bool,
    /// No more changes are taken; the writer commits what is left and ends.
    closed: bool,
}

/// What the message path and the writer thread share.
#[derive(Default)]
struct Changes {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Changes {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Appending to a list leaves nothing half-done to a panic: the list is usable.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends what `add` pushes, unless closed; wakes the writer if it is idle or `urgent`.
    fn append(&self, urgent: bool, add: impl FnOnce(&mut Vec<Op>)) -> bool {
        let mut pending = self.lock();
        if pending.closed {
            return false;
        }
        add(&mut pending.ops);
        let wake = pending.idle || urgent;
        pending.idle = false;
        drop(pending);
        if wake {
            self.wake.notify_one();
        }
        true
    }
}

/// The open store; cheap to share (`Arc`).
pub struct Store {
    path: PathBuf,
    next: AtomicU64,
    changes: Arc<Changes>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    loaded: Mutex<Vec<(u64, Record)>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Store {
    /// Opens (or creates) `dir/store.redb` and reads what it holds; a file that is not a
    /// readable store is an error naming it and how to start without it, never discarded.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join(FILE_NAME);
        let open_err = |source: redb::Error| match source {
            redb::Error::DatabaseAlreadyOpen => StoreError::InUse {
                path: path.clone(),
                source: Box::new(source),
            },
            source => StoreError::Open {
                path: path.clone(),
                source: Box::new(source),
            },
        };
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Err(open_err(redb::Error::Io(e)));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| open_err(redb::Error::Io(e)))?;
        // The writer syncs through a second handle of the same file.
        let sync = file.try_clone().map_err(|e| open_err(redb::Error::Io(e)))?;
        let backend = FileBackend::new(file).map_err(|e| open_err(e.into()))?;
        let db = Database::builder()
            // The format redb 3 and later read too.
            .create_with_file_format_v3(true)
            .create_with_backend(PageCacheBackend(backend))
            .map_err(|e| open_err(e.into()))?;
        let loaded = Self::load(&db).map_err(open_err)?;
        let next = loaded.last().map(|(seq, _)| seq + 1).unwrap_or(1);
        let changes = Arc::new(Changes::default());
        let writer_changes = changes.clone();
        let writer_path = path.clone();
        let writer = std::thread::Builder::new()
            .name("hub-store".into())
            .spawn(move || writer::run(db, sync, &writer_changes, &writer_path))
            .map_err(|e| open_err(redb::Error::Io(e)))?;
        Ok(Store {
            path,
            next: AtomicU64::new(next),
            changes,
            writer: Mutex::new(Some(writer)),
            loaded: Mutex::new(loaded),
        })
    }

    // redb's error is large; it is boxed where it is kept (`StoreError`).
    #[allow(clippy::result_large_err)]
    fn load(db: &Database) -> Result<Vec<(u64, Record)>, redb::Error> {
        // Creates the table in a new store, and checks its types in an old one.
        let txn = db.begin_write()?;
        txn.open_table(MESSAGES)?;
        txn.commit()?;
        let txn = db.begin_read()?;
        let table = txn.open_table(MESSAGES)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (seq, v) = row?;
            let (module, input, from, from_output, priority, expires, bag, body) = v.value();
            out.push((
                seq.value(),
                Record {
                    module: module.into(),
                    input: input.into(),
                    from: from.into(),
                    from_output: from_output.into(),
                    priority: record_priority(priority),
                    expires: UNIX_EPOCH + Duration::from_millis(expires),
                    bag: bag.into(),
                    body: Bytes::copy_from_slice(body),
                },
            ));
        }
        Ok(out)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The messages the store held when it was opened, in order (once; later calls get none).
    pub fn take_loaded(&self) -> Vec<(u64, Record)> {
        self.loaded
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }

    /// Hands `records` to the writer (committed within [`COMMIT_DELAY`]) and returns their
    /// sequence numbers, in order.
    pub fn put(
        &self,
        records: impl ExactSizeIterator<Item = Record>,
    ) -> Result<std::ops::Range<u64>, StoreError> {
        let n = records.len() as u64;
        let first = self.next.fetch_add(n, Ordering::Relaxed);
        let taken = self.changes.append(false, |ops| {
            ops.extend((first..).zip(records).map(|(seq, r)| Op::Put(seq, r)))
        });
        if !taken {
            return Err(StoreError::Closed {
                path: self.path.clone(),
            });
        }
        Ok(first..first + n)
    }

    /// Forgets a message (delivered or dropped); committed within [`COMMIT_DELAY`].
    pub fn remove(&self, seq: u64) {
        if !self.changes.append(false, |ops| ops.push(Op::Remove(seq))) {
            tracing::debug!(seq, "hub store closed; removal not recorded");
        }
    }

    /// Commits every change so far and syncs the file.
    pub fn flush(&self) {
        let (tx, rx) = mpsc::sync_channel(1);
        if self.changes.append(true, |ops| ops.push(Op::Flush(tx))) {
            let _ = rx.recv();
        }
    }

    /// Commits and syncs everything and ends the writer; later writes fail with `Closed`.
    pub fn close(&self) {
        self.flush();
        self.changes.lock().closed = true;
        self.changes.wake.notify_one();
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(w) = writer {
            let _ = w.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests;
