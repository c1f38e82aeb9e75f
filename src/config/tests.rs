//! Unit tests of the command line and config file parsing.

use super::file::strip_comment;
use super::network::split_list;
use super::resources::parse_size;
use super::suboptions::{atof, atoi};
use super::*;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

fn parse(args: &[&str]) -> Result<Config, ConfigError> {
    let mut v = vec![OsString::from("repcached")];
    v.extend(args.iter().map(OsString::from));
    Config::from_args(v)
}

fn ok(args: &[&str]) -> Config {
    parse(args).unwrap_or_else(|e| panic!("{args:?} should parse, got: {e}"))
}

/// The one-line message of a refused command line.
fn err(args: &[&str]) -> String {
    match parse(args) {
        Ok(c) => panic!("{args:?} should fail, got {c:?}"),
        Err(e) => {
            assert_eq!(e.exit_code(), 1, "{args:?}: {e}");
            let text = e.to_string();
            assert!(!text.contains('\n'), "message must be one line: {text:?}");
            text
        }
    }
}

/// A config file in a fresh temporary directory; removed with the guard.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let dir =
            std::env::temp_dir().join(format!("repcached-config-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("repcached.conf");
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
    }
}

#[test]
fn defaults_match_memcached() {
    let c = ok(&[]);
    assert_eq!(c, Config::default());
    assert_eq!(c.port, 11211);
    assert_eq!(c.udp_port, 0);
    assert_eq!(c.listen, vec!["0.0.0.0"]);
    assert_eq!(c.memory_limit, 64 << 20);
    assert_eq!(c.max_connections, 1024);
    assert_eq!(c.threads, 4);
    assert_eq!(c.item_size_max, 1 << 20);
    assert_eq!(c.backlog, 1024);
    assert_eq!(c.reqs_per_event, 20);
    assert_eq!(c.repl_port, 11212);
    assert_eq!(c.repl_backlog_size, 64 << 20);
    assert_eq!(c.repl_sync_wait, Duration::from_secs(30));
    assert_eq!(c.repl_tombstone_time, Duration::from_secs(24 * 3600));
    assert!(c.peers.is_empty() && c.ignored_options.is_empty() && c.warnings.is_empty());
}

#[test]
fn every_short_flag() {
    let c = ok(&[
        "-p",
        "1",
        "-U",
        "2",
        "-l",
        "127.0.0.1",
        "-m",
        "128",
        "-c",
        "10",
        "-t",
        "2",
        "-I",
        "2m",
        "-M",
        "-A",
        "-F",
        "-C",
        "-vv",
        "-d",
        "-u",
        "memcache",
        "-P",
        "/run/r.pid",
        "-b",
        "5",
        "-R",
        "7",
        "-B",
        "ascii",
        "-k",
        "-r",
        "-x",
        "peer1",
        "-X",
        "0",
    ]);
    assert_eq!((c.port, c.udp_port), (1, 2));
    assert_eq!(c.listen, vec!["127.0.0.1"]);
    assert_eq!(c.memory_limit, 128 << 20);
    assert_eq!(
        (c.max_connections, c.threads, c.item_size_max),
        (10, 2, 2 << 20)
    );
    assert!(c.no_evict && c.enable_shutdown && c.disable_flush && c.disable_cas);
    assert_eq!(c.verbosity, 2);
    assert!(c.daemonize && c.lock_memory && c.enable_coredumps);
    assert_eq!(c.user.as_deref(), Some("memcache"));
    assert_eq!(c.pid_file, Some(PathBuf::from("/run/r.pid")));
    assert_eq!((c.backlog, c.reqs_per_event), (5, 7));
    assert_eq!(c.peers, vec!["peer1"]);
    assert_eq!(c.repl_port, 0);
}

