//! WAL checkpoints on their own thread and connection. A checkpoint copies the log back into the
//! database file and then waits for the disk; done by SQLite itself on the store's thread (its
//! automatic checkpoint, every 1 000 pages) that wait — tens of milliseconds on a slow disk — held
//! up every write queued behind it, a turn's start among them. The store's connection turns the
//! automatic checkpoint off and asks this thread for one every [`COMMITS_PER_CHECKPOINT`]
//! commits; a passive checkpoint never blocks a writer (or another process's).

use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::watch;

/// Commits between two checkpoints (a few pages each: about SQLite's default of 1 000 pages).
pub(super) const COMMITS_PER_CHECKPOINT: usize = 200;

/// The checkpoint thread, as the store's thread sees it.
pub(super) struct Checkpointer {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    commits: usize,
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
        let (wake, asked) = std::sync::mpsc::sync_channel(1);
        let (count, _done) = watch::channel(0);
        let thread = std::thread::Builder::new()
            .name("authbridge-checkpoint".to_owned())
            .spawn(move || {
                super::run_behind_the_runtime();
                serve(&conn, &asked, &count)
            })
            .map_err(|err| err.to_string())?;
        Ok(Self {
            wake: Some(wake),
            thread: Some(thread),
            commits: 0,
            #[cfg(test)]
            done: _done,
        })
    }

    /// A transaction committed; every so many, a checkpoint is asked for (one already asked for
    /// and not yet started covers it).
    pub fn committed(&mut self) {
        self.commits += 1;
        if self.commits < COMMITS_PER_CHECKPOINT {
            return;
        }
        self.commits = 0;
        if let Some(wake) = &self.wake
            && let Err(TrySendError::Disconnected(())) = wake.try_send(())
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

fn serve(conn: &Connection, asked: &Receiver<()>, done: &watch::Sender<u64>) {
    while asked.recv().is_ok() {
        // Another process checkpointing at the same time makes this one a no-op, not an error.
        let outcome = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            row.get::<_, i64>(0)
        });
        if let Err(err) = outcome {
            tracing::debug!(error = %err, "WAL checkpoint failed");
        }
        done.send_modify(|count| *count += 1);
    }
}
