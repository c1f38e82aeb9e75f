//! The `repcached` binary: parses the command line, prepares the process the way memcached does
//! (file and core limits, privileges, daemon, pid file, memory locking), sets up logging and
//! hands over to [`repcached::server::run_notify`]. Exit codes: 0 after a clean stop or -h/-V,
//! 1 on any error. With -d the parent returns only once the daemon serves (0) or has failed
//! (1, with the daemon's message on stderr). Signals are handled by the server, not here.

// The OS set-up above is libc calls that std does not offer (rlimits, setuid, fork/setsid, dup2,
// mlockall, kill); this file is where the binary's unsafe lives. Each block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use repcached::config::{Config, ConfigError};
use tracing::{info, warn};

/// File descriptors kept on top of -c for listeners, peer links, the log file and friends.
const FD_RESERVE: u64 = 64;

fn main() -> ExitCode {
    // Kept for SIGHUP, which parses the same command line (and so re-reads --config) again.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let config = match Config::from_args(args.clone()) {
        Ok(config) => config,
        Err(e @ (ConfigError::Help(_) | ConfigError::Version(_))) => {
            let text = e.to_string();
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("repcached: {e}");
            return ExitCode::from(e.exit_code().clamp(1, 255) as u8);
        }
    };
    let set_verbosity = init_logging(config.verbosity);
    let reload = repcached::server::Reload {
        read_config: Box::new(move || Config::from_args(args.clone()).map_err(|e| e.to_string())),
        set_verbosity,
    };
    match run(config, reload) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once daemonized this reaches the `logfile` if one is set, like everything else.
            eprintln!("repcached: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn level_name(verbosity: u8) -> &'static str {
    match verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    }
}

/// Logs go to stderr; -v picks the level unless RUST_LOG says otherwise. Returns what SIGHUP
/// uses to apply a new -v (nothing, when RUST_LOG fixed the filter).
fn init_logging(verbosity: u8) -> Box<dyn Fn(u8) + Send> {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{fmt, reload, EnvFilter};
    let from_env = EnvFilter::try_from_default_env().ok();
    let fixed = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(level_name(verbosity)));
    let (filter, handle) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .init();
    Box::new(move |v| {
        if !fixed {
            let _ = handle.reload(EnvFilter::new(level_name(v)));
        }
    })
}

/// Everything between a parsed command line and a stopped server, in memcached's order:
/// limits, privileges, daemon, memory lock, pid file.
fn run(config: Config, reload: repcached::server::Reload) -> anyhow::Result<()> {
    // First, so that every later message lands in it; opened before dropping privileges, as
    // Debian's start-memcached opens its logfile.
    if let Some(path) = &config.log_file {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open log file {}", path.display()))?;
        redirect_stdio(&file)?;
    }
    for warning in &config.warnings {
        warn!("{warning}");
    }
    for option in &config.ignored_options {
        info!("memcached option {option} has no effect in repcached; ignored");
    }

    if config.enable_coredumps {
        raise_core_limit();
    }
    raise_nofile_limit(config.max_connections as u64)?;

    // Before dropping privileges and daemonizing, as memcached's ssl_init: keys are often
    // readable by root only, and a bad file must be reported on the terminal.
    let client_tls = repcached::server::tls::ClientTls::load(&config.tls)?;
    // The replication secret and certificates likewise (the -Y and -S files were read with the
    // configuration). A SIGHUP does not read these again.
    repcached::config::preload_secret_files(&config).map_err(|e| anyhow!(e))?;

    drop_privileges(config.user.as_deref())?;

    let parent = if config.daemonize {
        // Keep stdio when verbose, as memcached does, so that -d -v still shows something,
        // and when it already goes to the log file.
        Some(daemonize(
            config.verbosity > 0 || config.log_file.is_some(),
        )?)
    } else {
        None
    };
    let result = serve(config, client_tls, parent.as_ref(), reload);
    if let (Err(e), Some(parent)) = (&result, &parent) {
        parent.failed(&format!("{e:#}"));
    }
    result
}

/// The part of `run` that happens in the daemon itself, after the fork.
fn serve(
    config: Config,
    client_tls: Option<repcached::server::tls::ClientTls>,
    parent: Option<&Parent>,
    reload: repcached::server::Reload,
) -> anyhow::Result<()> {
    if config.lock_memory {
        // After the fork: memory locks are not inherited by a child.
        lock_memory();
    }

    let _pid_file = match &config.pid_file {
        Some(path) => Some(PidFile::create(path)?),
        None => None,
    };

    repcached::server::run_notify(
        config,
        client_tls,
        || {
            if let Some(parent) = parent {
                parent.ready();
            }
        },
        Some(reload),
    )
    // The message already names the cause; `{:#}` would repeat the io::Error source.
    .map_err(|e| anyhow!(e.to_string()))
}

