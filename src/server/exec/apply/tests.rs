//! The executor's own table: one command per row, lowered the way each protocol lowers it,
//! run on a store prepared for the row, with the outcome, the key left behind and every
//! counter that moved. It pins where memcached's protocols differ in semantics (failed-write
//! unlink, CAS counters, delete misses) and where they agree (incr/decr hits and misses).

use super::arith::{arith, ArithOutcome};
use super::delete::{delete, DeleteOutcome};
use super::store::store;
use crate::protocol::binary::lower;
use crate::protocol::command::{ArithCommand, DeleteCommand, StoreCommand};
use crate::protocol::meta::MetaCmd;
use crate::protocol::{meta, ParseLimits, Parsed, Request, StoreMode};
use crate::server::counters::Stats;
use crate::server::session::HeldItems;
use crate::store::{Expiry, Store, StoreConfig, StoreError, StoreOutcome, WriteMode};
use std::sync::atomic::Ordering;

const MAX: usize = 1024;

fn setup(value: Option<&[u8]>) -> (Store, Stats, u64) {
    let store = Store::new(StoreConfig {
        shards: 1,
        item_size_max: MAX,
        ..StoreConfig::default()
    });
    let mut cas = 0;
    if let Some(v) = value {
        let outcome = store
            .entry(b"k")
            .store(WriteMode::Set, 0, Expiry::Never, v, None, false);
        let StoreOutcome::Stored(c) = outcome else {
            panic!("setup store: {outcome:?}")
        };
        cas = c;
    }
    (store, Stats::default(), cas)
}

