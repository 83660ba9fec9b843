//! Who this server says it is: the originator, the User-Agent and the platform (SPEC §4).
//!
//! The originator is fixed once per process (env override, else the first client to initialize), and
//! the User-Agent built from it is sent both in `initialize` results and on every backend request.

use std::sync::{LazyLock, Once, OnceLock};

use crate::peer::ClientInfo;

/// Env variable that overrides the originator (as Codex).
pub const ORIGINATOR_ENV: &str = "CODEX_INTERNAL_ORIGINATOR_OVERRIDE";
/// Originator before any client initialized.
pub const DEFAULT_ORIGINATOR: &str = "codex_cli_rs";

pub struct Identity {
    env_override: Option<String>,
    first_client: OnceLock<String>,
}

/// `<os> <os version>; <arch>`. Reading the OS version runs `lsb_release` on Linux (tens of
/// milliseconds), so [`Identity::new`] starts it on a thread of its own instead of holding up
/// the server's start; the first User-Agent waits for it only if it is still running.
static PLATFORM: LazyLock<String> = LazyLock::new(platform_description);

impl Identity {
    pub fn from_env() -> Self {
        let env_override = std::env::var(ORIGINATOR_ENV)
            .ok()
            .filter(|value| !value.is_empty());
        Self::new(env_override)
    }

    pub fn new(env_override: Option<String>) -> Self {
        static LOOK_UP: Once = Once::new();
        LOOK_UP.call_once(|| {
            let started = std::thread::Builder::new()
                .name("platform".into())
                .spawn(|| LazyLock::force(&PLATFORM));
            if started.is_err() {
                // No thread to spare: the first User-Agent works it out itself.
                tracing::debug!("cannot look up the platform in the background");
            }
        });
        Self {
            env_override,
            first_client: OnceLock::new(),
        }
    }

    /// Records a successful `initialize`; the first one names the originator.
    pub fn client_initialized(&self, client: &ClientInfo) {
        let _ = self.first_client.set(client.name.clone());
    }

    pub fn originator(&self) -> &str {
        self.env_override
            .as_deref()
            .or(self.first_client.get().map(String::as_str))
            .unwrap_or(DEFAULT_ORIGINATOR)
    }

    /// `<originator>/<version> (<os> <os version>; <arch>)`: for calls no client triggered.
    pub fn background_user_agent(&self) -> String {
        sanitize_header_value(&format!(
            "{}/{} ({})",
            self.originator(),
            env!("CARGO_PKG_VERSION"),
            *PLATFORM
        ))
    }

    /// `<originator>/<version> (<os> <os version>; <arch>) (<name>; <version>)`, made header-safe.
    pub fn user_agent(&self, client: &ClientInfo) -> String {
        let raw = format!(
            "{}/{} ({}) ({}; {})",
            self.originator(),
            env!("CARGO_PKG_VERSION"),
            *PLATFORM,
            client.name,
            client.version
        );
        sanitize_header_value(&raw)
    }
}

/// `platformFamily` of the `initialize` result.
pub fn platform_family() -> &'static str {
    std::env::consts::FAMILY
}

/// `platformOs` of the `initialize` result.
pub fn platform_os() -> &'static str {
    std::env::consts::OS
}

fn platform_description() -> String {
    let info = os_info::get();
    let arch = info.architecture().unwrap_or(std::env::consts::ARCH);
    format!("{} {}; {}", info.os_type(), info.version(), arch)
}

pub use crate::protocol::is_header_safe;

fn sanitize_header_value(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c == '\t' || (' '..='~').contains(&c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(name: &str) -> ClientInfo {
        ClientInfo {
            name: name.into(),
            title: None,
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn first_client_names_the_originator() {
        let identity = Identity::new(None);
        assert_eq!(identity.originator(), "codex_cli_rs");
        identity.client_initialized(&client("codex_vscode"));
        identity.client_initialized(&client("other"));
        let ua = identity.user_agent(&client("other"));
        assert!(ua.starts_with("codex_vscode/"), "{ua}");
        assert!(ua.ends_with("(other; 0.1.0)"), "{ua}");
    }

    #[test]
    fn env_override_wins() {
        let identity = Identity::new(Some("via_env".into()));
        identity.client_initialized(&client("codex_vscode"));
        assert!(identity.user_agent(&client("x")).starts_with("via_env/"));
    }

    #[test]
    fn header_rule() {
        assert!(is_header_safe("codex_vscode\tok ~"));
        assert!(!is_header_safe("bad\rname"));
        assert!(!is_header_safe("é"));
        assert_eq!(sanitize_header_value("a\u{e9}b"), "a_b");
    }
}
