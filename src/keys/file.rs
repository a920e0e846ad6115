//! Signing keys on disk: `<kid>.pem` (PKCS#8, mode 0600) and `<kid>.json`
//! (metadata). A key counts only once its metadata file exists, and that file is
//! written last, so a half-written key is never used. Each file is written
//! under a temporary name and renamed, so a failed write leaves nothing.
//! A key generation is a P-256 key and an RSA key (`rsa.rs`); the RSA key is
//! written first and names its P-256 key (`ec_kid`), so the generation
//! appears whole when the P-256 key's metadata lands.

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
    /// For an RSA key: the `kid` of the P-256 key of its generation, whose
    /// life cycle (pending, active, retired, expired) it follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ec_kid: Option<String>,
}

impl KeyMeta {
    pub fn is_rsa(&self) -> bool {
        self.alg == "RS256"
    }
}

/// The public JWK members of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicParts {
    /// P-256 coordinates (RFC 7518 §6.2.1).
    Ec { x: String, y: String },
    /// RSA modulus and exponent (RFC 7518 §6.3.1).
    Rsa { n: String, e: String },
}

/// A key as read from disk.
pub struct StoredKey {
    pub meta: KeyMeta,
    pub private_pem: String,
    pub public_pem: String,
    pub public: PublicParts,
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
        serial: serial_now(),
        ec_kid: None,
    };
    Ok(StoredKey {
        meta,
        private_pem,
        public_pem,
        public: PublicParts::Ec { x, y },
    })
}

fn serial_now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The RSA key of `ec`'s generation, from a fresh PKCS#8 PEM private key
/// (`rsa::new_private_pem`): it activates with `ec` and follows its states.
pub fn new_rsa_key(now: i64, ec: &KeyMeta, private_pem: String) -> Result<StoredKey, String> {
    let (kid, public) = super::rsa::inspect(&private_pem)?;
    Ok(StoredKey {
        meta: KeyMeta {
            kid,
            alg: "RS256".to_string(),
            created_at: now,
            activates_at: ec.activates_at,
            serial: serial_now(),
            ec_kid: Some(ec.kid.clone()),
        },
        private_pem,
        public_pem: public.public_pem,
        public: PublicParts::Rsa {
            n: public.n,
            e: public.e,
        },
    })
}

/// Check a key read back (from a file or the database): for `alg` ES256 a
/// P-256 PKCS#8 key, for RS256 an RSA one, whose thumbprint is its `kid`;
/// returns its public parts and public PEM.
pub fn check_private_pem(
    kid: &str,
    alg: &str,
    private_pem: &str,
) -> Result<(PublicParts, String), String> {
    let (thumbprint, parts, public_pem) = match alg {
        "ES256" => {
            let sk: p256::SecretKey = p256::pkcs8::DecodePrivateKey::from_pkcs8_pem(private_pem)
                .map_err(|e| format!("key {kid} is not a P-256 PKCS#8 key: {e}"))?;
            let (x, y) = coordinates(&sk)?;
            let public_pem = sk
                .public_key()
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| format!("cannot encode public key: {e}"))?;
            (ec_thumbprint(&x, &y), PublicParts::Ec { x, y }, public_pem)
        }
        "RS256" => {
            let (thumbprint, p) =
                super::rsa::inspect(private_pem).map_err(|e| format!("key {kid}: {e}"))?;
            (
                thumbprint,
                PublicParts::Rsa { n: p.n, e: p.e },
                p.public_pem,
            )
        }
        other => return Err(format!("key {kid}: unknown algorithm {other}")),
    };
    if thumbprint != kid {
        return Err(format!(
            "key {kid}: kid does not match the key's thumbprint"
        ));
    }
    Ok((parts, public_pem))
}

/// Write one key: the PEM, then the metadata (only then does it count).
pub(super) fn write_key(dir: &Path, key: &StoredKey) -> Result<(), String> {
    let kid = &key.meta.kid;
    let json = serde_json::to_vec_pretty(&key.meta).map_err(|e| e.to_string())?;
    let pem_name = format!("{kid}.pem");
    write_atomic(dir, &pem_name, 0o600, |w| {
        w.write_all(key.private_pem.as_bytes())
    })?;
    if let Err(e) = write_atomic(dir, &format!("{kid}.json"), 0o600, |w| w.write_all(&json)) {
        let _ = fs::remove_file(dir.join(&pem_name));
        return Err(e);
    }
    Ok(())
}