/// Counter names and values.
type Counters = Vec<(&'static str, u64)>;

/// The counters that moved, sorted by name.
fn moved(stats: &Stats) -> Counters {
    let mut moved: Vec<_> = stats
        .snapshot()
        .into_iter()
        .filter(|(_, n)| *n != 0)
        .collect();
    moved.sort();
    moved
}

fn value(store: &Store) -> Option<Vec<u8>> {
    store.entry(b"k").item().map(|it| it.value().to_vec())
}

/// One meta command line (with its data), parsed by the meta parser.
/// (Leaked so that the command lowered from it may live as long as the table.)
fn meta_cmd(line: &str) -> &'static MetaCmd<'static> {
    let input: &'static [u8] = Box::leak(line.as_bytes().to_vec().into_boxed_slice());
    match meta::parse(input, &ParseLimits::default()) {
        Parsed::Request(Request::Meta(meta::MetaRequest::Cmd(cmd)), _) => Box::leak(Box::new(cmd)),
        other => panic!("{line:?}: {other:?}"),
    }
}

fn run_store(
    prior: Option<&[u8]>,
    cmd: impl Fn(u64) -> StoreCommand<'static>,
) -> (StoreOutcome, Option<Vec<u8>>, Counters) {
    let (st, stats, cas) = setup(prior);
    let outcome = store(&mut st.entry(b"k"), &stats, &cmd(cas));
    let outcome = match outcome {
        StoreOutcome::Stored(_) => StoreOutcome::Stored(0),
        other => other,
    };
    (outcome, value(&st), moved(&stats))
}

#[test]
fn storage_commands() {
    let big: &'static [u8] = Box::leak(vec![b'x'; MAX + 1].into_boxed_slice());
    let meta_big: &'static str =
        Box::leak(format!("ms k {} MA\r\n{}\r\n", MAX + 1, "x".repeat(MAX + 1)).into_boxed_str());
    let meta_big_add: &'static str =
        Box::leak(format!("ms k {} ME\r\n{}\r\n", MAX + 1, "x".repeat(MAX + 1)).into_boxed_str());
    type Row = (
        &'static str,
        Option<&'static [u8]>,
        Box<dyn Fn(u64) -> StoreCommand<'static>>,
        StoreOutcome,
        Option<&'static [u8]>,
        &'static [(&'static str, u64)],
    );
    let stored = StoreOutcome::Stored(0);
    let too_large = StoreOutcome::Error(StoreError::TooLarge);
    let rows: Vec<Row> = vec![
        (
            "text cas hit",
            Some(b"old"),
            Box::new(|cas| StoreCommand::new(StoreMode::Cas(cas), b"k", 0, 0, b"new")),
            stored,
            Some(b"new"),
            &[("cas_hits", 1), ("cmd_set", 1)],
        ),
        (
            "text cas badval",
            Some(b"old"),
            Box::new(|cas| StoreCommand::new(StoreMode::Cas(cas + 1), b"k", 0, 0, b"new")),
            StoreOutcome::Exists,
            Some(b"old"),
            &[("cas_badval", 1), ("cmd_set", 1)],
        ),
        (
            "binary header cas on a missing key",
            None,
            Box::new(|_| lower::store(7, StoreMode::Set, b"k", 0, 0, b"new")),
            StoreOutcome::NotFound,
            None,
            &[("cas_misses", 1), ("cmd_set", 1)],
        ),
        (
            "meta C on set is a cas",
            Some(b"old"),
            Box::new(|cas| {
                let line = Box::leak(format!("ms k 3 C{cas}\r\nnew\r\n").into_boxed_str());
                meta_cmd(line).store_command()
            }),
            stored,
            Some(b"new"),
            &[("cas_hits", 1), ("cmd_set", 1)],
        ),
        (
            "binary append with a wrong header cas is not a cas",
            Some(b"old"),
            Box::new(|cas| lower::concat(cas + 1, true, b"k", b"+")),
            StoreOutcome::Exists,
            Some(b"old"),
            &[("cmd_set", 1)],
        ),
        (
            "failed text set unlinks the old value",
            Some(b"old"),
            Box::new(|_| StoreCommand::new(StoreMode::Set, b"k", 0, 0, big)),
            too_large,
            None,
            &[("cmd_set", 1), ("store_too_large", 1)],
        ),
        (
            "failed text add keeps it",
            Some(b"old"),
            Box::new(|_| StoreCommand::new(StoreMode::Add, b"k", 0, 0, big)),
            too_large,
            Some(b"old"),
            &[("cmd_set", 1), ("store_too_large", 1)],
        ),
        (
            "failed ms add unlinks it (memcached allocates first)",
            Some(b"old"),
            Box::new(move |_| StoreCommand {
                key: b"k",
                data: big,
                ..meta_cmd(meta_big_add).store_command()
            }),
            too_large,
            None,
            &[("cmd_set", 1), ("store_too_large", 1)],
        ),
        (
            "ms append that cannot grow is NS, uncounted",
            Some(b"old"),
            Box::new(move |_| StoreCommand {
                key: b"k",
                data: big,
                ..meta_cmd(meta_big).store_command()
            }),
            StoreOutcome::NotStored,
            Some(b"old"),
            &[("cmd_set", 1)],
        ),
    ];
    for (name, prior, cmd, outcome, left, counters) in rows {
        let (got, got_left, got_counters) = run_store(prior, cmd);
        assert_eq!(got, outcome, "{name}");
        assert_eq!(got_left.as_deref(), left, "{name}");
        assert_eq!(got_counters, counters.to_vec(), "{name}");
    }
}

fn run_arith(
    prior: Option<&[u8]>,
    cmd: impl Fn(u64) -> ArithCommand<'static>,
) -> (ArithOutcome, Counters) {
    let (st, stats, cas) = setup(prior);
    let outcome = arith(
        &mut st.entry(b"k"),
        &stats,
        &cmd(cas),
        &HeldItems::default(),
    );
    let outcome = match outcome {
        ArithOutcome::Done { value, created, .. } => ArithOutcome::Done {
            value,
            cas: 0,
            created,
        },
        other => other,
    };
    (outcome, moved(&stats))
}

