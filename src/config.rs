//! Command line and configuration file: memcached-compatible flags plus the replication flags.
//!
//! The flags follow memcached 1.6.18 so that an existing `/etc/memcached.conf` or init script
//! keeps working. Where memcached silently turns garbage into a number (`atoi`), we refuse the
//! value with a one-line message instead: a typo in a port or a memory size should not start a
//! server with a surprising setting. memcached options that only tune its slab allocator, hash
//! table or background threads (most of `-o`) have no equivalent here; they are validated like
//! memcached does and then ignored, and listed in [`Config::ignored_options`] so that the binary
//! can log them. The `ssl_*` sub-options and `-Z` do take effect ([`TlsSettings`]).

use crate::numbers;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};

/// The memcached release whose command line and protocol we follow.
pub const MEMCACHED_VERSION: &str = "1.6.18";

/// memcached refuses item sizes below this (ITEM_SIZE_MAX_LOWER_LIMIT).
const ITEM_SIZE_MIN: u64 = 1024;
/// ... and above this (ITEM_SIZE_MAX_UPPER_LIMIT).
const ITEM_SIZE_UPPER: u64 = 1024 * 1024 * 1024;
/// memcached warns above this many worker threads.
const THREADS_WARN: usize = 64;

const KB: u64 = 1024;
const MB: u64 = 1024 * 1024;
const GB: u64 = 1024 * 1024 * 1024;

/// Everything the server needs to start; built from the command line and `--config FILE`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// -p: TCP port (0 = pick a free one, used by tests).
    pub port: u16,
    /// -U: UDP port, 0 = off.
    pub udp_port: u16,
    /// -l: interfaces to listen on (already split on commas); `0.0.0.0` unless given.
    pub listen: Vec<String>,
    /// -m: memory limit in bytes.
    pub memory_limit: usize,
    /// -c: max simultaneous connections.
    pub max_connections: usize,
    /// -t: worker threads.
    pub threads: usize,
    /// -I: largest item value in bytes.
    pub item_size_max: usize,
    /// -M: answer "SERVER_ERROR out of memory" instead of evicting.
    pub no_evict: bool,
    /// -A: allow the `shutdown` command.
    pub enable_shutdown: bool,
    /// -F: disable flush_all.
    pub disable_flush: bool,
    /// -C: disable CAS (cas ids are 0).
    pub disable_cas: bool,
    /// -v count (0..=3).
    pub verbosity: u8,
    /// -d: run as a daemon.
    pub daemonize: bool,
    /// -u: user to drop privileges to.
    pub user: Option<String>,
    /// -P: pid file.
    pub pid_file: Option<PathBuf>,
    /// -b: listen backlog.
    pub backlog: u32,
    /// -R: max requests handled per event before yielding to other connections.
    pub reqs_per_event: usize,
    /// -x/--peer: replication peers as HOST[:PORT].
    pub peers: Vec<String>,
    /// -X/--repl-port: replication listener port (0 = no listener).
    pub repl_port: u16,
    /// --repl-listen: address the replication listener binds (defaults to the first -l address).
    pub repl_listen: Option<String>,
    /// --repl-secret-file.
    pub repl_secret_file: Option<PathBuf>,
    /// --repl-insecure: allow unauthenticated replication off loopback.
    pub repl_insecure: bool,
    /// --repl-tls-cert/--repl-tls-key/--repl-tls-ca: mutual TLS between peers (all three or none).
    pub repl_tls_cert: Option<PathBuf>,
    pub repl_tls_key: Option<PathBuf>,
    pub repl_tls_ca: Option<PathBuf>,
    /// --repl-max-clock-skew: a peer's version more than this far ahead of our clock is refused.
    pub repl_max_clock_skew: Duration,
    /// --repl-backlog-size in bytes.
    pub repl_backlog_size: usize,
    /// --repl-sync-wait: how long a starting node waits for its initial sync before serving.
    pub repl_sync_wait: Duration,
    /// --repl-tombstone-time: the longest a delete's tombstone is kept for a peer that has not
    /// acknowledged it (it goes as soon as every peer has).
    pub repl_tombstone_time: Duration,
    /// `-o idle_timeout=N`: close a client idle for more than N seconds (0 = never).
    pub idle_timeout: u32,
    /// `-o read_buf_mem_limit=N` in bytes (given in megabytes; 0 = no limit): memcached's
    /// per-thread budget of 16 KiB buffers, from which it also takes its reply objects.
    pub read_buf_mem_limit: u64,
    /// -k: lock all paged memory (mlockall), handled by the binary.
    pub lock_memory: bool,
    /// -r: raise the core file size limit, handled by the binary.
    pub enable_coredumps: bool,
    /// -Z and the `ssl_*` `-o` options: TLS on the client TCP listeners.
    pub tls: TlsSettings,
    /// `logfile FILE` directive of a config file (as in Debian's /etc/memcached.conf): the
    /// binary sends stdout and stderr there.
    pub log_file: Option<PathBuf>,
    /// memcached options that were accepted for compatibility but change nothing here, as
    /// given (e.g. `-o hashpower=16`, `-f 1.25`); the binary logs them.
    pub ignored_options: Vec<String>,
    /// Warnings found while parsing (memcached prints these and carries on).
    pub warnings: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 11211,
            udp_port: 0,
            listen: vec!["0.0.0.0".to_string()],
            memory_limit: 64 * 1024 * 1024,
            max_connections: 1024,
            threads: 4,
            item_size_max: 1024 * 1024,
            no_evict: false,
            enable_shutdown: false,
            disable_flush: false,
            disable_cas: false,
            verbosity: 0,
            daemonize: false,
            user: None,
            pid_file: None,
            backlog: 1024,
            reqs_per_event: 20,
            peers: Vec::new(),
            repl_port: 11212,
            repl_listen: None,
            repl_secret_file: None,
            repl_insecure: false,
            repl_tls_cert: None,
            repl_tls_key: None,
            repl_tls_ca: None,
            repl_max_clock_skew: Duration::from_secs(60),
            repl_backlog_size: 64 * 1024 * 1024,
            repl_sync_wait: Duration::from_secs(30),
            repl_tombstone_time: Duration::from_secs(24 * 3600),
            idle_timeout: 0,
            read_buf_mem_limit: 0,
            lock_memory: false,
            enable_coredumps: false,
            tls: TlsSettings::default(),
            log_file: None,
            ignored_options: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// Client TLS as memcached 1.6 configures it: `-Z` plus the `ssl_*` sub-options of `-o`.
