//! The store's own thread, which owns the connection and runs every operation in the order it
//! was asked for. A database call may wait seconds for another process's lock, so none of it runs
//! on the async runtime.
//!
//! Writes that queue up while a transaction runs share the next one (group commit): under load a
//! burst of turn boundaries from many threads costs one commit instead of one each, and the
//! streaming work on the runtime is interrupted less often. Each write still stands alone: it runs
//! in its own savepoint (a failing write leaves the others in its batch intact), and its caller
//! hears that it is written only after the commit that holds it. Reads run outside write
//! transactions, so they never wait for another process's write lock.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::JoinHandle;

use rusqlite::Connection;

use super::Owner;
use super::checkpoint::{self, Checkpointer};
use super::instance::Instance;

/// Most writes one transaction takes.
const MAX_BATCH: usize = 64;

/// One operation. `run` does the work — or, given no connection, does nothing because it cannot
/// run — and returns what delivers its outcome once the transaction it ran in has ended (`Err`
/// with the reason if that transaction did not commit, or the operation could not run).
pub(super) struct Job {
    pub write: bool,
    pub run: Run,
}

pub(super) type Run = Box<dyn FnOnce(Option<(&Connection, &Owner<'_>)>) -> Completion + Send>;

pub(super) struct Completion {
    /// Whether the operation itself succeeded (a failed one is rolled back to its savepoint).
    pub succeeded: bool,
    pub deliver: Box<dyn FnOnce(Result<(), String>) + Send>,
}

/// Starts the thread; it ends when every sender is gone.
pub(super) fn spawn(
    conn: Connection,
    instance: Arc<Instance>,
    mut checkpointer: Checkpointer,
) -> std::io::Result<(Sender<Job>, JoinHandle<()>)> {
    let (jobs, queue) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("authbridge-store".to_owned())
        .spawn(move || {
            super::run_behind_the_runtime();
            serve(&conn, &instance, &queue, &mut checkpointer);
            // Its connection closes first: the last one to close checkpoints what is left.
            drop(checkpointer);
            drop(conn);
        })?;
    Ok((jobs, thread))
}

fn serve(
    conn: &Connection,
    instance: &Instance,
    queue: &Receiver<Job>,
    checkpointer: &mut Checkpointer,
) {
    let owner = Owner { instance };
    let mut waiting: Option<Job> = None;
    loop {
        let first = match waiting.take() {
            Some(job) => job,
            None if checkpointer.pending() => match queue.recv_timeout(checkpoint::QUIET) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    checkpointer.quiet();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            },
            None => match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        if !first.write {
            (first.run)(Some((conn, &owner))).finish(Ok(()));
            continue;
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) if job.write => batch.push(job),
                Ok(read) => {
                    // It runs after this batch has committed, so it sees the batch's writes.
                    waiting = Some(read);
                    break;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        if write_batch(conn, &owner, batch) {
            checkpointer.committed(conn);
        }
    }
}

impl Completion {
    fn finish(self, transaction: Result<(), String>) {
        (self.deliver)(transaction);
    }
}

/// Runs `batch` in as few transactions as it can: normally one. Whether its last transaction
/// committed.
fn write_batch(conn: &Connection, owner: &Owner<'_>, batch: Vec<Job>) -> bool {
    let mut written: Vec<Completion> = Vec::new();
    let mut open = false;
    for (index, job) in batch.into_iter().enumerate() {
        if index > 0 {
            // Between the writes of a batch, a runnable streaming task on the same core goes
            // first: its next delta does not wait for the whole batch. A lone write never yields.
            std::thread::yield_now();
        }
        if !open {
            if let Err(err) = statement(conn, "BEGIN IMMEDIATE") {
                // A busy or unusable file: nothing runs outside a transaction.
                (job.run)(None).finish(Err(err.to_string()));
                continue;
            }
            open = true;
        }
        if let Err(err) = statement(conn, "SAVEPOINT op") {
            (job.run)(None).finish(Err(err.to_string()));
            continue;
        }
        let completion = (job.run)(Some((conn, owner)));
        if completion.succeeded {
            match statement(conn, "RELEASE op") {
                Ok(()) => written.push(completion),
                Err(err) => completion.finish(Err(err.to_string())),
            }
            continue;
        }
        let rolled_back =
            statement(conn, "ROLLBACK TO op").and_then(|()| statement(conn, "RELEASE op"));
        if rolled_back.is_err() || conn.is_autocommit() {
            // SQLite ended the whole transaction (a full disk can): what ran before it is
            // undone too, and is reported so.
            let reason = "the transaction was rolled back after a failed write".to_owned();
            for done in written.drain(..) {
                done.finish(Err(reason.clone()));
            }
            if !conn.is_autocommit() {
                let _ = statement(conn, "ROLLBACK");
            }
            open = false;
        }
        completion.finish(Ok(()));
    }
    if !open {
        return false;
    }
    let committed = statement(conn, "COMMIT").map_err(|err| err.to_string());
    if committed.is_err() && !conn.is_autocommit() {
        let _ = statement(conn, "ROLLBACK");
    }
    for done in written {
        done.finish(committed.clone());
    }
    committed.is_ok()
}

fn statement(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}
