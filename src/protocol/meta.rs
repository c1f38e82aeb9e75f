//! Meta commands (mg, ms, md, ma, mn, me): placeholder until the meta parser lands.

/// A parsed meta command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaRequest<'a> {
    pub raw: &'a [u8],
}
