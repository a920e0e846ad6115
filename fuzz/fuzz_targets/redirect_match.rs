//! Redirect URI matching (RFC 6749 §3.1.2, RFC 8252 §7.3): exact, except for
//! the port of an http loopback redirect (the IP literals, and `localhost`,
//! which deputy treats alike since issue 14).
#![no_main]
use libfuzzer_sys::fuzz_target;

use deputy::policy::redirect::{matches, select};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (registered, requested) = text.split_once('\n').unwrap_or((text, text));
    assert!(matches(registered, registered));
    if matches(registered, requested) && registered != requested {
        // Only loopback redirects may differ, and only in the port.
        assert!(
            registered.starts_with("http://127.0.0.1")
                || registered.starts_with("http://[::1]")
                || registered.starts_with("http://localhost")
        );
        let strip = |s: &str| -> String {
            let rest = s
                .trim_start_matches("http://127.0.0.1")
                .trim_start_matches("http://[::1]")
                .trim_start_matches("http://localhost");
            let rest = rest
                .strip_prefix(':')
                .map(|r| r.trim_start_matches(|c: char| c.is_ascii_digit()))
                .unwrap_or(rest);
            rest.to_string()
        };
        assert_eq!(strip(registered), strip(requested));
        assert_eq!(&registered[..12], &requested[..12]);
    }
    let reg = vec![registered.to_string()];
    if let Some(chosen) = select(&reg, Some(requested)) {
        assert_eq!(chosen, requested);
    }
});
