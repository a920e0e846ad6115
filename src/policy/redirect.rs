//! Redirect URI matching (RFC 6749 §3.1.2.2, RFC 9700 §4.1.3): exact string
//! comparison, with one exception: RFC 8252 §7.3 loopback redirects
//! (`http://127.0.0.1`, `http://[::1]`, and `http://localhost`, which
//! self-registering native clients use) match on any port.

/// Split `http://127.0.0.1:PORT/rest` into the loopback host and the rest,
/// without the port. None when the URI is not an http loopback-IP URI.
fn loopback_parts(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("http://")?;
    let (host, after) = if let Some(r) = rest.strip_prefix("[::1]") {
        ("[::1]", r)
    } else if let Some(r) = rest.strip_prefix("127.0.0.1") {
        ("127.0.0.1", r)
    } else if let Some(r) = rest.strip_prefix("localhost") {
        ("localhost", r)
    } else {
        return None;
    };
    // after = [":" port] path-and-query
    let path = match after.strip_prefix(':') {
        Some(p) => {
            let digits = p.bytes().take_while(u8::is_ascii_digit).count();
            // RFC 8252 §7.3: a port is 1..=65535; written without leading
            // zeros, so the response goes to the very string requested.
            let port = p.get(..digits)?;
            if port.starts_with('0') || !port.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
            {
                return None;
            }
            p.get(digits..)?
        }
        None => after,
    };
    if !(path.is_empty() || path.starts_with('/') || path.starts_with('?')) {
        return None;
    }
    Some((host, path))
}

/// Does the requested redirect URI match this registered one?
pub fn matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    match (loopback_parts(registered), loopback_parts(requested)) {
        (Some((h1, p1)), Some((h2, p2))) => h1 == h2 && p1 == p2,
        _ => false,
    }
}

/// Is this an http redirect URI on a loopback host (RFC 8252 §7.3)?
pub fn is_loopback(uri: &str) -> bool {
    loopback_parts(uri).is_some()
}

/// Choose the redirect URI for an authorization request (RFC 6749 §3.1.2.3):
/// the requested one if it matches a registered one; when omitted, the only
/// registered one.
pub fn select(registered: &[String], requested: Option<&str>) -> Option<String> {
    match requested {
        Some(r) => registered
            .iter()
            .any(|reg| matches(reg, r))
            .then(|| r.to_string()),
        None if registered.len() == 1 => registered.first().cloned(),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_match_only() {
        let reg = "https://app.example/cb";
        assert!(matches(reg, "https://app.example/cb"));
        for near in [
            "https://app.example/cb/",
            "https://app.example/cb?x=1",
            "https://app.example/CB",
            "https://APP.example/cb",
            "https://app.example:443/cb",
            "https://app.example/cb#f",
            "https://app.example.evil/cb",
            "https://app.example/cb/../cb",
            "http://app.example/cb",
            "https://app.example/c%62",
        ] {
            assert!(!matches(reg, near), "{near}");
        }
    }

    #[test]
    fn loopback_any_port() {
        assert!(matches("http://127.0.0.1/cb", "http://127.0.0.1:51234/cb"));
        assert!(matches("http://127.0.0.1:8000/cb", "http://127.0.0.1:9/cb"));
        assert!(matches("http://[::1]/cb", "http://[::1]:4000/cb"));
        assert!(!matches("http://127.0.0.1/cb", "http://127.0.0.1:80/other"));
        assert!(!matches("http://127.0.0.1/cb", "http://[::1]:80/cb"));
        assert!(matches("http://localhost/cb", "http://localhost:3334/cb"));
        assert!(!matches(
            "http://localhost/cb",
            "http://localhost.evil.example/cb"
        ));
        assert!(!matches(
            "http://localhost/cb",
            "http://localhost:80@evil.example/cb"
        ));
        assert!(!matches("http://localhost/cb", "http://127.0.0.1:80/cb"));
        assert!(!matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1.evil.example/cb"
        ));
        assert!(!matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1@evil.example/cb"
        ));
        // Self-registering native clients (MCP clients among them) register
        // `http://localhost`; it matches on any port like the IP literals.
        assert!(matches("http://localhost/cb", "http://localhost:3000/cb"));
        assert!(
            !matches("https://127.0.0.1/cb", "https://127.0.0.1:3/cb"),
            "http only"
        );
    }

    #[test]
    fn loopback_port_must_be_a_real_port_written_plainly() {
        let reg = "http://127.0.0.1/cb";
        assert!(matches(reg, "http://127.0.0.1:1/cb"));
        assert!(matches(reg, "http://127.0.0.1:65535/cb"));
        for bad in [
            "http://127.0.0.1:65536/cb",
            "http://127.0.0.1:99999/cb",
            "http://127.0.0.1:0/cb",
            "http://127.0.0.1:00080/cb",
            "http://127.0.0.1:080/cb",
            "http://127.0.0.1:/cb",
            "http://[::1]:70000/cb",
        ] {
            assert!(!matches(reg, bad), "{bad}");
            assert!(!matches("http://[::1]/cb", bad), "{bad}");
        }
        assert_eq!(
            select(&[reg.to_string()], Some("http://127.0.0.1:65536/cb")),
            None
        );
    }

    #[test]
    fn omitted_redirect_uri_needs_exactly_one_registered() {
        let one = vec!["https://a.example/cb".to_string()];
        let two = vec![
            "https://a.example/cb".to_string(),
            "https://a.example/cb2".to_string(),
        ];
        assert_eq!(select(&one, None).as_deref(), Some("https://a.example/cb"));
        assert_eq!(select(&two, None), None);
        assert_eq!(
            select(&two, Some("https://a.example/cb2")).as_deref(),
            Some("https://a.example/cb2")
        );
        assert_eq!(select(&two, Some("https://a.example/cb3")), None);
    }
}
