//! The account: its state machine across the three modes, auth.json, token claims, the managed
//! login flows and the methods clients call (SPEC §5–8, §10–11).

pub mod credentials;
pub mod jwt;
pub mod managed_login;
pub mod service;
pub mod store;
pub mod tokens;

pub use service::AccountService;
