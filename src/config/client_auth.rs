//! Which protocol the client port speaks and how its clients log in: `-B`, `-S` with its
//! password file (`--sasl-pwdb`, `-o sasl_pwdb`, `MEMCACHED_SASL_PWDB`) and `-Y`, checked
//! against each other and `-U` with memcached's words, and the password files read (errors
//! name the file and the line, never its content).

use super::cli::{Checks, Cli};
use super::error::{invalid, ConfigError};
use super::suboptions::SubOptions;
use super::types::*;
use super::users::{Users, AUTH_FILE_MEMCACHED_ENTRIES};
use std::path::{Path, PathBuf};

/// The client protocol and logins: `-B` as `-S` or `-Y` force it, the SASL users, the `-Y` file.
pub(super) struct ClientAuth {
    pub(super) protocol: BindingProtocol,
    pub(super) sasl: Option<Users>,
    pub(super) auth_file: Option<AuthFile>,
}

impl Cli {
    /// `-B` alone (checked before `-o`, as memcached does).
    pub(super) fn binding_protocol(&self) -> Result<BindingProtocol, ConfigError> {
        match self.protocol.as_deref() {
            None | Some("auto") => Ok(BindingProtocol::Auto),
            Some("ascii") => Ok(BindingProtocol::Ascii),
            Some("binary") => Ok(BindingProtocol::Binary),
            Some(other) => Err(invalid(format!(
                "Invalid value for binding protocol: {other} -- should be one of auto, binary, or ascii"
            ))),
        }
    }

    /// `-S` then `-Y`: each makes the port speak its one protocol and refuses UDP; the two
    /// cannot be combined. `protocol` is what [`Cli::binding_protocol`] read, `udp_port` the
    /// checked `-U`.
    pub(super) fn client_auth(
        &self,
        checks: Checks,
        protocol: BindingProtocol,
        udp_port: i32,
        subopts: &SubOptions,
        warnings: &mut Vec<String>,
    ) -> Result<ClientAuth, ConfigError> {
        let mut protocol = protocol;
        let sasl = self.sasl(checks, &mut protocol, udp_port, subopts)?;
        let auth_file = match &self.auth_file {
            None => None,
            Some(path) => Some(self.ascii_auth(path, &mut protocol, udp_port, warnings)?),
        };
        Ok(ClientAuth {
            protocol,
            sasl,
            auth_file,
        })
    }

    /// `-S` and its password file; without `-S`, a password file is refused (or, on a
    /// config-file line of its own, checked so that a mistake in it names that line).
    fn sasl(
        &self,
        checks: Checks,
        protocol: &mut BindingProtocol,
        udp_port: i32,
        subopts: &SubOptions,
    ) -> Result<Option<Users>, ConfigError> {
        let flag = self.sasl_pwdb.as_deref().or(subopts.sasl_pwdb.as_deref());
        if !self.enable_sasl {
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
            return Ok(None);
        }
        // memcached: SASL is a binary-protocol feature, and -S makes the port binary only.
        if *protocol != BindingProtocol::Binary && self.protocol.is_some() {
            return Err(invalid(
                "ERROR: You cannot allow the ASCII protocol while using SASL.",
            ));
        }
        *protocol = BindingProtocol::Binary;
        // A datagram has no connection to log in on.
        if udp_port != 0 {
            return Err(invalid(
                "ERROR: Cannot enable UDP while using binary SASL authentication.",
            ));
        }
        if checks == Checks::OneOption && flag.is_none() {
            // A config-file line "-S" alone: its file may be named on another line.
            Ok(Some(Users::default()))
        } else {
            Ok(Some(load_sasl_pwdb(flag)?))
        }
    }

    /// `-Y FILE`: memcached's ascii authentication.
    fn ascii_auth(
        &self,
        path: &Path,
        protocol: &mut BindingProtocol,
        udp_port: i32,
        warnings: &mut Vec<String>,
    ) -> Result<AuthFile, ConfigError> {
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
        if self.protocol.is_some() && *protocol != BindingProtocol::Ascii {
            return Err(invalid(
                "ERROR: You cannot allow the BINARY protocol while using ascii \
                 authentication tokens.",
            ));
        }
        *protocol = BindingProtocol::Ascii;
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
        Ok(file)
    }
}

/// Reads the SASL password file named by `--sasl-pwdb` or `MEMCACHED_SASL_PWDB`. Errors name the
/// file and the line, never its content.
fn load_sasl_pwdb(flag: Option<&Path>) -> Result<Users, ConfigError> {
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
pub(super) fn load_auth_file(path: &Path) -> Result<AuthFile, ConfigError> {
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
