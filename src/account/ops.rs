//! The account lock: login start/cancel, logout and login completion change the account one at
//! a time (SPEC §3.5), so every connection sees the state changes — and their notifications — in
//! the same order. Functions that must run under it take an [`OpsGuard`]: holding the lock is a
//! type, not a comment.

use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

#[derive(Clone, Default)]
pub struct AccountOps(Arc<Mutex<()>>);

/// Proof that the account lock is held; released when dropped (after the request's
/// notifications went out, when it travels in an `Outcome`).
pub struct OpsGuard(#[allow(dead_code)] OwnedMutexGuard<()>);

impl AccountOps {
    pub async fn lock(&self) -> OpsGuard {
        OpsGuard(self.0.clone().lock_owned().await)
    }
}
