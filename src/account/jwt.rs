//! Reading identity claims out of ChatGPT JWTs, without verifying signatures (SPEC §5.1).
//!
//! authbridge never trusts these claims for security decisions beyond what Codex does: they name
//! the account (email, plan, workspace) and the access token's expiry. Error texts never contain
//! the token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// The claims authbridge reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claims {
    pub email: Option<String>,
    /// `chatgpt_plan_type` as found (mapped to a [`PlanType`](crate::protocol::PlanType) later).
    pub plan: Option<String>,
    /// `chatgpt_account_id`: the workspace.
    pub account_id: Option<String>,
    /// `exp`, seconds since the epoch.
    pub expires_at: Option<i64>,
}

/// Why a token could not be read. `Display` gives the SPEC's texts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("invalid ID token format")]
    Format,
    #[error("invalid ID token payload encoding: {0}")]
    Base64(String),
    #[error("invalid ID token payload: {0}")]
    Json(String),
}

/// Parses the claims of a JWT: three non-empty segments, the middle one base64url JSON.
pub fn parse(token: &str) -> Result<Claims, JwtError> {
    let mut segments = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(JwtError::Format);
    };
    if header.is_empty() || payload.is_empty() || signature.is_empty() {
        return Err(JwtError::Format);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|err| JwtError::Base64(err.to_string()))?;
    let payload: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|err| {
        // serde's message can quote input; keep only its category and position.
        JwtError::Json(format!(
            "{:?} error at column {}",
            err.classify(),
            err.column()
        ))
    })?;
    Ok(claims_of(&payload))
}

fn claims_of(payload: &Map<String, Value>) -> Claims {
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    let auth = payload.get("https://api.openai.com/auth");
    let profile = payload.get("https://api.openai.com/profile");
    Claims {
        email: text(payload.get("email")).or_else(|| text(profile.and_then(|p| p.get("email")))),
        plan: text(auth.and_then(|a| a.get("chatgpt_plan_type"))),
        account_id: text(auth.and_then(|a| a.get("chatgpt_account_id"))),
        expires_at: payload.get("exp").and_then(|exp| {
            exp.as_i64()
                .or_else(|| exp.as_f64().map(|seconds| seconds as i64))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const AUTH_CLAIM: &str = "https://api.openai.com/auth";
    const PROFILE_CLAIM: &str = "https://api.openai.com/profile";

    fn jwt(claims: Value) -> String {
        let enc = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
        format!(
            "{}.{}.{}",
            enc(&json!({"alg":"none","typ":"JWT"})),
            enc(&claims),
            URL_SAFE_NO_PAD.encode("signature")
        )
    }

    #[test]
    fn reads_codex_claims() {
        let token = jwt(json!({
            "email": "user@example.com",
            "exp": 1735689720,
            AUTH_CLAIM: {"chatgpt_plan_type": "pro", "chatgpt_account_id": "org-1"}
        }));
        assert_eq!(
            parse(&token).unwrap(),
            Claims {
                email: Some("user@example.com".into()),
                plan: Some("pro".into()),
                account_id: Some("org-1".into()),
                expires_at: Some(1735689720),
            }
        );
    }

    #[test]
    fn email_falls_back_to_profile_claim() {
        let token = jwt(json!({PROFILE_CLAIM: {"email": "p@example.com"}}));
        assert_eq!(
            parse(&token).unwrap().email.as_deref(),
            Some("p@example.com")
        );
    }

    #[test]
    fn padded_payloads_are_accepted() {
        let payload = base64::engine::general_purpose::URL_SAFE.encode(br#"{"email":"a@b.c"}"#);
        let token = format!("e30.{payload}.sig");
        assert_eq!(parse(&token).unwrap().email.as_deref(), Some("a@b.c"));
    }

    #[test]
    fn format_errors() {
        for bad in ["not-a-jwt", "a.b", "a..c", "a.b.c.d", ".b.c", "a.b."] {
            assert_eq!(parse(bad), Err(JwtError::Format), "{bad}");
        }
        assert!(matches!(parse("a.!!!.c"), Err(JwtError::Base64(_))));
        let not_object = format!("a.{}.c", URL_SAFE_NO_PAD.encode("[1]"));
        assert!(matches!(parse(&not_object), Err(JwtError::Json(_))));
    }

    #[test]
    fn errors_never_quote_the_token() {
        let secret = "SENTINEL-SECRET-VALUE";
        let payload = URL_SAFE_NO_PAD.encode(format!("{{\"email\": {secret}}}"));
        let err = parse(&format!("a.{payload}.c")).unwrap_err().to_string();
        assert!(!err.contains(secret), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_tokens_never_panic(token in ".*") {
            let _ = parse(&token);
        }

        #[test]
        fn arbitrary_payloads_never_panic(payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128)) {
            let token = format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(&payload));
            let _ = parse(&token);
        }
    }
}
