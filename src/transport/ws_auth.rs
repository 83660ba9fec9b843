//! WebSocket client authentication at upgrade time (SPEC §2.1).
//!
//! Any local process or web page could otherwise drive the user's account, so the listener requires
//! a credential by default: a per-start capability token (or one from `--ws-token-file`), or an HS256
//! JWT signed with a shared secret. Browsers, which cannot set headers on a WebSocket, present it as
//! the subprotocol entry `authbridge.bearer.<credential>`; that entry is never echoed back.

use std::fmt;
use std::path::Path;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{ConfigError, WsAuthMode, WsAuthSettings};

/// The subprotocol the server selects when a client offers it.
pub const SUBPROTOCOL: &str = "authbridge";
/// Prefix of the subprotocol entry carrying a credential.
pub const BEARER_SUBPROTOCOL_PREFIX: &str = "authbridge.bearer.";

/// A 401 reason (the plain-text body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthRefusal(pub &'static str);

impl fmt::Display for AuthRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

const MISSING: AuthRefusal = AuthRefusal("missing websocket bearer token");

impl AuthRefusal {
    /// No credential was presented at all (rather than a wrong one).
    pub fn is_missing(&self) -> bool {
        self.0 == MISSING.0
    }
}
const BAD_HEADER: AuthRefusal = AuthRefusal("invalid authorization header");
const BAD_TOKEN: AuthRefusal = AuthRefusal("invalid websocket bearer token");
const BAD_JWT: AuthRefusal = AuthRefusal("invalid websocket jwt");

/// Checks credentials presented on an upgrade request.
pub enum WsAuthenticator {
    CapabilityToken {
        digest: [u8; 32],
    },
    SignedBearer {
        key: DecodingKey,
        validation: Box<Validation>,
    },
    None,
}

impl fmt::Debug for WsAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self {
            Self::CapabilityToken { .. } => "capability-token",
            Self::SignedBearer { .. } => "signed-bearer-token",
            Self::None => "none",
        };
        write!(f, "WsAuthenticator({mode})")
    }
}

/// A capability token to publish in `server.json`; deliberately has no `Debug`/`Display`.
pub struct CapabilityToken(String);

impl fmt::Debug for CapabilityToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CapabilityToken([REDACTED])")
    }
}

impl CapabilityToken {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl WsAuthenticator {
    /// Builds the authenticator for `settings`; returns the capability token when that mode is on.
    pub fn from_settings(
        settings: &WsAuthSettings,
    ) -> Result<(Self, Option<CapabilityToken>), ConfigError> {
        match settings.mode {
            WsAuthMode::None => Ok((Self::None, None)),
            WsAuthMode::CapabilityToken => {
                let token = match &settings.token_file {
                    Some(path) => read_token_file(path)?,
                    None => hex::encode(rand::random::<[u8; 32]>()),
                };
                let digest = Sha256::digest(token.as_bytes()).into();
                Ok((
                    Self::CapabilityToken { digest },
                    Some(CapabilityToken(token)),
                ))
            }
            WsAuthMode::SignedBearerToken => {
                let path = settings.shared_secret_file.as_deref().ok_or_else(|| {
                    ConfigError(
                        "`--ws-shared-secret-file` is required when `--ws-auth signed-bearer-token` is set"
                            .into(),
                    )
                })?;
                let secret = read_shared_secret(path)?;
                let mut validation = Validation::new(Algorithm::HS256);
                validation.leeway = settings.max_clock_skew_secs;
                validation.validate_exp = true;
                validation.validate_nbf = true;
                validation.set_required_spec_claims(&["exp"]);
                match &settings.issuer {
                    Some(issuer) => validation.set_issuer(&[issuer]),
                    None => validation.iss = None,
                }
                match &settings.audience {
                    Some(audience) => validation.set_audience(&[audience]),
                    None => validation.validate_aud = false,
                }
                Ok((
                    Self::SignedBearer {
                        key: DecodingKey::from_secret(&secret),
                        validation: Box::new(validation),
                    },
                    None,
                ))
            }
        }
    }

    /// Checks the credential of an upgrade request given its `Authorization` header value and its
    /// offered subprotocol entries.
    pub fn authenticate<'a>(
        &self,
        authorization: Option<&[u8]>,
        offered_protocols: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), AuthRefusal> {
        if matches!(self, Self::None) {
            return Ok(());
        }
        let credential = presented_credential(authorization, offered_protocols)?;
        match self {
            Self::None => Ok(()),
            Self::CapabilityToken { digest } => {
                let presented: [u8; 32] = Sha256::digest(credential.as_bytes()).into();
                if bool::from(presented.ct_eq(digest)) {
                    Ok(())
                } else {
                    Err(BAD_TOKEN)
                }
            }
            Self::SignedBearer { key, validation } => {
                jsonwebtoken::decode::<serde_json::Value>(&credential, key, validation)
                    .map(|_| ())
                    .map_err(|err| match err.kind() {
                        ErrorKind::ExpiredSignature => AuthRefusal("expired websocket jwt"),
                        ErrorKind::ImmatureSignature => {
                            AuthRefusal("websocket jwt is not valid yet")
                        }
                        ErrorKind::InvalidIssuer => AuthRefusal("websocket jwt issuer mismatch"),
                        ErrorKind::InvalidAudience => {
                            AuthRefusal("websocket jwt audience mismatch")
                        }
                        _ => BAD_JWT,
                    })
            }
        }
    }
}

