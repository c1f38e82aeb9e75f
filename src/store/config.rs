//! Store configuration: memory limit, largest item, eviction, CAS, shard count, tombstone
//! lifetime and this node's id. The server fills it in from the command line (-m, -I, -M, -C,
//! -t).

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// -m in bytes: the size of the ring the items live in. Tombstones, pending increments and
    /// counter state live outside it (tombstones capped at a quarter of it, pending increments
    /// at a sixteenth).
    pub mem_limit: usize,
    /// -I: largest value.
    pub item_size_max: usize,
    /// false with -M: refuse writes instead of evicting.
    pub evict: bool,
    /// false with -C: every CAS id is 0.
    pub cas_enabled: bool,
    /// Number of independently locked shards (rounded up to a power of two).
    pub shards: usize,
    /// This node's id, stamped into every version it creates.
    pub node_id: u32,
    /// The longest a delete's tombstone is kept, in seconds (`--repl-tombstone-time`): it goes
    /// earlier once every peer has it (see `shard::Tombstone`).
    pub tombstone_secs: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            mem_limit: 64 * 1024 * 1024,
            item_size_max: 1024 * 1024,
            evict: true,
            cas_enabled: true,
            shards: 64,
            node_id: 1,
            tombstone_secs: 24 * 3600,
        }
    }
}
