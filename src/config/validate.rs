//! Checks that need several settings together, or the shape of a value beyond
//! what a single value's type accepts. Run once after every source was applied, for
//! `serve` and for every CLI command alike.

use super::{bad, ConfigError, Settings};

impl Settings {
    /// Check values that only make sense together or need the file system.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_issuer(&self.issuer)?;
        self.bind_addr()?;
        self.metrics_addr()?;
        // An empty path is not "no database": SQLite opens a private temporary
        // database that vanishes on close, and an empty keys_dir is the cwd.
        if self.database.as_os_str().is_empty() {
            return Err(bad("database", "must not be empty"));
        }
        if self.keys_dir.as_os_str().is_empty() {
            return Err(bad("keys_dir", "must not be empty"));
        }
        if self.refresh_absolute_ttl < self.refresh_idle_ttl {
            return Err(bad(
                "refresh_absolute_ttl",
                "must not be shorter than refresh_idle_ttl",
            ));
        }
        // A rotated key must sit in the JWKS longer than relying parties may
        // cache the JWKS (RFC 7517 §5, OIDC Core §10.1.1), or a cached set
        // misses the key that signs the next token.
        if self.key_prepublish <= self.jwks_max_age {
            return Err(bad(
                "key_prepublish",
                format!(
                    "must be longer than jwks_max_age ({} <= {})",
                    self.key_prepublish, self.jwks_max_age
                ),
            ));
        }
        // A CIBA request must outlast the wait between two polls, or a client
        // that keeps to `interval` (CIBA Core §7.3) never polls it twice.
        if self.ciba_interval >= self.ciba_default_expiry {
            return Err(bad(
                "ciba_interval",
                format!(
                    "must be shorter than ciba_default_expiry ({} >= {})",
                    self.ciba_interval, self.ciba_default_expiry
                ),
            ));
        }
        if self.client_metadata_max_cache < self.client_metadata_min_cache {
            return Err(bad(
                "client_metadata_max_cache",
                format!(
                    "must not be below client_metadata_min_cache ({} < {})",
                    self.client_metadata_max_cache, self.client_metadata_min_cache
                ),
            ));
        }
        if !self.approval_webhook.is_empty() {
            let url = url::Url::parse(&self.approval_webhook)
                .map_err(|e| bad("approval_webhook", format!("not a valid URL ({e})")))?;
            // The safe fetcher's rule (`crate::fetch`): https, or http to
            // loopback in development (`allow_loopback_fetch`); anything
            // else could never be delivered, so it stops start-up.
            let loopback_dev = self.allow_loopback_fetch && is_loopback_host(&url);
            if url.scheme() != "https" && !(url.scheme() == "http" && loopback_dev) {
                return Err(bad(
                    "approval_webhook",
                    "must be an https URL (http only to loopback with allow_loopback_fetch)",
                ));
            }
        }
        if self.log_level.trim().is_empty() {
            return Err(bad("log_level", "must not be empty"));
        }
        Ok(())
    }
}

/// `localhost`, or a loopback address (127.0.0.0/8, ::1).
fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    }
}

