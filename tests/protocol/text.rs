//! Exact request -> reply bytes for every text-protocol command, over a real socket.
//!
//! The same table runs against repcached and, when it is installed, against /usr/bin/memcached
//! 1.6 (the reference): the memcached run proves that the expected bytes are memcached's own.
//! Every case starts from an empty cache (`flush_all`) on a fresh connection; all cases run and
//! every mismatch is reported together.

use crate::harness::{Client, Server};

/// One step of a case.
enum Step {
    /// Write these bytes (all of them in one write: several commands are a pipeline).
    Send(Vec<u8>),
    /// Like Send, with every `{cas}` replaced by the last CAS value captured.
    SendCas(&'static str),
    /// Read exactly these bytes.
    Expect(Vec<u8>),
    /// Read `prefix`, then a decimal CAS value (captured), then `suffix`.
    ExpectCas(&'static str, &'static str),
    /// Read a line that starts with this prefix (for replies that differ between servers).
    ExpectLinePrefix(&'static str),
    /// The server closes the connection without sending anything more.
    Closed,
}

use Step::*;

struct Case {
    name: &'static str,
    steps: Vec<Step>,
}

fn send(s: &str) -> Step {
    Send(s.as_bytes().to_vec())
}

fn expect(s: &str) -> Step {
    Expect(s.as_bytes().to_vec())
}

fn case(name: &'static str, steps: Vec<Step>) -> Case {
    Case { name, steps }
}

/// A request then its exact reply.
fn rr(name: &'static str, request: &str, reply: &str) -> Case {
    case(name, vec![send(request), expect(reply)])
}

fn cases() -> Vec<Case> {
    let key250 = "k".repeat(250);
    let key251 = "k".repeat(251);
    let big_ok = vec![b'v'; 1_000_000];
    let too_big = vec![b'v'; 2 * 1024 * 1024];
    let at_limit = vec![b'v'; 1024 * 1024];

    let mut big_set = b"set big 0 0 1000000\r\n".to_vec();
    big_set.extend_from_slice(&big_ok);
    big_set.extend_from_slice(b"\r\nget big\r\n");
    let mut big_reply = b"STORED\r\nVALUE big 0 1000000\r\n".to_vec();
    big_reply.extend_from_slice(&big_ok);
    big_reply.extend_from_slice(b"\r\nEND\r\n");

    let mut too_big_set = b"set a 0 0 1\r\nx\r\nset a 0 0 2097152\r\n".to_vec();
    too_big_set.extend_from_slice(&too_big);
    too_big_set.extend_from_slice(b"\r\nget a\r\n");

    let mut at_limit_set = b"set a 0 0 1048576\r\n".to_vec();
    at_limit_set.extend_from_slice(&at_limit);
    at_limit_set.extend_from_slice(b"\r\nget a\r\n");

    let mut too_big_noreply = b"set a 0 0 2097152 noreply\r\n".to_vec();
    too_big_noreply.extend_from_slice(&too_big);
    too_big_noreply.extend_from_slice(b"\r\nverbosity 0\r\n");

    // memcached's exact limit: 56 bytes of item header + key + 1 + value + 2 <= -I.
    let fits = limit_case(1_048_516, "STORED\r\n");
    let one_over = limit_case(1_048_517, "SERVER_ERROR object too large for cache\r\n");

    let binary: Vec<u8> = (0u8..=255).collect();
    let mut binary_set = b"set bin 0 0 256\r\n".to_vec();
    binary_set.extend_from_slice(&binary);
    binary_set.extend_from_slice(b"\r\nget bin\r\n");
    let mut binary_reply = b"STORED\r\nVALUE bin 0 256\r\n".to_vec();
    binary_reply.extend_from_slice(&binary);
    binary_reply.extend_from_slice(b"\r\nEND\r\n");

    vec![
        // ---- storage and retrieval
        rr("set_get", "set a 5 0 3\r\nabc\r\nget a\r\n", "STORED\r\nVALUE a 5 3\r\nabc\r\nEND\r\n"),
        rr("get_miss", "get nope\r\n", "END\r\n"),
        rr("empty_value", "set e 0 0 0\r\n\r\nget e\r\n", "STORED\r\nVALUE e 0 0\r\n\r\nEND\r\n"),
        rr(
            "max_flags",
            "set f 4294967295 0 1\r\nx\r\nget f\r\n",
            "STORED\r\nVALUE f 4294967295 1\r\nx\r\nEND\r\n",
        ),
        rr(
            "multi_get_with_misses_and_duplicates",
            "set a 0 0 1\r\n1\r\nset b 1 0 1\r\n2\r\nget a b c a\r\n",
            "STORED\r\nSTORED\r\nVALUE a 0 1\r\n1\r\nVALUE b 1 1\r\n2\r\nVALUE a 0 1\r\n1\r\nEND\r\n",
        ),
        rr(
            "extra_spaces_between_tokens",
            "set a 0 0 1\r\nx\r\nget  a   a \r\n",
            "STORED\r\nVALUE a 0 1\r\nx\r\nVALUE a 0 1\r\nx\r\nEND\r\n",
        ),
        rr("bare_newline_terminator", "set a 0 0 1\nx\r\nget a\n", "STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n"),
        rr(
            "set_overwrites",
            "set a 0 0 1\r\n1\r\nset a 2 0 2\r\n22\r\nget a\r\n",
            "STORED\r\nSTORED\r\nVALUE a 2 2\r\n22\r\nEND\r\n",
        ),
        case("binary_safe_value", vec![Send(binary_set), Expect(binary_reply)]),
        case("value_of_1000000_bytes", vec![Send(big_set), Expect(big_reply)]),
        rr(
            "key_of_250_bytes",
            &format!("set {key250} 0 0 1\r\nx\r\nget {key250}\r\n"),
            &format!("STORED\r\nVALUE {key250} 0 1\r\nx\r\nEND\r\n"),
        ),
        rr(
            "add",
            "add a 0 0 1\r\n1\r\nadd a 0 0 1\r\n2\r\nget a\r\n",
            "STORED\r\nNOT_STORED\r\nVALUE a 0 1\r\n1\r\nEND\r\n",
        ),
        rr(
            "replace",
            "replace a 0 0 1\r\n1\r\nget a\r\nset a 0 0 1\r\n1\r\nreplace a 3 0 1\r\n2\r\nget a\r\n",
            "NOT_STORED\r\nEND\r\nSTORED\r\nSTORED\r\nVALUE a 3 1\r\n2\r\nEND\r\n",
        ),
        rr(
            "append_prepend_keep_flags",
            "append a 0 0 1\r\nc\r\nprepend a 0 0 1\r\nc\r\nset a 7 0 1\r\nx\r\nappend a 9 0 1\r\nc\r\nprepend a 9 0 1\r\nb\r\nget a\r\n",
            "NOT_STORED\r\nNOT_STORED\r\nSTORED\r\nSTORED\r\nSTORED\r\nVALUE a 7 3\r\nbxc\r\nEND\r\n",
        ),
        case(
            "gets_cas",
            vec![
                send("set a 0 0 1\r\nx\r\n"),
                expect("STORED\r\n"),
                send("gets a\r\n"),
                ExpectCas("VALUE a 0 1 ", "\r\nx\r\nEND\r\n"),
                SendCas("cas a 0 0 1 {cas}\r\ny\r\n"),
                expect("STORED\r\n"),
                SendCas("cas a 0 0 1 {cas}\r\nz\r\nget a\r\n"),
                expect("EXISTS\r\nVALUE a 0 1\r\ny\r\nEND\r\n"),
                send("cas nope 0 0 1 1\r\nz\r\n"),
                expect("NOT_FOUND\r\n"),
            ],
        ),
        case(
            "cas_changes_on_every_write",
            vec![
                send("set a 0 0 1\r\nx\r\ngets a\r\n"),
                ExpectCas("STORED\r\nVALUE a 0 1 ", "\r\nx\r\nEND\r\n"),
                send("append a 0 0 1\r\ny\r\n"),
                expect("STORED\r\n"),
                SendCas("cas a 0 0 1 {cas}\r\nz\r\n"),
                expect("EXISTS\r\n"),
            ],
        ),
        rr("delete", "set a 0 0 1\r\nx\r\ndelete a\r\ndelete a\r\nget a\r\n", "STORED\r\nDELETED\r\nNOT_FOUND\r\nEND\r\n"),
        rr("delete_with_zero_time", "set a 0 0 1\r\nx\r\ndelete a 0\r\n", "STORED\r\nDELETED\r\n"),
        rr(
            "delete_with_time_refused",
            "delete a 5\r\n",
            "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
        ),
        // ---- incr / decr
        rr(
            "incr_decr",
            "set n 0 0 2\r\n10\r\nincr n 5\r\ndecr n 3\r\nincr nope 1\r\ndecr nope 1\r\n",
            "STORED\r\n15\r\n12\r\nNOT_FOUND\r\nNOT_FOUND\r\n",
        ),
        rr("decr_clamps_at_zero", "set n 0 0 1\r\n5\r\ndecr n 100\r\n", "STORED\r\n0\r\n"),
        // Wraps at 2**64. Not from a stored value >= 2**63: memcached 1.6.18 then reads past the
        // value looking for a '-' and randomly answers "non-numeric".
        rr(
            "incr_wraps_at_2_64",
            "set n 0 0 1\r\n2\r\nincr n 18446744073709551615\r\n",
            "STORED\r\n1\r\n",
        ),
        rr(
            "incr_grows_the_value",
            "set n 0 0 2\r\n99\r\nincr n 1\r\nget n\r\n",
            "STORED\r\n100\r\nVALUE n 0 3\r\n100\r\nEND\r\n",
        ),
        // memcached rewrites a shrinking number in place, padded with spaces to the old length.
        rr(
            "decr_shrinks_in_place_padded",
            "set n 0 0 3\r\n100\r\ndecr n 91\r\nget n\r\n",
            "STORED\r\n9\r\nVALUE n 0 3\r\n9  \r\nEND\r\n",
        ),
        rr(
            "incr_non_numeric",
            "set s 0 0 2\r\nab\r\nincr s 1\r\ndecr s 1\r\n",
            "STORED\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        ),
        rr(
            "incr_bad_delta",
            "set n 0 0 1\r\n1\r\nincr n abc\r\nincr n -1\r\nincr n 18446744073709551616\r\n",
            "STORED\r\nCLIENT_ERROR invalid numeric delta argument\r\nCLIENT_ERROR invalid numeric delta argument\r\nCLIENT_ERROR invalid numeric delta argument\r\n",
        ),
        // ---- touch / gat / expiry
        rr(
            "touch",
            "touch a 10\r\nset a 0 0 1\r\nx\r\ntouch a 100\r\ntouch a abc\r\n",
            "NOT_FOUND\r\nSTORED\r\nTOUCHED\r\nCLIENT_ERROR invalid exptime argument\r\n",
        ),
        rr("touch_negative_expires", "set a 0 0 1\r\nx\r\ntouch a -1\r\nget a\r\n", "STORED\r\nTOUCHED\r\nEND\r\n"),
        rr("set_negative_ttl_expires", "set a 0 -1 1\r\nx\r\nget a\r\n", "STORED\r\nEND\r\n"),
        rr("set_absolute_past_ttl_expires", "set a 0 2592001 1\r\nx\r\nget a\r\n", "STORED\r\nEND\r\n"),
        rr(
            "gat",
            "set a 3 0 1\r\nx\r\ngat 100 a nope\r\ngat abc a\r\n",
            "STORED\r\nVALUE a 3 1\r\nx\r\nEND\r\nCLIENT_ERROR invalid exptime argument\r\n",
        ),
        rr("gat_negative_expires", "set a 0 0 1\r\nx\r\ngat -1 a\r\nget a\r\n", "STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\nEND\r\n"),
        case(
            "gats",
            vec![send("set a 0 0 1\r\nx\r\ngats 0 a\r\n"), ExpectCas("STORED\r\nVALUE a 0 1 ", "\r\nx\r\nEND\r\n")],
        ),
        // ---- flush_all, verbosity, version, stats
        rr(
            "flush_all",
            "set a 0 0 1\r\nx\r\nflush_all\r\nget a\r\nset a 0 0 1\r\ny\r\nget a\r\nflush_all 0\r\nflush_all noreply\r\nget a\r\n",
            "STORED\r\nOK\r\nEND\r\nSTORED\r\nVALUE a 0 1\r\ny\r\nEND\r\nOK\r\nEND\r\n",
        ),
        rr("flush_all_bad_delay", "flush_all abc\r\n", "CLIENT_ERROR invalid exptime argument\r\n"),
        rr(
            "verbosity",
            "verbosity 1\r\nverbosity 0 noreply\r\nverbosity 0\r\nverbosity\r\n",
            "OK\r\nOK\r\nERROR\r\n",
        ),
        case("version", vec![send("version\r\n"), ExpectLinePrefix("VERSION ")]),
        case("stats_starts_with_pid", vec![send("stats\r\n"), ExpectLinePrefix("STAT pid ")]),
        // ---- noreply
        rr(
            "noreply_everywhere",
            "set a 0 0 1 noreply\r\n1\r\nadd b 0 0 1 noreply\r\n2\r\nadd a 0 0 1 noreply\r\nx\r\n\
             replace a 0 0 1 noreply\r\n3\r\nappend a 0 0 1 noreply\r\n4\r\nprepend a 0 0 1 noreply\r\n5\r\n\
             set n 0 0 1 noreply\r\n7\r\nincr n 2 noreply\r\ndecr n 1 noreply\r\ntouch a 100 noreply\r\n\
             delete b noreply\r\ncas a 0 0 1 1 noreply\r\nz\r\nincr nope 1 noreply\r\nget a b n\r\n",
            "VALUE a 0 3\r\n534\r\nVALUE n 0 1\r\n8\r\nEND\r\n",
        ),
        // ---- pipelining: many commands in one write, replies in order
        rr(
            "pipeline",
            "set a 0 0 1\r\n1\r\nget a\r\nincr a 1\r\ngets nope\r\ndelete a\r\nget a\r\nbogus\r\nverbosity 0\r\n",
            "STORED\r\nVALUE a 0 1\r\n1\r\nEND\r\n2\r\nEND\r\nDELETED\r\nEND\r\nERROR\r\nOK\r\n",
        ),
        // ---- errors that keep the connection
        rr("unknown_command", "bogus\r\nGET a\r\n", "ERROR\r\nERROR\r\n"),
        rr("empty_line", "\r\n", "ERROR\r\n"),
        rr("get_without_key", "get\r\ngets\r\n", "ERROR\r\nERROR\r\n"),
        rr("get_key_251", &format!("get {key251}\r\n"), "CLIENT_ERROR bad command line format\r\n"),
        // The rejected command line's data is then read as a command (memcached does not swallow it).
        rr(
            "set_key_251",
            &format!("set {key251} 0 0 1\r\nx\r\n"),
            "CLIENT_ERROR bad command line format\r\nERROR\r\n",
        ),
        rr(
            "set_bad_flags_keeps_old_value",
            "set a 0 0 1\r\nx\r\nset a abc 0 1\r\ny\r\nget a\r\n",
            "STORED\r\nCLIENT_ERROR bad command line format\r\nERROR\r\nVALUE a 0 1\r\nx\r\nEND\r\n",
        ),
        rr("set_negative_length", "set a 0 0 -1\r\n", "CLIENT_ERROR bad command line format\r\n"),
        rr("set_bad_exptime", "set a 0 abc 1\r\nx\r\n", "CLIENT_ERROR bad command line format\r\nERROR\r\n"),
        rr("set_missing_tokens", "set a 0 0\r\n", "ERROR\r\n"),
        rr(
            "set_too_many_tokens",
            "set a 0 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25\r\nx\r\n",
            "ERROR\r\nERROR\r\n",
        ),
        rr(
            "bad_data_chunk",
            "set a 0 0 1\r\nx\r\nset a 0 0 1\r\nabc\r\nget a\r\n",
            "STORED\r\nCLIENT_ERROR bad data chunk\r\nERROR\r\nVALUE a 0 1\r\nx\r\nEND\r\n",
        ),
        rr("cas_bad_unique", "cas a 0 0 1 abc\r\nx\r\n", "CLIENT_ERROR bad command line format\r\nERROR\r\n"),
        rr("cas_missing_unique", "cas a 0 0 1\r\nx\r\n", "ERROR\r\nERROR\r\n"),
        // Too large: the data is swallowed, and the old value is gone.
        case(
            "too_large_swallowed_and_old_value_dropped",
            vec![Send(too_big_set), expect("STORED\r\nSERVER_ERROR object too large for cache\r\nEND\r\n")],
        ),
        // An item of exactly -I bytes of value does not fit: the limit counts the item's overhead.
        case(
            "value_of_item_size_max_too_large",
            vec![Send(at_limit_set), expect("SERVER_ERROR object too large for cache\r\nEND\r\n")],
        ),
        case("too_large_noreply_is_silent", vec![Send(too_big_noreply), expect("OK\r\n")]),
        case("largest_value_that_fits_with_key_a", fits),
        case("one_byte_over_the_largest_value", one_over),
        rr("shutdown_not_enabled", "shutdown\r\n", "ERROR: shutdown not enabled\r\n"),
        // ---- meta commands
        rr("mn", "mn\r\n", "MN\r\n"),
        rr(
            "meta_set_get_delete",
            "ms a 2 F5\r\nhi\r\nmg a v\r\nmg a s f v k\r\nmg a\r\nmd a\r\nmg a v\r\nmd a\r\nmg a k O9 q\r\nmn\r\n",
            "HD\r\nVA 2\r\nhi\r\nVA 2 s2 f5 ka\r\nhi\r\nHD\r\nHD\r\nEN\r\nNF\r\nMN\r\n",
        ),
        rr("meta_miss_opaque_key", "mg nope k O1\r\n", "EN knope O1\r\n"),
        rr(
            "meta_arithmetic",
            "ma n\r\nma n N0 J5\r\nma n\r\nma n v\r\nma n MD D3 v\r\n",
            "NF\r\nHD\r\nHD\r\nVA 1\r\n7\r\nVA 1\r\n4\r\n",
        ),
        rr("meta_bad_flag", "mg a !\r\n", "CLIENT_ERROR invalid flag\r\n"),
        // ---- errors that close the connection
        case("quit", vec![send("set a 0 0 1\r\nx\r\nquit\r\n"), expect("STORED\r\n"), Closed]),
        case("line_too_long_closes", vec![Send(vec![b'x'; 3000]), Closed]),
        case("http_request_closes", vec![send("GET / HTTP/1.1\r\n"), Closed]),
        // ---- a long line (not get) that ends in "\n": answered when its "\n" is within what
        // memcached buffered at the line's start, or its buffered part is at most 2048 bytes
        // (then it reads on); closed when over 2048 bytes of it are buffered without the "\n".
        // Its reads fill a 16 KiB buffer and stop at the end of a data block.
        case(
            "long_line_answered_after_earlier_traffic",
            vec![
                Send(b"mn\r\n".repeat(3000)),
                Expect(b"MN\r\n".repeat(3000)),
                Send(long_line(10_000)),
                expect("ERROR\r\n"),
            ],
        ),
        case(
            "long_line_after_large_block_answered",
            vec![
                Send([set_block(20_000), long_line(15_000)].concat()),
                expect("STORED\r\nERROR\r\n"),
            ],
        ),
        case(
            "long_line_2381_bytes_buffered_closes",
            vec![
                Send([b"touch a 0 noreply\r\n".repeat(737), long_line(3000)].concat()),
                Closed,
            ],
        ),
        case(
            "long_line_1374_bytes_buffered_answered",
            vec![
                Send([b"touch a 0 noreply\r\n".repeat(790), long_line(3000)].concat()),
                expect("ERROR\r\n"),
            ],
        ),
    ]
}

/// A line of `len` bytes (its "\r\n" included) that is no command.
fn long_line(len: usize) -> Vec<u8> {
    let mut line = vec![b'z'; len - 2];
    line.extend_from_slice(b"\r\n");
    line
}

/// `set a` with a data block of `len` bytes.
fn set_block(len: usize) -> Vec<u8> {
    let mut req = format!("set a 0 0 {len}\r\n").into_bytes();
    req.resize(req.len() + len, b'v');
    req.extend_from_slice(b"\r\n");
    req
}

/// `set a` with a value of `len` bytes, answered by `reply`.
fn limit_case(len: usize, reply: &str) -> Vec<Step> {
    let mut req = format!("set a 0 0 {len}\r\n").into_bytes();
    req.resize(req.len() + len, b'v');
    req.extend_from_slice(b"\r\n");
    vec![Send(req), expect(reply)]
}

/// Runs one case on a fresh connection after emptying the cache; returns the failure, if any.
fn run_case(server: &Server, case: &Case) -> Result<(), String> {
    let mut admin = server.client();
    admin.send(b"flush_all\r\n").map_err(|e| e.to_string())?;
    let reply = admin.read_n(4);
    if reply != b"OK\r\n" {
        return Err(format!(
            "flush_all before the case answered {:?}",
            String::from_utf8_lossy(&reply)
        ));
    }
    let mut c: Client = server.client();
    let mut cas = String::new();
    for (i, step) in case.steps.iter().enumerate() {
        let at = format!("step {i}");
        match step {
            Send(bytes) => c.send(bytes).map_err(|e| format!("{at}: send: {e}"))?,
            SendCas(text) => c
                .send(text.replace("{cas}", &cas).as_bytes())
                .map_err(|e| format!("{at}: send: {e}"))?,
            Expect(want) => {
                let got = c.read_n(want.len());
                if &got != want {
                    return Err(format!(
                        "{at}: expected {:?}\n     got {:?}",
                        shorten(want),
                        shorten(&got)
                    ));
                }
            }
            ExpectCas(prefix, suffix) => {
                let got = c.read_n(prefix.len());
                if got != prefix.as_bytes() {
                    return Err(format!(
                        "{at}: expected {prefix:?}, got {:?}",
                        shorten(&got)
                    ));
                }
                let mut digits = String::new();
                loop {
                    let b = c.read_n(1);
                    match b.first() {
                        Some(d) if d.is_ascii_digit() => digits.push(*d as char),
                        Some(other) => {
                            let mut rest = vec![*other];
                            rest.extend(c.read_n(suffix.len() - 1));
                            if digits.is_empty() || rest != suffix.as_bytes() {
                                return Err(format!(
                                    "{at}: expected {prefix}<cas>{suffix:?}, got cas {digits:?} then {:?}",
                                    shorten(&rest)
                                ));
                            }
                            break;
                        }
                        None => return Err(format!("{at}: reply ended inside the cas value")),
                    }
                }
                cas = digits;
            }
            ExpectLinePrefix(prefix) => {
                let line = c.read_line();
                if !line.starts_with(prefix.as_bytes()) || !line.ends_with(b"\r\n") {
                    return Err(format!(
                        "{at}: expected a line starting {prefix:?}, got {:?}",
                        shorten(&line)
                    ));
                }
            }
            Closed => {
                if let Err(extra) = c.closed() {
                    return Err(format!(
                        "{at}: expected the server to close, got {:?}",
                        shorten(&extra)
                    ));
                }
            }
        }
    }
    Ok(())
}

fn shorten(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.len() > 300 {
        format!("{}...({} bytes)", &s[..300], bytes.len())
    } else {
        s.into_owned()
    }
}

fn run_table(mut server: Server) {
    let mut failures = Vec::new();
    let all = cases();
    for case in &all {
        if let Err(why) = run_case(&server, case) {
            failures.push(format!("[{}] {}", case.name, why));
        }
        if !server.alive() {
            failures.push(format!(
                "[{}] the server died: {:?}",
                case.name,
                server.stderr_lines()
            ));
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed against {}:\n{}",
        failures.len(),
        all.len(),
        server.name,
        failures.join("\n")
    );
}

#[test]
fn text_protocol_repcached() {
    run_table(Server::repcached(&["-m", "64", "-I", "1048576"]));
}

#[test]
fn text_protocol_reference_memcached() {
    match Server::memcached(&["-m", "64", "-I", "1048576"]) {
        Some(server) => run_table(server),
        None => eprintln!(
            "{} is not installed: reference run skipped",
            crate::harness::MEMCACHED
        ),
    }
}
