//! Server-provided DPoP nonces (RFC 9449 §8), stateless so any instance can
//! check a nonce another one issued: a nonce names a time window and carries
//! an HMAC of it under a secret every instance shares (the database's server
//! secrets). A nonce is good in its window and the next one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Seconds per nonce window; a nonce lives between one and two windows.
pub const NONCE_WINDOW: i64 = 300;

/// The label that keeps these HMACs apart from the secret's other uses.
const LABEL: &str = "dpop-nonce";

/// The keys that issue and check nonces.
pub struct Nonces {
    secret: String,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nonces")
            .field("secret", &crate::secret::Redacted(&self.secret))
            .finish()
    }
}

impl Nonces {
    pub fn new(secret: String) -> Self {
        Self { secret }
    }

    fn for_window(&self, window: i64) -> Option<String> {
        let w = window.to_be_bytes();
        let mac = crate::secret::hmac_b64(&self.secret, LABEL, &w).ok()?;
        Some(format!("{}.{mac}", URL_SAFE_NO_PAD.encode(w)))
    }

    /// The nonce to send now in `DPoP-Nonce`.
    pub fn current(&self, now: i64) -> Option<String> {
        self.for_window(now.div_euclid(NONCE_WINDOW))
    }

    /// Whether `nonce` was issued in this window or the one before.
    pub fn accepts(&self, nonce: &str, now: i64) -> bool {
        let current = now.div_euclid(NONCE_WINDOW);
        [current, current - 1].into_iter().any(|w| {
            self.for_window(w).is_some_and(|good| {
                crate::secret::constant_time_eq(good.as_bytes(), nonce.as_bytes())
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_lives_for_its_window_and_the_next() {
        let n = Nonces::new("s3cret".into());
        let issued = n.current(1_000_000).unwrap();
        assert!(n.accepts(&issued, 1_000_000));
        assert!(n.accepts(&issued, 1_000_000 + NONCE_WINDOW));
        assert!(!n.accepts(&issued, 1_000_000 + 2 * NONCE_WINDOW));
        assert!(!n.accepts(&issued, 1_000_000 - NONCE_WINDOW));
    }

    #[test]
    fn a_nonce_of_another_secret_or_edited_is_refused() {
        let a = Nonces::new("one".into());
        let b = Nonces::new("two".into());
        let issued = a.current(5000).unwrap();
        assert!(!b.accepts(&issued, 5000));
        assert!(!a.accepts(&format!("{issued}x"), 5000));
        assert!(!a.accepts("", 5000));
        assert!(format!("{a:?}").contains("redacted"));
    }
}
