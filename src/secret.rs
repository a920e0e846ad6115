//! Randomness, hashing and comparison of secrets.
//!
//! Generated secrets (client secrets, codes, refresh tokens) carry at least 256
//! bits of randomness. Codes and refresh tokens are stored as SHA-256; client
//! secrets and passwords as argon2id PHC strings, with parameters chosen for
//! what is hashed (see `Argon2Profile`).

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// `n` random bytes from the OS CSPRNG (OpenSSL's), base64url without padding.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    // OpenSSL's CSPRNG only fails when the OS has no entropy source at all; then
    // there is nothing safe to hand out and stopping is right.
    #[allow(clippy::expect_used)]
    openssl::rand::rand_bytes(&mut buf).expect("OS random number generator unavailable");
    URL_SAFE_NO_PAD.encode(buf)
}

/// `N` random bytes from the OS CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    #[allow(clippy::expect_used)]
    openssl::rand::rand_bytes(&mut buf).expect("OS random number generator unavailable");
    buf
}

/// A 256-bit secret as handed to clients (43 base64url characters).
pub fn new_secret() -> String {
    random_token(32)
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    openssl::sha::sha256(data)
}

/// base64url(SHA-256(data)): how codes and refresh tokens are stored.
pub fn sha256_b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(sha256(data))
}

/// A secret in `Debug` output: its length, never its text. For hand-written
/// `Debug` impls of types that hold tokens, codes, secrets or passwords.
#[derive(Clone, Copy)]
pub struct Redacted<'a>(pub &'a str);

impl std::fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<redacted, {} bytes>", self.0.len())
    }
}

/// HMAC-SHA256 of `data` under `key`, with a label naming the purpose (so a
/// value derived for one purpose is never valid for another), base64url.
pub fn hmac_b64(key: &str, label: &str, data: &[u8]) -> Result<String, String> {
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::sign::Signer;
    let fail = |e: openssl::error::ErrorStack| e.to_string();
    let pkey = PKey::hmac(key.as_bytes()).map_err(fail)?;
    let mut signer = Signer::new(MessageDigest::sha256(), &pkey).map_err(fail)?;
    signer.update(label.as_bytes()).map_err(fail)?;
    signer.update(b"\0").map_err(fail)?;
    signer.update(data).map_err(fail)?;
    Ok(URL_SAFE_NO_PAD.encode(signer.sign_to_vec().map_err(fail)?))
}

/// Constant-time equality for secrets of possibly different lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && openssl::memcmp::eq(a, b)
}

/// Which argon2id parameters to use.
#[derive(Debug, Clone, Copy)]
pub enum Argon2Profile {
    /// People's passwords: low entropy, so the hash must be slow (argon2 defaults,
    /// 19 MiB, 2 passes, about 20 ms here).
    Password,
    /// Generated 256-bit client secrets: brute force is already impossible, and the
    /// secret is checked on every token request, so a light hash (1 MiB, 1 pass).
    GeneratedSecret,
}

