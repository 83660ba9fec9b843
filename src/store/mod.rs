//! The thread store (TURNS §25): `<home>/threads.sqlite`, an embedded SQLite database (rusqlite,
//! bundled) shared safely by every authbridge process on the home and by outside readers.
//!
//! WAL, `synchronous=NORMAL`, a 5 s busy timeout, versioned migrations at open. Each write is
//! atomic and happens at a turn boundary (thread created, turn started, item completed, turn
//! ended), so a crash loses at most the part of a turn not yet committed. Work runs on the
//! store's own thread (`writer`), where writes that queue up share a commit: a write waiting on
//! another process's lock never stalls the runtime; WAL checkpoints run on a second thread
//! (`checkpoint`), so no write waits for one (unless the log outgrows its limit). Both are batch
//! threads: on a busy core a commit waits for the delta being relayed rather than preempting it.
//! The file is never deleted, truncated, replaced or downgraded; if it cannot be used,
//! [`Store::open`] says why and the caller serves everything else without it.

mod checkpoint;
mod instance;
mod leases;
mod list;
mod ops;
mod records;
mod schema;
#[cfg(test)]
mod tests;
mod writer;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use leases::LeaseError;
pub use list::ListQuery;
pub use ops::TurnStart;
pub use records::{StoredThread, ThreadHeader, ThreadSettings, TurnRecord};

use instance::Instance;

/// The database file's name under the home.
pub const FILE_NAME: &str = "threads.sqlite";
/// How long a write waits for another process's transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Run first thing on the store's threads: they become batch threads (`SCHED_BATCH`), which
/// keep their full share of the CPU but never preempt a running thread when they wake. On one busy
/// core, a commit then waits for the runtime to finish relaying the delta in hand instead of
/// cutting in, and still gets its fair share, so turn starts waiting on commits are not starved
/// either. Linux (glibc) only.
fn run_behind_the_runtime() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `param` outlives the call; pid 0 is the calling thread.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
    }
}

/// Why the store could not do something. `Display` is TURNS §25.4's text.
#[derive(Clone, Debug, thiserror::Error)]
#[error("thread store unavailable: {path}: {detail}")]
pub struct StoreError {
    path: String,
    detail: String,
}

impl StoreError {
    fn new(path: &Path, detail: impl std::fmt::Display) -> Self {
        Self {
            path: path.display().to_string(),
            detail: detail.to_string(),
        }
    }

    /// The cause alone (a turn that cannot be written fails with `failed to persist turn: …`).
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

/// An open store (cheap to clone).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: Sender<writer::Job>,
    thread: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
    instance: Arc<Instance>,
    /// How many WAL checkpoints have finished.
    #[cfg(test)]
    checkpoints: tokio::sync::watch::Receiver<u64>,
}

