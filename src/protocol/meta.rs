//! Meta commands (mg, ms, md, ma, mn, me): placeholder until the meta parser lands.

/// A parsed meta command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaRequest<'a> {
    pub raw: &'a [u8],
}

use super::{AfterError, Limits, Parsed};

/// Placeholder until the meta parser lands: answers every complete meta line with `ERROR`.
pub fn parse<'a>(input: &'a [u8], _limits: &Limits) -> Parsed<'a> {
    match memchr::memchr(b'\n', input) {
        Some(nl) => Parsed::Error {
            reply: b"ERROR\r\n",
            consumed: nl + 1,
            swallow: 0,
            then: AfterError::Continue,
        },
        None => Parsed::Incomplete,
    }
}
