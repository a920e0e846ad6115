//! Closed vocabularies shared by the store, the CLI and the endpoints.

use std::fmt;

/// A client id deputy accepts: 1-128 visible ASCII characters.
pub fn is_valid_client_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic())
}

/// What a client is. Kept with the client and written into every token record
/// and audit event, so people, services and agents are never confused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// A frontend that signs people in.
    App,
    /// A backend service acting for itself.
    Service,
    /// An AI agent acting for a person.
    Agent,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::App => "app",
            ClientKind::Service => "service",
            ClientKind::Agent => "agent",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "app" => Some(ClientKind::App),
            "service" => Some(ClientKind::Service),
            "agent" => Some(ClientKind::Agent),
            _ => None,
        }
    }
}

/// Who registered a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Registration {
    /// The operator, with `deputy client add`.
    #[default]
    Operator,
    /// Nobody: the client describes itself in the document at its
    /// `client_id` URL (Client ID Metadata Documents); the row is a cache.
    MetadataDocument,
    /// The client itself, at `/register` (RFC 7591).
    Dynamic,
}

impl Registration {
    pub fn as_str(self) -> &'static str {
        match self {
            Registration::Operator => "operator",
            Registration::MetadataDocument => "metadata_document",
            Registration::Dynamic => "dynamic",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "operator" => Some(Registration::Operator),
            "metadata_document" => Some(Registration::MetadataDocument),
            "dynamic" => Some(Registration::Dynamic),
            _ => None,
        }
    }
    /// The client described itself: the operator vouches for nothing.
    pub fn self_described(self) -> bool {
        self != Registration::Operator
    }
}

/// The JWS algorithm a client's ID tokens are signed with (OIDC
/// Registration `id_token_signed_response_alg`). Access tokens are always
/// ES256; RS256 exists for relying parties that accept nothing else
/// (OIDC Core §15.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdTokenAlg {
    #[default]
    Es256,
    Rs256,
}

impl IdTokenAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            IdTokenAlg::Es256 => "ES256",
            IdTokenAlg::Rs256 => "RS256",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ES256" => Some(IdTokenAlg::Es256),
            "RS256" => Some(IdTokenAlg::Rs256),
            _ => None,
        }
    }
}

/// Client authentication methods (RFC 7591 §2 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    PrivateKeyJwt,
    ClientSecretBasic,
    ClientSecretPost,
    None,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::None => "none",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "private_key_jwt" => Some(AuthMethod::PrivateKeyJwt),
            "client_secret_basic" => Some(AuthMethod::ClientSecretBasic),
            "client_secret_post" => Some(AuthMethod::ClientSecretPost),
            "none" => Some(AuthMethod::None),
            _ => None,
        }
    }
    pub fn uses_secret(self) -> bool {
        matches!(
            self,
            AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
        )
    }
}

pub const TOKEN_EXCHANGE_URN: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// OpenID CIBA Core 1.0 §10.1: the grant type of a backchannel poll.
pub const CIBA_URN: &str = "urn:openid:params:grant-type:ciba";

/// Grant types deputy knows (RFC 6749 §4, RFC 8693 §2.1, CIBA Core §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantType {
    AuthorizationCode,
    ClientCredentials,
    RefreshToken,
    TokenExchange,
    /// Client-Initiated Backchannel Authentication, poll mode.
    Ciba,
}

impl GrantType {
    pub const ALL: [GrantType; 5] = [
        GrantType::AuthorizationCode,
        GrantType::ClientCredentials,
        GrantType::RefreshToken,
        GrantType::TokenExchange,
        GrantType::Ciba,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::RefreshToken => "refresh_token",
            GrantType::TokenExchange => TOKEN_EXCHANGE_URN,
            GrantType::Ciba => CIBA_URN,
        }
    }

    /// Parse a `grant_type` value; the CLI also accepts `token-exchange` and `ciba`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authorization_code" => Some(GrantType::AuthorizationCode),
            "client_credentials" => Some(GrantType::ClientCredentials),
            "refresh_token" => Some(GrantType::RefreshToken),
            TOKEN_EXCHANGE_URN => Some(GrantType::TokenExchange),
            CIBA_URN => Some(GrantType::Ciba),
            _ => None,
        }
    }

    pub fn parse_cli(s: &str) -> Option<Self> {
        match s {
            "token-exchange" | "token_exchange" => Some(GrantType::TokenExchange),
            "ciba" => Some(GrantType::Ciba),
            other => Self::parse(other),
        }
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whose identity a token's `sub` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    Person,
    Service,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Person => "person",
            SubjectKind::Service => "service",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "person" => Some(SubjectKind::Person),
            "service" => Some(SubjectKind::Service),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
    Id,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
            TokenKind::Id => "id",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "access" => Some(TokenKind::Access),
            "refresh" => Some(TokenKind::Refresh),
            "id" => Some(TokenKind::Id),
            _ => None,
        }
    }
}
