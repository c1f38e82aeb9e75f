//! Binary-protocol frames for the tests that speak it by hand: one request, the responses
//! split into (status, key, value).

use std::io::Read;

/// One binary request frame: no extras, opaque 0, CAS 0.
pub fn request(opcode: u8, key: &[u8], value: &[u8]) -> Vec<u8> {
    request_with(opcode, &[], key, value, 0, 0)
}

/// One binary request frame with `extras`, `opaque` and `cas`.
pub fn request_with(
    opcode: u8,
    extras: &[u8],
    key: &[u8],
    value: &[u8],
    opaque: u32,
    cas: u64,
) -> Vec<u8> {
    let body = extras.len() + key.len() + value.len();
    let mut f = vec![0x80, opcode];
    f.extend_from_slice(&(key.len() as u16).to_be_bytes());
    f.extend_from_slice(&[extras.len() as u8, 0, 0, 0]);
    f.extend_from_slice(&(body as u32).to_be_bytes());
    f.extend_from_slice(&opaque.to_be_bytes());
    f.extend_from_slice(&cas.to_be_bytes());
    f.extend_from_slice(extras);
    f.extend_from_slice(key);
    f.extend_from_slice(value);
    f
}

/// Reads one binary response frame: (status, key, value).
pub fn read_frame(c: &mut impl Read) -> (u16, Vec<u8>, Vec<u8>) {
    let mut header = [0u8; 24];
    c.read_exact(&mut header).expect("frame header");
    let body = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
    let mut frame = header.to_vec();
    frame.resize(24 + body, 0);
    c.read_exact(&mut frame[24..]).expect("frame body");
    frames(&frame).remove(0)
}

/// Splits binary response frames: (status, key, value) each.
pub fn frames(mut bytes: &[u8]) -> Vec<(u16, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 24 {
        let key_len = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
        let ext_len = bytes[4] as usize;
        let status = u16::from_be_bytes([bytes[6], bytes[7]]);
        let body = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        assert!(bytes.len() >= 24 + body, "cut frame");
        let b = &bytes[24..24 + body];
        out.push((
            status,
            b[ext_len..ext_len + key_len].to_vec(),
            b[ext_len + key_len..].to_vec(),
        ));
        bytes = &bytes[24 + body..];
    }
    assert!(bytes.is_empty(), "trailing bytes");
    out
}
