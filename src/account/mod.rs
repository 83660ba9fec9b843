//! The account: its state machine across the three modes, auth.json, token claims, the managed
//! login flows and the methods clients call (SPEC §5–8, §10–11).

pub mod credentials;
mod error;
pub mod jwt;
mod managed_login;
mod notices;
mod ops;
mod service;
pub mod store;
pub mod tokens;

pub use error::AccountError;
pub use service::AccountService;

#[cfg(test)]
mod tests;
