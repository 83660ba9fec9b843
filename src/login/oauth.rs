//! Talking to the OAuth issuer: the refresh grant, the authorization-code and API-key exchanges, and
//! the device-code endpoints (SPEC §10.2–10.4). These calls never pass the 401 layer.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::backend::describe;

/// Time limit for one call to the issuer.
const ISSUER_TIMEOUT: Duration = Duration::from_secs(30);

pub const REFRESH_EXPIRED: &str = "Your access token could not be refreshed because your refresh token has expired. Please log out and sign in again.";
pub const REFRESH_REUSED: &str = "Your access token could not be refreshed because your refresh token was already used. Please log out and sign in again.";
pub const REFRESH_REVOKED: &str = "Your access token could not be refreshed because your refresh token was revoked. Please log out and sign in again.";
pub const REFRESH_OTHER_401: &str =
    "Your access token could not be refreshed. Please log out and sign in again.";

#[derive(Clone)]
pub struct OAuthClient {
    http: reqwest::Client,
    issuer: String,
    client_id: String,
    refresh_token_url: String,
}

/// A refresh grant failure (SPEC §10.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantError {
    /// The refresh token is dead; `reused` marks `refresh_token_reused`.
    Permanent { message: String, reused: bool },
    /// Worth trying again later.
    Transient(String),
}

impl GrantError {
    pub fn message(&self) -> &str {
        match self {
            Self::Permanent { message, .. } | Self::Transient(message) => message,
        }
    }
}

/// Tokens from a refresh grant: present ones replace stored ones.
#[derive(Deserialize)]
pub struct RefreshedTokens {
    #[serde(default)]
    pub id_token: Option<SecretString>,
    #[serde(default)]
    pub access_token: Option<SecretString>,
    #[serde(default)]
    pub refresh_token: Option<SecretString>,
}

/// Tokens from an authorization-code exchange: all three are required.
#[derive(Deserialize)]
pub struct CodeTokens {
    pub id_token: SecretString,
    pub access_token: SecretString,
    pub refresh_token: SecretString,
}

/// The device-code login's first step.
#[derive(Clone, Debug)]
pub struct DeviceCode {
    pub device_auth_id: String,
    pub user_code: String,
    pub interval: Duration,
}

/// One poll of the device-code token endpoint.
pub enum DevicePoll {
    Pending,
    Authorized {
        authorization_code: SecretString,
        code_verifier: SecretString,
    },
}

/// Why starting a device-code login failed.
pub enum DeviceStartError {
    /// The issuer has no device-code endpoint (404).
    NotEnabled,
    Request(String),
}

/// Why a call to the issuer (other than the refresh grant) failed; `Display` is the SPEC §10 text.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// The call did not get an answer (connect, TLS, timeout…).
    #[error("{0}")]
    Transport(String),
    #[error("token endpoint returned status {status}: {detail}")]
    TokenStatus { status: StatusCode, detail: String },
    #[error("invalid token endpoint response: {0}")]
    TokenResponse(String),
    #[error("API key exchange returned status {0}")]
    ApiKeyStatus(StatusCode),
    #[error("device auth failed: {0}")]
    DeviceAuth(String),
    #[error("device auth failed with status {0}")]
    DeviceAuthStatus(StatusCode),
}

impl OAuthClient {
    pub fn new(
        http: reqwest::Client,
        issuer: &str,
        client_id: &str,
        refresh_token_url: &str,
    ) -> Self {
        Self {
            http,
            issuer: issuer.trim_end_matches('/').to_owned(),
            client_id: client_id.to_owned(),
            refresh_token_url: refresh_token_url.to_owned(),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The refresh_token grant (JSON body, SPEC §10.4).
    pub async fn refresh(
        &self,
        refresh_token: &SecretString,
        headers: HeaderMap,
    ) -> Result<RefreshedTokens, GrantError> {
        let body = json!({
            "client_id": self.client_id,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token.expose_secret(),
            "scope": "openid profile email",
        });
        let response = self
            .http
            .post(&self.refresh_token_url)
            .headers(headers)
            .json(&body)
            .timeout(ISSUER_TIMEOUT)
            .send()
            .await
            .map_err(|err| {
                GrantError::Transient(format!("Failed to refresh token: {}", describe(&err)))
            })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|err| {
                GrantError::Transient(format!("Failed to refresh token: invalid response: {err}"))
            });
        }
        Err(classify_refresh_failure(status, &text))
    }