/// Only the values are checked here; the files are read when the server starts (see
/// `server::tls`), so that a mistake in them is reported like memcached's `ssl_init`.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    /// -Z / --enable-ssl: every TCP listener speaks TLS (UDP stays plaintext, as in memcached).
    pub enabled: bool,
    /// ssl_chain_cert: the server certificate chain, PEM.
    pub chain_cert: Option<PathBuf>,
    /// ssl_key: the server private key.
    pub key: Option<PathBuf>,
    /// ssl_keyformat: OpenSSL's file type number (1 = PEM, 2 = DER).
    pub key_format: i32,
    /// ssl_ca_cert: PEM bundle of the CAs client certificates must chain to.
    pub ca_cert: Option<PathBuf>,
    /// ssl_verify_mode.
    pub verify_mode: VerifyMode,
    /// ssl_ciphers: OpenSSL-style list of TLS 1.2 cipher suites.
    pub ciphers: Option<String>,
    /// ssl_wbuf_size in bytes (accepted and shown in `stats settings`; rustls sizes its own
    /// buffers).
    pub wbuf_size: u32,
    /// ssl_session_cache: let clients resume sessions.
    pub session_cache: bool,
    /// ssl_min_version.
    pub min_version: TlsVersion,
    /// ssl_kernel_tls: recorded so that -Z can refuse it (no kernel TLS offload here).
    pub kernel_tls: bool,
}

/// OpenSSL's SSL_FILETYPE_PEM, memcached's default ssl_keyformat.
pub const KEY_FORMAT_PEM: i32 = 1;
/// OpenSSL's SSL_FILETYPE_ASN1 (DER).
pub const KEY_FORMAT_DER: i32 = 2;

impl Default for TlsSettings {
    fn default() -> Self {
        // memcached's defaults.
        TlsSettings {
            enabled: false,
            chain_cert: None,
            key: None,
            key_format: KEY_FORMAT_PEM,
            ca_cert: None,
            verify_mode: VerifyMode::None,
            ciphers: None,
            wbuf_size: 16 * 1024,
            session_cache: false,
            min_version: TlsVersion::Tls12,
            kernel_tls: false,
        }
    }
}

/// memcached's ssl_verify_mode values 0..=3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    /// 0: no client certificate is asked for.
    None,
    /// 1: a client certificate is asked for and checked if sent; clients without one are let in.
    Request,
    /// 2: a client certificate chaining to ssl_ca_cert is required.
    Require,
    /// 3: as 2; "once" only matters for renegotiation, which is never allowed.
    Once,
}

impl VerifyMode {
    /// The OpenSSL SSL_VERIFY_* flags memcached stores and `stats settings` prints.
    pub fn openssl_flags(self) -> u32 {
        match self {
            VerifyMode::None => 0,
            VerifyMode::Request => 1,
            VerifyMode::Require => 1 | 2,
            VerifyMode::Once => 1 | 2 | 4,
        }
    }
}

/// memcached's ssl_min_version values 0..=3. Only TLS 1.2 and 1.3 can be honoured (rustls
/// implements nothing older), so -Z refuses 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl TlsVersion {
    /// memcached's name for it (`ssl_proto_text`).
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls10 => "tlsv1.0",
            TlsVersion::Tls11 => "tlsv1.1",
            TlsVersion::Tls12 => "tlsv1.2",
            TlsVersion::Tls13 => "tlsv1.3",
        }
    }
}

