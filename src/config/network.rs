//! The client listeners' flags (`-p`, `-U`, `-l`) and the address and port rules every
//! listening or dialling flag shares (`-l`, `--repl-listen`, `-x`, `--metrics-listen`).

use super::cli::Cli;
use super::error::{invalid, ConfigError};
use super::types::Config;

/// Where clients connect: `-p`, `-U` and `-l` checked, defaults filled in.
pub(super) struct Listeners {
    pub(super) port: i32,
    pub(super) udp_port: i32,
    pub(super) listen: Vec<String>,
}

impl Cli {
    /// `-p`, `-U` (which also moves the TCP port when `-p` is not given, as in memcached) and
    /// `-l`, in that order.
    pub(super) fn listeners(&self, defaults: &Config) -> Result<Listeners, ConfigError> {
        let port = match &self.port {
            Some(v) => parse_listen_port(v, "-p")?,
            None => defaults.port,
        };
        let udp_port = match &self.udp_port {
            Some(v) => parse_listen_port(v, "-U")?,
            None => defaults.udp_port,
        };
        // memcached: "-U N" without "-p" also moves the TCP port to N.
        let port = if self.port.is_none() && udp_port != 0 {
            udp_port
        } else {
            port
        };

        let listen = split_list(&self.listen);
        for addr in &listen {
            check_listen(addr)?;
        }
        let listen = if listen.is_empty() {
            defaults.listen.clone()
        } else {
            listen
        };
        Ok(Listeners {
            port,
            udp_port,
            listen,
        })
    }
}

/// Splits repeatable, comma-separated values and drops empty and duplicate entries.
pub(super) fn split_list(values: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in values.iter().flat_map(|v| v.split(',')) {
        let item = item.trim();
        if !item.is_empty() && !out.iter().any(|seen| seen == item) {
            out.push(item.to_string());
        }
    }
    out
}

pub(super) fn parse_port(value: &str, flag: &str) -> Result<u16, ConfigError> {
    match value.trim().parse::<i64>() {
        Ok(n) if (0..=65535).contains(&n) => Ok(n as u16),
        // memcached's own words for an out-of-range number.
        Ok(n) => Err(invalid(format!("ERROR: Invalid port number {n}."))),
        Err(_) => Err(invalid(format!(
            "invalid port '{value}' for {flag}: expected a number 0-65535"
        ))),
    }
}

/// -p and -U as memcached takes them: 0 = off, -1 = any free port (memcached writes the port
/// it got to the file named by MEMCACHED_PORT_FILENAME).
pub(super) fn parse_listen_port(value: &str, flag: &str) -> Result<i32, ConfigError> {
    match value.trim().parse::<i64>() {
        Ok(-1) => Ok(-1),
        Ok(n) => parse_port(value, flag).map(i32::from).map_err(|e| {
            if n < 0 {
                invalid(format!("ERROR: Invalid port number {n}."))
            } else {
                e
            }
        }),
        Err(_) => Err(invalid(format!(
            "invalid port '{value}' for {flag}: expected a number -1-65535"
        ))),
    }
}

/// An address for -l or --repl-listen: `HOST`, `HOST:PORT` or `[IPV6]:PORT`.
pub(super) fn check_listen(addr: &str) -> Result<(), ConfigError> {
    if addr.starts_with("notls:") {
        // Honouring it would mean a plaintext listener the replication code also binds by
        // address; refused rather than read as host "notls".
        return Err(invalid(format!(
            "invalid listen address '{addr}': memcached's notls: prefix is not supported; \
             with -Z every TCP listener speaks TLS"
        )));
    }
    check_host_port(addr).map_err(|why| invalid(format!("invalid listen address '{addr}': {why}")))
}

pub(super) fn check_host_port(value: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("missing ']' after IPv6 address")?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or("expected ':PORT' after ']'")?,
                ),
            ),
        }
    } else if value.matches(':').count() == 1 {
        let (host, port) = value.split_once(':').unwrap_or((value, ""));
        (host, Some(port))
    } else {
        // No colon, or a bare IPv6 address.
        (value, None)
    };
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err("empty or malformed host".into());
    }
    if let Some(port) = port {
        port.parse::<u16>()
            .map_err(|_| format!("bad port '{port}'"))?;
    }
    Ok(())
}

/// `--metrics-listen HOST:PORT` (an IPv6 address in brackets): the host is resolved when the
/// server binds; here only the shape and the port are checked.
pub(super) fn metrics_addr(v: &str) -> Result<String, ConfigError> {
    let bad = || {
        ConfigError::Invalid(format!(
            "invalid address '{v}' for --metrics-listen: expected ADDR:PORT, like 127.0.0.1:9150"
        ))
    };
    let (host, port) = v.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(v.to_string())
}