    /// `POST <issuer>/oauth/token` with `grant_type=authorization_code` (form-encoded).
    pub async fn exchange_code(
        &self,
        code: &SecretString,
        redirect_uri: &str,
        code_verifier: &SecretString,
    ) -> Result<CodeTokens, IssuerError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.expose_secret()),
            ("redirect_uri", redirect_uri),
            ("client_id", &self.client_id),
            ("code_verifier", code_verifier.expose_secret()),
        ];
        let response = self.post_token_form(&form).await?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(IssuerError::TokenStatus {
                status,
                detail: token_endpoint_detail(&text),
            });
        }
        serde_json::from_str(&text).map_err(|err| IssuerError::TokenResponse(err.to_string()))
    }

    /// `POST <issuer>/oauth/token` with a form body.
    async fn post_token_form(
        &self,
        form: &[(&str, &str)],
    ) -> Result<reqwest::Response, IssuerError> {
        self.http
            .post(format!("{}/oauth/token", self.issuer))
            .form(form)
            .timeout(ISSUER_TIMEOUT)
            .send()
            .await
            .map_err(|err| IssuerError::Transport(describe(&err)))
    }

    /// Best effort: trades the id token for an API key (`OPENAI_API_KEY`).
    pub async fn exchange_api_key(
        &self,
        id_token: &SecretString,
    ) -> Result<SecretString, IssuerError> {
        #[derive(Deserialize)]
        struct Exchanged {
            access_token: SecretString,
        }
        let form = [
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("client_id", &self.client_id),
            ("requested_token", "openai-api-key"),
            ("subject_token", id_token.expose_secret()),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:id_token",
            ),
        ];
        let response = self.post_token_form(&form).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(IssuerError::ApiKeyStatus(status));
        }
        let exchanged: Exchanged = response
            .json()
            .await
            .map_err(|err| IssuerError::Transport(describe(&err)))?;
        Ok(exchanged.access_token)
    }

    /// `POST <issuer>/api/accounts/deviceauth/usercode`.
    pub async fn start_device_code(&self) -> Result<DeviceCode, DeviceStartError> {
        #[derive(Deserialize)]
        struct UserCode {
            device_auth_id: String,
            #[serde(alias = "usercode")]
            user_code: String,
            #[serde(default)]
            interval: Option<Value>,
        }
        let response = self
            .http
            .post(format!("{}/api/accounts/deviceauth/usercode", self.issuer))
            .json(&json!({"client_id": self.client_id}))
            .timeout(ISSUER_TIMEOUT)
            .send()
            .await
            .map_err(|err| DeviceStartError::Request(describe(&err)))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Err(DeviceStartError::NotEnabled);
        }
        if !status.is_success() {
            return Err(DeviceStartError::Request(format!(
                "device code request failed with status {status}"
            )));
        }
        let code: UserCode = response
            .json()
            .await
            .map_err(|err| DeviceStartError::Request(describe(&err)))?;
        let seconds = match code.interval {
            Some(Value::String(text)) => text.trim().parse::<u64>().unwrap_or(5),
            Some(Value::Number(number)) => number.as_u64().unwrap_or(5),
            _ => 5,
        };
        Ok(DeviceCode {
            device_auth_id: code.device_auth_id,
            user_code: code.user_code,
            interval: Duration::from_secs(seconds),
        })
    }

    /// One poll of `POST <issuer>/api/accounts/deviceauth/token`: 403/404 mean "not yet".
    pub async fn poll_device_code(&self, code: &DeviceCode) -> Result<DevicePoll, IssuerError> {
        #[derive(Deserialize)]
        struct Authorized {
            authorization_code: SecretString,
            code_verifier: SecretString,
        }
        let response = self
            .http
            .post(format!("{}/api/accounts/deviceauth/token", self.issuer))
            .json(&json!({"device_auth_id": code.device_auth_id, "user_code": code.user_code}))
            .timeout(ISSUER_TIMEOUT)
            .send()
            .await
            .map_err(|err| IssuerError::DeviceAuth(describe(&err)))?;
        let status = response.status();
        if status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND {
            return Ok(DevicePoll::Pending);
        }
        if !status.is_success() {
            return Err(IssuerError::DeviceAuthStatus(status));
        }
        let authorized: Authorized = response
            .json()
            .await
            .map_err(|err| IssuerError::DeviceAuth(describe(&err)))?;
        Ok(DevicePoll::Authorized {
            authorization_code: authorized.authorization_code,
            code_verifier: authorized.code_verifier,
        })
    }
}

