//! What the server may use: memory (`-m`, `-I`, with memcached's item-size rules),
//! connections (`-c`), worker threads (`-t`), requests per event (`-R`) and the listen
//! backlog (`-b`), and the size and count parsers they share with other flags.

use super::cli::{Checks, Cli};
use super::error::{invalid, ConfigError};
use super::types::*;

/// `-m`, `-c`, `-t`, `-R`, `-b` and `-I` checked, defaults filled in. Sizes stay `u64` until
/// the `Config` is assembled (where a size too large for this machine is refused).
pub(super) struct Resources {
    pub(super) memory_limit: u64,
    pub(super) max_connections: usize,
    pub(super) threads: usize,
    pub(super) reqs_per_event: usize,
    pub(super) backlog: u32,
    pub(super) item_size_max: u64,
}

impl Cli {
    /// The resource flags in memcached's order; the item size is checked against memory
    /// (`Checks::All` only: one config-file line may hold `-I` and another `-m`).
    pub(super) fn resources(
        &self,
        checks: Checks,
        defaults: &Config,
        warnings: &mut Vec<String>,
    ) -> Result<Resources, ConfigError> {
        let memory_limit = match &self.memory_limit {
            Some(v) => parse_size(v, MB).ok_or_else(|| {
                invalid(format!(
                    "invalid memory limit '{v}' for -m: expected megabytes or a size like 512m, 2g"
                ))
            })?,
            None => defaults.memory_limit as u64,
        };
        let max_connections = match &self.conn_limit {
            Some(v) => positive(v, "-c", "Maximum connections must be greater than 0")?,
            None => defaults.max_connections,
        };
        let threads = match &self.threads {
            Some(v) => positive(v, "-t", "Number of threads must be greater than 0")?,
            None => defaults.threads,
        };
        if threads > THREADS_WARN {
            warnings.push(
                "Setting a high number of worker threads is not recommended. \
                 Set this value to the number of cores in your machine or less."
                    .to_string(),
            );
        }
        let reqs_per_event = match &self.max_reqs_per_event {
            Some(v) => positive(
                v,
                "-R",
                "Number of requests per event must be greater than 0",
            )?,
            None => defaults.reqs_per_event,
        };
        let backlog = match &self.listen_backlog {
            Some(v) => v.trim().parse::<u32>().map_err(|_| {
                invalid(format!(
                    "invalid listen backlog '{v}' for -b: expected a number"
                ))
            })?,
            None => defaults.backlog,
        };
        let item_size_max = match &self.max_item_size {
            Some(v) => parse_size(v, 1).ok_or_else(|| {
                invalid(format!(
                    "invalid item size '{v}' for -I: expected bytes or a size like 512k, 2m"
                ))
            })?,
            None => defaults.item_size_max as u64,
        };
        // Same checks, order and words as memcached.
        if item_size_max < ITEM_SIZE_MIN {
            return Err(invalid("Item max size cannot be less than 1024 bytes."));
        }
        if checks == Checks::All && item_size_max > memory_limit / 2 {
            return Err(invalid(
                "Cannot set item size limit higher than 1/2 of memory max.",
            ));
        }
        if item_size_max > ITEM_SIZE_UPPER {
            return Err(invalid(
                "Cannot set item size limit higher than a gigabyte.",
            ));
        }
        Ok(Resources {
            memory_limit,
            max_connections,
            threads,
            reqs_per_event,
            backlog,
            item_size_max,
        })
    }
}

/// A count that must be > 0: memcached's message for 0 or less, ours for non-numbers.
pub(super) fn positive(value: &str, flag: &str, too_small: &str) -> Result<usize, ConfigError> {
    match value.trim().parse::<i64>() {
        Ok(n) if n > 0 => usize::try_from(n)
            .map_err(|_| invalid(format!("value '{value}' for {flag} is too large"))),
        Ok(_) => Err(invalid(too_small)),
        Err(_) => Err(invalid(format!(
            "invalid value '{value}' for {flag}: expected a number"
        ))),
    }
}

/// `N`, `Nk`, `Nm` or `Ng` (either case); a bare number is in units of `unit` bytes.
pub(super) fn parse_size(value: &str, unit: u64) -> Option<u64> {
    let value = value.trim();
    let (digits, multiplier) = match value.as_bytes().last()? {
        b'k' | b'K' => (&value[..value.len() - 1], KB),
        b'm' | b'M' => (&value[..value.len() - 1], MB),
        b'g' | b'G' => (&value[..value.len() - 1], GB),
        _ => (value, unit),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(multiplier)
}
