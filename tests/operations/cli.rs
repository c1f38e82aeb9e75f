//! Runs the built `repcached` binary with help, version and bad command lines, and checks exit
//! codes and messages. Every case must exit on its own; the one daemon that starts on purpose
//! (`-d`) is stopped by the test that starts it.

use crate::harness::{is_root, run_to_exit};
use std::time::{Duration, Instant};

/// Exit code 1, nothing on stdout, exactly one line on stderr containing `expected`.
fn assert_refused(args: &[&str], expected: &str) {
    let out = run_to_exit(args);
    assert_eq!(out.code, Some(1), "{args:?}: stderr {:?}", out.stderr);
    assert_eq!(out.stdout, "", "{args:?}");
    assert_eq!(
        out.stderr.lines().count(),
        1,
        "{args:?}: one line wanted, got {:?}",
        out.stderr
    );
    assert!(
        out.stderr.starts_with("repcached: "),
        "{args:?}: {:?}",
        out.stderr
    );
    assert!(
        out.stderr.contains(expected),
        "{args:?}: {:?} lacks {expected:?}",
        out.stderr
    );
}

#[test]
fn version_exits_zero() {
    for flag in ["-V", "--version"] {
        let out = run_to_exit(&[flag]);
        assert_eq!(out.code, Some(0));
        assert_eq!(
            out.stdout,
            format!(
                "repcached {} (memcached 1.6.18 compatible)\n",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert_eq!(out.stderr, "");
    }
}

#[test]
fn help_exits_zero() {
    for flag in ["-h", "--help"] {
        let out = run_to_exit(&[flag]);
        assert_eq!(out.code, Some(0));
        for needle in [
            "Usage: repcached",
            "--port",
            "--max-item-size",
            "--peer",
            "--repl-secret-file",
            "--config",
        ] {
            assert!(out.stdout.contains(needle), "{flag}: help lacks {needle}");
        }
        assert_eq!(out.stderr, "");
    }
}

#[test]
fn help_wins_over_other_flags() {
    assert_eq!(run_to_exit(&["-p", "1", "-h"]).code, Some(0));
}

#[test]
fn bad_flags_exit_one_with_a_message() {
    assert_refused(&["-Q"], "unexpected argument '-Q'");
    assert_refused(&["--no-such-flag"], "unexpected argument '--no-such-flag'");
    assert_refused(&["-p"], "a value is required");
    assert_refused(&["-p", "70000"], "ERROR: Invalid port number 70000.");
    assert_refused(&["-p", "eleven"], "invalid port 'eleven' for -p");
    assert_refused(&["-c", "0"], "Maximum connections must be greater than 0");
    assert_refused(&["-t", "0"], "Number of threads must be greater than 0");
    assert_refused(
        &["-I", "512"],
        "Item max size cannot be less than 1024 bytes.",
    );
    assert_refused(
        &["-I", "64m"],
        "Cannot set item size limit higher than 1/2 of memory max.",
    );
    assert_refused(&["-m", "lots"], "invalid memory limit 'lots' for -m");
    assert_refused(&["-B", "bin"], "Invalid value for binding protocol: bin");
    assert_refused(&["-o", "bogus"], "Illegal suboption \"bogus\"");
    assert_refused(
        &["-o", "modern,hashpower=5"],
        "Initial hashtable multiplier of 5 is too low",
    );
    assert_refused(&["-x", "peer:notaport"], "invalid peer 'peer:notaport'");
    assert_refused(
        &["-S", "--sasl-pwdb", "/nonexistent/pwdb"],
        "cannot read the SASL password file /nonexistent/pwdb",
    );
    assert_refused(&["--repl-backlog-size", "big"], "--repl-backlog-size");
}

#[test]
fn bad_config_files_exit_one() {
    assert_refused(
        &["--config", "/nonexistent/repcached.conf"],
        "cannot read config file /nonexistent/repcached.conf",
    );

    let dir = std::env::temp_dir().join(format!("repcached-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.conf");
    std::fs::write(&path, "# ok so far\n-m 64\n-o bogus\n").unwrap();
    let path = path.to_str().unwrap();
    assert_refused(
        &["--config", path],
        &format!("{path}:3: Illegal suboption \"bogus\""),
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_user_is_refused_when_root() {
    if !is_root() {
        // Not root: -u is ignored and the server would start; nothing to check here.
        return;
    }
    assert_refused(
        &[
            "-u",
            "no-such-user-repcached",
            "-p",
            "-1",
            "-U",
            "0",
            "-l",
            "127.0.0.1",
        ],
        "can't find the user",
    );
}

/// Whether process `pid` is gone (or a zombie nobody reaped: the daemon's parent has exited).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Stops a daemon started by a test: SIGTERM, then SIGKILL if it lingers.
fn stop_daemon(pid: i32) {
    // SAFETY: kill(2) with a pid and a signal number has no memory effects; the pid is the
    // daemon this test started.
    #[allow(unsafe_code)]
    let _ = unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gone(pid) {
        if Instant::now() > deadline {
            // SAFETY: as above.
            #[allow(unsafe_code)]
            let _ = unsafe { libc::kill(pid, libc::SIGKILL) };
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn daemon_args<'a>(port: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["-d", "-p", port, "-U", "0", "-X", "0", "-l", "127.0.0.1"];
    args.extend_from_slice(extra);
    args
}

#[test]
fn daemon_reports_an_unwritable_pid_file() {
    let pid_file = "/nonexistent-repcached-dir/x.pid";
    let out = run_to_exit(&daemon_args("-1", &["-P", pid_file]));
    assert_eq!(out.code, Some(1), "stderr {:?}", out.stderr);
    assert!(
        out.stderr
            .contains("could not write the pid file /nonexistent-repcached-dir/x.pid"),
        "{:?}",
        out.stderr
    );

    if !is_root() {
        return;
    }
    // Root's 0700 directory: writable before -u drops privileges, not after.
    let dir = std::env::temp_dir().join(format!("repcached-cli-pid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let pid_file = dir.join("x.pid");
    let pid_file = pid_file.to_str().unwrap();
    let out = run_to_exit(&daemon_args("-1", &["-u", "nobody", "-P", pid_file]));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.code, Some(1), "stderr {:?}", out.stderr);
    assert!(
        out.stderr.contains("could not write the pid file")
            && out.stderr.contains("Permission denied"),
        "{:?}",
        out.stderr
    );
}

#[test]
fn daemon_reports_a_port_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run_to_exit(&daemon_args(&port, &[]));
    assert_eq!(out.code, Some(1), "stderr {:?}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("failed to listen on 127.0.0.1:{port}")),
        "{:?}",
        out.stderr
    );
}

#[test]
fn daemon_parent_returns_once_the_daemon_serves() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = std::env::temp_dir().join(format!("repcached-cli-daemon-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pid_file = dir.join("ok.pid");
    let out = run_to_exit(&daemon_args(
        &port.to_string(),
        &["-P", pid_file.to_str().unwrap()],
    ));
    // The parent has returned: the pid file is there and the port answers, no polling needed.
    let pid: Option<i32> = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|p| p.trim().parse().ok());
    let answered = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    if let Some(pid) = pid {
        stop_daemon(pid);
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.code, Some(0), "stderr {:?}", out.stderr);
    assert!(pid.is_some(), "no pid file when the parent returned");
    assert!(answered, "nothing listening when the parent returned");
}
