//! Strict `application/x-www-form-urlencoded` bodies for every form endpoint.
//!
//! RFC 6749 §3.1 and §3.2: parameters without a value are treated as omitted,
//! and a parameter may not be repeated. Bodies over `MAX_BODY` are refused with
//! 413 before anything is parsed; invalid UTF-8 is a 400.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest};
use futures_util::StreamExt;

use crate::error::OAuthError;

pub const MAX_BODY: usize = 64 * 1024;
/// More distinct parameters than any OAuth request needs.
pub const MAX_PARAMS: usize = 64;
/// How long a form body may take to arrive once the headers are in; the
/// server's request timeout covers only the headers (slow-body attacks).
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The refusal of a body that is not a form at all (wrong content type).
pub const NOT_A_FORM: &str = "content type must be application/x-www-form-urlencoded";

/// Parsed, de-duplicated form parameters.
#[derive(Default, Clone)]
pub struct FormParams {
    map: HashMap<String, String>,
    /// Names sent more than once (only `parse_form_keeping_repeats` fills it;
    /// their values are dropped).
    repeated: Vec<String>,
}

impl FormParams {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    pub fn require(&self, name: &'static str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter: {name}")))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn repeated(&self) -> &[String] {
        &self.repeated
    }
}

impl std::fmt::Debug for FormParams {
    /// Names only: the values are passwords, client secrets, codes, refresh
    /// tokens and assertions.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.map.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("FormParams")
            .field("names", &names)
            .field("repeated", &self.repeated)
            .finish()
    }
}

fn decode_component(raw: &[u8]) -> Result<String, OAuthError> {
    // Tokens, assertions and ids are mostly plain: copied once, not decoded
    // byte by byte (the form is read on every request).
    let bytes: Vec<u8> = if raw.iter().any(|&b| b == b'+' || b == b'%') {
        let plus_fixed: Vec<u8> = raw
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_encoding::percent_decode(&plus_fixed).collect()
    } else {
        raw.to_vec()
    };
    // No OAuth parameter may hold a NUL (RFC 6749 Appendix A), and
    // PostgreSQL text cannot: refused here, not as a store error (a 500).
    if bytes.contains(&0) {
        return Err(OAuthError::invalid_request(
            "parameters must not contain NUL",
        ));
    }
    String::from_utf8(bytes)
        .map_err(|_not_utf8| OAuthError::invalid_request("parameters must be UTF-8"))
}

/// Parse a urlencoded string (a body or a query string).
pub fn parse_form(body: &[u8]) -> Result<FormParams, OAuthError> {
    parse(body, false)
}

/// Like `parse_form`, but a repeated parameter is not an error: it is left
/// out and named in `repeated()`, for an endpoint that must answer it
/// somewhere else than with a 400 (RFC 6749 §4.1.2.1).
pub fn parse_form_keeping_repeats(body: &[u8]) -> Result<FormParams, OAuthError> {
    parse(body, true)
}

fn parse(body: &[u8], keep_repeats: bool) -> Result<FormParams, OAuthError> {
    let mut map: HashMap<String, String> = HashMap::new();
    let mut repeated: Vec<String> = Vec::new();
    for pair in body.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let mut halves = pair.splitn(2, |&b| b == b'=');
        let k = halves.next().unwrap_or_default();
        let v = halves.next().unwrap_or_default();
        let key = decode_component(k)?;
        let value = decode_component(v)?;
        // RFC 6749 §3.1: a parameter sent without a value is treated as omitted.
        if key.is_empty() || value.is_empty() {
            continue;
        }
        if map.contains_key(&key) || repeated.contains(&key) {
            // RFC 6749 §3.1: parameters MUST NOT be included more than once.
            if !keep_repeats {
                return Err(OAuthError::invalid_request("repeated parameter"));
            }
            if map.remove(&key).is_some() {
                repeated.push(key);
            }
            continue;
        }
        if map.len() + repeated.len() >= MAX_PARAMS {
            return Err(OAuthError::invalid_request("too many parameters"));
        }
        map.insert(key, value);
    }
    Ok(FormParams { map, repeated })
}

/// True when the Content-Type is urlencoded (with an optional UTF-8 charset).
fn is_form_content_type(req: &HttpRequest) -> bool {
    let Some(ct) = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut parts = ct.split(';');
    let essence = parts.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return false;
    }
    parts.all(|p| {
        let p = p.trim();
        match p.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
                v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            }
            Some(_) => true,
            None => p.is_empty(),
        }
    })
}

type FormFuture = Pin<Box<dyn Future<Output = Result<FormParams, OAuthError>>>>;

/// Read a form body (size and content type checked first) and parse it.
fn read_form(
    req: &HttpRequest,
    payload: &mut Payload,
    parse: fn(&[u8]) -> Result<FormParams, OAuthError>,
) -> FormFuture {
    let declared_len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let content_type_ok = is_form_content_type(req);
    let mut payload = payload.take();
    Box::pin(async move {
        if declared_len.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(OAuthError::payload_too_large());
        }
        if !content_type_ok {
            return Err(OAuthError::invalid_request(NOT_A_FORM));
        }
        let capacity = declared_len.unwrap_or(256).min(MAX_BODY as u64) as usize;
        parse(&read_body(&mut payload, MAX_BODY, capacity).await?)
    })
}