fn argon2_for(profile: Argon2Profile) -> Argon2<'static> {
    let params = match profile {
        Argon2Profile::Password => Params::default(),
        Argon2Profile::GeneratedSecret => {
            Params::new(1024, 1, 1, None).unwrap_or_else(|_| Params::default())
        }
    };
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn hash_secret(secret: &str, profile: Argon2Profile) -> Result<String, String> {
    let salt_bytes = {
        let mut b = [0u8; 16];
        openssl::rand::rand_bytes(&mut b).map_err(|e| e.to_string())?;
        b
    };
    argon2_for(profile)
        .hash_password_with_salt(secret.as_bytes(), &salt_bytes)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Verify against a stored PHC string; the parameters come from the string.
pub fn verify_secret(secret: &str, phc: &str) -> bool {
    // The parameters (and so the cost) are read from the PHC string.
    Argon2::default()
        .verify_password(secret.as_bytes(), phc)
        .is_ok()
}

/// The hashes verified against when the person or client is unknown, so that
/// an unknown name and a wrong secret do the same work and take the same time.
/// Computed once at start-up (`AppState::open`): a hashing failure stops
/// start-up instead of leaving an empty hash that would fail fast.
#[derive(Debug, Clone)]
pub struct DummyHashes {
    /// argon2id with the `Password` profile (what people's hashes use).
    pub password: String,
    /// argon2id with the `GeneratedSecret` profile (what client secrets use).
    pub client_secret: String,
}

impl DummyHashes {
    pub fn new() -> Result<DummyHashes, String> {
        Self::with_hasher(hash_secret)
    }

    /// With the hash function given, so a test can make it fail. Whatever it
    /// returns must be an argon2id PHC string.
    pub fn with_hasher(
        hash: impl Fn(&str, Argon2Profile) -> Result<String, String>,
    ) -> Result<DummyHashes, String> {
        let make = |what: &str, secret: &str, profile: Argon2Profile| {
            let phc = hash(secret, profile)
                .map_err(|e| format!("cannot compute the dummy {what} hash: {e}"))?;
            match argon2::PasswordHash::new(&phc) {
                Ok(h) if h.algorithm.as_str() == "argon2id" => Ok(phc),
                _ => Err(format!(
                    "cannot compute the dummy {what} hash: not an argon2id PHC string"
                )),
            }
        };
        Ok(DummyHashes {
            password: make("password", "deputy-dummy-password", Argon2Profile::Password)?,
            client_secret: make(
                "client secret",
                "deputy-unknown-client",
                Argon2Profile::GeneratedSecret,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_256_bits_and_distinct() {
        let a = new_secret();
        let b = new_secret();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
    }

    #[test]
    fn hash_and_verify_round_trip_for_both_profiles() {
        for p in [Argon2Profile::GeneratedSecret, Argon2Profile::Password] {
            let h = hash_secret("s3cret", p).unwrap();
            assert!(h.starts_with("$argon2id$"));
            assert!(verify_secret("s3cret", &h));
            assert!(!verify_secret("s3cret!", &h));
        }
        assert!(!verify_secret("x", "not a phc string"));
    }

    /// (m_cost, t_cost, p_cost) of an argon2id PHC string.
    fn costs(phc: &str) -> (u32, u32, u32) {
        let h = argon2::PasswordHash::new(phc).unwrap();
        assert_eq!(h.algorithm.as_str(), "argon2id");
        let p = Params::try_from(&h).unwrap();
        (p.m_cost(), p.t_cost(), p.p_cost())
    }

    #[test]
    fn dummy_hashes_use_each_profiles_parameters() {
        let d = DummyHashes::new().unwrap();
        assert_eq!(costs(&d.password), (19 * 1024, 2, 1));
        assert_eq!(costs(&d.client_secret), (1024, 1, 1));
        // Exactly what a real hash of that profile costs.
        let real_pw = hash_secret("x", Argon2Profile::Password).unwrap();
        let real_secret = hash_secret("x", Argon2Profile::GeneratedSecret).unwrap();
        assert_eq!(costs(&d.password), costs(&real_pw));
        assert_eq!(costs(&d.client_secret), costs(&real_secret));
        assert!(!verify_secret("", &d.password));
        assert!(!verify_secret("", &d.client_secret));
    }

    #[test]
    fn a_failing_hasher_stops_instead_of_an_empty_dummy_hash() {
        let e = DummyHashes::with_hasher(|_, _| Err("no memory".to_string())).unwrap_err();
        assert_eq!(e, "cannot compute the dummy password hash: no memory");
        // An empty or foreign string is refused too, never stored.
        let e = DummyHashes::with_hasher(|_, _| Ok(String::new())).unwrap_err();
        assert!(e.contains("not an argon2id PHC string"), "{e}");
        let e = DummyHashes::with_hasher(|s, p| match p {
            Argon2Profile::Password => hash_secret(s, p),
            Argon2Profile::GeneratedSecret => Err("boom".to_string()),
        })
        .unwrap_err();
        assert_eq!(e, "cannot compute the dummy client secret hash: boom");
    }

    #[test]
    fn redacted_shows_the_length_only() {
        let shown = format!("{:?}", Redacted("hunter2-secret"));
        assert_eq!(shown, "<redacted, 14 bytes>");
    }

    /// Records read from the store that hold secrets format without them.
    #[test]
    fn stored_secrets_stay_out_of_debug() {
        let interaction = crate::store::sessions::Interaction {
            id: "ia-1".into(),
            browser_hash: "bh".into(),
            csrf: "csrf-secret-value".into(),
            request: "{}".into(),
            login_done: false,
            expires_at: 1,
        };
        let shown = format!("{interaction:?}");
        assert!(!shown.contains("csrf-secret-value"), "{shown}");
        assert!(shown.contains("ia-1"));
        let user = crate::store::users::User {
            id: "u1".into(),
            username: "alice".into(),
            email: None,
            name: None,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$salt$pwhash".into(),
            disabled_at: None,
            created_at: 1,
            email_verified: false,
        };
        let shown = format!("{user:?}");
        assert!(
            !shown.contains("pwhash") && shown.contains("alice"),
            "{shown}"
        );
    }

    #[test]
    fn constant_time_eq_handles_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
