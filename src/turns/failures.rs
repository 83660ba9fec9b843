//! What goes wrong with a model request, and what the client is told (TURNS §22): which failures
//! are retried silently, which as stream retries (`Reconnecting... n/M`), which end the turn at
//! once, with Codex's texts; and the backoff between attempts.

use std::time::Duration;

use chrono::{DateTime, Datelike, Local, TimeZone};
use reqwest::StatusCode;
use serde_json::Value;

use crate::protocol::{CodexErrorInfo, TurnError};
use crate::turns::events::ResponseFailure;

const HIGH_DEMAND: &str =
    "We're currently experiencing high demand, which may cause temporary errors.";
const CONTEXT_WINDOW: &str = "Codex ran out of room in the model's context window. Start a new thread or clear earlier history before retrying.";
const QUOTA: &str = "Quota exceeded. Check your plan and billing details.";
const UPGRADE_TO_PLUS: &str =
    "To use Codex with your ChatGPT plan, upgrade to Plus: https://chatgpt.com/explore/plus.";
const STREAM_DISCONNECTED: &str = "stream disconnected before completion";

/// Why one stream attempt did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptFailure {
    /// Ends the turn at once (§22.1, §22.4).
    Fatal(TurnError),
    /// Worth another stream attempt (§22.3); `cause` is the text the client sees.
    Retryable {
        cause: String,
        /// The HTTP status, when the cause was one (decides `httpStatusCode` and the final info).
        status: Option<u16>,
    },
}

impl AttemptFailure {
    fn fatal(message: impl Into<String>, info: CodexErrorInfo) -> Self {
        Self::Fatal(TurnError {
            message: message.into(),
            codex_error_info: Some(info),
            additional_details: None,
        })
    }

    /// A failed refresh, or a 401 nothing can recover (§22.1).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::fatal(message, CodexErrorInfo::Unauthorized)
    }

    /// The connection was lost, or went silent, mid-stream.
    pub fn disconnected(detail: impl std::fmt::Display) -> Self {
        Self::Retryable {
            cause: format!("{STREAM_DISCONNECTED}: {detail}"),
            status: None,
        }
    }

    /// A transport error before any response headers (after the silent retries).
    pub fn connection_failed(detail: impl std::fmt::Display) -> Self {
        Self::Retryable {
            cause: format!("Connection failed: {detail}"),
            status: None,
        }
    }

    /// The body ended without `response.completed`.
    pub fn closed_early() -> Self {
        Self::disconnected("stream closed before response.completed")
    }

    /// `response.failed`, an `error` event or `response.incomplete` (§21, §22.4).
    pub fn from_event(failure: &ResponseFailure) -> Self {
        match failure {
            ResponseFailure::Error { code, .. }
                if code.as_deref() == Some("context_length_exceeded") =>
            {
                Self::fatal(CONTEXT_WINDOW, CodexErrorInfo::ContextWindowExceeded)
            }
            ResponseFailure::Error { code, .. }
                if code.as_deref() == Some("insufficient_quota") =>
            {
                Self::fatal(QUOTA, CodexErrorInfo::UsageLimitExceeded)
            }
            ResponseFailure::Error { message, .. } => Self::disconnected(message),
            ResponseFailure::Incomplete { reason } => {
                Self::disconnected(format!("Incomplete response returned, reason: {reason}"))
            }
        }
    }

    /// A non-success HTTP answer (after the silent retries of 5xx).
    pub fn from_status(status: StatusCode, body: &str) -> Self {
        let code = status.as_u16();
        let unexpected = || format!("unexpected status {status}: {body}");
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            return Self::Retryable {
                cause: HIGH_DEMAND.to_owned(),
                status: Some(code),
            };
        }
        if status.is_server_error() {
            return Self::Retryable {
                cause: unexpected(),
                status: Some(code),
            };
        }
        let error = serde_json::from_str::<Value>(body).unwrap_or_default();
        let error = &error["error"];
        if status == StatusCode::UNAUTHORIZED {
            return Self::unauthorized(unexpected());
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            return match error["type"].as_str() {
                Some("usage_limit_reached") => Self::fatal(
                    usage_limit_text(error["plan_type"].as_str(), error["resets_at"].as_i64()),
                    CodexErrorInfo::UsageLimitExceeded,
                ),
                Some("usage_not_included") => {
                    Self::fatal(UPGRADE_TO_PLUS, CodexErrorInfo::UsageLimitExceeded)
                }
                _ => Self::fatal(
                    format!("exceeded retry limit, last status: {status}"),
                    CodexErrorInfo::ResponseTooManyFailedAttempts {
                        http_status_code: Some(code),
                    },
                ),
            };
        }
        if error["code"].as_str() == Some("context_length_exceeded") {
            return Self::fatal(CONTEXT_WINDOW, CodexErrorInfo::ContextWindowExceeded);
        }
        if status == StatusCode::BAD_REQUEST {
            return Self::fatal(body, CodexErrorInfo::BadRequest);
        }
        Self::fatal(unexpected(), CodexErrorInfo::Other)
    }
}

