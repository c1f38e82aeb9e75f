//! Meta command execution (placeholder until the meta commands land).

use super::stats::Stats;
use crate::protocol::meta::MetaRequest;
use crate::store::Store;

pub fn execute(_store: &Store, _stats: &Stats, _req: &MetaRequest<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"ERROR\r\n");
}