/// The daemon's end of the pipe its parent waits on: one line, `ready` or the error that
/// stops it, so that `repcached -d` never exits 0 for a server that is not running.
struct Parent {
    pipe: std::sync::Mutex<Option<File>>,
}

impl Parent {
    fn ready(&self) {
        self.send(b"ready\n");
    }

    fn failed(&self, message: &str) {
        self.send(format!("error {message}\n").as_bytes());
    }

    /// Only the first report counts; closing the pipe lets the parent return.
    fn send(&self, line: &[u8]) {
        let pipe = self.pipe.lock().ok().and_then(|mut p| p.take());
        if let Some(mut pipe) = pipe {
            let _ = pipe.write_all(line);
        }
    }
}

/// The parent of -d: waits for the daemon's report and turns it into its exit status.
fn parent_waits(mut pipe: File) -> ! {
    let mut report = String::new();
    let _ = pipe.read_to_string(&mut report);
    let code = if report.starts_with("ready") {
        0
    } else {
        match report.strip_prefix("error ") {
            Some(message) => eprintln!("repcached: {}", message.trim_end()),
            // Killed, or stopped by a signal before it served.
            None => eprintln!("repcached: the daemon exited before it was ready"),
        }
        1
    };
    let _ = std::io::stderr().flush();
    // SAFETY: _exit skips destructors and atexit handlers that belong to the daemon now.
    unsafe { libc::_exit(code) }
}

/// -r: lift the soft core size limit as high as allowed, memcached-style.
fn raise_core_limit() {
    let mut rlim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit only reads, and getrlimit only writes, the local rlimit structs passed
    // by valid references; neither has other preconditions, and failure is a return code.
    unsafe {
        let unlimited = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        if libc::setrlimit(libc::RLIMIT_CORE, &unlimited) == 0 {
            return;
        }
        if libc::getrlimit(libc::RLIMIT_CORE, &mut rlim) == 0 {
            rlim.rlim_cur = rlim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_CORE, &rlim) == 0 {
                return;
            }
        }
    }
    warn!("failed to ensure corefile creation");
}

/// Makes room for -c connections plus a reserve. Like memcached, fails when even -c does not
/// fit under the hard limit and the limit cannot be raised (not root).
fn raise_nofile_limit(max_connections: u64) -> anyhow::Result<()> {
    let mut rlim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the local struct, valid and exclusively borrowed for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlim) } != 0 {
        bail!(
            "failed to getrlimit number of files: {}",
            std::io::Error::last_os_error()
        );
    }
    // rlim_t is u64 on the Linux targets we build for.
    let needed: libc::rlim_t = max_connections;
    let want = needed.saturating_add(FD_RESERVE);
    let (cur, max) = (rlim.rlim_cur, rlim.rlim_max);
    if cur >= want {
        return Ok(());
    }
    let target = if max >= needed {
        libc::rlimit {
            rlim_cur: want.min(max),
            rlim_max: max,
        }
    } else {
        libc::rlimit {
            rlim_cur: want,
            rlim_max: want,
        }
    };
    // SAFETY: setrlimit only reads the local struct passed by a valid reference.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &target) } != 0 {
        bail!(
            "failed to set rlimit for open files to {want} (hard limit {max}). \
             Try starting as root or requesting smaller maxconns value."
        );
    }
    if target.rlim_cur < want {
        warn!(
            "open file limit {} leaves little room above -c {needed}",
            target.rlim_cur
        );
    }
    Ok(())
}

