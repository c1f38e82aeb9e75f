//! The operator's `lru_crawler` (other than metadump) and `slabs` commands, with memcached
//! 1.6.18's replies (proto_text.c). They change [`Tunables`](crate::server::tunables); `crawl`
//! wakes the sweeper for a full pass over the store. The store has one class (1, plus
//! memcached's page pool 0) and no slab pages, so `slabs reassign` answers as memcached does
//! with slab reassignment off (`stats settings` says `slab_reassign no`).

use crate::protocol::{LruCrawlerCommand, MetadumpScope, SlabsCommand};
use crate::server::shared::ServerState;
use std::sync::atomic::Ordering;

pub const CRAWLER_DISABLED: &[u8] = b"CLIENT_ERROR lru crawler disabled\r\n";
const OK: &[u8] = b"OK\r\n";

pub fn lru_crawler(shared: &ServerState, cmd: LruCrawlerCommand, out: &mut Vec<u8>) {
    let t = &shared.tunables;
    let reply: &[u8] = match cmd {
        // memcached cannot start its crawler thread twice.
        LruCrawlerCommand::Enable if t.lru_crawler.swap(true, Ordering::Relaxed) => {
            b"ERROR failed to start lru crawler thread\r\n"
        }
        LruCrawlerCommand::Enable => OK,
        LruCrawlerCommand::Disable => {
            t.lru_crawler.store(false, Ordering::Relaxed);
            OK
        }
        LruCrawlerCommand::Crawl(_) if !t.lru_crawler.load(Ordering::Relaxed) => CRAWLER_DISABLED,
        LruCrawlerCommand::Crawl(scope) => match scope {
            MetadumpScope::BadClass => b"BADCLASS invalid class id\r\n",
            // memcached crawls expired items by class only: `hash` is for metadump.
            MetadumpScope::Hash => b"ERROR an unknown error happened\r\n",
            MetadumpScope::Classes(0) => b"NOTSTARTED no items to crawl\r\n",
            // Any valid class list starts a crawler in memcached, empty classes included;
            // here every item is in class 1, so any list means the whole store.
            MetadumpScope::All | MetadumpScope::Classes(_) => {
                if t.request_crawl() {
                    OK
                } else {
                    b"BUSY currently processing crawler request\r\n"
                }
            }
        },
        LruCrawlerCommand::Sleep(us) if us > 1_000_000 => {
            b"CLIENT_ERROR sleep must be one second or less\r\n"
        }
        LruCrawlerCommand::Sleep(us) => {
            t.lru_crawler_sleep.store(us, Ordering::Relaxed);
            OK
        }
        LruCrawlerCommand::Tocrawl(n) => {
            t.lru_crawler_tocrawl.store(n, Ordering::Relaxed);
            OK
        }
    };
    out.extend_from_slice(reply);
}

pub fn slabs(shared: &ServerState, cmd: SlabsCommand, out: &mut Vec<u8>) {
    let t = &shared.tunables;
    let (reply, noreply): (&[u8], bool) = match cmd {
        SlabsCommand::Reassign { .. } => (b"CLIENT_ERROR slab reassignment disabled\r\n", false),
        SlabsCommand::Automove { level, noreply } => {
            t.slab_automove.store(level, Ordering::Relaxed);
            (OK, noreply)
        }
        SlabsCommand::AutomoveRatio { bits, noreply } => {
            t.slab_automove_ratio.store(bits, Ordering::Relaxed);
            (OK, noreply)
        }
    };
    if !noreply {
        out.extend_from_slice(reply);
    }
}
