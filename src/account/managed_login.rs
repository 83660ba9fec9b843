//! The managed ChatGPT logins: browser (PKCE + local callback) and device code (SPEC §10.1–10.3).
//!
//! [`ManagedLogins`] owns the login in progress (at most one) and the tasks that run it. A login,
//! once the issuer hands over tokens, checks the workspace, tries the API-key exchange, then —
//! under the account lock and only if it is still the active login — saves auth.json and
//! announces the login. A login replaced, cancelled or timed out reports `login/completed` with
//! `success: false` and writes nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::account::credentials::Credentials;
use crate::account::error::{AccountError, LoginServerError};
use crate::account::notices;
use crate::account::ops::{AccountOps, OpsGuard};
use crate::account::store::ManagedTokens;
use crate::config::Config;
use crate::identity::Identity;
use crate::login::browser::{self, CallbackEvent};
use crate::login::oauth::{CodeTokens, DeviceCode, DevicePoll, DeviceStartError};
use crate::login::pkce::{self, AuthorizeRequest, Pkce};
use crate::peer::{Events, Hub};
use crate::protocol::{AuthMode, LoginAccountResponse, PlanType};

const NOT_COMPLETED: &str = "Login was not completed";
/// How long the callback server stays up after a success, for the browser to load `/success`.
const SUCCESS_PAGE_GRACE: Duration = Duration::from_secs(30);
/// Polling faster than this would hammer the issuer when it says `interval: 0`.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LoginKind {
    Browser,
    DeviceCode,
}

impl LoginKind {
    /// Failure texts of the browser flow carry a prefix; the device flow's do not.
    fn failure(self, message: &str) -> String {
        match self {
            Self::Browser => format!("Login server error: {message}"),
            Self::DeviceCode => message.to_owned(),
        }
    }
}

/// The managed login in progress.
struct ActiveLogin {
    id: Uuid,
    kind: LoginKind,
    cancel: CancellationToken,
}

/// Why finishing a login did not succeed.
enum Unfinished {
    /// The SPEC's failure text (unprefixed).
    Failed(String),
    /// Another login, a cancel or a logout ended this one first; it already reported.
    Superseded,
}

/// The managed logins of one process.
pub struct ManagedLogins {
    config: Arc<Config>,
    identity: Arc<Identity>,
    credentials: Arc<Credentials>,
    hub: Arc<Hub>,
    http: reqwest::Client,
    ops: AccountOps,
    active: Mutex<Option<ActiveLogin>>,
}

impl ManagedLogins {
    pub fn new(
        config: Arc<Config>,
        identity: Arc<Identity>,
        credentials: Arc<Credentials>,
        hub: Arc<Hub>,
        http: reqwest::Client,
        ops: AccountOps,
    ) -> Self {
        Self {
            config,
            identity,
            credentials,
            hub,
            http,
            ops,
            active: Mutex::new(None),
        }
    }

    /// Whether `id` is the login in progress.
    pub fn is_active(&self, id: Uuid) -> bool {
        self.active
            .lock()
            .expect("login lock")
            .as_ref()
            .is_some_and(|login| login.id == id)
    }

    /// Ends the login in progress, reporting it as not completed.
    pub fn end(&self, _ops: &OpsGuard, events: &mut Events) {
        let Some(login) = self.active.lock().expect("login lock").take() else {
            return;
        };
        login.cancel.cancel();
        tracing::info!(login = %login.id, "managed login ended before completing");
        notices::login_completed(
            events,
            Some(login.id.to_string()),
            Some(login.kind.failure(NOT_COMPLETED)),
        );
    }

    /// Server shutdown: the login in progress stops without notifications.
    pub fn shutdown(&self) {
        if let Some(login) = self.active.lock().expect("login lock").take() {
            login.cancel.cancel();
        }
    }

    fn begin(&self, _ops: &OpsGuard, kind: LoginKind) -> (Uuid, CancellationToken) {
        let id = Uuid::new_v4();
        let cancel = CancellationToken::new();
        *self.active.lock().expect("login lock") = Some(ActiveLogin {
            id,
            kind,
            cancel: cancel.clone(),
        });
        (id, cancel)
    }

