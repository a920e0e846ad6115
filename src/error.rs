//! One error type for every endpoint. It carries the OAuth `error` code and
//! maps to the RFC 6749 §5.2 JSON response in exactly one place
//! (`ResponseError for OAuthError`). Internal causes are logged, never sent.

use std::borrow::Cow;
use std::fmt;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::store::StoreError;

/// The `error` codes deputy answers with (RFC 6749 §4.1.2.1, §5.2; RFC 6750 §3.1;
/// RFC 7009 §2.2.1; RFC 8693 §2.2.2; RFC 8707 §2; OIDC Core §3.1.2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    InvalidTarget,
    AccessDenied,
    UnsupportedTokenType,
    InvalidToken,
    InsufficientScope,
    LoginRequired,
    ConsentRequired,
    RequestNotSupported,
    RequestUriNotSupported,
    /// RFC 7591 §3.2.2.
    InvalidRedirectUri,
    InvalidClientMetadata,
    /// RFC 9449 §5, §7.1, §8.
    InvalidDpopProof,
    UseDpopNonce,
    NotFound,
    ServerError,
    TemporarilyUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::ConsentRequired => "consent_required",
            ErrorCode::RequestNotSupported => "request_not_supported",
            ErrorCode::RequestUriNotSupported => "request_uri_not_supported",
            ErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            ErrorCode::InvalidClientMetadata => "invalid_client_metadata",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
            ErrorCode::NotFound => "not_found",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    fn default_status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
            ErrorCode::InsufficientScope | ErrorCode::AccessDenied => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An error answer. `description` is fixed text written by us, never request input.
#[derive(Debug, Clone)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
    pub status: StatusCode,
    /// Value of `WWW-Authenticate`, when the scheme calls for one
    /// (RFC 6749 §5.2 for Basic, RFC 6750 §3 for Bearer).
    pub www_authenticate: Option<String>,
    /// Seconds for `Retry-After` on 429/503.
    pub retry_after: Option<u64>,
    /// `Allow` on 405 (RFC 9110 §15.5.6).
    pub allow: Option<Allow>,
    /// `DPoP-Nonce`: the nonce the client must put in its next proof
    /// (RFC 9449 §8, §9).
    pub dpop_nonce: Option<String>,
    /// What really happened, for the audit trail and the log only, when the
    /// public description deliberately says less.
    pub detail: Option<Cow<'static, str>>,
}

/// The method sets deputy's resources support (one byte, so the error stays small).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    Get,
    /// GET resources that also answer HEAD (RFC 9110 §9.1).
    GetHead,
    Post,
    GetPost,
}

impl Allow {
    pub fn as_str(self) -> &'static str {
        match self {
            Allow::Get => "GET",
            Allow::GetHead => "GET, HEAD",
            Allow::Post => "POST",
            Allow::GetPost => "GET, POST",
        }
    }
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError {
            code,
            description: description.into(),
            status: code.default_status(),
            www_authenticate: None,
            retry_after: None,
            allow: None,
            dpop_nonce: None,
            detail: None,
        }
    }

    pub fn invalid_request(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }
    /// RFC 6749 §5.2: the same answer for an unknown client and a bad credential.
    /// A 401 carries a challenge (RFC 9110 §15.5.2); Basic is the scheme a
    /// client can answer it with (RFC 6749 §2.3.1).
    pub fn invalid_client() -> Self {
        Self::new(ErrorCode::InvalidClient, "client authentication failed")
            .with_www_authenticate("Basic realm=\"deputy\"")
    }
    pub fn invalid_grant(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidGrant, d)
    }
    pub fn invalid_scope(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidScope, d)
    }
    pub fn invalid_target(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidTarget, d)
    }
    pub fn unauthorized_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::UnauthorizedClient, d)
    }
    pub fn payload_too_large() -> Self {
        Self::new(ErrorCode::InvalidRequest, "request body too large")
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    }
    /// RFC 9110 §15.5.6: a 405 names the methods the resource supports.
    pub fn method_not_allowed(allow: Allow) -> Self {
        let mut e = Self::new(ErrorCode::InvalidRequest, "method not allowed")
            .with_status(StatusCode::METHOD_NOT_ALLOWED);
        e.allow = Some(allow);
        e
    }
    /// A failure of ours; the cause goes to the log only.
    pub fn server_error(cause: impl fmt::Display) -> Self {
        tracing::error!(cause = %cause, "internal error");
        Self::new(ErrorCode::ServerError, "internal error")
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
    pub fn with_www_authenticate(mut self, value: impl Into<String>) -> Self {
        self.www_authenticate = Some(value.into());
        self
    }
    /// Keep the real reason for the trail while the answer says less.
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }
    /// The reason recorded in the audit trail: the detail when there is one.
    pub fn reason(&self) -> &str {
        self.detail.as_deref().unwrap_or(&self.description)
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.description)
    }
}

/// RFC 6749 §5.2: `error_description` uses only %x20-21 / %x23-5B / %x5D-7E.
pub fn sanitize_description(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\x20'..='\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E' => c,
            _ => '?',
        })
        .take(200)
        .collect()
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status);
        resp.insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"));
        if let Some(www) = &self.www_authenticate {
            if let Ok(v) = HeaderValue::from_str(www) {
                resp.insert_header((header::WWW_AUTHENTICATE, v));
            }
        }
        if let Some(secs) = self.retry_after {
            resp.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if let Some(allow) = self.allow {
            resp.insert_header((header::ALLOW, allow.as_str()));
        }
        if let Some(nonce) = &self.dpop_nonce {
            if let Ok(v) = HeaderValue::from_str(nonce) {
                resp.insert_header(("DPoP-Nonce", v));
            }
        }
        resp.json(json!({
            "error": self.code.as_str(),
            "error_description": sanitize_description(&self.description),
        }))
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Busy | StoreError::Unavailable(_) | StoreError::Retry => {
                tracing::warn!(cause = %e, "store busy or unavailable");
                let mut err = OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the server is busy, retry later",
                );
                err.retry_after = Some(1);
                err
            }
            other => OAuthError::server_error(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_charset_is_enforced() {
        assert_eq!(sanitize_description("a\"b\\c\nd é"), "a?b?c?d ?");
    }

    #[test]
    fn invalid_client_is_401() {
        let e = OAuthError::invalid_client();
        assert_eq!(e.status_code(), StatusCode::UNAUTHORIZED);
        assert_eq!(e.code.as_str(), "invalid_client");
    }

    #[test]
    fn store_busy_is_503_and_other_store_errors_are_500() {
        let busy: OAuthError = StoreError::Busy.into();
        assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE);
        let other: OAuthError = StoreError::Closed.into();
        assert_eq!(other.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(other.code, ErrorCode::ServerError);
    }
}
