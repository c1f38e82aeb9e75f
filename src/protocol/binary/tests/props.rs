//! Properties over random input: no panic, consumption within the input, bodies within the
//! item limit, and nothing decided from bytes past the frame.

use super::super::*;
use proptest::prelude::*;

fn small_limits() -> ParseLimits {
    ParseLimits {
        item_size_max: 4096,
        ..ParseLimits::default()
    }
}

/// Checks the invariants of one parse over `buf`.
fn check_invariants(buf: &[u8], limits: &ParseLimits, sasl: Sasl) {
    match parse(buf, limits, sasl) {
        Ok(None) => {}
        Ok(Some((r, n))) => {
            assert!((HEADER_LEN..=buf.len()).contains(&n));
            if let Command::Store { value, .. } | Command::Concat { value, .. } = r.command {
                assert!(value.len() <= limits.item_size_max);
            }
            if let Command::SaslAuth { data, .. } | Command::SaslStep { data, .. } = r.command {
                assert!(data.len() <= limits.item_size_max);
            }
            assert!(n <= max_frame_len(limits));
        }
        Err(e) => {
            assert!(e.consumed <= buf.len());
            assert!(e.swallow <= MAX_BODY_LEN as usize);
            assert_eq!(e.status().is_none(), e.kind == ErrorKind::BadMagic);
        }
    }
}

fn any_sasl() -> impl Strategy<Value = Sasl> {
    prop_oneof![
        Just(Sasl::Disabled),
        Just(Sasl::Required),
        Just(Sasl::Authenticated)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Arbitrary bytes: no panic, consumption within the input, bodies within the limit.
    #[test]
    fn random_bytes(buf in proptest::collection::vec(any::<u8>(), 0..600), sasl in any_sasl()) {
        check_invariants(&buf, &small_limits(), sasl);
    }

    /// Well-formed headers with random opcodes and lengths reach every branch.
    #[test]
    fn random_frames(
        opcode in prop_oneof![0u8..0x26, any::<u8>()],
        extras_len in prop_oneof![Just(0u8), Just(4), Just(8), Just(20), any::<u8>()],
        key_len in prop_oneof![0u16..300, any::<u16>()],
        slack in prop_oneof![0u32..64, any::<u32>()],
        tail in proptest::collection::vec(any::<u8>(), 0..5000),
        sasl in any_sasl(),
    ) {
        let body_len = (u32::from(extras_len) + u32::from(key_len)).saturating_add(slack);
        let h = Header {
            magic: REQUEST_MAGIC,
            opcode,
            key_len,
            extras_len,
            body_len,
            ..Header::default()
        };
        let mut buf = h.to_bytes().to_vec();
        buf.extend_from_slice(&tail);
        let limits = small_limits();
        check_invariants(&buf, &limits, sasl);
        // Nothing past the consumed bytes matters, and every shorter prefix waits for more.
        let full = parse(&buf, &limits, sasl);
        if let Ok(Some((_, n))) = full {
            prop_assert!(parse(&buf[..n], &limits, sasl) == full);
            for cut in [0, 1, HEADER_LEN - 1, HEADER_LEN, n / 2, n - 1] {
                let early = parse(&buf[..cut.min(n - 1)], &limits, sasl);
                prop_assert!(early == Ok(None), "cut {cut}: {early:?}");
            }
        }
    }
}
