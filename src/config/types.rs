//! The settings a parsed command line produces ([`Config`], [`TlsSettings`]) and memcached's
//! limits the parser checks them against.

use super::users::Users;
use std::path::PathBuf;
use std::time::Duration;

/// The memcached release whose command line and protocol we follow.
pub const MEMCACHED_VERSION: &str = "1.6.18";

/// memcached refuses item sizes below this (ITEM_SIZE_MAX_LOWER_LIMIT).
pub(crate) const ITEM_SIZE_MIN: u64 = 1024;
/// ... and above this (ITEM_SIZE_MAX_UPPER_LIMIT).
pub(crate) const ITEM_SIZE_UPPER: u64 = 1024 * 1024 * 1024;
/// memcached warns above this many worker threads.
pub(crate) const THREADS_WARN: usize = 64;

pub(crate) const KB: u64 = 1024;
pub(crate) const MB: u64 = 1024 * 1024;
pub(crate) const GB: u64 = 1024 * 1024 * 1024;

/// `-B`: the protocol of client connections, as memcached names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindingProtocol {
    /// Decided per connection by its first byte (0x80: binary).
    #[default]
    Auto,
    Ascii,
    Binary,
}

impl BindingProtocol {
    /// The name `stats settings` reports as `binding_protocol`.
    pub fn name(self) -> &'static str {
        match self {
            BindingProtocol::Auto => "auto-negotiate",
            BindingProtocol::Ascii => "ascii",
            BindingProtocol::Binary => "binary",
        }
    }
}

/// `-Y FILE`: memcached's ascii authentication. The file is named in `stats settings`
/// (`auth_enabled_ascii`) and read again on SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFile {
    pub path: PathBuf,
    pub users: Users,
}

/// Everything the server needs to start; built from the command line and `--config FILE`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// -p: TCP port as memcached takes it: 0 = no TCP listener, -1 = any free port.
    pub port: i32,
    /// -U: UDP port, 0 = off, -1 = any free port.
    pub udp_port: i32,
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
    /// -B: which protocol client connections speak.
    pub protocol: BindingProtocol,
    /// -S: SASL PLAIN required on every (binary) connection, with these users.
    pub sasl: Option<Users>,
    /// -Y: text connections must authenticate first (memcached's ascii authentication).
    pub auth_file: Option<AuthFile>,
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
    /// --repl-tls-peer-name: certificate names of peers allowed to dial in without -x.
    pub repl_tls_peer_names: Vec<String>,
    /// --repl-max-clock-skew: a peer's version more than this far ahead of our clock is refused.
    pub repl_max_clock_skew: Duration,
    /// --repl-backlog-size in bytes.
    pub repl_backlog_size: usize,
    /// --metrics-listen: where the Prometheus endpoint listens (`host:port`); None = off.
    pub metrics_listen: Option<String>,
    /// --repl-sync-wait: how long a starting node waits for its initial sync before serving.
    pub repl_sync_wait: Duration,
    /// --repl-tombstone-time: the longest a delete's tombstone is kept for a peer that has not
    /// acknowledged it (it goes as soon as every peer has).
    pub repl_tombstone_time: Duration,
    /// `-o idle_timeout=N`: close a client idle for more than N seconds (0 = never).
    pub idle_timeout: u32,
    /// `-o no_lru_crawler` / `no_modern` turn it off: memcached's LRU crawler setting at start
    /// (see server::tunables).
    pub lru_crawler: bool,
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
            protocol: BindingProtocol::Auto,
            sasl: None,
            auth_file: None,
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
            repl_tls_peer_names: Vec::new(),
            repl_max_clock_skew: Duration::from_secs(60),
            repl_backlog_size: 64 * 1024 * 1024,
            metrics_listen: None,
            repl_sync_wait: Duration::from_secs(30),
            repl_tombstone_time: Duration::from_secs(24 * 3600),
            idle_timeout: 0,
            lru_crawler: true,
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
