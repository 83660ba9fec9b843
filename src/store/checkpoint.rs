//! WAL checkpoints on their own thread and connection. A checkpoint copies the log back into the
//! database file and then waits for the disk; done by SQLite itself on the store's thread (its
//! automatic checkpoint, every 1 000 pages) that wait — tens of milliseconds on a slow disk — held
//! up every write queued behind it, a turn's start among them. The store's thread asks this one
//! for a checkpoint every [`COMMITS_PER_CHECKPOINT`] commits instead; a passive checkpoint never
//! blocks a writer (or another process's).
//!
//! The log starts over only after a checkpoint that left nothing uncopied, which one overlapping
//! writes never does (they append while it copies): under steady writes the log would only grow.
//! So once the store has been quiet for [`QUIET`], this thread copies the rest and empties the
//! log file (a truncating checkpoint, which would hold up a write arriving meanwhile, never for
//! long); and if writes never pause, the store's thread checkpoints between two writes once the
//! log passes [`WAL_LIMIT_BYTES`], after every commit until one has copied everything and the log
//! starts over — one `fsync` that the writes queued behind it wait for. Meanwhile this thread is
//! not asked for more, and the store's thread first waits for the one it may be running: that
//! one holds the lock the store's needs for as long as its `fsync` takes, and on a slow disk the
//! log would otherwise grow by all that is written meanwhile.

use std::cell::Cell;
use std::ffi::c_int;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::hooks::Wal;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::watch;

/// Commits between two checkpoints (a few pages each: about SQLite's default of 1 000 pages).
pub(super) const COMMITS_PER_CHECKPOINT: usize = 200;

/// How long the store goes without a commit before what it wrote since the last checkpoint is
/// checkpointed.
pub(super) const QUIET: Duration = Duration::from_secs(1);

/// A log this large is checkpointed on the store's thread, between two writes (smaller in tests,
/// so they need not write as much).
pub(super) const WAL_LIMIT_BYTES: i64 = if cfg!(test) { 8 } else { 256 } * 1024 * 1024;

/// How long the quiet checkpoint waits for another process's readers before it gives up.
const QUIET_BUSY_TIMEOUT: Duration = Duration::from_millis(100);

/// Which checkpoint the thread is asked for.
enum Mode {
    /// Copies what it can; never waits.
    Passive,
    /// Copies everything and empties the log file.
    Truncate,
}

/// The checkpoint thread, as the store's thread sees it.
pub(super) struct Checkpointer {
    wake: Option<SyncSender<Mode>>,
    thread: Option<JoinHandle<()>>,
    /// Commits since a checkpoint was last asked for.
    commits: usize,
    /// [`WAL_LIMIT_BYTES`] in pages.
    limit_pages: i64,
    /// Held by whichever of the two threads is checkpointing.
    running: Arc<Mutex<()>>,
    #[cfg(test)]
    done: watch::Receiver<u64>,
}

impl Checkpointer {
    /// Opens a second connection on `path` and starts the thread.
    pub fn start(path: &Path) -> Result<Self, String> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|err| err.to_string())?;
        // A checkpoint copies log frames; it needs next to no page cache of its own.
        conn.execute_batch("PRAGMA cache_size = 16;")
            .map_err(|err| err.to_string())?;
        conn.busy_timeout(QUIET_BUSY_TIMEOUT)
            .map_err(|err| err.to_string())?;
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .map_err(|err| err.to_string())?;
        let (wake, asked) = std::sync::mpsc::sync_channel(1);
        let (count, _done) = watch::channel(0);
        let running = Arc::new(Mutex::new(()));
        let thread = std::thread::Builder::new()
            .name("authbridge-checkpoint".to_owned())
            .spawn({
                let running = running.clone();
                move || {
                    super::run_behind_the_runtime();
                    serve(&conn, &asked, &count, &running)
                }
            })
            .map_err(|err| err.to_string())?;
        Ok(Self {
            wake: Some(wake),
            thread: Some(thread),
            commits: 0,
            limit_pages: WAL_LIMIT_BYTES / page_size.max(512),
            running,
            #[cfg(test)]
            done: _done,
        })
    }

    /// A transaction committed on `conn`, the store's connection: every so many, a checkpoint
    /// is asked for (one already asked for and not yet started covers it); past the limit, one
    /// runs here.
    pub fn committed(&mut self, conn: &Connection) {
        self.commits += 1;
        if LOG_PAGES.get() >= self.limit_pages {
            checkpoint(conn, &Mode::Passive, &self.running);
        } else if self.commits >= COMMITS_PER_CHECKPOINT {
            self.ask(Mode::Passive);
        }
    }

    /// Whether something was committed since a checkpoint was last asked for.
    pub fn pending(&self) -> bool {
        self.commits > 0
    }

    /// The store was quiet for [`QUIET`]: what it wrote since the last checkpoint is
    /// checkpointed, this time with nothing appended meanwhile, and the log file emptied.
    pub fn quiet(&mut self) {
        if self.pending() {
            self.ask(Mode::Truncate);
        }
    }

    fn ask(&mut self, mode: Mode) {
        self.commits = 0;
        if let Some(wake) = &self.wake
            && let Err(TrySendError::Disconnected(_)) = wake.try_send(mode)
        {
            tracing::warn!("the checkpoint thread stopped");
        }
    }

    /// How many checkpoints have finished, as they finish.
    #[cfg(test)]
    pub fn finished(&self) -> watch::Receiver<u64> {
        self.done.clone()
    }
}

impl Drop for Checkpointer {
    /// The thread ends after the checkpoint it is running, and closes its connection.
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    conn: &Connection,
    asked: &Receiver<Mode>,
    done: &watch::Sender<u64>,
    running: &Mutex<()>,
) {
    while let Ok(mode) = asked.recv() {
        checkpoint(conn, &mode, running);
        done.send_modify(|count| *count += 1);
    }
}

/// One checkpoint on `conn`, holding `running` meanwhile so that the other thread's waits.
fn checkpoint(conn: &Connection, mode: &Mode, running: &Mutex<()>) {
    let _alone = running.lock().unwrap_or_else(PoisonError::into_inner);
    let pragma = match mode {
        Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
        Mode::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
    };
    // Busy (another process checkpointing or reading) is an answer, not an error: the next
    // checkpoint tries again.
    if let Err(err) = conn.query_row(pragma, [], |_| Ok(())) {
        tracing::debug!(error = %err, "WAL checkpoint failed");
    }
}

thread_local! {
    /// Pages in the log after the last commit on this thread (the store's thread: its
    /// connection's commits run there).
    static LOG_PAGES: Cell<i64> = const { Cell::new(0) };
}

/// Keeps count of the log's length on the store's connection `conn`, after each commit. This
/// also turns SQLite's automatic checkpoint off: checkpoints run where [`Checkpointer`] says.
pub(super) fn watch_log(conn: &Connection) {
    conn.wal_hook(Some(note_log_length));
}

fn note_log_length(_: &Wal, pages: c_int) -> rusqlite::Result<()> {
    LOG_PAGES.set(pages.into());
    Ok(())
}