/// Why no [`Config`] came out of the command line. `Help` and `Version` are not failures: the
/// binary prints their text on stdout and exits 0 (see [`ConfigError::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// -h/--help was given; the text is the help.
    #[error("{0}")]
    Help(String),
    /// -V/--version was given; the text is the version line.
    #[error("{0}")]
    Version(String),
    /// A bad flag or value; the text is one line meant for stderr.
    #[error("{0}")]
    Invalid(String),
    /// `--config FILE` could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A bad option in the config file; `line` is known unless the mistake spans lines
    /// (e.g. -I larger than half of -m).
    #[error("{}: {message}", location(path, *line))]
    File {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
}

fn location(path: &Path, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{}:{line}", path.display()),
        None => path.display().to_string(),
    }
}

impl ConfigError {
    /// The process exit code memcached users expect: 0 for help/version, 1 for errors.
    pub fn exit_code(&self) -> i32 {
        match self {
            ConfigError::Help(_) | ConfigError::Version(_) => 0,
            _ => 1,
        }
    }
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

const VERSION_TEXT: &str = concat!(env!("CARGO_PKG_VERSION"), " (memcached 1.6.18 compatible)");

/// The raw command line as clap sees it. Values stay strings so that [`Config::from_args`]
/// can check them with memcached's rules and messages; `Option` tells "not given" apart
/// from "given the default", which the config-file merge and the `-U`-implies-`-p` rule need.
#[derive(Parser, Debug, Default)]
#[command(
    name = "repcached",
    version = VERSION_TEXT,
    about = "memcached-compatible cache server with master-master replication",
    args_override_self = true,
    max_term_width = 100
)]
struct Cli {
    /// TCP port to listen on (default: 11211; 0 = any free port)
    #[arg(short = 'p', long = "port", value_name = "NUM")]
    port: Option<String>,
    /// UDP port to listen on (default: 0, off)
    #[arg(short = 'U', long = "udp-port", value_name = "NUM")]
    udp_port: Option<String>,
    /// Interface to listen on, comma-separated, repeatable (default: 0.0.0.0)
    #[arg(short = 'l', long = "listen", value_name = "ADDR", action = ArgAction::Append)]
    listen: Vec<String>,
    /// Item memory in megabytes, or with a k/m/g suffix (default: 64)
    #[arg(short = 'm', long = "memory-limit", value_name = "NUM")]
    memory_limit: Option<String>,
    /// Max simultaneous connections (default: 1024)
    #[arg(short = 'c', long = "conn-limit", value_name = "NUM")]
    conn_limit: Option<String>,
    /// Number of worker threads (default: 4)
    #[arg(short = 't', long = "threads", value_name = "NUM")]
    threads: Option<String>,
    /// Max item size, k/m/g suffixes (default: 1m, min: 1k, max: 1024m)
    #[arg(short = 'I', long = "max-item-size", value_name = "SIZE")]
    max_item_size: Option<String>,
    /// Return an error on memory exhausted instead of evicting
    #[arg(short = 'M', long = "disable-evictions")]
    disable_evictions: bool,
    /// Enable the ascii "shutdown" command
    #[arg(short = 'A', long = "enable-shutdown")]
    enable_shutdown: bool,
    /// Disable the flush_all command
    #[arg(short = 'F', long = "disable-flush-all")]
    disable_flush_all: bool,
    /// Disable use of CAS
    #[arg(short = 'C', long = "disable-cas")]
    disable_cas: bool,
    /// Verbose: -v info, -vv debug, -vvv trace
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    verbose: u8,
    /// Run as a daemon
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
    /// Assume the identity of USER (only when run as root)
    #[arg(short = 'u', long = "user", value_name = "USER")]
    user: Option<String>,
    /// Save the PID in FILE (removed on exit)
    #[arg(short = 'P', long = "pidfile", value_name = "FILE")]
    pidfile: Option<PathBuf>,
    /// Listen backlog queue limit (default: 1024)
    #[arg(short = 'b', long = "listen-backlog", value_name = "NUM")]
    listen_backlog: Option<String>,
    /// Max requests per event per connection, to prevent starvation (default: 20)
    #[arg(short = 'R', long = "max-reqs-per-event", value_name = "NUM")]
    max_reqs_per_event: Option<String>,
    /// Protocol: auto or ascii (text and meta commands); binary is not supported
    #[arg(short = 'B', long = "protocol", value_name = "NAME")]
    protocol: Option<String>,
    /// Comma-separated memcached extended options: ssl_* configure TLS, the rest are ignored
    #[arg(short = 'o', long = "extended", value_name = "OPTS", action = ArgAction::Append)]
    extended: Vec<String>,
    /// Lock down all paged memory
    #[arg(short = 'k', long = "lock-memory")]
    lock_memory: bool,
    /// Maximize the core file limit
    #[arg(short = 'r', long = "enable-coredumps")]
    enable_coredumps: bool,
    /// Enable TLS on the TCP client listeners (needs -o ssl_chain_cert=FILE,ssl_key=FILE)
    #[arg(short = 'Z', long = "enable-ssl")]
    enable_ssl: bool,

