//! The fetcher against raw servers on loopback (the only addresses a test
//! may talk to; refused ranges are covered by the pure tests in `address`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

const DEV: Policy = Policy {
    allow_loopback: true,
};
const STRICT: Policy = Policy {
    allow_loopback: false,
};

/// A loopback server that answers every connection with `response`, then
/// keeps it open (reading) for up to `hold`, counting connections and the
/// ones the peer closed.
struct Raw {
    port: u16,
    accepted: Arc<AtomicUsize>,
    closed_by_peer: Arc<AtomicUsize>,
}

impl Raw {
    fn start(response: &'static [u8], hold: Duration) -> Raw {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed_by_peer = Arc::new(AtomicUsize::new(0));
        let (a, c) = (accepted.clone(), closed_by_peer.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().take(8) {
                let Ok(conn) = conn else { return };
                a.fetch_add(1, Ordering::SeqCst);
                let c = c.clone();
                std::thread::spawn(move || {
                    if serve_one(conn, response, hold) {
                        c.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        Raw {
            port,
            accepted,
            closed_by_peer,
        }
    }

    fn url(&self, scheme: &str, host: &str) -> String {
        format!("{scheme}://{host}:{}/jwks", self.port)
    }

    fn wait_closed(&self, n: usize) -> bool {
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            if self.closed_by_peer.load(Ordering::SeqCst) >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// True once the peer closed the connection.
fn serve_one(mut conn: TcpStream, response: &[u8], hold: Duration) -> bool {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(50)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let end = Instant::now() + hold;
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(_) if Instant::now() < end => continue,
            Err(_) => return false,
        }
    }
    if conn.write_all(response).is_err() {
        return true;
    }
    while Instant::now() < end {
        match conn.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

fn req(url: &str) -> Request<'_> {
    Request {
        url,
        accept: "application/json",
        max_bytes: 64,
    }
}

#[actix_web::test]
async fn a_good_answer_with_its_max_age() {
    let srv = Raw::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nCache-Control: public, max-age=60\r\n\r\n{\"keys\":[]}",
        Duration::from_secs(1),
    );
    let got = Fetcher::new(DEV)
        .fetch(&req(&srv.url("http", "127.0.0.1")))
        .await;
    assert_eq!(
        got,
        Ok(Fetched {
            body: b"{\"keys\":[]}".to_vec(),
            max_age: Some(60)
        })
    );
    assert!(srv.wait_closed(1), "the connection is not kept");
}

#[actix_web::test]
async fn a_stalled_body_is_cut_at_the_deadline_and_its_connection_closed() {
    let srv = Raw::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{",
        Duration::from_secs(5),
    );
    let fetcher = Fetcher::with_limits(DEV, Duration::from_millis(300), 4);
    let start = Instant::now();
    let got = fetcher.fetch(&req(&srv.url("http", "127.0.0.1"))).await;
    assert_eq!(got, Err(FetchError::Timeout));
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(
        srv.wait_closed(1),
        "connection left open after the deadline"
    );
}

#[actix_web::test]
async fn redirects_are_failures() {
    let srv = Raw::start(
        b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/jwks\r\nContent-Length: 0\r\n\r\n",
        Duration::from_secs(1),
    );
    let got = Fetcher::new(DEV)
        .fetch(&req(&srv.url("http", "127.0.0.1")))
        .await;
    assert_eq!(got, Err(FetchError::Redirect(302)));
    assert_eq!(srv.accepted.load(Ordering::SeqCst), 1);
}

#[actix_web::test]
async fn bodies_over_the_cap_fail_declared_or_streamed() {
    let declared = Raw::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 65\r\n\r\n",
        Duration::from_secs(1),
    );
    let got = Fetcher::new(DEV)
        .fetch(&req(&declared.url("http", "127.0.0.1")))
        .await;
    assert_eq!(got, Err(FetchError::TooLarge(64)));
    // Chunked, no length declared: counted as it arrives.
    let streamed = Raw::start(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n28\r\n0123456789012345678901234567890123456789\r\n28\r\n0123456789012345678901234567890123456789\r\n",
        Duration::from_secs(1),
    );
    let got = Fetcher::new(DEV)
        .fetch(&req(&streamed.url("http", "127.0.0.1")))
        .await;
    assert_eq!(got, Err(FetchError::TooLarge(64)));
    let status = Raw::start(
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        Duration::from_secs(1),
    );
    let got = Fetcher::new(DEV)
        .fetch(&req(&status.url("http", "127.0.0.1")))
        .await;
    assert_eq!(got, Err(FetchError::Status(404)));
}

#[actix_web::test]
async fn loopback_is_never_connected_to_without_the_development_setting() {
    let srv = Raw::start(b"HTTP/1.1 200 OK\r\n\r\n", Duration::from_secs(1));
    let fetcher = Fetcher::new(STRICT);
    for host in ["127.0.0.1", "[::ffff:127.0.0.1]", "[::1]"] {
        let got = fetcher.fetch(&req(&srv.url("https", host))).await;
        assert!(
            matches!(
                got,
                Err(FetchError::Address {
                    why: Refusal::Loopback,
                    ..
                })
            ),
            "{host}: {got:?}"
        );
    }
    // A name is checked on what it resolves to, by the resolver.
    let got = fetcher.fetch(&req(&srv.url("https", "localhost"))).await;
    assert!(
        matches!(
            got,
            Err(FetchError::Address {
                why: Refusal::Loopback,
                ..
            })
        ),
        "{got:?}"
    );
    assert_eq!(
        fetcher.fetch(&req(&srv.url("http", "127.0.0.1"))).await,
        Err(FetchError::Url(Refusal::Scheme))
    );
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(srv.accepted.load(Ordering::SeqCst), 0);
}

#[actix_web::test]
async fn fetches_beyond_the_bound_fail_at_once() {
    let srv = Raw::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{",
        Duration::from_secs(3),
    );
    let fetcher = Arc::new(Fetcher::with_limits(DEV, Duration::from_secs(2), 1));
    let url = srv.url("http", "127.0.0.1");
    let (f, u) = (fetcher.clone(), url.clone());
    let held = actix_web::rt::spawn(async move { f.fetch(&req(&u)).await });
    let end = Instant::now() + Duration::from_secs(2);
    while srv.accepted.load(Ordering::SeqCst) == 0 && Instant::now() < end {
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
    let start = Instant::now();
    assert_eq!(fetcher.fetch(&req(&url)).await, Err(FetchError::Busy));
    assert!(start.elapsed() < Duration::from_millis(100));
    held.abort();
    let _ = held.await;
    // The permit came back with the dropped fetch.
    let got = fetcher.fetch(&req("http://127.0.0.1:1/")).await;
    assert!(matches!(got, Err(FetchError::Connect(_))), "{got:?}");
}

#[test]
fn max_age_is_read_from_cache_control() {
    let mut h = HeaderMap::new();
    assert_eq!(max_age(&h), None);
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("public, s-maxage=5, MAX-AGE=\"120\""),
    );
    assert_eq!(max_age(&h), Some(120));
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    assert_eq!(max_age(&h), None);
}
