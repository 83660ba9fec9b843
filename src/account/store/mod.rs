//! `<home>/auth.json`: Codex's credential file, read, cached, rewritten and locked (SPEC §11).
//!
//! The file is re-read only when its size, mtime or inode changed, so every `account/read` and
//! backend call sees another process's login without paying for a parse. Writes are atomic and
//! 0600; a refresh rewrite keeps members newer Codex versions added. `auth.json.lock` serializes
//! logins, logouts and refreshes across processes.

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::account::jwt::{self, Claims};
use crate::atomic_file;

/// How long a writer waits for `auth.json.lock` before failing (SPEC §11.3).
pub const LOCK_WAIT: Duration = Duration::from_secs(30);

/// Credentials found in auth.json.
#[derive(Clone, Debug)]
pub enum StoredAuth {
    ApiKey(ApiKey),
    Managed(Arc<ManagedTokens>),
}

/// An API key (redacted in `Debug`).
#[derive(Clone)]
pub struct ApiKey(pub SecretString);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([REDACTED])")
    }
}

/// Managed ChatGPT tokens and what authbridge knows about them.
#[derive(Clone)]
pub struct ManagedTokens {
    pub id_token: SecretString,
    pub claims: Claims,
    pub access_token: SecretString,
    pub refresh_token: SecretString,
    pub account_id: Option<String>,
    pub last_refresh: Option<OffsetDateTime>,
    /// An API key obtained with the login (`OPENAI_API_KEY`), if any.
    pub api_key: Option<SecretString>,
    /// Members this version does not know, kept on rewrite (top level and inside `tokens`).
    extra: Map<String, Value>,
    extra_tokens: Map<String, Value>,
}

impl fmt::Debug for ManagedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedTokens")
            .field("email", &self.claims.email)
            .field("plan", &self.claims.plan)
            .field("account_id", &self.workspace())
            .field("last_refresh", &self.last_refresh)
            .finish_non_exhaustive()
    }
}

impl ManagedTokens {
    /// Tokens from a fresh login.
    pub fn new(
        id_token: SecretString,
        access_token: SecretString,
        refresh_token: SecretString,
        api_key: Option<SecretString>,
    ) -> Result<Self, jwt::JwtError> {
        let claims = jwt::parse(id_token.expose_secret())?;
        Ok(Self {
            account_id: claims.account_id.clone(),
            claims,
            id_token,
            access_token,
            refresh_token,
            last_refresh: Some(OffsetDateTime::now_utc()),
            api_key,
            extra: Map::new(),
            extra_tokens: Map::new(),
        })
    }

    /// The workspace: `tokens.account_id`, else the id token's claim.
    pub fn workspace(&self) -> Option<&str> {
        self.account_id
            .as_deref()
            .or(self.claims.account_id.as_deref())
    }

    /// Applies a refresh grant's response: present tokens replace stored ones.
    pub fn refreshed(
        &self,
        id_token: Option<SecretString>,
        access_token: Option<SecretString>,
        refresh_token: Option<SecretString>,
    ) -> Result<Self, jwt::JwtError> {
        let mut next = self.clone();
        if let Some(id_token) = id_token {
            next.claims = jwt::parse(id_token.expose_secret())?;
            next.id_token = id_token;
        }
        if let Some(access_token) = access_token {
            next.access_token = access_token;
        }
        if let Some(refresh_token) = refresh_token {
            next.refresh_token = refresh_token;
        }
        next.last_refresh = Some(OffsetDateTime::now_utc());
        Ok(next)
    }

    fn to_json(&self) -> Value {
        let mut tokens = self.extra_tokens.clone();
        tokens.insert("id_token".into(), json!(self.id_token.expose_secret()));
        tokens.insert(
            "access_token".into(),
            json!(self.access_token.expose_secret()),
        );
        tokens.insert(
            "refresh_token".into(),
            json!(self.refresh_token.expose_secret()),
        );
        tokens.insert("account_id".into(), json!(self.workspace()));
        let mut root = self.extra.clone();
        root.insert("auth_mode".into(), json!("chatgpt"));
        root.insert(
            "OPENAI_API_KEY".into(),
            json!(self.api_key.as_ref().map(|key| key.expose_secret())),
        );
        root.insert("tokens".into(), Value::Object(tokens));
        if let Some(at) = self.last_refresh {
            root.insert("last_refresh".into(), json!(format_time(at)));
        }
        Value::Object(root)
    }
}

