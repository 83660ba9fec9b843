//! The account surface (SPEC §5–7): requests, results, notifications and the token refresh
//! server request.

use schemars::JsonSchema;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// How the account is authenticated (lowercase `apikey`, unlike the `apiKey` tags).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, TS)]
pub enum AuthMode {
    #[serde(rename = "apikey")]
    ApiKey,
    #[serde(rename = "chatgpt")]
    Chatgpt,
    #[serde(rename = "chatgptAuthTokens")]
    ChatgptAuthTokens,
}

/// A ChatGPT plan; unrecognised plans are `unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "lowercase")]
pub enum PlanType {
    Free,
    Go,
    Plus,
    Pro,
    Team,
    Business,
    Enterprise,
    Edu,
    Unknown,
}

impl PlanType {
    /// Maps a plan string case-insensitively; anything else is `unknown`.
    pub fn from_claim(plan: &str) -> Self {
        match plan.to_ascii_lowercase().as_str() {
            "free" => Self::Free,
            "go" => Self::Go,
            "plus" => Self::Plus,
            "pro" => Self::Pro,
            "team" => Self::Team,
            "business" => Self::Business,
            "enterprise" => Self::Enterprise,
            "edu" => Self::Edu,
            _ => Self::Unknown,
        }
    }

    pub fn from_optional(plan: Option<&str>) -> Self {
        plan.map_or(Self::Unknown, Self::from_claim)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(tag = "type")]
pub enum Account {
    #[serde(rename = "apiKey")]
    ApiKey,
    #[serde(rename = "chatgpt", rename_all = "camelCase")]
    Chatgpt { email: String, plan_type: PlanType },
}

/// `account/read` params.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct GetAccountParams {
    #[serde(default)]
    pub refresh_token: bool,
}

/// `account/read` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct GetAccountResponse {
    pub account: Option<Account>,
    pub requires_openai_auth: bool,
}

/// `account/login/start` params.
#[derive(Clone, Debug, Deserialize, JsonSchema, TS)]
#[serde(tag = "type")]
pub enum LoginAccountParams {
    #[serde(rename = "apiKey", rename_all = "camelCase")]
    ApiKey {
        /// Non-empty, without whitespace or control characters.
        #[schemars(with = "String")]
        #[ts(as = "String")]
        api_key: ApiKeyInput,
    },
    /// Browser login; `codexStreamlinedLogin`, `useHostedLoginSuccessPage`, `appBrand` are ignored.
    #[serde(rename = "chatgpt")]
    Chatgpt,
    #[serde(rename = "chatgptDeviceCode")]
    ChatgptDeviceCode,
    #[serde(rename = "chatgptAuthTokens")]
    ChatgptAuthTokens(ExternalTokenParams),
}

/// An API key as typed: never empty, no whitespace or control characters (it becomes a header).
#[derive(Clone, Debug)]
pub struct ApiKeyInput(pub SecretString);

impl<'de> Deserialize<'de> for ApiKeyInput {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use secrecy::ExposeSecret;
        let key = SecretString::deserialize(deserializer)?;
        let text = key.expose_secret();
        if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(serde::de::Error::custom(
                "apiKey must be a non-empty key without whitespace or control characters",
            ));
        }
        Ok(Self(key))
    }
}

/// True if `value` is a valid HTTP header value under Codex's rule: TAB or visible ASCII and space.
pub fn is_header_safe(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..=0x7e).contains(&b))
}

/// Tokens supplied by the host app, in the seed shape (`idToken` + `accessToken`) or the later one
/// (`accessToken` + `chatgptAccountId` + optional `chatgptPlanType`). Also the refresh reply.
#[derive(Clone, Debug, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("anyOf" = [{"required": ["idToken"]}, {"required": ["chatgptAccountId"]}]))]
pub struct ExternalTokenParams {
    /// Seed shape: the id token naming the account. Without it, `chatgptAccountId` is required.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    #[ts(as = "Option<String>", optional)]
    pub id_token: Option<SecretString>,
    /// The bearer for backend calls (a JWT naming the account in the later shape).
    #[schemars(with = "String")]
    #[ts(as = "String")]
    pub access_token: SecretString,
    #[serde(default)]
    #[ts(optional)]
    pub chatgpt_account_id: Option<String>,
    #[serde(default)]
    #[ts(optional)]
    pub chatgpt_plan_type: Option<String>,
}

