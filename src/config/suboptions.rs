//! memcached's `-o` sub-options: each item validated with memcached's rules and messages, by
//! family (`ssl_*` in [`tls`], the hash table, allocator, LRU and extstore tuning in
//! [`tuning`]), and the checks that span items. The few that take effect here (idle_timeout,
//! read_buf_mem_limit, sasl_pwdb, ssl_*, the LRU crawler switch) are kept.

mod tls;
mod tuning;

pub(super) use tls::check_tls;

use super::error::{invalid, ConfigError};
use super::types::*;
use crate::numbers;
use std::path::PathBuf;

/// C `atoi` as memcached uses it for most `-o` values ([`numbers::atol`]): never fails, so
/// "hashpower=abc" is "too low", not "bad".
pub(super) fn atoi(value: &str) -> i64 {
    numbers::atol(value.as_bytes())
}

/// C `atof`, close enough for memcached's range checks: the longest parseable prefix.
pub(super) fn atof(value: &str) -> f64 {
    let s = value.trim_start();
    (1..=s.len())
        .rev()
        .filter(|&end| s.is_char_boundary(end))
        .find_map(|end| s[..end].parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// memcached's `safe_strtoul` ([`numbers::safe_strtoul`]).
pub(super) fn strtoul_ok(value: &str) -> bool {
    numbers::safe_strtoul(value.as_bytes()).is_some()
}

pub(super) fn strtod_ok(value: &str) -> bool {
    value.trim_end().parse::<f64>().is_ok()
}

/// One `-o` item split at its first `=`, with memcached's refusals of a missing or
/// unparseable value.
struct Arg<'a> {
    name: &'a str,
    value: Option<&'a str>,
}

impl<'a> Arg<'a> {
    /// The value, or `missing` as the refusal.
    fn need(&self, missing: &str) -> Result<&'a str, String> {
        self.value.ok_or_else(|| missing.to_string())
    }

    /// The value, or memcached's usual "Missing NAME argument".
    fn need_arg(&self) -> Result<&'a str, String> {
        self.value
            .ok_or_else(|| format!("Missing {} argument", self.name))
    }

    /// A value `safe_strtoul` reads.
    fn need_u32(&self) -> Result<(), String> {
        if strtoul_ok(self.need_arg()?) {
            Ok(())
        } else {
            Err(format!("could not parse argument to {}", self.name))
        }
    }

    /// A value `strtod` reads whole.
    fn need_f64(&self) -> Result<(), String> {
        if strtod_ok(self.need_arg()?) {
            Ok(())
        } else {
            Err(format!("could not parse argument to {}", self.name))
        }
    }
}

/// State the cross-checks between memcached `-o` sub-options need.
#[derive(Debug)]
pub(super) struct SubOptions {
    pub(super) hot_lru_pct: i64,
    pub(super) warm_lru_pct: i64,
    pub(super) temporary_ttl: bool,
    pub(super) lru_maintainer: bool,
    /// `lru_crawler` / `no_lru_crawler` (`no_modern` too): what `stats settings` reports and
    /// whether `lru_crawler crawl|metadump` are allowed until `lru_crawler enable|disable`.
    pub(super) lru_crawler: bool,
    /// The sub-options repcached implements (the rest are only validated).
    pub(super) idle_timeout: u32,
    pub(super) read_buf_mem_limit: u64,
    /// The ssl_* options.
    pub(super) tls: TlsSettings,
    /// `sasl_pwdb=FILE`: repcached's own, the same as `--sasl-pwdb FILE`.
    pub(super) sasl_pwdb: Option<PathBuf>,
}

impl Default for SubOptions {
    fn default() -> Self {
        // memcached's defaults.
        SubOptions {
            hot_lru_pct: 20,
            warm_lru_pct: 40,
            temporary_ttl: false,
            lru_maintainer: true,
            lru_crawler: true,
            idle_timeout: 0,
            read_buf_mem_limit: 0,
            tls: TlsSettings::default(),
            sasl_pwdb: None,
        }
    }
}

impl SubOptions {
    /// Checks one `-o` list the way memcached 1.6.18 (Debian build: TLS, extstore and
    /// sock_cookie_id compiled in) does, with its messages. Keeps the values of the options
    /// repcached implements (idle_timeout, read_buf_mem_limit, ssl_* in `self.tls`) and returns
    /// the other items, which have no effect here.
    pub(super) fn parse<'a>(&mut self, list: &'a str) -> Result<Vec<&'a str>, ConfigError> {
        // getsubopt stops at the end of the string, so a trailing comma is harmless but an
        // empty option in the middle is "Illegal suboption """.
        let list = list.strip_suffix(',').unwrap_or(list);
        let mut no_effect = Vec::new();
        for item in list.split(',') {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (item, None),
            };
            self.one(item, name, value).map_err(invalid)?;
            // `one` has validated the value the way memcached does.
            let v = value.unwrap_or("");
            match name {
                "idle_timeout" => self.idle_timeout = atoi(v).clamp(0, u32::MAX as i64) as u32,
                "read_buf_mem_limit" => {
                    self.read_buf_mem_limit = v
                        .trim_end()
                        .parse::<u64>()
                        .unwrap_or(0)
                        .saturating_mul(1 << 20)
                }
                _ if name.starts_with("ssl_") => {}
                "sasl_pwdb" => {}
                _ => no_effect.push(item),
            }
        }
        Ok(no_effect)
    }

    /// Checks one item (`name` and `value` split from `item` at its first `=`), keeping what
    /// it sets; memcached's message when it refuses it.
    pub(super) fn one(
        &mut self,
        item: &str,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), String> {
        let arg = Arg { name, value };
        let known = match name {
            "idle_timeout" => {
                arg.need("Missing numeric argument for idle_timeout")?;
                true
            }
            "read_buf_mem_limit" => {
                arg.need_u32()?;
                true
            }
            // Not memcached's (it reads MEMCACHED_SASL_PWDB only): the password file of -S for
            // a config file that cannot set the environment.
            "sasl_pwdb" => {
                self.sasl_pwdb = Some(PathBuf::from(arg.need_arg()?));
                true
            }
            _ if name.starts_with("ssl_") => tls::apply(&mut self.tls, &arg)?,
            _ => self.tuning(&arg)? || self.lru(&arg)?,
        };
        if known {
            Ok(())
        } else {
            Err(format!("Illegal suboption \"{item}\""))
        }
    }

    /// memcached's checks that span several sub-options.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.hot_lru_pct + self.warm_lru_pct > 80 {
            return Err(invalid(
                "hot_lru_pct + warm_lru_pct cannot be more than 80% combined",
            ));
        }
        if self.temporary_ttl && !self.lru_maintainer {
            return Err(invalid(
                "temporary_ttl requires lru_maintainer to be enabled",
            ));
        }
        Ok(())
    }
}
