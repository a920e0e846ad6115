//! Private keys at rest in a shared database: sealed with AES-256-GCM under
//! a key-encryption key (KEK) that never enters the database. The KEK is 32
//! random bytes, base64, in the file named by `key_encryption_key_file`
//! (`openssl rand -base64 32`). A sealed key is `nonce (12) ‖ ciphertext ‖
//! tag (16)`; the key's `kid` is the associated data, so a sealed key moved
//! to another row does not open.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use openssl::symm::{decrypt_aead, encrypt_aead, Cipher};

const NONCE: usize = 12;
const TAG: usize = 16;

/// The key-encryption key.
pub struct Kek([u8; 32]);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    /// Read the KEK file: 32 bytes, base64 (surrounding white space allowed).
    pub fn from_file(path: &std::path::Path) -> Result<Kek, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Kek::from_base64(text.trim()).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn from_base64(text: &str) -> Result<Kek, String> {
        let bytes = STANDARD.decode(text).map_err(|_not_base64| {
            "not base64 (make one with `openssl rand -base64 32`)".to_string()
        })?;
        let key: [u8; 32] = bytes.try_into().map_err(|v: Vec<u8>| {
            format!(
                "must be 32 bytes, is {} (make one with `openssl rand -base64 32`)",
                v.len()
            )
        })?;
        Ok(Kek(key))
    }

    /// Seal `plaintext`, binding it to `aad` (the key's `kid`).
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> Result<Vec<u8>, String> {
        let nonce = crate::secret::random_bytes::<NONCE>();
        let mut tag = [0u8; TAG];
        let ct = encrypt_aead(
            Cipher::aes_256_gcm(),
            &self.0,
            Some(&nonce),
            aad.as_bytes(),
            plaintext,
            &mut tag,
        )
        .map_err(|e| format!("cannot seal a key: {e}"))?;
        let mut out = Vec::with_capacity(NONCE + ct.len() + TAG);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Open a sealed key. A wrong KEK (or a damaged or moved key) is an
    /// error, never a different key.
    pub fn open(&self, sealed: &[u8], aad: &str) -> Result<Vec<u8>, String> {
        let wrong = || {
            format!(
                "signing key {aad} does not open with this key-encryption key \
                 (wrong `key_encryption_key_file`, or the key is damaged)"
            )
        };
        if sealed.len() < NONCE + TAG {
            return Err(wrong());
        }
        let (nonce, rest) = sealed.split_at(NONCE);
        let (ct, tag) = rest.split_at(rest.len() - TAG);
        decrypt_aead(
            Cipher::aes_256_gcm(),
            &self.0,
            Some(nonce),
            aad.as_bytes(),
            ct,
            tag,
        )
        .map_err(|_authentication_failed| wrong())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(b: u8) -> Kek {
        Kek::from_base64(&STANDARD.encode([b; 32])).unwrap()
    }

    #[test]
    fn sealed_keys_open_only_with_their_kek_and_kid() {
        let k = kek(1);
        let sealed = k.seal(b"private pem", "kid-1").unwrap();
        assert_eq!(k.open(&sealed, "kid-1").unwrap(), b"private pem");
        assert!(!sealed.windows(11).any(|w| w == b"private pem"));
        assert!(kek(2)
            .open(&sealed, "kid-1")
            .unwrap_err()
            .contains("does not open"));
        assert!(k.open(&sealed, "kid-2").is_err(), "bound to its kid");
        let mut damaged = sealed.clone();
        if let Some(b) = damaged.last_mut() {
            *b ^= 1;
        }
        assert!(k.open(&damaged, "kid-1").is_err());
        assert!(k.open(&[0u8; 5], "kid-1").is_err());
    }

    #[test]
    fn kek_text_must_be_32_base64_bytes() {
        assert!(Kek::from_base64("not base64!")
            .unwrap_err()
            .contains("base64"));
        assert!(Kek::from_base64(&STANDARD.encode([0u8; 16]))
            .unwrap_err()
            .contains("32 bytes"));
        assert!(Kek::from_base64(&STANDARD.encode([0u8; 32])).is_ok());
    }
}