#[test]
fn every_long_flag() {
    let c = ok(&[
        "--port=1",
        "--udp-port",
        "2",
        "--listen",
        "::1",
        "--memory-limit",
        "100",
        "--conn-limit",
        "9",
        "--threads",
        "3",
        "--max-item-size",
        "4096",
        "--disable-evictions",
        "--enable-shutdown",
        "--disable-flush-all",
        "--disable-cas",
        "--verbose",
        "--daemon",
        "--user",
        "nobody",
        "--pidfile",
        "p.pid",
        "--listen-backlog",
        "6",
        "--max-reqs-per-event",
        "8",
        "--protocol",
        "auto",
        "--lock-memory",
        "--enable-coredumps",
        "--peer",
        "a:1",
        "--repl-port",
        "3",
        "--repl-listen",
        "10.0.0.1",
        "--repl-secret-file",
        "/etc/s",
        "--repl-insecure",
        "--repl-backlog-size",
        "1g",
        "--repl-sync-wait",
        "0",
        "--repl-tombstone-time",
        "90",
    ]);
    assert_eq!((c.port, c.udp_port), (1, 2));
    assert_eq!(c.listen, vec!["::1"]);
    assert_eq!(c.memory_limit, 100 << 20);
    assert_eq!(
        (c.max_connections, c.threads, c.item_size_max),
        (9, 3, 4096)
    );
    assert!(c.no_evict && c.enable_shutdown && c.disable_flush && c.disable_cas);
    assert_eq!(c.verbosity, 1);
    assert!(c.daemonize && c.lock_memory && c.enable_coredumps && c.repl_insecure);
    assert_eq!(c.user.as_deref(), Some("nobody"));
    assert_eq!((c.backlog, c.reqs_per_event), (6, 8));
    assert_eq!(c.peers, vec!["a:1"]);
    assert_eq!(c.repl_port, 3);
    assert_eq!(c.repl_listen.as_deref(), Some("10.0.0.1"));
    assert_eq!(c.repl_secret_file, Some(PathBuf::from("/etc/s")));
    assert_eq!(c.repl_backlog_size, 1 << 30);
    assert_eq!(c.repl_sync_wait, Duration::ZERO);
    assert_eq!(c.repl_tombstone_time, Duration::from_secs(90));
}

#[test]
fn sizes_take_suffixes() {
    assert_eq!(ok(&["-m", "1g"]).memory_limit, 1 << 30);
    assert_eq!(ok(&["-m", "2048k"]).memory_limit, 2 << 20);
    assert_eq!(ok(&["-m", "3M"]).memory_limit, 3 << 20);
    assert_eq!(ok(&["-I", "1024"]).item_size_max, 1024);
    assert_eq!(ok(&["-I", "512k"]).item_size_max, 512 << 10);
    assert_eq!(ok(&["-I", "512K"]).item_size_max, 512 << 10);
    assert_eq!(
        ok(&["-I", "32m"]).item_size_max,
        32 << 20,
        "exactly half of -m 64 is allowed"
    );
    assert_eq!(ok(&["-m", "4096", "-I", "1g"]).item_size_max, 1 << 30);
    assert_eq!(ok(&["--repl-backlog-size", "100"]).repl_backlog_size, 100);
    assert_eq!(
        ok(&["--repl-backlog-size", "8M"]).repl_backlog_size,
        8 << 20
    );
}

#[test]
fn item_size_rules_and_messages_are_memcacheds() {
    assert_eq!(
        err(&["-I", "512"]),
        "Item max size cannot be less than 1024 bytes."
    );
    assert_eq!(
        err(&["-I", "33m"]),
        "Cannot set item size limit higher than 1/2 of memory max."
    );
    assert_eq!(
        err(&["-m", "0"]),
        "Cannot set item size limit higher than 1/2 of memory max."
    );
    assert_eq!(
        err(&["-m", "8g", "-I", "2g"]),
        "Cannot set item size limit higher than a gigabyte."
    );
    assert!(err(&["-I", "abc"]).contains("invalid item size 'abc' for -I"));
    assert!(err(&["-I", "1t"]).contains("for -I"));
    assert!(err(&["-m", "64x"]).contains("invalid memory limit '64x' for -m"));
    assert!(
        err(&["-m", "99999999999999999g"]).contains("for -m"),
        "overflow is refused"
    );
}

#[test]
fn counts_must_be_positive_with_memcacheds_words() {
    assert_eq!(
        err(&["-c", "0"]),
        "Maximum connections must be greater than 0"
    );
    assert_eq!(
        err(&["-t", "0"]),
        "Number of threads must be greater than 0"
    );
    assert_eq!(
        err(&["-R", "0"]),
        "Number of requests per event must be greater than 0"
    );
    assert!(err(&["-t", "four"]).contains("invalid value 'four' for -t"));
    assert!(err(&["-b", "-"]).contains("-b"));
    assert!(err(&["--repl-sync-wait", "soon"]).contains("--repl-sync-wait"));
    assert!(err(&["--repl-tombstone-time", "0"]).contains("--repl-tombstone-time"));
    assert!(err(&["--repl-tombstone-time", "1d"]).contains("--repl-tombstone-time"));
    assert!(err(&["--repl-backlog-size", "0"]).contains("--repl-backlog-size"));
    assert!(err(&["--repl-max-clock-skew", "0"]).contains("--repl-max-clock-skew"));
    assert!(err(&["--repl-max-clock-skew", "soon"]).contains("--repl-max-clock-skew"));
    assert!(err(&["--repl-tls-cert", "/c"]).contains("go together"));
    assert!(err(&[&TLS_FILES[..], &["--repl-secret-file", "/s"]].concat()).contains("choose one"));
}

