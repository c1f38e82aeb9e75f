//! memcached's number and white-space rules, in one place: the C library calls it makes
//! (`isspace`, `strtol`, `strtoul`, `strtoull`, `atol`) wrapped the way its util.c wraps them
//! (`safe_strtol`, `safe_strtoul`, `safe_strtoull`), including the truncations that come from
//! storing a `long` into an `int32_t`.
//!
//! Used by the text and meta parsers, the configuration (memcached's `-o` options go through the
//! same functions) and, once switched, the store's incr/decr. A crate-level leaf so that neither
//! the protocol, the store nor the configuration has to depend on another to share it.
//!
//! The inputs are tokens: byte slices already cut out of a line, that memcached sees as a C
//! string. "The end of the token" therefore plays the part of C's terminating NUL.

/// C `isspace` in the "C" locale: space, \t, \n, \v, \f, \r.
#[inline]
pub fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// What `strtol`/`strtoull` read from the front of `s` in base 10: leading white space, one
/// optional sign, then decimal digits. Returns (negative, magnitude or `None` when it overflows
/// u64, index just after the digits), or `None` when there are no digits (`endptr == str`).
#[inline]
fn scan(s: &[u8]) -> Option<(bool, Option<u64>, usize)> {
    let mut i = 0;
    while i < s.len() && is_space(s[i]) {
        i += 1;
    }
    let mut neg = false;
    if let Some(&sign @ (b'+' | b'-')) = s.get(i) {
        neg = sign == b'-';
        i += 1;
    }
    let start = i;
    let mut mag = Some(0u64);
    while i < s.len() && s[i].is_ascii_digit() {
        let d = u64::from(s[i] - b'0');
        mag = mag
            .and_then(|m| m.checked_mul(10))
            .and_then(|m| m.checked_add(d));
        i += 1;
    }
    (i > start).then_some((neg, mag, i))
}

/// memcached's end check: the number is followed by white space or by the end of the string.
#[inline]
fn ends_ok(s: &[u8], end: usize) -> bool {
    s.get(end).is_none_or(|b| is_space(*b))
}

/// `safe_strtoull`: strtoull, refusing no digits, overflow, a bad character right after the
/// digits, and a negative number whose wrapped value looks negative as a signed 64-bit number
/// (strtoull negates "-1" to 2^64 - 1; memcached refuses it only because it then finds a '-'
/// in the string, so "-0" is 0 and "-9223372036854775809" is 2^63 - 1).
#[inline]
pub fn safe_strtoull(s: &[u8]) -> Option<u64> {
    let (neg, mag, end) = scan(s)?;
    let mag = mag?;
    if !ends_ok(s, end) {
        return None;
    }
    let v = if neg { mag.wrapping_neg() } else { mag };
    // memcached looks for the '-' in the whole string (strchr), not only before the digits.
    if (v as i64) < 0 && s.contains(&b'-') {
        return None;
    }
    Some(v)
}

/// `safe_strtoull` on a stored value, a C string: memcached's incr/decr reads the item's data,
/// which may hold a NUL. strtoull stops there like at any non-digit, but the end check takes a
/// NUL as the end of the string, so "12\0junk" is 12. The '-' search (strchr) also stops at the
/// first NUL.
pub fn safe_strtoull_c_str(s: &[u8]) -> Option<u64> {
    let s = match memchr::memchr(0, s) {
        Some(nul) => &s[..nul],
        None => s,
    };
    safe_strtoull(s)
}

/// `safe_strtoul` into a `uint32_t` (how memcached stores flags, verbosity, slab ids): the
/// same rules on a 64-bit unsigned long, then the assignment keeps the low 32 bits.
#[inline]
pub fn safe_strtoul(s: &[u8]) -> Option<u32> {
    safe_strtoull(s).map(|v| v as u32)
}

/// `strtol` with memcached's checks but before `safe_strtol`'s assignment: the 64-bit `long`,
/// `None` on no digits, on overflow (ERANGE) or on a bad character after the digits.
#[inline]
pub fn strtol_long(s: &[u8]) -> Option<i64> {
    let (neg, mag, end) = scan(s)?;
    let mag = mag?;
    let v = if neg {
        if mag > 1 << 63 {
            return None;
        }
        (mag as i64).wrapping_neg()
    } else {
        i64::try_from(mag).ok()?
    };
    ends_ok(s, end).then_some(v)
}

/// `safe_strtol` into an `int32_t` (exptimes, data lengths, TTL flags): strtol's 64-bit long,
/// then truncated to its low 32 bits by the assignment, so 4294967297 is 1 and
/// 9223372036854775807 is -1.
#[inline]
pub fn safe_strtol(s: &[u8]) -> Option<i32> {
    strtol_long(s).map(|v| v as i32)
}