/// The issuer is exactly `http[s]://host[:port]`: RFC 8414 §2 forbids query and
/// fragment; deputy serves every endpoint and both discovery documents at the
/// root (RFC 8414 §3.1, OIDC Discovery §4), so a path would advertise endpoints
/// that do not exist, and the published string must be the configured one
/// byte for byte (RFC 8414 §3.3), so nothing is rewritten.
fn check_issuer(issuer: &str) -> Result<(), ConfigError> {
    let url =
        url::Url::parse(issuer).map_err(|e| bad("issuer", format!("not a valid URL ({e})")))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(bad("issuer", "must be an http or https URL"));
    }
    if url.query().is_some() || url.fragment().is_some() || url.cannot_be_a_base() {
        return Err(bad("issuer", "must not have a query or fragment"));
    }
    if url.host_str().is_none() {
        return Err(bad("issuer", "must have a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("issuer", "must not contain a user name or password"));
    }
    if url.path() != "/" || issuer.ends_with('/') {
        return Err(bad(
            "issuer",
            "must be scheme://host[:port] with no path and no trailing slash \
             (deputy serves at the root of its origin)",
        ));
    }
    // What is left to differ is spelling: case, a default port, whitespace.
    let canonical = url.as_str().trim_end_matches('/');
    if canonical != issuer {
        return Err(bad(
            "issuer",
            format!("must be written in canonical form: `{canonical}`"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::with;

    fn issuer_error(issuer: &str) -> Option<String> {
        let s = with(&[("issuer", issuer)]).unwrap();
        s.validate().err().map(|e| {
            assert_eq!(e.setting, "issuer", "{issuer}: {e}");
            e.message
        })
    }

    #[test]
    fn bad_issuer_is_refused() {
        for bad in [
            "not a url",
            "https://x.example/?a=b",
            "https://x.example#f",
            "ftp://x.example",
            "https://user:pw@x.example",
            "https://user@x.example",
            "http://h:1/",
            "http://h:1/tenant",
            "http://h:1/tenant/",
            "https://X.example",
            "https://x.example:443",
            " https://x.example",
        ] {
            assert!(issuer_error(bad).is_some(), "{bad} was accepted");
        }
        assert_eq!(
            issuer_error("https://a:b@x.example").unwrap(),
            "must not contain a user name or password"
        );
        assert_eq!(
            issuer_error("https://x.example:443").unwrap(),
            "must be written in canonical form: `https://x.example`"
        );
    }

    #[test]
    fn origin_issuers_are_kept_exactly() {
        for good in [
            "http://127.0.0.1:8080",
            "https://login.example.com",
            "https://login.example.com:8443",
            "http://[::1]:8080",
        ] {
            let s = with(&[("issuer", good)]).unwrap();
            assert_eq!(s.validate(), Ok(()), "{good}");
            assert_eq!(s.issuer, good);
        }
    }

    #[test]
    fn empty_paths_are_refused() {
        for key in ["database", "keys_dir"] {
            let s = with(&[(key, "")]).unwrap();
            let e = s.validate().unwrap_err();
            assert_eq!(e.to_string(), format!("setting `{key}`: must not be empty"));
        }
    }

    /// The webhook goes through the safe fetcher: https, or http to
    /// loopback only in development; an undeliverable URL stops start-up.
    #[test]
    fn the_approval_webhook_must_be_deliverable() {
        let check = |url: &str, loopback: &str| {
            with(&[
                ("approval_webhook", url),
                ("allow_loopback_fetch", loopback),
            ])
            .unwrap()
            .validate()
            .map_err(|e| e.to_string())
        };
        let refused = "setting `approval_webhook`: must be an https URL \
                       (http only to loopback with allow_loopback_fetch)";
        for (url, loopback) in [
            ("http://example.com/x", "false"),
            ("http://example.com/x", "true"),
            ("http://127.0.0.1:9/x", "false"),
            ("ftp://example.com/x", "true"),
        ] {
            assert_eq!(
                check(url, loopback).unwrap_err(),
                refused,
                "{url} {loopback}"
            );
        }
        for (url, loopback) in [
            ("https://hooks.example/notify", "false"),
            ("http://127.0.0.1:9/x", "true"),
            ("http://[::1]:9/x", "true"),
            ("http://localhost:9/x", "true"),
        ] {
            assert_eq!(check(url, loopback), Ok(()), "{url} {loopback}");
        }
    }

    #[test]
    fn a_ciba_request_outlasts_its_poll_interval() {
        let s = with(&[("ciba_interval", "60"), ("ciba_default_expiry", "60")]).unwrap();
        assert_eq!(
            s.validate().unwrap_err().to_string(),
            "setting `ciba_interval`: must be shorter than ciba_default_expiry (60 >= 60)"
        );
        let s = with(&[("ciba_interval", "59"), ("ciba_default_expiry", "60")]).unwrap();
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn prepublication_must_outlast_the_jwks_cache() {
        for (max_age, prepublish) in [("1000", "900"), ("300", "300"), ("0", "0")] {
            let s = with(&[("jwks_max_age", max_age), ("key_prepublish", prepublish)]).unwrap();
            let e = s.validate().unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "setting `key_prepublish`: must be longer than jwks_max_age \
                     ({prepublish} <= {max_age})"
                )
            );
        }
        let s = with(&[("jwks_max_age", "0"), ("key_prepublish", "1")]).unwrap();
        assert_eq!(s.validate(), Ok(()));
    }
}