/// -u: as root, become USER (its group and supplementary groups too). Unlike memcached,
/// running as root without -u is allowed, with a warning.
fn drop_privileges(user: Option<&str>) -> anyhow::Result<()> {
    // SAFETY: geteuid/getuid take no arguments, touch no memory and cannot fail.
    let root = unsafe { libc::geteuid() == 0 || libc::getuid() == 0 };
    if !root {
        if let Some(user) = user {
            info!("not running as root; -u {user} ignored");
        }
        return Ok(());
    }
    let Some(user) = user else {
        warn!("running as root without -u; consider -u USER to drop privileges");
        return Ok(());
    };
    let name =
        CString::new(user).map_err(|_| anyhow!("can't find the user {user} to switch to"))?;
    // SAFETY: getpwnam returns a pointer into static storage or NULL; we copy what we need
    // before any other call. The process is still single-threaded here.
    let (uid, gid) = unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            bail!("can't find the user {user} to switch to");
        }
        ((*pw).pw_uid, (*pw).pw_gid)
    };
    // SAFETY: initgroups gets a valid NUL-terminated string (`name` outlives the call);
    // setgid/setuid take plain integers. The process is still single-threaded, so the identity
    // change applies to all of it. Every result is checked.
    unsafe {
        if libc::initgroups(name.as_ptr(), gid) != 0 {
            bail!(
                "failed to set supplementary groups for {user}: {}",
                std::io::Error::last_os_error()
            );
        }
        if libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
            bail!(
                "failed to assume identity of user {user}: {}",
                std::io::Error::last_os_error()
            );
        }
        // A process that can get root back has not dropped anything.
        if uid != 0 && libc::setuid(0) == 0 {
            bail!("failed to drop root privileges for user {user}");
        }
    }
    info!("running as user {user} (uid {uid}, gid {gid})");
    Ok(())
}

/// -d: fork, start a new session, leave the working directory, detach stdin and (unless
/// `keep_output`) point stdout and stderr at /dev/null. The parent stays until the daemon
/// reports through the returned [`Parent`] that it serves or why it cannot. Must run before
/// any thread exists: the tokio runtime starts later, inside `server::run_notify`.
fn daemonize(keep_output: bool) -> anyhow::Result<Parent> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors; checked below.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!(
            "failed to create a pipe in order to daemonize: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    let (read_end, write_end) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    // SAFETY: single-threaded at this point, so fork is sound; the parent leaves with _exit
    // without running destructors or flushing anything the child also owns.
    unsafe {
        if libc::signal(libc::SIGHUP, libc::SIG_IGN) == libc::SIG_ERR {
            warn!("failed to ignore SIGHUP");
        }
        match libc::fork() {
            -1 => bail!(
                "failed to fork in order to daemonize: {}",
                std::io::Error::last_os_error()
            ),
            0 => drop(read_end),
            _ => {
                drop(write_end);
                parent_waits(read_end)
            }
        }
        if libc::setsid() == -1 {
            bail!(
                "setsid failed while daemonizing: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    std::env::set_current_dir("/").context("chdir / while daemonizing")?;
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("open /dev/null")?;
    // SAFETY: dup2 onto stdin; both descriptors are valid.
    if unsafe { libc::dup2(null.as_raw_fd(), libc::STDIN_FILENO) } == -1 {
        bail!("dup2 stdin: {}", std::io::Error::last_os_error());
    }
    if !keep_output {
        redirect_stdio(&null)?;
    }
    Ok(Parent {
        pipe: std::sync::Mutex::new(Some(write_end)),
    })
}

/// Points stdout and stderr at `file`.
fn redirect_stdio(file: &File) -> anyhow::Result<()> {
    let _ = std::io::stdout().flush();
    for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: dup2 between two valid descriptors.
        if unsafe { libc::dup2(file.as_raw_fd(), fd) } == -1 {
            bail!("dup2 onto fd {fd}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// -k: lock current and future pages; a failure is only a warning, as in memcached.
fn lock_memory() {
    // SAFETY: mlockall takes only flags and reads or writes no memory of ours.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
        warn!(
            "-k invalid, mlockall() failed: {}; proceeding without",
            std::io::Error::last_os_error()
        );
    }
}

/// The pid file, written like memcached (temporary name, then rename, so that a reader never
/// sees it empty) and removed when dropped, i.e. when `run` returns.
struct PidFile {
    path: PathBuf,
}

impl PidFile {
    fn create(path: &Path) -> anyhow::Result<PidFile> {
        if let Ok(old) = std::fs::read_to_string(path) {
            if let Ok(pid) = old.trim().parse::<libc::pid_t>() {
                // SAFETY: signal 0 only checks that the process exists.
                if pid > 0 && unsafe { libc::kill(pid, 0) } == 0 {
                    warn!(
                        "the pid file {} contained the following (running) pid: {pid}",
                        path.display()
                    );
                }
            }
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, format!("{}\n", std::process::id()))
            .with_context(|| format!("could not write the pid file {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| {
            format!(
                "could not rename the pid file {} to {}",
                tmp.display(),
                path.display()
            )
        })?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            warn!("could not remove the pid file {}: {e}", self.path.display());
        }
    }
}
