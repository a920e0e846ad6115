//! Settings: defaults, then `deputy.toml` (`--config`), then `DEPUTY_*`
//! environment variables, then command-line flags. Every source goes through
//! `Settings::apply`, so an unknown key or a bad value is reported the same way:
//! one line naming the setting.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

mod validate;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// All settings, with their defaults. Durations are in seconds.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Issuer identifier (RFC 8414 §2); also the base of every endpoint URL.
    pub issuer: String,
    /// Address the HTTP server binds.
    pub bind: String,
    /// SQLite database file.
    pub database: PathBuf,
    /// Directory of signing keys (PKCS#8 PEM plus metadata).
    pub keys_dir: PathBuf,
    pub access_token_ttl: i64,
    pub id_token_ttl: i64,
    pub code_ttl: i64,
    /// A refresh token unused this long is dead.
    pub refresh_idle_ttl: i64,
    /// A refresh family dies this long after the original sign-in, rotated or not.
    pub refresh_absolute_ttl: i64,
    /// Seconds during which the same client re-presenting a just-rotated refresh
    /// token gets the same successor again instead of a reuse alarm (0 = strict).
    pub refresh_grace: i64,
    /// A client assertion's `exp` may be at most this far ahead (RFC 7523 §3).
    pub assertion_max_age: i64,
    /// Tolerance for `exp`, `iat` and `nbf` checks.
    pub clock_skew: i64,
    /// `Cache-Control: max-age` of the JWKS.
    pub jwks_max_age: i64,
    /// A rotated key is published this long before it signs anything.
    pub key_prepublish: i64,
    /// Lifetime of a login session cookie.
    pub session_ttl: i64,
    pub log_format: LogFormat,
    /// tracing filter, e.g. `info` or `deputy=debug`.
    pub log_level: String,
    /// Development only: outbound fetches (clients' JWKS URIs) may reach
    /// loopback addresses, and use `http` to a loopback host
    /// (`crate::fetch::Policy`; meant to become `allow_loopback_fetch`).
    pub allow_loopback_jwks_uri: bool,
    /// HTTP worker threads (0 = one per core).
    pub workers: usize,
    /// Token-endpoint requests per second per authenticated client (0 = no limit).
    pub rate_limit_client: u32,
    /// Token-endpoint requests per second per remote address (0 = no limit).
    pub rate_limit_address: u32,
    /// Login form posts per second per remote address (0 = no limit).
    pub rate_limit_login: u32,
    /// Failed client authentications allowed per client id and per remote
    /// address within `auth_failure_window`; further failures are 429
    /// (0 = no budget).
    pub auth_failure_limit: u32,
    /// The window of `auth_failure_limit`, seconds.
    pub auth_failure_window: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            issuer: "http://127.0.0.1:8080".to_string(),
            bind: "127.0.0.1:8080".to_string(),
            database: PathBuf::from("data/deputy.db"),
            keys_dir: PathBuf::from("keys"),
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
            allow_loopback_jwks_uri: false,
            workers: 0,
            rate_limit_client: 10_000,
            rate_limit_address: 20_000,
            rate_limit_login: 100,
            auth_failure_limit: 20,
            auth_failure_window: 10,
        }
    }
}

/// Every key `apply` knows, in the order the README documents them.
pub const KEYS: &[&str] = &[
    "issuer",
    "bind",
    "database",
    "keys_dir",
    "access_token_ttl",
    "id_token_ttl",
    "code_ttl",
    "refresh_idle_ttl",
    "refresh_absolute_ttl",
    "refresh_grace",
    "assertion_max_age",
    "clock_skew",
    "jwks_max_age",
    "key_prepublish",
    "session_ttl",
    "log_format",
    "log_level",
    "allow_loopback_jwks_uri",
    "workers",
    "rate_limit_client",
    "rate_limit_address",
    "rate_limit_login",
    "auth_failure_limit",
    "auth_failure_window",
];

fn seconds(key: &str, v: &str, min: i64) -> Result<i64, ConfigError> {
    let n: i64 = v
        .trim()
        .parse()
        .map_err(|_| bad(key, format!("`{v}` is not a whole number of seconds")))?;
    if n < min || n > 10 * 365 * 24 * 3600 {
        return Err(bad(
            key,
            format!("must be between {min} and 315360000 seconds"),
        ));
    }
    Ok(n)
}