    /// Replication peer HOST[:PORT] (port default 11212), repeatable
    #[arg(short = 'x', long = "peer", value_name = "HOST[:PORT]", action = ArgAction::Append,
          help_heading = "Replication")]
    peer: Vec<String>,
    /// Replication port (default: 11212; 0 = do not listen for peers)
    #[arg(
        short = 'X',
        long = "repl-port",
        value_name = "NUM",
        help_heading = "Replication"
    )]
    repl_port: Option<String>,
    /// Address the replication listener binds (default: the first -l address)
    #[arg(
        long = "repl-listen",
        value_name = "ADDR",
        help_heading = "Replication"
    )]
    repl_listen: Option<String>,
    /// File holding the shared secret peers authenticate with
    #[arg(
        long = "repl-secret-file",
        value_name = "FILE",
        help_heading = "Replication"
    )]
    repl_secret_file: Option<PathBuf>,
    /// Allow unauthenticated replication off loopback
    #[arg(long = "repl-insecure", help_heading = "Replication")]
    repl_insecure: bool,
    /// Certificate chain (PEM) this node presents to peers: mutual TLS instead of a secret
    #[arg(
        long = "repl-tls-cert",
        value_name = "FILE",
        help_heading = "Replication"
    )]
    repl_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --repl-tls-cert
    #[arg(
        long = "repl-tls-key",
        value_name = "FILE",
        help_heading = "Replication"
    )]
    repl_tls_key: Option<PathBuf>,
    /// CA certificate(s) (PEM) every peer's certificate must chain to
    #[arg(
        long = "repl-tls-ca",
        value_name = "FILE",
        help_heading = "Replication"
    )]
    repl_tls_ca: Option<PathBuf>,
    /// Seconds a peer's write may be stamped ahead of this node's clock (default: 60)
    #[arg(
        long = "repl-max-clock-skew",
        value_name = "SECONDS",
        help_heading = "Replication"
    )]
    repl_max_clock_skew: Option<String>,
    /// Replication backlog size, k/m/g suffixes (default: 64m)
    #[arg(
        long = "repl-backlog-size",
        value_name = "SIZE",
        help_heading = "Replication"
    )]
    repl_backlog_size: Option<String>,
    /// Seconds a starting node waits for its initial sync before serving (default: 30)
    #[arg(
        long = "repl-sync-wait",
        value_name = "SECONDS",
        help_heading = "Replication"
    )]
    repl_sync_wait: Option<String>,
    /// Longest a delete's tombstone waits for a peer to acknowledge it, seconds (default: 86400)
    #[arg(
        long = "repl-tombstone-time",
        value_name = "SECONDS",
        help_heading = "Replication"
    )]
    repl_tombstone_time: Option<String>,

    /// Read options from FILE first (memcached.conf format: one option per line)
    #[arg(long = "config", value_name = "FILE")]
    config: Option<PathBuf>,

    // memcached options accepted for compatibility and ignored.
    /// Ignored (memcached slab growth factor)
    #[arg(
        short = 'f',
        long = "slab-growth-factor",
        value_name = "NUM",
        help_heading = "Accepted for memcached compatibility, no effect"
    )]
    slab_growth_factor: Option<String>,
    /// Ignored (memcached slab minimum size)
    #[arg(
        short = 'n',
        long = "slab-min-size",
        value_name = "BYTES",
        help_heading = "Accepted for memcached compatibility, no effect"
    )]
    slab_min_size: Option<String>,
    /// Ignored (memcached large memory pages)
    #[arg(
        short = 'L',
        long = "enable-largepages",
        help_heading = "Accepted for memcached compatibility, no effect"
    )]
    enable_largepages: bool,
    /// Ignored (memcached per-prefix stats delimiter)
    #[arg(
        short = 'D',
        value_name = "CHAR",
        help_heading = "Accepted for memcached compatibility, no effect"
    )]
    delimiter: Option<String>,
    /// Ignored (memcached watch commands are not implemented)
    #[arg(
        short = 'W',
        long = "disable-watch",
        help_heading = "Accepted for memcached compatibility, no effect"
    )]
    disable_watch: bool,
    /// Ignored (memcached cachedump/metadump are not implemented; no short -X here)
    #[arg(
        long = "disable-dumping",
        help_heading = "Accepted for memcached compatibility, no effect"
    )]
    disable_dumping: bool,
    /// Ignored (memcached NAPI ids)
    #[arg(
        short = 'N',
        long = "napi-ids",
        value_name = "NUM",
        help_heading = "Accepted for memcached compatibility, no effect"
    )]
    napi_ids: Option<String>,
    /// Ignored (memcached unix socket mask; -s is not supported)
    #[arg(
        short = 'a',
        long = "unix-mask",
        value_name = "MASK",
        help_heading = "Accepted for memcached compatibility, no effect"
    )]
    unix_mask: Option<String>,

    // memcached options refused: ignoring them would silently weaken security or change
    // where the server listens.
    #[arg(short = 's', long = "unix-socket", hide = true)]
    unix_socket: Option<String>,
    #[arg(short = 'S', long = "enable-sasl", hide = true)]
    enable_sasl: bool,
    #[arg(short = 'Y', long = "auth-file", hide = true)]
    auth_file: Option<String>,
    #[arg(short = 'e', long = "memory-file", hide = true)]
    memory_file: Option<String>,
}

