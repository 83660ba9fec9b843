//! The usage endpoint: where it is, and how its answer maps to Codex's snapshot (SPEC §9.1, §9.4).

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde::Deserialize;
use serde_json::Value;

use crate::backend::{AuthFailure, BackendClient, BackendError};
use crate::config::chatgpt_backend_base;
use crate::protocol::{CreditsSnapshot, PlanType, RateLimitSnapshot, RateLimitWindow};

/// `GET <base>/wham/usage` for `/backend-api` bases, else `GET <base>/api/codex/usage`.
pub fn usage_url(chatgpt_base_url: &str) -> String {
    let base = chatgpt_backend_base(chatgpt_base_url);
    if base.contains("/backend-api") {
        format!("{base}/wham/usage")
    } else {
        format!("{base}/api/codex/usage")
    }
}

/// Why reading the usage endpoint failed; `Display` is the text after
/// `failed to fetch codex rate limits: ` (SPEC §9.5).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Auth(AuthFailure),
    #[error("GET {url} failed: {error}")]
    Request { url: String, error: BackendError },
    #[error("GET {url} failed: cannot read body: {detail}")]
    Body { url: String, detail: String },
    #[error("GET {url} failed: {status}; content-type={content_type}; body={body}")]
    Status {
        url: String,
        status: StatusCode,
        content_type: String,
        body: String,
    },
    #[error("Decode error for {url}: {detail}; content-type={content_type}; body={body}")]
    Decode {
        url: String,
        detail: String,
        content_type: String,
        body: String,
    },
}

/// Fetches and maps the snapshot.
pub async fn fetch(
    client: &BackendClient,
    url: &str,
    headers: HeaderMap,
) -> Result<RateLimitSnapshot, FetchError> {
    let response = client.get(url, headers).await.map_err(|err| match err {
        BackendError::Auth(failure) => FetchError::Auth(failure),
        error => FetchError::Request {
            url: url.to_owned(),
            error,
        },
    })?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("unknown")
        .to_owned();
    let body = response.text().await.map_err(|err| FetchError::Body {
        url: url.to_owned(),
        detail: err.to_string(),
    })?;
    if !status.is_success() {
        return Err(FetchError::Status {
            url: url.to_owned(),
            status,
            content_type,
            body,
        });
    }
    let usage: Usage = serde_json::from_str(&body).map_err(|err| FetchError::Decode {
        url: url.to_owned(),
        detail: err.to_string(),
        content_type: content_type.clone(),
        body: body.clone(),
    })?;
    Ok(usage.into_snapshot())
}

/// The rate limits a model response's headers report (TURNS §21): `x-codex-primary-*`,
/// `x-codex-secondary-*` and `x-codex-credits-*`; `None` if none is present.
pub fn from_headers(headers: &HeaderMap) -> Option<RateLimitSnapshot> {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let number = |name: &str| text(name).and_then(|value| value.trim().parse::<f64>().ok());
    let window = |prefix: &str| {
        number(&format!("x-codex-{prefix}-used-percent")).map(|used| RateLimitWindow {
            // Rounded half away from zero: 12.5 → 13.
            used_percent: used.round() as i32,
            window_duration_mins: number(&format!("x-codex-{prefix}-window-minutes"))
                .map(|minutes| minutes as i64),
            resets_at: number(&format!("x-codex-{prefix}-reset-at")).map(|at| at as i64),
        })
    };
    let primary = window("primary");
    let secondary = window("secondary");
    let has_credits = text("x-codex-credits-has-credits");
    let unlimited = text("x-codex-credits-unlimited");
    let balance = text("x-codex-credits-balance");
    let credits = (has_credits.is_some() || unlimited.is_some() || balance.is_some()).then(|| {
        CreditsSnapshot {
            has_credits: has_credits.is_some_and(is_true),
            unlimited: unlimited.is_some_and(is_true),
            balance: balance.map(str::to_owned),
        }
    });
    if primary.is_none() && secondary.is_none() && credits.is_none() {
        return None;
    }
    Some(RateLimitSnapshot {
        primary,
        secondary,
        credits,
        plan_type: None,
    })
}

fn is_true(value: &str) -> bool {
    value.trim().eq_ignore_ascii_case("true")
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
    fn response_headers_carry_rate_limits() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-codex-primary-used-percent", "12.5"),
            ("x-codex-primary-window-minutes", "300"),
            ("x-codex-primary-reset-at", "1764580000"),
            ("x-codex-secondary-used-percent", "40"),
            ("x-codex-secondary-window-minutes", "10080"),
            ("x-codex-credits-has-credits", "False"),
            ("x-codex-credits-unlimited", "false"),
        ] {
            headers.insert(name, value.parse().unwrap());
        }
        let snapshot = serde_json::to_value(from_headers(&headers).unwrap()).unwrap();
        assert_eq!(
            snapshot,
            json!({"primary": {"usedPercent": 13, "windowDurationMins": 300, "resetsAt": 1764580000},
                   "secondary": {"usedPercent": 40, "windowDurationMins": 10080, "resetsAt": null},
                   "credits": {"hasCredits": false, "unlimited": false, "balance": null},
                   "planType": null})
        );
        assert_eq!(from_headers(&HeaderMap::new()), None);
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
