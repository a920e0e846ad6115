//! deputy: an OAuth 2.0 / OpenID Connect authorization server that keeps the
//! person who signs in, the service that calls an API, and the agent that acts
//! for a person apart.

pub mod account;
pub mod admin;
pub mod app;
pub mod audit;
pub mod ciba;
pub mod cli;
pub mod client_auth;
pub mod client_registry;
pub mod clock;
pub mod config;
pub mod dpop;
pub mod error;
pub mod fetch;
pub mod grant;
pub mod http;
pub mod interaction;
pub mod introspection;
pub mod keys;
pub mod limits;
pub mod logging;
pub mod login;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod proxies;
pub mod revocation;
pub mod secret;
pub mod store;
pub mod token;
