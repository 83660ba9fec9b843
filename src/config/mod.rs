//! Configuration: defaults, the TOML file, `-c key=value` overrides and flags (SPEC §12).
//!
//! Precedence is flag > `-c` > file > default. Unknown keys are ignored (a Codex `config.toml` works
//! as is) but a known key of the wrong type stops startup with the key's name in the message, and
//! an out-of-range value with `<key> must be between <min> and <max>`.

mod file;
mod model;
mod range;
#[cfg(test)]
mod tests;

pub use model::{CatalogEntry, ModelConfig, ProxyConfig, TurnsConfig, chatgpt_backend_base};

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use file::{FileConfig, apply_override, parse_file_config, read_table};

pub const DEFAULT_LISTEN: &str = "ws://127.0.0.1:4500";
pub const DEFAULT_CHATGPT_BASE_URL: &str = "https://chatgpt.com/backend-api/";
pub const DEFAULT_ISSUER: &str = "https://auth.openai.com";
pub const DEFAULT_CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
pub const DEFAULT_LOGIN_PORT: u16 = 1455;

/// Everything a running server needs to know.
#[derive(Clone, Debug)]
pub struct Config {
    /// Absolute home directory (auth.json, server.json, auth.json.lock).
    pub home: PathBuf,
    pub listen: Listen,
    pub chatgpt_base_url: String,
    pub forced_login_method: Option<ForcedLoginMethod>,
    pub forced_chatgpt_workspace_id: Option<WorkspaceIds>,
    pub requires_openai_auth: bool,
    pub auth: AuthConfig,
    pub server: ServerConfig,
    pub backend: BackendConfig,
    pub model: ModelConfig,
    pub turns: TurnsConfig,
    pub proxy: ProxyConfig,
    pub ws_auth: WsAuthSettings,
}

/// Outbound calls to the ChatGPT/OpenAI backends.
#[derive(Clone, Debug)]
pub struct BackendConfig {
    /// Backend requests in flight process-wide; more wait for a slot.
    pub max_concurrent: usize,
    /// Idle connections kept open per backend host for the next request; the rest close when
    /// their response ends, so a burst's sockets and buffers do not outlive it.
    pub idle_connections: usize,
    /// How long an idle backend connection stays open for the next request.
    pub idle_timeout: Duration,
}

/// Where to listen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listen {
    Stdio,
    Ws(SocketAddr),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForcedLoginMethod {
    Chatgpt,
    Api,
}

/// `forced_chatgpt_workspace_id`: one id, or a list (the error texts differ, SPEC §5.3).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum WorkspaceIds {
    One(String),
    Many(Vec<String>),
}

impl WorkspaceIds {
    pub fn contains(&self, id: &str) -> bool {
        match self {
            Self::One(one) => one == id,
            Self::Many(many) => many.iter().any(|m| m == id),
        }
    }

    pub fn as_slice(&self) -> &[String] {
        match self {
            Self::One(one) => std::slice::from_ref(one),
            Self::Many(many) => many,
        }
    }
}

#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub issuer: String,
    pub client_id: String,
    pub login_port: u16,
    pub refresh_token_url: String,
    pub external_refresh_timeout: Duration,
    pub login_timeout: Duration,
    pub device_code_timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub allowed_origins: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub max_message_bytes: usize,
    pub max_connections: usize,
    pub max_in_flight_per_connection: usize,
    pub outbound_queue_messages: usize,
    pub outbound_queue_bytes: usize,
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
}

/// How WebSocket clients authenticate (SPEC §2.1), from the `--ws-*` flags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WsAuthSettings {
    pub mode: WsAuthMode,
    pub token_file: Option<PathBuf>,
    pub shared_secret_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub max_clock_skew_secs: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WsAuthMode {
    #[default]
    CapabilityToken,
    SignedBearerToken,
    None,
}

impl WsAuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CapabilityToken => "capability-token",
            Self::SignedBearerToken => "signed-bearer-token",
            Self::None => "none",
        }
    }
}

impl FromStr for WsAuthMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "capability-token" => Ok(Self::CapabilityToken),
            "signed-bearer-token" => Ok(Self::SignedBearerToken),
            "none" => Ok(Self::None),
            other => Err(format!(
                "unsupported --ws-auth `{other}`; expected `capability-token`, `signed-bearer-token` or `none`"
            )),
        }
    }
}

impl fmt::Display for WsAuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Listen {
    /// Parses `stdio://`, `ws://IP:PORT` (IPv4, or bracketed IPv6) or `ws://localhost:PORT`
    /// (127.0.0.1), each with an optional trailing `/`.
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        let unsupported = || {
            ConfigError(format!(
                "unsupported --listen URL `{url}`; expected `stdio://` or `ws://IP:PORT`"
            ))
        };
        if url == "stdio://" || url == "stdio" {
            return Ok(Self::Stdio);
        }
        let rest = url.strip_prefix("ws://").ok_or_else(unsupported)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if let Some((host, port)) = rest.rsplit_once(':')
            && host.eq_ignore_ascii_case("localhost")
        {
            let port = port.parse::<u16>().map_err(|_| unsupported())?;
            return Ok(Self::Ws(SocketAddr::from(([127, 0, 0, 1], port))));
        }
        rest.parse::<SocketAddr>()
            .map(Self::Ws)
            .map_err(|_| unsupported())
    }
}

/// A configuration problem that stops startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Inputs to [`Config::load`], as given on the command line.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub home: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
    /// `-c key=value` pairs, in order.
    pub overrides: Vec<String>,
    pub listen: Option<String>,
    pub ws_auth: WsAuthFlags,
}

