//! Binary protocol parser: any input, under every SASL state and a small item limit, parses
//! without panicking, consumes no more than it was given, never hands out a value over the
//! item limit, and a refusal's reply encodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repcached::protocol::binary::{self, Command, Sasl};
use repcached::protocol::ParseLimits;

fuzz_target!(|data: &[u8]| {
    let limits = ParseLimits {
        item_size_max: 2048,
        ..ParseLimits::default()
    };
    for sasl in [Sasl::Disabled, Sasl::Required, Sasl::Authenticated] {
        // Walk the input as a connection would: request after request.
        let mut rest = data;
        while !rest.is_empty() {
            match binary::parse(rest, &limits, sasl) {
                Ok(None) => break,
                Ok(Some((req, n))) => {
                    assert!(n >= binary::HEADER_LEN && n <= rest.len());
                    if let Command::Store { value, .. } | Command::Concat { value, .. } =
                        req.command
                    {
                        assert!(value.len() <= limits.item_size_max);
                    }
                    rest = &rest[n..];
                }
                Err(e) => {
                    assert!(e.consumed <= rest.len());
                    let mut out = bytes::BytesMut::new();
                    e.encode(&mut out);
                    if e.close != binary::Close::No {
                        break;
                    }
                    let skip = e.consumed.saturating_add(e.swallow).min(rest.len());
                    rest = &rest[skip..];
                }
            }
        }
    }
});
