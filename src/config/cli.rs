//! The command line's flag table as clap sees it ([`Cli`]: every memcached flag, the
//! replication and monitoring flags, the config-file flag), clap's errors turned into our
//! one-line messages, and how much of a [`Cli`] is checked ([`Checks`]). The values are
//! checked elsewhere: [`super::validate`] turns a [`Cli`] into a [`Config`](super::Config), with
//! one module per group of settings; [`super::merge`] merges `--config FILE` with the command
//! line.

use super::error::{invalid, ConfigError};
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};
use std::ffi::OsString;
use std::path::PathBuf;

pub(super) const VERSION_TEXT: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (memcached 1.6.18 compatible)");

/// The raw command line as clap sees it. Values stay strings so that
/// [`Config::from_args`](super::Config::from_args) can check them with memcached's rules and
/// messages; `Option` tells "not given" apart from "given the default", which the config-file
/// merge and the `-U`-implies-`-p` rule need.
#[derive(Parser, Debug, Default)]
#[command(
    name = "repcached",
    version = VERSION_TEXT,
    about = "memcached-compatible cache server with master-master replication",
    args_override_self = true,
    max_term_width = 100
)]
pub(super) struct Cli {
    /// TCP port to listen on (default: 11211; 0 = off, -1 = any free port)
    #[arg(
        short = 'p',
        long = "port",
        value_name = "NUM",
        allow_negative_numbers = true
    )]
    pub(super) port: Option<String>,
    /// UDP port to listen on (default: 0, off; -1 = any free port)
    #[arg(
        short = 'U',
        long = "udp-port",
        value_name = "NUM",
        allow_negative_numbers = true
    )]
    pub(super) udp_port: Option<String>,
    /// Interface to listen on, comma-separated, repeatable (default: 0.0.0.0)
    #[arg(short = 'l', long = "listen", value_name = "ADDR", action = ArgAction::Append)]
    pub(super) listen: Vec<String>,
    /// Item memory in megabytes, or with a k/m/g suffix (default: 64)
    #[arg(short = 'm', long = "memory-limit", value_name = "NUM")]
    pub(super) memory_limit: Option<String>,
    /// Max simultaneous connections (default: 1024)
    #[arg(short = 'c', long = "conn-limit", value_name = "NUM")]
    pub(super) conn_limit: Option<String>,
    /// Number of worker threads (default: 4)
    #[arg(short = 't', long = "threads", value_name = "NUM")]
    pub(super) threads: Option<String>,
    /// Max item size, k/m/g suffixes (default: 1m, min: 1k, max: 1024m)
    #[arg(short = 'I', long = "max-item-size", value_name = "SIZE")]
    pub(super) max_item_size: Option<String>,
    /// Return an error on memory exhausted instead of evicting
    #[arg(short = 'M', long = "disable-evictions")]
    pub(super) disable_evictions: bool,
    /// Enable the ascii "shutdown" command
    #[arg(short = 'A', long = "enable-shutdown")]
    pub(super) enable_shutdown: bool,
    /// Disable the flush_all command
    #[arg(short = 'F', long = "disable-flush-all")]
    pub(super) disable_flush_all: bool,
    /// Disable use of CAS
    #[arg(short = 'C', long = "disable-cas")]
    pub(super) disable_cas: bool,
    /// Verbose: -v info, -vv debug, -vvv trace
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub(super) verbose: u8,
    /// Run as a daemon
    #[arg(short = 'd', long = "daemon")]
    pub(super) daemon: bool,
    /// Assume the identity of USER (only when run as root)
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub(super) user: Option<String>,
    /// Save the PID in FILE (removed on exit)
    #[arg(short = 'P', long = "pidfile", value_name = "FILE")]
    pub(super) pidfile: Option<PathBuf>,
    /// Listen backlog queue limit (default: 1024)
    #[arg(short = 'b', long = "listen-backlog", value_name = "NUM")]
    pub(super) listen_backlog: Option<String>,
    /// Max requests per event per connection, to prevent starvation (default: 20)
    #[arg(short = 'R', long = "max-reqs-per-event", value_name = "NUM")]
    pub(super) max_reqs_per_event: Option<String>,
    /// Protocol: auto (per connection, by its first byte), ascii (text and meta) or binary
    #[arg(short = 'B', long = "protocol", value_name = "NAME")]
    pub(super) protocol: Option<String>,
    /// Comma-separated memcached extended options: ssl_* configure TLS, the rest are ignored
    #[arg(short = 'o', long = "extended", value_name = "OPTS", action = ArgAction::Append)]
    pub(super) extended: Vec<String>,
    /// Lock down all paged memory
    #[arg(short = 'k', long = "lock-memory")]
    pub(super) lock_memory: bool,
    /// Maximize the core file limit
    #[arg(short = 'r', long = "enable-coredumps")]
    pub(super) enable_coredumps: bool,
    /// Enable TLS on the TCP client listeners (needs -o ssl_chain_cert=FILE,ssl_key=FILE)
    #[arg(short = 'Z', long = "enable-ssl")]
    pub(super) enable_ssl: bool,

    /// Replication peer HOST[:PORT] (port default 11212), repeatable
    #[arg(short = 'x', long = "peer", value_name = "HOST[:PORT]", action = ArgAction::Append,
          help_heading = "Replication")]
    pub(super) peer: Vec<String>,
    /// Replication port (default: 11212; 0 = do not listen for peers)
    #[arg(
        short = 'X',
        long = "repl-port",
        value_name = "NUM",
        help_heading = "Replication"
    )]
    pub(super) repl_port: Option<String>,
    /// Address the replication listener binds (default: the first -l address)
    #[arg(
        long = "repl-listen",
        value_name = "ADDR",
        help_heading = "Replication"
    )]
    pub(super) repl_listen: Option<String>,
    /// File holding the shared secret peers authenticate with
    #[arg(
        long = "repl-secret-file",
        value_name = "FILE",
        help_heading = "Replication"
    )]
    pub(super) repl_secret_file: Option<PathBuf>,
    /// Allow unauthenticated replication off loopback
    #[arg(long = "repl-insecure", help_heading = "Replication")]
    pub(super) repl_insecure: bool,
    /// Certificate chain (PEM) this node presents to peers: mutual TLS instead of a secret
    #[arg(
        long = "repl-tls-cert",
        value_name = "FILE",
        help_heading = "Replication"
    )]
    pub(super) repl_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --repl-tls-cert
    #[arg(
        long = "repl-tls-key",
        value_name = "FILE",
        help_heading = "Replication"
    )]
    pub(super) repl_tls_key: Option<PathBuf>,
    /// CA certificate(s) (PEM) every peer's certificate must chain to
    #[arg(
        long = "repl-tls-ca",
        value_name = "FILE",
        help_heading = "Replication"
    )]
    pub(super) repl_tls_ca: Option<PathBuf>,
    /// Certificate name (DNS or IP subject alternative name) of a peer allowed to dial in
    /// without being named with -x, repeatable
    #[arg(long = "repl-tls-peer-name", value_name = "NAME", action = ArgAction::Append,
          help_heading = "Replication")]
    pub(super) repl_tls_peer_name: Vec<String>,
    /// Seconds a peer's clock may be off this node's, either way; beyond it the link goes to
    /// state clock_skew and no part of its stream is applied (default: 60)
    #[arg(
        long = "repl-max-clock-skew",
        value_name = "SECONDS",
        help_heading = "Replication"
    )]
    pub(super) repl_max_clock_skew: Option<String>,
    /// Serve Prometheus metrics (GET /metrics, plain HTTP) on ADDR:PORT (default: off)
    #[arg(
        long = "metrics-listen",
        value_name = "ADDR:PORT",
        help_heading = "Monitoring"
    )]
    pub(super) metrics_listen: Option<String>,
    /// Replication backlog size, k/m/g suffixes (default: 64m)
    #[arg(
        long = "repl-backlog-size",
        value_name = "SIZE",
        help_heading = "Replication"
    )]
    pub(super) repl_backlog_size: Option<String>,
    /// Seconds a starting node waits for its initial sync before serving (default: 30)
    #[arg(
        long = "repl-sync-wait",
        value_name = "SECONDS",
        help_heading = "Replication"
    )]
    pub(super) repl_sync_wait: Option<String>,
    /// Longest a delete's tombstone waits for a peer to acknowledge it, seconds (default: 86400)
    #[arg(
        long = "repl-tombstone-time",
        value_name = "SECONDS",
        help_heading = "Replication"
    )]
    pub(super) repl_tombstone_time: Option<String>,

    /// Read options from FILE first (memcached.conf format: one option per line)
    #[arg(long = "config", value_name = "FILE")]
    pub(super) config: Option<PathBuf>,

    // memcached options accepted for compatibility and ignored.
    /// Ignored (memcached slab growth factor)
    #[arg(
        short = 'f',
        long = "slab-growth-factor",
        value_name = "NUM",
        help_heading = "Accepted for memcached compatibility, no effect"
    )]
    pub(super) slab_growth_factor: Option<String>,
    /// Ignored (memcached slab minimum size)
    #[arg(
        short = 'n',
        long = "slab-min-size",
        value_name = "BYTES",
        help_heading = "Accepted for memcached compatibility, no effect"
    )]
    pub(super) slab_min_size: Option<String>,
    /// Ignored (memcached large memory pages)
    #[arg(
        short = 'L',
        long = "enable-largepages",
        help_heading = "Accepted for memcached compatibility, no effect"
    )]
    pub(super) enable_largepages: bool,
    /// Ignored (memcached per-prefix stats delimiter)
    #[arg(
        short = 'D',
        value_name = "CHAR",
        help_heading = "Accepted for memcached compatibility, no effect"
    )]
    pub(super) delimiter: Option<String>,
    /// Ignored (memcached watch commands are not implemented)
    #[arg(
        short = 'W',
        long = "disable-watch",
        help_heading = "Accepted for memcached compatibility, no effect"
    )]
    pub(super) disable_watch: bool,
    /// Ignored (memcached cachedump/metadump are not implemented; no short -X here)
    #[arg(
        long = "disable-dumping",
        help_heading = "Accepted for memcached compatibility, no effect"
    )]
    pub(super) disable_dumping: bool,
    /// Ignored (memcached NAPI ids)
    #[arg(
        short = 'N',
        long = "napi-ids",
        value_name = "NUM",
        help_heading = "Accepted for memcached compatibility, no effect"
    )]
    pub(super) napi_ids: Option<String>,
    /// Ignored (memcached unix socket mask; -s is not supported)
    #[arg(
        short = 'a',
        long = "unix-mask",
        value_name = "MASK",
        help_heading = "Accepted for memcached compatibility, no effect"
    )]
    pub(super) unix_mask: Option<String>,

    // memcached options refused: ignoring them would silently weaken security or change
    // where the server listens.
    #[arg(short = 's', long = "unix-socket", hide = true)]
    pub(super) unix_socket: Option<String>,
    #[arg(short = 'S', long = "enable-sasl")]
    /// Require SASL PLAIN authentication (binary protocol); users from --sasl-pwdb or the
    /// MEMCACHED_SASL_PWDB environment variable.
    pub(super) enable_sasl: bool,
    /// With -S: the password file, one `user:password` per line (memcached's MEMCACHED_SASL_PWDB
    /// format; the variable is used when this is not given).
    #[arg(long = "sasl-pwdb", value_name = "FILE")]
    pub(super) sasl_pwdb: Option<PathBuf>,
    /// Require memcached's ascii authentication on every connection (ascii protocol only):
    /// users from FILE, one `user:password` per line; read again on SIGHUP.
    #[arg(short = 'Y', long = "auth-file", value_name = "FILE")]
    pub(super) auth_file: Option<PathBuf>,
    #[arg(short = 'e', long = "memory-file", hide = true)]
    pub(super) memory_file: Option<String>,
}

pub(super) fn parse_cli<I: IntoIterator<Item = OsString>>(args: I) -> Result<Cli, ConfigError> {
    let matches = Cli::command()
        .try_get_matches_from(args)
        .map_err(clap_error)?;
    Cli::from_arg_matches(&matches).map_err(clap_error)
}

/// Turns clap's multi-line errors into our one-line ones; help and version are passed on.
pub(super) fn clap_error(err: clap::Error) -> ConfigError {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            ConfigError::Help(err.to_string())
        }
        ErrorKind::DisplayVersion => ConfigError::Version(err.to_string().trim_end().to_string()),
        _ => {
            let text = err.to_string();
            let first = text.lines().next().unwrap_or("invalid command line");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            invalid(format!("{first} (see --help)"))
        }
    }
}

/// Which checks [`Cli::into_config`] makes.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Checks {
    /// Everything: a complete command line.
    All,
    /// Only what one option can get wrong on its own (one config-file line).
    OneOption,
}