/// A request body of at most `max` bytes (413 beyond), which must arrive
/// within `BODY_TIMEOUT` (408): the server's request timeout covers only
/// the headers, and a body dribbled byte by byte would hold the connection.
pub async fn read_body<S, E>(
    payload: &mut S,
    max: usize,
    capacity: usize,
) -> Result<Vec<u8>, OAuthError>
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, E>> + Unpin,
{
    let read = async {
        let mut body = Vec::with_capacity(capacity.min(max));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk
                .map_err(|_read_failed| OAuthError::invalid_request("unreadable request body"))?;
            if body.len() + chunk.len() > max {
                return Err(OAuthError::payload_too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    actix_web::rt::time::timeout(BODY_TIMEOUT, read)
        .await
        .map_err(|_late| {
            OAuthError::invalid_request("the request body did not arrive in time")
                .with_status(actix_web::http::StatusCode::REQUEST_TIMEOUT)
        })?
}

/// Extractor for a strict form body.
pub struct Form(pub FormParams);

impl FromRequest for Form {
    type Error = OAuthError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let fut = read_form(req, payload, parse_form);
        Box::pin(async move { fut.await.map(Form) })
    }
}

/// Extractor for a form body whose repeated parameters are reported, not
/// refused (see `parse_form_keeping_repeats`).
pub struct FormKeepingRepeats(pub FormParams);

impl FromRequest for FormKeepingRepeats {
    type Error = OAuthError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let fut = read_form(req, payload, parse_form_keeping_repeats);
        Box::pin(async move { fut.await.map(FormKeepingRepeats) })
    }
}

/// The client credentials of a form request (RFC 6749 §2.3), for
/// `client_auth::authenticate`: the Authorization header and the body's
/// client parameters, nothing checked yet.
pub fn client_credentials<'a>(
    req: &'a actix_web::HttpRequest,
    form: &'a FormParams,
    address: &'a str,
) -> crate::client_auth::Credentials<'a> {
    crate::client_auth::Credentials {
        authorization: req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .map(|v| v.to_str().ok()),
        client_id: form.get("client_id"),
        client_secret: form.get("client_secret"),
        client_assertion: form.get("client_assertion"),
        client_assertion_type: form.get("client_assertion_type"),
        address,
    }
}

impl crate::grant::authorization_code::request::AuthorizeParams for FormParams {
    fn get(&self, name: &str) -> Option<&str> {
        FormParams::get(self, name)
    }
    fn contains(&self, name: &str) -> bool {
        FormParams::contains(self, name)
    }
    fn repeated(&self) -> &[String] {
        FormParams::repeated(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_and_percent() {
        let f = parse_form(b"a=b+c&d=%2Fe%3D&f=").unwrap();
        assert_eq!(f.get("a"), Some("b c"));
        assert_eq!(f.get("d"), Some("/e="));
        assert_eq!(f.get("f"), None, "empty value counts as absent");
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn repeated_parameter_is_refused() {
        let e = parse_form(b"scope=a&scope=b").unwrap_err();
        assert_eq!(e.code.as_str(), "invalid_request");
        // An empty repeat is an omitted parameter, not a repeat.
        assert_eq!(
            parse_form(b"scope=a&scope=").unwrap().get("scope"),
            Some("a")
        );
    }

    #[test]
    fn repeats_can_be_reported_instead_of_refused() {
        let f =
            parse_form_keeping_repeats(b"scope=a&state=s&scope=b&scope=c&nonce=&nonce=n").unwrap();
        assert_eq!(f.repeated(), ["scope"]);
        assert_eq!(
            f.get("scope"),
            None,
            "no value of a repeated parameter is used"
        );
        assert_eq!(f.get("state"), Some("s"));
        assert_eq!(f.get("nonce"), Some("n"), "an empty repeat is no repeat");
        assert!(parse_form(b"scope=a&scope=b").is_err());
        assert!(parse_form_keeping_repeats(b"a=%FF").is_err());
        let body: Vec<String> = (0..=MAX_PARAMS)
            .map(|i| format!("p{}=x&p{}=y", i, i))
            .collect();
        assert!(parse_form_keeping_repeats(body.join("&").as_bytes()).is_err());
    }

    #[test]
    fn debug_shows_names_never_values() {
        let f = parse_form_keeping_repeats(
            b"grant_type=password&password=hunter2-pw&client_secret=s3cr3t-value\
              &refresh_token=rt-secret&client_assertion=eyJ.assert.sig&x=1&x=2",
        )
        .unwrap();
        let shown = format!("{f:?}");
        for secret in ["hunter2-pw", "s3cr3t-value", "rt-secret", "eyJ.assert.sig"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("client_secret") && shown.contains("password"));
        assert!(shown.contains("repeated: [\"x\"]"), "{shown}");
    }

    #[test]
    fn nul_is_refused() {
        assert!(parse_form(b"client_id=a%00b").is_err());
        assert!(parse_form(b"a%00=b").is_err());
        // Unencoded too (the plain fast path checks the same).
        assert!(parse_form(b"client_id=a\0b").is_err());
        assert!(parse_form(b"a\0=b").is_err());
    }

    #[test]
    fn invalid_utf8_is_refused() {
        assert!(parse_form(b"a=%FF%FE").is_err());
        assert!(parse_form(b"%C3%28=x").is_err());
        assert!(parse_form(b"a=\xff\xfe").is_err());
        assert_eq!(
            parse_form("a=\u{e9}t\u{e9}".as_bytes()).unwrap().get("a"),
            Some("\u{e9}t\u{e9}")
        );
    }

    #[test]
    fn too_many_parameters() {
        let body: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("p{i}=x")).collect();
        assert!(parse_form(body.join("&").as_bytes()).is_err());
    }
}
