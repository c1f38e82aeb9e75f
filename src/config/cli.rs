//! The command line as clap sees it ([`Cli`]), its checks with memcached's messages, and the
//! merge of `--config FILE` with the command line into a [`Config`].

use super::error::{invalid, ConfigError};
use super::file::parse_config_file;
use super::suboptions::{atof, atoi, check_tls, SubOptions};
use super::types::*;
use super::users::{Users, AUTH_FILE_MEMCACHED_ENTRIES};
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub(super) const VERSION_TEXT: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (memcached 1.6.18 compatible)");

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
pub(super) struct Cli {
    /// TCP port to listen on (default: 11211; 0 = off, -1 = any free port)
    #[arg(
        short = 'p',
        long = "port",
        value_name = "NUM",
        allow_negative_numbers = true
    )]
    port: Option<String>,
    /// UDP port to listen on (default: 0, off; -1 = any free port)
    #[arg(
        short = 'U',
        long = "udp-port",
        value_name = "NUM",
        allow_negative_numbers = true
    )]
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
    /// Protocol: auto (per connection, by its first byte), ascii (text and meta) or binary
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
    /// Certificate name (DNS or IP subject alternative name) of a peer allowed to dial in
    /// without being named with -x, repeatable
    #[arg(long = "repl-tls-peer-name", value_name = "NAME", action = ArgAction::Append,
          help_heading = "Replication")]
    repl_tls_peer_name: Vec<String>,
    /// Seconds a peer's clock may be off this node's, either way; beyond it the link goes to
    /// state clock_skew and no part of its stream is applied (default: 60)
    #[arg(
        long = "repl-max-clock-skew",
        value_name = "SECONDS",
        help_heading = "Replication"
    )]
    repl_max_clock_skew: Option<String>,
    /// Serve Prometheus metrics (GET /metrics, plain HTTP) on ADDR:PORT (default: off)
    #[arg(
        long = "metrics-listen",
        value_name = "ADDR:PORT",
        help_heading = "Monitoring"
    )]
    metrics_listen: Option<String>,
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
    #[arg(short = 'S', long = "enable-sasl")]
    /// Require SASL PLAIN authentication (binary protocol); users from --sasl-pwdb or the
    /// MEMCACHED_SASL_PWDB environment variable.
    enable_sasl: bool,
    /// With -S: the password file, one `user:password` per line (memcached's MEMCACHED_SASL_PWDB
    /// format; the variable is used when this is not given).
    #[arg(long = "sasl-pwdb", value_name = "FILE")]
    sasl_pwdb: Option<PathBuf>,
    /// Require memcached's ascii authentication on every connection (ascii protocol only):
    /// users from FILE, one `user:password` per line; read again on SIGHUP.
    #[arg(short = 'Y', long = "auth-file", value_name = "FILE")]
    auth_file: Option<PathBuf>,
    #[arg(short = 'e', long = "memory-file", hide = true)]
    memory_file: Option<String>,
}

/// Parses a command line (`args[0]` is the program name), reading `--config FILE` first
/// when given: file options come first and command-line options override or append to them.
pub(super) fn config_from_args<I>(args: I) -> Result<Config, ConfigError>
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

