//! The `[model]`, `[turns]` and `[proxy]` sections (TURNS §27): where model requests go, the model
//! catalog `model/list` serves, retry and tool limits, and the concurrency cap on running turns.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::range::{in_range, seconds};
use crate::protocol::ReasoningEffort;

pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_INSTRUCTIONS: &str = "You are a helpful assistant. Answer accurately and concisely. Use the provided tools when they help.";

/// Model requests (TURNS §20).
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// ChatGPT accounts: `POST <this>/responses` (no trailing `/`).
    pub chatgpt_base_url: String,
    /// API-key accounts and `requires_openai_auth = false`.
    pub openai_base_url: String,
    /// The model a thread uses unless it names one: `model.default`, else the catalog's default.
    pub default: Option<String>,
    pub instructions: String,
    pub catalog: Vec<CatalogEntry>,
    pub request_max_retries: u32,
    pub stream_max_retries: u32,
    pub retry_base_delay: Duration,
    pub max_tool_rounds: u32,
    pub tool_call_timeout: Duration,
}

/// One model of `model/list`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_efforts")]
    pub supported_reasoning_efforts: Vec<ReasoningEffort>,
    #[serde(default = "default_effort")]
    pub default_reasoning_effort: ReasoningEffort,
    #[serde(default)]
    pub is_default: bool,
    #[serde(default)]
    pub context_window: Option<i64>,
}

impl CatalogEntry {
    pub fn display_name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.id)
    }
}

fn default_efforts() -> Vec<ReasoningEffort> {
    vec![
        ReasoningEffort::Low,
        ReasoningEffort::Medium,
        ReasoningEffort::High,
    ]
}

fn default_effort() -> ReasoningEffort {
    ReasoningEffort::Medium
}

impl ModelConfig {
    /// The catalog entry for `model`, if it is listed.
    pub fn entry(&self, model: &str) -> Option<&CatalogEntry> {
        self.catalog.iter().find(|entry| entry.id == model)
    }
}

/// Turns (TURNS §23).
#[derive(Clone, Copy, Debug)]
pub struct TurnsConfig {
    /// Running turns plus proxied requests, process-wide.
    pub max_concurrent: usize,
}

/// The local Responses endpoint (TURNS §26).
#[derive(Clone, Copy, Debug)]
pub struct ProxyConfig {
    pub enabled: bool,
    pub max_body_bytes: usize,
}

/// Codex 0.94.0's models, with its descriptions and context windows.
fn default_catalog() -> Vec<CatalogEntry> {
    use ReasoningEffort::{High, Low, Medium, Xhigh};
    let entry = |id: &str, description: &str, efforts: &[ReasoningEffort]| CatalogEntry {
        id: id.to_owned(),
        display_name: None,
        description: description.to_owned(),
        supported_reasoning_efforts: efforts.to_vec(),
        default_reasoning_effort: Medium,
        is_default: false,
        context_window: Some(272_000),
    };
    let mut codex = entry(
        "gpt-5.2-codex",
        "Latest frontier agentic coding model.",
        &[Low, Medium, High, Xhigh],
    );
    codex.is_default = true;
    vec![
        codex,
        entry(
            "gpt-5.2",
            "Latest frontier model with improvements across knowledge, reasoning and coding",
            &[Low, Medium, High, Xhigh],
        ),
        entry(
            "gpt-5.1-codex-max",
            "Codex-optimized flagship for deep and fast reasoning.",
            &[Low, Medium, High, Xhigh],
        ),
        entry(
            "gpt-5.1-codex-mini",
            "Optimized for codex. Cheaper, faster, but less capable.",
            &[Medium, High],
        ),
    ]
}

/// `[model]`; a plain string (Codex's top-level `model = "gpt-5.2"`) names the default model.
#[derive(Debug, Default)]
pub(super) struct FileModel(FileModelTable);

