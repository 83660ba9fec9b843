//! Which authbridge processes are alive (TURNS §25.3). Each process holds an exclusive OS lock on
//! `<home>/instances/<id>.lock` for its whole life; the lock is what leases and in-progress turns
//! in the database name. A process that exits or is killed releases its lock with its file
//! descriptors, so whatever it held lapses without anyone cleaning up after it.

use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::atomic_file;

/// This process's instance: its id and the lock that proves it is alive.
pub struct Instance {
    id: String,
    dir: PathBuf,
    _lock: File,
}

impl Instance {
    /// Takes a fresh instance id under `<home>/instances/`.
    pub fn claim(home: &Path) -> io::Result<Self> {
        let dir = home.join("instances");
        atomic_file::ensure_private_dir(&dir)?;
        let id = Uuid::now_v7().to_string();
        let lock = atomic_file::open_lock_file(&lock_path(&dir, &id))?;
        lock.try_lock().map_err(|err| match err {
            TryLockError::Error(err) => err,
            TryLockError::WouldBlock => io::Error::other("a fresh instance lock is already held"),
        })?;
        Ok(Self {
            id,
            dir,
            _lock: lock,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the process that claimed `id` still runs (always true for this one).
    pub fn is_alive(&self, id: &str) -> bool {
        if id == self.id {
            return true;
        }
        if !is_instance_id(id) {
            return false;
        }
        let path = lock_path(&self.dir, id);
        let Ok(Some(file)) = open_existing(&path) else {
            return false;
        };
        match file.try_lock() {
            Ok(()) => {
                // Nobody holds it: its process is gone. Tidy the file away.
                let _ = fs::remove_file(&path);
                false
            }
            Err(TryLockError::WouldBlock) => true,
            Err(TryLockError::Error(err)) => {
                tracing::warn!(instance = id, error = %err, "cannot check an instance lock");
                true
            }
        }
    }

    /// Removes this process's lock file (at shutdown; the lock itself goes with the process).
    pub fn remove_file(&self) {
        let _ = fs::remove_file(lock_path(&self.dir, &self.id));
    }
}

fn lock_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.lock"))
}

/// Instance ids are UUIDs; anything else in the database is not a file name to open.
fn is_instance_id(id: &str) -> bool {
    Uuid::parse_str(id).is_ok()
}

fn open_existing(path: &Path) -> io::Result<Option<File>> {
    match fs::OpenOptions::new().write(true).open(path) {
        Ok(file) => Ok(Some(file)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_instance_is_seen_alive_and_a_released_one_lapses() {
        let home = tempfile::tempdir().unwrap();
        let me = Instance::claim(home.path()).unwrap();
        let other = Instance::claim(home.path()).unwrap();
        assert!(me.is_alive(other.id()));
        assert!(me.is_alive(me.id()));
        let gone = other.id().to_owned();
        drop(other);
        assert!(!me.is_alive(&gone));
        assert!(
            !home
                .path()
                .join("instances")
                .join(format!("{gone}.lock"))
                .exists()
        );
        assert!(!me.is_alive("../../etc/passwd"));
        assert!(!me.is_alive(&Uuid::now_v7().to_string()));
    }
}
