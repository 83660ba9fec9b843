//! The process's credentials and how each mode renews them (SPEC §7, §8, §9.2–9.3, §10.4).
//!
//! External tokens live here in memory with their owner connection; managed tokens and API keys live
//! in auth.json (through [`AuthStore`]). Every change bumps one generation number, which is what the
//! 401 layer's single flight is keyed on. This type is the layer's [`CredentialProvider`]:
//! - external mode asks the owner connection (`account/chatgptAuthTokens/refresh`);
//! - managed mode takes the file lock, re-reads auth.json, adopts tokens another process already
//!   rotated, else runs the refresh grant — and latches permanent failures.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderValue, USER_AGENT};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::account::store::{AuthStore, Loaded, ManagedTokens, StoredAuth};
use crate::account::tokens::ExternalTokens;
use crate::backend::{AuthFailure, Credential, CredentialProvider, Refreshed, RefresherKind};
use crate::config::Config;
use crate::identity::Identity;
use crate::login::oauth::{GrantError, OAuthClient};
use crate::peer::{ClientLink, ClientRequestError};
use crate::protocol::{
    ChatgptAuthTokensRefreshParams, ChatgptAuthTokensRefreshReason, ExternalTokenParams, methods,
};

/// Refresh a managed access token this long before its `exp`.
const EXPIRY_MARGIN_SECS: i64 = 5 * 60;
/// Without a readable `exp`, refresh tokens older than this (Codex 0.94.0's rule).
const MAX_TOKEN_AGE: time::Duration = time::Duration::days(8);

pub const NO_OWNER: &str = "no connected client can refresh external auth tokens";
pub const ACCOUNT_CHANGED: &str = "Your access token could not be refreshed because you have since logged out or signed in to another account. Please sign in again.";

/// What the account is, right now.
#[derive(Clone, Debug)]
pub enum Snapshot {
    None,
    ApiKey,
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
    owner: Weak<dyn ClientLink>,
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

    /// Brings the state in line with auth.json (re-read only if it changed).
    async fn sync_file(&self) -> (Loaded, std::sync::MutexGuard<'_, State>) {
        let (loaded, version) = self.store.current().await;
        let mut state = self.state.lock().expect("credentials lock");
        self.absorb(&mut state, &loaded, version);
        (loaded, state)
    }

    fn absorb(&self, state: &mut State, loaded: &Loaded, version: u64) {
        if version == state.file_version {
            return;
        }
        state.file_version = version;
        if state.external.is_none() {
            state.generation += 1;
        }
        // A different refresh token in the file clears the latch.
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

    /// Re-reads auth.json now (after this process wrote it, or under the lock).
    async fn reload(&self) -> Loaded {
        let (loaded, version) = self.store.reload().await;
        let mut state = self.state.lock().expect("credentials lock");
        self.absorb(&mut state, &loaded, version);
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
            Some(StoredAuth::ApiKey(_)) => Snapshot::ApiKey,
            Some(StoredAuth::Managed(tokens)) => Snapshot::Managed {
                latched: state
                    .latch
                    .as_ref()
                    .is_some_and(|latch| latch.refresh_token == digest(&tokens.refresh_token)),
                tokens: tokens.clone(),
            },
        }
    }

    pub fn generation(&self) -> u64 {
        self.state.lock().expect("credentials lock").generation
    }

    pub fn external_active(&self) -> bool {
        self.state
            .lock()
            .expect("credentials lock")
            .external
            .is_some()
    }

    /// Installs host-owned tokens; `owner` answers future refresh requests.
    pub fn set_external(&self, tokens: ExternalTokens, owner: &Arc<dyn ClientLink>) {
        let mut state = self.state.lock().expect("credentials lock");
        state.external = Some(External {
            tokens: Arc::new(tokens),
            owner: Arc::downgrade(owner),
        });
        state.generation += 1;
    }

