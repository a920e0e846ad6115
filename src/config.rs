//! Settings: defaults, then `deputy.toml` (`--config`), then `DEPUTY_*`
//! environment variables, then command-line flags (`sources`), deserialized
//! into `Settings` by serde, then `validate`d. An unknown key or a bad value
//! is reported the same way from every source: one line naming the setting.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod sources;
mod validate;
mod values;

pub use sources::Sources;
use values::Seconds;

use crate::proxies::TrustedProxies;

/// A setting that could not be used; printed as one line and start-up stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "setting `{}`: {}", self.setting, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn bad(setting: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.to_string(),
        message: message.into(),
    }
}

/// `client_metadata_documents`: whether a `client_id` that is an https URL
/// names a client described by the document at that URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    On,
    Off,
}

/// `client_metadata_allow`: URL prefixes (with `://`) or host names; empty
/// allows any. Shown as it is written: entries separated by commas.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AllowList(pub Vec<String>);

impl std::fmt::Debug for AllowList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

/// `registration`: who may use `POST /register` (RFC 7591).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    /// No registration endpoint.
    Off,
    /// With an initial access token (`deputy registration token create`).
    Token,
    /// Anyone, for public clients with loopback or https redirect URIs.
    Open,
}

/// `log_format`: how log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Old names still read as the setting that replaced them (serde aliases):
/// keys, but not settings of their own.
pub const ALIASES: &[&str] = &["allow_loopback_jwks_uri"];

