//! Random ids for this node and its backlog runs (OS randomness).

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_nonzero() {
        assert_ne!(random_node_id(), 0);
        assert_ne!(random_u64(), 0);
    }
}
