//! The account methods (SPEC §5) and the notifications they cause (SPEC §6).
//!
//! One service per process. Methods that change the account take the account lock ([`AccountOps`])
//! and return an [`Outcome`] that carries their notifications and the lock itself: the RPC layer
//! queues the reply, sends the notifications, then releases the lock, so every connection sees
//! state changes in order and the caller sees its reply first.

use std::sync::{Arc, Mutex};

use reqwest::header::{HeaderMap, HeaderValue, USER_AGENT};
use secrecy::SecretString;

use crate::account::credentials::{Credentials, Snapshot};
use crate::account::error::AccountError;
use crate::account::managed_login::ManagedLogins;
use crate::account::notices;
use crate::account::ops::{AccountOps, OpsGuard};
use crate::account::tokens::{ExternalTokens, TokenError};
use crate::backend::{BackendClient, rate_limits};
use crate::config::{Config, ForcedLoginMethod};
use crate::identity::Identity;
use crate::peer::{Events, Hub, Outcome, Peer};
use crate::protocol::{
    Account, AuthMode, CancelLoginAccountParams, CancelLoginAccountResponse,
    CancelLoginAccountStatus, ExternalTokenParams, GetAccountParams, GetAccountRateLimitsResponse,
    GetAccountResponse, LoginAccountParams, LoginAccountResponse, LogoutAccountResponse, PlanType,
    RateLimitSnapshot,
};

pub struct AccountService {
    config: Arc<Config>,
    identity: Arc<Identity>,
    credentials: Arc<Credentials>,
    backend: BackendClient,
    ops: AccountOps,
    logins: Arc<ManagedLogins>,
    last_rate_limits: Mutex<Option<RateLimitSnapshot>>,
}

impl AccountService {
    pub fn new(
        config: Arc<Config>,
        identity: Arc<Identity>,
        hub: Arc<Hub>,
        credentials: Arc<Credentials>,
        backend: BackendClient,
        http: reqwest::Client,
    ) -> Arc<Self> {
        let ops = AccountOps::default();
        let logins = Arc::new(ManagedLogins::new(
            config.clone(),
            identity.clone(),
            credentials.clone(),
            hub,
            http,
            ops.clone(),
        ));
        Arc::new(Self {
            config,
            identity,
            credentials,
            backend,
            ops,
            logins,
            last_rate_limits: Mutex::new(None),
        })
    }