/// Maps a non-2xx refresh response to SPEC §10.4's classes and messages.
pub fn classify_refresh_failure(status: StatusCode, body: &str) -> GrantError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    if status == StatusCode::UNAUTHORIZED {
        let code = parsed.as_ref().and_then(error_code);
        let message = match code.as_deref() {
            Some("refresh_token_expired") => REFRESH_EXPIRED,
            Some("refresh_token_reused") => REFRESH_REUSED,
            Some("refresh_token_invalidated") => REFRESH_REVOKED,
            _ => REFRESH_OTHER_401,
        };
        return GrantError::Permanent {
            message: message.to_owned(),
            reused: code.as_deref() == Some("refresh_token_reused"),
        };
    }
    let detail = parsed
        .as_ref()
        .and_then(|value| value.pointer("/error/message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| body.to_owned());
    GrantError::Transient(format!("Failed to refresh token: {status}: {detail}"))
}

/// The error code: `error.code`, else `error` as a string, else `code`.
fn error_code(value: &Value) -> Option<String> {
    value
        .pointer("/error/code")
        .and_then(Value::as_str)
        .or_else(|| value.get("error").and_then(Value::as_str))
        .or_else(|| value.get("code").and_then(Value::as_str))
        .map(str::to_owned)
}

/// `error_description`, else `error.message`, else the `error`/`error.code` string, else the trimmed
/// body, else `unknown error` (SPEC §10.2).
pub fn token_endpoint_detail(body: &str) -> String {
    if let Ok(value) = serde_json::from_str::<Value>(body) {
        let found = value
            .get("error_description")
            .and_then(Value::as_str)
            .or_else(|| value.pointer("/error/message").and_then(Value::as_str))
            .or_else(|| value.get("error").and_then(Value::as_str))
            .or_else(|| value.pointer("/error/code").and_then(Value::as_str));
        if let Some(found) = found {
            return found.to_owned();
        }
    }
    match body.trim() {
        "" => "unknown error".to_owned(),
        trimmed => trimmed.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_failures() {
        let permanent = |body: &str| classify_refresh_failure(StatusCode::UNAUTHORIZED, body);
        assert_eq!(
            permanent(r#"{"error":{"code":"refresh_token_expired"}}"#),
            GrantError::Permanent {
                message: REFRESH_EXPIRED.into(),
                reused: false
            }
        );
        assert_eq!(
            permanent(r#"{"error":"refresh_token_reused"}"#),
            GrantError::Permanent {
                message: REFRESH_REUSED.into(),
                reused: true
            }
        );
        assert_eq!(
            permanent(r#"{"code":"refresh_token_invalidated"}"#),
            GrantError::Permanent {
                message: REFRESH_REVOKED.into(),
                reused: false
            }
        );
        assert_eq!(
            permanent("nope"),
            GrantError::Permanent {
                message: REFRESH_OTHER_401.into(),
                reused: false
            }
        );
        assert_eq!(
            classify_refresh_failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"error":{"message":"boom"}}"#
            ),
            GrantError::Transient(
                "Failed to refresh token: 500 Internal Server Error: boom".into()
            )
        );
        assert_eq!(
            classify_refresh_failure(StatusCode::BAD_GATEWAY, "upstream"),
            GrantError::Transient("Failed to refresh token: 502 Bad Gateway: upstream".into())
        );
    }

    #[test]
    fn token_endpoint_details() {
        assert_eq!(
            token_endpoint_detail(r#"{"error":"invalid_grant","error_description":"bad code"}"#),
            "bad code"
        );
        assert_eq!(
            token_endpoint_detail(r#"{"error":{"message":"m","code":"c"}}"#),
            "m"
        );
        assert_eq!(
            token_endpoint_detail(r#"{"error":"invalid_grant"}"#),
            "invalid_grant"
        );
        assert_eq!(token_endpoint_detail(r#"{"error":{"code":"c"}}"#), "c");
        assert_eq!(token_endpoint_detail("  oops \n"), "oops");
        assert_eq!(token_endpoint_detail(""), "unknown error");
    }
}
