//! `private_key_jwt`: a client authenticates with a JWT it signed
//! (RFC 7523 §2.2 and §3, OpenID Connect Core §9).

use serde_json::Value;

use super::Context;
use super::{AuthenticatedClient, PendingAssertion};
use crate::error::OAuthError;
use crate::model::AuthMethod;
use crate::token::jws::{decode_unverified, numeric_date};

/// Why an assertion was refused; logged, never sent (the answer is always
/// `invalid_client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionRefusal {
    Malformed,
    IssuerSubjectMismatch,
    ClientIdMismatch,
    UnknownClient,
    NotPrivateKeyJwt,
    WrongAlgorithm,
    CriticalHeader,
    NoKey,
    BadSignature,
    BadAudience,
    MissingExp,
    Expired,
    ExpTooFar,
    IssuedInFuture,
    NotYetValid,
    MissingJti,
}

fn refuse(reason: AssertionRefusal) -> OAuthError {
    tracing::info!(reason = ?reason, "client assertion refused");
    OAuthError::invalid_client()
}

/// Check an assertion and return the client it authenticates. The `jti` is
/// returned unconsumed: the caller records it in the transaction that acts on
/// the request, so that "accepted" and "recorded" are one step.
pub async fn check(
    state: &Context<'_>,
    assertion: &str,
    form_client_id: Option<&str>,
) -> Result<AuthenticatedClient, OAuthError> {
    use AssertionRefusal::*;
    let jws = decode_unverified(assertion).map_err(|_malformed| refuse(Malformed))?;
    let claims = &jws.payload;
    // RFC 7523 §3 items 1 and 2: iss and sub are both the client id.
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or_else(|| refuse(Malformed))?;
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or_else(|| refuse(Malformed))?;
    if iss != sub {
        return Err(refuse(IssuerSubjectMismatch));
    }
    if form_client_id.is_some_and(|id| id != iss) {
        return Err(refuse(ClientIdMismatch));
    }
    let client = super::load_client(state, iss)
        .await?
        .ok_or_else(|| refuse(UnknownClient))?;
    if client.auth_method != AuthMethod::PrivateKeyJwt {
        return Err(refuse(NotPrivateKeyJwt));
    }
    // RFC 8725 §3.1: only the algorithm the client registered. This refuses
    // `none` and every HMAC algorithm, since neither can be registered.
    if jws.alg() != Some(client.assertion_alg.as_str()) {
        return Err(refuse(WrongAlgorithm));
    }
    // RFC 7515 §4.1.11: we understand no extension, so any `crit` is refused.
    if jws.header.contains_key("crit") {
        return Err(refuse(CriticalHeader));
    }
    // RFC 7523 §3 items 3-7 need no key, so they are checked before the keys
    // are loaded: an assertion refused on its claims (foreign audience,
    // expired, no jti) never makes deputy fetch a client's jwks_uri. They
    // count only once the signature below verifies.
    let settings = &state.settings;
    let bc_endpoint = settings.endpoint("/bc-authorize");
    let rules = ClaimRules {
        issuer: &settings.issuer,
        token_endpoint: &settings.endpoint("/token"),
        backchannel_endpoint: state
            .at_backchannel_endpoint
            .then_some(bc_endpoint.as_str()),
        now: state.now,
        skew: settings.clock_skew,
        max_age: settings.assertion_max_age,
    };
    let (jti, expires_at) = check_claims(claims, &rules).map_err(refuse)?;
    // `jku`, `x5u`, `jwk` and `x5c` are never read: keys come only from registration.
    let keys = super::jwks::client_keys(state, &client, jws.kid()).await?;
    let verified = keys
        .candidates(jws.kid())
        .any(|v| jws.verify_with(v).is_ok());
    if !verified {
        return Err(refuse(if keys.candidates(jws.kid()).next().is_none() {
            NoKey
        } else {
            BadSignature
        }));
    }
    Ok(AuthenticatedClient {
        client,
        method: AuthMethod::PrivateKeyJwt,
        assertion: Some(PendingAssertion { jti, expires_at }),
    })
}

/// What the claims of an assertion are checked against.
pub struct ClaimRules<'a> {
    pub issuer: &'a str,
    pub token_endpoint: &'a str,
    /// `/bc-authorize`'s URL, for an assertion sent there: CIBA Core §7.1
    /// has the OP accept it as an audience. Elsewhere `None`, so an
    /// assertion made for it is no use at other endpoints.
    pub backchannel_endpoint: Option<&'a str>,
    pub now: i64,
    pub skew: i64,
    pub max_age: i64,
}

