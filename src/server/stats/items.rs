//! `stats items`, `stats slabs` and `stats sizes`. The store has no slab classes: everything is reported as
//! class 1, so that tools that iterate `items:<class>:` and `<class>:` find a consistent picture.

use super::snapshot::{Name, Snapshot, Value};
use crate::server::shared::ServerState;
use std::sync::atomic::Ordering;

/// The one class the store reports.
const CLASS: u32 = 1;

/// memcached's slab page (-o slab_page_size default).
const PAGE_SIZE: u64 = 1024 * 1024;

/// `stats items`: nothing while the store is empty, as in memcached.
pub fn items(shared: &ServerState) -> Snapshot {
    let st = shared.store.stats();
    let mut s = Snapshot::default();
    if st.curr_items == 0 {
        return s;
    }
    let mut item = |name, n| s.push(Name::Item(CLASS, name), Value::Count(n));
    item("number", st.curr_items);
    item("number_hot", 0);
    item("number_warm", 0);
    item("number_cold", st.curr_items);
    item("age_hot", 0);
    item("age_warm", 0);
    item("age", st.oldest_age);
    item("mem_requested", st.bytes);
    item("evicted", st.evictions);
    item("evicted_nonzero", st.evicted_nonzero);
    item("evicted_time", st.evicted_time);
    item(
        "outofmemory",
        shared.stats.store_no_memory.load(Ordering::Relaxed),
    );
    item("tailrepairs", 0);
    item("reclaimed", st.reclaimed);
    item("expired_unfetched", st.expired_unfetched);
    item("evicted_unfetched", st.evicted_unfetched);
    item("evicted_active", 0);
    item("crawler_reclaimed", st.crawler_reclaimed);
    item("crawler_items_checked", st.crawler_items_checked);
    item("lrutail_reflocked", 0);
    item("moves_to_cold", 0);
    item("moves_to_warm", st.moves_to_head);
    item("moves_within_lru", st.lru_bumps);
    item("direct_reclaims", 0);
    // Every item lives in the one (COLD-like) LRU, so every hit is a hit to it.
    item("hits_to_hot", 0);
    item("hits_to_warm", 0);
    item(
        "hits_to_cold",
        shared.stats.get_hits.load(Ordering::Relaxed),
    );
    item("hits_to_temp", 0);
    s
}

/// `stats slabs`: the class's lines only while the store holds items, as in memcached.
pub fn slabs(shared: &ServerState) -> Snapshot {
    let st = shared.store.stats();
    let c = &shared.stats;
    let load = |counter: &crate::server::counters::StripedCounter| counter.load(Ordering::Relaxed);
    let mut s = Snapshot::default();
    if st.curr_items > 0 {
        let mut slab = |name, n| s.push(Name::Slab(CLASS, name), Value::Count(n));
        // One class: the ring. A chunk is an item of the average size the items take in the
        // ring (header, key, value, padding); pages are 1 MiB pages of the ring's capacity;
        // used chunks are the live items, free chunks the items of that size the ring's free
        // part would hold, and free_chunks_end the same for the dead space (changed or deleted
        // items' old copies) that the tail has not passed yet.
        let chunk_size = st.bytes.div_ceil(st.curr_items).max(1);
        let free = st.ring_capacity.saturating_sub(st.ring_used);
        let dead = st.ring_used.saturating_sub(st.bytes);
        slab("chunk_size", chunk_size);
        slab("chunks_per_page", (PAGE_SIZE / chunk_size).max(1));
        slab("total_pages", st.ring_capacity.div_ceil(PAGE_SIZE));
        slab("total_chunks", st.curr_items + (free + dead) / chunk_size);
        slab("used_chunks", st.curr_items);
        slab("free_chunks", free / chunk_size);
        slab("free_chunks_end", dead / chunk_size);
        slab("get_hits", load(&c.get_hits));
        slab("cmd_set", load(&c.cmd_set));
        slab("delete_hits", load(&c.delete_hits));
        slab("incr_hits", load(&c.incr_hits));
        slab("decr_hits", load(&c.decr_hits));
        slab("cas_hits", load(&c.cas_hits));
        slab("cas_badval", load(&c.cas_badval));
        slab("touch_hits", load(&c.touch_hits));
    }
    s.count("active_slabs", u64::from(st.curr_items > 0));
    s.count("total_malloced", st.ring_used);
    s
}

/// `stats sizes` (and the answer to `sizes_enable`/`sizes_disable`): the histogram is never
/// collected.
pub fn sizes(status: &'static str) -> Snapshot {
    let mut s = Snapshot::default();
    s.field("sizes_status", Value::Word(status));
    s
}
