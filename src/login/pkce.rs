//! PKCE, `state` and the authorize URL of the browser login (SPEC §10.1 steps 2–3).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::SecretString;
use sha2::{Digest, Sha256};

/// Everything except RFC 3986 unreserved characters is encoded (space as `%20`).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub const SCOPES: &str =
    "openid profile email offline_access api.connectors.read api.connectors.invoke";

/// A PKCE verifier and its S256 challenge.
pub struct Pkce {
    pub verifier: SecretString,
    pub challenge: String,
}

impl Pkce {
    /// `code_verifier` = base64url-no-pad(64 random bytes); `code_challenge` = base64url(SHA-256).
    pub fn generate() -> Self {
        let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 64]>());
        let challenge = challenge_for(&verifier);
        Self {
            verifier: verifier.into(),
            challenge,
        }
    }
}

pub fn challenge_for(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// `state` = base64url-no-pad(32 random bytes).
pub fn random_state() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

pub struct AuthorizeRequest<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub pkce: &'a Pkce,
    pub state: &'a str,
    pub originator: &'a str,
    pub allowed_workspaces: Option<&'a [String]>,
}

/// `<issuer>/oauth/authorize?…` with the parameters in the SPEC's order.
pub fn authorize_url(request: &AuthorizeRequest<'_>) -> String {
    let mut params: Vec<(&str, String)> = vec![
        ("response_type", "code".into()),
        ("client_id", request.client_id.into()),
        ("redirect_uri", request.redirect_uri.into()),
        ("scope", SCOPES.into()),
        ("code_challenge", request.pkce.challenge.clone()),
        ("code_challenge_method", "S256".into()),
        ("id_token_add_organizations", "true".into()),
        ("codex_cli_simplified_flow", "true".into()),
        ("state", request.state.into()),
        ("originator", request.originator.into()),
    ];
    if let Some(workspaces) = request.allowed_workspaces {
        params.push(("allowed_workspace_id", workspaces.join(",")));
    }
    let query: Vec<String> = params
        .iter()
        .map(|(key, value)| format!("{key}={}", utf8_percent_encode(value, QUERY_VALUE)))
        .collect();
    format!(
        "{}/oauth/authorize?{}",
        request.issuer.trim_end_matches('/'),
        query.join("&")
    )
}

impl std::fmt::Debug for Pkce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkce")
            .field("verifier", &"[REDACTED]")
            .field("challenge", &self.challenge)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn verifier_and_challenge() {
        let pkce = Pkce::generate();
        assert_eq!(pkce.verifier.expose_secret().len(), 86);
        assert_eq!(pkce.challenge, challenge_for(pkce.verifier.expose_secret()));
        // RFC 7636 appendix B.
        assert_eq!(
            challenge_for("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(random_state().len(), 43);
    }

    #[test]
    fn authorize_url_order_and_encoding() {
        let pkce = Pkce {
            verifier: "v".into(),
            challenge: "c".into(),
        };
        let workspaces = vec!["ws-a".to_owned(), "ws-b".to_owned()];
        let url = authorize_url(&AuthorizeRequest {
            issuer: "http://127.0.0.1:9/",
            client_id: "app_1",
            redirect_uri: "http://localhost:1455/auth/callback",
            pkce: &pkce,
            state: "s",
            originator: "codex_cli_rs",
            allowed_workspaces: Some(&workspaces),
        });
        assert_eq!(
            url,
            "http://127.0.0.1:9/oauth/authorize?response_type=code&client_id=app_1&redirect_uri=http%3A%2F%2Flocalhost%3A1455%2Fauth%2Fcallback&scope=openid%20profile%20email%20offline_access%20api.connectors.read%20api.connectors.invoke&code_challenge=c&code_challenge_method=S256&id_token_add_organizations=true&codex_cli_simplified_flow=true&state=s&originator=codex_cli_rs&allowed_workspace_id=ws-a%2Cws-b"
        );
    }
}
