//! The config file (/etc/memcached.conf's format): options one or more per line, `#` comments,
//! Debian's `logfile FILE` directive.

use super::error::ConfigError;
use std::path::{Path, PathBuf};

/// What a config file holds besides options: Debian's `logfile FILE` directive.
#[derive(Debug, Default, PartialEq)]
pub(super) struct ConfigFile {
    /// Option words of each line, with the 1-based line number.
    pub(super) lines: Vec<(usize, Vec<String>)>,
    pub(super) log_file: Option<PathBuf>,
}

/// Reads the /etc/memcached.conf format: one or more options per line, `#` starts a comment
/// (`\#` is a literal `#`), blank lines are skipped. Words are split on whitespace like the
/// shell line Debian's start-memcached builds from the same file. A line not starting with
/// `-` is a directive; only `logfile FILE` exists.
pub(super) fn parse_config_file(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
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

pub(super) fn strip_comment(line: &str) -> String {
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
