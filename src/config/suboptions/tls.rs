//! The `ssl_*` sub-options of `-o` (they configure `-Z`, client TLS) and what `-Z` cannot
//! honour, refused before anything starts.

use super::super::error::{invalid, ConfigError};
use super::super::types::*;
use super::values::Arg;
use crate::numbers;
use std::path::PathBuf;

/// Applies one `ssl_*` item to `tls`, with memcached's checks and messages. `Ok(false)`: not
/// an `ssl_*` option memcached knows.
pub(super) fn apply(tls: &mut TlsSettings, arg: &Arg) -> Result<bool, String> {
    let name = arg.name;
    match name {
        // Switches: a value, if any, is ignored like getsubopt's caller does.
        "ssl_session_cache" => tls.session_cache = true,
        "ssl_kernel_tls" => tls.kernel_tls = true,
        "ssl_chain_cert" => tls.chain_cert = Some(PathBuf::from(arg.need_arg()?)),
        "ssl_key" => tls.key = Some(PathBuf::from(arg.need_arg()?)),
        "ssl_ca_cert" => tls.ca_cert = Some(PathBuf::from(arg.need_arg()?)),
        "ssl_ciphers" => tls.ciphers = Some(arg.need_arg()?.to_string()),
        "ssl_verify_mode" | "ssl_min_version" => {
            let v = arg.need_arg()?;
            // Both take 0..=3 (verify: none/request/require/once; min: tls1.0..tls1.3).
            let n = match numbers::safe_strtol(v.as_bytes()) {
                Some(n) if (0..=3).contains(&n) => n,
                Some(_) => return Err(format!("Invalid {name}. Use help to see valid options.")),
                None => return Err(format!("could not parse argument to {name}")),
            };
            if name == "ssl_verify_mode" {
                tls.verify_mode = [
                    VerifyMode::None,
                    VerifyMode::Request,
                    VerifyMode::Require,
                    VerifyMode::Once,
                ][n as usize];
            } else {
                tls.min_version = [
                    TlsVersion::Tls10,
                    TlsVersion::Tls11,
                    TlsVersion::Tls12,
                    TlsVersion::Tls13,
                ][n as usize];
            }
        }
        "ssl_keyformat" => {
            // safe_strtol: a whole signed number.
            let v = arg.need_arg()?;
            tls.key_format = numbers::safe_strtol(v.as_bytes())
                .ok_or_else(|| format!("could not parse argument to {name}"))?;
        }
        "ssl_wbuf_size" => {
            let v = arg.need_arg()?;
            let kb = numbers::safe_strtoul(v.as_bytes())
                .ok_or_else(|| format!("could not parse argument to {name}"))?;
            // Kilobytes on the command line, bytes in `stats settings`, like memcached
            // (whose unsigned multiply wraps the same way).
            tls.wbuf_size = kb.wrapping_mul(1024);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// What -Z cannot honour, refused before anything starts. memcached would accept these (its
/// OpenSSL can do them); starting anyway would quietly give a weaker or different server.
pub(in crate::config) fn check_tls(tls: &TlsSettings) -> Result<(), ConfigError> {
    if tls.kernel_tls {
        // memcached's words when its OpenSSL has no kernel TLS.
        return Err(invalid("Kernel TLS offload is not available"));
    }
    if matches!(tls.min_version, TlsVersion::Tls10 | TlsVersion::Tls11) {
        return Err(invalid(format!(
            "ssl_min_version={} ({}) is not supported: repcached speaks TLS 1.2 and 1.3 only; \
             use ssl_min_version=2 (tlsv1.2, the default) or 3 (tlsv1.3)",
            tls.min_version as u8,
            tls.min_version.name()
        )));
    }
    if !matches!(tls.key_format, KEY_FORMAT_PEM | KEY_FORMAT_DER) {
        return Err(invalid(format!(
            "ssl_keyformat={} is not supported: use 1 (PEM, the default) or 2 (DER)",
            tls.key_format
        )));
    }
    if tls.verify_mode != VerifyMode::None && tls.ca_cert.is_none() {
        // OpenSSL would ask for a certificate it has no CA to check against and turn every
        // client that sends one away.
        return Err(invalid(format!(
            "ssl_verify_mode={} needs ssl_ca_cert=FILE, the CA client certificates must chain to",
            tls.verify_mode as u8
        )));
    }
    Ok(())
}
