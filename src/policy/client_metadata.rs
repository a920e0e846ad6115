//! Client metadata a client writes about itself (RFC 7591 §2), as a Client
//! ID Metadata Document or a dynamic registration request, turned into
//! what deputy will grant. Liberal in what the document may hold (unknown
//! members, grant types deputy does not offer, a
//! `token_endpoint_auth_methods_supported` array are ignored), strict in
//! what it grants: only the authorization code and refresh grants, only
//! https or loopback redirect URIs. Pure: no fetching, no store.

use serde_json::{Map, Value};

use crate::client_auth::jwks::{parse_for_alg, SUPPORTED_ALGS};
use crate::model::{AuthMethod, IdTokenAlg};

const MAX_REDIRECT_URIS: usize = 10;
const MAX_URI_LEN: usize = 2000;
const MAX_NAME_LEN: usize = 200;

/// RFC 7591 §3.2.2 error codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataError {
    InvalidRedirectUri(String),
    InvalidClientMetadata(String),
}

impl MetadataError {
    pub fn code(&self) -> &'static str {
        match self {
            MetadataError::InvalidRedirectUri(_) => "invalid_redirect_uri",
            MetadataError::InvalidClientMetadata(_) => "invalid_client_metadata",
        }
    }
    pub fn description(&self) -> &str {
        match self {
            MetadataError::InvalidRedirectUri(d) | MetadataError::InvalidClientMetadata(d) => d,
        }
    }
}

fn bad(why: impl Into<String>) -> MetadataError {
    MetadataError::InvalidClientMetadata(why.into())
}

/// What a self-described client may be.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// Authentication methods allowed.
    pub methods: &'a [AuthMethod],
    /// The method when the document names none (RFC 7591 §2 says
    /// `client_secret_basic`; a metadata document cannot hold a secret).
    pub default_method: AuthMethod,
}

/// The metadata deputy keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMetadata {
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub auth_method: AuthMethod,
    /// `jwks` (compact JSON) or `jwks_uri`, for `private_key_jwt`.
    pub jwks: Option<String>,
    pub jwks_uri: Option<String>,
    /// The algorithm of the client's assertions (`private_key_jwt`).
    pub assertion_alg: String,
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    /// OIDC Registration §2: RS256 unless the client asks for ES256.
    pub id_token_alg: IdTokenAlg,
    /// RFC 9449 §5.2 `dpop_bound_access_tokens`: tokens only with a proof.
    pub dpop_bound_access_tokens: bool,
}

impl ClientMetadata {
    /// The registered metadata, as RFC 7591 §3.2.1 returns it.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("redirect_uris".into(), self.redirect_uris.clone().into());
        if !self.post_logout_redirect_uris.is_empty() {
            m.insert(
                "post_logout_redirect_uris".into(),
                self.post_logout_redirect_uris.clone().into(),
            );
        }
        m.insert(
            "token_endpoint_auth_method".into(),
            self.auth_method.as_str().into(),
        );
        m.insert(
            "grant_types".into(),
            vec!["authorization_code", "refresh_token"].into(),
        );
        m.insert("response_types".into(), vec!["code"].into());
        for (k, v) in [
            ("client_name", &self.client_name),
            ("client_uri", &self.client_uri),
            ("logo_uri", &self.logo_uri),
            ("jwks_uri", &self.jwks_uri),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), v.clone().into());
            }
        }
        if let Some(j) = self
            .jwks
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok())
        {
            m.insert("jwks".into(), j);
        }
        if self.auth_method == AuthMethod::PrivateKeyJwt {
            m.insert(
                "token_endpoint_auth_signing_alg".into(),
                self.assertion_alg.clone().into(),
            );
        }
        m.insert(
            "id_token_signed_response_alg".into(),
            self.id_token_alg.as_str().into(),
        );
        // RFC 7591 §3.2.1: every registered value, false too.
        m.insert(
            "dpop_bound_access_tokens".into(),
            self.dpop_bound_access_tokens.into(),
        );
        m
    }
}

