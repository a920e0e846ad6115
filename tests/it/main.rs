//! In-process integration tests: one test binary (each file in `tests/` would
//! link separately, which is slow on small machines).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::string_slice
)]

mod support;

mod account;
mod admin;
mod authorize_params;
mod ciba;
mod claims;
mod client_credentials;
mod dpop;
mod exchange;
mod form_post;
mod foundation;
mod oidc;
mod oidc_sessions;
mod people;
mod private_key_jwt;
mod properties;
mod proxies;
mod refresh;
mod rs256;
mod self_registered;
mod throttling;
mod token_status;
