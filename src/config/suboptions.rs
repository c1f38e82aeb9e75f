//! memcached's `-o` sub-options: each item validated with memcached's rules and messages, by
//! family (`ssl_*` in [`tls`], the hash table, allocator, LRU and extstore tuning in
//! [`tuning`], value readers in [`values`]), and the checks that span items. The few that take
//! effect here (idle_timeout, read_buf_mem_limit, sasl_pwdb, ssl_*, the LRU crawler switch)
//! are kept.

mod tls;
mod tuning;
mod values;

pub(super) use tls::check_tls;
pub(super) use values::{atof, atoi};

use super::error::{invalid, ConfigError};
use super::types::*;
use std::path::PathBuf;
use tuning::Tuning;
use values::Arg;

/// What the `-o` lists of a command line set (memcached's defaults when none is given).
#[derive(Debug, Default)]
pub(super) struct SubOptions {
    /// The LRU state memcached's cross-checks need, and the crawler switch.
    pub(super) tuning: Tuning,
    /// The sub-options repcached implements (the rest are only validated).
    pub(super) idle_timeout: u32,
    pub(super) read_buf_mem_limit: u64,
    /// The ssl_* options.
    pub(super) tls: TlsSettings,
    /// `sasl_pwdb=FILE`: repcached's own, the same as `--sasl-pwdb FILE`.
    pub(super) sasl_pwdb: Option<PathBuf>,
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
            _ => self.tuning.apply(&arg)? || self.tuning.lru(&arg)?,
        };
        if known {
            Ok(())
        } else {
            Err(format!("Illegal suboption \"{item}\""))
        }
    }

    /// memcached's checks that span several sub-options.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        self.tuning.check().map_err(invalid)
    }
}
