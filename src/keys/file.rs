//! Signing keys on disk: `<kid>.pem` (PKCS#8, mode 0600) and `<kid>.json`
//! (metadata). A key counts only once its metadata file exists, and that file is
//! written last, so a half-written key is never used.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::elliptic_curve::Generate;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::{Deserialize, Serialize};

/// Metadata kept beside each key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyMeta {
    pub kid: String,
    pub alg: String,
    pub created_at: i64,
    /// The key signs from this time on (after pre-publication in the JWKS).
    pub activates_at: i64,
    /// Creation order (nanoseconds since the epoch): of two keys activating in
    /// the same second, the later one signs.
    #[serde(default)]
    pub serial: u128,
}

/// A key as read from disk.
pub struct StoredKey {
    pub meta: KeyMeta,
    pub private_pem: String,
    pub public_pem: String,
    /// Public JWK members (`kty`, `crv`, `x`, `y`).
    pub x: String,
    pub y: String,
}

/// RFC 7638 §3.2: thumbprint over the required members in lexicographic order.
pub fn ec_thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(crate::secret::sha256(canonical.as_bytes()))
}

fn coordinates(sk: &p256::SecretKey) -> Result<(String, String), String> {
    let point = sk.public_key().to_sec1_point(false);
    let x = point.x().ok_or("public key has no x coordinate")?;
    let y = point.y().ok_or("public key has no y coordinate")?;
    Ok((URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y)))
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), String> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Generate a P-256 key into `dir`, signing from `activates_at`.
pub fn generate(dir: &Path, now: i64, activates_at: i64) -> Result<KeyMeta, String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let sk = p256::SecretKey::generate();
    let (x, y) = coordinates(&sk)?;
    let kid = ec_thumbprint(&x, &y);
    let pem = sk
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| format!("cannot encode key: {e}"))?;
    write_new(&dir.join(format!("{kid}.pem")), pem.as_bytes(), 0o600)?;
    let meta = KeyMeta {
        kid: kid.clone(),
        alg: "ES256".to_string(),
        created_at: now,
        activates_at,
        serial: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    };
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| e.to_string())?;
    let tmp = dir.join(format!(".{kid}.json.tmp"));
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, &json, 0o600)?;
    fs::rename(&tmp, dir.join(format!("{kid}.json")))
        .map_err(|e| format!("cannot write key metadata: {e}"))?;
    Ok(meta)
}

/// Read every complete key in `dir`.
pub fn load_all(dir: &Path) -> Result<Vec<StoredKey>, String> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    };
    let mut keys = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        if stem.starts_with('.') {
            continue;
        }
        let meta_text =
            fs::read_to_string(entry.path()).map_err(|e| format!("cannot read {name}: {e}"))?;
        let meta: KeyMeta = serde_json::from_str(&meta_text)
            .map_err(|e| format!("bad key metadata {name}: {e}"))?;
        let pem_path = dir.join(format!("{stem}.pem"));
        let private_pem = fs::read_to_string(&pem_path)
            .map_err(|e| format!("cannot read {}: {e}", pem_path.display()))?;
        let sk: p256::SecretKey = p256::pkcs8::DecodePrivateKey::from_pkcs8_pem(&private_pem)
            .map_err(|e| format!("{} is not a P-256 PKCS#8 key: {e}", pem_path.display()))?;
        let (x, y) = coordinates(&sk)?;
        if ec_thumbprint(&x, &y) != meta.kid {
            return Err(format!(
                "key {name}: kid does not match the key's thumbprint"
            ));
        }
        let public_pem = sk
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| format!("cannot encode public key: {e}"))?;
        keys.push(StoredKey {
            meta,
            private_pem: private_pem.to_string(),
            public_pem,
            x,
            y,
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_round_trips_with_0600_and_thumbprint_kid() {
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("deputy-keys-{}", crate::secret::random_token(6)));
        let meta = generate(&dir, 100, 100).unwrap();
        let mode = fs::metadata(dir.join(format!("{}.pem", meta.kid)))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let keys = load_all(&dir).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].meta, meta);
        assert_eq!(ec_thumbprint(&keys[0].x, &keys[0].y), meta.kid);
        assert_eq!(meta.kid.len(), 43);
    }

    #[test]
    fn thumbprint_matches_rfc7638_construction() {
        // Independent computation of SHA-256 over the canonical JSON.
        let x = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
        let y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
        let expected = URL_SAFE_NO_PAD.encode(openssl::sha::sha256(
            br#"{"crv":"P-256","kty":"EC","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#,
        ));
        assert_eq!(ec_thumbprint(x, y), expected);
    }
}