    /// Forgets host-owned tokens and any latch (logout).
    pub fn clear(&self) {
        let mut state = self.state.lock().expect("credentials lock");
        state.external = None;
        state.latch = None;
        state.generation += 1;
    }

    /// After this process wrote or deleted auth.json: re-read it and forget any latch.
    pub async fn file_written(&self) {
        self.reload().await;
        let mut state = self.state.lock().expect("credentials lock");
        state.latch = None;
        state.generation += 1;
    }

    /// `account/read {refreshToken:true}` in managed mode: run the grant now (single flight).
    pub async fn force_managed_refresh(&self) -> Result<(), String> {
        let Snapshot::Managed { tokens, .. } = self.snapshot().await else {
            return Ok(());
        };
        self.refresh_managed(&tokens.access_token, tokens.workspace().map(str::to_owned))
            .await
            .map(|_| ())
            .map_err(|err| err.message().to_owned())
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

    /// Renews managed tokens that replaced `stale` (SPEC §9.3, §10.4): under the file lock, adopt
    /// what another process wrote, else spend the refresh token once.
    async fn refresh_managed(
        &self,
        stale_access: &SecretString,
        stale_workspace: Option<String>,
    ) -> Result<Refreshed, GrantError> {
        let _in_process = self.managed_refresh.lock().await;
        let _file_lock = self
            .store
            .lock()
            .await
            .map_err(|err| GrantError::Transient(format!("Failed to refresh token: {err}")))?;
        let loaded = self.reload().await;
        let tokens = match loaded.credentials() {
            Some(StoredAuth::Managed(tokens))
                if tokens.workspace().map(str::to_owned) == stale_workspace =>
            {
                tokens.clone()
            }
            _ => {
                return Err(GrantError::Permanent {
                    message: ACCOUNT_CHANGED.into(),
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
        tracing::info!("refreshing managed ChatGPT tokens");
        match self
            .oauth
            .refresh(&tokens.refresh_token, self.grant_headers())
            .await
        {
            Ok(fresh) => {
                let renewed = tokens
                    .refreshed(fresh.id_token, fresh.access_token, fresh.refresh_token)
                    .map_err(|err| {
                        GrantError::Transient(format!("Failed to refresh token: {err}"))
                    })?;
                self.store.write_managed(&renewed).await.map_err(|err| {
                    GrantError::Transient(format!(
                        "Failed to refresh token: cannot save auth.json: {err}"
                    ))
                })?;
                self.reload().await;
                Ok(Refreshed::Renewed)
            }
            Err(GrantError::Permanent { message, reused }) => {
                if reused {
                    // A process that does not take the lock (Codex) may have rotated it already.
                    let again = self.reload().await;
                    if let Some(StoredAuth::Managed(now)) = again.credentials()
                        && !same_secret(&now.refresh_token, &tokens.refresh_token)
                    {
                        tracing::info!(
                            "refresh token was reused elsewhere; adopting the newer tokens"
                        );
                        return Ok(Refreshed::Renewed);
                    }
                }
                tracing::warn!(message, "managed token refresh failed permanently");
                self.state.lock().expect("credentials lock").latch = Some(Latch {
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

    fn latched_message(&self, tokens: &ManagedTokens) -> Option<String> {
        let state = self.state.lock().expect("credentials lock");
        state
            .latch
            .as_ref()
            .filter(|latch| latch.refresh_token == digest(&tokens.refresh_token))
            .map(|latch| latch.message.clone())
    }

    /// Asks the owner connection for new external tokens (SPEC §7).
    async fn refresh_external(&self, stale: &Credential) -> Result<Refreshed, AuthFailure> {
        let (owner, previous_account_id) = {
            let state = self.state.lock().expect("credentials lock");
            let Some(external) = &state.external else {
                return Ok(Refreshed::Superseded);
            };
            if state.generation != stale.generation {
                return Ok(Refreshed::Renewed);
            }
            (external.owner.upgrade(), external.tokens.workspace.clone())
        };
        let Some(owner) = owner.filter(|owner| owner.is_open()) else {
            return Err(AuthFailure::new(NO_OWNER));
        };
        let timeout = self.config.auth.external_refresh_timeout;
        let params = serde_json::to_value(ChatgptAuthTokensRefreshParams {
            reason: ChatgptAuthTokensRefreshReason::Unauthorized,
            previous_account_id,
        })
        .expect("refresh params serialize");
        tracing::info!(
            connection = owner.connection_id(),
            "asking the owning client to refresh external tokens"
        );
        let reply = owner
            .request(methods::TOKENS_REFRESH, params, timeout)
            .await
            .map_err(|err| AuthFailure::new(refresh_request_failure(err, timeout)))?;
        let params: ExternalTokenParams = serde_json::from_value(reply)
            .map_err(|err| AuthFailure::new(format!("invalid auth refresh response: {err}")))?;
        let tokens = ExternalTokens::from_params(&params)
            .map_err(|err| AuthFailure::new(err.parse_error().to_string()))?;
        if let Some(forced) = &self.config.forced_chatgpt_workspace_id {
            tokens
                .check_refresh_workspace(forced)
                .map_err(AuthFailure::new)?;
        }
        let mut state = self.state.lock().expect("credentials lock");
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

    async fn current_credential(&self) -> Result<Credential, AuthFailure> {
        let snapshot = self.snapshot().await;
        let generation = self.generation();
        match snapshot {
            Snapshot::External { tokens } => Ok(Credential {
                bearer: tokens.access_token.clone(),
                account_id: tokens.workspace.clone(),
                generation,
                refresher: RefresherKind::HostOwned,
            }),
            Snapshot::Managed { tokens, latched } => {
                if latched && let Some(message) = self.latched_message(&tokens) {
                    return Err(AuthFailure::new(message));
                }
                if !Self::due_for_refresh(&tokens) {
                    return Ok(managed_credential(&tokens, generation));
                }
                match self
                    .refresh_managed(&tokens.access_token, tokens.workspace().map(str::to_owned))
                    .await
                {
                    Ok(_) => match self.snapshot().await {
                        Snapshot::Managed { tokens, .. } => {
                            Ok(managed_credential(&tokens, self.generation()))
                        }
                        _ => Err(AuthFailure::new(ACCOUNT_CHANGED)),
                    },
                    Err(GrantError::Permanent { message, .. }) => Err(AuthFailure::new(message)),
                    Err(GrantError::Transient(message)) => {
                        tracing::warn!(
                            error = message,
                            "proactive refresh failed; using the current token"
                        );
                        Ok(managed_credential(&tokens, generation))
                    }
                }
            }
            Snapshot::ApiKey => Err(AuthFailure::new("chatgpt authentication required")),
            Snapshot::None => Err(AuthFailure::new("codex account authentication required")),
        }
    }

    async fn recover(&self, stale: Credential) -> Result<Refreshed, AuthFailure> {
        match stale.refresher {
            RefresherKind::HostOwned => self.refresh_external(&stale).await,
            RefresherKind::TokenGrant => self
                .refresh_managed(&stale.bearer, stale.account_id.clone())
                .await
                .map_err(|err| AuthFailure::new(err.message())),
        }
    }
}

fn managed_credential(tokens: &ManagedTokens, generation: u64) -> Credential {
    Credential {
        bearer: tokens.access_token.clone(),
        account_id: tokens.workspace().map(str::to_owned),
        generation,
        refresher: RefresherKind::TokenGrant,
    }
}

fn refresh_request_failure(err: ClientRequestError, timeout: Duration) -> String {
    match err {
        ClientRequestError::TimedOut(_) => {
            format!(
                "auth refresh request timed out after {}s",
                timeout.as_secs()
            )
        }
        ClientRequestError::Rejected { code, message } => {
            format!("auth refresh request failed: code={code} message={message}")
        }
        ClientRequestError::Disconnected => NO_OWNER.to_owned(),
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