    /// `{type:"chatgpt"}`: bind the callback server and hand out the authorize URL.
    pub async fn start_browser(
        self: &Arc<Self>,
        ops: &OpsGuard,
        events: &mut Events,
    ) -> Result<LoginAccountResponse, AccountError> {
        // The previous login's callback server gives its port back first.
        self.end(ops, events);
        let listener = browser::bind(self.config.auth.login_port, &self.http)
            .await
            .map_err(|err| AccountError::StartLoginServer(err.into()))?;
        let port = listener
            .local_addr()
            .map_err(|err| AccountError::StartLoginServer(LoginServerError::Io(err)))?
            .port();
        let redirect_uri = format!("http://localhost:{port}/auth/callback");
        let pkce = Pkce::generate();
        let state = pkce::random_state();
        let auth_url = pkce::authorize_url(&AuthorizeRequest {
            issuer: &self.config.auth.issuer,
            client_id: &self.config.auth.client_id,
            redirect_uri: &redirect_uri,
            pkce: &pkce,
            state: &state,
            originator: self.identity.originator(),
            allowed_workspaces: self
                .config
                .forced_chatgpt_workspace_id
                .as_ref()
                .map(|ids| ids.as_slice()),
        });
        let (id, cancel) = self.begin(ops, LoginKind::Browser);
        let (callbacks, received) = mpsc::channel(4);
        let stop = CancellationToken::new();
        let success_served = CancellationToken::new();
        tokio::spawn(browser::serve(
            listener,
            state,
            callbacks,
            stop.clone(),
            success_served.clone(),
        ));
        tokio::spawn(self.clone().run_browser_login(BrowserLogin {
            id,
            cancel,
            received,
            stop,
            success_served,
            verifier: pkce.verifier,
            redirect_uri,
        }));
        tracing::info!(login = %id, port, "browser login started");
        Ok(LoginAccountResponse::Chatgpt {
            login_id: id.to_string(),
            auth_url,
        })
    }

    async fn run_browser_login(self: Arc<Self>, mut login: BrowserLogin) {
        let timeout = tokio::time::sleep(self.config.auth.login_timeout);
        tokio::pin!(timeout);
        let event = tokio::select! {
            _ = login.cancel.cancelled() => {
                login.stop.cancel();
                return;
            }
            _ = &mut timeout => None,
            event = login.received.recv() => Some(event),
        };
        let failure = match event {
            None => "Login timed out".to_owned(),
            Some(None) => LoginKind::Browser.failure("login server stopped"),
            Some(Some(CallbackEvent::Failed(message))) => LoginKind::Browser.failure(&message),
            Some(Some(CallbackEvent::Code { code, reply })) => {
                match self.finish_browser_login(&code, &login).await {
                    Ok(success_query) => {
                        let _ = reply.send(Ok(success_query));
                        tokio::select! {
                            _ = login.success_served.cancelled() => {}
                            _ = tokio::time::sleep(SUCCESS_PAGE_GRACE) => {}
                        }
                        login.stop.cancel();
                        return;
                    }
                    Err(Unfinished::Failed(message)) => {
                        let _ = reply.send(Err(message.clone()));
                        LoginKind::Browser.failure(&message)
                    }
                    Err(Unfinished::Superseded) => {
                        let _ = reply.send(Err(NOT_COMPLETED.to_owned()));
                        login.stop.cancel();
                        return;
                    }
                }
            }
        };
        login.stop.cancel();
        self.fail(login.id, failure).await;
    }

    async fn finish_browser_login(
        &self,
        code: &SecretString,
        login: &BrowserLogin,
    ) -> Result<String, Unfinished> {
        let tokens = self
            .credentials
            .oauth()
            .exchange_code(code, &login.redirect_uri, &login.verifier)
            .await
            .map_err(|err| Unfinished::Failed(format!("Token exchange failed: {err}")))?;
        let plan = self.finish(login.id, tokens).await?;
        let plan = serde_json::to_value(plan)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        Ok(format!(
            "plan_type={}&platform_url={}",
            utf8_percent_encode(&plan, NON_ALPHANUMERIC),
            utf8_percent_encode("https://platform.openai.com", NON_ALPHANUMERIC)
        ))
    }

    /// `{type:"chatgptDeviceCode"}`: request a user code and poll in the background.
    pub async fn start_device(
        self: &Arc<Self>,
        ops: &OpsGuard,
        events: &mut Events,
    ) -> Result<LoginAccountResponse, AccountError> {
        let device =
            self.credentials
                .oauth()
                .start_device_code()
                .await
                .map_err(|err| match err {
                    DeviceStartError::NotEnabled => AccountError::DeviceCodeNotEnabled,
                    DeviceStartError::Request(err) => AccountError::DeviceCodeRequest(err),
                })?;
        self.end(ops, events);
        let (id, cancel) = self.begin(ops, LoginKind::DeviceCode);
        let issuer = self.credentials.oauth().issuer().to_owned();
        let user_code = device.user_code.clone();
        tokio::spawn(self.clone().run_device_login(id, cancel, device));
        tracing::info!(login = %id, "device code login started");
        Ok(LoginAccountResponse::ChatgptDeviceCode {
            login_id: id.to_string(),
            verification_url: format!("{issuer}/codex/device"),
            user_code,
        })
    }