/// All settings. Each is written once, here: its key is the field name (in
/// the file, and upper case after `DEPUTY_`), its type and kind say what it
/// accepts, its default is in `impl Default`. Durations are whole seconds up
/// to ten years.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Issuer identifier (RFC 8414 §2) and base of every endpoint URL, kept as
    /// written: `validate` refuses what it would have to rewrite, since it is
    /// published and compared exactly (§3.3). Default `http://127.0.0.1:8080`.
    pub issuer: String,
    /// Address the HTTP server binds, host:port. Default `127.0.0.1:8080`.
    pub bind: String,
    /// The database: a SQLite file path, or a `postgres://` /
    /// `postgresql://` URL (several instances on one PostgreSQL database);
    /// must not be empty. Default `data/deputy.db`.
    pub database: PathBuf,
    /// Directory of signing keys (PKCS#8 PEM plus metadata), with SQLite;
    /// unused with PostgreSQL (the keys are in the database). Must not be
    /// empty. Default `keys`.
    pub keys_dir: PathBuf,
    /// With PostgreSQL: the file holding the key-encryption key that seals
    /// the signing keys in the database (32 random bytes, base64, e.g.
    /// `openssl rand -base64 32`); required there. Default empty (unset).
    pub key_encryption_key_file: PathBuf,
    /// Access token lifetime, seconds (at least 1). Default 300.
    #[serde(deserialize_with = "Seconds::<1>::field")]
    pub access_token_ttl: i64,
    /// ID token lifetime, seconds (at least 1). Default 300.
    #[serde(deserialize_with = "Seconds::<1>::field")]
    pub id_token_ttl: i64,
    /// Authorization code lifetime, seconds (at least 1). Default 60.
    #[serde(deserialize_with = "Seconds::<1>::field")]
    pub code_ttl: i64,
    /// A refresh token unused this long is dead, seconds (at least 1).
    /// Default 1209600 (14 days).
    #[serde(deserialize_with = "Seconds::<1>::field")]
    pub refresh_idle_ttl: i64,
    /// A refresh family dies this long after the original sign-in, rotated or
    /// not, seconds (at least 1, not below `refresh_idle_ttl`). Default 2592000 (30 days).
    #[serde(deserialize_with = "Seconds::<1>::field")]
    pub refresh_absolute_ttl: i64,
    /// Seconds during which the same client re-presenting a just-rotated refresh
    /// token gets the same successor again instead of a reuse alarm (0 = strict).
    /// Default 5.
    #[serde(deserialize_with = "Seconds::<0>::field")]
    pub refresh_grace: i64,
    /// A client assertion's `exp` may be at most this far ahead (RFC 7523 §3),
    /// seconds (at least 1). Default 3600.
    #[serde(deserialize_with = "Seconds::<1>::field")]
    pub assertion_max_age: i64,
    /// Tolerance for `exp`, `iat` and `nbf` checks, seconds. Default 30.
    #[serde(deserialize_with = "Seconds::<0>::field")]
    pub clock_skew: i64,
    /// `Cache-Control: max-age` of the JWKS, seconds. Default 300.
    #[serde(deserialize_with = "Seconds::<0>::field")]
    pub jwks_max_age: i64,
    /// A rotated key is published this long before it signs anything, seconds
    /// (longer than `jwks_max_age`). Default 900.
    #[serde(deserialize_with = "Seconds::<0>::field")]
    pub key_prepublish: i64,
    /// Lifetime of a login session cookie, seconds (at least 1). Default 28800 (8 hours).
    #[serde(deserialize_with = "Seconds::<1>::field")]
    pub session_ttl: i64,
    /// `text` or `json`. Default `text`.
    pub log_format: LogFormat,
    /// tracing filter, e.g. `info` or `deputy=debug`; must not be empty. Default `info`.
    pub log_level: String,
    /// Development only: every outbound fetch (clients' JWKS URIs, client
    /// metadata documents) may reach loopback addresses, and use `http` to a
    /// loopback host (`crate::fetch::Policy`). The old name
    /// `allow_loopback_jwks_uri` is read as this one. `true`/`1`/`yes` or
    /// `false`/`0`/`no`. Default false.
    #[serde(alias = "allow_loopback_jwks_uri")]
    pub allow_loopback_fetch: bool,
    /// `on`: a `client_id` that is an https URL with a path names a client
    /// described by the JSON document at that URL (Client ID Metadata
    /// Documents); `off`: such ids are unknown clients. Default `on`.
    pub client_metadata_documents: Switch,
    /// Metadata document URLs deputy may fetch: URL prefixes
    /// (`https://app.example/`) or host names (`app.example`), a TOML array
    /// or text separated by commas; empty: any. Default empty.
    #[serde(deserialize_with = "values::url_prefixes")]
    pub client_metadata_allow: AllowList,
    /// A fetched metadata document is used at least this long, whatever its
    /// HTTP caching says, seconds. Default 300.
    #[serde(deserialize_with = "Seconds::<0>::field")]
    pub client_metadata_min_cache: i64,
    /// ... and at most this long, seconds. Default 86400.
    #[serde(deserialize_with = "Seconds::<0>::field")]
    pub client_metadata_max_cache: i64,
    /// `on`: every DPoP proof must carry a nonce deputy issued (RFC 9449
    /// §8, §9; answered `use_dpop_nonce` with a `DPoP-Nonce` header until it
    /// does). Default `off`.
    pub dpop_nonces: Switch,
    /// `off`, `token` or `open`: who may register clients at `/register`
    /// (RFC 7591). Default `off`.
    pub registration: RegistrationMode,
    /// A dynamically registered client unused this long is removed, seconds
    /// (at least 1). Default 2592000 (30 days).
    #[serde(deserialize_with = "Seconds::<1>::field")]
    pub registration_unused_ttl: i64,
    /// Registration requests per second per remote address (0 = no limit).
    /// Default 1.
    #[serde(deserialize_with = "values::per_second")]
    pub rate_limit_registration: u32,
    /// HTTP worker threads, 0 to 256 (0 = one per core). Default 0.
    #[serde(deserialize_with = "values::workers")]
    pub workers: usize,
    /// Token-endpoint requests per second per authenticated client (0 = no
    /// limit). Default 10000.
    #[serde(deserialize_with = "values::per_second")]
    pub rate_limit_client: u32,
    /// Token-endpoint requests per second per remote address (0 = no limit).
    /// Default 20000.
    #[serde(deserialize_with = "values::per_second")]
    pub rate_limit_address: u32,
    /// Login form posts per second per remote address (0 = no limit). Default 100.
    #[serde(deserialize_with = "values::per_second")]
    pub rate_limit_login: u32,
    /// Failed client authentications allowed per client id and per remote
    /// address within `auth_failure_window`; further failures are 429
    /// (0 = no budget). Default 20.
    #[serde(deserialize_with = "values::failures")]
    pub auth_failure_limit: u32,
    /// The window of `auth_failure_limit`, seconds (at least 1). Default 10.
    #[serde(deserialize_with = "Seconds::<1>::field")]
    pub auth_failure_window: i64,
    /// Where `GET /metrics` (Prometheus text format) is served, host:port: a
    /// listener of its own, never the public one (`bind`); empty: no metrics,
    /// and recording them costs next to nothing. Default empty.
    pub metrics_bind: String,
    /// Peers whose `X-Forwarded-For` is believed: addresses or CIDR blocks, a
    /// TOML array or text separated by commas (`127.0.0.1, 10.0.0.0/8`). The
    /// client's address is the peer's, or behind these the right-most
    /// forwarded entry that is not one of them (`crate::proxies`). Default
    /// empty: nobody's.
    #[serde(deserialize_with = "values::proxies")]
    pub trusted_proxies: TrustedProxies,
    /// How long a backchannel authentication request (CIBA) waits for the
    /// person when the client asks for no `requested_expiry`, seconds (10 to
    /// 1800: CIBA Core §7.1, the requested_expiry range deputy accepts, so
    /// the default is one it would accept). Default 300.
    #[serde(deserialize_with = "values::SecondsIn::<10, 1800>::field")]
    pub ciba_default_expiry: i64,
    /// The least time between two polls of one CIBA request, seconds (1 to
    /// 300: a longer wait than that would outlast most requests, which end
    /// within `ciba_default_expiry`); a faster poll is `slow_down` and raises
    /// it by 5. Default 5.
    #[serde(deserialize_with = "values::SecondsIn::<1, 300>::field")]
    pub ciba_interval: i64,
    /// A URL deputy POSTs a small JSON to when a person has a CIBA request to
    /// approve (never a token); empty: no notification. Default empty.
    pub approval_webhook: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            issuer: "http://127.0.0.1:8080".to_string(),
            bind: "127.0.0.1:8080".to_string(),
            database: PathBuf::from("data/deputy.db"),
            keys_dir: PathBuf::from("keys"),
            key_encryption_key_file: PathBuf::new(),
            access_token_ttl: 300,
            id_token_ttl: 300,
            code_ttl: 60,
            refresh_idle_ttl: 14 * 24 * 3600,
            refresh_absolute_ttl: 30 * 24 * 3600,
            refresh_grace: 5,
            assertion_max_age: 3600,
            clock_skew: 30,
            jwks_max_age: 300,
            key_prepublish: 900,
            session_ttl: 8 * 3600,
            log_format: LogFormat::Text,
            log_level: "info".to_string(),
            allow_loopback_fetch: false,
            client_metadata_documents: Switch::On,
            dpop_nonces: Switch::Off,
            client_metadata_allow: AllowList::default(),
            client_metadata_min_cache: 300,
            client_metadata_max_cache: 86_400,
            registration: RegistrationMode::Off,
            registration_unused_ttl: 30 * 24 * 3600,
            rate_limit_registration: 1,
            workers: 0,
            rate_limit_client: 10_000,
            rate_limit_address: 20_000,
            rate_limit_login: 100,
            auth_failure_limit: 20,
            auth_failure_window: 10,
            metrics_bind: String::new(),
            trusted_proxies: TrustedProxies::default(),
            ciba_default_expiry: 300,
            ciba_interval: 5,
            approval_webhook: String::new(),
        }
    }
}

