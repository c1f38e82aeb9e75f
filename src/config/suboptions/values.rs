//! Reading one `-o` item's value the way memcached does: its C number readers (`atoi`,
//! `atof`, `safe_strtoul`, `strtod`) and its refusals of a missing or unparseable value.

use crate::numbers;

/// C `atoi` as memcached uses it for most `-o` values ([`numbers::atol`]): never fails, so
/// "hashpower=abc" is "too low", not "bad".
pub(in crate::config) fn atoi(value: &str) -> i64 {
    numbers::atol(value.as_bytes())
}

/// C `atof`, close enough for memcached's range checks: the longest parseable prefix.
pub(in crate::config) fn atof(value: &str) -> f64 {
    let s = value.trim_start();
    (1..=s.len())
        .rev()
        .filter(|&end| s.is_char_boundary(end))
        .find_map(|end| s[..end].parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// memcached's `safe_strtoul` ([`numbers::safe_strtoul`]).
pub(in crate::config) fn strtoul_ok(value: &str) -> bool {
    numbers::safe_strtoul(value.as_bytes()).is_some()
}

pub(in crate::config) fn strtod_ok(value: &str) -> bool {
    value.trim_end().parse::<f64>().is_ok()
}

/// One `-o` item split at its first `=`, with memcached's refusals of a missing or
/// unparseable value.
pub(super) struct Arg<'a> {
    pub(super) name: &'a str,
    pub(super) value: Option<&'a str>,
}

impl<'a> Arg<'a> {
    /// The value, or `missing` as the refusal.
    pub(super) fn need(&self, missing: &str) -> Result<&'a str, String> {
        self.value.ok_or_else(|| missing.to_string())
    }

    /// The value, or memcached's usual "Missing NAME argument".
    pub(super) fn need_arg(&self) -> Result<&'a str, String> {
        self.value
            .ok_or_else(|| format!("Missing {} argument", self.name))
    }

    /// A value `safe_strtoul` reads.
    pub(super) fn need_u32(&self) -> Result<(), String> {
        if strtoul_ok(self.need_arg()?) {
            Ok(())
        } else {
            Err(format!("could not parse argument to {}", self.name))
        }
    }

    /// A value `strtod` reads whole.
    pub(super) fn need_f64(&self) -> Result<(), String> {
        if strtod_ok(self.need_arg()?) {
            Ok(())
        } else {
            Err(format!("could not parse argument to {}", self.name))
        }
    }
}