/// The raw `--ws-*` flags.
#[derive(Clone, Debug, Default)]
pub struct WsAuthFlags {
    pub mode: Option<WsAuthMode>,
    pub token_file: Option<PathBuf>,
    pub shared_secret_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub max_clock_skew_secs: Option<u64>,
}

/// Home directory: `--home`, else `$AUTHBRIDGE_HOME`, else `~/.authbridge`; made absolute.
pub fn resolve_home(flag: Option<&Path>) -> Result<PathBuf, ConfigError> {
    let chosen = match flag {
        Some(path) => path.to_path_buf(),
        None => match std::env::var_os("AUTHBRIDGE_HOME").filter(|v| !v.is_empty()) {
            Some(path) => PathBuf::from(path),
            None => home_dir()
                .ok_or_else(|| {
                    ConfigError("cannot find the user's home directory; pass --home".into())
                })?
                .join(".authbridge"),
        },
    };
    std::path::absolute(&chosen).map_err(|err| {
        ConfigError(format!(
            "cannot resolve home directory {}: {err}",
            chosen.display()
        ))
    })
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl Config {
    /// Builds the configuration for `serve`.
    pub fn load(options: &LoadOptions) -> Result<Self, ConfigError> {
        let home = resolve_home(options.home.as_deref())?;
        let (path, required) = match &options.config_file {
            Some(path) => (path.clone(), true),
            None => (home.join("config.toml"), false),
        };
        let mut table = read_table(&path, required)?;
        for item in &options.overrides {
            apply_override(&mut table, item)?;
        }
        let file = parse_file_config(table, &path)?;
        Self::from_parts(home, file, options)
    }

    /// A configuration with every default, for embedding and tests.
    pub fn with_home(home: impl Into<PathBuf>) -> Self {
        let options = LoadOptions::default();
        Self::from_parts(home.into(), FileConfig::default(), &options).expect("defaults are valid")
    }

    /// Builds from a home and `-c`-style overrides only (no file): handy for embedding and tests.
    pub fn from_overrides(
        home: impl Into<PathBuf>,
        overrides: &[&str],
    ) -> Result<Self, ConfigError> {
        let mut table = toml::Table::new();
        for item in overrides {
            apply_override(&mut table, item)?;
        }
        let file = parse_file_config(table, Path::new("-c"))?;
        Self::from_parts(home.into(), file, &LoadOptions::default())
    }

    fn from_parts(
        home: PathBuf,
        file: FileConfig,
        options: &LoadOptions,
    ) -> Result<Self, ConfigError> {
        let listen_url = options
            .listen
            .clone()
            .or(file.server.listen.clone())
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let chatgpt_base_url = file
            .chatgpt_base_url
            .unwrap_or_else(|| DEFAULT_CHATGPT_BASE_URL.to_owned());
        Ok(Self {
            home,
            listen: Listen::parse(&listen_url)?,
            model: file.model.build(&chatgpt_base_url)?,
            turns: file.turns.build()?,
            proxy: file.proxy.build()?,
            chatgpt_base_url,
            forced_login_method: file.forced_login_method,
            forced_chatgpt_workspace_id: file.forced_chatgpt_workspace_id,
            requires_openai_auth: file.requires_openai_auth.unwrap_or(true),
            auth: file.auth.build()?,
            server: file.server.build()?,
            backend: file.backend.build()?,
            ws_auth: ws_auth_settings(&options.ws_auth)?,
        })
    }

    pub fn server_json_path(&self) -> PathBuf {
        self.home.join("server.json")
    }
}

fn ws_auth_settings(flags: &WsAuthFlags) -> Result<WsAuthSettings, ConfigError> {
    let mode = flags.mode.unwrap_or_default();
    for (flag, path) in [
        ("--ws-token-file", &flags.token_file),
        ("--ws-shared-secret-file", &flags.shared_secret_file),
    ] {
        if let Some(path) = path
            && !path.is_absolute()
        {
            return Err(ConfigError(format!("{flag} must be an absolute path")));
        }
    }
    let signed_flags = flags.shared_secret_file.is_some()
        || flags.issuer.is_some()
        || flags.audience.is_some()
        || flags.max_clock_skew_secs.is_some();
    let misplaced = match mode {
        WsAuthMode::None => flags.token_file.is_some() || signed_flags,
        WsAuthMode::CapabilityToken => signed_flags,
        WsAuthMode::SignedBearerToken => flags.token_file.is_some(),
    };
    if misplaced {
        let wanted = match mode {
            WsAuthMode::CapabilityToken => {
                "`--ws-shared-secret-file`, `--ws-issuer`, `--ws-audience` and `--ws-max-clock-skew-seconds` require `--ws-auth signed-bearer-token`".to_owned()
            }
            WsAuthMode::SignedBearerToken => {
                "`--ws-token-file` requires `--ws-auth capability-token`".to_owned()
            }
            WsAuthMode::None => {
                "websocket auth flags require `--ws-auth capability-token` or `--ws-auth signed-bearer-token`".to_owned()
            }
        };
        return Err(ConfigError(wanted));
    }
    if mode == WsAuthMode::SignedBearerToken && flags.shared_secret_file.is_none() {
        return Err(ConfigError(
            "`--ws-shared-secret-file` is required when `--ws-auth signed-bearer-token` is set"
                .into(),
        ));
    }
    Ok(WsAuthSettings {
        mode,
        token_file: flags.token_file.clone(),
        shared_secret_file: flags.shared_secret_file.clone(),
        issuer: flags.issuer.clone(),
        audience: flags.audience.clone(),
        max_clock_skew_secs: flags.max_clock_skew_secs.unwrap_or(30),
    })
}