#[test]
fn arithmetic() {
    let done = |value, created| ArithOutcome::Done {
        value,
        cas: 0,
        created,
    };
    type Row = (
        &'static str,
        Option<&'static [u8]>,
        Box<dyn Fn(u64) -> ArithCommand<'static>>,
        ArithOutcome,
        &'static [(&'static str, u64)],
    );
    let rows: Vec<Row> = vec![
        (
            "text incr",
            Some(b"41"),
            Box::new(|_| ArithCommand::new(b"k", true, 1)),
            done(42, false),
            &[("incr_hits", 1)],
        ),
        (
            "text decr miss",
            None,
            Box::new(|_| ArithCommand::new(b"k", false, 1)),
            ArithOutcome::NotFound,
            &[("decr_misses", 1)],
        ),
        // memcached 1.6 counts a hit only once the value parsed as a number.
        (
            "text incr of a non-number",
            Some(b"abc"),
            Box::new(|_| ArithCommand::new(b"k", true, 1)),
            ArithOutcome::NonNumeric,
            &[],
        ),
        (
            "binary empty value before the cas",
            Some(b""),
            Box::new(|cas| lower::counter(cas + 1, true, b"k", 1, None, 0)),
            ArithOutcome::NonNumeric,
            &[],
        ),
        (
            "binary wrong cas",
            Some(b"1"),
            Box::new(|cas| lower::counter(cas + 1, true, b"k", 1, None, 0)),
            ArithOutcome::Exists,
            &[],
        ),
        (
            "binary miss creates",
            None,
            Box::new(|_| lower::counter(0, true, b"k", 1, Some(5), 0)),
            done(5, true),
            &[],
        ),
        (
            "binary miss with 0xffffffff",
            None,
            Box::new(|_| lower::counter(0, true, b"k", 1, None, u32::MAX)),
            ArithOutcome::NotFound,
            &[("incr_misses", 1)],
        ),
        (
            "ma N creates with J",
            None,
            Box::new(|_| ArithCommand {
                key: b"k",
                ..meta_cmd("ma k N0 J9\r\n").arith_command()
            }),
            done(9, true),
            &[],
        ),
    ];
    for (name, prior, cmd, outcome, counters) in rows {
        let (got, got_counters) = run_arith(prior, cmd);
        assert_eq!(got, outcome, "{name}");
        assert_eq!(got_counters, counters.to_vec(), "{name}");
    }
}

#[test]
fn deletes() {
    type Row = (
        &'static str,
        Box<dyn Fn(u64) -> DeleteCommand<'static>>,
        DeleteOutcome,
        bool,
        &'static [(&'static str, u64)],
    );
    let rows: Vec<Row> = vec![
        (
            "text delete",
            Box::new(|_| DeleteCommand::new(b"k")),
            DeleteOutcome::Deleted,
            false,
            &[("delete_hits", 1)],
        ),
        (
            "binary wrong cas: not a miss",
            Box::new(|cas| lower::delete(cas + 1, b"k")),
            DeleteOutcome::Exists,
            true,
            &[],
        ),
        (
            "md wrong cas: a miss",
            Box::new(|cas| {
                let line = Box::leak(format!("md k C{}\r\n", cas + 1).into_boxed_str());
                DeleteCommand {
                    key: b"k",
                    ..meta_cmd(line).delete_command()
                }
            }),
            DeleteOutcome::Exists,
            true,
            &[("delete_misses", 1)],
        ),
        (
            "md I keeps the item",
            Box::new(|_| DeleteCommand {
                key: b"k",
                ..meta_cmd("md k I\r\n").delete_command()
            }),
            DeleteOutcome::Invalidated,
            true,
            &[],
        ),
    ];
    for (name, cmd, outcome, kept, counters) in rows {
        let (st, stats, cas) = setup(Some(b"v"));
        let got = delete(&mut st.entry(b"k"), &stats, &cmd(cas));
        assert_eq!(got, outcome, "{name}");
        assert_eq!(value(&st).is_some(), kept, "{name}");
        assert_eq!(moved(&stats), counters.to_vec(), "{name}");
    }
    let (st, stats, _) = setup(None);
    let got = delete(&mut st.entry(b"k"), &stats, &DeleteCommand::new(b"k"));
    assert_eq!(got, DeleteOutcome::NotFound);
    assert_eq!(stats.delete_misses.load(Ordering::Relaxed), 1);
}
