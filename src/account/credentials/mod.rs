//! The process's credentials and how each mode renews them (SPEC §7, §8, §9.2–9.3, §10.4).
//!
//! External tokens live here in memory with their owner connection; managed tokens and API keys live
//! in auth.json (through [`AuthStore`]). Every change bumps one generation number, which is what the
//! 401 layer's single flight is keyed on. This type is the layer's [`CredentialProvider`]:
//! - external mode asks the owner connection (`account/chatgptAuthTokens/refresh`);
//! - managed mode takes the file lock, re-reads auth.json, adopts tokens another process already
//!   rotated, else runs the refresh grant — and latches permanent failures.

mod external;

use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderValue, USER_AGENT};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::account::store::{AuthStore, Loaded, ManagedTokens, StoredAuth};
use crate::account::tokens::ExternalTokens;
use crate::backend::{AuthFailure, Credential, CredentialKind, CredentialProvider, Refreshed};
use crate::config::Config;
use crate::identity::Identity;
use crate::login::oauth::{GrantError, OAuthClient};
use crate::peer::{Peer, WeakPeer};

/// Refresh a managed access token this long before its `exp`.
const EXPIRY_MARGIN_SECS: i64 = 5 * 60;
/// Without a readable `exp`, refresh tokens older than this (Codex 0.94.0's rule).
const MAX_TOKEN_AGE: time::Duration = time::Duration::days(8);

/// What the account is, right now.
#[derive(Clone, Debug)]
pub enum Snapshot {
    None,
    ApiKey(SecretString),
    Managed {
        tokens: Arc<ManagedTokens>,
        latched: bool,
    },
    External {
        tokens: Arc<ExternalTokens>,
    },
}

struct External {
    tokens: Arc<ExternalTokens>,
    owner: WeakPeer,
}

/// A permanent refresh failure, remembered for the refresh token that caused it (SPEC §8.3).
struct Latch {
    refresh_token: [u8; 32],
    message: String,
}

struct State {
    external: Option<External>,
    generation: u64,
    /// The auth.json version the generation last accounted for.
    file_version: u64,
    latch: Option<Latch>,
}

pub struct Credentials {
    config: Arc<Config>,
    identity: Arc<Identity>,
    store: AuthStore,
    oauth: OAuthClient,
    state: Mutex<State>,
    /// One managed refresh at a time in this process (the file lock covers other processes).
    managed_refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("external", &self.external_active())
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

fn digest(secret: &SecretString) -> [u8; 32] {
    Sha256::digest(secret.expose_secret().as_bytes()).into()
}

fn same_secret(a: &SecretString, b: &SecretString) -> bool {
    digest(a) == digest(b)
}

impl Credentials {
    pub fn new(config: Arc<Config>, identity: Arc<Identity>, http: reqwest::Client) -> Self {
        let oauth = OAuthClient::new(
            http,
            &config.auth.issuer,
            &config.auth.client_id,
            &config.auth.refresh_token_url,
        );
        Self {
            store: AuthStore::new(&config.home),
            config,
            identity,
            oauth,
            state: Mutex::new(State {
                external: None,
                generation: 0,
                file_version: 0,
                latch: None,
            }),
            managed_refresh: tokio::sync::Mutex::new(()),
        }
    }

    pub fn store(&self) -> &AuthStore {
        &self.store
    }

    pub fn oauth(&self) -> &OAuthClient {
        &self.oauth
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("credentials lock")
    }

    /// Brings the state in line with auth.json (re-read only if it changed).
    async fn sync_file(&self) -> (Loaded, std::sync::MutexGuard<'_, State>) {
        let (loaded, version) = self.store.current().await;
        let mut state = self.state();
        absorb(&mut state, &loaded, version);
        (loaded, state)
    }

    /// Re-reads auth.json now (after this process wrote it, or under the lock).
    async fn reload(&self) -> Loaded {
        let (loaded, version) = self.store.reload().await;
        absorb(&mut self.state(), &loaded, version);
        loaded
    }

    /// The current account (external shadows auth.json).
    pub async fn snapshot(&self) -> Snapshot {
        let (loaded, state) = self.sync_file().await;
        if let Some(external) = &state.external {
            return Snapshot::External {
                tokens: external.tokens.clone(),
            };
        }
        match loaded.credentials() {
            None => Snapshot::None,
            Some(StoredAuth::ApiKey(key)) => Snapshot::ApiKey(key.0.clone()),
            Some(StoredAuth::Managed(tokens)) => Snapshot::Managed {
                latched: latch_for(&state, tokens).is_some(),
                tokens: tokens.clone(),
            },
        }
    }

    pub fn generation(&self) -> u64 {
        self.state().generation
    }

    pub fn external_active(&self) -> bool {
        self.state().external.is_some()
    }

    /// Installs host-owned tokens; `owner` answers future refresh requests.
    pub fn set_external(&self, tokens: ExternalTokens, owner: &Peer) {
        let mut state = self.state();
        state.external = Some(External {
            tokens: Arc::new(tokens),
            owner: owner.downgrade(),
        });
        state.generation += 1;
    }