impl Settings {
    /// Set one key from its textual value.
    pub fn apply(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            // Kept as written: the issuer is published and compared exactly
            // (RFC 8414 §3.3), so `validate` refuses what it would have to rewrite.
            "issuer" => self.issuer = value.to_string(),
            "bind" => self.bind = value.to_string(),
            "database" => self.database = PathBuf::from(value),
            "keys_dir" => self.keys_dir = PathBuf::from(value),
            "access_token_ttl" => self.access_token_ttl = seconds(key, value, 1)?,
            "id_token_ttl" => self.id_token_ttl = seconds(key, value, 1)?,
            "code_ttl" => self.code_ttl = seconds(key, value, 1)?,
            "refresh_idle_ttl" => self.refresh_idle_ttl = seconds(key, value, 1)?,
            "refresh_absolute_ttl" => self.refresh_absolute_ttl = seconds(key, value, 1)?,
            "refresh_grace" => self.refresh_grace = seconds(key, value, 0)?,
            "assertion_max_age" => self.assertion_max_age = seconds(key, value, 1)?,
            "clock_skew" => self.clock_skew = seconds(key, value, 0)?,
            "jwks_max_age" => self.jwks_max_age = seconds(key, value, 0)?,
            "key_prepublish" => self.key_prepublish = seconds(key, value, 0)?,
            "session_ttl" => self.session_ttl = seconds(key, value, 1)?,
            "log_format" => {
                self.log_format = match value {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    _ => return Err(bad(key, "must be `text` or `json`")),
                }
            }
            "log_level" => self.log_level = value.to_string(),
            "allow_loopback_jwks_uri" => {
                self.allow_loopback_jwks_uri = match value {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => return Err(bad(key, "must be true or false")),
                }
            }
            "workers" => {
                self.workers = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| *n <= 256)
                    .ok_or_else(|| bad(key, "must be a number from 0 to 256"))?
            }
            "rate_limit_client" | "rate_limit_address" | "rate_limit_login" => {
                let n: u32 = value.trim().parse().map_err(|_| {
                    bad(
                        key,
                        "must be a whole number of requests per second (0 = no limit)",
                    )
                })?;
                match key {
                    "rate_limit_client" => self.rate_limit_client = n,
                    "rate_limit_address" => self.rate_limit_address = n,
                    _ => self.rate_limit_login = n,
                }
            }
            "auth_failure_limit" => {
                self.auth_failure_limit = value
                    .trim()
                    .parse()
                    .map_err(|_| bad(key, "must be a whole number of failures (0 = no limit)"))?
            }
            "auth_failure_window" => self.auth_failure_window = seconds(key, value, 1)?,
            _ => return Err(bad(key, "unknown setting")),
        }
        Ok(())
    }

    /// Apply a TOML file whose top-level keys are setting names.
    pub fn apply_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad("config", format!("cannot read {}: {e}", path.display())))?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            bad(
                "config",
                format!("{} is not valid TOML: {}", path.display(), e.message()),
            )
        })?;
        for (key, value) in table {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => return Err(bad(&key, "must be a string, integer or boolean")),
            };
            self.apply(&key, &text)?;
        }
        Ok(())
    }

    /// Apply `DEPUTY_<KEY>` variables from the given environment.
    pub fn apply_env<I: IntoIterator<Item = (String, String)>>(
        &mut self,
        vars: I,
    ) -> Result<(), ConfigError> {
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix("DEPUTY_") else {
                continue;
            };
            let key = rest.to_ascii_lowercase();
            if key == "config" {
                continue; // read by the CLI to find the file
            }
            if !KEYS.contains(&key.as_str()) {
                return Err(bad(&name, "unknown setting"));
            }
            self.apply(&key, &value)?;
        }
        Ok(())
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
        let mut s = Settings::default();
        let e = s.apply("acces_token_ttl", "5").unwrap_err();
        assert_eq!(e.setting, "acces_token_ttl");
        assert_eq!(e.to_string(), "setting `acces_token_ttl`: unknown setting");
    }

    #[test]
    fn env_overrides_and_unknown_env_is_refused() {
        let mut s = Settings::default();
        s.apply_env(vec![
            ("DEPUTY_ACCESS_TOKEN_TTL".to_string(), "60".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ])
        .unwrap();
        assert_eq!(s.access_token_ttl, 60);
        let e = s
            .apply_env(vec![("DEPUTY_NOPE".to_string(), "1".to_string())])
            .unwrap_err();
        assert_eq!(e.setting, "DEPUTY_NOPE");
    }

    #[test]
    fn non_numeric_ttl_is_refused() {
        let mut s = Settings::default();
        assert_eq!(s.apply("code_ttl", "soon").unwrap_err().setting, "code_ttl");
        assert_eq!(s.apply("code_ttl", "0").unwrap_err().setting, "code_ttl");
        s.apply("refresh_grace", "0").unwrap();
    }

    #[test]
    fn auth_failure_budget_settings() {
        let mut s = Settings::default();
        assert_eq!((s.auth_failure_limit, s.auth_failure_window), (20, 10));
        s.apply("auth_failure_limit", "0").unwrap();
        s.apply("auth_failure_window", "60").unwrap();
        assert_eq!((s.auth_failure_limit, s.auth_failure_window), (0, 60));
        for (k, v) in [
            ("auth_failure_limit", "-1"),
            ("auth_failure_limit", "many"),
            ("auth_failure_window", "0"),
        ] {
            assert_eq!(s.apply(k, v).unwrap_err().setting, k);
        }
    }

    #[test]
    fn bad_bind_is_refused() {
        let mut s = Settings::default();
        s.apply("bind", "nowhere").unwrap();
        assert_eq!(s.validate().unwrap_err().setting, "bind");
    }

    #[test]
    fn toml_file_applies_and_rejects_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("deputy-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("deputy.toml");
        std::fs::write(
            &f,
            "issuer = \"https://id.example\"\naccess_token_ttl = 120\n",
        )
        .unwrap();
        let mut s = Settings::default();
        s.apply_file(&f).unwrap();
        assert_eq!(s.issuer, "https://id.example");
        assert_eq!(s.access_token_ttl, 120);
        std::fs::write(&f, "colour = \"blue\"\n").unwrap();
        assert_eq!(s.apply_file(&f).unwrap_err().setting, "colour");
    }
}
