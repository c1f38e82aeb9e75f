//! Mutual authentication of a replication link: HMAC-SHA256 challenge-response over a shared
//! secret, plus loading the secret and random ids.
//!
//! Each side sends a fresh random nonce in its HELLO and then proves knowledge of the secret with
//! `HMAC(secret, label | sender node id | receiver's nonce | sender's nonce)`. Both nonces make
//! every proof unique to one connection (no replay), and binding the sender's node id means a
//! proof cannot be reflected back at the node that made it.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;

use super::frame::{MAC_LEN, NONCE_LEN};

const LABEL: &[u8] = b"repcached-repl-auth-v1";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], sender: u32, receiver_nonce: &[u8], sender_nonce: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, including empty (the insecure loopback mode).
    let mut m = HmacSha256::new_from_slice(secret).expect("hmac takes any key length");
    m.update(LABEL);
    m.update(&sender.to_be_bytes());
    m.update(receiver_nonce);
    m.update(sender_nonce);
    m
}

/// The proof `sender` sends after seeing the receiver's nonce.
pub fn proof(
    secret: &[u8],
    sender: u32,
    receiver_nonce: &[u8; NONCE_LEN],
    sender_nonce: &[u8; NONCE_LEN],
) -> [u8; MAC_LEN] {
    let bytes = mac(secret, sender, receiver_nonce, sender_nonce)
        .finalize()
        .into_bytes();
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&bytes);
    out
}

/// Checks a peer's proof in constant time.
pub fn verify(
    secret: &[u8],
    sender: u32,
    receiver_nonce: &[u8; NONCE_LEN],
    sender_nonce: &[u8; NONCE_LEN],
    proof: &[u8; MAC_LEN],
) -> bool {
    mac(secret, sender, receiver_nonce, sender_nonce)
        .verify_slice(proof)
        .is_ok()
}

pub fn nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    fill_random(&mut n);
    n
}

fn fill_random(buf: &mut [u8]) {
    if getrandom::getrandom(buf).is_err() {
        // No OS randomness: fall back to time and address entropy rather than refusing to run.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let seed = t ^ (buf.as_ptr() as usize as u128);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(151);
        }
    }
}

/// A random, nonzero 32-bit node id for this process.
pub fn random_node_id() -> u32 {
    loop {
        let mut b = [0u8; 4];
        fill_random(&mut b);
        let id = u32::from_be_bytes(b);
        if id != 0 {
            return id;
        }
    }
}

/// A random, nonzero 64-bit id (backlog run ids).
pub fn random_u64() -> u64 {
    loop {
        let mut b = [0u8; 8];
        fill_random(&mut b);
        let id = u64::from_be_bytes(b);
        if id != 0 {
            return id;
        }
    }
}

/// Reads the shared secret: the file's content without trailing line breaks and spaces.
pub fn load_secret(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut s = std::fs::read(path)?;
    while s.last().is_some_and(|b| b.is_ascii_whitespace()) {
        s.pop();
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_with_the_same_secret_and_roles() {
        let (na, nb) = (nonce(), nonce());
        let p = proof(b"secret", 1, &nb, &na);
        assert!(verify(b"secret", 1, &nb, &na, &p));
        assert!(!verify(b"other", 1, &nb, &na, &p));
        assert!(
            !verify(b"secret", 2, &nb, &na, &p),
            "bound to the sender's id"
        );
        assert!(
            !verify(b"secret", 1, &na, &nb, &p),
            "bound to the nonce order"
        );
        assert_ne!(random_node_id(), 0);
    }
}