    /// Forgets host-owned tokens and any latch (logout).
    pub fn clear(&self) {
        let mut state = self.state();
        state.external = None;
        state.latch = None;
        state.generation += 1;
    }

    /// After this process wrote or deleted auth.json: re-read it and forget any latch.
    pub async fn file_written(&self) {
        self.reload().await;
        let mut state = self.state();
        state.latch = None;
        state.generation += 1;
    }

    /// `account/read {refreshToken:true}` in managed mode: run the grant now (single flight).
    pub async fn force_managed_refresh(&self) -> Result<(), AuthFailure> {
        let Snapshot::Managed { tokens, .. } = self.snapshot().await else {
            return Ok(());
        };
        self.refresh_managed(&tokens.access_token, tokens.workspace())
            .await
            .map(|_| ())
            .map_err(|err| AuthFailure::Grant(err.message().to_owned()))
    }

    /// Renews managed tokens that replaced `stale` (SPEC §9.3, §10.4): under the file lock, adopt
    /// what another process wrote, else spend the refresh token once.
    async fn refresh_managed(
        &self,
        stale_access: &SecretString,
        stale_workspace: Option<&str>,
    ) -> Result<Refreshed, GrantError> {
        let _in_process = self.managed_refresh.lock().await;
        let _file_lock = self
            .store
            .lock()
            .await
            .map_err(|err| GrantError::Transient(format!("Failed to refresh token: {err}")))?;
        let loaded = self.reload().await;
        let tokens = match loaded.credentials() {
            Some(StoredAuth::Managed(tokens)) if tokens.workspace() == stale_workspace => {
                tokens.clone()
            }
            _ => {
                return Err(GrantError::Permanent {
                    message: AuthFailure::AccountChanged.to_string(),
                    reused: false,
                });
            }
        };
        if !same_secret(&tokens.access_token, stale_access) {
            tracing::info!("adopting managed tokens another process already refreshed");
            return Ok(Refreshed::Renewed);
        }
        if let Some(message) = self.latched_message(&tokens) {
            return Err(GrantError::Permanent {
                message,
                reused: false,
            });
        }
        self.spend_refresh_token(&tokens).await
    }

    /// Runs the refresh grant with the file lock held; saves the result or latches a permanent
    /// failure (after checking whether a process that does not lock rotated the token already).
    async fn spend_refresh_token(&self, tokens: &ManagedTokens) -> Result<Refreshed, GrantError> {
        tracing::info!("refreshing managed ChatGPT tokens");
        let transient =
            |detail: String| GrantError::Transient(format!("Failed to refresh token: {detail}"));
        match self
            .oauth
            .refresh(&tokens.refresh_token, self.grant_headers())
            .await
        {
            Ok(fresh) => {
                let renewed = tokens
                    .refreshed(fresh.id_token, fresh.access_token, fresh.refresh_token)
                    .map_err(|err| transient(err.to_string()))?;
                self.store
                    .write_managed(&renewed)
                    .await
                    .map_err(|err| transient(format!("cannot save auth.json: {err}")))?;
                self.reload().await;
                Ok(Refreshed::Renewed)
            }
            Err(GrantError::Permanent { message, reused }) => {
                if reused && self.rotated_elsewhere(tokens).await {
                    tracing::info!("refresh token was reused elsewhere; adopting the newer tokens");
                    return Ok(Refreshed::Renewed);
                }
                tracing::warn!(message, "managed token refresh failed permanently");
                self.state().latch = Some(Latch {
                    refresh_token: digest(&tokens.refresh_token),
                    message: message.clone(),
                });
                Err(GrantError::Permanent { message, reused })
            }
            Err(transient) => {
                tracing::warn!(error = transient.message(), "managed token refresh failed");
                Err(transient)
            }
        }
    }

    /// A process that does not take the lock (Codex) may have rotated the refresh token already.
    async fn rotated_elsewhere(&self, spent: &ManagedTokens) -> bool {
        matches!(
            self.reload().await.credentials(),
            Some(StoredAuth::Managed(now)) if !same_secret(&now.refresh_token, &spent.refresh_token)
        )
    }