impl Config {
    /// Parses a command line (`args[0]` is the program name), reading `--config FILE` first
    /// when given: file options come first and command-line options override or append to them.
    pub fn from_args<I>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = OsString>,
    {
        let args: Vec<OsString> = args.into_iter().collect();
        let program = args
            .first()
            .cloned()
            .unwrap_or_else(|| OsString::from("repcached"));
        let cli = parse_cli(args.iter().cloned())?;
        let Some(path) = cli.config.clone() else {
            return cli.into_config(Checks::All);
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::ReadFile {
            path: path.clone(),
            source,
        })?;
        let file = parse_config_file(&path, &text)?;

        // Each line on its own must be well-formed and hold good values, so that such
        // mistakes name their line.
        let in_file = |line: Option<usize>, message: String| ConfigError::File {
            path: path.clone(),
            line,
            message,
        };
        for (line, words) in &file.lines {
            let mut line_args = vec![program.clone()];
            line_args.extend(words.iter().map(OsString::from));
            let cli = match parse_cli(line_args) {
                Err(ConfigError::Invalid(message)) => return Err(in_file(Some(*line), message)),
                Err(ConfigError::Help(_) | ConfigError::Version(_)) => {
                    let message = "-h and -V cannot be used in a config file".to_string();
                    return Err(in_file(Some(*line), message));
                }
                Err(other) => return Err(other),
                Ok(cli) => cli,
            };
            if cli.config.is_some() {
                let message = "--config cannot be used inside a config file".to_string();
                return Err(in_file(Some(*line), message));
            }
            if let Err(ConfigError::Invalid(message)) = cli.into_config(Checks::OneOption) {
                return Err(in_file(Some(*line), message));
            }
        }

        // File options first, then the command line: single-valued options override
        // (clap's args_override_self), repeatable ones (-l, -x, -o, -v) append. A file that is
        // only inconsistent (-I above half of -m) may be fixed by the command line.
        let mut file_args = vec![program];
        file_args.extend(
            file.lines
                .iter()
                .flat_map(|(_, words)| words.iter().map(OsString::from)),
        );
        let mut all_args = file_args.clone();
        all_args.extend(args.into_iter().skip(1));
        match parse_cli(all_args).and_then(|cli| cli.into_config(Checks::All)) {
            Ok(mut config) => {
                config.log_file = file.log_file;
                Ok(config)
            }
            Err(ConfigError::Invalid(message)) => {
                // Blame the file when it is wrong on its own.
                let file_alone = parse_cli(file_args).and_then(|cli| cli.into_config(Checks::All));
                match file_alone {
                    Err(ConfigError::Invalid(m)) if m == message => Err(in_file(None, message)),
                    _ => Err(ConfigError::Invalid(message)),
                }
            }
            Err(other) => Err(other),
        }
    }
}

fn parse_cli<I: IntoIterator<Item = OsString>>(args: I) -> Result<Cli, ConfigError> {
    let matches = Cli::command()
        .try_get_matches_from(args)
        .map_err(clap_error)?;
    Cli::from_arg_matches(&matches).map_err(clap_error)
}

