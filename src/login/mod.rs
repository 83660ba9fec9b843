//! The managed ChatGPT login's OAuth mechanics: PKCE and the authorize URL, the local callback
//! server, and the issuer's token and device-code endpoints (SPEC §10). Account state and
//! notifications stay in [`crate::account`].

pub mod browser;
pub mod oauth;
pub mod pkce;