/// The three certificate-mode flags, given together.
const TLS_FILES: [&str; 6] = [
    "--repl-tls-cert",
    "/c",
    "--repl-tls-key",
    "/k",
    "--repl-tls-ca",
    "/ca",
];

#[test]
fn replication_security_flags() {
    let c = ok(&[]);
    assert_eq!(c.repl_max_clock_skew, Duration::from_secs(60));
    assert!(c.repl_tls_cert.is_none());
    let c = ok(&[&TLS_FILES[..], &["--repl-max-clock-skew", "5"]].concat());
    assert_eq!(c.repl_tls_cert, Some(PathBuf::from("/c")));
    assert_eq!(c.repl_tls_key, Some(PathBuf::from("/k")));
    assert_eq!(c.repl_tls_ca, Some(PathBuf::from("/ca")));
    assert_eq!(c.repl_max_clock_skew, Duration::from_secs(5));
}

#[test]
fn many_threads_only_warn() {
    let c = ok(&["-t", "65"]);
    assert_eq!(c.threads, 65);
    assert_eq!(c.warnings.len(), 1);
    assert!(ok(&["-t", "64"]).warnings.is_empty());
}

#[test]
fn ports() {
    assert_eq!(ok(&["-p", "0", "-U", "0"]).port, 0);
    assert_eq!(ok(&["-p", "65535"]).port, 65535);
    assert_eq!(err(&["-p", "70000"]), "ERROR: Invalid port number 70000.");
    assert!(err(&["-U", "abc"]).contains("invalid port 'abc' for -U"));
    assert!(err(&["-X", "65536"]).contains("Invalid port number 65536"));
    assert!(err(&["-p"]).contains("a value is required"));
}

#[test]
fn udp_port_alone_moves_tcp_port_like_memcached() {
    let c = ok(&["-U", "11311"]);
    assert_eq!((c.port, c.udp_port), (11311, 11311));
    let c = ok(&["-U", "11311", "-p", "11211"]);
    assert_eq!((c.port, c.udp_port), (11211, 11311));
    assert_eq!(ok(&["-U", "0"]).port, 11211);
}

#[test]
fn later_values_override_earlier_ones() {
    assert_eq!(ok(&["-p", "1", "-p", "2"]).port, 2);
    assert_eq!(
        ok(&["-m", "10", "--memory-limit", "20"]).memory_limit,
        20 << 20
    );
}

#[test]
fn listen_lists_split_repeat_and_dedupe() {
    let c = ok(&[
        "-l",
        "127.0.0.1,10.0.0.1",
        "-l",
        "10.0.0.1",
        "-l",
        "[::1]:11311, 192.168.0.1:5",
    ]);
    assert_eq!(
        c.listen,
        vec!["127.0.0.1", "10.0.0.1", "[::1]:11311", "192.168.0.1:5"]
    );
    assert!(err(&["-l", "127.0.0.1:99999"]).contains("invalid listen address"));
    assert!(err(&["-l", "[::1"]).contains("invalid listen address"));
    assert!(err(&["--repl-listen", ":5"]).contains("invalid listen address"));
}

#[test]
fn peers() {
    let c = ok(&[
        "-x",
        "a.example",
        "-x",
        "b:1",
        "--peer",
        "[::1]:11212,c",
        "-x",
        "fe80::1",
    ]);
    assert_eq!(
        c.peers,
        vec!["a.example", "b:1", "[::1]:11212", "c", "fe80::1"]
    );
    assert!(err(&["-x", "a:port"]).contains("invalid peer 'a:port'"));
    assert!(err(&["-x", "a:70000"]).contains("invalid peer"));
    assert!(err(&["-x", "[::1]x"]).contains("invalid peer"));
}

#[test]
fn verbosity_counts_and_caps() {
    assert_eq!(ok(&["-v"]).verbosity, 1);
    assert_eq!(ok(&["-vvv"]).verbosity, 3);
    assert_eq!(ok(&["-vvvvv"]).verbosity, 3);
    assert_eq!(ok(&["-v", "-v"]).verbosity, 2);
    assert_eq!(ok(&["-v", "--verbose"]).verbosity, 2);
}

#[test]
fn protocol() {
    ok(&["-B", "auto"]);
    assert_eq!(ok(&["-B", "auto"]).protocol, BindingProtocol::Auto);
    assert_eq!(ok(&["-B", "ascii"]).protocol, BindingProtocol::Ascii);
    assert_eq!(ok(&["-B", "binary"]).protocol, BindingProtocol::Binary);
    assert_eq!(ok(&[]).protocol, BindingProtocol::Auto);
    assert_eq!(
        err(&["-B", "bin"]),
        "Invalid value for binding protocol: bin -- should be one of auto, binary, or ascii"
    );
}