impl Settings {
    /// The PostgreSQL URL, when `database` names one.
    pub fn postgres_url(&self) -> Option<&str> {
        self.database
            .to_str()
            .filter(|d| crate::store::postgres::is_postgres_url(d))
    }

    /// The database for messages: the path, or the URL without its password.
    pub fn database_shown(&self) -> String {
        match self.postgres_url() {
            Some(url) => crate::store::postgres::shown_url(url),
            None => self.database.display().to_string(),
        }
    }

    /// Every setting's key, in field order (taken from the struct by serde).
    pub fn keys() -> &'static [&'static str] {
        sources::keys()
    }

    /// Defaults, then the TOML file, then `DEPUTY_*` variables, then flags
    /// (key, text); validated once at the end.
    pub fn load<I: IntoIterator<Item = (String, String)>>(
        file: Option<&Path>,
        vars: I,
        flags: &[(&str, &str)],
    ) -> Result<Settings, ConfigError> {
        let mut sources = Sources::default();
        if let Some(file) = file {
            sources.file(file)?;
        }
        sources.env(vars)?;
        for (key, value) in flags {
            sources.set(key, value)?;
        }
        let settings = sources.settings()?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.bind
            .to_socket_addrs()
            .ok()
            .and_then(|mut it| it.next())
            .ok_or_else(|| {
                bad(
                    "bind",
                    format!("`{}` is not a host:port address", self.bind),
                )
            })
    }

    /// The metrics listener's address, when metrics are on (`metrics_bind`
    /// not empty); it must not be the public listener's.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.metrics_bind.trim().is_empty() {
            return Ok(None);
        }
        let addr = self
            .metrics_bind
            .to_socket_addrs()
            .ok()
            .and_then(|mut it| it.next())
            .ok_or_else(|| {
                bad(
                    "metrics_bind",
                    format!("`{}` is not a host:port address", self.metrics_bind),
                )
            })?;
        if self.bind_addr().is_ok_and(|main| main == addr) {
            return Err(bad(
                "metrics_bind",
                "must not be the `bind` address (metrics have a listener of their own)",
            ));
        }
        Ok(Some(addr))
    }

    /// The issuer is https: cookies get `Secure`.
    pub fn issuer_is_https(&self) -> bool {
        self.issuer.starts_with("https://")
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }

    /// The longest lifetime of any JWT deputy signs; a retired key stays published
    /// at least this long after it stops signing.
    pub fn max_jwt_lifetime(&self) -> i64 {
        self.access_token_ttl.max(self.id_token_ttl) + self.clock_skew
    }
}