/// Turns clap's multi-line errors into our one-line ones; help and version are passed on.
fn clap_error(err: clap::Error) -> ConfigError {
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
enum Checks {
    /// Everything: a complete command line.
    All,
    /// Only what one option can get wrong on its own (one config-file line).
    OneOption,
}

impl Cli {
    fn into_config(self, checks: Checks) -> Result<Config, ConfigError> {
        let d = Config::default();
        let mut ignored = Vec::new();
        let mut warnings = Vec::new();

        self.refuse_unsupported()?;

        let port = match &self.port {
            Some(v) => parse_port(v, "-p")?,
            None => d.port,
        };
        let udp_port = match &self.udp_port {
            Some(v) => parse_port(v, "-U")?,
            None => d.udp_port,
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
        let listen = if listen.is_empty() { d.listen } else { listen };

        let memory_limit = match &self.memory_limit {
            Some(v) => parse_size(v, MB).ok_or_else(|| {
                invalid(format!(
                    "invalid memory limit '{v}' for -m: expected megabytes or a size like 512m, 2g"
                ))
            })?,
            None => d.memory_limit as u64,
        };
        let max_connections = match &self.conn_limit {
            Some(v) => positive(v, "-c", "Maximum connections must be greater than 0")?,
            None => d.max_connections,
        };
        let threads = match &self.threads {
            Some(v) => positive(v, "-t", "Number of threads must be greater than 0")?,
            None => d.threads,
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
            None => d.reqs_per_event,
        };
        let backlog = match &self.listen_backlog {
            Some(v) => v.trim().parse::<u32>().map_err(|_| {
                invalid(format!(
                    "invalid listen backlog '{v}' for -b: expected a number"
                ))
            })?,
            None => d.backlog,
        };
        let item_size_max = match &self.max_item_size {
            Some(v) => parse_size(v, 1).ok_or_else(|| {
                invalid(format!(
                    "invalid item size '{v}' for -I: expected bytes or a size like 512k, 2m"
                ))
            })?,
            None => d.item_size_max as u64,
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

        if let Some(p) = &self.protocol {
            match p.as_str() {
                "auto" | "ascii" => {}
                "binary" => {
                    return Err(invalid(
                        "the binary protocol is not supported (-B binary): repcached speaks the \
                         text and meta protocols, use -B ascii or -B auto",
                    ))
                }
                other => {
                    return Err(invalid(format!(
                        "Invalid value for binding protocol: {other} -- should be one of auto, binary, or ascii"
                    )))
                }
            }
        }

        let mut subopts = SubOptions::default();
        for list in &self.extended {
            let no_effect = subopts.parse(list)?;
            let items = list.strip_suffix(',').unwrap_or(list).split(',').count();
            if no_effect.len() == items {
                ignored.push(format!("-o {list}"));
            } else if !no_effect.is_empty() {
                ignored.push(format!("-o {}", no_effect.join(",")));
            }
        }
        if checks == Checks::All {
            subopts.check()?;
        }
        let mut tls = subopts.tls;
        tls.enabled = self.enable_ssl;
        if checks == Checks::All && tls.enabled {
            check_tls(&tls)?;
        }

        self.check_ignored(&mut ignored)?;

        let peers = split_list(&self.peer);
        for peer in &peers {
            check_host_port(peer)
                .map_err(|why| invalid(format!("invalid peer '{peer}' for -x: {why}")))?;
        }
        let repl_port = match &self.repl_port {
            Some(v) => parse_port(v, "-X")?,
            None => d.repl_port,
        };
        if let Some(addr) = &self.repl_listen {
            check_listen(addr)?;
        }
        let repl_backlog_size = match &self.repl_backlog_size {
            Some(v) => match parse_size(v, 1) {
                Some(n) if n > 0 => n,
                _ => {
                    return Err(invalid(format!(
                        "invalid size '{v}' for --repl-backlog-size: expected a size like 64m"
                    )))
                }
            },
            None => d.repl_backlog_size as u64,
        };
        let repl_sync_wait = match &self.repl_sync_wait {
            Some(v) => Duration::from_secs(v.trim().parse::<u64>().map_err(|_| {
                invalid(format!(
                    "invalid value '{v}' for --repl-sync-wait: expected whole seconds"
                ))
            })?),
            None => d.repl_sync_wait,
        };
        let repl_tombstone_time = match &self.repl_tombstone_time {
            Some(v) => match v.trim().parse::<u32>() {
                Ok(s) if s > 0 => Duration::from_secs(s as u64),
                _ => {
                    return Err(invalid(format!(
                        "invalid value '{v}' for --repl-tombstone-time: expected whole seconds > 0"
                    )))
                }
            },
            None => d.repl_tombstone_time,
        };
        let repl_max_clock_skew = match &self.repl_max_clock_skew {
            Some(v) => match v.trim().parse::<u64>() {
                Ok(s) if s > 0 => Duration::from_secs(s),
                _ => {
                    return Err(invalid(format!(
                        "invalid value '{v}' for --repl-max-clock-skew: expected whole seconds > 0"
                    )))
                }
            },
            None => d.repl_max_clock_skew,
        };
        let tls_files = [&self.repl_tls_cert, &self.repl_tls_key, &self.repl_tls_ca];
        let tls_given = tls_files.iter().filter(|f| f.is_some()).count();
        if tls_given != 0 && tls_given != 3 {
            return Err(invalid(
                "--repl-tls-cert, --repl-tls-key and --repl-tls-ca go together: give all three"
                    .to_string(),
            ));
        }
        if tls_given == 3 && self.repl_secret_file.is_some() {
            return Err(invalid(
                "choose one way to secure replication: --repl-secret-file or --repl-tls-*"
                    .to_string(),
            ));
        }

        Ok(Config {
            port,
            udp_port,
            listen,
            memory_limit: to_usize(memory_limit, "-m")?,
            max_connections,
            threads,
            item_size_max: to_usize(item_size_max, "-I")?,
            no_evict: self.disable_evictions,
            enable_shutdown: self.enable_shutdown,
            disable_flush: self.disable_flush_all,
            disable_cas: self.disable_cas,
            verbosity: self.verbose.min(3),
            daemonize: self.daemon,
            user: self.user.filter(|u| !u.is_empty()),
            pid_file: self.pidfile,
            backlog,
            reqs_per_event,
            peers,
            repl_port,
            repl_listen: self.repl_listen,
            repl_secret_file: self.repl_secret_file,
            repl_insecure: self.repl_insecure,
            repl_tls_cert: self.repl_tls_cert,
            repl_tls_key: self.repl_tls_key,
            repl_tls_ca: self.repl_tls_ca,
            repl_max_clock_skew,
            repl_backlog_size: to_usize(repl_backlog_size, "--repl-backlog-size")?,
            repl_sync_wait,
            repl_tombstone_time,
            idle_timeout: subopts.idle_timeout,
            read_buf_mem_limit: subopts.read_buf_mem_limit,
            lock_memory: self.lock_memory,
            enable_coredumps: self.enable_coredumps,
            tls,
            log_file: None,
            ignored_options: ignored,
            warnings,
        })
    }

    fn refuse_unsupported(&self) -> Result<(), ConfigError> {
        let refused = [
            (self.unix_socket.is_some(), "-s (unix socket)"),
            (self.enable_sasl, "-S (SASL authentication)"),
            (self.auth_file.is_some(), "-Y (ascii authentication)"),
            (self.memory_file.is_some(), "-e (restartable memory file)"),
        ];
        match refused.iter().find(|(given, _)| *given) {
            Some((_, what)) => Err(invalid(format!("{what} is not supported by repcached"))),
            None => Ok(()),
        }
    }

    /// Validates the memcached-only flags the way memcached does, then records them as ignored.
    fn check_ignored(&self, ignored: &mut Vec<String>) -> Result<(), ConfigError> {
        if let Some(v) = &self.slab_growth_factor {
            if atof(v) <= 1.0 {
                return Err(invalid("Factor must be greater than 1"));
            }
            ignored.push(format!("-f {v}"));
        }
        if let Some(v) = &self.slab_min_size {
            if atoi(v) == 0 {
                return Err(invalid("Chunk size must be greater than 0"));
            }
            ignored.push(format!("-n {v}"));
        }
        if let Some(v) = &self.delimiter {
            if v.is_empty() {
                return Err(invalid("No delimiter specified"));
            }
            ignored.push(format!("-D {v}"));
        }
        if let Some(v) = &self.napi_ids {
            if atoi(v) <= 0 {
                return Err(invalid("Maximum number of NAPI IDs must be greater than 0"));
            }
            ignored.push(format!("-N {v}"));
        }
        if let Some(v) = &self.unix_mask {
            ignored.push(format!("-a {v}"));
        }
        for (given, flag) in [
            (self.enable_largepages, "-L"),
            (self.disable_watch, "-W"),
            (self.disable_dumping, "--disable-dumping"),
        ] {
            if given {
                ignored.push(flag.to_string());
            }
        }
        Ok(())
    }
}

/// What a config file holds besides options: Debian's `logfile FILE` directive.
#[derive(Debug, Default, PartialEq)]
struct ConfigFile {
    /// Option words of each line, with the 1-based line number.
    lines: Vec<(usize, Vec<String>)>,
    log_file: Option<PathBuf>,
}

/// Reads the /etc/memcached.conf format: one or more options per line, `#` starts a comment
/// (`\#` is a literal `#`), blank lines are skipped. Words are split on whitespace like the
/// shell line Debian's start-memcached builds from the same file. A line not starting with
/// `-` is a directive; only `logfile FILE` exists.
fn parse_config_file(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
    let mut out = ConfigFile::default();
    for (index, raw) in text.lines().enumerate() {
        let line = strip_comment(raw);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('-') {
            let mut parts = line.splitn(2, char::is_whitespace);
            let directive = parts.next().unwrap_or_default();
            let value = parts.next().map(str::trim).unwrap_or_default();
            match directive {
                "logfile" if !value.is_empty() => out.log_file = Some(PathBuf::from(value)),
                _ => {
                    return Err(ConfigError::File {
                        path: path.to_path_buf(),
                        line: Some(index + 1),
                        message: format!("unknown directive '{line}' (options start with '-')"),
                    })
                }
            }
            continue;
        }
        out.lines.push((
            index + 1,
            line.split_whitespace().map(str::to_string).collect(),
        ));
    }
    Ok(out)
}

fn strip_comment(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'#') => {
                out.push('#');
                chars.next();
            }
            '#' => break,
            _ => out.push(c),
        }
    }
    out
}

