//! A parsed command line ([`Cli`]) checked and turned into a [`Config`]. The groups of settings
//! (listeners, resources, `-o`, client protocol and logins, client TLS, memcached-only flags,
//! replication; each in its own module) are checked one after another in a fixed order, which
//! decides the mistake reported when a command line has several. Also here: the `-o` lists, and
//! the memcached flags repcached refuses (`-s`, `-e`) or validates and ignores.

use super::cli::{Checks, Cli};
use super::error::{invalid, ConfigError};
use super::suboptions::{atof, atoi, check_tls, SubOptions};
use super::types::*;

impl Cli {
    /// Checks every group (only what one option can get wrong alone with
    /// `Checks::OneOption`) and assembles the [`Config`]; warnings and ignored options are
    /// recorded in it for the binary to log.
    pub(super) fn into_config(self, checks: Checks) -> Result<Config, ConfigError> {
        let d = Config::default();
        let mut ignored = Vec::new();
        let mut warnings = Vec::new();

        self.refuse_unsupported()?;
        let net = self.listeners(&d)?;
        let res = self.resources(checks, &d, &mut warnings)?;
        let protocol = self.binding_protocol()?;
        let subopts = self.extended_options(checks, &mut ignored)?;
        let auth = self.client_auth(checks, protocol, net.udp_port, &subopts, &mut warnings)?;

        let mut tls = subopts.tls;
        tls.enabled = self.enable_ssl;
        if checks == Checks::All && tls.enabled {
            check_tls(&tls)?;
        }

        self.check_ignored(&mut ignored)?;
        let repl = self.replication(&d)?;

        Ok(Config {
            port: net.port,
            udp_port: net.udp_port,
            listen: net.listen,
            memory_limit: to_usize(res.memory_limit, "-m")?,
            max_connections: res.max_connections,
            threads: res.threads,
            item_size_max: to_usize(res.item_size_max, "-I")?,
            no_evict: self.disable_evictions,
            enable_shutdown: self.enable_shutdown,
            disable_flush: self.disable_flush_all,
            disable_cas: self.disable_cas,
            verbosity: self.verbose.min(3),
            protocol: auth.protocol,
            sasl: auth.sasl,
            auth_file: auth.auth_file,
            daemonize: self.daemon,
            user: self.user.filter(|u| !u.is_empty()),
            pid_file: self.pidfile,
            backlog: res.backlog,
            reqs_per_event: res.reqs_per_event,
            peers: repl.peers,
            repl_port: repl.repl_port,
            repl_listen: self.repl_listen,
            repl_secret_file: self.repl_secret_file,
            repl_insecure: self.repl_insecure,
            repl_tls_cert: self.repl_tls_cert,
            repl_tls_key: self.repl_tls_key,
            repl_tls_ca: self.repl_tls_ca,
            repl_tls_peer_names: repl.repl_tls_peer_names,
            repl_max_clock_skew: repl.repl_max_clock_skew,
            repl_backlog_size: to_usize(repl.repl_backlog_size, "--repl-backlog-size")?,
            metrics_listen: repl.metrics_listen,
            repl_sync_wait: repl.repl_sync_wait,
            repl_tombstone_time: repl.repl_tombstone_time,
            idle_timeout: subopts.idle_timeout,
            lru_crawler: subopts.tuning.lru_crawler,
            read_buf_mem_limit: subopts.read_buf_mem_limit,
            lock_memory: self.lock_memory,
            enable_coredumps: self.enable_coredumps,
            tls,
            log_file: None,
            ignored_options: ignored,
            warnings,
        })
    }

    /// Every `-o` list; the lists or items that have no effect here are recorded in `ignored`.
    /// The checks that span sub-options wait for the whole command line (`Checks::All`).
    fn extended_options(
        &self,
        checks: Checks,
        ignored: &mut Vec<String>,
    ) -> Result<SubOptions, ConfigError> {
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
        Ok(subopts)
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

/// A size checked as `u64` in bytes, refused when this machine cannot address it.
fn to_usize(value: u64, flag: &str) -> Result<usize, ConfigError> {
    usize::try_from(value)
        .map_err(|_| invalid(format!("value for {flag} is too large for this machine")))
}
