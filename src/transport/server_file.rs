//! `<home>/server.json`: how local clients find the running WebSocket server and its token
//! (SPEC §2.1), and the rule that one home has at most one WebSocket server.
//!
//! The server holds an exclusive OS lock on `server.json.lock` for its whole life, so a second
//! server on the same home refuses to start (naming the running one) instead of overwriting the
//! file, and a `server.json` left by a crashed process — whose lock the OS released — is simply
//! replaced. The file is written atomically with mode 0600 and removed at shutdown.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic_file;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerFile<'a> {
    pub pid: u32,
    /// Where local clients connect (a loopback address when every interface is bound).
    pub url: &'a str,
    /// What is bound, e.g. `ws://0.0.0.0:4500/`.
    pub listen: &'a str,
    pub auth: &'a str,
    pub token: Option<&'a str>,
    pub console_url: &'a str,
}

/// The running server's claim on its home; `server.json` goes away with it.
pub struct ServerFileOwner {
    path: PathBuf,
    _lock: File,
}

/// Why the claim failed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(
        "another authbridge server is already running on this home (pid {pid}, {url}); stop it or pass another --home"
    )]
    Running { pid: String, url: String },
    #[error("cannot lock {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// Takes the home's server lock, or says which server holds it.
pub fn claim(home: &Path) -> Result<ServerFileOwner, ClaimError> {
    let path = home.join("server.json");
    let lock_path = home.join("server.json.lock");
    let lock = atomic_file::open_lock_file(&lock_path).map_err(|source| ClaimError::Io {
        path: lock_path.clone(),
        source,
    })?;
    match lock.try_lock() {
        Ok(()) => Ok(ServerFileOwner { path, _lock: lock }),
        Err(std::fs::TryLockError::WouldBlock) => {
            #[derive(Deserialize)]
            struct Running {
                pid: u32,
                url: String,
            }
            let running = atomic_file::read_regular(&path)
                .ok()
                .flatten()
                .and_then(|text| serde_json::from_slice::<Running>(&text).ok());
            Err(match running {
                Some(running) => ClaimError::Running {
                    pid: running.pid.to_string(),
                    url: running.url,
                },
                None => ClaimError::Running {
                    pid: "unknown".into(),
                    url: "server.json unreadable".into(),
                },
            })
        }
        Err(std::fs::TryLockError::Error(source)) => Err(ClaimError::Io {
            path: lock_path,
            source,
        }),
    }
}

impl ServerFileOwner {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `server.json` atomically (0600).
    pub fn write(&self, file: &ServerFile<'_>) -> io::Result<()> {
        let mut json = serde_json::to_vec_pretty(file).map_err(io::Error::other)?;
        json.push(b'\n');
        atomic_file::write_private(&self.path, &json)
    }

    /// Removes `server.json` (at shutdown); the lock is released when the owner is dropped.
    pub fn remove(&self) -> io::Result<()> {
        atomic_file::remove(&self.path).map(|_| ())
    }
}
