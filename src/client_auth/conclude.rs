//! The one transaction that ends an authenticated request, and the only place
//! a client assertion is spent (RFC 7523 §3 item 7: a `jti` is used once).
//!
//! Every request that passed client authentication — granted, refused by a
//! grant, over a rate limit, or failed on the store — ends in `conclude`,
//! which records the assertion's `jti` in the same transaction as what the
//! request produced. A refusal's own writes (audit events) are kept; a job
//! that rolls back undoes its writes, and the assertion is then spent in a
//! transaction of its own (no savepoint on the common path: on PostgreSQL a
//! savepoint is a subtransaction on every request).

use crate::store::Db;

use super::AuthenticatedClient;
use crate::audit::AuditEvent;
use crate::error::{ErrorCode, OAuthError};
use crate::store::{Outcome, Store, StoreResult};

/// What a request does in its transaction.
pub type RequestJob<T> =
    Box<dyn FnMut(&dyn Db) -> StoreResult<Outcome<T, OAuthError>> + Send + 'static>;

/// A request refused before its transaction: nothing to write but the spend.
pub fn refused<T: 'static>(e: OAuthError) -> RequestJob<T> {
    Box::new(move |_| Ok(Outcome::Refuse(e.clone())))
}

/// A refusal recorded in the audit trail, unless it is a temporary failure
/// of ours (busy, store failed): those are not policy decisions.
pub fn refused_and_recorded<T: 'static>(e: OAuthError, event: AuditEvent) -> RequestJob<T> {
    if is_temporary(&e) {
        return refused(e);
    }
    Box::new(move |c| {
        crate::store::audit::insert(c, &event)?;
        Ok(Outcome::Refuse(e.clone()))
    })
}

/// Failures of deputy (5xx) rather than answers about the request.
pub fn is_temporary(e: &OAuthError) -> bool {
    matches!(
        e.code,
        ErrorCode::ServerError | ErrorCode::TemporarilyUnavailable
    ) || e.status.as_u16() == 429
}

/// Run `job` in one transaction together with spending the request's client
/// assertion, if it carried one. A replayed assertion is `invalid_client` and
/// the job does not run. If the transaction fails, the assertion is spent on
/// its own so it can never be presented again, and the failure is answered.
pub async fn conclude<T: Send + 'static>(
    store: &Store,
    auth: &AuthenticatedClient,
    mut job: RequestJob<T>,
) -> Result<T, OAuthError> {
    let spend = auth
        .assertion
        .as_ref()
        .map(|a| (auth.client.id.clone(), a.jti.clone(), a.expires_at));
    let for_retry = spend.clone();
    let done = store
        .transact(move |c| {
            if let Some((client_id, jti, expires_at)) = &spend {
                if !crate::store::tokens::consume_assertion_jti(c, client_id, jti, *expires_at)? {
                    tracing::info!(client_id = %client_id, "client assertion replayed");
                    return Ok(Outcome::Rollback(Ended::Replayed));
                }
            }
            Ok(match job(c)? {
                Outcome::Commit(t) => Outcome::Commit(t),
                Outcome::Refuse(e) => Outcome::Refuse(Ended::Refused(e)),
                Outcome::Rollback(e) => Outcome::Rollback(Ended::RolledBack(e)),
            })
        })
        .await;
    let failure = match done {
        Ok(Ok(t)) => return Ok(t),
        Ok(Err(Ended::Replayed)) => return Err(OAuthError::invalid_client()),
        Ok(Err(Ended::Refused(e))) => return Err(e),
        // The job's writes are undone, and so was the spend: spend it alone.
        Ok(Err(Ended::RolledBack(e))) => e,
        Err(store_failed) => store_failed.into(),
    };
    if let Some((client_id, jti, expires_at)) = for_retry {
        let spent = store
            .write(move |c| {
                crate::store::tokens::consume_assertion_jti(c, &client_id, &jti, expires_at)
            })
            .await;
        if let Err(e) = spent {
            tracing::error!(error = %e, "a client assertion could not be recorded as used");
        }
    }
    Err(failure)
}

/// How a request's transaction ended when it did not commit an answer.
enum Ended {
    /// The assertion was spent before: the job did not run.
    Replayed,
    /// The job refused, keeping its writes (and the spend).
    Refused(OAuthError),
    /// The job refused and undid its writes (and with them the spend).
    RolledBack(OAuthError),
}

/// For a request that writes nothing itself (introspection): spend its
/// assertion, if it carried one; without one there is nothing to write.
pub async fn spend(store: &Store, auth: &AuthenticatedClient) -> Result<(), OAuthError> {
    if auth.assertion.is_none() {
        return Ok(());
    }
    conclude(store, auth, Box::new(|_| Ok(Outcome::Commit(())))).await
}
