//! Name resolution under the address policy, plugged into awc's connector.
//! The addresses the resolver returns are the only ones awc connects to, so
//! checking them here leaves no gap between check and connect for DNS
//! rebinding to use (OWASP SSRF Prevention Cheat Sheet).

use std::cell::RefCell;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use actix_tls::connect::{Resolve, Resolver};

use super::address::{Policy, Refusal};

/// Why the resolver refused a host; carried through awc's connect error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRefused {
    pub ip: IpAddr,
    pub why: Refusal,
}

impl fmt::Display for AddressRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is a {}", self.ip, self.why)
    }
}

impl StdError for AddressRefused {}

type Lookup<'a> = Pin<Box<dyn Future<Output = Result<Vec<SocketAddr>, Box<dyn StdError>>> + 'a>>;

struct CheckedResolver {
    policy: Policy,
    /// For `http` URLs: every address must be loopback.
    loopback_only: bool,
}

impl Resolve for CheckedResolver {
    fn lookup<'a>(&'a self, host: &'a str, port: u16) -> Lookup<'a> {
        Box::pin(async move {
            // An IPv6 literal may arrive in its brackets.
            let bare = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => tokio::net::lookup_host((bare, port)).await?.collect(),
            };
            let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
            self.policy
                .check_resolved(&ips, self.loopback_only)
                .map_err(|(ip, why)| Box::new(AddressRefused { ip, why }) as Box<dyn StdError>)?;
            Ok(addrs)
        })
    }
}

thread_local! {
    /// The clients made on this thread, by what they were made for. Making
    /// one builds OpenSSL's client context, which loads the system's CA
    /// store: about 100 ms on the thread that asked (an HTTP worker), which
    /// delayed that worker's next request and so told a CIBA client whether
    /// its `login_hint` named a person (the approval webhook is sent only for
    /// one). Made once per thread instead; every request sent with them
    /// closes its connection (`force_close`), so none outlives its fetch.
    static CLIENTS: RefCell<Vec<(ClientKey, awc::Client)>> = const { RefCell::new(Vec::new()) };
}

type ClientKey = (Policy, bool, Duration);

/// The awc client for fetches under `policy` (see [`make`]).
pub(super) fn client(policy: Policy, loopback_only: bool, deadline: Duration) -> awc::Client {
    let key = (policy, loopback_only, deadline);
    CLIENTS.with(|made| {
        if let Some((_, c)) = made.borrow().iter().find(|(k, _)| *k == key) {
            return c.clone();
        }
        let c = make(policy, loopback_only, deadline);
        made.borrow_mut().push((key, c.clone()));
        c
    })
}

/// An awc client: names resolved under `policy`, redirects never followed,
/// TLS through OpenSSL with its default verification (certificate chain
/// against the system store or `SSL_CERT_FILE`, and the host name).
fn make(policy: Policy, loopback_only: bool, deadline: Duration) -> awc::Client {
    let resolver = Resolver::custom(CheckedResolver {
        policy,
        loopback_only,
    });
    let tcp = actix_tls::connect::Connector::new(resolver).service();
    let connector = awc::Connector::new()
        .connector(tcp)
        .timeout(deadline)
        .handshake_timeout(deadline)
        .disconnect_timeout(Duration::from_secs(1));
    awc::Client::builder()
        .connector(connector)
        // OWASP SSRF Prevention Cheat Sheet: a redirect would lead past the
        // checks above (to http, to another host); a 3xx is a failure.
        .disable_redirects()
        .timeout(deadline)
        .finish()
}
