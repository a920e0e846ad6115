//! A safe outbound fetcher, for every URL deputy fetches on someone else's
//! behalf (today clients' `jwks_uri`s). What it guarantees:
//!
//! * one deadline over the whole fetch (name resolution, connect, TLS,
//!   headers and the full body); at the deadline the fetch and its
//!   connection are dropped;
//! * a body cap, enforced while the body streams in;
//! * `https` only (`http` only to a loopback host, with loopback allowed for
//!   development), redirects never followed;
//! * only addresses that pass the address policy are connected to, checked
//!   after resolution ([`address`]);
//! * a bound on fetches in progress at once; over it a fetch fails at once
//!   with [`FetchError::Busy`] instead of queueing.
//!
//! Single flight and negative caching per URL are in [`flight`]; each use
//! keeps its own [`Flights`] and shares the one [`Fetcher`].
//! (OWASP SSRF Prevention Cheat Sheet; RFC 6890 for the address ranges.)

pub mod address;
pub mod flight;
mod resolve;

use std::net::IpAddr;
use std::time::Duration;

use awc::error::{ConnectError, SendRequestError};
use awc::http::header::{self, HeaderMap};
use awc::http::StatusCode;
use futures_util::StreamExt;
use tokio::sync::Semaphore;
use url::Url;

pub use address::{Policy, Refusal};
pub use flight::{Flights, Outcome};

/// The whole fetch, from name resolution to the body's last byte.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// Outbound fetches in progress at once, across all workers and uses.
pub const MAX_CONCURRENT: usize = 16;
const USER_AGENT: &str = concat!("deputy/", env!("CARGO_PKG_VERSION"));

/// What to fetch (a GET).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub url: &'a str,
    /// The `Accept` header.
    pub accept: &'a str,
    /// A longer body (declared or streamed) fails the fetch.
    pub max_bytes: usize,
}

/// A 200 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub body: Vec<u8>,
    /// `Cache-Control: max-age` of the answer, in seconds, if it had one
    /// (RFC 9111 §5.2.2.1).
    pub max_age: Option<u64>,
}

/// Why a fetch failed; logged, never sent to whoever caused the fetch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("URL refused: {0}")]
    Url(Refusal),
    #[error("address refused: {ip} is a {why}")]
    Address { ip: IpAddr, why: Refusal },
    #[error("too many outbound fetches in progress")]
    Busy,
    #[error("failed recently; no new attempt before {until}")]
    BackingOff { until: i64 },
    #[error("no complete answer within the deadline")]
    Timeout,
    #[error("answered with redirect {0}, which is not followed")]
    Redirect(u16),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    #[error("request failed: {0}")]
    Connect(String),
    #[error("reading the body failed: {0}")]
    Read(String),
    /// The answer arrived but its user cannot use it (e.g. not UTF-8).
    #[error("unusable answer: {0}")]
    Unusable(&'static str),
}

pub struct Fetcher {
    policy: Policy,
    deadline: Duration,
    permits: Semaphore,
}

impl Fetcher {
    pub fn new(policy: Policy) -> Self {
        Self::with_limits(policy, DEADLINE, MAX_CONCURRENT)
    }

    pub fn with_limits(policy: Policy, deadline: Duration, max_concurrent: usize) -> Self {
        Fetcher {
            policy,
            deadline,
            permits: Semaphore::new(max_concurrent),
        }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Fetch `req.url` under every guarantee above. Only a 200 with a body
    /// within the cap succeeds.
    pub async fn fetch(&self, req: &Request<'_>) -> Result<Fetched, FetchError> {
        let url = self.policy.check_url(req.url).map_err(FetchError::Url)?;
        // The resolver is not asked about IP-literal hosts: check them here.
        if let Some(ip) = address::literal_ip(&url) {
            self.policy
                .check_ip(ip)
                .map_err(|why| FetchError::Address { ip, why })?;
        }
        let _permit = self
            .permits
            .try_acquire()
            .map_err(|_no_permit_left| FetchError::Busy)?;
        // Dropping the inner future at the deadline drops the client, its
        // pool and the connection with it.
        tokio::time::timeout(self.deadline, self.get(&url, req))
            .await
            .unwrap_or(Err(FetchError::Timeout))
    }

    /// POST `body` as JSON to `url` under the same guarantees (URL and
    /// address policy, deadline, bound on fetches in progress); any 2xx
    /// answer succeeds, its body unread. For notifications (the approval
    /// webhook), never for anything a decision depends on.
    pub async fn post_json(&self, url: &str, body: Vec<u8>) -> Result<(), FetchError> {
        let url = self.policy.check_url(url).map_err(FetchError::Url)?;
        if let Some(ip) = address::literal_ip(&url) {
            self.policy
                .check_ip(ip)
                .map_err(|why| FetchError::Address { ip, why })?;
        }
        let _permit = self
            .permits
            .try_acquire()
            .map_err(|_no_permit_left| FetchError::Busy)?;
        let post = async {
            let client = resolve::client(self.policy, url.scheme() == "http", self.deadline);
            let resp = client
                .post(url.as_str())
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .insert_header((header::USER_AGENT, USER_AGENT))
                .force_close()
                .send_body(body)
                .await
                .map_err(send_error)?;
            let status = resp.status();
            if status.is_redirection() {
                return Err(FetchError::Redirect(status.as_u16()));
            }
            if !status.is_success() {
                return Err(FetchError::Status(status.as_u16()));
            }
            Ok(())
        };
        tokio::time::timeout(self.deadline, post)
            .await
            .unwrap_or(Err(FetchError::Timeout))
    }

    async fn get(&self, url: &Url, req: &Request<'_>) -> Result<Fetched, FetchError> {
        let client = resolve::client(self.policy, url.scheme() == "http", self.deadline);
        let mut resp = client
            .get(url.as_str())
            .insert_header((header::ACCEPT, req.accept))
            .insert_header((header::USER_AGENT, USER_AGENT))
            .force_close()
            .send()
            .await
            .map_err(send_error)?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(FetchError::Redirect(status.as_u16()));
        }
        if status != StatusCode::OK {
            return Err(FetchError::Status(status.as_u16()));
        }
        if content_length(resp.headers()).is_some_and(|n| n > req.max_bytes as u64) {
            return Err(FetchError::TooLarge(req.max_bytes));
        }
        let max_age = max_age(resp.headers());
        let mut body = Vec::new();
        while let Some(chunk) = resp.next().await {
            let chunk = chunk.map_err(|e| FetchError::Read(e.to_string()))?;
            if body.len() + chunk.len() > req.max_bytes {
                return Err(FetchError::TooLarge(req.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched { body, max_age })
    }
}

fn send_error(e: SendRequestError) -> FetchError {
    match &e {
        SendRequestError::Connect(ConnectError::Resolver(inner)) => {
            match inner.downcast_ref::<resolve::AddressRefused>() {
                Some(r) => FetchError::Address {
                    ip: r.ip,
                    why: r.why,
                },
                None => FetchError::Connect(e.to_string()),
            }
        }
        SendRequestError::Timeout => FetchError::Timeout,
        _ => FetchError::Connect(e.to_string()),
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The `max-age` directive of `Cache-Control` (RFC 9111 §5.2.2.1), if any.
fn max_age(headers: &HeaderMap) -> Option<u64> {
    headers
        .get_all(header::CACHE_CONTROL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|directive| {
            let (name, value) = directive.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("max-age") {
                return None;
            }
            value.trim().trim_matches('"').parse().ok()
        })
}

#[cfg(test)]
mod tests;