/// A redirect URI a self-described client may use: https, or http to a
/// loopback host (RFC 8252 §7.3); absolute, no fragment, no credentials.
/// Private-use schemes and everything else (`javascript:`, `data:`) are refused.
pub fn redirect_uri_allowed(u: &str) -> bool {
    if u.len() > MAX_URI_LEN || u.contains('#') {
        return false;
    }
    let Ok(url) = url::Url::parse(u) else {
        return false;
    };
    if !url.username().is_empty() || url.password().is_some() || url.host_str().is_none() {
        return false;
    }
    match url.scheme() {
        "https" => true,
        "http" => super::redirect::is_loopback(u),
        _ => false,
    }
}

fn string_list(doc: &Map<String, Value>, name: &str) -> Result<Vec<String>, MetadataError> {
    match doc.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad(format!("{name} must be an array of strings")))
            })
            .collect(),
        Some(_) => Err(bad(format!("{name} must be an array of strings"))),
    }
}

/// A display value: kept when usable, dropped otherwise (RFC 7591 §2: the
/// server may ignore what it does not accept).
fn display_uri(doc: &Map<String, Value>, name: &str) -> Option<String> {
    let v = doc.get(name)?.as_str()?;
    let ok = v.len() <= MAX_URI_LEN
        && url::Url::parse(v).is_ok_and(|u| u.scheme() == "https" && u.username().is_empty());
    ok.then(|| v.to_string())
}

fn client_name(doc: &Map<String, Value>) -> Option<String> {
    let v = doc.get("client_name")?.as_str()?.trim();
    let v: String = v
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_LEN)
        .collect();
    (!v.is_empty()).then_some(v)
}

/// The algorithm of a key set's keys when the document does not say.
fn alg_of_keys(jwks: &Value) -> &'static str {
    let first = jwks.get("keys").and_then(|k| k.get(0));
    if let Some(alg) = first.and_then(|k| k.get("alg")).and_then(Value::as_str) {
        if let Some(known) = SUPPORTED_ALGS.iter().find(|a| **a == alg) {
            return known;
        }
    }
    match first.and_then(|k| k.get("kty")).and_then(Value::as_str) {
        Some("RSA") => "RS256",
        Some("OKP") => "EdDSA",
        _ => "ES256",
    }
}

