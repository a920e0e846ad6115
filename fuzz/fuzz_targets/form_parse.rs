//! Strict form parsing (RFC 6749 §3.1): never panics; what it accepts has no
//! empty values and no more parameters than the limit. The variant that keeps
//! repeats (for /authorize) accepts what the strict one does, and a repeated
//! name is reported, never answered with one of its values.
#![no_main]
use libfuzzer_sys::fuzz_target;

use deputy::http::form::{parse_form, parse_form_keeping_repeats, MAX_PARAMS};

fuzz_target!(|data: &[u8]| {
    let strict = parse_form(data);
    if let Ok(params) = &strict {
        assert!(params.len() <= MAX_PARAMS);
        for key in ["grant_type", "scope", "client_id", "code", "token"] {
            if let Some(v) = params.get(key) {
                assert!(!v.is_empty(), "an empty value must count as absent");
            }
        }
    }
    if let Ok(lenient) = parse_form_keeping_repeats(data) {
        assert!(lenient.len() + lenient.repeated().len() <= MAX_PARAMS);
        for key in lenient.repeated() {
            assert!(lenient.get(key).is_none(), "a repeated parameter has no value");
        }
        if let Ok(strict) = &strict {
            assert!(lenient.repeated().is_empty());
            assert_eq!(strict.len(), lenient.len());
        }
    }
});
