//! Command line and configuration file: memcached-compatible flags plus the replication flags.
//!
//! The flags follow memcached 1.6.18 so that an existing `/etc/memcached.conf` or init script
//! keeps working. Where memcached silently turns garbage into a number (`atoi`), we refuse the
//! value with a one-line message instead: a typo in a port or a memory size should not start a
//! server with a surprising setting. memcached options that only tune its slab allocator, hash
//! table or background threads (most of `-o`) have no equivalent here; they are validated like
//! memcached does and then ignored, and listed in [`Config::ignored_options`] so that the binary
//! can log them. The `ssl_*` sub-options and `-Z` do take effect ([`TlsSettings`]).

mod cli;
mod client_auth;
mod error;
mod file;
mod merge;
mod network;
mod replication;
mod resources;
mod secrets;
mod suboptions;
mod types;
mod users;
mod validate;

pub use error::ConfigError;
pub use secrets::{
    preload_secret_files, read_secret_file, secret_bits, MAKE_SECRET, MIN_SECRET_BITS,
};
pub use types::*;
pub use users::{AuthFileError, Users};

use std::ffi::OsString;

impl Config {
    /// Parses a command line (`args[0]` is the program name), reading `--config FILE` first
    /// when given: file options come first and command-line options override or append to them.
    pub fn from_args<I>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = OsString>,
    {
        merge::config_from_args(args)
    }
}

#[cfg(test)]
mod tests;
