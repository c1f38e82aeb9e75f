//! memcached's tuning sub-options of `-o` (hash table, slab allocator, LRU, crawler,
//! extstore, buffers): validated with memcached's rules and messages, and, apart from the LRU
//! state their cross-checks and `stats settings` need, without effect here.

use super::values::{atof, atoi, strtoul_ok, Arg};

/// The LRU settings memcached's cross-checks need, and the crawler switch.
#[derive(Debug)]
pub(in crate::config) struct Tuning {
    hot_lru_pct: i64,
    warm_lru_pct: i64,
    temporary_ttl: bool,
    lru_maintainer: bool,
    /// `lru_crawler` / `no_lru_crawler` (`no_modern` too): what `stats settings` reports and
    /// whether `lru_crawler crawl|metadump` are allowed until `lru_crawler enable|disable`.
    pub(in crate::config) lru_crawler: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        // memcached's defaults.
        Tuning {
            hot_lru_pct: 20,
            warm_lru_pct: 40,
            temporary_ttl: false,
            lru_maintainer: true,
            lru_crawler: true,
        }
    }
}

impl Tuning {
    /// One hash table, slab allocator, extstore or buffer item. `Ok(false)`: none of them.
    pub(super) fn apply(&mut self, arg: &Arg) -> Result<bool, String> {
        let name = arg.name;
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
            "hashpower" => {
                let n = atoi(arg.need("Missing numeric argument for hashpower")?);
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
            "hash_algorithm" => {
                if !matches!(arg.need_arg()?, "jenkins" | "murmur3" | "xxh3") {
                    return Err("Unknown hash_algorithm option (jenkins, murmur3, xxh3)".into());
                }
            }
            "tail_repair_time" => {
                if atoi(arg.need("Missing numeric argument for tail_repair_time")?) < 10 {
                    return Err("Cannot set tail_repair_time to less than 10 seconds".into());
                }
            }
            "slab_sizes" => {
                arg.need_arg()?;
            }
            "ext_max_frag" | "slab_automove_freeratio" => arg.need_f64()?,
            "ext_path" => {
                arg.need("missing argument to ext_path, ie: ext_path=/d/file:5G")?;
            }
            // The 32-bit numbers: sizes, counts and times only checked to parse.
            "watcher_logbuf_size"
            | "worker_logbuf_size"
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
            | "ext_max_sleep" => arg.need_u32()?,
            "slab_automove" => {
                if let Some(v) = arg.value {
                    if !(0..=2).contains(&atoi(v)) {
                        return Err("slab_automove must be between 0 and 2".into());
                    }
                }
            }
            "slab_automove_ratio" => {
                let r = atof(arg.need_arg()?);
                if r <= 0.0 || r > 1.0 {
                    return Err("slab_automove_ratio must be > 0 and < 1".into());
                }
            }
            "slab_automove_window" => {
                if atoi(arg.need_arg()?) < 3 {
                    return Err("slab_automove_window must be > 2".into());
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The LRU and crawler items; the LRU percentages are kept for the cross-checks of
    /// [`Tuning::check`], the crawler switch for `stats settings`. `Ok(false)`: none of
    /// them.
    pub(super) fn lru(&mut self, arg: &Arg) -> Result<bool, String> {
        let name = arg.name;
        match name {
            "lru_maintainer" => self.lru_maintainer = true,
            "no_lru_maintainer" => self.lru_maintainer = false,
            // memcached's no_modern: the 1.4 defaults, the crawler and the maintainer off.
            "no_modern" => {
                self.lru_maintainer = false;
                self.lru_crawler = false;
            }
            "lru_crawler" => self.lru_crawler = true,
            "no_lru_crawler" => self.lru_crawler = false,
            "lru_crawler_sleep" => {
                let n = atoi(arg.need("Missing lru_crawler_sleep value")?);
                if !(0..=1_000_000).contains(&n) {
                    return Err("LRU crawler sleep must be between 0 and 1 second".into());
                }
            }
            "lru_crawler_tocrawl" => {
                if !strtoul_ok(arg.need("Missing lru_crawler_tocrawl value")?) {
                    return Err("lru_crawler_tocrawl takes a numeric 32bit value".into());
                }
            }
            "hot_lru_pct" | "warm_lru_pct" => {
                let n = atoi(arg.need_arg()?);
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
                if atof(arg.need_arg()?) <= 0.0 {
                    return Err(format!("{name} must be > 0"));
                }
            }
            "temporary_ttl" => {
                arg.need_arg()?;
                self.temporary_ttl = true;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// memcached's checks that span several LRU items.
    pub(super) fn check(&self) -> Result<(), &'static str> {
        if self.hot_lru_pct + self.warm_lru_pct > 80 {
            return Err("hot_lru_pct + warm_lru_pct cannot be more than 80% combined");
        }
        if self.temporary_ttl && !self.lru_maintainer {
            return Err("temporary_ttl requires lru_maintainer to be enabled");
        }
        Ok(())
    }
}
