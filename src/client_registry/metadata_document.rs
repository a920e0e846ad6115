//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document):
//! the client's metadata is the JSON document at its `client_id` URL.
//!
//! Fetched with the one safe fetcher (one deadline, 5 KB, no redirects,
//! public addresses only unless `allow_loopback_fetch`), one fetch per URL
//! at a time with a backoff after a failure (per instance), only from URLs
//! the allow-list admits. The document is kept in the clients table for
//! its HTTP cache lifetime, bounded by `client_metadata_min_cache` and
//! `client_metadata_max_cache`; when it must be fetched again and cannot
//! be, the client cannot be used (no stale metadata decides a redirect).

use serde_json::Value;

use super::{described_client, unavailable, Lookup, Refusal};
use crate::audit::{AuditEvent, Mode};
use crate::fetch::{FetchError, Request};
use crate::model::{AuthMethod, Registration};
use crate::policy::client_metadata::{self, Rules};
use crate::store::clients::Client;

/// draft-ietf-oauth-client-id-metadata-document §4: a small document.
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;
const ACCEPT: &str = "application/json";

/// A client id that names a metadata document (§3): an https URL with a
/// path, and no query, fragment, credentials or dot segments.
pub fn is_document_url(id: &str) -> bool {
    let Ok(url) = url::Url::parse(id) else {
        return false;
    };
    url.scheme() == "https"
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none()
        && url.path() != "/"
        // The id is compared as written: it must be what the URL parser
        // makes of it (no dot segments, no default port, lower-case host).
        && url.as_str() == id
        && !id.contains("/./")
        && !id.contains("/../")
}

/// Whether the allow-list (`client_metadata_allow`) admits this URL: empty
/// admits any; an entry with `://` is a URL prefix, else a host name.
pub fn allowed(allow: &[String], id: &str) -> bool {
    if allow.is_empty() {
        return true;
    }
    let host = url::Url::parse(id)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    allow.iter().any(|entry| {
        if entry.contains("://") {
            id.starts_with(entry.as_str())
        } else {
            host.as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(entry))
        }
    })
}

/// The metadata a fetched document gives, or why it gives none.
fn described(id: &str, body: &[u8]) -> Result<client_metadata::ClientMetadata, String> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|_not_json| "the document is not JSON".to_string())?;
    // §4.1: the document names the URL it was fetched from, exactly.
    if doc.get("client_id").and_then(Value::as_str) != Some(id) {
        return Err("the document's client_id is not its URL".into());
    }
    let rules = Rules {
        methods: &[AuthMethod::None, AuthMethod::PrivateKeyJwt],
        default_method: AuthMethod::None,
    };
    client_metadata::parse(&doc, rules).map_err(|e| format!("{}: {}", e.code(), e.description()))
}

/// Fetch the document at `id`, check it, and store it as the client's
/// cached registration. Returns the client as stored.
pub async fn fetch_and_store(l: &Lookup<'_>, id: &str) -> Result<Client, Refusal> {
    if !allowed(&l.settings.client_metadata_allow.0, id) {
        return Err(Refusal::Document(
            "the URL is not in client_metadata_allow".into(),
        ));
    }
    let request = Request {
        url: id,
        accept: ACCEPT,
        max_bytes: MAX_DOCUMENT_BYTES,
    };
    let outcome = l
        .registry
        .flights
        .run(id, l.now, || async {
            let fetched = l.fetcher.fetch(&request).await;
            if let Err(e) = &fetched {
                tracing::info!(client_id = %id, error = %e, "client metadata document fetch failed");
            }
            fetched
        })
        .await;
    let fetched = match outcome {
        Ok(f) => f,
        Err(FetchError::Busy) => {
            return Err(Refusal::Unavailable(unavailable(
                "the server is busy, retry later",
            )))
        }
        Err(e) => return Err(Refusal::Document(format!("fetch failed: {e}"))),
    };
    let meta = match described(id, &fetched.body) {
        Ok(m) => m,
        Err(why) => {
            // Backed off like a failed fetch: an unusable page named again
            // and again is not fetched again and again.
            l.registry.flights.unusable(id, l.now);
            return Err(Refusal::Document(why));
        }
    };
    let s = l.settings;
    let lifetime = fetched
        .max_age
        .map_or(s.client_metadata_min_cache, |a| {
            i64::try_from(a).unwrap_or(i64::MAX)
        })
        .clamp(s.client_metadata_min_cache, s.client_metadata_max_cache);
    let mut client = described_client(id, &meta, Registration::MetadataDocument, l.now);
    client.origin.metadata_expires_at = Some(l.now.saturating_add(lifetime));
    let stored = client.clone();
    let now = l.now;
    let stale_before = now - s.client_metadata_max_cache;
    let current = l
        .store
        .write(move |c| {
            if crate::store::clients::store_described(c, &stored)? {
                crate::store::clients::forget_unused_documents(c, stale_before, 10)?;
                let mut e = AuditEvent::new(now, "client_discovered", Mode::System)
                    .client(&stored.id, stored.kind.as_str());
                e.detail = Some(
                    serde_json::json!({"registration": "metadata_document",
                                       "redirect_uris": stored.redirect_uris})
                    .to_string(),
                );
                crate::store::audit::insert(c, &e)?;
            }
            crate::store::clients::get(c, &stored.id)
        })
        .await
        .map_err(crate::error::OAuthError::from)?;
    match current {
        // Blocked or registered by the operator meanwhile: the row decides.
        Some(c) if c.origin.blocked_at.is_some() => Err(Refusal::Document("blocked".into())),
        Some(c) => Ok(c),
        None => Err(Refusal::Document("vanished".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_urls_are_https_with_a_path_and_nothing_else() {
        assert!(is_document_url("https://app.example/client.json"));
        assert!(is_document_url("https://app.example:8443/oauth/metadata"));
        for not in [
            "http://app.example/client.json",
            "https://app.example",
            "https://app.example/",
            "https://app.example/c?x=1",
            "https://app.example/c#f",
            "https://user@app.example/c",
            "https://APP.example/c",
            "https://app.example:443/c",
            "https://app.example/a/../c",
            "my-client",
        ] {
            assert!(!is_document_url(not), "{not}");
        }
    }

    #[test]
    fn the_allow_list_takes_prefixes_and_hosts() {
        let allow = vec![
            "https://tools.example/agents/".to_string(),
            "app.example".to_string(),
        ];
        assert!(allowed(&[], "https://any.example/c"));
        assert!(allowed(&allow, "https://tools.example/agents/one.json"));
        assert!(!allowed(&allow, "https://tools.example/other.json"));
        assert!(allowed(&allow, "https://app.example/c.json"));
        assert!(!allowed(&allow, "https://app.example.evil/c.json"));
        // Prefixes come canonical and end in `/` (config): no host suffix.
        let host_prefix = vec!["https://tools.example/".to_string()];
        assert!(!allowed(&host_prefix, "https://tools.example.evil/c.json"));
        assert!(allowed(&host_prefix, "https://tools.example/c.json"));
    }
}
