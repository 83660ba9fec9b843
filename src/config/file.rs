//! The TOML shape of the configuration, the `-c key=value` overrides applied to it, and the
//! defaults and ranges each section's keys get when built into [`Config`](super::Config)'s types.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::model::{FileModel, FileProxy, FileTurns};
use super::range::{in_range, positive, seconds};
use super::{
    AuthConfig, BackendConfig, ConfigError, DEFAULT_CLIENT_ID, DEFAULT_ISSUER, DEFAULT_LOGIN_PORT,
    ForcedLoginMethod, ServerConfig, WorkspaceIds,
};

/// The TOML file's shape. Every member is optional; absent ones take defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct FileConfig {
    pub(super) chatgpt_base_url: Option<String>,
    pub(super) forced_login_method: Option<ForcedLoginMethod>,
    pub(super) forced_chatgpt_workspace_id: Option<WorkspaceIds>,
    pub(super) requires_openai_auth: Option<bool>,
    pub(super) auth: FileAuth,
    pub(super) server: FileServer,
    pub(super) backend: FileBackend,
    pub(super) model: FileModel,
    pub(super) turns: FileTurns,
    pub(super) proxy: FileProxy,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct FileBackend {
    pub(super) max_concurrent: Option<usize>,
    pub(super) idle_connections: Option<usize>,
    pub(super) idle_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct FileAuth {
    pub(super) issuer: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) login_port: Option<u16>,
    pub(super) refresh_token_url: Option<String>,
    pub(super) external_refresh_timeout_secs: Option<u64>,
    pub(super) login_timeout_secs: Option<u64>,
    pub(super) device_code_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct FileServer {
    pub(super) listen: Option<String>,
    pub(super) allowed_origins: Option<Vec<String>>,
    pub(super) allowed_hosts: Option<Vec<String>>,
    pub(super) max_message_bytes: Option<usize>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_in_flight_per_connection: Option<usize>,
    pub(super) outbound_queue_messages: Option<usize>,
    pub(super) outbound_queue_bytes: Option<usize>,
    pub(super) header_timeout_secs: Option<u64>,
    pub(super) max_header_bytes: Option<usize>,
    pub(super) ping_interval_secs: Option<u64>,
    pub(super) idle_timeout_secs: Option<u64>,
    pub(super) shutdown_grace_secs: Option<u64>,
}

impl FileAuth {
    pub(super) fn build(self) -> Result<AuthConfig, ConfigError> {
        let issuer = self
            .issuer
            .unwrap_or_else(|| DEFAULT_ISSUER.to_owned())
            .trim_end_matches('/')
            .to_owned();
        let refresh_token_url = self
            .refresh_token_url
            .unwrap_or_else(|| format!("{issuer}/oauth/token"));
        Ok(AuthConfig {
            client_id: self
                .client_id
                .unwrap_or_else(|| DEFAULT_CLIENT_ID.to_owned()),
            login_port: self.login_port.unwrap_or(DEFAULT_LOGIN_PORT),
            issuer,
            refresh_token_url,
            external_refresh_timeout: seconds(
                "auth.external_refresh_timeout_secs",
                self.external_refresh_timeout_secs.unwrap_or(10),
                1,
                300,
            )?,
            login_timeout: Duration::from_secs(positive(
                "auth.login_timeout_secs",
                self.login_timeout_secs.unwrap_or(600),
            )?),
            device_code_timeout: Duration::from_secs(positive(
                "auth.device_code_timeout_secs",
                self.device_code_timeout_secs.unwrap_or(900),
            )?),
        })
    }
}

impl FileServer {
    pub(super) fn build(self) -> Result<ServerConfig, ConfigError> {
        Ok(ServerConfig {
            allowed_origins: self.allowed_origins.unwrap_or_default(),
            allowed_hosts: self.allowed_hosts.unwrap_or_default(),
            max_message_bytes: positive(
                "server.max_message_bytes",
                self.max_message_bytes.unwrap_or(1024 * 1024),
            )?,
            max_connections: positive(
                "server.max_connections",
                self.max_connections.unwrap_or(256),
            )?,
            max_in_flight_per_connection: positive(
                "server.max_in_flight_per_connection",
                self.max_in_flight_per_connection.unwrap_or(128),
            )?,
            outbound_queue_messages: positive(
                "server.outbound_queue_messages",
                self.outbound_queue_messages.unwrap_or(1024),
            )?,
            outbound_queue_bytes: in_range(
                "server.outbound_queue_bytes",
                self.outbound_queue_bytes.unwrap_or(4 * 1024 * 1024),
                64 * 1024,
                1 << 30,
            )?,
            header_timeout: seconds(
                "server.header_timeout_secs",
                self.header_timeout_secs.unwrap_or(10),
                1,
                300,
            )?,
            max_header_bytes: in_range(
                "server.max_header_bytes",
                self.max_header_bytes.unwrap_or(32 * 1024),
                8 * 1024,
                1024 * 1024,
            )?,
            ping_interval: Duration::from_secs(positive(
                "server.ping_interval_secs",
                self.ping_interval_secs.unwrap_or(30),
            )?),
            idle_timeout: Duration::from_secs(positive(
                "server.idle_timeout_secs",
                self.idle_timeout_secs.unwrap_or(60),
            )?),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs.unwrap_or(5)),
        })
    }
}

impl FileBackend {
    pub(super) fn build(self) -> Result<BackendConfig, ConfigError> {
        Ok(BackendConfig {
            max_concurrent: in_range(
                "backend.max_concurrent",
                self.max_concurrent.unwrap_or(64),
                1,
                4096,
            )?,
            idle_connections: in_range(
                "backend.idle_connections",
                self.idle_connections.unwrap_or(64),
                0,
                4096,
            )?,
            idle_timeout: Duration::from_secs(in_range(
                "backend.idle_timeout_secs",
                self.idle_timeout_secs.unwrap_or(90),
                1,
                3600,
            )?),
        })
    }
}

pub(super) fn read_table(path: &Path, required: bool) -> Result<toml::Table, ConfigError> {
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

pub(super) fn parse_file_config(
    table: toml::Table,
    origin: &Path,
) -> Result<FileConfig, ConfigError> {
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
pub(super) fn apply_override(table: &mut toml::Table, item: &str) -> Result<(), ConfigError> {
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
