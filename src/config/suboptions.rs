//! memcached's `-o` sub-options: validated with memcached's rules and messages; the few that
//! take effect here (idle_timeout, read_buf_mem_limit, ssl_*) are kept.

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

/// What -Z cannot honour, refused before anything starts. memcached would accept these (its
/// OpenSSL can do them); starting anyway would quietly give a weaker or different server.
pub(super) fn check_tls(tls: &TlsSettings) -> Result<(), ConfigError> {
    if tls.kernel_tls {
        // memcached's words when its OpenSSL has no kernel TLS.
        return Err(invalid("Kernel TLS offload is not available"));
    }
    if matches!(tls.min_version, TlsVersion::Tls10 | TlsVersion::Tls11) {
        return Err(invalid(format!(
            "ssl_min_version={} ({}) is not supported: repcached speaks TLS 1.2 and 1.3 only; \
             use ssl_min_version=2 (tlsv1.2, the default) or 3 (tlsv1.3)",
            tls.min_version as u8,
            tls.min_version.name()
        )));
    }
    if !matches!(tls.key_format, KEY_FORMAT_PEM | KEY_FORMAT_DER) {
        return Err(invalid(format!(
            "ssl_keyformat={} is not supported: use 1 (PEM, the default) or 2 (DER)",
            tls.key_format
        )));
    }
    if tls.verify_mode != VerifyMode::None && tls.ca_cert.is_none() {
        // OpenSSL would ask for a certificate it has no CA to check against and turn every
        // client that sends one away.
        return Err(invalid(format!(
            "ssl_verify_mode={} needs ssl_ca_cert=FILE, the CA client certificates must chain to",
            tls.verify_mode as u8
        )));
    }
    Ok(())
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

    pub(super) fn one(
        &mut self,
        item: &str,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), String> {
        let need = |missing: &str| value.ok_or_else(|| missing.to_string());
        let need_arg = || value.ok_or_else(|| format!("Missing {name} argument"));
        let need_u32 = || -> Result<(), String> {
            let v = value.ok_or_else(|| format!("Missing {name} argument"))?;
            if strtoul_ok(v) {
                Ok(())
            } else {
                Err(format!("could not parse argument to {name}"))
            }
        };
        let need_f64 = || -> Result<(), String> {
            let v = value.ok_or_else(|| format!("Missing {name} argument"))?;
            if strtod_ok(v) {
                Ok(())
            } else {
                Err(format!("could not parse argument to {name}"))
            }
        };
        match name {
            // Plain switches: a value, if any, is ignored like getsubopt's caller does.
            "maxconns_fast"
            | "no_hashexpand"
            | "slab_reassign"
            | "track_sizes"
            | "no_inline_ascii_resp"
            | "inline_ascii_resp"
            | "modern"
            | "no_chunked_items"
            | "no_slab_reassign"
            | "no_slab_automove"
            | "no_maxconns_fast"
            | "no_drop_privileges"
            | "drop_privileges"
            | "resp_obj_mem_limit"
            | "ext_drop_unread"
            | "sock_cookie_id" => {}
            "ssl_session_cache" => self.tls.session_cache = true,
            "ssl_kernel_tls" => self.tls.kernel_tls = true,
            "lru_maintainer" => self.lru_maintainer = true,
            "no_lru_maintainer" => self.lru_maintainer = false,
            // memcached's no_modern: the 1.4 defaults, the crawler and the maintainer off.
            "no_modern" => {
                self.lru_maintainer = false;
                self.lru_crawler = false;
            }
            "lru_crawler" => self.lru_crawler = true,
            "no_lru_crawler" => self.lru_crawler = false,
            "hashpower" => {
                let n = atoi(need("Missing numeric argument for hashpower")?);
                if n < 12 {
                    return Err(format!("Initial hashtable multiplier of {n} is too low"));
                }
                if n > 32 {
                    return Err(format!(
                        "Initial hashtable multiplier of {n} is too high. Choose a value based on \
                         \"STAT hash_power_level\" from a running instance"
                    ));
                }
            }
            "slab_automove" => {
                if let Some(v) = value {
                    if !(0..=2).contains(&atoi(v)) {
                        return Err("slab_automove must be between 0 and 2".into());
                    }
                }
            }
            "slab_automove_ratio" => {
                let r = atof(need_arg()?);
                if r <= 0.0 || r > 1.0 {
                    return Err("slab_automove_ratio must be > 0 and < 1".into());
                }
            }
            "slab_automove_window" => {
                if atoi(need_arg()?) < 3 {
                    return Err("slab_automove_window must be > 2".into());
                }
            }
            "tail_repair_time" => {
                if atoi(need("Missing numeric argument for tail_repair_time")?) < 10 {
                    return Err("Cannot set tail_repair_time to less than 10 seconds".into());
                }
            }
            "hash_algorithm" => {
                if !matches!(need_arg()?, "jenkins" | "murmur3" | "xxh3") {
                    return Err("Unknown hash_algorithm option (jenkins, murmur3, xxh3)".into());
                }
            }
            "lru_crawler_sleep" => {
                let n = atoi(need("Missing lru_crawler_sleep value")?);
                if !(0..=1_000_000).contains(&n) {
                    return Err("LRU crawler sleep must be between 0 and 1 second".into());
                }
            }
            "lru_crawler_tocrawl" => {
                if !strtoul_ok(need("Missing lru_crawler_tocrawl value")?) {
                    return Err("lru_crawler_tocrawl takes a numeric 32bit value".into());
                }
            }
            "hot_lru_pct" | "warm_lru_pct" => {
                let n = atoi(need_arg()?);
                if !(1..80).contains(&n) {
                    return Err(format!("{name} must be > 1 and < 80"));
                }
                if name == "hot_lru_pct" {
                    self.hot_lru_pct = n;
                } else {
                    self.warm_lru_pct = n;
                }
            }
            "hot_max_factor" | "warm_max_factor" => {
                if atof(need_arg()?) <= 0.0 {
                    return Err(format!("{name} must be > 0"));
                }
            }
            "temporary_ttl" => {
                need_arg()?;
                self.temporary_ttl = true;
            }
            "idle_timeout" => {
                need("Missing numeric argument for idle_timeout")?;
            }
            "slab_sizes" => {
                need_arg()?;
            }
            // Not memcached's (it reads MEMCACHED_SASL_PWDB only): the password file of -S for
            // a config file that cannot set the environment.
            "sasl_pwdb" => self.sasl_pwdb = Some(PathBuf::from(need_arg()?)),
            "ssl_chain_cert" => self.tls.chain_cert = Some(PathBuf::from(need_arg()?)),
            "ssl_key" => self.tls.key = Some(PathBuf::from(need_arg()?)),
            "ssl_ca_cert" => self.tls.ca_cert = Some(PathBuf::from(need_arg()?)),
            "ssl_ciphers" => self.tls.ciphers = Some(need_arg()?.to_string()),
            "ssl_verify_mode" | "ssl_min_version" => {
                let v = need_arg()?;
                // Both take 0..=3 (verify: none/request/require/once; min: tls1.0..tls1.3).
                let n = match numbers::safe_strtol(v.as_bytes()) {
                    Some(n) if (0..=3).contains(&n) => n,
                    Some(_) => {
                        return Err(format!("Invalid {name}. Use help to see valid options."))
                    }
                    None => return Err(format!("could not parse argument to {name}")),
                };
                if name == "ssl_verify_mode" {
                    self.tls.verify_mode = [
                        VerifyMode::None,
                        VerifyMode::Request,
                        VerifyMode::Require,
                        VerifyMode::Once,
                    ][n as usize];
                } else {
                    self.tls.min_version = [
                        TlsVersion::Tls10,
                        TlsVersion::Tls11,
                        TlsVersion::Tls12,
                        TlsVersion::Tls13,
                    ][n as usize];
                }
            }
            "ssl_keyformat" => {
                // safe_strtol: a whole signed number.
                let v = need_arg()?;
                self.tls.key_format = numbers::safe_strtol(v.as_bytes())
                    .ok_or_else(|| format!("could not parse argument to {name}"))?;
            }
            "ssl_wbuf_size" => {
                let v = need_arg()?;
                let kb = numbers::safe_strtoul(v.as_bytes())
                    .ok_or_else(|| format!("could not parse argument to {name}"))?;
                // Kilobytes on the command line, bytes in `stats settings`, like memcached
                // (whose unsigned multiply wraps the same way).
                self.tls.wbuf_size = kb.wrapping_mul(1024);
            }
            "watcher_logbuf_size"
            | "worker_logbuf_size"
            | "read_buf_mem_limit"
            | "slab_chunk_max"
            | "ext_page_size"
            | "ext_wbuf_size"
            | "ext_threads"
            | "ext_io_depth"
            | "ext_item_size"
            | "ext_item_age"
            | "ext_low_ttl"
            | "ext_recache_rate"
            | "ext_compact_under"
            | "ext_drop_under"
            | "ext_max_sleep" => {
                need_u32()?;
            }
            "ext_max_frag" | "slab_automove_freeratio" => need_f64()?,
            "ext_path" => {
                need("missing argument to ext_path, ie: ext_path=/d/file:5G")?;
            }
            _ => return Err(format!("Illegal suboption \"{item}\"")),
        }
        Ok(())
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