impl Cli {
    pub(super) fn into_config(self, checks: Checks) -> Result<Config, ConfigError> {
        let d = Config::default();
        let mut ignored = Vec::new();
        let mut warnings = Vec::new();

        self.refuse_unsupported()?;

        let port = match &self.port {
            Some(v) => parse_listen_port(v, "-p")?,
            None => d.port,
        };
        let udp_port = match &self.udp_port {
            Some(v) => parse_listen_port(v, "-U")?,
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

        let mut protocol = match self.protocol.as_deref() {
            None | Some("auto") => BindingProtocol::Auto,
            Some("ascii") => BindingProtocol::Ascii,
            Some("binary") => BindingProtocol::Binary,
            Some(other) => {
                return Err(invalid(format!(
                    "Invalid value for binding protocol: {other} -- should be one of auto, binary, or ascii"
                )))
            }
        };

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
        let sasl = if self.enable_sasl {
            // memcached: SASL is a binary-protocol feature, and -S makes the port binary only.
            if protocol != BindingProtocol::Binary && self.protocol.is_some() {
                return Err(invalid(
                    "ERROR: You cannot allow the ASCII protocol while using SASL.",
                ));
            }
            protocol = BindingProtocol::Binary;
            // A datagram has no connection to log in on.
            if udp_port != 0 {
                return Err(invalid(
                    "ERROR: Cannot enable UDP while using binary SASL authentication.",
                ));
            }
            let flag = self.sasl_pwdb.as_deref().or(subopts.sasl_pwdb.as_deref());
            if checks == Checks::OneOption && flag.is_none() {
                // A config-file line "-S" alone: its file may be named on another line.
                Some(Users::default())
            } else {
                Some(load_sasl_pwdb(flag)?)
            }
        } else {
            let flag = self.sasl_pwdb.as_deref().or(subopts.sasl_pwdb.as_deref());
            match (flag, checks) {
                (None, _) => {}
                // A config-file line naming the file alone: -S may be on another line, but
                // the file is checked here, so that a mistake in it names this line.
                (Some(path), Checks::OneOption) => {
                    load_sasl_pwdb(Some(path))?;
                }
                (Some(_), Checks::All) => {
                    return Err(invalid("--sasl-pwdb (or -o sasl_pwdb) needs -S"))
                }
            }
            None
        };

        let auth_file = match &self.auth_file {
            None => None,
            Some(path) => {
                // memcached would let -Y silently turn the binary-only port of -S back into an
                // ascii one; the two cannot both be meant.
                if self.enable_sasl {
                    return Err(invalid(
                        "-S (SASL, binary protocol only) and -Y (ascii authentication, ascii \
                         protocol only) cannot be used together",
                    ));
                }
                // memcached's checks and words: -Y makes the port ascii only, and UDP, which
                // has no connection to authenticate, is refused.
                if self.protocol.is_some() && protocol != BindingProtocol::Ascii {
                    return Err(invalid(
                        "ERROR: You cannot allow the BINARY protocol while using ascii \
                         authentication tokens.",
                    ));
                }
                protocol = BindingProtocol::Ascii;
                if udp_port != 0 {
                    return Err(invalid(
                        "Cannot use UDP with ascii authentication enabled (-U 0 to disable)",
                    ));
                }
                let file = load_auth_file(path)?;
                if file.users.len() > AUTH_FILE_MEMCACHED_ENTRIES {
                    warnings.push(format!(
                        "auth file {} (-Y) has {} entries: all are used, where memcached would \
                         read only the first {AUTH_FILE_MEMCACHED_ENTRIES}",
                        path.display(),
                        file.users.len()
                    ));
                }
                Some(file)
            }
        };

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
        let metrics_listen = match &self.metrics_listen {
            Some(v) => Some(metrics_addr(v)?),
            None => None,
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
        let repl_tls_peer_names = split_list(&self.repl_tls_peer_name);
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
            protocol,
            sasl,
            auth_file,
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
            repl_tls_peer_names,
            repl_max_clock_skew,
            repl_backlog_size: to_usize(repl_backlog_size, "--repl-backlog-size")?,
            metrics_listen,
            repl_sync_wait,
            repl_tombstone_time,
            idle_timeout: subopts.idle_timeout,
            lru_crawler: subopts.lru_crawler,
            read_buf_mem_limit: subopts.read_buf_mem_limit,
            lock_memory: self.lock_memory,
            enable_coredumps: self.enable_coredumps,
            tls,
            log_file: None,
            ignored_options: ignored,
            warnings,
        })
    }

    pub(super) fn refuse_unsupported(&self) -> Result<(), ConfigError> {
        let refused = [
            (self.unix_socket.is_some(), "-s (unix socket)"),
            (self.memory_file.is_some(), "-e (restartable memory file)"),
        ];
        match refused.iter().find(|(given, _)| *given) {
            Some((_, what)) => Err(invalid(format!("{what} is not supported by repcached"))),
            None => Ok(()),
        }
    }

    /// Validates the memcached-only flags the way memcached does, then records them as ignored.
    pub(super) fn check_ignored(&self, ignored: &mut Vec<String>) -> Result<(), ConfigError> {
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

pub(super) fn to_usize(value: u64, flag: &str) -> Result<usize, ConfigError> {
    usize::try_from(value)
        .map_err(|_| invalid(format!("value for {flag} is too large for this machine")))
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
fn metrics_addr(v: &str) -> Result<String, ConfigError> {
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

/// Reads the SASL password file named by `--sasl-pwdb` or `MEMCACHED_SASL_PWDB`. Errors name the
/// file and the line, never its content.
fn load_sasl_pwdb(flag: Option<&std::path::Path>) -> Result<Users, ConfigError> {
    let path = match flag {
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os("MEMCACHED_SASL_PWDB") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => {
                return Err(invalid(
                    "-S needs a password file: --sasl-pwdb FILE, -o sasl_pwdb=FILE or \
                     MEMCACHED_SASL_PWDB=FILE \
                     (one user:password per line)",
                ))
            }
        },
    };
    let text = std::fs::read(&path).map_err(|e| {
        invalid(format!(
            "cannot read the SASL password file {}: {e}",
            path.display()
        ))
    })?;
    let users = Users::parse_sasl_pwdb(&text).map_err(|line| {
        invalid(format!(
            "SASL password file {} line {line}: expected user:password",
            path.display()
        ))
    })?;
    if users.is_empty() {
        return Err(invalid(format!(
            "SASL password file {} has no user",
            path.display()
        )));
    }
    Ok(users)
}

/// Reads the `-Y` auth file (memcached's authfile format, see [`Users::parse_auth_file`]).
/// Errors name the file and the line, never its content.
pub(super) fn load_auth_file(path: &std::path::Path) -> Result<AuthFile, ConfigError> {
    let text = std::fs::read(path).map_err(|e| {
        invalid(format!(
            "cannot read the auth file {} (-Y): {e}",
            path.display()
        ))
    })?;
    let users = Users::parse_auth_file(&text)
        .map_err(|e| invalid(format!("auth file {} (-Y) {e}", path.display())))?;
    Ok(AuthFile {
        path: path.to_path_buf(),
        users,
    })
}