/// Finds the one credential: the `Authorization` header if present, else one bearer subprotocol.
pub fn presented_credential<'a>(
    authorization: Option<&[u8]>,
    offered_protocols: impl IntoIterator<Item = &'a str>,
) -> Result<String, AuthRefusal> {
    if let Some(header) = authorization {
        let header = std::str::from_utf8(header).map_err(|_| BAD_HEADER)?;
        let (scheme, credential) = header.trim().split_once(' ').ok_or(BAD_HEADER)?;
        let credential = credential.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || credential.is_empty() {
            return Err(BAD_HEADER);
        }
        return Ok(credential.to_owned());
    }
    let mut bearer = offered_protocols
        .into_iter()
        .filter_map(|entry| entry.trim().strip_prefix(BEARER_SUBPROTOCOL_PREFIX));
    match (bearer.next(), bearer.next()) {
        (None, _) => Err(MISSING),
        (Some(_), Some(_)) => Err(BAD_TOKEN),
        (Some(""), None) => Err(BAD_TOKEN),
        (Some(credential), None) => Ok(credential.to_owned()),
    }
}

fn read_token_file(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        ConfigError(format!(
            "cannot read websocket token file {}: {err}",
            path.display()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ConfigError(format!(
            "websocket token file {} is empty",
            path.display()
        )));
    }
    Ok(token.to_owned())
}

fn read_shared_secret(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let bytes = std::fs::read(path).map_err(|err| {
        ConfigError(format!(
            "cannot read websocket shared secret file {}: {err}",
            path.display()
        ))
    })?;
    let secret = bytes.trim_ascii().to_vec();
    if secret.len() < 32 {
        return Err(ConfigError(format!(
            "signed websocket bearer secret {} must be at least 32 bytes",
            path.display()
        )));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_header_wins_and_must_be_bearer() {
        assert_eq!(
            presented_credential(Some(b"Bearer abc"), ["authbridge.bearer.zzz"]),
            Ok("abc".into())
        );
        assert_eq!(
            presented_credential(Some(b"Basic abc"), []),
            Err(BAD_HEADER)
        );
        assert_eq!(presented_credential(Some(b"Bearer"), []), Err(BAD_HEADER));
        assert_eq!(presented_credential(Some(&[0xff]), []), Err(BAD_HEADER));
    }

    #[test]
    fn subprotocol_credentials() {
        assert_eq!(presented_credential(None, ["authbridge"]), Err(MISSING));
        assert_eq!(
            presented_credential(None, ["authbridge", "authbridge.bearer.t1"]),
            Ok("t1".into())
        );
        assert_eq!(
            presented_credential(None, ["authbridge.bearer.a", "authbridge.bearer.b"]),
            Err(BAD_TOKEN)
        );
    }

    #[test]
    fn capability_token_compares_digests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "super-secret-token\n").unwrap();
        let settings = WsAuthSettings {
            token_file: Some(path),
            ..Default::default()
        };
        let (auth, token) = WsAuthenticator::from_settings(&settings).unwrap();
        assert_eq!(token.unwrap().expose(), "super-secret-token");
        assert!(
            auth.authenticate(Some(b"Bearer super-secret-token"), [])
                .is_ok()
        );
        assert_eq!(
            auth.authenticate(Some(b"Bearer wrong-token"), []),
            Err(BAD_TOKEN)
        );
        assert_eq!(auth.authenticate(None, []), Err(MISSING));
        assert!(format!("{auth:?}").contains("capability-token"));
        assert!(!format!("{auth:?}").contains("super-secret"));
    }

    #[test]
    fn generated_tokens_are_64_hex() {
        let (_, token) = WsAuthenticator::from_settings(&WsAuthSettings::default()).unwrap();
        let token = token.unwrap();
        assert_eq!(token.expose().len(), 64);
        assert!(
            token
                .expose()
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }

    #[test]
    fn short_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "too-short").unwrap();
        let settings = WsAuthSettings {
            mode: WsAuthMode::SignedBearerToken,
            shared_secret_file: Some(path.clone()),
            ..Default::default()
        };
        let err = WsAuthenticator::from_settings(&settings).unwrap_err();
        assert_eq!(
            err.0,
            format!(
                "signed websocket bearer secret {} must be at least 32 bytes",
                path.display()
            )
        );
    }
}