/// RFC 7523 §3 items 3-7 on the claims, checked before the signature (so
/// before any key is fetched); they are accepted only with a signature that
/// verifies. Returns the `jti` and until when it must be remembered. Pure,
/// so it is fuzzed.
pub fn check_claims(
    claims: &serde_json::Map<String, Value>,
    r: &ClaimRules<'_>,
) -> Result<(String, i64), AssertionRefusal> {
    use AssertionRefusal::*;
    // Item 3: aud identifies the authorization server: the issuer or the
    // token endpoint URL, and at /bc-authorize its URL too (CIBA Core §7.1:
    // the OP MUST accept all three there). One audience value, as a string or
    // a one-element array: a list naming several is refused, as
    // draft-ietf-oauth-rfc7523bis does against audience injection.
    let aud = match claims.get("aud") {
        Some(Value::String(a)) => Some(a),
        Some(Value::Array(list)) => match list.as_slice() {
            [Value::String(a)] => Some(a),
            _ => None,
        },
        _ => None,
    };
    match aud {
        Some(a)
            if a == r.issuer
                || a == r.token_endpoint
                || Some(a.as_str()) == r.backchannel_endpoint => {}
        _ => return Err(BadAudience),
    }
    // Item 4: exp is required and not in the past (allowing the skew), and not
    // further ahead than the configured maximum.
    let exp = numeric_date(claims.get("exp")).ok_or(MissingExp)?;
    if r.now > exp.saturating_add(r.skew) {
        return Err(Expired);
    }
    if exp.saturating_sub(r.now) > r.max_age.saturating_add(r.skew) {
        return Err(ExpTooFar);
    }
    // Items 5 and 6: not before / issued at, not in the future beyond the skew.
    if let Some(v) = claims.get("nbf") {
        match numeric_date(Some(v)) {
            Some(nbf) if nbf <= r.now.saturating_add(r.skew) => {}
            _ => return Err(NotYetValid),
        }
    }
    if let Some(v) = claims.get("iat") {
        match numeric_date(Some(v)) {
            Some(iat) if iat <= r.now.saturating_add(r.skew) => {}
            _ => return Err(IssuedInFuture),
        }
    }
    // Item 7: jti required; single use is enforced by the caller's write.
    let jti = match claims.get("jti") {
        Some(Value::String(j)) if !j.is_empty() && j.len() <= 256 => j.clone(),
        _ => return Err(MissingJti),
    };
    Ok((jti, exp.saturating_add(r.skew)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_900_000_000;

    fn rules() -> ClaimRules<'static> {
        ClaimRules {
            issuer: "https://id.example",
            token_endpoint: "https://id.example/token",
            backchannel_endpoint: Some("https://id.example/bc-authorize"),
            now: NOW,
            skew: 30,
            max_age: 3600,
        }
    }

    fn with_aud(aud: Value) -> Result<(String, i64), AssertionRefusal> {
        let claims = json!({"aud": aud, "exp": NOW + 60, "jti": "j-1"});
        check_claims(claims.as_object().unwrap(), &rules())
    }

    #[test]
    fn the_backchannel_endpoint_is_an_audience_only_there() {
        let claims = json!({"aud": "https://id.example/bc-authorize", "exp": NOW + 60, "jti": "j"});
        let elsewhere = ClaimRules {
            backchannel_endpoint: None,
            ..rules()
        };
        assert!(matches!(
            check_claims(claims.as_object().unwrap(), &elsewhere),
            Err(AssertionRefusal::BadAudience)
        ));
        assert!(check_claims(claims.as_object().unwrap(), &rules()).is_ok());
    }

    #[test]
    fn audience_is_one_of_deputys_three_names_rfc7523_s3_ciba_s7_1() {
        for aud in [
            json!("https://id.example"),
            json!("https://id.example/token"),
            json!("https://id.example/bc-authorize"),
            json!(["https://id.example"]),
            json!(["https://id.example/bc-authorize"]),
            json!(["https://id.example/token"]),
        ] {
            assert_eq!(
                with_aud(aud.clone()).ok(),
                Some(("j-1".into(), NOW + 90)),
                "{aud}"
            );
        }
        for aud in [
            json!("https://id.example/"),
            json!("https://id.example/introspect"),
            json!("https://other.example"),
            json!(["https://id.example", "https://other.example"]),
            json!(["https://id.example", "https://id.example/token"]),
            json!([]),
            json!([["https://id.example"]]),
            json!(7),
            Value::Null,
        ] {
            assert!(
                matches!(with_aud(aud.clone()), Err(AssertionRefusal::BadAudience)),
                "{aud}"
            );
        }
    }
}
