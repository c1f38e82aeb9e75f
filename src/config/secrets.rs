//! The replication secret and certificate files as files: how much key material a secret must
//! hold, and reading them before the binary drops privileges.
//!
//! Strength: a secret is refused below [`MIN_SECRET_BITS`] bits of material, counted from its
//! alphabet because its randomness cannot be measured: 4 bits a character when it is only hex
//! digits, 6 when it is only base64 characters (`A-Za-z0-9+/`, `=` padding not counted), 8 a
//! byte otherwise. So `openssl rand -hex 32` (256 bits) and `head -c 32 /dev/urandom | base64`
//! (256) pass, and the shortest accepted secrets are 32 hex digits, 22 base64 characters or 16
//! other bytes. It is a floor on length, not a measure of randomness: use a random secret.
//!
//! Privileges: memcached reads its TLS files before it drops root (`-u`), so that they can stay
//! readable by root only. The binary does the same for the replication files by calling
//! [`preload_secret_files`] first; [`read_secret_file`] then answers from that copy. Library
//! users that never preload (tests, embedders) read from disk as usual.

use super::Config;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The least key material a replication secret may hold.
pub const MIN_SECRET_BITS: usize = 128;

/// How to make a good secret, for messages and docs.
pub const MAKE_SECRET: &str = "openssl rand -hex 32 > FILE";

/// The bits of material `secret` holds, counted from its alphabet (see the module doc).
pub fn secret_bits(secret: &[u8]) -> usize {
    if secret.is_empty() {
        return 0;
    }
    if secret.iter().all(u8::is_ascii_hexdigit) {
        return secret.len() * 4;
    }
    let unpadded = secret.strip_suffix(b"==").unwrap_or(secret);
    let unpadded = unpadded.strip_suffix(b"=").unwrap_or(unpadded);
    let base64 = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    if !unpadded.is_empty() && unpadded.iter().all(base64) {
        return unpadded.len() * 6;
    }
    secret.len() * 8
}

/// Files read before dropping privileges, by the path they were named with.
static PRELOADED: OnceLock<Vec<(PathBuf, Vec<u8>)>> = OnceLock::new();

/// Reads the replication secret and certificate files named in `config` into memory, for
/// [`read_secret_file`]. The binary calls it once, before `-u`; a file it cannot read is an
/// error then, with the path in the message. A second call changes nothing.
pub fn preload_secret_files(config: &Config) -> Result<(), String> {
    let paths = [
        &config.repl_secret_file,
        &config.repl_tls_cert,
        &config.repl_tls_key,
        &config.repl_tls_ca,
    ];
    let mut files = Vec::new();
    for path in paths.into_iter().flatten() {
        let data = std::fs::read(path)
            .map_err(|e| format!("cannot read replication file {}: {e}", path.display()))?;
        files.push((path.clone(), data));
    }
    let _ = PRELOADED.set(files);
    Ok(())
}

/// The content of a replication secret or certificate file: the copy read by
/// [`preload_secret_files`] when there is one (the process may no longer be allowed to open the
/// file), else the file on disk.
pub fn read_secret_file(path: &Path) -> std::io::Result<Vec<u8>> {
    if let Some((_, data)) = PRELOADED
        .get()
        .and_then(|files| files.iter().find(|(p, _)| p == path))
    {
        return Ok(data.clone());
    }
    std::fs::read(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_follow_the_alphabet() {
        assert_eq!(secret_bits(b""), 0);
        assert_eq!(secret_bits(b"x"), 6);
        assert_eq!(secret_bits(&[0xff]), 8);
        // openssl rand -hex 32 / -hex 16
        assert_eq!(secret_bits(&[b'a'; 64]), 256);
        assert_eq!(secret_bits(&[b'0'; 32]), 128);
        assert_eq!(secret_bits(&[b'0'; 31]), 124);
        // head -c 32 /dev/urandom | base64: 43 characters and one '='.
        let mut b64 = vec![b'Q'; 43];
        b64.push(b'=');
        assert_eq!(secret_bits(&b64), 258);
        assert_eq!(secret_bits(&[b'Q'; 21]), 126);
        assert_eq!(secret_bits(&[b'Q'; 22]), 132);
        // Anything else: a byte is 8 bits.
        assert_eq!(secret_bits(b"not-the-secret!"), 120);
        assert_eq!(secret_bits(b"s3cret-shared-by"), 128);
        assert_eq!(secret_bits(b"=="), 16);
    }
}