    async fn run_device_login(
        self: Arc<Self>,
        id: Uuid,
        cancel: CancellationToken,
        device: DeviceCode,
    ) {
        let limit = self.config.auth.device_code_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        let interval = device.interval.max(MIN_POLL_INTERVAL);
        let failure = loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(deadline) => break format!("device auth timed out after {}", describe_duration(limit)),
                _ = tokio::time::sleep(interval) => {}
            }
            let poll = tokio::select! {
                _ = cancel.cancelled() => return,
                poll = self.credentials.oauth().poll_device_code(&device) => poll,
            };
            match poll {
                Ok(DevicePoll::Pending) => continue,
                Err(err) => break err.to_string(),
                Ok(DevicePoll::Authorized {
                    authorization_code,
                    code_verifier,
                }) => match self
                    .exchange_device_code(id, &authorization_code, &code_verifier)
                    .await
                {
                    Ok(()) => return,
                    Err(message) => break message,
                },
            }
        };
        self.fail(id, failure).await;
    }

    /// The device flow's last steps; `Err` is the failure text.
    async fn exchange_device_code(
        &self,
        id: Uuid,
        authorization_code: &SecretString,
        code_verifier: &SecretString,
    ) -> Result<(), String> {
        let oauth = self.credentials.oauth();
        let redirect_uri = format!("{}/deviceauth/callback", oauth.issuer());
        let tokens = oauth
            .exchange_code(authorization_code, &redirect_uri, code_verifier)
            .await
            .map_err(|err| format!("device code exchange failed: {err}"))?;
        match self.finish(id, tokens).await {
            Ok(_) | Err(Unfinished::Superseded) => Ok(()),
            Err(Unfinished::Failed(message)) => Err(message),
        }
    }

    /// Workspace check, API-key exchange, then (if still active) save and announce. Returns the plan.
    async fn finish(&self, id: Uuid, tokens: CodeTokens) -> Result<PlanType, Unfinished> {
        let mut managed = ManagedTokens::new(
            tokens.id_token,
            tokens.access_token,
            tokens.refresh_token,
            None,
        )
        .map_err(|err| {
            Unfinished::Failed(format!("Token exchange failed: invalid id token: {err}"))
        })?;
        self.check_workspace(&managed)?;
        match self
            .credentials
            .oauth()
            .exchange_api_key(&managed.id_token)
            .await
        {
            Ok(api_key) if !api_key.expose_secret().is_empty() => managed.api_key = Some(api_key),
            Ok(_) => {}
            Err(err) => tracing::debug!(error = %err, "API key exchange failed (optional)"),
        }
        let plan = PlanType::from_optional(managed.claims.plan.as_deref());

        let _ops = self.ops.lock().await;
        if !self.is_active(id) {
            return Err(Unfinished::Superseded);
        }
        let store = self.credentials.store();
        let saved = match store.lock().await {
            Ok(_lock) => store.write_managed(&managed).await.map_err(Into::into),
            Err(err) => Err(err),
        };
        if let Err(err) = saved {
            tracing::warn!(error = %err, "cannot save the managed login");
            return Err(Unfinished::Failed(
                "Sign-in completed but credentials could not be saved locally.".to_owned(),
            ));
        }
        self.credentials.file_written().await;
        self.active.lock().expect("login lock").take();
        tracing::info!(login = %id, "managed ChatGPT login completed");
        let mut events = Events::default();
        notices::logged_in(
            &mut events,
            Some(id.to_string()),
            AuthMode::Chatgpt,
            Some(plan),
        );
        events.send(&self.hub);
        Ok(plan)
    }

    fn check_workspace(&self, managed: &ManagedTokens) -> Result<(), Unfinished> {
        let Some(forced) = &self.config.forced_chatgpt_workspace_id else {
            return Ok(());
        };
        match managed.claims.account_id.as_deref() {
            None => Err(Unfinished::Failed(
                "Login is restricted to a specific workspace, but the token did not include an chatgpt_account_id claim.".to_owned(),
            )),
            Some(workspace) if !forced.contains(workspace) => Err(Unfinished::Failed(format!(
                "Login is restricted to workspace id(s) {}.",
                forced.as_slice().join(", ")
            ))),
            Some(_) => Ok(()),
        }
    }

    /// Reports a failed login if it is still the active one.
    async fn fail(&self, id: Uuid, error: String) {
        let _ops = self.ops.lock().await;
        if !self.is_active(id) {
            return;
        }
        self.active.lock().expect("login lock").take();
        tracing::info!(login = %id, error, "managed login failed");
        let mut events = Events::default();
        notices::login_completed(&mut events, Some(id.to_string()), Some(error));
        events.send(&self.hub);
    }
}

struct BrowserLogin {
    id: Uuid,
    cancel: CancellationToken,
    received: mpsc::Receiver<CallbackEvent>,
    stop: CancellationToken,
    success_served: CancellationToken,
    verifier: SecretString,
    redirect_uri: String,
}

fn describe_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (count, unit) = if seconds.is_multiple_of(60) {
        (seconds / 60, "minute")
    } else {
        (seconds, "second")
    };
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {unit}{plural}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(describe_duration(Duration::from_secs(900)), "15 minutes");
        assert_eq!(describe_duration(Duration::from_secs(60)), "1 minute");
        assert_eq!(describe_duration(Duration::from_secs(1)), "1 second");
        assert_eq!(describe_duration(Duration::from_secs(90)), "90 seconds");
    }
}