/// A key generation: the P-256 key and the RSA key created with it.
#[derive(Debug, Clone)]
pub struct Generation {
    pub ec: KeyMeta,
    pub rsa: KeyMeta,
}

/// Generate a key generation (P-256 and RSA) into `dir`, signing from
/// `activates_at`. The RSA key is written first: until the P-256 key's
/// metadata exists it names a key that does not, and is ignored.
pub fn generate(dir: &Path, now: i64, activates_at: i64) -> Result<Generation, String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let in_use: Vec<String> = load_all(dir)?.into_iter().map(|k| k.meta.kid).collect();
    let rsa_pem = super::rsa::new_private_pem(&in_use)?;
    let ec = new_key(now, activates_at)?;
    let rsa = new_rsa_key(now, &ec.meta, rsa_pem)?;
    write_key(dir, &rsa)?;
    write_key(dir, &ec)?;
    Ok(Generation {
        ec: ec.meta,
        rsa: rsa.meta,
    })
}

/// Make sure `dir` has keys: a first generation signing at once when there
/// is no P-256 key, else an RSA key for every P-256 key that signs now or
/// will and has none (a deployment from before RSA keys). Returns the RSA
/// keys added to existing generations.
pub fn ensure(dir: &Path, now: i64) -> Result<Vec<KeyMeta>, String> {
    let keys = load_all(dir)?;
    if !keys.iter().any(|k| !k.meta.is_rsa()) {
        generate(dir, now, now)?;
        return Ok(Vec::new());
    }
    let metas: Vec<&KeyMeta> = keys.iter().map(|k| &k.meta).collect();
    let mut in_use: Vec<String> = metas.iter().map(|m| m.kid.clone()).collect();
    let mut added = Vec::new();
    for ec in super::lacking_rsa(&metas, now) {
        let rsa = new_rsa_key(now, ec, super::rsa::new_private_pem(&in_use)?)?;
        write_key(dir, &rsa)?;
        in_use.push(rsa.meta.kid.clone());
        added.push(rsa.meta);
    }
    Ok(added)
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
        if meta.is_rsa() && meta.ec_kid.is_none() {
            return Err(format!("key {name}: an RSA key names no P-256 key"));
        }
        let (public, public_pem) = check_private_pem(&meta.kid, &meta.alg, &private_pem)
            .map_err(|e| format!("{}: {e}", pem_path.display()))?;
        keys.push(StoredKey {
            meta,
            private_pem,
            public_pem,
            public,
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_with_0600_and_thumbprint_kids() {
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("deputy-keys-{}", crate::secret::random_token(6)));
        let g = generate(&dir, 100, 100).unwrap();
        for kid in [&g.ec.kid, &g.rsa.kid] {
            let mode = fs::metadata(dir.join(format!("{kid}.pem")))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let keys = load_all(&dir).unwrap();
        assert_eq!(keys.len(), 2);
        let ec = keys.iter().find(|k| k.meta.kid == g.ec.kid).unwrap();
        assert_eq!(ec.meta, g.ec);
        let PublicParts::Ec { x, y } = &ec.public else {
            panic!("not EC")
        };
        assert_eq!(ec_thumbprint(x, y), g.ec.kid);
        assert_eq!(g.ec.kid.len(), 43);
        // The RSA key of the generation: its own thumbprint kid, the P-256
        // key's activation, and a link to that key.
        let rsa = keys.iter().find(|k| k.meta.kid == g.rsa.kid).unwrap();
        assert_eq!(rsa.meta, g.rsa);
        assert_eq!(rsa.meta.alg, "RS256");
        assert_eq!(rsa.meta.ec_kid.as_deref(), Some(g.ec.kid.as_str()));
        assert_eq!(rsa.meta.activates_at, 100);
        let PublicParts::Rsa { n, e } = &rsa.public else {
            panic!("not RSA")
        };
        assert_eq!(super::super::rsa::rsa_thumbprint(n, e), g.rsa.kid);
        // PKCS#8 PEM (the marker is split so the source holds no key-shaped text).
        assert!(rsa
            .private_pem
            .starts_with(concat!("-----BEGIN ", "PRIVATE ", "KEY-----")));
        // An RSA key's PEM under a P-256 key's kid is refused.
        assert!(check_private_pem(&g.ec.kid, "RS256", &rsa.private_pem).is_err());
        assert!(check_private_pem(&g.rsa.kid, "ES256", &rsa.private_pem).is_err());
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
