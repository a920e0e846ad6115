//! Single-thread ES256 sign and verify rates with the same library deputy uses
//! (josekit on OpenSSL), on a signing input the size of a deputy access token.
//!
//! `cargo run --release --example es256_rate [-- SECONDS]` (default 1.5 s per
//! measurement). Prints one human line per measurement and, last, one JSON
//! line (`{"sign_per_s":..,"verify_per_s":..}`) for bench/run.sh.

use std::time::{Duration, Instant};

use josekit::jws::{JwsSigner, JwsVerifier, ES256};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| *s > 0.0 && *s <= 10.0)
        .unwrap_or(1.5);
    let window = Duration::from_secs_f64(secs);

    let kp = ES256.generate_key_pair()?;
    let signer = ES256.signer_from_der(kp.to_der_private_key())?;
    let verifier = ES256.verifier_from_der(kp.to_der_public_key())?;

    // Header + payload of a typical access token, base64url (about 330 bytes).
    let input = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImJlbmNoLWtleS0xMjM0NTY3OCIsInR5cCI6ImF0K2p3dCJ9.\
eyJhdWQiOiJodHRwczovL2FwaS5leGFtcGxlIiwiY2xpZW50X2lkIjoic3ZjLWJhc2ljIiwiZXhwIjoxNzYwMDAwMzAwLCJp\
YXQiOjE3NjAwMDAwMDAsImlzcyI6Imh0dHA6Ly8xMjcuMC4wLjE6NDAwMDAiLCJqdGkiOiJhYmNkZWZnaGlqa2xtbm9wcXJz\
dHV2Iiwic2NvcGUiOiJyZWFkIiwic3ViIjoic3ZjLWJhc2ljIn0"
        .as_bytes();

    // Warm up (page in code, OpenSSL precomputation tables).
    let mut sig = signer.sign(input)?;
    for _ in 0..200 {
        sig = signer.sign(input)?;
        verifier.verify(input, &sig)?;
    }

    let (mut n, start) = (0u64, Instant::now());
    while start.elapsed() < window {
        for _ in 0..64 {
            sig = std::hint::black_box(signer.sign(std::hint::black_box(input))?);
        }
        n += 64;
    }
    let sign_rate = n as f64 / start.elapsed().as_secs_f64();
    println!("ES256 sign:   {sign_rate:>9.0} /s (1 thread, {secs} s)");

    let (mut n, start) = (0u64, Instant::now());
    while start.elapsed() < window {
        for _ in 0..64 {
            verifier.verify(std::hint::black_box(input), std::hint::black_box(&sig))?;
        }
        n += 64;
    }
    let verify_rate = n as f64 / start.elapsed().as_secs_f64();
    println!("ES256 verify: {verify_rate:>9.0} /s (1 thread, {secs} s)");
    println!("{{\"sign_per_s\":{sign_rate:.0},\"verify_per_s\":{verify_rate:.0}}}");
    Ok(())
}
