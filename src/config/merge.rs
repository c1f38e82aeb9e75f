//! `--config FILE` merged with the command line: each line of the file is checked on its own
//! (so that its mistakes name their line), then the file's options come first and the command
//! line's after them, and a mistake of the file alone is blamed on the file.

use super::cli::{parse_cli, Checks};
use super::error::ConfigError;
use super::file::parse_config_file;
use super::types::Config;
use std::ffi::OsString;

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