/// C `atol` (`strtol(s, NULL, 10)`): never fails; leading white space, a sign, the digits up to
/// the first other byte; 0 without digits; saturates at the `long` range on overflow.
pub fn atol(s: &[u8]) -> i64 {
    match scan(s) {
        None => 0,
        Some((neg, mag, _)) => match (neg, mag) {
            (false, Some(m)) => i64::try_from(m).unwrap_or(i64::MAX),
            (true, Some(m)) if m <= 1 << 63 => (m as i64).wrapping_neg(),
            (false, None) => i64::MAX,
            (true, _) => i64::MIN,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U64_MAX: &str = "18446744073709551615";
    const TWO_64: &str = "18446744073709551616";

    #[test]
    fn isspace_is_the_c_locale_set() {
        let spaces: Vec<u8> = (0..=255u8).filter(|b| is_space(*b)).collect();
        assert_eq!(spaces, b"\t\n\x0b\x0c\r ");
    }

    /// (input, safe_strtoull, safe_strtoul, safe_strtol, strtol_long)
    #[allow(clippy::type_complexity)]
    const TABLE: &[(&str, Option<u64>, Option<u32>, Option<i32>, Option<i64>)] = &[
        ("0", Some(0), Some(0), Some(0), Some(0)),
        ("12", Some(12), Some(12), Some(12), Some(12)),
        ("+7", Some(7), Some(7), Some(7), Some(7)),
        ("-12", None, None, Some(-12), Some(-12)),
        ("-0", Some(0), Some(0), Some(0), Some(0)),
        // Empty, no digits, a lone sign.
        ("", None, None, None, None),
        ("-", None, None, None, None),
        ("+", None, None, None, None),
        ("x", None, None, None, None),
        (" ", None, None, None, None),
        // Leading white space is skipped by strtol; trailing white space passes the end check.
        ("  5", Some(5), Some(5), Some(5), Some(5)),
        ("\t+7", Some(7), Some(7), Some(7), Some(7)),
        ("\x0b\x0c\r\n9", Some(9), Some(9), Some(9), Some(9)),
        ("5 ", Some(5), Some(5), Some(5), Some(5)),
        ("12\x0b", Some(12), Some(12), Some(12), Some(12)),
        ("7\tx", Some(7), Some(7), Some(7), Some(7)),
        // Anything else right after the digits is refused.
        ("7x", None, None, None, None),
        ("1.5", None, None, None, None),
        ("- 1", None, None, None, None),
        ("+-1", None, None, None, None),
        // Base 10 only: hex-looking strings stop at the 'x'.
        ("0x10", None, None, None, None),
        ("0X1f", None, None, None, None),
        ("010", Some(10), Some(10), Some(10), Some(10)),
        // 32-bit truncation of the stored value.
        (
            "4294967295",
            Some(4294967295),
            Some(u32::MAX),
            Some(-1),
            Some(4294967295),
        ),
        ("4294967296", Some(1 << 32), Some(0), Some(0), Some(1 << 32)),
        (
            "4294967297",
            Some((1 << 32) + 1),
            Some(1),
            Some(1),
            Some((1 << 32) + 1),
        ),
        (
            "2147483648",
            Some(1 << 31),
            Some(1 << 31),
            Some(i32::MIN),
            Some(1 << 31),
        ),
        ("-2147483649", None, None, Some(i32::MAX), Some(-2147483649)),
        ("-4294967295", None, None, Some(1), Some(-4294967295)),
        // The long range.
        (
            "9223372036854775807",
            Some(i64::MAX as u64),
            Some(u32::MAX),
            Some(-1),
            Some(i64::MAX),
        ),
        ("9223372036854775808", Some(1 << 63), Some(0), None, None),
        ("-9223372036854775808", None, None, Some(0), Some(i64::MIN)),
        (
            "-9223372036854775809",
            Some(i64::MAX as u64),
            Some(u32::MAX),
            None,
            None,
        ),
        // The unsigned long long range: 2^64 - 1 is fine, 2^64 overflows.
        (U64_MAX, Some(u64::MAX), Some(u32::MAX), None, None),
        (TWO_64, None, None, None, None),
        ("99999999999999999999", None, None, None, None),
        ("-18446744073709551615", Some(1), Some(1), None, None),
        ("-18446744073709551616", None, None, None, None),
        // A value >= 2^63 with a '-' anywhere in the string (strchr) is refused.
        ("9223372036854775808\t-", None, None, None, None),
        (
            "9223372036854775807\t-",
            Some(i64::MAX as u64),
            Some(u32::MAX),
            Some(-1),
            Some(i64::MAX),
        ),
    ];

    #[test]
    fn safe_conversions_table() {
        for &(input, ull, ul, l, long) in TABLE {
            let s = input.as_bytes();
            assert_eq!(safe_strtoull(s), ull, "safe_strtoull({input:?})");
            assert_eq!(safe_strtoul(s), ul, "safe_strtoul({input:?})");
            assert_eq!(safe_strtol(s), l, "safe_strtol({input:?})");
            assert_eq!(strtol_long(s), long, "strtol_long({input:?})");
        }
    }

    #[test]
    fn c_string_values_end_at_nul() {
        assert_eq!(safe_strtoull_c_str(b"12\0junk"), Some(12));
        assert_eq!(safe_strtoull_c_str(b"12 \0"), Some(12));
        assert_eq!(safe_strtoull_c_str(b"\x0012"), None);
        assert_eq!(safe_strtoull_c_str(b"12x\0"), None);
        assert_eq!(safe_strtoull_c_str(b"12"), Some(12));
        assert_eq!(safe_strtoull_c_str(b""), None);
        // The '-' search stops at the NUL too.
        assert_eq!(
            safe_strtoull_c_str(b"9223372036854775808\0-"),
            Some(1 << 63)
        );
        assert_eq!(safe_strtoull_c_str(b"9223372036854775808 -\0"), None);
        // Without a NUL it is plain safe_strtoull.
        assert_eq!(safe_strtoull(b"12\0junk"), None);
    }

    #[test]
    fn atol_never_fails() {
        let cases: &[(&str, i64)] = &[
            ("  42abc", 42),
            ("-7", -7),
            ("+3", 3),
            ("x", 0),
            ("", 0),
            ("-", 0),
            ("\t\n 12 ", 12),
            ("0x10", 0),
            ("99999999999999999999", i64::MAX),
            ("-99999999999999999999", i64::MIN),
            ("-9223372036854775808", i64::MIN),
            ("9223372036854775807", i64::MAX),
        ];
        for &(input, want) in cases {
            assert_eq!(atol(input.as_bytes()), want, "atol({input:?})");
        }
    }
}
