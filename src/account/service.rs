//! The account methods (SPEC §5) and the notifications they cause (SPEC §6).
//!
//! One service per process. Login start/cancel and logout are serialized by `ops`, and every
//! notification a request causes is broadcast while that lock is held, so all connections see
//! state changes in order; the caller's own connection holds them until its reply is queued.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, USER_AGENT};
use secrecy::SecretString;

use crate::account::credentials::{Credentials, Snapshot};
use crate::account::managed_login::ActiveLogin;
use crate::account::tokens::{ExternalTokens, TokenError};
use crate::backend::client::ATTEMPT_TIMEOUT;
use crate::backend::{BackendClient, rate_limits};
use crate::config::{Config, ForcedLoginMethod};
use crate::error::RpcError;
use crate::hub::Hub;
use crate::identity::Identity;
use crate::peer::Caller;
use crate::protocol::{
    Account, AccountLoginCompletedNotification, AccountRateLimitsUpdatedNotification,
    AccountUpdatedNotification, AuthMode, CancelLoginAccountParams, CancelLoginAccountResponse,
    CancelLoginAccountStatus, ExternalTokenParams, GetAccountParams, GetAccountRateLimitsResponse,
    GetAccountResponse, LoginAccountParams, LoginAccountResponse, LogoutAccountResponse, PlanType,
    RateLimitSnapshot, methods,
};

const EXTERNAL_ACTIVE: &str = "External auth is active. Use account/login/start (chatgptAuthTokens) to update it or account/logout to clear it.";
const API_KEY_DISABLED: &str = "API key login is disabled. Use ChatGPT login instead.";
const CHATGPT_DISABLED: &str = "ChatGPT login is disabled. Use API key login instead.";
const EXTERNAL_DISABLED: &str = "External ChatGPT auth is disabled. Use API key login instead.";
const EMAIL_REQUIRED: &str = "email and plan type are required for chatgpt authentication";

pub struct AccountService {
    pub(super) config: Arc<Config>,
    pub(super) hub: Arc<Hub>,
    pub(super) identity: Arc<Identity>,
    pub(super) credentials: Arc<Credentials>,
    pub(super) http: reqwest::Client,
    backend: BackendClient,
    /// Serializes login start/cancel, logout and login completion (SPEC §3.5).
    pub(super) ops: tokio::sync::Mutex<()>,
    pub(super) active_login: Mutex<Option<ActiveLogin>>,
    last_rate_limits: Mutex<Option<RateLimitSnapshot>>,
}

