//! Property: delegation only narrows. For random delegation rules and random
//! chains of exchanges, every issued token's scope is a subset of its parent's
//! and its exp is no later (RFC 8693 §2.1 as deputy applies it).

use actix_web::test;
use deputy::model::{AuthMethod, ClientKind, GrantType};
use deputy::policy::delegation::DelegationRule;
use deputy::secret::{hash_secret, Argon2Profile};
use serde_json::Value;

use crate::people::*;
use crate::support::*;

const SCOPES: [&str; 4] = ["notes:read", "notes:write", "calendar:read", "mail:send"];
const AGENTS: usize = 4;

/// xorshift64*: a small deterministic generator, so a failing seed can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn subset(&mut self) -> Vec<String> {
        SCOPES
            .iter()
            .filter(|_| self.below(2) == 1)
            .map(|s| s.to_string())
            .collect()
    }
}

fn scope_of(v: &Value) -> Vec<String> {
    v["scope"]
        .as_str()
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[allow(clippy::needless_range_loop)] // hop indexes both agents and their secrets
async fn run_seed(seed: u64) -> usize {
    let mut issued = 0;
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let env = Env::new();
    let mut secrets = Vec::new();
    for i in 0..AGENTS {
        let secret = deputy::secret::new_secret();
        let mut c = client(
            &format!("a{i}"),
            ClientKind::Agent,
            AuthMethod::ClientSecretPost,
        );
        c.grant_types = vec![GrantType::AuthorizationCode, GrantType::TokenExchange];
        c.redirect_uris = vec![REDIRECT.to_string()];
        c.scopes = SCOPES.iter().map(|s| s.to_string()).collect();
        c.secret_hash = Some(hash_secret(&secret, Argon2Profile::GeneratedSecret).unwrap());
        env.add_client(c).await;
        secrets.push(secret);
    }
    for i in 0..AGENTS - 1 {
        let rule = DelegationRule {
            id: format!("r{i}"),
            actor: format!("a{i}"),
            audience: format!("a{}", i + 1),
            scopes: rng.subset(),
            max_lifetime: 10 + rng.below(600) as i64,
            max_depth: 1 + rng.below(AGENTS as u64) as i64,
            broker: None,
            created_at: T0,
            require_dpop: false,
        };
        env.state
            .store
            .write(move |c| deputy::store::delegation::insert(c, &rule))
            .await
            .unwrap();
    }
    env.person("alice").await;
    let app = env.app().await;
    let all = SCOPES.join("+").replace(':', "%3A");
    let code = sign_in(
        &app,
        &mut Browser::default(),
        "a0",
        "alice",
        &format!("&scope={all}"),
    )
    .await;
    let body = format!(
        "grant_type=authorization_code&code={code}&client_id=a0&client_secret={}&code_verifier={VERIFIER}",
        enc(&secrets[0])
    );
    let (_, first) =
        json_of(test::call_service(&app, form_post("/token", &body).to_request()).await).await;
    let mut parent_token = first["access_token"].as_str().unwrap().to_string();
    let mut parent = peek(&parent_token).1;
    for hop in 0..AGENTS - 1 {
        let mut extra = format!("&audience=a{}", hop + 1);
        // Ask for nothing, for part of what the parent has, or for anything at all.
        let asked: Option<Vec<String>> = match rng.below(3) {
            0 => None,
            1 => Some(
                scope_of(&parent)
                    .into_iter()
                    .filter(|_| rng.below(2) == 1)
                    .collect(),
            ),
            _ => Some(rng.subset()),
        };
        if let Some(a) = asked.filter(|a| !a.is_empty()) {
            extra.push_str(&format!("&scope={}", a.join("+").replace(':', "%3A")));
        }
        if rng.below(2) == 1 {
            extra.push_str(&format!("&requested_lifetime={}", 1 + rng.below(1000)));
        }
        let body = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&client_id=a{hop}&client_secret={}\
             &subject_token={parent_token}&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token{extra}",
            enc(&secrets[hop])
        );
        let (status, resp) =
            json_of(test::call_service(&app, form_post("/token", &body).to_request()).await).await;
        if std::env::var("DEPUTY_PROPERTY_DEBUG").is_ok() {
            eprintln!("seed {seed} hop {hop} {status} {extra} {resp}");
        }
        if status != 200 {
            assert_eq!(status, 400, "seed {seed} hop {hop}: {resp}");
            break;
        }
        let child = peek(resp["access_token"].as_str().unwrap()).1;
        let (ps, cs) = (scope_of(&parent), scope_of(&child));
        assert!(!cs.is_empty(), "seed {seed}: empty scope issued");
        assert!(
            cs.iter().all(|s| ps.contains(s)),
            "seed {seed} hop {hop}: {cs:?} not within {ps:?}"
        );
        assert!(
            child["exp"].as_i64().unwrap() <= parent["exp"].as_i64().unwrap(),
            "seed {seed} hop {hop}: exp grew"
        );
        assert_eq!(child["sub"], parent["sub"], "seed {seed}: sub changed");
        assert_eq!(
            deputy::policy::delegation::depth(child.get("act")),
            hop as i64 + 1
        );
        parent_token = resp["access_token"].as_str().unwrap().to_string();
        parent = child;
        issued += 1;
    }
    issued
}

#[actix_web::test]
async fn delegation_only_narrows_for_random_chains() {
    let seeds: u64 = std::env::var("DEPUTY_PROPERTY_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let mut issued = 0;
    let mut deep = 0;
    for seed in 1..=seeds {
        let n = run_seed(seed).await;
        issued += n;
        deep += usize::from(n >= 2);
    }
    // The property must have been exercised, not vacuously true.
    assert!(
        issued >= seeds as usize / 2,
        "only {issued} tokens issued over {seeds} seeds"
    );
    assert!(deep >= 3, "only {deep} chains reached two hops");
}
