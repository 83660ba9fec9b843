//! Configuration: defaults, the TOML file, `-c key=value` overrides and flags (SPEC §12).
//!
//! Precedence is flag > `-c` > file > default. Unknown keys are ignored (a Codex `config.toml` works
//! as is) but a known key of the wrong type stops startup with the key's name in the message.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

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
    pub ws_auth: WsAuthSettings,
}

/// Outbound calls to the ChatGPT/OpenAI backends.
#[derive(Clone, Debug)]
pub struct BackendConfig {
    /// Backend requests in flight process-wide; more wait for a slot.
    pub max_concurrent: usize,
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

/// The TOML file's shape. Every member is optional; absent ones take defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileConfig {
    chatgpt_base_url: Option<String>,
    forced_login_method: Option<ForcedLoginMethod>,
    forced_chatgpt_workspace_id: Option<WorkspaceIds>,
    requires_openai_auth: Option<bool>,
    auth: FileAuth,
    server: FileServer,
    backend: FileBackend,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileBackend {
    max_concurrent: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileAuth {
    issuer: Option<String>,
    client_id: Option<String>,
    login_port: Option<u16>,
    refresh_token_url: Option<String>,
    external_refresh_timeout_secs: Option<u64>,
    login_timeout_secs: Option<u64>,
    device_code_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileServer {
    listen: Option<String>,
    allowed_origins: Option<Vec<String>>,
    allowed_hosts: Option<Vec<String>>,
    max_message_bytes: Option<usize>,
    max_connections: Option<usize>,
    max_in_flight_per_connection: Option<usize>,
    outbound_queue_messages: Option<usize>,
    outbound_queue_bytes: Option<usize>,
    header_timeout_secs: Option<u64>,
    max_header_bytes: Option<usize>,
    ping_interval_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    shutdown_grace_secs: Option<u64>,
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
        let listen = Listen::parse(&listen_url)?;

        let issuer = file
            .auth
            .issuer
            .unwrap_or_else(|| DEFAULT_ISSUER.to_owned())
            .trim_end_matches('/')
            .to_owned();
        let refresh_token_url = file
            .auth
            .refresh_token_url
            .unwrap_or_else(|| format!("{issuer}/oauth/token"));
        let external_refresh_timeout_secs = file.auth.external_refresh_timeout_secs.unwrap_or(10);
        if !(1..=300).contains(&external_refresh_timeout_secs) {
            return Err(ConfigError(format!(
                "auth.external_refresh_timeout_secs must be between 1 and 300, got {external_refresh_timeout_secs}"
            )));
        }

        let server = ServerConfig {
            allowed_origins: file.server.allowed_origins.unwrap_or_default(),
            allowed_hosts: file.server.allowed_hosts.unwrap_or_default(),
            max_message_bytes: positive(
                "server.max_message_bytes",
                file.server.max_message_bytes.unwrap_or(1024 * 1024),
            )?,
            max_connections: positive(
                "server.max_connections",
                file.server.max_connections.unwrap_or(256),
            )?,
            max_in_flight_per_connection: positive(
                "server.max_in_flight_per_connection",
                file.server.max_in_flight_per_connection.unwrap_or(128),
            )?,
            outbound_queue_messages: positive(
                "server.outbound_queue_messages",
                file.server.outbound_queue_messages.unwrap_or(1024),
            )?,
            outbound_queue_bytes: in_range(
                "server.outbound_queue_bytes",
                file.server.outbound_queue_bytes.unwrap_or(4 * 1024 * 1024),
                64 * 1024,
                1 << 30,
            )?,
            header_timeout: Duration::from_secs(in_range(
                "server.header_timeout_secs",
                file.server.header_timeout_secs.unwrap_or(10),
                1,
                300,
            )?),
            max_header_bytes: in_range(
                "server.max_header_bytes",
                file.server.max_header_bytes.unwrap_or(32 * 1024),
                8 * 1024,
                1024 * 1024,
            )?,
            ping_interval: Duration::from_secs(positive(
                "server.ping_interval_secs",
                file.server.ping_interval_secs.unwrap_or(30),
            )?),
            idle_timeout: Duration::from_secs(positive(
                "server.idle_timeout_secs",
                file.server.idle_timeout_secs.unwrap_or(60),
            )?),
            shutdown_grace: Duration::from_secs(file.server.shutdown_grace_secs.unwrap_or(5)),
        };

        Ok(Self {
            home,
            listen,
            chatgpt_base_url: file
                .chatgpt_base_url
                .unwrap_or_else(|| DEFAULT_CHATGPT_BASE_URL.to_owned()),
            forced_login_method: file.forced_login_method,
            forced_chatgpt_workspace_id: file.forced_chatgpt_workspace_id,
            requires_openai_auth: file.requires_openai_auth.unwrap_or(true),
            auth: AuthConfig {
                issuer,
                client_id: file
                    .auth
                    .client_id
                    .unwrap_or_else(|| DEFAULT_CLIENT_ID.to_owned()),
                login_port: file.auth.login_port.unwrap_or(DEFAULT_LOGIN_PORT),
                refresh_token_url,
                external_refresh_timeout: Duration::from_secs(external_refresh_timeout_secs),
                login_timeout: Duration::from_secs(positive(
                    "auth.login_timeout_secs",
                    file.auth.login_timeout_secs.unwrap_or(600),
                )?),
                device_code_timeout: Duration::from_secs(positive(
                    "auth.device_code_timeout_secs",
                    file.auth.device_code_timeout_secs.unwrap_or(900),
                )?),
            },
            server,
            backend: BackendConfig {
                max_concurrent: in_range(
                    "backend.max_concurrent",
                    file.backend.max_concurrent.unwrap_or(64),
                    1,
                    4096,
                )?,
            },
            ws_auth: ws_auth_settings(&options.ws_auth)?,
        })
    }

    pub fn auth_json_path(&self) -> PathBuf {
        self.home.join("auth.json")
    }

    pub fn server_json_path(&self) -> PathBuf {
        self.home.join("server.json")
    }
}

fn positive<T: PartialOrd + Default + fmt::Display>(key: &str, value: T) -> Result<T, ConfigError> {
    if value > T::default() {
        Ok(value)
    } else {
        Err(ConfigError(format!(
            "{key} must be greater than zero, got {value}"
        )))
    }
}

/// `value`, or `<key> must be between <min> and <max>` (TURNS §27's wording for every ranged key).
fn in_range<T: PartialOrd + fmt::Display>(
    key: &str,
    value: T,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    if value >= min && value <= max {
        Ok(value)
    } else {
        Err(ConfigError(format!(
            "{key} must be between {min} and {max}"
        )))
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

fn read_table(path: &Path, required: bool) -> Result<toml::Table, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(toml::Table::new());
        }
        Err(err) => {
            return Err(ConfigError(format!(
                "cannot read config file {}: {err}",
                path.display()
            )));
        }
    };
    text.parse::<toml::Table>()
        .map_err(|err| ConfigError(format!("invalid config file {}: {err}", path.display())))
}

fn parse_file_config(table: toml::Table, origin: &Path) -> Result<FileConfig, ConfigError> {
    let mut unknown = Vec::new();
    let file: FileConfig = serde_ignored::deserialize(toml::Value::Table(table), |path| {
        unknown.push(path.to_string());
    })
    .map_err(|err| ConfigError(format!("invalid config {}: {err}", origin.display())))?;
    for key in unknown {
        tracing::debug!(key, "ignoring unknown config key");
    }
    Ok(file)
}

/// Applies one `-c key=value`: dotted keys address tables; the value is TOML, else a plain string.
pub fn apply_override(table: &mut toml::Table, item: &str) -> Result<(), ConfigError> {
    let (key, raw_value) = item
        .split_once('=')
        .ok_or_else(|| ConfigError(format!("invalid -c override `{item}`; expected key=value")))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(ConfigError(format!(
            "invalid -c override `{item}`; empty key"
        )));
    }
    let value = parse_override_value(raw_value.trim());
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("key has at least one part");
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(inner) => inner,
            _ => {
                return Err(ConfigError(format!(
                    "invalid -c override `{item}`: `{part}` is not a table"
                )));
            }
        };
    }
    current.insert(last.to_owned(), value);
    Ok(())
}

