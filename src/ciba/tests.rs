use super::*;
use crate::model::{AuthMethod, ClientKind, GrantType};

fn client() -> Client {
    Client {
        id: "agent".into(),
        kind: ClientKind::Agent,
        name: "Agent".into(),
        auth_method: AuthMethod::ClientSecretBasic,
        secret_hash: None,
        jwks: None,
        jwks_uri: None,
        assertion_alg: "ES256".into(),
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        grant_types: vec![GrantType::Ciba],
        scopes: vec!["notes:read".into()],
        audiences: vec!["https://api.example".into()],
        created_at: 0,
        id_token_claims: false,
        id_token_alg: Default::default(),
        require_dpop: false,
        origin: Default::default(),
    }
}

fn good() -> BackchannelParams {
    BackchannelParams {
        scope: Some("openid notes:read".into()),
        login_hint: Some("alice".into()),
        ..Default::default()
    }
}

fn code(p: &BackchannelParams) -> &'static str {
    validate(&client(), p, 300, "https://issuer.example")
        .unwrap_err()
        .code
        .as_str()
}

#[test]
fn a_good_request_gets_the_defaults() {
    let r = validate(&client(), &good(), 300, "https://issuer.example").unwrap();
    assert_eq!(r.scope, ["openid", "notes:read"]);
    assert_eq!(r.resource, "https://issuer.example");
    assert_eq!(r.hint, Hint::LoginHint("alice".into()));
    assert_eq!(r.expires_in, 300);
}

/// CIBA Core §7.1 and §13.
#[test]
fn each_rule_answers_its_error() {
    let mut p = good();
    p.scope = Some("notes:read".into());
    assert_eq!(code(&p), "invalid_scope");
    let mut p = good();
    p.scope = Some("openid admin".into());
    assert_eq!(code(&p), "invalid_scope");
    let mut p = good();
    p.id_token_hint = Some("x.y.z".into());
    assert_eq!(code(&p), "invalid_request");
    let mut p = good();
    p.login_hint = None;
    assert_eq!(code(&p), "invalid_request");
    let mut p = good();
    p.binding_message = Some("x".repeat(65));
    assert_eq!(code(&p), "invalid_binding_message");
    p.binding_message = Some("line\nbreak".into());
    assert_eq!(code(&p), "invalid_binding_message");
    p.binding_message = Some("W4-\u{202e}7Q".into());
    assert_eq!(
        code(&p),
        "invalid_binding_message",
        "right-to-left override"
    );
    p.binding_message = Some("W4-\u{200b}7Q".into());
    assert_eq!(code(&p), "invalid_binding_message", "zero-width space");
    p.binding_message = Some("é".repeat(64));
    assert!(validate(&client(), &p, 300, "i").is_ok());
    let mut p = good();
    for bad in ["0", "soon", "-5", "+120", "1.5", " 120", ""] {
        p.requested_expiry = Some(bad.into());
        assert_eq!(code(&p), "invalid_request", "{bad:?}");
    }
    // CIBA Core §7.1: the server MAY use the value; deputy keeps it in 10-1800.
    for (asked, got) in [
        ("10", 10),
        ("120", 120),
        ("1800", 1800),
        ("1", 10),
        ("9", 10),
        ("3600", 1800),
        ("99999999999999999999999", 1800),
    ] {
        p.requested_expiry = Some(asked.into());
        assert_eq!(
            validate(&client(), &p, 300, "i").unwrap().expires_in,
            got,
            "{asked}"
        );
    }
    let mut p = good();
    p.resource = Some("https://evil.example".into());
    assert_eq!(code(&p), "invalid_target");
    p.resource = Some("https://api.example".into());
    assert_eq!(
        validate(&client(), &p, 300, "i").unwrap().resource,
        "https://api.example"
    );
    let mut p = good();
    p.task = Some("a\tb".into());
    assert_eq!(code(&p), "invalid_request");
}
