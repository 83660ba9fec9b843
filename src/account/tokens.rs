//! Host-owned ("external") ChatGPT tokens: reading both Codex shapes and the workspace policy
//! (SPEC §5.3, §7.3).
//!
//! The seed shape names the account in an id token; the later shape in the access token plus an
//! explicit `chatgptAccountId`. Either way the result is the same in-memory identity.

use secrecy::SecretString;

use crate::account::jwt::{self, JwtError};
use crate::config::WorkspaceIds;
use crate::protocol::{ExternalTokenParams, PlanType};

/// External credentials, held in memory only.
#[derive(Clone)]
pub struct ExternalTokens {
    pub access_token: SecretString,
    pub email: Option<String>,
    pub plan: PlanType,
    pub workspace: Option<String>,
    workspace_from_param: bool,
}

impl std::fmt::Debug for ExternalTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalTokens")
            .field("access_token", &"[REDACTED]")
            .field("email", &self.email)
            .field("plan", &self.plan)
            .field("workspace", &self.workspace)
            .finish()
    }
}

/// Which token failed to parse: the login error texts differ (SPEC §5.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Seed shape: the id token.
    IdToken(JwtError),
    /// Later shape: the access token.
    AccessToken(JwtError),
}

impl TokenError {
    pub fn parse_error(&self) -> &JwtError {
        match self {
            Self::IdToken(err) | Self::AccessToken(err) => err,
        }
    }
}

impl ExternalTokens {
    /// Reads the identity out of either token shape.
    pub fn from_params(params: &ExternalTokenParams) -> Result<Self, TokenError> {
        use secrecy::ExposeSecret;
        let (claims, workspace_from_param) = match &params.id_token {
            Some(id_token) => (
                jwt::parse(id_token.expose_secret()).map_err(TokenError::IdToken)?,
                params.chatgpt_account_id.is_some(),
            ),
            None => (
                jwt::parse(params.access_token.expose_secret()).map_err(TokenError::AccessToken)?,
                true,
            ),
        };
        let workspace = params
            .chatgpt_account_id
            .clone()
            .or(claims.account_id.clone());
        let plan = params
            .chatgpt_plan_type
            .as_deref()
            .or(claims.plan.as_deref());
        Ok(Self {
            access_token: params.access_token.clone(),
            email: claims.email,
            plan: PlanType::from_optional(plan),
            workspace,
            workspace_from_param,
        })
    }

    /// `External auth must use …` when the login's workspace is not allowed.
    pub fn check_login_workspace(&self, forced: &WorkspaceIds) -> Result<(), String> {
        if self
            .workspace
            .as_deref()
            .is_some_and(|w| forced.contains(w))
        {
            return Ok(());
        }
        let received = if self.workspace_from_param {
            format!("{:?}", self.workspace.as_deref().unwrap_or_default())
        } else {
            format!("{:?}", self.workspace)
        };
        Err(match forced {
            WorkspaceIds::One(one) => {
                format!("External auth must use workspace {one}, but received {received}.")
            }
            WorkspaceIds::Many(many) => format!(
                "External auth must use one of workspace(s) {many:?}, but received {received}."
            ),
        })
    }

    /// `external auth refresh returned workspace …` when a refresh reply's workspace is not allowed.
    pub fn check_refresh_workspace(&self, forced: &WorkspaceIds) -> Result<(), String> {
        if self
            .workspace
            .as_deref()
            .is_some_and(|w| forced.contains(w))
        {
            return Ok(());
        }
        let expected = match forced {
            WorkspaceIds::One(one) => format!("{one:?}"),
            WorkspaceIds::Many(many) => format!("one of {many:?}"),
        };
        Err(format!(
            "external auth refresh returned workspace {:?}, expected {expected}",
            self.workspace
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::{Value, json};

    fn jwt(claims: Value) -> String {
        let enc = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
        format!(
            "{}.{}.{}",
            enc(&json!({"alg":"none"})),
            enc(&claims),
            URL_SAFE_NO_PAD.encode("signature")
        )
    }

    fn idt(email: &str, plan: &str, account: &str) -> String {
        jwt(
            json!({"email": email, "https://api.openai.com/auth": {"chatgpt_plan_type": plan, "chatgpt_account_id": account}}),
        )
    }

    fn params(value: Value) -> ExternalTokenParams {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn seed_shape_reads_the_id_token() {
        let tokens = ExternalTokens::from_params(&params(json!({
            "idToken": idt("e@example.com", "pro", "org-1"), "accessToken": "opaque"
        })))
        .unwrap();
        assert_eq!(tokens.email.as_deref(), Some("e@example.com"));
        assert_eq!(tokens.plan, PlanType::Pro);
        assert_eq!(tokens.workspace.as_deref(), Some("org-1"));
        assert!(!format!("{tokens:?}").contains("opaque"));
    }

    #[test]
    fn later_shape_reads_the_access_token() {
        let tokens = ExternalTokens::from_params(&params(json!({
            "accessToken": idt("e@example.com", "plus", "ignored"), "chatgptAccountId": "org-2", "chatgptPlanType": "PRO"
        })))
        .unwrap();
        assert_eq!(tokens.workspace.as_deref(), Some("org-2"));
        assert_eq!(tokens.plan, PlanType::Pro);
    }

    #[test]
    fn parse_errors_name_the_token() {
        let seed = ExternalTokens::from_params(&params(
            json!({"idToken": "not-a-jwt", "accessToken": "x"}),
        ));
        assert_eq!(seed.unwrap_err(), TokenError::IdToken(JwtError::Format));
        let later = ExternalTokens::from_params(&params(
            json!({"accessToken": "not-a-jwt", "chatgptAccountId": "o"}),
        ));
        assert_eq!(
            later.unwrap_err(),
            TokenError::AccessToken(JwtError::Format)
        );
    }

    #[test]
    fn workspace_messages() {
        let from_claim = ExternalTokens::from_params(&params(json!({
            "idToken": idt("e@x", "pro", "org-other"), "accessToken": "a"
        })))
        .unwrap();
        assert_eq!(
            from_claim
                .check_login_workspace(&WorkspaceIds::One("org-expected".into()))
                .unwrap_err(),
            "External auth must use workspace org-expected, but received Some(\"org-other\")."
        );
        assert_eq!(
            from_claim
                .check_login_workspace(&WorkspaceIds::Many(vec!["W1".into(), "W2".into()]))
                .unwrap_err(),
            "External auth must use one of workspace(s) [\"W1\", \"W2\"], but received Some(\"org-other\")."
        );
        assert_eq!(
            from_claim
                .check_refresh_workspace(&WorkspaceIds::One("org-expected".into()))
                .unwrap_err(),
            "external auth refresh returned workspace Some(\"org-other\"), expected \"org-expected\""
        );
        let from_param = ExternalTokens::from_params(&params(json!({
            "accessToken": idt("e@x", "pro", "x"), "chatgptAccountId": "org-p"
        })))
        .unwrap();
        assert_eq!(
            from_param
                .check_login_workspace(&WorkspaceIds::One("W".into()))
                .unwrap_err(),
            "External auth must use workspace W, but received \"org-p\"."
        );
        assert!(
            from_param
                .check_login_workspace(&WorkspaceIds::Many(vec!["org-p".into()]))
                .is_ok()
        );
    }
}