fn format_time(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// What the file holds right now.
#[derive(Clone, Debug)]
pub enum Loaded {
    /// No file, or a file with no credentials.
    Empty,
    Credentials(Arc<StoredAuth>),
    /// A file that cannot be used (corrupt, unknown mode, symlink): treated as logged out.
    Unusable,
}

impl Loaded {
    pub fn credentials(&self) -> Option<&StoredAuth> {
        match self {
            Self::Credentials(auth) => Some(auth),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

struct Cache {
    stamp: Option<Stamp>,
    loaded: Loaded,
    /// Bumped every time the loaded content is replaced.
    version: u64,
}

/// Failure to persist or lock.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("timed out after {}s waiting for {}", LOCK_WAIT.as_secs(), .0.display())]
    LockTimeout(PathBuf),
}

pub struct AuthStore {
    path: PathBuf,
    lock_path: PathBuf,
    cache: Mutex<Cache>,
}

/// An exclusive hold on `auth.json.lock`; released on drop.
pub struct FileLock {
    _file: File,
}

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking file task panicked")
}

impl AuthStore {
    pub fn new(home: &Path) -> Self {
        Self {
            path: home.join("auth.json"),
            lock_path: home.join("auth.json.lock"),
            cache: Mutex::new(Cache {
                stamp: None,
                loaded: Loaded::Empty,
                version: 0,
            }),
        }
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current content, re-read if the file changed. Returns the content and its version.
    ///
    /// The change check is one `lstat` (it never opens the file, so it cannot block on a FIFO);
    /// the read itself runs off the async workers.
    pub async fn current(&self) -> (Loaded, u64) {
        let stamp = stamp_of(&self.path);
        {
            let cache = self.cache.lock().expect("auth cache lock");
            if cache.version != 0 && cache.stamp == stamp {
                return (cache.loaded.clone(), cache.version);
            }
        }
        self.reload().await
    }

    /// Re-reads the file unconditionally (under the lock, another process may have just written).
    pub async fn reload(&self) -> (Loaded, u64) {
        let path = self.path.clone();
        let (stamp, loaded) = blocking(move || (stamp_of(&path), read_file(&path))).await;
        let mut cache = self.cache.lock().expect("auth cache lock");
        cache.stamp = stamp;
        cache.loaded = loaded;
        cache.version += 1;
        (cache.loaded.clone(), cache.version)
    }

    /// Writes `{"auth_mode":"apikey","OPENAI_API_KEY":…}`.
    pub async fn write_api_key(&self, key: &SecretString) -> io::Result<()> {
        let doc = json!({"auth_mode": "apikey", "OPENAI_API_KEY": key.expose_secret()});
        self.write(doc).await
    }

    /// Writes managed tokens (a login's fresh file, or a refresh's rewrite).
    pub async fn write_managed(&self, tokens: &ManagedTokens) -> io::Result<()> {
        self.write(tokens.to_json()).await
    }

    /// Deletes auth.json and any temp file a killed writer left (logout; call under the lock).
    pub async fn delete(&self) -> io::Result<()> {
        let path = self.path.clone();
        blocking(move || {
            atomic_file::remove(&path)?;
            remove_stale_temp_files(&path)
        })
        .await?;
        self.reload().await;
        Ok(())
    }

    /// Removes temp files a killed writer left (at start; call under the lock).
    pub async fn remove_stale_temp_files(&self) -> io::Result<()> {
        let path = self.path.clone();
        blocking(move || remove_stale_temp_files(&path)).await
    }

    async fn write(&self, doc: Value) -> io::Result<()> {
        let path = self.path.clone();
        blocking(move || {
            let mut text = serde_json::to_vec_pretty(&doc).map_err(io::Error::other)?;
            text.push(b'\n');
            atomic_file::write_private(&path, &text)
        })
        .await?;
        self.reload().await;
        Ok(())
    }

    /// Takes `auth.json.lock`, waiting at most [`LOCK_WAIT`].
    pub async fn lock(&self) -> Result<FileLock, StoreError> {
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        let lock_path = self.lock_path.clone();
        let file = blocking(move || atomic_file::open_lock_file(&lock_path)).await?;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(FileLock { _file: file }),
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(err)) => return Err(err.into()),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::LockTimeout(self.lock_path.clone()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn remove_stale_temp_files(path: &Path) -> io::Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Ok(());
    };
    let removed = atomic_file::remove_stale_temp_files(dir, name)?;
    if removed > 0 {
        tracing::info!(
            removed,
            "removed temp files an interrupted auth.json write left behind"
        );
    }
    Ok(())
}

fn read_file(path: &Path) -> Loaded {
    match read_auth_file(path) {
        Ok(Some(auth)) => Loaded::Credentials(Arc::new(auth)),
        Ok(None) => Loaded::Empty,
        Err(reason) => {
            tracing::warn!(
                path = %path.display(),
                reason,
                "ignoring unusable auth.json (treated as logged out; it is left untouched until the next login or logout)"
            );
            Loaded::Unusable
        }
    }
}

fn stamp_of(path: &Path) -> Option<Stamp> {
    let meta = fs::symlink_metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode,
    })
}

#[derive(Deserialize)]
struct RawAuthFile {
    #[serde(default)]
    auth_mode: Option<String>,
    #[serde(rename = "OPENAI_API_KEY", default)]
    openai_api_key: Option<SecretString>,
    #[serde(default)]
    tokens: Option<RawTokens>,
    #[serde(default)]
    last_refresh: Option<String>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
struct RawTokens {
    id_token: SecretString,
    access_token: SecretString,
    #[serde(default)]
    refresh_token: Option<SecretString>,
    #[serde(default)]
    account_id: Option<String>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// Reads and classifies auth.json (SPEC §11.4): `Ok(None)` when absent or empty of credentials.
/// `Err` carries a reason for the warning log; a symlink, FIFO or device is never read.
pub fn read_auth_file(path: &Path) -> Result<Option<StoredAuth>, String> {
    match atomic_file::read_regular(path) {
        Ok(Some(text)) => parse_auth_file(&text),
        Ok(None) => Ok(None),
        Err(err) => Err(format!("cannot read: {err}")),
    }
}

/// Parses auth.json's bytes.
pub fn parse_auth_file(text: &[u8]) -> Result<Option<StoredAuth>, String> {
    let raw: RawAuthFile = serde_json::from_slice(text).map_err(|err| {
        format!(
            "invalid JSON ({:?} error at line {})",
            err.classify(),
            err.line()
        )
    })?;
    let api_key = raw
        .openai_api_key
        .filter(|key| !key.expose_secret().is_empty());
    match (raw.auth_mode.as_deref(), raw.tokens) {
        (Some("apikey"), _) => api_key
            .map(|key| Some(StoredAuth::ApiKey(ApiKey(key))))
            .ok_or_else(|| "auth_mode is apikey but OPENAI_API_KEY is empty".to_owned()),
        (Some("chatgpt") | None, Some(tokens)) => {
            let claims = jwt::parse(tokens.id_token.expose_secret())
                .map_err(|err| format!("unparseable id_token: {err}"))?;
            let last_refresh = raw
                .last_refresh
                .as_deref()
                .and_then(|at| OffsetDateTime::parse(at, &Rfc3339).ok());
            Ok(Some(StoredAuth::Managed(Arc::new(ManagedTokens {
                id_token: tokens.id_token,
                claims,
                access_token: tokens.access_token,
                refresh_token: tokens.refresh_token.unwrap_or_default(),
                account_id: tokens.account_id,
                last_refresh,
                api_key,
                extra: raw.extra,
                extra_tokens: tokens.extra,
            }))))
        }
        (Some("chatgpt"), None) => Err("auth_mode is chatgpt but tokens are missing".into()),
        (None, None) => Ok(api_key.map(|key| StoredAuth::ApiKey(ApiKey(key)))),
        (Some(other), _) => Err(format!("unknown auth_mode `{other}`")),
    }
}

#[cfg(test)]
mod tests;
