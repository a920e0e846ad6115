//! Operators' metrics: what deputy counts and times, as Prometheus text on a
//! listener of its own (`metrics_bind`; `http::metrics` serves and gathers).
//!
//! Off by default: nothing is installed, and every recording function below
//! is one atomic load that finds nothing (no clock read, no label built).
//! On, each is a hash lookup and an atomic add (a short lock for histograms).
//!
//! Names are `deputy_*`, durations in seconds. Label values come from fixed
//! sets only — route patterns (never raw paths), methods, status codes,
//! grant types, error codes — so the number of series stays bounded whatever
//! requests arrive.
//!
//! The domain calls one named function where the event happens (e.g.
//! `refresh_reuse()` where the reuse is recorded), so it never sees the
//! metrics library.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::error::ErrorCode;
use crate::token::TokenResponse;

/// The `Content-Type` of what `render` writes (Prometheus text, version 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

static INSTALLED: OnceLock<Metrics> = OnceLock::new();

/// Turn metrics on for this process (idempotent). `deputy serve` calls it
/// when `metrics_bind` is set, before it starts serving.
pub fn install() -> &'static Metrics {
    INSTALLED.get_or_init(Metrics::new)
}

/// Metrics are on.
pub fn enabled() -> bool {
    INSTALLED.get().is_some()
}

/// The installed metrics as Prometheus text; empty when off.
pub fn render() -> String {
    INSTALLED.get().map(Metrics::render).unwrap_or_default()
}

fn with(record: impl FnOnce(&Metrics)) {
    if let Some(m) = INSTALLED.get() {
        record(m);
    }
}

/// A start time taken only when metrics are on.
#[derive(Debug, Clone, Copy)]
pub struct Timer(Option<Instant>);

impl Timer {
    pub fn start() -> Timer {
        Timer(enabled().then(Instant::now))
    }

    /// Time since `start`, when metrics were on then.
    pub fn elapsed(&self) -> Option<Duration> {
        self.0.map(|t| t.elapsed())
    }
}

/// Calls `record` with the time from its creation to its drop, for timing a
/// block by one line: `let _t = metrics::Timed::new(metrics::store_write);`.
pub struct Timed {
    timer: Timer,
    record: fn(Duration),
}

impl Timed {
    pub fn new(record: fn(Duration)) -> Timed {
        Timed {
            timer: Timer::start(),
            record,
        }
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        if let Some(elapsed) = self.timer.elapsed() {
            (self.record)(elapsed);
        }
    }
}

// ---- what the rest of deputy records

/// One answered HTTP request (the middleware in `http::metrics`).
pub fn http_request(route: Option<String>, method: &str, status: u16, elapsed: Duration) {
    with(|m| m.http_request(route, method, status, elapsed));
}

/// A token response sent by the token endpoint: one count per token in it.
pub fn tokens_issued(grant_type: &'static str, issued: &TokenResponse) {
    with(|m| m.tokens_issued(grant_type, issued));
}

/// A token-exchange request refused, by its OAuth `error` code.
pub fn exchange_refused(error: ErrorCode) {
    with(|m| m.exchange_refused(error));
}

/// A consumed refresh token presented again: its family was revoked.
pub fn refresh_reuse() {
    with(|m| {
        m.refresh_reuse.inc();
    });
}

/// A client's revocation at the revocation endpoint changed something.
pub fn revoked_by_client() {
    with(|m| m.revoked("endpoint"));
}

/// An administrator's revocation (admin API or CLI).
pub fn revoked_by_admin() {
    with(|m| m.revoked("admin"));
}

/// A login refused for a wrong user name or password.
pub fn login_failed() {
    with(|m| m.login_failure("bad_credentials"));
}

/// A login attempt refused by the throttle before its password was checked.
pub fn login_throttled() {
    with(|m| m.login_failure("throttled"));
}

/// How long a store write job waited before it ran (the writer's queue, a
/// pool's wait for a connection).
pub fn store_queue_wait(elapsed: Duration) {
    with(|m| m.store_queue_wait.observe(elapsed.as_secs_f64()));
}

/// How long a store commit took.
pub fn store_write(elapsed: Duration) {
    with(|m| m.store_commit.observe(elapsed.as_secs_f64()));
}

// ---- the registry

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The route pattern that matched (`/admin/tokens/{jti}`), `unmatched` for none.
    route: Cow<'static, str>,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    /// `access`, `id` or `refresh`.
    kind: &'static str,
    grant_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Request latencies: 0.5 ms (a cached JWKS) to 10 s (a slow client's body).
const REQUEST_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Store waits and commits: 50 µs (an idle writer) to 2.5 s (busy timeout territory).
const STORE_BUCKETS: [f64; 15] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
];

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