    fn grant_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&self.identity.background_user_agent()) {
            headers.insert(USER_AGENT, value);
        }
        if let Ok(value) = HeaderValue::from_str(self.identity.originator()) {
            headers.insert("originator", value);
        }
        headers
    }

    fn latched_message(&self, tokens: &ManagedTokens) -> Option<String> {
        latch_for(&self.state(), tokens).map(|latch| latch.message.clone())
    }

    /// Asks the owner connection for new external tokens (SPEC §7).
    async fn refresh_external(&self, stale: &Credential) -> Result<Refreshed, AuthFailure> {
        let (owner, previous_account_id) = {
            let state = self.state();
            let Some(external) = &state.external else {
                return Ok(Refreshed::Superseded);
            };
            if state.generation != stale.generation {
                return Ok(Refreshed::Renewed);
            }
            (external.owner.upgrade(), external.tokens.workspace.clone())
        };
        let owner = owner.ok_or(AuthFailure::NoOwner)?;
        let timeout = self.config.auth.external_refresh_timeout;
        let reply = external::ask_owner(&owner, previous_account_id, timeout).await?;
        let tokens = external::read_reply(reply, self.config.forced_chatgpt_workspace_id.as_ref())?;
        let mut state = self.state();
        if state.generation != stale.generation || state.external.is_none() {
            tracing::info!("discarding a refresh reply: the account changed meanwhile");
            return Ok(Refreshed::Superseded);
        }
        if let Some(external) = state.external.as_mut() {
            external.tokens = Arc::new(tokens);
        }
        state.generation += 1;
        Ok(Refreshed::Renewed)
    }

    async fn current_credential(&self) -> Result<Credential, AuthFailure> {
        let snapshot = self.snapshot().await;
        let generation = self.generation();
        match snapshot {
            Snapshot::External { tokens } => Ok(Credential {
                bearer: tokens.access_token.clone(),
                account_id: tokens.workspace.clone(),
                generation,
                kind: CredentialKind::HostOwned,
            }),
            Snapshot::Managed { tokens, latched } => {
                if latched && let Some(message) = self.latched_message(&tokens) {
                    return Err(AuthFailure::Grant(message));
                }
                self.managed_credential(tokens, generation).await
            }
            Snapshot::ApiKey(key) => Ok(Credential {
                bearer: key,
                account_id: None,
                generation,
                kind: CredentialKind::ApiKey,
            }),
            Snapshot::None => Err(AuthFailure::NoAccount),
        }
    }

    /// Managed tokens to sign with, refreshed first when due (SPEC §9.2).
    async fn managed_credential(
        &self,
        tokens: Arc<ManagedTokens>,
        generation: u64,
    ) -> Result<Credential, AuthFailure> {
        if !due_for_refresh(&tokens) {
            return Ok(managed_credential(&tokens, generation));
        }
        match self
            .refresh_managed(&tokens.access_token, tokens.workspace())
            .await
        {
            Ok(_) => match self.snapshot().await {
                Snapshot::Managed { tokens, .. } => {
                    Ok(managed_credential(&tokens, self.generation()))
                }
                _ => Err(AuthFailure::AccountChanged),
            },
            Err(GrantError::Permanent { message, .. }) => Err(AuthFailure::Grant(message)),
            Err(GrantError::Transient(message)) => {
                tracing::warn!(
                    error = message,
                    "proactive refresh failed; using the current token"
                );
                Ok(managed_credential(&tokens, generation))
            }
        }
    }

    async fn recover(&self, stale: Credential) -> Result<Refreshed, AuthFailure> {
        match stale.kind {
            CredentialKind::HostOwned => self.refresh_external(&stale).await,
            CredentialKind::Managed => self
                .refresh_managed(&stale.bearer, stale.account_id.as_deref())
                .await
                .map_err(|err| AuthFailure::Grant(err.message().to_owned())),
            CredentialKind::ApiKey => Ok(Refreshed::Superseded),
        }
    }
}

/// Accounts for an auth.json version: a new version (outside external mode) is a new generation,
/// and a different refresh token in the file clears the latch.
fn absorb(state: &mut State, loaded: &Loaded, version: u64) {
    if version == state.file_version {
        return;
    }
    state.file_version = version;
    if state.external.is_none() {
        state.generation += 1;
    }
    let current = match loaded.credentials() {
        Some(StoredAuth::Managed(tokens)) => Some(digest(&tokens.refresh_token)),
        _ => None,
    };
    if state
        .latch
        .as_ref()
        .is_some_and(|latch| Some(latch.refresh_token) != current)
    {
        state.latch = None;
    }
}

fn latch_for<'a>(state: &'a State, tokens: &ManagedTokens) -> Option<&'a Latch> {
    state
        .latch
        .as_ref()
        .filter(|latch| latch.refresh_token == digest(&tokens.refresh_token))
}

/// Managed tokens due for a proactive refresh (SPEC §9.2)?
fn due_for_refresh(tokens: &ManagedTokens) -> bool {
    let now = OffsetDateTime::now_utc();
    match crate::account::jwt::parse(tokens.access_token.expose_secret())
        .ok()
        .and_then(|claims| claims.expires_at)
    {
        Some(exp) => exp - now.unix_timestamp() <= EXPIRY_MARGIN_SECS,
        None => tokens
            .last_refresh
            .is_none_or(|at| now - at > MAX_TOKEN_AGE),
    }
}

fn managed_credential(tokens: &ManagedTokens, generation: u64) -> Credential {
    Credential {
        bearer: tokens.access_token.clone(),
        account_id: tokens.workspace().map(str::to_owned),
        generation,
        kind: CredentialKind::Managed,
    }
}

impl CredentialProvider for Credentials {
    fn current(&self) -> BoxFuture<'_, Result<Credential, AuthFailure>> {
        self.current_credential().boxed()
    }

    fn generation(&self) -> u64 {
        Credentials::generation(self)
    }

    fn refresh(
        self: Arc<Self>,
        stale: Credential,
    ) -> BoxFuture<'static, Result<Refreshed, AuthFailure>> {
        async move { self.recover(stale).await }.boxed()
    }
}

#[cfg(test)]
mod tests;