impl Drop for Inner {
    /// The last handle is gone: the thread finishes what was asked and closes the connection,
    /// and only then does this process's instance lock go.
    fn drop(&mut self) {
        drop(std::mem::replace(
            &mut self.jobs,
            std::sync::mpsc::channel().0,
        ));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What an operation sees besides the connection: who this process is.
pub(crate) struct Owner<'a> {
    instance: &'a Instance,
}

impl Store {
    /// Opens (creating if needed) and migrates `<home>/threads.sqlite`, claims this process's
    /// instance, and marks in-progress turns of processes that are gone interrupted.
    pub fn open(home: &Path) -> Result<Self, StoreError> {
        let path = home.join(FILE_NAME);
        let fail = |detail: &dyn std::fmt::Display| StoreError::new(&path, detail);
        create_private(&path).map_err(|err| fail(&err))?;
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|err| fail(&err))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|err| fail(&err))?;
        // Nothing is written to a file this binary does not understand.
        schema::check_not_newer(&conn).map_err(|err| fail(&err))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(|err| fail(&err))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(fail(&format!("cannot use WAL (journal mode {mode})")));
        }
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(|err| fail(&err))?;
        // Checkpoints run on their own thread (`checkpoint`), not after a write, unless the log
        // has grown past its limit.
        checkpoint::watch_log(&conn);
        schema::migrate(&mut conn).map_err(|err| fail(&err))?;
        let checkpointer = checkpoint::Checkpointer::start(&path).map_err(|err| fail(&err))?;
        #[cfg(test)]
        let checkpoints = checkpointer.finished();
        let instance = Instance::claim(home).map_err(|err| fail(&err))?;
        let recovered = leases::recover(
            &mut conn,
            &Owner {
                instance: &instance,
            },
        )
        .map_err(|err| fail(&err))?;
        if recovered > 0 {
            tracing::info!(
                turns = recovered,
                "marked turns of stopped processes interrupted"
            );
        }
        let instance = Arc::new(instance);
        let (jobs, thread) =
            writer::spawn(conn, instance.clone(), checkpointer).map_err(|err| fail(&err))?;
        Ok(Self {
            inner: Arc::new(Inner {
                jobs,
                thread: Some(thread),
                path,
                instance,
                #[cfg(test)]
                checkpoints,
            }),
        })
    }

    /// Runs the write `op` on the store's thread, in a transaction it may share with other
    /// writes; resolves once that transaction has committed.
    async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Owner<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        self.submit(true, op).await
    }

    /// Runs the read `op` on the store's thread, after the writes asked for before it.
    async fn read<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Owner<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        self.submit(false, op).await
    }

    async fn submit<T, F>(&self, write: bool, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Owner<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let job = writer::Job {
            write,
            run: Box::new(move |database| {
                let result = database.map(|(conn, owner)| op(conn, owner));
                writer::Completion {
                    succeeded: matches!(result, Some(Ok(_))),
                    deliver: Box::new(move |transaction| {
                        let outcome = match (result, transaction) {
                            (Some(Ok(value)), Ok(())) => Ok(value),
                            (Some(Err(err)), _) => Err(err.to_string()),
                            (_, Err(reason)) => Err(reason),
                            (None, Ok(())) => Err("the operation did not run".to_owned()),
                        };
                        let _ = reply.send(outcome);
                    }),
                }
            }),
        };
        let stopped = || StoreError::new(&self.inner.path, "the store thread stopped");
        self.inner.jobs.send(job).map_err(|_| stopped())?;
        match outcome.await {
            Ok(result) => result.map_err(|detail| StoreError::new(&self.inner.path, detail)),
            Err(_) => Err(stopped()),
        }
    }

    /// Waits until `n` WAL checkpoints have finished.
    #[cfg(test)]
    pub async fn wait_for_checkpoints(&self, n: u64) {
        let mut finished = self.inner.checkpoints.clone();
        let _ = finished.wait_for(|count| *count >= n).await;
    }

    /// Makes every later write that grows the file fail as on a full disk.
    #[cfg(test)]
    pub fn fill_up_for_tests(&self) {
        let fill = self.read(|conn, _| {
            let pages: i64 = conn.query_row("PRAGMA page_count", [], |row| row.get(0))?;
            let _: i64 =
                conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |row| {
                    row.get(0)
                })?;
            Ok(())
        });
        // The store's own thread does the work, so blocking here cannot deadlock it.
        futures::executor::block_on(fill).expect("the store fills up");
    }

    /// Gives back the page cache's memory (nothing is loaded: what it holds is not needed soon,
    /// and SQLite reads it again from the file when it is).
    pub async fn release_memory(&self) -> Result<(), StoreError> {
        self.read(|conn, _| conn.release_memory()).await
    }

    /// At exit: this process's leases go, and its instance file.
    pub async fn close(&self) {
        if let Err(err) = self.release_all_leases().await {
            tracing::warn!(error = %err, "cannot release thread leases");
        }
        self.inner.instance.remove_file();
    }
}

/// Creates the file with mode 0600 if it does not exist (SQLite gives its `-wal` and `-shm`
/// files the same mode). A symbolic link is refused.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
        options.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(())
}