/// Everything deputy records, registered once.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Histogram, fn() -> Histogram>,
    tokens_issued: Family<TokenLabels, Counter>,
    exchange_refusals: Family<ErrorLabels, Counter>,
    refresh_reuse: Counter,
    revocations: Family<SourceLabels, Counter>,
    login_failures: Family<ReasonLabels, Counter>,
    store_queue_wait: Histogram,
    store_commit: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::with_prefix("deputy"),
            requests: Family::new_with_constructor(request_histogram as fn() -> Histogram),
            tokens_issued: Family::default(),
            exchange_refusals: Family::default(),
            refresh_reuse: Counter::default(),
            revocations: Family::default(),
            login_failures: Family::default(),
            store_queue_wait: Histogram::new(STORE_BUCKETS),
            store_commit: Histogram::new(STORE_BUCKETS),
        };
        // Series that alerts watch exist from the start, at zero.
        for source in ["endpoint", "admin"] {
            drop(m.revocations.get_or_create(&SourceLabels { source }));
        }
        for reason in ["bad_credentials", "throttled"] {
            drop(m.login_failures.get_or_create(&ReasonLabels { reason }));
        }
        m.register()
    }

    fn register(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "build",
            "deputy's version (always 1)",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        r.register_with_unit(
            "http_request_duration",
            "HTTP requests answered, by route pattern, method and status, and how long \
             each took (the _count series is the request counter)",
            Unit::Seconds,
            self.requests.clone(),
        );
        r.register(
            "tokens_issued",
            "Tokens sent by the token endpoint, by kind (access, id, refresh) and grant_type",
            self.tokens_issued.clone(),
        );
        r.register(
            "token_exchange_refusals",
            "Token-exchange requests refused at the token endpoint, by OAuth error code",
            self.exchange_refusals.clone(),
        );
        r.register(
            "refresh_reuse_detections",
            "Consumed refresh tokens presented again (each revoked its family)",
            self.refresh_reuse.clone(),
        );
        r.register(
            "revocations",
            "Revocations that took effect, by source (endpoint: a client at /revoke; \
             admin: the admin API)",
            self.revocations.clone(),
        );
        r.register(
            "login_failures",
            "Refused password logins, by reason (bad_credentials, throttled)",
            self.login_failures.clone(),
        );
        r.register_with_unit(
            "store_queue_wait",
            "How long store write jobs waited before they ran",
            Unit::Seconds,
            self.store_queue_wait.clone(),
        );
        r.register_with_unit(
            "store_commit",
            "How long store commits took (one per group of write jobs)",
            Unit::Seconds,
            self.store_commit.clone(),
        );
        self
    }

    /// Prometheus text (version 0.0.4).
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
        {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        text
    }

    fn http_request(&self, route: Option<String>, method: &str, status: u16, elapsed: Duration) {
        let labels = RequestLabels {
            route: route.map_or(Cow::Borrowed("unmatched"), Cow::Owned),
            method: method_label(method),
            status,
        };
        self.requests
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    fn tokens_issued(&self, grant_type: &'static str, issued: &TokenResponse) {
        let count = |kind| {
            self.tokens_issued
                .get_or_create(&TokenLabels { kind, grant_type })
                .inc();
        };
        count("access");
        if issued.id_token.is_some() {
            count("id");
        }
        if issued.refresh_token.is_some() {
            count("refresh");
        }
    }

    fn exchange_refused(&self, error: ErrorCode) {
        self.exchange_refusals
            .get_or_create(&ErrorLabels {
                error: error.as_str(),
            })
            .inc();
    }

    fn revoked(&self, source: &'static str) {
        self.revocations
            .get_or_create(&SourceLabels { source })
            .inc();
    }

    fn login_failure(&self, reason: &'static str) {
        self.login_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
}

/// The method as a label: the standard ones, anything else `other` (an
/// extension method must not add a series of its own).
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(id: bool, refresh: bool) -> TokenResponse {
        TokenResponse {
            access_token: "a".into(),
            expires_in: 300,
            scope: String::new(),
            refresh_token: refresh.then(|| "r".to_string()),
            id_token: id.then(|| "i".to_string()),
            issued_token_type: None,
            dpop: false,
        }
    }

    /// The line of `text` that starts with `series` (name and labels), its value.
    fn value(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_string)
    }

    #[test]
    fn every_metric_is_named_and_typed() {
        let m = Metrics::new();
        // A family appears once it has a series.
        m.http_request(None, "GET", 404, Duration::ZERO);
        m.tokens_issued("client_credentials", &response(false, false));
        m.exchange_refused(ErrorCode::InvalidRequest);
        let text = m.render();
        for (name, kind) in [
            ("deputy_build_info", "gauge"),
            ("deputy_http_request_duration_seconds", "histogram"),
            ("deputy_tokens_issued_total", "counter"),
            ("deputy_token_exchange_refusals_total", "counter"),
            ("deputy_refresh_reuse_detections_total", "counter"),
            ("deputy_revocations_total", "counter"),
            ("deputy_login_failures_total", "counter"),
            ("deputy_store_queue_wait_seconds", "histogram"),
            ("deputy_store_commit_seconds", "histogram"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} {kind} in\n{text}"
            );
        }
        let version = format!(
            "deputy_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(value(&text, &version).as_deref(), Some("1"));
        assert_eq!(
            value(&text, "deputy_revocations_total{source=\"admin\"}").as_deref(),
            Some("0")
        );
        assert_eq!(
            value(&text, "deputy_refresh_reuse_detections_total").as_deref(),
            Some("0")
        );
    }

    #[test]
    fn requests_are_counted_by_route_method_and_status() {
        let m = Metrics::new();
        m.http_request(Some("/token".into()), "POST", 200, Duration::from_millis(3));
        m.http_request(
            Some("/token".into()),
            "POST",
            200,
            Duration::from_millis(30),
        );
        m.http_request(None, "BREW", 404, Duration::from_micros(100));
        let text = m.render();
        let series = "deputy_http_request_duration_seconds";
        let token = "route=\"/token\",method=\"POST\",status=\"200\"";
        assert_eq!(
            value(&text, &format!("{series}_count{{{token}}}")).as_deref(),
            Some("2")
        );
        assert_eq!(
            value(&text, &format!("{series}_bucket{{{token},le=\"0.005\"}}")).as_deref(),
            Some("1")
        );
        assert_eq!(
            value(&text, &format!("{series}_bucket{{{token},le=\"+Inf\"}}")).as_deref(),
            Some("2")
        );
        assert_eq!(
            value(
                &text,
                &format!("{series}_count{{route=\"unmatched\",method=\"other\",status=\"404\"}}")
            )
            .as_deref(),
            Some("1")
        );
    }

    #[test]
    fn tokens_are_counted_by_kind_and_grant() {
        let m = Metrics::new();
        m.tokens_issued("authorization_code", &response(true, true));
        m.tokens_issued("client_credentials", &response(false, false));
        m.tokens_issued("client_credentials", &response(false, false));
        let text = m.render();
        for (series, n) in [
            ("kind=\"access\",grant_type=\"authorization_code\"", "1"),
            ("kind=\"id\",grant_type=\"authorization_code\"", "1"),
            ("kind=\"refresh\",grant_type=\"authorization_code\"", "1"),
            ("kind=\"access\",grant_type=\"client_credentials\"", "2"),
        ] {
            assert_eq!(
                value(&text, &format!("deputy_tokens_issued_total{{{series}}}")).as_deref(),
                Some(n),
                "{series}"
            );
        }
        assert!(!text.contains("kind=\"id\",grant_type=\"client_credentials\""));
    }

    #[test]
    fn events_and_store_timings() {
        let m = Metrics::new();
        m.exchange_refused(ErrorCode::InvalidTarget);
        m.exchange_refused(ErrorCode::InvalidTarget);
        m.refresh_reuse.inc();
        m.revoked("endpoint");
        m.login_failure("throttled");
        m.store_commit.observe(0.002);
        m.store_queue_wait.observe(0.00001);
        let text = m.render();
        for (series, n) in [
            (
                "deputy_token_exchange_refusals_total{error=\"invalid_target\"}",
                "2",
            ),
            ("deputy_refresh_reuse_detections_total", "1"),
            ("deputy_revocations_total{source=\"endpoint\"}", "1"),
            ("deputy_login_failures_total{reason=\"throttled\"}", "1"),
            (
                "deputy_login_failures_total{reason=\"bad_credentials\"}",
                "0",
            ),
            ("deputy_store_commit_seconds_bucket{le=\"0.0025\"}", "1"),
            ("deputy_store_commit_seconds_bucket{le=\"0.001\"}", "0"),
            ("deputy_store_queue_wait_seconds_count", "1"),
        ] {
            assert_eq!(value(&text, series).as_deref(), Some(n), "{series}");
        }
    }

    #[test]
    fn off_records_nothing_and_takes_no_time() {
        // Nothing installed in this test binary's lib tests: the functions
        // are no-ops and the timers read no clock.
        assert!(!enabled());
        assert!(Timer::start().elapsed().is_none());
        refresh_reuse();
        http_request(None, "GET", 200, Duration::ZERO);
        assert_eq!(render(), "");
    }
}