    /// At start: removes temp files a killed writer left next to auth.json (they can hold keys).
    pub async fn remove_stale_files(&self) {
        let store = self.credentials.store();
        let removed = match store.lock().await {
            Ok(_lock) => store
                .remove_stale_temp_files()
                .await
                .map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        if let Err(err) = removed {
            tracing::warn!(error = err, "cannot remove stale auth.json temp files");
        }
    }

    /// `account/read` (SPEC §5.2).
    pub async fn read(&self, params: GetAccountParams) -> Result<GetAccountResponse, AccountError> {
        if params.refresh_token
            && let Err(err) = self.credentials.force_managed_refresh().await
        {
            tracing::warn!(error = %err, "requested token refresh failed");
        }
        if !self.config.requires_openai_auth {
            return Ok(GetAccountResponse {
                account: None,
                requires_openai_auth: false,
            });
        }
        let account = match self.credentials.snapshot().await {
            Snapshot::None | Snapshot::Managed { latched: true, .. } => None,
            Snapshot::ApiKey(_) => Some(Account::ApiKey),
            Snapshot::Managed { tokens, .. } => Some(chatgpt_account(
                tokens.claims.email.clone(),
                PlanType::from_optional(tokens.claims.plan.as_deref()),
            )?),
            Snapshot::External { tokens } => {
                Some(chatgpt_account(tokens.email.clone(), tokens.plan)?)
            }
        };
        Ok(GetAccountResponse {
            account,
            requires_openai_auth: true,
        })
    }

    /// `account/login/start` (SPEC §5.3).
    pub async fn login_start(
        &self,
        params: LoginAccountParams,
        caller: &Peer,
    ) -> Outcome<LoginAccountResponse, AccountError> {
        let ops = self.ops.lock().await;
        let mut events = Events::default();
        let result = match params {
            LoginAccountParams::ApiKey { api_key } => {
                self.login_api_key(api_key.0, &ops, &mut events).await
            }
            LoginAccountParams::ChatgptAuthTokens(tokens) => {
                self.login_external(&tokens, caller, &ops, &mut events)
            }
            LoginAccountParams::Chatgpt => match self.check_managed_login_allowed() {
                Ok(()) => self.logins.start_browser(&ops, &mut events).await,
                Err(err) => Err(err),
            },
            LoginAccountParams::ChatgptDeviceCode => match self.check_managed_login_allowed() {
                Ok(()) => self.logins.start_device(&ops, &mut events).await,
                Err(err) => Err(err),
            },
        };
        Outcome::new(result).with_events(events).holding(ops)
    }

    fn check_managed_login_allowed(&self) -> Result<(), AccountError> {
        if self.credentials.external_active() {
            return Err(AccountError::ExternalActive);
        }
        if self.config.forced_login_method == Some(ForcedLoginMethod::Api) {
            return Err(AccountError::ChatgptLoginDisabled);
        }
        Ok(())
    }

    async fn login_api_key(
        &self,
        api_key: SecretString,
        ops: &OpsGuard,
        events: &mut Events,
    ) -> Result<LoginAccountResponse, AccountError> {
        if self.credentials.external_active() {
            return Err(AccountError::ExternalActive);
        }
        if self.config.forced_login_method == Some(ForcedLoginMethod::Chatgpt) {
            return Err(AccountError::ApiKeyLoginDisabled);
        }
        let store = self.credentials.store();
        let saved = match store.lock().await {
            Ok(_lock) => store.write_api_key(&api_key).await.map_err(Into::into),
            Err(err) => Err(err),
        };
        saved.map_err(AccountError::SaveApiKey)?;
        self.credentials.file_written().await;
        tracing::info!("logged in with an API key");
        self.logins.end(ops, events);
        notices::logged_in(events, None, AuthMode::ApiKey, None);
        Ok(LoginAccountResponse::ApiKey)
    }

    fn login_external(
        &self,
        params: &ExternalTokenParams,
        caller: &Peer,
        ops: &OpsGuard,
        events: &mut Events,
    ) -> Result<LoginAccountResponse, AccountError> {
        if self.config.forced_login_method == Some(ForcedLoginMethod::Api) {
            return Err(AccountError::ExternalAuthDisabled);
        }
        let tokens = ExternalTokens::from_params(params).map_err(|err| match err {
            TokenError::IdToken(err) => AccountError::InvalidIdToken(err),
            TokenError::AccessToken(err) => AccountError::SetExternalAuth(err),
        })?;
        if let Some(forced) = &self.config.forced_chatgpt_workspace_id {
            tokens
                .check_login_workspace(forced)
                .map_err(AccountError::WorkspaceNotAllowed)?;
        }
        let plan = tokens.plan;
        self.logins.end(ops, events);
        self.credentials.set_external(tokens, caller);
        tracing::info!(
            connection = caller.id(),
            "logged in with host-owned tokens; this connection refreshes them"
        );
        notices::logged_in(events, None, AuthMode::ChatgptAuthTokens, Some(plan));
        Ok(LoginAccountResponse::ChatgptAuthTokens)
    }

    /// `account/login/cancel` (SPEC §5.4).
    pub async fn login_cancel(
        &self,
        params: CancelLoginAccountParams,
    ) -> Outcome<CancelLoginAccountResponse, AccountError> {
        let Ok(id) = uuid::Uuid::parse_str(&params.login_id) else {
            return Outcome::new(Err(AccountError::InvalidLoginId(params.login_id)));
        };
        let ops = self.ops.lock().await;
        let mut events = Events::default();
        let status = if self.logins.is_active(id) {
            self.logins.end(&ops, &mut events);
            CancelLoginAccountStatus::Canceled
        } else {
            CancelLoginAccountStatus::NotFound
        };
        Outcome::ok(CancelLoginAccountResponse { status })
            .with_events(events)
            .holding(ops)
    }

    /// `account/logout` (SPEC §5.5).
    pub async fn logout(&self) -> Outcome<LogoutAccountResponse, AccountError> {
        let ops = self.ops.lock().await;
        let mut events = Events::default();
        self.logins.end(&ops, &mut events);
        self.credentials.clear();
        let store = self.credentials.store();
        let deleted = match store.lock().await {
            Ok(_lock) => store.delete().await.map_err(Into::into),
            Err(err) => Err(err),
        };
        self.credentials.file_written().await;
        *self.last_rate_limits.lock().expect("rate limits lock") = None;
        let result = deleted.map_err(AccountError::Logout).map(|()| {
            tracing::info!("logged out");
            notices::updated(&mut events, None, None);
            LogoutAccountResponse {}
        });
        Outcome::new(result).with_events(events).holding(ops)
    }

    /// `account/rateLimits/read` (SPEC §5.6, §9).
    pub async fn read_rate_limits(
        &self,
        caller: &Peer,
    ) -> Outcome<GetAccountRateLimitsResponse, AccountError> {
        match self.credentials.snapshot().await {
            Snapshot::None => return Outcome::new(Err(AccountError::RateLimitsNeedAccount)),
            Snapshot::ApiKey(_) => return Outcome::new(Err(AccountError::RateLimitsNeedChatgpt)),
            Snapshot::Managed { .. } | Snapshot::External { .. } => {}
        }
        let url = rate_limits::usage_url(&self.config.chatgpt_base_url);
        let mut headers = HeaderMap::new();
        if let Some(client) = caller.client()
            && let Ok(value) = HeaderValue::from_str(&self.identity.user_agent(client))
        {
            headers.insert(USER_AGENT, value);
        }
        if let Ok(value) = HeaderValue::from_str(self.identity.originator()) {
            headers.insert("originator", value);
        }
        let snapshot = match rate_limits::fetch(&self.backend, &url, headers).await {
            Ok(snapshot) => snapshot,
            Err(err) => return Outcome::new(Err(AccountError::RateLimits(err))),
        };
        let mut events = Events::default();
        {
            let mut last = self.last_rate_limits.lock().expect("rate limits lock");
            if last.as_ref() != Some(&snapshot) {
                *last = Some(snapshot.clone());
                notices::rate_limits_updated(&mut events, &snapshot);
            }
        }
        Outcome::ok(GetAccountRateLimitsResponse {
            rate_limits: snapshot,
        })
        .with_events(events)
    }

    /// Server shutdown: a managed login in progress is dropped without notifications.
    pub fn shutdown(&self) {
        self.logins.shutdown();
    }
}

fn chatgpt_account(email: Option<String>, plan: PlanType) -> Result<Account, AccountError> {
    match email {
        Some(email) => Ok(Account::Chatgpt {
            email,
            plan_type: plan,
        }),
        None => Err(AccountError::EmailRequired),
    }
}

impl std::fmt::Debug for AccountService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountService")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}
