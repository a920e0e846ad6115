//! `deputy revoke|trace|audit|consent withdraw` on the built binary, against
//! the same database the in-process server uses (as when both run at once).

use actix_web::test;
use serde_json::{json, Value};

use super::*;
use crate::people::{redeem, sign_in, Browser};
use crate::support::*;
use crate::token_status::{jti_of, App};

struct Run {
    code: i32,
    stdout: Value,
    stderr: String,
}

/// Run the binary on `env`'s database and keys, with no DEPUTY_* from outside.
fn deputy(env: &Env, args: &[&str]) -> Run {
    let out = env.cli().args(args).output().unwrap();
    Run {
        code: out.status.code().unwrap(),
        stdout: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// A failure: exit 1 and exactly one `deputy: error:` line.
fn assert_one_line_error(run: &Run, starts_with: &str) {
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr
            .starts_with(&format!("deputy: error: {starts_with}")),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, Value::Null);
}

/// The chain, valid long after the wall clock the CLI reads passes T0.
fn lasting_chain() -> Vec<deputy::store::tokens::TokenRecord> {
    chain()
        .into_iter()
        .map(|mut r| {
            r.expires_at = 4_000_000_000;
            r
        })
        .collect()
}

#[actix_web::test]
async fn trace_revoke_and_audit_on_the_cli_match_the_api() {
    let env = Env::new();
    insert(&env, lasting_chain()).await;
    insert_grant(&env, grant_g1()).await;
    let app = env.app().await;
    let admin = admin_token(&app, &env).await;

    // `deputy trace` prints the same JSON as GET /admin/tokens/{jti}.
    for jti in ["root", "child", "grandchild"] {
        let run = deputy(&env, &["trace", jti]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let (status, api) = get(&app, &format!("/admin/tokens/{jti}"), &admin).await;
        assert_eq!((status, &run.stdout), (200, &api));
    }
    assert_one_line_error(&deputy(&env, &["trace", "nope"]), "no token `nope`");

    // Exactly one selector.
    for args in [
        &["revoke"][..],
        &["revoke", "--jti", "root", "--sub", "person-1"],
        &["revoke", "--actor", ""],
    ] {
        assert_one_line_error(&deputy(&env, args), "exactly one of --jti, --sub");
    }

    let run = deputy(&env, &["revoke", "--actor", "agent-a"]);
    assert_eq!(
        (run.code, &run.stdout),
        (0, &json!({"revoked": 2})),
        "{}",
        run.stderr
    );
    // The server sees the CLI's change at once.
    let (_, list) = get(&app, "/admin/tokens?active=false", &admin).await;
    let revoked: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["jti"].as_str().unwrap())
        .collect();
    assert_eq!(revoked, vec!["child", "grandchild"]);
    assert_eq!(list[0]["revoked_reason"], "revoked_by_admin");

    let run = deputy(&env, &["audit", "--event", "admin_revoke"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let events = run.stdout.as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (
            &events[0]["mode"],
            &events[0]["client_id"],
            &events[0]["detail"]
        ),
        (
            &json!("admin"),
            &Value::Null,
            &json!({"selector": {"actor": "agent-a"}, "revoked": 2, "grants": 0, "consents_withdrawn": 0, "via": "cli"})
        )
    );
    let run = deputy(&env, &["audit", "--client", "admin", "--limit", "1"]);
    assert_eq!(run.stdout[0]["event"], "token_issued");
    assert_eq!(run.stdout.as_array().unwrap().len(), 1);
    assert_one_line_error(&deputy(&env, &["audit", "--limit", "0"]), "--limit must be");

    let run = deputy(&env, &["revoke", "--jti", "root"]);
    assert_eq!(run.stdout, json!({"revoked": 1}));
    let run = deputy(&env, &["revoke", "--grant", "g-1"]);
    assert_eq!(
        run.stdout,
        json!({"revoked": 0}),
        "every token of g-1 is already revoked"
    );
}

#[actix_web::test]
async fn a_failing_cli_revocation_writes_nothing() {
    let env = Env::new();
    insert(&env, lasting_chain()).await;
    env.state
        .store
        .write(|c| {
            c.batch("DROP TABLE audit_events")?;
            Ok(())
        })
        .await
        .unwrap();
    assert_one_line_error(&deputy(&env, &["revoke", "--jti", "root"]), "");
    for jti in ["root", "child", "grandchild"] {
        assert_eq!(revoked_at(&env, jti).await, None);
    }
}

async fn refresh(app: &impl App, client: &str, token: &Value) -> u16 {
    let body = format!(
        "grant_type=refresh_token&client_id={client}&refresh_token={}",
        token["refresh_token"].as_str().unwrap()
    );
    test::call_service(app, form_post("/token", &body).to_request())
        .await
        .status()
        .as_u16()
}

#[actix_web::test]
async fn consent_withdraw_revokes_that_clients_grants_and_nothing_else() {
    let env = Env::new();
    env.app_client("web").await;
    env.app_client("web2").await;
    let alice = env.person("alice").await;
    let app = env.app().await;
    let mut sessions = Vec::new();
    for client in ["web", "web2"] {
        let code = sign_in(&app, &mut Browser::default(), client, "alice", "").await;
        let (status, tokens) = redeem(&app, client, &code, "").await;
        assert_eq!(status, 200);
        sessions.push(tokens);
    }
    // Remembered consents: one per person and client.
    let consents = "SELECT count(DISTINCT user_id || ' ' || client_id) FROM consent_scopes";
    assert_eq!(env.count(consents).await, 2);

    let run = deputy(
        &env,
        &["consent", "withdraw", "--user", "alice", "--client", "web"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        json!({
            "user": "alice", "sub": alice, "client_id": "web",
            "consent_withdrawn": true, "grants_revoked": 1, "revoked": 3,
        })
    );
    assert_eq!(refresh(&app, "web", &sessions[0]).await, 400);
    assert_eq!(refresh(&app, "web2", &sessions[1]).await, 200);
    assert_eq!(env.count(consents).await, 1);
    let access = jti_of(sessions[0]["access_token"].as_str().unwrap());
    assert!(revoked_at(&env, &access).await.is_some());

    let run = deputy(&env, &["audit", "--event", "consent_withdrawn"]);
    let e = &run.stdout[0];
    assert_eq!(
        (&e["mode"], &e["person"], &e["client_id"], &e["client_kind"]),
        (&json!("admin"), &json!(alice), &json!("web"), &json!("app"))
    );
    assert_eq!(
        e["detail"],
        json!({"consent": true, "grants": 1, "revoked": 3, "via": "cli"})
    );

    // Withdrawing again changes nothing but is no error.
    let run = deputy(
        &env,
        &["consent", "withdraw", "--user", "alice", "--client", "web"],
    );
    assert_eq!(
        (
            run.stdout["consent_withdrawn"].clone(),
            run.stdout["revoked"].clone()
        ),
        (json!(false), json!(0))
    );
    assert_one_line_error(
        &deputy(
            &env,
            &[
                "consent", "withdraw", "--user", "mallory", "--client", "web",
            ],
        ),
        "no user `mallory`",
    );
    assert_one_line_error(
        &deputy(
            &env,
            &["consent", "withdraw", "--user", "alice", "--client", "wbe"],
        ),
        "no client `wbe`",
    );
}