/// Make sure a directory exists and we can write to it.
pub fn ensure_writable_dir(setting: &str, dir: &Path) -> Result<(), ConfigError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| bad(setting, format!("cannot create {}: {e}", dir.display())))?;
    let probe = dir.join(format!(".deputy-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| bad(setting, format!("{} is not writable: {e}", dir.display())))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Defaults with textual values (as flags give them) on top.
    pub(super) fn with(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut sources = Sources::default();
        for (key, value) in pairs {
            sources.set(key, value)?;
        }
        sources.settings()
    }

    #[test]
    fn defaults_are_valid() {
        let s = Settings::default();
        s.validate().unwrap();
        assert_eq!(s.access_token_ttl, 300);
        assert_eq!(s.id_token_ttl, 300);
        assert_eq!(s.code_ttl, 60);
        assert_eq!(s.issuer, "http://127.0.0.1:8080");
    }

    #[test]
    fn unknown_key_names_the_setting() {
        let e = with(&[("acces_token_ttl", "5")]).unwrap_err();
        assert_eq!(e.setting, "acces_token_ttl");
        assert_eq!(e.to_string(), "setting `acces_token_ttl`: unknown setting");
    }

    #[test]
    fn env_overrides_and_unknown_env_is_refused() {
        let mut src = Sources::default();
        src.env(vec![
            ("DEPUTY_ACCESS_TOKEN_TTL".to_string(), "60".to_string()),
            ("HOME".to_string(), "/root".to_string()),
            ("DEPUTY_CONFIG".to_string(), "/nowhere.toml".to_string()),
        ])
        .unwrap();
        assert_eq!(src.settings().unwrap().access_token_ttl, 60);
        let e = src
            .env(vec![("DEPUTY_NOPE".to_string(), "1".to_string())])
            .unwrap_err();
        assert_eq!(e.setting, "DEPUTY_NOPE");
        assert_eq!(e.to_string(), "setting `DEPUTY_NOPE`: unknown setting");
    }

    #[test]
    fn non_numeric_ttl_is_refused() {
        assert_eq!(
            with(&[("code_ttl", "soon")]).unwrap_err().setting,
            "code_ttl"
        );
        assert_eq!(with(&[("code_ttl", "0")]).unwrap_err().setting, "code_ttl");
        with(&[("refresh_grace", "0")]).unwrap();
    }

    #[test]
    fn auth_failure_budget_settings() {
        let s = Settings::default();
        assert_eq!((s.auth_failure_limit, s.auth_failure_window), (20, 10));
        let s = with(&[("auth_failure_limit", "0"), ("auth_failure_window", "60")]).unwrap();
        assert_eq!((s.auth_failure_limit, s.auth_failure_window), (0, 60));
        for (k, v) in [
            ("auth_failure_limit", "-1"),
            ("auth_failure_limit", "many"),
            ("auth_failure_window", "0"),
        ] {
            assert_eq!(with(&[(k, v)]).unwrap_err().setting, k);
        }
    }

    #[test]
    fn bad_bind_is_refused() {
        let s = with(&[("bind", "nowhere")]).unwrap();
        assert_eq!(s.validate().unwrap_err().setting, "bind");
    }

    #[test]
    fn metrics_are_off_unless_metrics_bind_is_set() {
        let s = Settings::default();
        assert_eq!(s.metrics_addr(), Ok(None));
        let s = with(&[("metrics_bind", "127.0.0.1:9100")]).unwrap();
        s.validate().unwrap();
        assert_eq!(
            s.metrics_addr().unwrap(),
            Some("127.0.0.1:9100".parse().unwrap())
        );
        for (value, message) in [
            (
                "nowhere",
                "setting `metrics_bind`: `nowhere` is not a host:port address",
            ),
            (
                "127.0.0.1:8080",
                "setting `metrics_bind`: must not be the `bind` address \
                 (metrics have a listener of their own)",
            ),
        ] {
            let s = with(&[("metrics_bind", value)]).unwrap();
            assert_eq!(s.validate().unwrap_err().to_string(), message, "{value}");
        }
    }

    #[test]
    fn metadata_allow_list_entries_are_canonical_and_end_at_a_boundary() {
        let s = with(&[(
            "client_metadata_allow",
            "https://Tools.Example:443, https://a.example/agents/, App.Example",
        )])
        .unwrap();
        assert_eq!(
            s.client_metadata_allow.0,
            vec![
                "https://tools.example/",
                "https://a.example/agents/",
                "app.example"
            ]
        );
        let refused = |v: &str| {
            with(&[("client_metadata_allow", v)])
                .unwrap_err()
                .to_string()
        };
        assert!(refused("https://a.example/agents").contains("must end with `/`"));
        assert!(refused("http://a.example/").contains("is not an https URL prefix"));
        assert!(refused("a example").contains("neither"));
    }

    #[test]
    fn trusted_proxies_from_text_and_from_a_toml_array() {
        let s = Settings::default();
        assert!(s.trusted_proxies.is_empty());
        let s = with(&[("trusted_proxies", "127.0.0.1, 10.0.0.0/8,fd00::/8")]).unwrap();
        assert_eq!(
            s.trusted_proxies.to_string(),
            "127.0.0.1/32, 10.0.0.0/8, fd00::/8"
        );
        assert!(s.trusted_proxies.trusts("10.9.8.7".parse().unwrap()));
        assert!(!s.trusted_proxies.trusts("192.0.2.1".parse().unwrap()));
        assert!(with(&[("trusted_proxies", " ")])
            .unwrap()
            .trusted_proxies
            .is_empty());
        let f = toml_file(
            "proxies.toml",
            "trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n",
        );
        let s = Settings::load(Some(&f), Vec::new(), &[]).unwrap();
        assert_eq!(s.trusted_proxies.to_string(), "127.0.0.1/32, 10.0.0.0/8");
        let f = toml_file("no-proxies.toml", "trusted_proxies = []\n");
        let s = Settings::load(Some(&f), Vec::new(), &[]).unwrap();
        assert!(s.trusted_proxies.is_empty());
        // The variable replaces the file's list; a flag replaces both.
        let vars = vec![(
            "DEPUTY_TRUSTED_PROXIES".to_string(),
            "192.0.2.0/24".to_string(),
        )];
        let s = Settings::load(Some(&f), vars.clone(), &[]).unwrap();
        assert_eq!(s.trusted_proxies.to_string(), "192.0.2.0/24");
        let s = Settings::load(Some(&f), vars, &[("trusted_proxies", "::1")]).unwrap();
        assert_eq!(s.trusted_proxies.to_string(), "::1/128");
    }

    #[test]
    fn a_bad_proxy_block_stops_start_up_with_one_line() {
        for (value, message) in [
            (
                "127.0.0.1, 10.0.0.0/33",
                "setting `trusted_proxies`: `10.0.0.0/33` has a prefix length that is not 0 to 32",
            ),
            (
                "10.0.0.1/8",
                "setting `trusted_proxies`: `10.0.0.1/8` has bits set past its prefix \
                 (the block is 10.0.0.0/8)",
            ),
            (
                "proxy.internal",
                "setting `trusted_proxies`: `proxy.internal` is not an IP address or CIDR block",
            ),
        ] {
            let vars = vec![("DEPUTY_TRUSTED_PROXIES".to_string(), value.to_string())];
            let e = Settings::load(None, vars, &[]).unwrap_err();
            assert_eq!(e.to_string(), message, "{value}");
            assert!(!e.to_string().contains('\n'));
        }
    }

    fn toml_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("deputy-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join(name);
        std::fs::write(&f, text).unwrap();
        f
    }

    #[test]
    fn toml_file_applies_and_rejects_unknown_keys() {
        let f = toml_file(
            "deputy.toml",
            "issuer = \"https://id.example\"\naccess_token_ttl = 120\n",
        );
        let mut src = Sources::default();
        src.file(&f).unwrap();
        let s = src.settings().unwrap();
        assert_eq!(s.issuer, "https://id.example");
        assert_eq!(s.access_token_ttl, 120);
        let f = toml_file("unknown.toml", "colour = \"blue\"\n");
        assert_eq!(src.file(&f).unwrap_err().setting, "colour");
    }

    #[test]
    fn load_orders_file_env_flags_then_validates() {
        let f = toml_file(
            "layers.toml",
            "issuer = \"http://file.example\"\ncode_ttl = 90\nworkers = 3\n",
        );
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let s = Settings::load(Some(&f), env(&[]), &[]).unwrap();
        assert_eq!(
            (s.issuer.as_str(), s.code_ttl, s.workers),
            ("http://file.example", 90, 3)
        );
        let vars = env(&[
            ("DEPUTY_ISSUER", "http://env.example"),
            ("DEPUTY_WORKERS", "4"),
        ]);
        let s = Settings::load(Some(&f), vars.clone(), &[]).unwrap();
        assert_eq!(
            (s.issuer.as_str(), s.code_ttl, s.workers),
            ("http://env.example", 90, 4)
        );
        let s =
            Settings::load(Some(&f), vars.clone(), &[("issuer", "http://flag.example")]).unwrap();
        assert_eq!((s.issuer.as_str(), s.workers), ("http://flag.example", 4));
        // Validation sees the result of every source.
        let e = Settings::load(Some(&f), vars, &[("issuer", "http://flag.example/")]);
        assert_eq!(e.unwrap_err().setting, "issuer");
    }
}
