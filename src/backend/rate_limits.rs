//! The usage endpoint: where it is, and how its answer maps to Codex's snapshot (SPEC §9.1, §9.4).

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde::Deserialize;
use serde_json::Value;

use crate::backend::{BackendClient, BackendError};
use crate::protocol::{CreditsSnapshot, PlanType, RateLimitSnapshot, RateLimitWindow};

/// `GET <base>/wham/usage` for `/backend-api` bases, else `GET <base>/api/codex/usage`.
pub fn usage_url(chatgpt_base_url: &str) -> String {
    let mut base = chatgpt_base_url.trim_end_matches('/').to_owned();
    let chatgpt_host =
        base.starts_with("https://chatgpt.com") || base.starts_with("https://chat.openai.com");
    if chatgpt_host && !base.contains("/backend-api") {
        base.push_str("/backend-api");
    }
    if base.contains("/backend-api") {
        format!("{base}/wham/usage")
    } else {
        format!("{base}/api/codex/usage")
    }
}

/// Fetches and maps the snapshot. `Err` is the text after `failed to fetch codex rate limits: `.
pub async fn fetch(
    client: &BackendClient,
    url: &str,
    headers: HeaderMap,
) -> Result<RateLimitSnapshot, String> {
    let response = client.get(url, headers).await.map_err(|err| match err {
        BackendError::Auth(failure) => failure.0,
        other => format!("GET {url} failed: {other}"),
    })?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("unknown")
        .to_owned();
    let body = response
        .text()
        .await
        .map_err(|err| format!("GET {url} failed: cannot read body: {err}"))?;
    if !status.is_success() {
        return Err(format!(
            "GET {url} failed: {status}; content-type={content_type}; body={body}"
        ));
    }
    let usage: Usage = serde_json::from_str(&body).map_err(|err| {
        format!("Decode error for {url}: {err}; content-type={content_type}; body={body}")
    })?;
    Ok(usage.into_snapshot())
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    plan_type: Option<String>,
    #[serde(default)]
    rate_limit: Option<UsageRateLimit>,
    #[serde(default)]
    credits: Option<UsageCredits>,
}

#[derive(Deserialize)]
struct UsageRateLimit {
    #[serde(default)]
    primary_window: Option<UsageWindow>,
    #[serde(default)]
    secondary_window: Option<UsageWindow>,
}

#[derive(Deserialize)]
struct UsageWindow {
    used_percent: f64,
    #[serde(default)]
    limit_window_seconds: Option<i64>,
    #[serde(default)]
    reset_at: Option<i64>,
}

#[derive(Deserialize)]
struct UsageCredits {
    #[serde(default)]
    has_credits: bool,
    #[serde(default)]
    unlimited: bool,
    #[serde(default)]
    balance: Option<Value>,
}

impl Usage {
    fn into_snapshot(self) -> RateLimitSnapshot {
        let (primary, secondary) = match self.rate_limit {
            Some(limits) => (
                limits.primary_window.map(UsageWindow::into_window),
                limits.secondary_window.map(UsageWindow::into_window),
            ),
            None => (None, None),
        };
        RateLimitSnapshot {
            primary,
            secondary,
            credits: self.credits.map(|credits| CreditsSnapshot {
                has_credits: credits.has_credits,
                unlimited: credits.unlimited,
                balance: credits.balance.and_then(|balance| match balance {
                    Value::String(text) => Some(text),
                    Value::Number(number) => Some(number.to_string()),
                    _ => None,
                }),
            }),
            plan_type: self.plan_type.as_deref().map(PlanType::from_claim),
        }
    }
}

impl UsageWindow {
    fn into_window(self) -> RateLimitWindow {
        RateLimitWindow {
            used_percent: self.used_percent.round() as i32,
            window_duration_mins: self
                .limit_window_seconds
                .filter(|seconds| *seconds > 0)
                .map(|seconds| (seconds + 59) / 60),
            resets_at: self.reset_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn url_rules() {
        assert_eq!(
            usage_url("https://chatgpt.com/backend-api/"),
            "https://chatgpt.com/backend-api/wham/usage"
        );
        assert_eq!(
            usage_url("https://chatgpt.com"),
            "https://chatgpt.com/backend-api/wham/usage"
        );
        assert_eq!(
            usage_url("https://chat.openai.com/"),
            "https://chat.openai.com/backend-api/wham/usage"
        );
        assert_eq!(
            usage_url("http://127.0.0.1:5000"),
            "http://127.0.0.1:5000/api/codex/usage"
        );
        assert_eq!(
            usage_url("http://127.0.0.1:5000/backend-api/"),
            "http://127.0.0.1:5000/backend-api/wham/usage"
        );
    }

    #[test]
    fn maps_the_codex_example() {
        let usage: Usage = serde_json::from_value(json!({
            "plan_type": "pro",
            "rate_limit": {
                "allowed": true, "limit_reached": false,
                "primary_window": {"used_percent": 42, "limit_window_seconds": 3600, "reset_at": 1735689720, "reset_after_seconds": 5},
                "secondary_window": {"used_percent": 5, "limit_window_seconds": 86400, "reset_at": 1735693200}
            },
            "additional_rate_limits": []
        }))
        .unwrap();
        let snapshot = serde_json::to_value(usage.into_snapshot()).unwrap();
        assert_eq!(
            snapshot,
            json!({"primary":{"usedPercent":42,"windowDurationMins":60,"resetsAt":1735689720},
                   "secondary":{"usedPercent":5,"windowDurationMins":1440,"resetsAt":1735693200},
                   "credits":null,"planType":"pro"})
        );
    }

    #[test]
    fn rounds_and_handles_missing_parts() {
        let usage: Usage = serde_json::from_value(json!({
            "rate_limit": {"primary_window": {"used_percent": 12.6, "limit_window_seconds": 0}},
            "credits": {"has_credits": true, "unlimited": false, "balance": 12.5}
        }))
        .unwrap();
        let snapshot = serde_json::to_value(usage.into_snapshot()).unwrap();
        assert_eq!(
            snapshot,
            json!({"primary":{"usedPercent":13,"windowDurationMins":null,"resetsAt":null},
                   "secondary":null,
                   "credits":{"hasCredits":true,"unlimited":false,"balance":"12.5"},"planType":null})
        );
        let ceil: Usage = serde_json::from_value(json!({"rate_limit": {"primary_window": {"used_percent": 1, "limit_window_seconds": 61}}})).unwrap();
        assert_eq!(
            ceil.into_snapshot().primary.unwrap().window_duration_mins,
            Some(2)
        );
    }
}