fn parse_override_value(raw: &str) -> toml::Value {
    format!("value = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut table| table.remove("value"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_urls() {
        assert_eq!(Listen::parse("stdio://").unwrap(), Listen::Stdio);
        assert_eq!(
            Listen::parse("ws://127.0.0.1:0").unwrap(),
            Listen::Ws("127.0.0.1:0".parse().unwrap())
        );
        assert_eq!(
            Listen::parse("ws://[::1]:4500/").unwrap(),
            Listen::Ws("[::1]:4500".parse().unwrap())
        );
        let err = Listen::parse("http://localhost:80").unwrap_err();
        assert_eq!(
            err.0,
            "unsupported --listen URL `http://localhost:80`; expected `stdio://` or `ws://IP:PORT`"
        );
        assert_eq!(
            Listen::parse("ws://localhost:4500/").unwrap(),
            Listen::Ws("127.0.0.1:4500".parse().unwrap())
        );
        assert!(Listen::parse("ws://localhost:x").is_err());
        assert!(Listen::parse("ws://example.com:80").is_err());
    }

    #[test]
    fn overrides_parse_toml_else_string() {
        let mut table = toml::Table::new();
        apply_override(&mut table, "server.max_connections=3").unwrap();
        apply_override(&mut table, "chatgpt_base_url=http://127.0.0.1:9/x").unwrap();
        apply_override(&mut table, "forced_chatgpt_workspace_id=[\"a\",\"b\"]").unwrap();
        apply_override(&mut table, "forced_login_method=\"api\"").unwrap();
        let file = parse_file_config(table, Path::new("-c")).unwrap();
        assert_eq!(file.server.max_connections, Some(3));
        assert_eq!(
            file.chatgpt_base_url.as_deref(),
            Some("http://127.0.0.1:9/x")
        );
        assert_eq!(
            file.forced_chatgpt_workspace_id,
            Some(WorkspaceIds::Many(vec!["a".into(), "b".into()]))
        );
        assert_eq!(file.forced_login_method, Some(ForcedLoginMethod::Api));
    }

    #[test]
    fn wrong_types_are_errors_and_unknown_keys_are_not() {
        let err =
            Config::from_overrides("/tmp/h", &["server.max_connections=\"many\""]).unwrap_err();
        assert!(err.0.contains("max_connections"), "{err}");
        Config::from_overrides(
            "/tmp/h",
            &["model=\"gpt-5\"", "mcp_servers.x.command=\"y\""],
        )
        .unwrap();
    }

    #[test]
    fn ws_auth_flag_rules() {
        let flags = WsAuthFlags {
            token_file: Some("relative".into()),
            ..Default::default()
        };
        assert_eq!(
            ws_auth_settings(&flags).unwrap_err().0,
            "--ws-token-file must be an absolute path"
        );
        let flags = WsAuthFlags {
            mode: Some(WsAuthMode::SignedBearerToken),
            ..Default::default()
        };
        assert_eq!(
            ws_auth_settings(&flags).unwrap_err().0,
            "`--ws-shared-secret-file` is required when `--ws-auth signed-bearer-token` is set"
        );
        let flags = WsAuthFlags {
            mode: Some(WsAuthMode::None),
            token_file: Some("/abs".into()),
            ..Default::default()
        };
        assert_eq!(
            ws_auth_settings(&flags).unwrap_err().0,
            "websocket auth flags require `--ws-auth capability-token` or `--ws-auth signed-bearer-token`"
        );
    }

    #[test]
    fn refresh_timeout_range() {
        assert!(Config::from_overrides("/h", &["auth.external_refresh_timeout_secs=0"]).is_err());
        assert!(Config::from_overrides("/h", &["auth.external_refresh_timeout_secs=301"]).is_err());
        let config =
            Config::from_overrides("/h", &["auth.external_refresh_timeout_secs=2"]).unwrap();
        assert_eq!(config.auth.external_refresh_timeout, Duration::from_secs(2));
    }

    #[test]
    fn the_documented_example_is_valid_and_matches_the_defaults() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/authbridge.toml");
        let options = LoadOptions {
            home: Some("/tmp/authbridge-example-home".into()),
            config_file: Some(example),
            ..Default::default()
        };
        let loaded = Config::load(&options).unwrap();
        let defaults = Config::with_home("/tmp/authbridge-example-home");
        assert_eq!(format!("{loaded:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn a_missing_explicit_config_file_is_an_error() {
        let options = LoadOptions {
            home: Some("/tmp/h".into()),
            config_file: Some("/nonexistent/authbridge.toml".into()),
            ..Default::default()
        };
        assert!(
            Config::load(&options)
                .unwrap_err()
                .0
                .contains("cannot read config file")
        );
    }
}