#[test]
fn extended_options_are_accepted_and_recorded() {
    let c = ok(&[
        "-o",
        "modern,hashpower=16,slab_reassign,slab_automove=1",
        "-o",
        "lru_crawler,",
    ]);
    assert_eq!(
        c.ignored_options,
        vec![
            "-o modern,hashpower=16,slab_reassign,slab_automove=1",
            "-o lru_crawler,"
        ]
    );
    ok(&[
        "-o",
        "no_modern,hash_algorithm=xxh3,idle_timeout=600,read_buf_mem_limit=64",
    ]);
    ok(&[
        "-o",
        "ext_path=/tmp/x:1G,ext_max_frag=0.5,ext_drop_unread,ssl_verify_mode=2",
    ]);
    ok(&[
        "-o",
        "hot_lru_pct=30,warm_lru_pct=50,temporary_ttl=61,sock_cookie_id=5",
    ]);
    ok(&[
        "-o",
        "track_sizes,no_lru_maintainer,no_lru_crawler,maxconns_fast,tail_repair_time=10",
    ]);
}

#[test]
fn extended_options_are_refused_with_memcacheds_words() {
    assert_eq!(err(&["-o", "bogus"]), "Illegal suboption \"bogus\"");
    assert_eq!(
        err(&["-o", "modern,bogus=3"]),
        "Illegal suboption \"bogus=3\""
    );
    assert_eq!(
        err(&["-o", "hashpower=13,,modern"]),
        "Illegal suboption \"\""
    );
    assert_eq!(
        err(&["-o", "proxy_uring"]),
        "Illegal suboption \"proxy_uring\""
    );
    assert_eq!(
        err(&["-o", "hashpower"]),
        "Missing numeric argument for hashpower"
    );
    assert_eq!(
        err(&["-o", "hashpower=5"]),
        "Initial hashtable multiplier of 5 is too low"
    );
    assert_eq!(
        err(&["-o", "hashpower=abc"]),
        "Initial hashtable multiplier of 0 is too low"
    );
    assert!(
        err(&["-o", "hashpower=33"]).starts_with("Initial hashtable multiplier of 33 is too high")
    );
    assert_eq!(
        err(&["-o", "slab_automove=3"]),
        "slab_automove must be between 0 and 2"
    );
    assert_eq!(
        err(&["-o", "hash_algorithm=md5"]),
        "Unknown hash_algorithm option (jenkins, murmur3, xxh3)"
    );
    assert_eq!(
        err(&["-o", "lru_crawler_tocrawl=x"]),
        "lru_crawler_tocrawl takes a numeric 32bit value"
    );
    assert_eq!(
        err(&["-o", "hot_lru_pct=80"]),
        "hot_lru_pct must be > 1 and < 80"
    );
    assert_eq!(
        err(&["-o", "hot_lru_pct=50,warm_lru_pct=40"]),
        "hot_lru_pct + warm_lru_pct cannot be more than 80% combined"
    );
    assert_eq!(
        err(&["-o", "no_lru_maintainer,temporary_ttl=61"]),
        "temporary_ttl requires lru_maintainer to be enabled"
    );
    assert_eq!(
        err(&["-o", "ext_path"]),
        "missing argument to ext_path, ie: ext_path=/d/file:5G"
    );
    assert_eq!(
        err(&["-o", "ext_threads=many"]),
        "could not parse argument to ext_threads"
    );
    assert_eq!(
        err(&["-o", "worker_logbuf_size"]),
        "Missing worker_logbuf_size argument"
    );
    assert_eq!(
        err(&["-o", "tail_repair_time=5"]),
        "Cannot set tail_repair_time to less than 10 seconds"
    );
}

#[test]
fn memcached_only_flags_are_ignored_or_refused() {
    let c = ok(&[
        "-f",
        "1.5",
        "-n",
        "48",
        "-L",
        "-D",
        ":",
        "-W",
        "--disable-dumping",
        "-N",
        "2",
        "-a",
        "700",
    ]);
    assert_eq!(
        c.ignored_options,
        vec![
            "-f 1.5",
            "-n 48",
            "-D :",
            "-N 2",
            "-a 700",
            "-L",
            "-W",
            "--disable-dumping"
        ]
    );
    assert_eq!(err(&["-f", "1"]), "Factor must be greater than 1");
    assert_eq!(err(&["-n", "0"]), "Chunk size must be greater than 0");
    assert_eq!(
        err(&["-N", "0"]),
        "Maximum number of NAPI IDs must be greater than 0"
    );
    for flag in [&["-s", "/tmp/sock"][..], &["-e", "/dev/shm/m"]] {
        assert!(
            err(flag).contains("is not supported by repcached"),
            "{flag:?}"
        );
    }
    assert!(err(&["-Q"]).contains("unexpected argument '-Q'"));
    assert!(err(&["--bogus"]).contains("unexpected argument '--bogus'"));
}

