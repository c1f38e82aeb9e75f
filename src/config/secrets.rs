//! The replication secret and certificate files as files: how much key material a secret must
//! hold, and reading them before the binary drops privileges.
//!
//! Strength: a secret is refused below [`MIN_SECRET_BITS`] bits of material. Its randomness
//! cannot be measured, so the estimate is deliberately low: each character counts for the
//! smaller of its alphabet's bits (4 when the secret is only hex digits, 6 when it is only base64
//! characters `A-Za-z0-9+/` with `=` padding left out, 8 a byte otherwise) and log2 of the number
//! of distinct characters in the secret. So a repeated byte counts 0, `Password1234567!` about
//! 62, a UTF-16 `password` 48. `openssl rand -hex 32` (64 hex digits, 256 bits when all 16 digits
//! occur) and `head -c 32 /dev/urandom | base64` (43 characters, about 210) pass with a wide
//! margin: they fail only below 4 and 8 distinct characters, which a random one never shows.
//! `openssl rand -hex 16` (32 digits) reaches 128 only when all 16 digits occur, so it is
//! usually refused, and 16 bytes in base64 always are: 32 random bytes are the recipe. It is a floor, not a measure of randomness:
//! a long sentence passes, and one recorded handshake lets an attacker guess it offline.
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

/// The bits of material `secret` holds, a conservative estimate (see the module doc).
pub fn secret_bits(secret: &[u8]) -> usize {
    let base64 = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    let unpadded = secret.strip_suffix(b"==").unwrap_or(secret);
    let unpadded = unpadded.strip_suffix(b"=").unwrap_or(unpadded);
    let (body, alphabet_bits) = if secret.iter().all(u8::is_ascii_hexdigit) {
        (secret, 4.0)
    } else if !unpadded.is_empty() && unpadded.iter().all(base64) {
        (unpadded, 6.0)
    } else {
        (secret, 8.0)
    };
    let mut seen = [false; 256];
    for &b in body {
        seen[usize::from(b)] = true;
    }
    let distinct = seen.iter().filter(|&&s| s).count();
    if distinct < 2 {
        return 0;
    }
    let per_char = f64::min(alphabet_bits, (distinct as f64).log2());
    // Floored, so that a secret just under the bar is refused, not rounded up to it.
    (body.len() as f64 * per_char) as usize
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
    fn bits_follow_the_alphabet_and_the_variety() {
        assert_eq!(secret_bits(b""), 0);
        assert_eq!(secret_bits(b"x"), 0);
        assert_eq!(secret_bits(&[0xff]), 0);
        // All 16 hex digits: 4 bits each.
        let hex = b"0123456789abcdef".repeat(4);
        assert_eq!(secret_bits(&hex), 256);
        assert_eq!(secret_bits(&hex[..32]), 128);
        assert_eq!(secret_bits(&hex[..31]), 124);
        // Two distinct digits: 1 bit each.
        assert_eq!(secret_bits(&b"01".repeat(32)), 64);
        // 64 distinct base64 characters: 6 bits each; '=' padding is not counted.
        let b64: Vec<u8> = (b'A'..=b'Z')
            .chain(b'a'..=b'z')
            .chain(b'0'..=b'9')
            .chain(*b"+/")
            .collect();
        assert_eq!(secret_bits(&b64), 384);
        assert_eq!(secret_bits(&[&b64[..43], b"="].concat()), 233); // 43 × log2(43)
                                                                    // Other bytes: 8 bits each at 256 distinct values.
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(secret_bits(&all), 2048);
        assert_eq!(secret_bits(b"=="), 0);
    }

    /// The review's weak secrets (each started a node before): all refused.
    #[test]
    fn weak_secrets_are_refused() {
        let utf16_password: Vec<u8> = "password"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        for (name, secret) in [
            ("Password1234567!", b"Password1234567!".to_vec()),
            ("16 zero bytes", vec![0u8; 16]),
            ("16 dashes", vec![b'-'; 16]),
            ("UTF-16 password", utf16_password),
            ("a passphrase", b"correct horse battery staple".to_vec()),
        ] {
            let bits = secret_bits(&secret);
            assert!(bits < MIN_SECRET_BITS, "{name}: {bits} bits");
        }
    }

    /// A small PRNG (splitmix64) for the samples: deterministic, no dependency.
    fn random_bytes(state: &mut u64, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = *state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                (z ^ (z >> 31)) as u8
            })
            .collect()
    }

    fn to_hex(bytes: &[u8]) -> Vec<u8> {
        bytes
            .iter()
            .flat_map(|b| format!("{b:02x}").into_bytes())
            .collect()
    }

    /// Standard base64 with padding, as base64(1) writes it (without its newline, which
    /// `load_secret` strips).
    fn to_base64(bytes: &[u8]) -> Vec<u8> {
        const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize]);
                } else {
                    out.push(b'=');
                }
            }
        }
        out
    }

    /// The documented recipes always pass: 1000 samples each of `openssl rand -hex 32` and
    /// `head -c 32 /dev/urandom | base64` (the packaged recipe), with the least bits seen.
    #[test]
    fn the_documented_recipes_always_pass() {
        assert_eq!(to_base64(b"\x00\x11\x22\x33"), b"ABEiMw==");
        let mut state = 0x5eed_u64;
        let (mut least_hex, mut least_b64) = (usize::MAX, usize::MAX);
        for _ in 0..1000 {
            let hex = to_hex(&random_bytes(&mut state, 32));
            assert_eq!(hex.len(), 64);
            least_hex = least_hex.min(secret_bits(&hex));
            let b64 = to_base64(&random_bytes(&mut state, 32));
            assert_eq!(b64.len(), 44);
            least_b64 = least_b64.min(secret_bits(&b64));
        }
        assert!(
            least_hex >= MIN_SECRET_BITS,
            "openssl rand -hex 32: {least_hex}"
        );
        assert!(least_b64 >= MIN_SECRET_BITS, "32 bytes base64: {least_b64}");
        // The margin is wide (see the module doc), not a coincidence of these samples.
        assert!(least_hex >= 200, "{least_hex}");
        assert!(least_b64 >= 180, "{least_b64}");
        eprintln!("least bits seen: hex {least_hex}, base64 {least_b64}");
    }
}
