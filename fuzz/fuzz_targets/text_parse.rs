//! Text (and meta) protocol parser, and the `-Y` authentication step parser: any input, with
//! a small item limit, parses without panicking, consumes no more than it was given and never
//! hands out a value over the item limit. The stable-Rust, allocation-checking twin of this
//! walk is tests/parser_fuzz.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repcached::protocol::{auth, text, Effect, ParseLimits, Parsed, Request};

fuzz_target!(|data: &[u8]| {
    let limits = ParseLimits {
        item_size_max: 2048,
        ..ParseLimits::default()
    };
    // Walk the input as a connection would: request after request.
    let mut rest = data;
    while !rest.is_empty() {
        match text::parse(rest, &limits) {
            Parsed::Incomplete => break,
            Parsed::Request(req, n) => {
                assert!(n > 0 && n <= rest.len());
                if let Request::Store { data, .. } = req {
                    assert!(data.len() <= limits.item_size_max);
                }
                rest = &rest[n..];
            }
            Parsed::Error {
                consumed,
                swallow,
                effect,
                ..
            } => {
                // A silent close (an HTTP request, say) needs to consume nothing.
                assert!(consumed <= rest.len());
                if effect == Effect::Close {
                    break;
                }
                assert!(consumed > 0);
                rest = &rest[consumed.saturating_add(swallow).min(rest.len())..];
            }
        }
    }
    let mut rest = data;
    loop {
        let consumed = match auth::parse(rest) {
            auth::Step::Incomplete | auth::Step::Close => break,
            auth::Step::Unauthenticated { consumed }
            | auth::Step::BadTermination { consumed }
            | auth::Step::BadFormat { consumed }
            | auth::Step::Credentials { consumed, .. } => consumed,
        };
        assert!(consumed > 0 && consumed <= rest.len());
        rest = &rest[consumed..];
    }
});