impl AccountService {
    pub fn new(
        config: Arc<Config>,
        hub: Arc<Hub>,
        identity: Arc<Identity>,
    ) -> Result<Arc<Self>, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|err| format!("cannot create the HTTP client: {err}"))?;
        let credentials = Arc::new(Credentials::new(
            config.clone(),
            identity.clone(),
            http.clone(),
        ));
        let backend = BackendClient::new(
            http.clone(),
            credentials.clone(),
            ATTEMPT_TIMEOUT,
            config.backend.max_concurrent,
        );
        Ok(Arc::new(Self {
            config,
            hub,
            identity,
            credentials,
            http,
            backend,
            ops: tokio::sync::Mutex::new(()),
            active_login: Mutex::new(None),
            last_rate_limits: Mutex::new(None),
        }))
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
    pub async fn read(&self, params: GetAccountParams) -> Result<GetAccountResponse, RpcError> {
        if params.refresh_token
            && let Err(err) = self.credentials.force_managed_refresh().await
        {
            tracing::warn!(error = err, "requested token refresh failed");
        }
        if !self.config.requires_openai_auth {
            return Ok(GetAccountResponse {
                account: None,
                requires_openai_auth: false,
            });
        }
        let account = match self.credentials.snapshot().await {
            Snapshot::None | Snapshot::Managed { latched: true, .. } => None,
            Snapshot::ApiKey => Some(Account::ApiKey),
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
        self: &Arc<Self>,
        params: LoginAccountParams,
        caller: &Caller,
    ) -> Result<LoginAccountResponse, RpcError> {
        let _ops = self.ops.lock().await;
        match params {
            LoginAccountParams::ApiKey { api_key } => self.login_api_key(api_key.0, caller).await,
            LoginAccountParams::ChatgptAuthTokens(tokens) => self.login_external(&tokens, caller),
            LoginAccountParams::Chatgpt => {
                self.check_managed_login_allowed()?;
                self.start_browser_login(caller).await
            }
            LoginAccountParams::ChatgptDeviceCode => {
                self.check_managed_login_allowed()?;
                self.start_device_login(caller).await
            }
        }
    }

    fn check_managed_login_allowed(&self) -> Result<(), RpcError> {
        if self.credentials.external_active() {
            return Err(RpcError::invalid_request(EXTERNAL_ACTIVE));
        }
        if self.config.forced_login_method == Some(ForcedLoginMethod::Api) {
            return Err(RpcError::invalid_request(CHATGPT_DISABLED));
        }
        Ok(())
    }

    async fn login_api_key(
        &self,
        api_key: SecretString,
        caller: &Caller,
    ) -> Result<LoginAccountResponse, RpcError> {
        if self.credentials.external_active() {
            return Err(RpcError::invalid_request(EXTERNAL_ACTIVE));
        }
        if self.config.forced_login_method == Some(ForcedLoginMethod::Chatgpt) {
            return Err(RpcError::invalid_request(API_KEY_DISABLED));
        }
        let store = self.credentials.store();
        let saved = match store.lock().await {
            Ok(_lock) => store
                .write_api_key(&api_key)
                .await
                .map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        saved.map_err(|err| RpcError::internal(format!("failed to save api key: {err}")))?;
        self.credentials.file_written().await;
        tracing::info!("logged in with an API key");
        caller.defer_notifications_until_reply();
        self.end_managed_login();
        self.announce_login(None, AuthMode::ApiKey, None);
        Ok(LoginAccountResponse::ApiKey)
    }

    fn login_external(
        &self,
        params: &ExternalTokenParams,
        caller: &Caller,
    ) -> Result<LoginAccountResponse, RpcError> {
        if self.config.forced_login_method == Some(ForcedLoginMethod::Api) {
            return Err(RpcError::invalid_request(EXTERNAL_DISABLED));
        }
        let tokens = ExternalTokens::from_params(params).map_err(|err| match err {
            TokenError::IdToken(err) => {
                RpcError::invalid_request(format!("invalid id token: {err}"))
            }
            TokenError::AccessToken(err) => {
                RpcError::internal(format!("failed to set external auth: {err}"))
            }
        })?;
        if let Some(forced) = &self.config.forced_chatgpt_workspace_id {
            tokens
                .check_login_workspace(forced)
                .map_err(RpcError::invalid_request)?;
        }
        let plan = tokens.plan;
        caller.defer_notifications_until_reply();
        self.end_managed_login();
        self.credentials.set_external(tokens, caller.link());
        tracing::info!(
            connection = caller.link().connection_id(),
            "logged in with host-owned tokens; this connection refreshes them"
        );
        self.announce_login(None, AuthMode::ChatgptAuthTokens, Some(plan));
        Ok(LoginAccountResponse::ChatgptAuthTokens)
    }

    /// `login/completed {loginId, true, null}` then `updated {authMode, planType}`.
    pub(super) fn announce_login(
        &self,
        login_id: Option<String>,
        mode: AuthMode,
        plan: Option<PlanType>,
    ) {
        self.hub.broadcast(
            methods::LOGIN_COMPLETED,
            &AccountLoginCompletedNotification {
                login_id,
                success: true,
                error: None,
            },
        );
        self.hub.broadcast(
            methods::UPDATED,
            &AccountUpdatedNotification {
                auth_mode: Some(mode),
                plan_type: plan,
            },
        );
    }

    /// `account/login/cancel` (SPEC §5.4).
    pub async fn login_cancel(
        &self,
        params: CancelLoginAccountParams,
        caller: &Caller,
    ) -> Result<CancelLoginAccountResponse, RpcError> {
        let id = uuid::Uuid::parse_str(&params.login_id).map_err(|_| {
            RpcError::invalid_request(format!("invalid login id: {}", params.login_id))
        })?;
        let _ops = self.ops.lock().await;
        let is_active = self
            .active_login
            .lock()
            .expect("login lock")
            .as_ref()
            .is_some_and(|login| login.id == id);
        if !is_active {
            return Ok(CancelLoginAccountResponse {
                status: CancelLoginAccountStatus::NotFound,
            });
        }
        caller.defer_notifications_until_reply();
        self.end_managed_login();
        Ok(CancelLoginAccountResponse {
            status: CancelLoginAccountStatus::Canceled,
        })
    }

    /// `account/logout` (SPEC §5.5).
    pub async fn logout(&self, caller: &Caller) -> Result<LogoutAccountResponse, RpcError> {
        let _ops = self.ops.lock().await;
        caller.defer_notifications_until_reply();
        self.end_managed_login();
        self.credentials.clear();
        let store = self.credentials.store();
        let deleted = match store.lock().await {
            Ok(_lock) => store.delete().await.map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        self.credentials.file_written().await;
        *self.last_rate_limits.lock().expect("rate limits lock") = None;
        deleted.map_err(|err| RpcError::internal(format!("logout failed: {err}")))?;
        tracing::info!("logged out");
        self.hub.broadcast(
            methods::UPDATED,
            &AccountUpdatedNotification {
                auth_mode: None,
                plan_type: None,
            },
        );
        Ok(LogoutAccountResponse {})
    }

    /// `account/rateLimits/read` (SPEC §5.6, §9).
    pub async fn read_rate_limits(
        &self,
        caller: &Caller,
    ) -> Result<GetAccountRateLimitsResponse, RpcError> {
        match self.credentials.snapshot().await {
            Snapshot::None => {
                return Err(RpcError::invalid_request(
                    "codex account authentication required to read rate limits",
                ));
            }
            Snapshot::ApiKey => {
                return Err(RpcError::invalid_request(
                    "chatgpt authentication required to read rate limits",
                ));
            }
            Snapshot::Managed { .. } | Snapshot::External { .. } => {}
        }
        let url = rate_limits::usage_url(&self.config.chatgpt_base_url);
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&self.identity.user_agent(caller.client_info())) {
            headers.insert(USER_AGENT, value);
        }
        if let Ok(value) = HeaderValue::from_str(self.identity.originator()) {
            headers.insert("originator", value);
        }
        let snapshot = rate_limits::fetch(&self.backend, &url, headers)
            .await
            .map_err(|err| {
                RpcError::internal(format!("failed to fetch codex rate limits: {err}"))
            })?;
        {
            let mut last = self.last_rate_limits.lock().expect("rate limits lock");
            if last.as_ref() != Some(&snapshot) {
                *last = Some(snapshot.clone());
                caller.defer_notifications_until_reply();
                self.hub.broadcast(
                    methods::RATE_LIMITS_UPDATED,
                    &AccountRateLimitsUpdatedNotification {
                        rate_limits: snapshot.clone(),
                    },
                );
            }
        }
        Ok(GetAccountRateLimitsResponse {
            rate_limits: snapshot,
        })
    }

    /// Server shutdown: a managed login in progress is dropped without notifications.
    pub async fn shutdown(&self) {
        if let Some(login) = self.active_login.lock().expect("login lock").take() {
            login.cancel.cancel();
        }
    }
}

fn chatgpt_account(email: Option<String>, plan: PlanType) -> Result<Account, RpcError> {
    match email {
        Some(email) => Ok(Account::Chatgpt {
            email,
            plan_type: plan,
        }),
        None => Err(RpcError::invalid_request(EMAIL_REQUIRED)),
    }
}

impl std::fmt::Debug for AccountService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountService")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}