#[test]
fn help_and_version_exit_zero() {
    let help = parse(&["-h"]).unwrap_err();
    assert!(matches!(help, ConfigError::Help(_)));
    assert_eq!(help.exit_code(), 0);
    assert!(help.to_string().contains("--repl-secret-file"));
    let version = parse(&["-V"]).unwrap_err();
    assert_eq!(version.exit_code(), 0);
    assert_eq!(
        version.to_string(),
        format!(
            "repcached {} (memcached 1.6.18 compatible)",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert!(matches!(parse(&["--help"]), Err(ConfigError::Help(_))));
    assert!(matches!(
        parse(&["--version"]),
        Err(ConfigError::Version(_))
    ));
}

#[test]
fn config_file_comes_first_and_command_line_overrides() {
    let f = TempFile::new(
        "merge",
        "# repcached test config\n\
         \n\
         -m 128\n\
         -p 1111   # trailing comment\n\
         -l 10.0.0.1\n\
         -x peer-a\n\
         -o modern\n\
         -v\n\
         -P /run/path\\#1.pid\n\
         logfile /var/log/repcached.log\n\
         -U 0 -c 50\n",
    );
    let c = ok(&[
        "--config",
        f.path(),
        "-p",
        "2222",
        "-l",
        "127.0.0.1",
        "-x",
        "peer-b",
        "-v",
        "-c",
        "60",
    ]);
    assert_eq!(c.memory_limit, 128 << 20);
    assert_eq!(c.port, 2222);
    assert_eq!(c.listen, vec!["10.0.0.1", "127.0.0.1"]);
    assert_eq!(c.peers, vec!["peer-a", "peer-b"]);
    assert_eq!(c.verbosity, 2);
    assert_eq!(c.max_connections, 60);
    assert_eq!(c.pid_file, Some(PathBuf::from("/run/path#1.pid")));
    assert_eq!(c.log_file, Some(PathBuf::from("/var/log/repcached.log")));
    assert_eq!(c.ignored_options, vec!["-o modern"]);

    let only_file = ok(&[&format!("--config={}", f.path())]);
    assert_eq!(only_file.port, 1111);
    assert_eq!(only_file.max_connections, 50);
}

#[test]
fn debian_memcached_conf_is_accepted() {
    let f = TempFile::new(
        "debian",
        "# memcached default config file\n-d\nlogfile /var/log/memcached.log\n# -v\n-m 64\n-p 11211\n\
         -u memcache\n-l 127.0.0.1\n# -c 1024\n-P /var/run/memcached/memcached.pid\n",
    );
    let c = ok(&["--config", f.path()]);
    assert!(c.daemonize);
    assert_eq!(c.user.as_deref(), Some("memcache"));
    assert_eq!(c.listen, vec!["127.0.0.1"]);
    assert_eq!(c.log_file, Some(PathBuf::from("/var/log/memcached.log")));
}

#[test]
fn config_file_errors() {
    let missing = parse(&["--config", "/nonexistent/repcached.conf"]).unwrap_err();
    assert!(matches!(missing, ConfigError::ReadFile { .. }));
    assert!(missing
        .to_string()
        .starts_with("cannot read config file /nonexistent/repcached.conf"));

    let f = TempFile::new("directive", "-m 64\nmaxmemory 64\n");
    let e = err(&["--config", f.path()]);
    assert!(
        e.ends_with(":2: unknown directive 'maxmemory 64' (options start with '-')"),
        "{e}"
    );

    let f = TempFile::new("badvalue", "-m 16\n-p 99999\n");
    let e = err(&["--config", f.path()]);
    assert_eq!(
        e,
        format!("{}:2: ERROR: Invalid port number 99999.", f.path())
    );

    let f = TempFile::new("crossline", "-m 16\n-I 9m\n");
    let e = err(&["--config", f.path()]);
    assert_eq!(
        e,
        format!(
            "{}: Cannot set item size limit higher than 1/2 of memory max.",
            f.path()
        )
    );
    // ... unless the command line fixes it.
    assert_eq!(
        ok(&["--config", f.path(), "-m", "64"]).item_size_max,
        9 << 20
    );

    let f = TempFile::new("badflag", "# comment\n-Q\n");
    let e = err(&["--config", f.path()]);
    assert!(
        e.starts_with(&format!("{}:2: unexpected argument '-Q'", f.path())),
        "{e}"
    );

    let f = TempFile::new("noarg", "-l\n");
    let e = err(&["--config", f.path()]);
    assert!(
        e.starts_with(&format!("{}:1: a value is required", f.path())),
        "{e}"
    );

    let f = TempFile::new("nested", "-v\n--config /etc/other.conf\n");
    assert_eq!(
        err(&["--config", f.path()]),
        format!(
            "{}:2: --config cannot be used inside a config file",
            f.path()
        )
    );

    let f = TempFile::new("help", "-h\n");
    assert_eq!(
        err(&["--config", f.path()]),
        format!("{}:1: -h and -V cannot be used in a config file", f.path())
    );

    // A bad command line is still reported as such, not against the file.
    let f = TempFile::new("goodfile", "-m 16\n");
    assert_eq!(
        err(&["--config", f.path(), "-p", "70000"]),
        "ERROR: Invalid port number 70000."
    );
}

#[test]
fn helpers() {
    assert_eq!(parse_size("0", MB), Some(0));
    assert_eq!(parse_size("", MB), None);
    assert_eq!(parse_size("k", MB), None);
    assert_eq!(parse_size("-1", MB), None);
    assert_eq!(parse_size("1.5m", 1), None);
    assert_eq!(atoi("  42abc"), 42);
    assert_eq!(atoi("-7"), -7);
    assert_eq!(atoi("x"), 0);
    assert_eq!(atof("1.25x"), 1.25);
    assert_eq!(atof("nope"), 0.0);
    assert_eq!(strip_comment("a \\# b # c"), "a # b ");
    assert_eq!(split_list(&["a,,b".into(), " a ".into()]), vec!["a", "b"]);
}

#[test]
fn tls_options_are_recorded_not_ignored() {
    let c = ok(&["-p", "1"]);
    assert_eq!(c.tls, TlsSettings::default());
    assert!(!c.tls.enabled);
    let c = ok(&[
        "-Z",
        "-o",
        "ssl_chain_cert=/etc/c.pem,ssl_key=/etc/k.pem,ssl_ca_cert=/etc/ca.pem,modern",
        "-o",
        "ssl_verify_mode=2,ssl_min_version=3,ssl_keyformat=2,ssl_session_cache",
        "-o",
        "ssl_ciphers=ECDHE-RSA-AES128-GCM-SHA256,ssl_wbuf_size=32",
    ]);
    let t = &c.tls;
    assert!(t.enabled);
    assert_eq!(t.chain_cert.as_deref(), Some(Path::new("/etc/c.pem")));
    assert_eq!(t.key.as_deref(), Some(Path::new("/etc/k.pem")));
    assert_eq!(t.ca_cert.as_deref(), Some(Path::new("/etc/ca.pem")));
    assert_eq!(t.verify_mode, VerifyMode::Require);
    assert_eq!(t.verify_mode.openssl_flags(), 3);
    assert_eq!(t.min_version, TlsVersion::Tls13);
    assert_eq!(t.key_format, KEY_FORMAT_DER);
    assert!(t.session_cache);
    assert_eq!(t.ciphers.as_deref(), Some("ECDHE-RSA-AES128-GCM-SHA256"));
    assert_eq!(t.wbuf_size, 32 * 1024);
    // Only what has no effect is logged as ignored.
    assert_eq!(c.ignored_options, vec!["-o modern"]);
    assert!(
        ok(&["--enable-ssl", "-o", "ssl_chain_cert=a,ssl_key=b"])
            .tls
            .enabled
    );
    // Without -Z memcached accepts and keeps every ssl_ option, even those -Z would refuse.
    let c = ok(&["-o", "ssl_min_version=0,ssl_kernel_tls,ssl_verify_mode=3"]);
    assert!(!c.tls.enabled && c.tls.kernel_tls);
    assert_eq!(c.tls.min_version, TlsVersion::Tls10);
}

#[test]
fn tls_options_refused_with_memcacheds_words_or_a_reason() {
    assert_eq!(
        err(&["-o", "ssl_verify_mode=4"]),
        "Invalid ssl_verify_mode. Use help to see valid options."
    );
    assert_eq!(
        err(&["-o", "ssl_min_version=x"]),
        "could not parse argument to ssl_min_version"
    );
    assert_eq!(err(&["-o", "ssl_key"]), "Missing ssl_key argument");
    assert_eq!(
        err(&["-o", "ssl_keyformat=pem"]),
        "could not parse argument to ssl_keyformat"
    );
    assert_eq!(
        err(&["-Z", "-o", "ssl_kernel_tls"]),
        "Kernel TLS offload is not available"
    );
    assert!(err(&["-Z", "-o", "ssl_min_version=0"]).contains("TLS 1.2 and 1.3 only"));
    assert!(err(&["-Z", "-o", "ssl_min_version=1"]).contains("(tlsv1.1) is not supported"));
    assert!(err(&["-Z", "-o", "ssl_keyformat=3"]).contains("use 1 (PEM, the default) or 2 (DER)"));
    assert!(err(&["-Z", "-o", "ssl_verify_mode=1"]).contains("needs ssl_ca_cert"));
    ok(&["-Z", "-o", "ssl_verify_mode=1,ssl_ca_cert=/ca.pem"]);
    assert!(err(&["-Z", "-l", "notls:127.0.0.1"]).contains("notls: prefix is not supported"));
}

#[test]
fn metrics_listen_is_off_by_default_and_checked() {
    assert_eq!(ok(&[]).metrics_listen, None);
    assert_eq!(
        ok(&["--metrics-listen", "127.0.0.1:9150"]).metrics_listen,
        Some("127.0.0.1:9150".to_string())
    );
    assert_eq!(
        ok(&["--metrics-listen", "[::1]:0"]).metrics_listen,
        Some("[::1]:0".to_string())
    );
    for bad in ["9150", ":9150", "127.0.0.1:", "127.0.0.1:x", "host:70000"] {
        assert!(
            err(&["--metrics-listen", bad]).contains("--metrics-listen"),
            "{bad}"
        );
    }
}

#[test]
fn sasl_password_file() {
    let dir = std::env::temp_dir().join(format!("repcached-sasl-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good");
    std::fs::write(&good, "alice:pw:with:colons\n\nbob:\r\n").unwrap();
    let good = good.to_str().unwrap();
    let c = ok(&["-S", "--sasl-pwdb", good]);
    let users = c.sasl.as_ref().expect("sasl");
    assert_eq!(users.len(), 2);
    assert!(users.check(b"alice", b"pw:with:colons"));
    assert!(users.check(b"bob", b""));
    assert!(!users.check(b"alice", b"pw"));
    // -S makes the port binary only; asking for text with it is memcached's error.
    assert_eq!(c.protocol, BindingProtocol::Binary);
    assert_eq!(
        ok(&["-S", "-B", "binary", "--sasl-pwdb", good]).protocol,
        BindingProtocol::Binary
    );
    assert_eq!(
        err(&["-S", "-B", "auto", "--sasl-pwdb", good]),
        "ERROR: You cannot allow the ASCII protocol while using SASL."
    );
    // Never a credential in a message or in Debug.
    assert!(!format!("{c:?}").contains("colons"));
    let bad = dir.join("bad");
    std::fs::write(&bad, "alice:ok\nsecretwithoutcolon\n").unwrap();
    let bad = bad.to_str().unwrap();
    let e = err(&["-S", "--sasl-pwdb", bad]);
    assert!(e.contains("line 2: expected user:password"), "{e}");
    assert!(!e.contains("secret"), "{e}");
    assert!(err(&["-S", "--sasl-pwdb", "/nonexistent/pwdb"])
        .contains("cannot read the SASL password file /nonexistent/pwdb"));
    assert!(err(&["--sasl-pwdb", good]).contains("needs -S"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sasl_pwdb_suboption() {
    let dir = std::env::temp_dir().join(format!("repcached-sasl-o-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good");
    std::fs::write(&good, "alice:pw\n").unwrap();
    let opt = format!("sasl_pwdb={}", good.display());
    let c = ok(&["-S", "-o", &opt]);
    assert!(c.sasl.as_ref().expect("sasl").check(b"alice", b"pw"));
    // Not an ignored option: it took effect.
    assert!(c.ignored_options.is_empty(), "{:?}", c.ignored_options);
    // --sasl-pwdb wins over it.
    let other = dir.join("other");
    std::fs::write(&other, "bob:pw2\n").unwrap();
    let c = ok(&["-S", "-o", &opt, "--sasl-pwdb", other.to_str().unwrap()]);
    assert!(c.sasl.as_ref().unwrap().check(b"bob", b"pw2"));
    assert!(err(&["-o", &opt]).contains("needs -S"));
    // memcached's refusal of UDP with SASL.
    assert_eq!(
        err(&["-S", "-o", &opt, "-U", "11299"]),
        "ERROR: Cannot enable UDP while using binary SASL authentication."
    );
    assert!(ok(&["-S", "-o", &opt, "-U", "0"]).sasl.is_some());
    // In a config file, -S and its file may be on different lines; -Y too.
    let auth = dir.join("auth");
    std::fs::write(&auth, "foo:bar\n").unwrap();
    let f = TempFile::new("sasl-lines", &format!("-S\n-o {opt}\n"));
    let c = ok(&["--config", f.path()]);
    assert!(c.sasl.as_ref().unwrap().check(b"alice", b"pw"));
    let f = TempFile::new("auth-lines", &format!("-m 64\n-Y {}\n", auth.display()));
    assert!(ok(&["--config", f.path()]).auth_file.is_some());
    // A bad file named on its own line is blamed on that line.
    let bad = dir.join("bad");
    std::fs::write(&bad, "nocolon\n").unwrap();
    let f = TempFile::new("sasl-bad", &format!("-S\n-o sasl_pwdb={}\n", bad.display()));
    let e = parse(&["--config", f.path()]).unwrap_err().to_string();
    assert!(
        e.contains("repcached.conf:2") && e.contains("line 1"),
        "{e}"
    );
    assert_eq!(
        err(&["-S", "-o", "sasl_pwdb"]),
        "Missing sasl_pwdb argument"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ascii_auth_file() {
    let dir = std::env::temp_dir().join(format!("repcached-authfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good");
    std::fs::write(&good, "foo:bar\nbaaaz:quux\n").unwrap();
    let good = good.to_str().unwrap();
    let c = ok(&["-Y", good]);
    let file = c.auth_file.as_ref().expect("auth file");
    assert_eq!(file.path, Path::new(good));
    assert!(file.users.check(b"foo", b"bar"));
    assert!(file.users.check(b"baaaz", b"quux"));
    // -Y makes the port ascii only; memcached's words for binary or auto with it.
    assert_eq!(c.protocol, BindingProtocol::Ascii);
    assert_eq!(
        ok(&["--auth-file", good, "-B", "ascii"]).protocol,
        BindingProtocol::Ascii
    );
    for proto in ["binary", "auto"] {
        assert_eq!(
            err(&["-Y", good, "-B", proto]),
            "ERROR: You cannot allow the BINARY protocol while using ascii authentication tokens."
        );
    }
    assert_eq!(
        err(&["-Y", good, "-U", "11299"]),
        "Cannot use UDP with ascii authentication enabled (-U 0 to disable)"
    );
    assert_eq!(ok(&["-Y", good, "-U", "0"]).udp_port, 0);
    assert!(err(&["-Y", good, "-S", "--sasl-pwdb", good]).contains("cannot be used together"));
    // Never a credential in Debug.
    assert!(!format!("{c:?}").contains("quux"));
    // A bad file: its name and line, never its content.
    let bad = dir.join("bad");
    std::fs::write(&bad, "foo:bar\nsecretwithoutcolon\n").unwrap();
    let e = err(&["-Y", bad.to_str().unwrap()]);
    assert!(
        e.contains(bad.to_str().unwrap()) && e.contains("line 2"),
        "{e}"
    );
    assert!(!e.contains("secret"), "{e}");
    let empty = dir.join("empty");
    std::fs::write(&empty, "").unwrap();
    assert!(err(&["-Y", empty.to_str().unwrap()]).contains("no user:password entry"));
    let e = err(&["-Y", "/nonexistent/authfile"]);
    assert!(
        e.contains("cannot read the auth file /nonexistent/authfile"),
        "{e}"
    );
    // More entries than memcached reads: all used, and said.
    let many = dir.join("many");
    let text: String = (0..9).map(|i| format!("u{i}:p{i}\n")).collect();
    std::fs::write(&many, text).unwrap();
    let c = ok(&["-Y", many.to_str().unwrap()]);
    assert!(c.auth_file.unwrap().users.check(b"u8", b"p8"));
    assert!(c.warnings.iter().any(|w| w.contains("only the first 8")));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn repl_tls_peer_names_are_repeatable() {
    let c = ok(&[
        &TLS_FILES[..],
        &[
            "--repl-tls-peer-name",
            "b.example.net",
            "--repl-tls-peer-name",
            "10.0.0.2,b.example.net",
        ],
    ]
    .concat());
    assert_eq!(c.repl_tls_peer_names, vec!["b.example.net", "10.0.0.2"]);
    assert!(ok(&[]).repl_tls_peer_names.is_empty());
    // (That the names need certificates is checked when replication starts: a config file's
    // lines are checked one at a time.)
}

#[test]
fn repl_tls_peer_names_in_the_config_file() {
    let f = TempFile::new(
        "tls-peer-name",
        "--repl-tls-cert /c --repl-tls-key /k --repl-tls-ca /ca\n\
         --repl-tls-peer-name b.example.net\n--repl-tls-peer-name 10.0.0.3\n",
    );
    let c = ok(&["--config", f.path()]);
    assert_eq!(c.repl_tls_peer_names, vec!["b.example.net", "10.0.0.3"]);
}
