//! The texts and classes of TURNS §22.

use chrono::{Duration as Days, Local, TimeZone};
use reqwest::StatusCode;

use super::*;

fn fatal(failure: AttemptFailure) -> TurnError {
    match failure {
        AttemptFailure::Fatal(error) => error,
        other => panic!("expected a fatal failure, got {other:?}"),
    }
}

#[test]
fn statuses_map_to_codex_texts() {
    assert_eq!(
        AttemptFailure::from_status(StatusCode::INTERNAL_SERVER_ERROR, "x"),
        AttemptFailure::Retryable {
            cause: HIGH_DEMAND.into(),
            status: Some(500)
        }
    );
    assert_eq!(
        AttemptFailure::from_status(StatusCode::BAD_GATEWAY, "gw"),
        AttemptFailure::Retryable {
            cause: "unexpected status 502 Bad Gateway: gw".into(),
            status: Some(502)
        }
    );
    let too_many = fatal(AttemptFailure::from_status(
        StatusCode::TOO_MANY_REQUESTS,
        r#"{"error":{"type":"rate_limit_exceeded"}}"#,
    ));
    assert_eq!(
        too_many.message,
        "exceeded retry limit, last status: 429 Too Many Requests"
    );
    assert_eq!(
        too_many.codex_error_info,
        Some(CodexErrorInfo::ResponseTooManyFailedAttempts {
            http_status_code: Some(429)
        })
    );
    let bad = fatal(AttemptFailure::from_status(StatusCode::BAD_REQUEST, "bad"));
    assert_eq!(
        (bad.message.as_str(), bad.codex_error_info),
        ("bad", Some(CodexErrorInfo::BadRequest))
    );
    let window = fatal(AttemptFailure::from_status(
        StatusCode::BAD_REQUEST,
        r#"{"error":{"code":"context_length_exceeded","message":"long"}}"#,
    ));
    assert_eq!(
        window.codex_error_info,
        Some(CodexErrorInfo::ContextWindowExceeded)
    );
    let denied = fatal(AttemptFailure::from_status(StatusCode::FORBIDDEN, "no"));
    assert_eq!(denied.message, "unexpected status 403 Forbidden: no");
    assert_eq!(denied.codex_error_info, Some(CodexErrorInfo::Other));
    let unauthorized = fatal(AttemptFailure::from_status(StatusCode::UNAUTHORIZED, "{}"));
    assert_eq!(
        unauthorized.message,
        "unexpected status 401 Unauthorized: {}"
    );
    assert_eq!(
        unauthorized.codex_error_info,
        Some(CodexErrorInfo::Unauthorized)
    );
    let not_included = fatal(AttemptFailure::from_status(
        StatusCode::TOO_MANY_REQUESTS,
        r#"{"error":{"type":"usage_not_included"}}"#,
    ));
    assert_eq!(not_included.message, UPGRADE_TO_PLUS);
}

#[test]
fn stream_retries_say_reconnecting_and_the_last_cause_ends_the_turn() {
    let retry = reconnecting(2, 5, "cause", Some(503));
    assert_eq!(retry.message, "Reconnecting... 2/5");
    assert_eq!(retry.additional_details.as_deref(), Some("cause"));
    assert_eq!(
        retry.codex_error_info,
        Some(CodexErrorInfo::ResponseStreamDisconnected {
            http_status_code: Some(503)
        })
    );
    assert_eq!(
        reconnecting(1, 1, HIGH_DEMAND, Some(500)).codex_error_info,
        Some(CodexErrorInfo::ResponseStreamDisconnected {
            http_status_code: None
        })
    );
    assert_eq!(
        retries_exhausted(HIGH_DEMAND.into(), Some(500)).codex_error_info,
        Some(CodexErrorInfo::InternalServerError)
    );
    assert_eq!(
        retries_exhausted("x".into(), None).codex_error_info,
        Some(CodexErrorInfo::Other)
    );
}

#[test]
fn event_failures() {
    let failure = |code: Option<&str>, message: &str| ResponseFailure::Error {
        code: code.map(str::to_owned),
        message: message.into(),
    };
    assert_eq!(
        AttemptFailure::from_event(&failure(None, "boom")),
        AttemptFailure::Retryable {
            cause: "stream disconnected before completion: boom".into(),
            status: None
        }
    );
    assert_eq!(
        fatal(AttemptFailure::from_event(&failure(
            Some("insufficient_quota"),
            "q"
        )))
        .message,
        QUOTA
    );
    assert_eq!(
        AttemptFailure::from_event(&ResponseFailure::Incomplete {
            reason: "max_output_tokens".into()
        }),
        AttemptFailure::Retryable {
            cause: "stream disconnected before completion: Incomplete response returned, reason: max_output_tokens".into(),
            status: None
        }
    );
}

#[test]
fn usage_limit_texts_by_plan() {
    let in_an_hour = (Local::now() + Days::hours(1)).timestamp();
    let pro = usage_limit_text(Some("pro"), Some(in_an_hour));
    assert!(
        pro.starts_with("You've hit your usage limit. Visit https://chatgpt.com/codex/settings/usage to purchase more credits or try again at "),
        "{pro}"
    );
    assert_eq!(
        usage_limit_text(Some("team"), None),
        "You've hit your usage limit. To get more access now, send a request to your admin or try again later."
    );
    assert_eq!(
        usage_limit_text(None, None),
        "You've hit your usage limit. Try again later."
    );
    assert!(
        usage_limit_text(Some("free"), None)
            .contains("(https://chatgpt.com/explore/plus), or try again later.")
    );
}

#[test]
fn reset_times_read_like_codex() {
    let now = Local.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap();
    let today = Local.with_ymd_and_hms(2026, 12, 1, 8, 43, 0).unwrap();
    assert_eq!(reset_time(today, now), "8:43 AM");
    let later = Local.with_ymd_and_hms(2026, 12, 2, 20, 5, 0).unwrap();
    assert_eq!(reset_time(later, now), "Dec 2nd, 2026 8:05 PM");
    let eleventh = Local.with_ymd_and_hms(2026, 12, 11, 9, 0, 0).unwrap();
    assert_eq!(reset_time(eleventh, now), "Dec 11th, 2026 9:00 AM");
}

#[test]
fn backoff_doubles_up_to_ten_seconds_with_jitter() {
    let base = Duration::from_millis(200);
    for (n, nominal) in [(1, 200), (2, 400), (3, 800), (7, 10_000), (20, 10_000)] {
        let wait = backoff(base, n).as_millis() as f64;
        assert!(
            wait >= nominal as f64 * 0.89 && wait <= nominal as f64 * 1.11,
            "{n}: {wait}"
        );
    }
    assert_eq!(backoff(Duration::ZERO, 3), Duration::ZERO);
}