/// Check a client's own metadata against `rules`.
pub fn parse(doc: &Value, rules: Rules<'_>) -> Result<ClientMetadata, MetadataError> {
    let Value::Object(doc) = doc else {
        return Err(bad("the metadata must be a JSON object"));
    };
    let redirect_uris = string_list(doc, "redirect_uris")
        .map_err(|e| MetadataError::InvalidRedirectUri(e.description().to_string()))?;
    if redirect_uris.is_empty() {
        return Err(MetadataError::InvalidRedirectUri(
            "at least one redirect URI is required".into(),
        ));
    }
    if redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(MetadataError::InvalidRedirectUri(format!(
            "at most {MAX_REDIRECT_URIS} redirect URIs"
        )));
    }
    // Which one, by its place in the list: error descriptions never echo
    // input (README, hostile input).
    if let Some(i) = redirect_uris.iter().position(|u| !redirect_uri_allowed(u)) {
        return Err(MetadataError::InvalidRedirectUri(format!(
            "redirect_uris[{i}] must be https, or http to a loopback host, without a fragment"
        )));
    }
    let post_logout_redirect_uris = string_list(doc, "post_logout_redirect_uris")?;
    if post_logout_redirect_uris.len() > MAX_REDIRECT_URIS
        || !post_logout_redirect_uris
            .iter()
            .all(|u| redirect_uri_allowed(u))
    {
        return Err(bad(
            "post_logout_redirect_uris must be https, or http to a loopback host",
        ));
    }
    let sent = doc
        .get("token_endpoint_auth_method")
        .filter(|v| !v.is_null());
    let auth_method = match sent {
        None => rules.default_method,
        Some(Value::String(m)) => AuthMethod::parse(m)
            .ok_or_else(|| bad("token_endpoint_auth_method is not supported"))?,
        Some(_) => return Err(bad("token_endpoint_auth_method must be a string")),
    };
    if !rules.methods.contains(&auth_method) {
        let allowed: Vec<&str> = rules.methods.iter().map(|m| m.as_str()).collect();
        // RFC 7591 §2: omitted means client_secret_basic; say so, since the
        // client never named it.
        let what = match sent {
            None => format!(
                "token_endpoint_auth_method is {} when omitted (RFC 7591 section 2)",
                auth_method.as_str()
            ),
            Some(_) => format!("token_endpoint_auth_method {}", auth_method.as_str()),
        };
        return Err(bad(format!(
            "{what}, which is not allowed here: send one of {}",
            allowed.join(", ")
        )));
    }
    let (mut jwks, mut jwks_uri, mut assertion_alg) = (None, None, "ES256".to_string());
    if auth_method == AuthMethod::PrivateKeyJwt {
        let set = doc.get("jwks").filter(|v| !v.is_null());
        let uri = doc.get("jwks_uri").filter(|v| !v.is_null());
        let named = doc
            .get("token_endpoint_auth_signing_alg")
            .and_then(Value::as_str);
        match (set, uri) {
            (Some(set), None) => {
                let alg = named.unwrap_or_else(|| alg_of_keys(set));
                let text = set.to_string();
                parse_for_alg(&text, alg).map_err(|e| bad(format!("jwks: {e}")))?;
                jwks = Some(text);
                assertion_alg = alg.to_string();
            }
            (None, Some(Value::String(u))) => {
                let ok = u.len() <= MAX_URI_LEN
                    && url::Url::parse(u).is_ok_and(|p| p.scheme() == "https");
                if !ok {
                    return Err(bad("jwks_uri must be an https URL"));
                }
                let alg = named.unwrap_or("ES256");
                if !SUPPORTED_ALGS.contains(&alg) {
                    return Err(bad("token_endpoint_auth_signing_alg is not supported"));
                }
                jwks_uri = Some(u.clone());
                assertion_alg = alg.to_string();
            }
            _ => {
                return Err(bad(
                    "private_key_jwt needs exactly one of jwks and jwks_uri",
                ))
            }
        }
    }
    let id_token_alg = match doc.get("id_token_signed_response_alg") {
        None | Some(Value::Null) => IdTokenAlg::Rs256,
        Some(Value::String(a)) => IdTokenAlg::parse(a)
            .ok_or_else(|| bad("id_token_signed_response_alg must be RS256 or ES256"))?,
        Some(_) => return Err(bad("id_token_signed_response_alg must be a string")),
    };
    let dpop_bound_access_tokens = match doc.get("dpop_bound_access_tokens") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("dpop_bound_access_tokens must be a boolean")),
    };
    Ok(ClientMetadata {
        redirect_uris,
        post_logout_redirect_uris,
        auth_method,
        jwks,
        jwks_uri,
        assertion_alg,
        client_name: client_name(doc),
        client_uri: display_uri(doc, "client_uri"),
        logo_uri: display_uri(doc, "logo_uri"),
        id_token_alg,
        dpop_bound_access_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PUBLIC: Rules<'static> = Rules {
        methods: &[AuthMethod::None, AuthMethod::PrivateKeyJwt],
        default_method: AuthMethod::None,
    };

    #[test]
    fn dpop_bound_access_tokens_is_read_rfc9449_s5_2() {
        let mut doc = json!({"redirect_uris": ["https://app.example/cb"]});
        let m = parse(&doc, PUBLIC).unwrap();
        assert!(!m.dpop_bound_access_tokens);
        // RFC 7591 §3.2.1: the registered value is answered, false too.
        assert_eq!(m.to_json()["dpop_bound_access_tokens"], json!(false));
        doc["dpop_bound_access_tokens"] = json!(true);
        let m = parse(&doc, PUBLIC).unwrap();
        assert!(m.dpop_bound_access_tokens);
        assert_eq!(m.to_json()["dpop_bound_access_tokens"], json!(true));
        doc["dpop_bound_access_tokens"] = json!("yes");
        assert!(parse(&doc, PUBLIC).is_err());
    }

    #[test]
    fn a_real_world_document_with_extras_is_accepted() {
        let doc = json!({
            "client_id": "https://app.example/client.json",
            "client_name": "Example\u{0007} Agent",
            "client_uri": "https://app.example",
            "logo_uri": "javascript:alert(1)",
            "redirect_uris": ["http://127.0.0.1/callback", "http://localhost:33418/cb"],
            "grant_types": ["authorization_code", "refresh_token",
                            "urn:ietf:params:oauth:grant-type:device_code",
                            "urn:ietf:params:oauth:grant-type:jwt-bearer"],
            "token_endpoint_auth_methods_supported": ["none"],
            "software_id": "x", "unknown": {"nested": true}
        });
        let m = parse(&doc, PUBLIC).unwrap();
        assert_eq!(m.auth_method, AuthMethod::None);
        assert_eq!(m.client_name.as_deref(), Some("Example Agent"));
        assert_eq!(m.client_uri.as_deref(), Some("https://app.example"));
        assert_eq!(m.logo_uri, None, "an unusable logo is dropped, not fatal");
        assert_eq!(m.id_token_alg, IdTokenAlg::Rs256);
        assert_eq!(
            m.to_json()["grant_types"],
            json!(["authorization_code", "refresh_token"])
        );
    }

    #[test]
    fn redirect_uris_must_be_https_or_loopback() {
        for bad_uri in [
            "javascript:alert(1)",
            "data:text/html,hi",
            "http://app.example/cb",
            "https://app.example/cb#frag",
            "https://user:pw@app.example/cb",
            "com.example.app:/cb",
            "http://localhost.evil.example/cb",
        ] {
            let e = parse(
                &json!({"redirect_uris": ["https://a.example/cb", bad_uri]}),
                PUBLIC,
            )
            .unwrap_err();
            assert_eq!(e.code(), "invalid_redirect_uri", "{bad_uri}");
            // Named by its place, never echoed (README: hostile input).
            assert_eq!(
                e.description(),
                "redirect_uris[1] must be https, or http to a loopback host, without a fragment"
            );
        }
        let e = parse(&json!({"redirect_uris": []}), PUBLIC).unwrap_err();
        assert_eq!(e.code(), "invalid_redirect_uri");
        let e = parse(&json!({"redirect_uris": "https://a.example/cb"}), PUBLIC).unwrap_err();
        assert_eq!(e.code(), "invalid_redirect_uri");
        assert!(parse(
            &json!({"redirect_uris": ["https://a.example/cb", "http://[::1]/cb"]}),
            PUBLIC
        )
        .is_ok());
    }

    #[test]
    fn methods_and_algorithms_are_checked() {
        let dcr_open = Rules {
            methods: &[AuthMethod::None],
            default_method: AuthMethod::ClientSecretBasic,
        };
        let e = parse(
            &json!({"redirect_uris": ["https://a.example/cb"]}),
            dcr_open,
        )
        .unwrap_err();
        assert_eq!(e.code(), "invalid_client_metadata");
        assert_eq!(
            e.description(),
            "token_endpoint_auth_method is client_secret_basic when omitted (RFC 7591 section 2), \
             which is not allowed here: send one of none"
        );
        // RFC 6749 §5.2: error_description is printable ASCII without `"`
        // and `\` (a `§` would reach the client as `?`).
        assert!(e
            .description()
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\'));
        let e = parse(
            &json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "tls_client_auth"}),
            PUBLIC,
        )
        .unwrap_err();
        assert_eq!(e.code(), "invalid_client_metadata");
        let e = parse(
            &json!({"redirect_uris": ["https://a.example/cb"], "id_token_signed_response_alg": "HS256"}),
            PUBLIC,
        )
        .unwrap_err();
        assert_eq!(e.code(), "invalid_client_metadata");
        let e = parse(
            &json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
            PUBLIC,
        )
        .unwrap_err();
        assert_eq!(
            e.description(),
            "private_key_jwt needs exactly one of jwks and jwks_uri"
        );
        let m = parse(
            &json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt",
                    "jwks_uri": "https://a.example/jwks", "id_token_signed_response_alg": "ES256"}),
            PUBLIC,
        )
        .unwrap();
        assert_eq!(m.jwks_uri.as_deref(), Some("https://a.example/jwks"));
        assert_eq!(m.id_token_alg, IdTokenAlg::Es256);
    }
}
