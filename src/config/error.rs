//! Why no configuration came out of a command line or a config file, with memcached's words.

use std::path::{Path, PathBuf};

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

pub(super) fn location(path: &Path, line: Option<usize>) -> String {
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

pub(super) fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}
