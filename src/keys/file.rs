//! Signing keys on disk: `<kid>.pem` (PKCS#8, mode 0600) and `<kid>.json`
//! (metadata). A key counts only once its metadata file exists, and that file is
//! written last, so a half-written key is never used. Each file is written
//! under a temporary name and renamed, so a failed write leaves nothing.

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

/// Write `dir/name` so that it is either complete or absent: a hidden temporary
/// file in the same directory, created with `mode` (a private key is never
/// readable by others, not even briefly), filled by `fill`, fsynced, renamed
/// into place, and the directory fsynced. On any error the temporary file is
/// removed, so a failed write (disk full) leaves no partial file behind.
fn write_atomic<F>(dir: &Path, name: &str, mode: u32, fill: F) -> Result<(), String>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    let tmp = dir.join(format!(".{name}.{}.tmp", crate::secret::random_token(6)));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let target = dir.join(name);
    let written = fill(&mut f)
        .and_then(|_| f.sync_all())
        .and_then(|_| fs::rename(&tmp, &target));
    drop(f);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(format!("cannot write {}: {e}", target.display()));
    }
    // The rename itself must survive a crash too.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", dir.display()))
}

/// A new P-256 key pair, signing from `activates_at` (`kid` = its RFC 7638
/// thumbprint), for the key directory or the database alike.
pub fn new_key(now: i64, activates_at: i64) -> Result<StoredKey, String> {
    let sk = p256::SecretKey::generate();
    let (x, y) = coordinates(&sk)?;
    let kid = ec_thumbprint(&x, &y);
    let private_pem = sk
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| format!("cannot encode key: {e}"))?
        .to_string();
    let public_pem = sk
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| format!("cannot encode public key: {e}"))?;
    let meta = KeyMeta {
        kid,
        alg: "ES256".to_string(),
        created_at: now,
        activates_at,
        serial: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    };
    Ok(StoredKey {
        meta,
        private_pem,
        public_pem,
        x,
        y,
    })
}

/// Check a key read back (from a file or the database): a P-256 PKCS#8 key
/// whose thumbprint is its `kid`; returns its public parts.
pub fn check_private_pem(kid: &str, private_pem: &str) -> Result<(String, String, String), String> {
    let sk: p256::SecretKey = p256::pkcs8::DecodePrivateKey::from_pkcs8_pem(private_pem)
        .map_err(|e| format!("key {kid} is not a P-256 PKCS#8 key: {e}"))?;
    let (x, y) = coordinates(&sk)?;
    if ec_thumbprint(&x, &y) != kid {
        return Err(format!(
            "key {kid}: kid does not match the key's thumbprint"
        ));
    }
    let public_pem = sk
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| format!("cannot encode public key: {e}"))?;
    Ok((x, y, public_pem))
}

/// Generate a P-256 key into `dir`, signing from `activates_at`.
pub fn generate(dir: &Path, now: i64, activates_at: i64) -> Result<KeyMeta, String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let key = new_key(now, activates_at)?;
    let (meta, pem, kid) = (key.meta.clone(), key.private_pem, key.meta.kid);
    let json = serde_json::to_vec_pretty(&meta).map_err(|e| e.to_string())?;
    let pem_name = format!("{kid}.pem");
    write_atomic(dir, &pem_name, 0o600, |w| w.write_all(pem.as_bytes()))?;
    // The metadata goes last: only then does the key count.
    if let Err(e) = write_atomic(dir, &format!("{kid}.json"), 0o600, |w| w.write_all(&json)) {
        let _ = fs::remove_file(dir.join(&pem_name));
        return Err(e);
    }
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
    fn a_failed_write_leaves_no_file_behind() {
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("deputy-keys-{}", crate::secret::random_token(6)));
        fs::create_dir_all(&dir).unwrap();
        // The disk fills up half-way through the key.
        let err = write_atomic(&dir, "k.pem", 0o600, |w| {
            w.write_all(b"the first half of a key\n")?;
            Err(std::io::Error::other("No space left on device"))
        })
        .unwrap_err();
        assert_eq!(
            err,
            format!(
                "cannot write {}: No space left on device",
                dir.join("k.pem").display()
            )
        );
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "no partial file");
        // A write that succeeds lands complete, private from creation on.
        write_atomic(&dir, "k.pem", 0o600, |w| w.write_all(b"key")).unwrap();
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(names, vec!["k.pem".to_string()]);
        let path = dir.join("k.pem");
        assert_eq!(fs::read(&path).unwrap(), b"key");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
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
