//! The model request of one turn step (TURNS §20): where it goes for the account's mode, its
//! headers, and its body — the same bytes on every retry.

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use reqwest::{Method, Url};
use serde_json::{Map, Value, json};

use crate::account::credentials::Snapshot;
use crate::backend::{BackendRequest, Signing};
use crate::config::ModelConfig;
use crate::protocol::ReasoningSummary;
use crate::store::ThreadSettings;

/// How long a model request waits for response headers before it counts as a transport failure.
const HEADERS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Where a request goes and how it is signed, for the account as it is now (TURNS §20.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub url: String,
    pub signing: Signing,
}

impl Route {
    /// `None` when there is no account to sign with (and one is required).
    pub fn for_account(
        snapshot: &Snapshot,
        requires_openai_auth: bool,
        model: &ModelConfig,
    ) -> Option<Self> {
        if !requires_openai_auth {
            return Some(Self {
                url: format!("{}/responses", model.openai_base_url),
                signing: Signing::Anonymous,
            });
        }
        match snapshot {
            Snapshot::External { .. } | Snapshot::Managed { latched: false, .. } => Some(Self {
                url: format!("{}/responses", model.chatgpt_base_url),
                signing: Signing::Chatgpt,
            }),
            Snapshot::ApiKey(_) => Some(Self {
                url: format!("{}/responses", model.openai_base_url),
                signing: Signing::ApiKey,
            }),
            Snapshot::None | Snapshot::Managed { latched: true, .. } => None,
        }
    }
}

/// What a request carries besides its body.
pub struct RequestHeaders<'a> {
    pub originator: &'a str,
    pub user_agent: &'a str,
    pub thread_id: &'a str,
}

/// Builds the HTTP request for `route` with `body` (already serialized).
pub fn build(
    route: &Route,
    headers: &RequestHeaders<'_>,
    body: Bytes,
) -> Result<BackendRequest, String> {
    let url = Url::parse(&route.url).map_err(|err| format!("invalid URL {}: {err}", route.url))?;
    let mut request = reqwest::Request::new(Method::POST, url);
    let map = request.headers_mut();
    insert(map, ACCEPT, "text/event-stream");
    insert(map, CONTENT_TYPE, "application/json");
    insert(map, USER_AGENT, headers.user_agent);
    insert(
        map,
        HeaderName::from_static("originator"),
        headers.originator,
    );
    insert(
        map,
        HeaderName::from_static("session_id"),
        headers.thread_id,
    );
    insert(
        map,
        HeaderName::from_static("version"),
        env!("CARGO_PKG_VERSION"),
    );
    *request.body_mut() = Some(body.into());
    Ok(BackendRequest {
        http: request,
        signing: route.signing,
        headers_timeout: HEADERS_TIMEOUT,
        recover_after: None,
    })
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// The request body (TURNS §20.3).
pub fn body(
    settings: &ThreadSettings,
    config: &ModelConfig,
    thread_id: &str,
    input: Vec<Value>,
    tools: &[Value],
    output_schema: Option<&Value>,
) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(settings.model));
    body.insert(
        "instructions".into(),
        json!(
            settings
                .base_instructions
                .as_deref()
                .unwrap_or(&config.instructions)
        ),
    );
    body.insert("input".into(), Value::Array(input));
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools.to_vec()));
        body.insert("tool_choice".into(), json!("auto"));
        body.insert("parallel_tool_calls".into(), json!(true));
    }
    let effort = settings.effort.or_else(|| {
        config
            .entry(&settings.model)
            .map(|entry| entry.default_reasoning_effort)
    });
    if let Some(effort) = effort {
        let mut reasoning = json!({"effort": effort});
        match settings.summary.unwrap_or(ReasoningSummary::Auto) {
            ReasoningSummary::None => {}
            summary => reasoning["summary"] = json!(summary),
        }
        body.insert("reasoning".into(), reasoning);
        body.insert("include".into(), json!(["reasoning.encrypted_content"]));
    }
    if let Some(schema) = output_schema {
        body.insert(
            "text".into(),
            json!({"format": {"type": "json_schema", "name": "codex_output_schema", "schema": schema, "strict": true}}),
        );
    }
    body.insert("store".into(), json!(false));
    body.insert("stream".into(), json!(true));
    body.insert("prompt_cache_key".into(), json!(thread_id));
    Value::Object(body)
}