impl<'de> Deserialize<'de> for FileModel {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(deserializer)? {
            toml::Value::String(name) => Ok(Self(FileModelTable {
                default: Some(name),
                ..FileModelTable::default()
            })),
            table => table
                .try_into::<FileModelTable>()
                .map(Self)
                .map_err(|err| serde::de::Error::custom(format!("in `model`: {err}"))),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FileModelTable {
    chatgpt_base_url: Option<String>,
    openai_base_url: Option<String>,
    default: Option<String>,
    instructions: Option<String>,
    catalog: Option<Vec<CatalogEntry>>,
    request_max_retries: Option<u32>,
    stream_max_retries: Option<u32>,
    retry_base_delay_ms: Option<u64>,
    max_tool_rounds: Option<u32>,
    tool_call_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct FileTurns {
    max_concurrent: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct FileProxy {
    enabled: Option<bool>,
    max_body_bytes: Option<usize>,
}

impl FileModel {
    /// `chatgpt_base_url` is the top-level key (SPEC §9.1), which `model.chatgpt_base_url`
    /// defaults from.
    pub(super) fn build(self, chatgpt_base_url: &str) -> Result<ModelConfig, ConfigError> {
        let Self(file) = self;
        let catalog = file.catalog.unwrap_or_else(default_catalog);
        let default = file.default.or_else(|| {
            catalog
                .iter()
                .find(|entry| entry.is_default)
                .or(catalog.first())
                .map(|entry| entry.id.clone())
        });
        Ok(ModelConfig {
            chatgpt_base_url: file
                .chatgpt_base_url
                .map(|url| url.trim_end_matches('/').to_owned())
                .unwrap_or_else(|| format!("{}/codex", chatgpt_backend_base(chatgpt_base_url))),
            openai_base_url: file
                .openai_base_url
                .unwrap_or_else(|| DEFAULT_OPENAI_BASE_URL.to_owned())
                .trim_end_matches('/')
                .to_owned(),
            default,
            instructions: file
                .instructions
                .unwrap_or_else(|| DEFAULT_INSTRUCTIONS.to_owned()),
            catalog,
            request_max_retries: in_range(
                "model.request_max_retries",
                file.request_max_retries.unwrap_or(4),
                0,
                20,
            )?,
            stream_max_retries: in_range(
                "model.stream_max_retries",
                file.stream_max_retries.unwrap_or(5),
                0,
                20,
            )?,
            retry_base_delay: Duration::from_millis(in_range(
                "model.retry_base_delay_ms",
                file.retry_base_delay_ms.unwrap_or(200),
                0,
                60_000,
            )?),
            max_tool_rounds: in_range(
                "model.max_tool_rounds",
                file.max_tool_rounds.unwrap_or(16),
                1,
                1000,
            )?,
            tool_call_timeout: seconds(
                "model.tool_call_timeout_secs",
                file.tool_call_timeout_secs.unwrap_or(60),
                1,
                3600,
            )?,
        })
    }
}

impl FileTurns {
    pub(super) fn build(self) -> Result<TurnsConfig, ConfigError> {
        Ok(TurnsConfig {
            max_concurrent: in_range(
                "turns.max_concurrent",
                self.max_concurrent.unwrap_or(64),
                1,
                10_000,
            )?,
        })
    }
}

impl FileProxy {
    pub(super) fn build(self) -> Result<ProxyConfig, ConfigError> {
        Ok(ProxyConfig {
            enabled: self.enabled.unwrap_or(true),
            max_body_bytes: in_range(
                "proxy.max_body_bytes",
                self.max_body_bytes.unwrap_or(8 * 1024 * 1024),
                1024,
                1 << 30,
            )?,
        })
    }
}

/// `chatgpt_base_url` normalized as SPEC §9.1: no trailing `/`, and `/backend-api` appended to
/// chatgpt.com and chat.openai.com bases that lack it.
pub fn chatgpt_backend_base(chatgpt_base_url: &str) -> String {
    let mut base = chatgpt_base_url.trim_end_matches('/').to_owned();
    let chatgpt_host =
        base.starts_with("https://chatgpt.com") || base.starts_with("https://chat.openai.com");
    if chatgpt_host && !base.contains("/backend-api") {
        base.push_str("/backend-api");
    }
    base
}