/// Splits repeatable, comma-separated values and drops empty and duplicate entries.
fn split_list(values: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in values.iter().flat_map(|v| v.split(',')) {
        let item = item.trim();
        if !item.is_empty() && !out.iter().any(|seen| seen == item) {
            out.push(item.to_string());
        }
    }
    out
}

fn parse_port(value: &str, flag: &str) -> Result<u16, ConfigError> {
    match value.trim().parse::<i64>() {
        Ok(n) if (0..=65535).contains(&n) => Ok(n as u16),
        // memcached's own words for an out-of-range number.
        Ok(n) => Err(invalid(format!("ERROR: Invalid port number {n}."))),
        Err(_) => Err(invalid(format!(
            "invalid port '{value}' for {flag}: expected a number 0-65535"
        ))),
    }
}

/// A count that must be > 0: memcached's message for 0 or less, ours for non-numbers.
fn positive(value: &str, flag: &str, too_small: &str) -> Result<usize, ConfigError> {
    match value.trim().parse::<i64>() {
        Ok(n) if n > 0 => usize::try_from(n)
            .map_err(|_| invalid(format!("value '{value}' for {flag} is too large"))),
        Ok(_) => Err(invalid(too_small)),
        Err(_) => Err(invalid(format!(
            "invalid value '{value}' for {flag}: expected a number"
        ))),
    }
}

