//! The one typed command set: what the text, meta and binary requests that touch an item mean,
//! whatever protocol carried them. Each protocol lowers its request to one of these (text's
//! requests are the plain `new` commands, meta's lowering is `meta/lower.rs`, binary's
//! `binary/lower.rs`) and the server's executor runs it in one place (`server::exec::apply`);
//! the protocol then only encodes the outcome.
//!
//! Where memcached's protocols differ in semantics (not only in reply bytes), the difference is
//! a field here, set by the lowering, so the executor has no per-protocol branch. Keys and
//! values borrow from the input buffer; building a command copies two slices and some integers.

/// memcached's storage commands (its `comm` in `do_store_item`), for every protocol: text's
/// set/add/replace/append/prepend/cas, meta's `ms` modes, binary's set/add/replace (a header
/// CAS makes any of them [`StoreMode::Cas`]) and append/prepend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    /// Compare-and-swap against the given unique.
    Cas(u64),
}

impl StoreMode {
    /// append or prepend: the value joins the old one, whose flags and expiry stay.
    pub fn is_concat(self) -> bool {
        matches!(self, StoreMode::Append | StoreMode::Prepend)
    }
}

/// A write of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreCommand<'a> {
    pub mode: StoreMode,
    pub key: &'a [u8],
    pub flags: u32,
    /// Raw client expiry (0: never; negative: already expired; up to 30 days relative, else
    /// absolute unix time).
    pub exptime: i64,
    /// The value, without the text protocol's trailing "\r\n".
    pub data: &'a [u8],
    /// A CAS id append/prepend must match (meta `C`, binary header CAS); `Cas` carries its own
    /// and set/add/replace never compare. 0 compares as none.
    pub compare: Option<u64>,
    /// meta `I` on a cas: a lower CAS than the item's still stores, marked stale.
    pub allow_stale: bool,
    /// meta `b`: the stored item's key is shown base64 encoded (not for append/prepend, which
    /// keep the old item's key bits).
    pub key_binary: bool,
    /// meta `ms` allocates the new item before it looks at the old one: a failed write unlinks
    /// the key's old value whatever the mode, except append/prepend, whose joined value does not
    /// fit and which answer NOT_STORED. Text and binary unlink after a failed `set` only.
    pub alloc_first: bool,
}

/// incr/decr (text), `ma` (meta), increment/decrement (binary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArithCommand<'a> {
    pub key: &'a [u8],
    pub incr: bool,
    pub delta: u64,
    /// A CAS id the item must hold (meta `C`, binary header CAS); 0 compares as none.
    pub compare: Option<u64>,
    /// What a miss creates instead of answering not found (meta `N` with `J`, binary's initial
    /// value unless the expiration is 0xffffffff).
    pub create: Option<Create>,
}

/// The counter a missed incr/decr creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Create {
    pub initial: u64,
    /// Raw client expiry, as [`StoreCommand::exptime`] (meta applies its `N` TTL while it
    /// builds the reply, so it creates with 0).
    pub exptime: i64,
}

/// delete (text, binary) and `md` (meta).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteCommand<'a> {
    pub key: &'a [u8],
    /// A CAS id the item must hold, compared exactly (binary lowers a 0 header CAS to none).
    pub compare: Option<u64>,
    /// meta `I`: keep the item, marked stale under a new CAS, with this optional raw expiry
    /// (meta `T`), instead of deleting it.
    pub invalidate: Option<Option<i64>>,
    /// memcached's `md` counts a CAS mismatch as a delete miss; binary does not count it.
    pub mismatch_is_miss: bool,
}

impl<'a> StoreCommand<'a> {
    /// A write without options: the text protocol's storage commands as they are.
    pub fn new(mode: StoreMode, key: &'a [u8], flags: u32, exptime: i64, data: &'a [u8]) -> Self {
        StoreCommand {
            mode,
            key,
            flags,
            exptime,
            data,
            compare: None,
            allow_stale: false,
            key_binary: false,
            alloc_first: false,
        }
    }
}

impl<'a> ArithCommand<'a> {
    /// incr/decr without CAS or creation: the text protocol's.
    pub fn new(key: &'a [u8], incr: bool, delta: u64) -> Self {
        ArithCommand {
            key,
            incr,
            delta,
            compare: None,
            create: None,
        }
    }
}

impl<'a> DeleteCommand<'a> {
    /// A plain delete: the text protocol's.
    pub fn new(key: &'a [u8]) -> Self {
        DeleteCommand {
            key,
            compare: None,
            invalidate: None,
            mismatch_is_miss: false,
        }
    }
}