impl<'de> Deserialize<'de> for ExternalTokenParams {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        RawExternalTokens::deserialize(deserializer)?
            .try_into()
            .map_err(serde::de::Error::custom)
    }
}

/// The wire form of [`ExternalTokenParams`], before the shape check.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawExternalTokens {
    #[serde(default)]
    id_token: Option<SecretString>,
    access_token: SecretString,
    #[serde(default)]
    chatgpt_account_id: Option<String>,
    #[serde(default)]
    chatgpt_plan_type: Option<String>,
}

impl TryFrom<RawExternalTokens> for ExternalTokenParams {
    type Error = String;

    fn try_from(raw: RawExternalTokens) -> Result<Self, Self::Error> {
        if raw.id_token.is_none() && raw.chatgpt_account_id.is_none() {
            return Err("missing field `chatgptAccountId` (required without `idToken`)".into());
        }
        if raw
            .chatgpt_account_id
            .as_deref()
            .is_some_and(|id| id.is_empty() || !is_header_safe(id))
        {
            return Err("chatgptAccountId must be a non-empty valid HTTP header value".into());
        }
        Ok(Self {
            id_token: raw.id_token,
            access_token: raw.access_token,
            chatgpt_account_id: raw.chatgpt_account_id,
            chatgpt_plan_type: raw.chatgpt_plan_type,
        })
    }
}

/// `account/login/start` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema, TS)]
#[serde(tag = "type")]
pub enum LoginAccountResponse {
    #[serde(rename = "apiKey")]
    ApiKey,
    #[serde(rename = "chatgpt", rename_all = "camelCase")]
    Chatgpt { login_id: String, auth_url: String },
    #[serde(rename = "chatgptDeviceCode", rename_all = "camelCase")]
    ChatgptDeviceCode {
        login_id: String,
        verification_url: String,
        user_code: String,
    },
    #[serde(rename = "chatgptAuthTokens")]
    ChatgptAuthTokens,
}

/// `account/login/cancel` params.
#[derive(Clone, Debug, Deserialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct CancelLoginAccountParams {
    pub login_id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub enum CancelLoginAccountStatus {
    Canceled,
    NotFound,
}

/// `account/login/cancel` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema, TS)]
pub struct CancelLoginAccountResponse {
    pub status: CancelLoginAccountStatus,
}

/// `account/logout` params: absent, `null` or any object.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, TS)]
pub struct LogoutAccountParams {}

/// `account/logout` result: `{}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema, TS)]
pub struct LogoutAccountResponse {}

/// `account/rateLimits/read` params: absent, `null` or any object.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, TS)]
pub struct GetAccountRateLimitsParams {}

/// `account/rateLimits/read` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct GetAccountRateLimitsResponse {
    pub rate_limits: RateLimitSnapshot,
}

/// Rate limits as Codex reports them: every key present, each nullable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitSnapshot {
    pub primary: Option<RateLimitWindow>,
    pub secondary: Option<RateLimitWindow>,
    pub credits: Option<CreditsSnapshot>,
    pub plan_type: Option<PlanType>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitWindow {
    pub used_percent: i32,
    pub window_duration_mins: Option<i64>,
    pub resets_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct CreditsSnapshot {
    pub has_credits: bool,
    pub unlimited: bool,
    pub balance: Option<String>,
}

/// Notification `account/login/completed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct AccountLoginCompletedNotification {
    pub login_id: Option<String>,
    pub success: bool,
    pub error: Option<String>,
}

/// Notification `account/updated`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct AccountUpdatedNotification {
    pub auth_mode: Option<AuthMode>,
    pub plan_type: Option<PlanType>,
}

/// Notification `account/rateLimits/updated`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct AccountRateLimitsUpdatedNotification {
    pub rate_limits: RateLimitSnapshot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub enum ChatgptAuthTokensRefreshReason {
    /// A backend request got `401 Unauthorized`.
    Unauthorized,
}

/// Server request `account/chatgptAuthTokens/refresh` params.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema, TS)]
#[serde(rename_all = "camelCase")]
pub struct ChatgptAuthTokensRefreshParams {
    pub reason: ChatgptAuthTokensRefreshReason,
    /// Workspace of the credentials that got the 401, or `null`.
    pub previous_account_id: Option<String>,
}

#[cfg(test)]
mod tests;