fn to_usize(value: u64, flag: &str) -> Result<usize, ConfigError> {
    usize::try_from(value)
        .map_err(|_| invalid(format!("value for {flag} is too large for this machine")))
}

/// `N`, `Nk`, `Nm` or `Ng` (either case); a bare number is in units of `unit` bytes.
fn parse_size(value: &str, unit: u64) -> Option<u64> {
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

/// An address for -l or --repl-listen: `HOST`, `HOST:PORT` or `[IPV6]:PORT`.
fn check_listen(addr: &str) -> Result<(), ConfigError> {
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

fn check_host_port(value: &str) -> Result<(), String> {
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

/// C `atoi` as memcached uses it for most `-o` values ([`numbers::atol`]): never fails, so
/// "hashpower=abc" is "too low", not "bad".
fn atoi(value: &str) -> i64 {
    numbers::atol(value.as_bytes())
}

/// C `atof`, close enough for memcached's range checks: the longest parseable prefix.
fn atof(value: &str) -> f64 {
    let s = value.trim_start();
    (1..=s.len())
        .rev()
        .filter(|&end| s.is_char_boundary(end))
        .find_map(|end| s[..end].parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// memcached's `safe_strtoul` ([`numbers::safe_strtoul`]).
fn strtoul_ok(value: &str) -> bool {
    numbers::safe_strtoul(value.as_bytes()).is_some()
}

fn strtod_ok(value: &str) -> bool {
    value.trim_end().parse::<f64>().is_ok()
}

/// What -Z cannot honour, refused before anything starts. memcached would accept these (its
/// OpenSSL can do them); starting anyway would quietly give a weaker or different server.
fn check_tls(tls: &TlsSettings) -> Result<(), ConfigError> {
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
struct SubOptions {
    hot_lru_pct: i64,
    warm_lru_pct: i64,
    temporary_ttl: bool,
    lru_maintainer: bool,
    /// The sub-options repcached implements (the rest are only validated).
    idle_timeout: u32,
    read_buf_mem_limit: u64,
    /// The ssl_* options.
    tls: TlsSettings,
}

impl Default for SubOptions {
    fn default() -> Self {
        // memcached's defaults.
        SubOptions {
            hot_lru_pct: 20,
            warm_lru_pct: 40,
            temporary_ttl: false,
            lru_maintainer: true,
            idle_timeout: 0,
            read_buf_mem_limit: 0,
            tls: TlsSettings::default(),
        }
    }
}

impl SubOptions {
    /// Checks one `-o` list the way memcached 1.6.18 (Debian build: TLS, extstore and
    /// sock_cookie_id compiled in) does, with its messages. Keeps the values of the options
    /// repcached implements (idle_timeout, read_buf_mem_limit, ssl_* in `self.tls`) and returns
    /// the other items, which have no effect here.
    fn parse<'a>(&mut self, list: &'a str) -> Result<Vec<&'a str>, ConfigError> {
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
                _ => no_effect.push(item),
            }
        }
        Ok(no_effect)
    }

    fn one(&mut self, item: &str, name: &str, value: Option<&str>) -> Result<(), String> {
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
            | "lru_crawler"
            | "track_sizes"
            | "no_inline_ascii_resp"
            | "inline_ascii_resp"
            | "modern"
            | "no_chunked_items"
            | "no_slab_reassign"
            | "no_slab_automove"
            | "no_maxconns_fast"
            | "no_lru_crawler"
            | "no_drop_privileges"
            | "drop_privileges"
            | "resp_obj_mem_limit"
            | "ext_drop_unread"
            | "sock_cookie_id" => {}
            "ssl_session_cache" => self.tls.session_cache = true,
            "ssl_kernel_tls" => self.tls.kernel_tls = true,
            "lru_maintainer" => self.lru_maintainer = true,
            "no_lru_maintainer" | "no_modern" => self.lru_maintainer = false,
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
    fn check(&self) -> Result<(), ConfigError> {
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

#[cfg(test)]
mod tests;