/// The `error {willRetry:true}` before stream retry `n` of `max`.
pub fn reconnecting(n: u32, max: u32, cause: &str, status: Option<u16>) -> TurnError {
    TurnError {
        message: format!("Reconnecting... {n}/{max}"),
        codex_error_info: Some(CodexErrorInfo::ResponseStreamDisconnected {
            http_status_code: status.filter(|status| *status != 500),
        }),
        additional_details: Some(cause.to_owned()),
    }
}

/// The error that ends the turn after the last stream retry.
pub fn retries_exhausted(cause: String, status: Option<u16>) -> TurnError {
    TurnError {
        message: cause,
        codex_error_info: Some(if status == Some(500) {
            CodexErrorInfo::InternalServerError
        } else {
            CodexErrorInfo::Other
        }),
        additional_details: None,
    }
}

/// A turn that ends for a reason of its own (tool round limit, a store write), `other`.
pub fn other(message: impl Into<String>) -> TurnError {
    TurnError {
        message: message.into(),
        codex_error_info: Some(CodexErrorInfo::Other),
        additional_details: None,
    }
}

/// Codex 0.94.0's usage-limit message for a plan, with when the limit resets.
pub fn usage_limit_text(plan: Option<&str>, resets_at: Option<i64>) -> String {
    let reset = resets_at.and_then(|at| Local.timestamp_opt(at, 0).single());
    let when = reset.map(|at| reset_time(at, Local::now()));
    let suffix = match &when {
        Some(at) => format!(" or try again at {at}."),
        None => " or try again later.".to_owned(),
    };
    let base = "You've hit your usage limit.";
    match plan {
        Some("plus") => format!(
            "{base} Upgrade to Pro (https://chatgpt.com/explore/pro), visit https://chatgpt.com/codex/settings/usage to purchase more credits{suffix}"
        ),
        Some("pro") => format!(
            "{base} Visit https://chatgpt.com/codex/settings/usage to purchase more credits{suffix}"
        ),
        Some("team" | "business") => {
            format!("{base} To get more access now, send a request to your admin{suffix}")
        }
        Some("free" | "go") => format!(
            "{base} Upgrade to Plus to continue using Codex (https://chatgpt.com/explore/plus),{suffix}"
        ),
        _ => match when {
            Some(at) => format!("{base} Try again at {at}."),
            None => format!("{base} Try again later."),
        },
    }
}

/// `8:43 AM` today, else `Dec 2nd, 2026 8:43 AM`.
fn reset_time(at: DateTime<Local>, now: DateTime<Local>) -> String {
    let clock = at.format("%-I:%M %p");
    if at.date_naive() == now.date_naive() {
        return clock.to_string();
    }
    let day = at.day();
    let ordinal = match (day % 10, day % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!(
        "{} {day}{ordinal}, {} {clock}",
        at.format("%b"),
        at.format("%Y")
    )
}

/// The wait before retry `n` (1-based): `min(base·2^(n−1), 10 s)`, jittered by ±10 %.
pub fn backoff(base: Duration, n: u32) -> Duration {
    if base.is_zero() {
        return Duration::ZERO;
    }
    let exponential = base.saturating_mul(2u32.saturating_pow(n.saturating_sub(1)));
    let capped = exponential.min(Duration::from_secs(10));
    capped.mul_f64(rand::random_range(0.9..=1.1))
}

#[cfg(test)]
mod tests;
