//! The account notifications (SPEC §6), built in one place.

use crate::peer::Events;
use crate::protocol::{
    AccountLoginCompletedNotification, AccountRateLimitsUpdatedNotification,
    AccountUpdatedNotification, AuthMode, PlanType, RateLimitSnapshot, methods,
};

/// `account/login/completed {loginId, success, error}`.
pub fn login_completed(events: &mut Events, login_id: Option<String>, error: Option<String>) {
    events.broadcast(
        methods::LOGIN_COMPLETED,
        &AccountLoginCompletedNotification {
            login_id,
            success: error.is_none(),
            error,
        },
    );
}

/// A successful login: `login/completed {loginId, true, null}` then `updated {authMode, planType}`.
pub fn logged_in(
    events: &mut Events,
    login_id: Option<String>,
    mode: AuthMode,
    plan: Option<PlanType>,
) {
    login_completed(events, login_id, None);
    updated(events, Some(mode), plan);
}

/// `account/updated {authMode, planType}` (both `null` after a logout).
pub fn updated(events: &mut Events, mode: Option<AuthMode>, plan: Option<PlanType>) {
    events.broadcast(
        methods::UPDATED,
        &AccountUpdatedNotification {
            auth_mode: mode,
            plan_type: plan,
        },
    );
}

/// `account/rateLimits/updated {rateLimits}`.
pub fn rate_limits_updated(events: &mut Events, snapshot: &RateLimitSnapshot) {
    events.broadcast(
        methods::RATE_LIMITS_UPDATED,
        &AccountRateLimitsUpdatedNotification {
            rate_limits: snapshot.clone(),
        },
    );
}
