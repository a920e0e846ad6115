//! Authorization server metadata (RFC 8414 §2) and OpenID Provider metadata
//! (OpenID Connect Discovery 1.0 §3). Built from what this build implements
//! (`grant::IMPLEMENTED`), so nothing is advertised that does not work.

use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use crate::app::AppState;
use crate::client_auth::jwks::SUPPORTED_ALGS;
use crate::config::Settings;
use crate::grant;
use crate::grant::authorization_code::request::OIDC_SCOPES;
use crate::model::GrantType;

pub fn metadata(settings: &Settings) -> Map<String, Value> {
    let grants: Vec<&str> = grant::IMPLEMENTED.iter().map(|g| g.as_str()).collect();
    let code_flow = grant::is_implemented(GrantType::AuthorizationCode);
    let mut auth_methods = vec![
        "private_key_jwt",
        "client_secret_basic",
        "client_secret_post",
    ];
    if code_flow {
        auth_methods.push("none");
    }
    let mut m = Map::new();
    m.insert("issuer".into(), json!(settings.issuer));
    m.insert("token_endpoint".into(), json!(settings.endpoint("/token")));
    m.insert("jwks_uri".into(), json!(settings.endpoint("/jwks")));
    m.insert("grant_types_supported".into(), json!(grants));
    if grant::is_implemented(GrantType::Ciba) {
        // CIBA Core §4: poll mode only, no user codes.
        m.insert(
            "backchannel_authentication_endpoint".into(),
            json!(settings.endpoint("/bc-authorize")),
        );
        m.insert(
            "backchannel_token_delivery_modes_supported".into(),
            json!(["poll"]),
        );
        m.insert(
            "backchannel_user_code_parameter_supported".into(),
            json!(false),
        );
    }
    m.insert(
        "token_endpoint_auth_methods_supported".into(),
        json!(auth_methods),
    );
    m.insert(
        "token_endpoint_auth_signing_alg_values_supported".into(),
        json!(SUPPORTED_ALGS),
    );
    // RFC 9449 §5.1: DPoP proofs deputy accepts at every token request.
    m.insert(
        "dpop_signing_alg_values_supported".into(),
        json!(crate::dpop::PROOF_ALGS),
    );
    // RFC 8414 §2: introspection (RFC 7662) takes the token endpoint's
    // methods except `none`; revocation (RFC 7009) also takes `none`, since a
    // public client may revoke its own tokens. RFC 9701 §7: signed responses.
    let confidential: Vec<&str> = auth_methods
        .iter()
        .copied()
        .filter(|m| *m != "none")
        .collect();
    let mut revocation_methods = confidential.clone();
    revocation_methods.push("none");
    m.insert(
        "introspection_endpoint".into(),
        json!(settings.endpoint("/introspect")),
    );
    m.insert(
        "introspection_endpoint_auth_methods_supported".into(),
        json!(confidential),
    );
    m.insert(
        "introspection_endpoint_auth_signing_alg_values_supported".into(),
        json!(SUPPORTED_ALGS),
    );
    m.insert(
        "introspection_signing_alg_values_supported".into(),
        json!(["ES256"]),
    );
    m.insert(
        "revocation_endpoint".into(),
        json!(settings.endpoint("/revoke")),
    );
    m.insert(
        "revocation_endpoint_auth_methods_supported".into(),
        json!(revocation_methods),
    );
    m.insert(
        "revocation_endpoint_auth_signing_alg_values_supported".into(),
        json!(SUPPORTED_ALGS),
    );
    // RFC 8414 §2 lists response types for the authorization endpoint; until the
    // code flow is served there are none.
    let response_types: Vec<&str> = if code_flow { vec!["code"] } else { vec![] };
    m.insert("response_types_supported".into(), json!(response_types));
    if code_flow {
        m.insert(
            "authorization_endpoint".into(),
            json!(settings.endpoint("/authorize")),
        );
        m.insert("code_challenge_methods_supported".into(), json!(["S256"]));
        m.insert(
            "response_modes_supported".into(),
            json!(["query", "form_post"]),
        );
        m.insert("scopes_supported".into(), json!(OIDC_SCOPES));
        // RFC 9207 §3: `iss` is sent in every authorization response.
        m.insert(
            "authorization_response_iss_parameter_supported".into(),
            json!(true),
        );
        // draft-ietf-oauth-client-id-metadata-document §6: an https client_id
        // names the client's own metadata document.
        m.insert(
            "client_id_metadata_document_supported".into(),
            json!(settings.client_metadata_documents == crate::config::Switch::On),
        );
    }
    // RFC 8414 §2: only when registration is open to someone.
    if settings.registration != crate::config::RegistrationMode::Off {
        m.insert(
            "registration_endpoint".into(),
            json!(settings.endpoint("/register")),
        );
    }
    m
}

fn answer(m: Map<String, Value>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(Value::Object(m))
}

pub async fn oauth_authorization_server(state: web::Data<AppState>) -> HttpResponse {
    answer(metadata(&state.settings))
}

pub async fn openid_configuration(state: web::Data<AppState>) -> HttpResponse {
    let mut m = metadata(&state.settings);
    if grant::is_implemented(GrantType::AuthorizationCode) {
        m.insert("subject_types_supported".into(), json!(["public"]));
        m.insert(
            "id_token_signing_alg_values_supported".into(),
            // OIDC Core §15.1: RS256 for clients that register it.
            json!(["ES256", "RS256"]),
        );
        m.insert(
            "userinfo_endpoint".into(),
            json!(state.settings.endpoint("/userinfo")),
        );
        // RP-Initiated Logout 1.0 §2.1.
        m.insert(
            "end_session_endpoint".into(),
            json!(state.settings.endpoint("/logout")),
        );
        m.insert(
            "claims_supported".into(),
            json!([
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "at_hash",
                "azp",
                "amr",
                "name",
                "preferred_username",
                "email",
                "email_verified"
            ]),
        );
        m.insert(
            "prompt_values_supported".into(),
            json!(["none", "login", "consent"]),
        );
        m.insert("request_parameter_supported".into(), json!(false));
        m.insert("request_uri_parameter_supported".into(), json!(false));
        // OIDC Core §5.5, for the standard claims deputy holds.
        m.insert("claims_parameter_supported".into(), json!(true));
    }
    answer(m)
}

/// CORS preflight for the discovery documents (Fetch Standard §3.2): a
/// browser-based client (an MCP client in a page) may read them with
/// headers of its own, e.g. `MCP-Protocol-Version`. They take no
/// credentials, so any header is fine.
pub async fn preflight() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header(("Access-Control-Allow-Methods", "GET, HEAD"))
        .insert_header(("Access-Control-Allow-Headers", "*"))
        .insert_header(("Access-Control-Max-Age", "600"))
        .finish()
}
