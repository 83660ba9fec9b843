//! `<home>/server.json`: how local clients find a running server and its token (SPEC §2.1).
//!
//! Written atomically with mode 0600 after binding, and removed at shutdown only if it still names
//! this process (a newer server on the same home may have replaced it).

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::atomic_file;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerFile<'a> {
    pub pid: u32,
    pub url: &'a str,
    pub auth: &'a str,
    pub token: Option<&'a str>,
    pub console_url: &'a str,
}

/// Writes `server.json` atomically (0600).
pub fn write(path: &Path, file: &ServerFile<'_>) -> io::Result<()> {
    let mut json = serde_json::to_vec_pretty(file).map_err(io::Error::other)?;
    json.push(b'\n');
    atomic_file::write_private(path, &json)
}

/// Removes `server.json` if its `pid` is `pid`.
pub fn remove_if_ours(path: &Path, pid: u32) -> io::Result<()> {
    #[derive(Deserialize)]
    struct Pid {
        pid: u32,
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    match serde_json::from_str::<Pid>(&text) {
        Ok(found) if found.pid == pid => atomic_file::remove(path).map(|_| ()),
        _ => Ok(()),
    }
}
