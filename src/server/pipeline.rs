//! The request pipeline of one connection: parse every complete request in the input buffer,
//! apply parse errors' effects, execute, and keep memcached's reply write points, so that
//! pipelined clients see exactly memcached's bytes. Used by the TCP loop (connection.rs) and the
//! UDP front end alike; it does no I/O.

use super::auth_guard::{self, Mechanism};
use super::counters::Stats;
use super::exec::apply;
use super::exec::binary as exec_binary;
use super::exec::text::{self as exec, get_until};
use super::session::{Flow, HeldItems, Proto, Session, MEMCACHED_READ_BUFFER};
use super::shared::ServerState;
use crate::config::BindingProtocol;
use crate::protocol::auth::{self, Step};
use crate::protocol::binary::{self, Close, ErrorKind as BinErrorKind, Sasl};
use crate::protocol::reply::{
    AUTH_BAD_FORMAT, AUTH_FAILURE, BAD_TERMINATION, OUT_OF_MEMORY_GET, STORED, UNAUTHENTICATED,
};
use crate::protocol::{text, tokens, Effect, Parsed, Request};
use bytes::{Buf, BytesMut};

/// Replies are written early once this much is pending (huge multi-gets), so memory per
/// connection stays bounded.
pub const FLUSH_AT: usize = 256 * 1024;

/// How many bytes the next socket read may add to `rbuf`, `None` for no limit beyond the
/// caller's chunk. A text connection reads the way memcached 1.6.18 does, because a client can
/// see it: memcached closes a connection when a line without "\n" in its buffer is over 2048
/// bytes (not get/gets), so whether a long line that does end in "\n" is answered or closes
/// depends on how much of it was buffered when its start was reached. memcached's reads fill
/// its 16 KiB buffer (`16384 - buffered`), a swallowed block is read at most 16 KiB at a time
/// and no further than its end, and a data block being stored is read straight from the socket
/// up to its end. So for a pipelined batch that is all in the socket, both servers see the same
/// buffer at every line, whatever this connection's buffer held before.
/// Before `-Y` authentication (`authenticating`) memcached reads the credentials block into its
/// buffer like a line: only the 16 KiB rule applies.
pub fn read_limit(session: &Session, rbuf: &[u8], authenticating: bool) -> Option<usize> {
    if session.proto != Proto::Text {
        return None;
    }
    if session.swallow > 0 && !authenticating {
        return Some(session.swallow.min(MEMCACHED_READ_BUFFER));
    }
    // After `process`, a complete line left in the buffer waits for its data block.
    if !authenticating && memchr::memchr(b'\n', rbuf).is_some() {
        return text::block_end(rbuf).map(|end| end.saturating_sub(rbuf.len()).max(1));
    }
    // A multi-get line longer than the buffer: memcached grows its buffer; no limit.
    MEMCACHED_READ_BUFFER
        .checked_sub(rbuf.len())
        .filter(|n| *n > 0)
}

/// Parses and executes the complete requests in `rbuf`, appending replies to `out`. Returns
/// the flow and whether it stopped for want of input (false: it paused because `out` is large).
/// Also used by the UDP front end for the requests of one datagram.
///
/// memcached queues replies and writes them only at certain points (after each successful get,
/// after `mn`, every 20 requests, when input runs out); a get refused for an over-long key and a
/// silent close throw away what is queued but unwritten. `written` tracks where the last such
/// point was in `out` (see [`Session`]), so pipelined clients see exactly memcached's bytes.
pub fn process(
    shared: &ServerState,
    session: &mut Session,
    rbuf: &mut BytesMut,
    out: &mut Vec<u8>,
) -> (Flow, bool) {
    match session.proto {
        Proto::Text => {}
        Proto::Binary => return process_binary(shared, session, rbuf, out),
        Proto::Undecided => {
            let Some(&first) = rbuf.first() else {
                return (Flow::Continue, true);
            };
            let is_binary = binary::is_binary_start(first);
            match (shared.config.protocol, is_binary) {
                // memcached would sit waiting for a line or a header that never comes; we
                // hang up at once so that the client sees its mistake.
                (BindingProtocol::Ascii, true) | (BindingProtocol::Binary, false) => {
                    return (Flow::Close, true)
                }
                (_, true) => {
                    session.proto = Proto::Binary;
                    return process_binary(shared, session, rbuf, out);
                }
                (_, false) => session.proto = Proto::Text,
            }
        }
    }
    if shared.config.auth_file.is_some() && !session.authenticated {
        if let Some(done) = authenticate(shared, session, rbuf, out) {
            return done;
        }
    }
    let mut requests = 0usize;
    loop {
        if session.swallow > 0 {
            let n = session.swallow.min(rbuf.len());
            rbuf.advance(n);
            session.swallow -= n;
            if session.swallow > 0 {
                session.block_from_socket = true;
                return (Flow::Continue, true);
            }
            if std::mem::take(&mut session.block_from_socket) {
                session.write_point(out.len());
            }
        }
        if rbuf.is_empty() {
            return (Flow::Continue, true);
        }
        let mut resume = None;
        let (consumed, flow) = match text::parse(rbuf, &shared.limits) {
            Parsed::Request(req, n) => {
                let flow = text_request(shared, session, &req, n, out, &mut resume, rbuf);
                (n, flow)
            }
            Parsed::Incomplete => {
                // A complete line still waiting means its data block is being read.
                if memchr::memchr(b'\n', rbuf).is_some() {
                    session.block_from_socket = true;
                }
                return (Flow::Continue, true);
            }
            Parsed::Error {
                kind,
                noreply,
                consumed,
                swallow,
                effect,
            } => {
                let close = effect == Effect::Close;
                apply_effect(shared, session, effect, out);
                if !noreply {
                    out.extend_from_slice(kind.reply());
                }
                session.swallow = swallow;
                if consumed + swallow > MEMCACHED_READ_BUFFER {
                    session.block_from_socket = true;
                }
                // A bad data chunk read from the socket ends its read like a stored one.
                if swallow == 0 && std::mem::take(&mut session.block_from_socket) {
                    session.write_point(out.len());
                }
                (consumed, if close { Flow::Close } else { Flow::Continue })
            }
        };
        if let Some((at, line)) = resume {
            // The rest of a multi-get, rewritten in place as a get of the remaining keys (it
            // fits: at least one key and its space were before them). The caller writes what
            // is pending, then comes back for it.
            rbuf[at - line.len()..at].copy_from_slice(&line);
            rbuf.advance(at - line.len());
            return (Flow::Continue, false);
        }
        rbuf.advance(consumed);
        requests += 1;
        if requests > shared.config.reqs_per_event
            && (requests - 1) % shared.config.reqs_per_event.max(1) == 0
        {
            // memcached yields the connection here (`conn_yields`): its -R budget is spent.
            Stats::incr(&shared.stats.conn_yields);
            session.write_point(out.len());
        }
        if flow != Flow::Continue {
            return (flow, true);
        }
        if out.len() >= FLUSH_AT {
            // Let the caller write before more replies pile up.
            return (Flow::Continue, false);
        }
    }
}

/// Executes one parsed text request of `n` input bytes within the reply budget and keeps the
/// write points. A multi-get stopped half way sets `resume` (see [`resumed_get`]).
fn text_request(
    shared: &ServerState,
    session: &mut Session,
    req: &Request<'_>,
    n: usize,
    out: &mut Vec<u8>,
    resume: &mut Option<(usize, Vec<u8>)>,
    rbuf: &[u8],
) -> Flow {
    let flow = match over_reply_limit(shared, req, &mut session.replies) {
        Some(Flow::Continue) => {
            out.extend_from_slice(OUT_OF_MEMORY_GET);
            Flow::Continue
        }
        Some(flow) => {
            // memcached has no room for even an error: it drops what it queued.
            out.truncate(session.written);
            flow
        }
        None => {
            let (flow, rest) = execute_bounded(shared, req, out, &mut session.held);
            if let Some(rest) = rest {
                *resume = resumed_get(req, rest, rbuf);
                if resume.is_none() {
                    // No room to rewrite the line: finish it in one piece.
                    get_slice(shared, req, rest, out, usize::MAX);
                }
            }
            flow
        }
    };
    let from_socket = std::mem::take(&mut session.block_from_socket) || n > MEMCACHED_READ_BUFFER;
    if is_write_point(req) || from_socket {
        session.write_point(out.len());
    }
    flow
}

/// Applies what memcached does for a refused text request besides answering it.
fn apply_effect(shared: &ServerState, session: &Session, effect: Effect<'_>, out: &mut Vec<u8>) {
    match effect {
        Effect::None => {}
        Effect::Close => out.truncate(session.written),
        Effect::TooLarge { unlink, counts_set } => apply::store::refused_too_large(
            &shared.store,
            &shared.stats,
            unlink.as_deref(),
            counts_set,
        ),
        Effect::RefusedGet {
            keys,
            with_cas,
            touch,
        } => {
            // The keys before the bad one were fetched and touched; only the replies go, with
            // everything queued and not yet written.
            let mut scratch = Vec::new();
            let mut rest = Some(keys);
            while let Some(keys) = rest {
                scratch.clear();
                rest = get_until(shared, keys, with_cas, touch, &mut scratch, FLUSH_AT);
            }
            out.truncate(session.written);
        }
    }
}

/// `-Y`: answers the authentication steps at the start of `rbuf` (see `protocol::auth`) until
/// the connection has authenticated, then returns `None` and the caller serves the rest of the
/// input; otherwise what [`process`] returns. Every step consumes input, so this ends.
///
/// memcached's authentication path reuses the connection's current reply object when one is
/// still unwritten, so of several steps answered between two writes only the last reply
/// survives ("get a\r\nset ... foo bar\r\n" answers STORED alone). Before authentication all
/// of `out` is such replies: each one replaces what is queued since the last write point.
fn authenticate(
    shared: &ServerState,
    session: &mut Session,
    rbuf: &mut BytesMut,
    out: &mut Vec<u8>,
) -> Option<(Flow, bool)> {
    let mut unwritten = out.len();
    let mut steps = 0usize;
    loop {
        let (consumed, reply) = match auth::parse(rbuf) {
            Step::Incomplete => return Some((Flow::Continue, true)),
            Step::Close => {
                // memcached's conn_closing: what is queued is never written.
                out.truncate(session.written);
                return Some((Flow::Close, true));
            }
            Step::Unauthenticated { consumed } => (consumed, UNAUTHENTICATED),
            Step::BadTermination { consumed } => (consumed, BAD_TERMINATION),
            Step::BadFormat { consumed } => (consumed, AUTH_BAD_FORMAT),
            Step::Credentials {
                user,
                password,
                consumed,
            } => {
                Stats::incr(&shared.stats.auth_cmds);
                // A throttled source is answered unchecked; either way the failure that ends
                // the budget is answered, then the connection closes and what follows in the
                // input is never read.
                let throttled = auth_guard::throttled(
                    &shared.auth_guard,
                    &shared.stats,
                    session,
                    Mechanism::Ascii,
                );
                let close = if throttled {
                    true
                } else if shared.check_ascii(user, password) {
                    session.authenticated = true;
                    false
                } else {
                    Stats::incr(&shared.stats.auth_errors);
                    auth_guard::failed(&shared.auth_guard, &shared.stats, session, Mechanism::Ascii)
                };
                if close {
                    out.truncate(unwritten);
                    out.extend_from_slice(AUTH_FAILURE);
                    rbuf.advance(consumed);
                    return Some((Flow::Close, true));
                }
                let reply = if session.authenticated {
                    STORED
                } else {
                    AUTH_FAILURE
                };
                (consumed, reply)
            }
        };
        out.truncate(unwritten);
        out.extend_from_slice(reply);
        rbuf.advance(consumed);
        // The -R write points of the text pipeline (see `process`).
        steps += 1;
        let per_event = shared.config.reqs_per_event.max(1);
        if steps > per_event && (steps - 1) % per_event == 0 {
            unwritten = out.len();
        }
        if session.authenticated {
            return None;
        }
        if out.len() >= FLUSH_AT {
            return Some((Flow::Continue, false));
        }
    }
}

/// Whether `req` would queue more replies than the connection's budget allows, and then what
/// memcached does: a get is answered `SERVER_ERROR out of memory writing get response`
/// (`Continue`), anything else closes the connection. Counted in `response_obj_oom`.
fn over_reply_limit(shared: &ServerState, req: &Request<'_>, replies: &mut usize) -> Option<Flow> {
    let slots = shared.reply_slots?;
    let (cost, is_get) = match req {
        Request::Get { keys, .. } | Request::GetAndTouch { keys, .. } => {
            (tokens::keys(keys).count(), true)
        }
        _ => (1, false),
    };
    if *replies + cost <= slots {
        *replies += cost;
        return None;
    }
    Stats::incr(&shared.stats.response_obj_oom);
    if is_get {
        // The get's own replies are released; its error takes one.
        *replies += 1;
        Some(Flow::Continue)
    } else {
        Some(Flow::Close)
    }
}

/// Executes `req`; a multi-get stops once `out` reaches [`FLUSH_AT`] and returns the keys it
/// has not fetched yet, so that no single request makes a reply larger than that plus one item.
fn execute_bounded<'r>(
    shared: &ServerState,
    req: &Request<'r>,
    out: &mut Vec<u8>,
    held: &mut HeldItems,
) -> (Flow, Option<&'r [u8]>) {
    match req {
        Request::Get { keys, .. } | Request::GetAndTouch { keys, .. } => {
            (Flow::Continue, get_slice(shared, req, keys, out, FLUSH_AT))
        }
        _ => (exec::execute(shared, req, out, held), None),
    }
}

/// Fetches `keys` of the get-family request `req` until `out` reaches `until` bytes.
fn get_slice<'k>(
    shared: &ServerState,
    req: &Request<'_>,
    keys: &'k [u8],
    out: &mut Vec<u8>,
    until: usize,
) -> Option<&'k [u8]> {
    let (with_cas, touch) = match req {
        Request::Get { with_cas, .. } => (*with_cas, None),
        Request::GetAndTouch {
            with_cas, exptime, ..
        } => (*with_cas, Some(*exptime)),
        _ => return None,
    };
    get_until(shared, keys, with_cas, touch, out, until)
}

/// Where the unfetched keys `rest` of `req` start in `rbuf`, and the command line prefix
/// (`get `, `gats <exptime> `, ...) to put just before them. `None` if it would not fit.
fn resumed_get(req: &Request<'_>, rest: &[u8], rbuf: &[u8]) -> Option<(usize, Vec<u8>)> {
    let at = (rest.as_ptr() as usize).checked_sub(rbuf.as_ptr() as usize)?;
    let line = match req {
        Request::Get { with_cas, .. } => {
            if *with_cas {
                b"gets ".to_vec()
            } else {
                b"get ".to_vec()
            }
        }
        Request::GetAndTouch {
            with_cas, exptime, ..
        } => format!("{} {exptime} ", if *with_cas { "gats" } else { "gat" }).into_bytes(),
        _ => return None,
    };
    (line.len() <= at && at <= rbuf.len()).then_some((at, line))
}

/// Requests after which memcached writes its queued replies.
fn is_write_point(req: &Request<'_>) -> bool {
    match req {
        Request::Get { .. } | Request::GetAndTouch { .. } => true,
        Request::Meta(m) => m.is_noop(),
        _ => false,
    }
}

/// [`process`] for a binary-protocol connection, with memcached's reply flushing rules (see
/// `protocol::binary`): replies are queued and written when the input runs dry, after noop
/// and quit, and after every error that discards nothing; an error that discards bytes waits
/// for the next write; a silent close loses what is queued since the last write point.
fn process_binary(
    shared: &ServerState,
    session: &mut Session,
    rbuf: &mut BytesMut,
    out: &mut Vec<u8>,
) -> (Flow, bool) {
    let mut requests = 0usize;
    loop {
        if session.swallow > 0 {
            let n = session.swallow.min(rbuf.len());
            rbuf.advance(n);
            session.swallow -= n;
            if session.swallow > 0 {
                session.block_from_socket = true;
                return (Flow::Continue, true);
            }
            // memcached read the rest of the discarded bytes straight from the socket, so its
            // buffer is empty when they end: a write point.
            if std::mem::take(&mut session.block_from_socket) {
                session.write_point(out.len());
            }
        }
        if rbuf.is_empty() {
            return (Flow::Continue, true);
        }
        let sasl = match (&shared.config.sasl, session.authenticated) {
            (None, _) => Sasl::Disabled,
            (Some(_), false) => Sasl::Required,
            (Some(_), true) => Sasl::Authenticated,
        };
        let (consumed, flow) = match binary::parse(rbuf, &shared.limits, sasl) {
            Ok(None) => {
                // Past the header memcached reads the rest of a request straight from the
                // socket (conn_nread): it holds its replies meanwhile, and its buffer is empty
                // once the request is complete, a write point.
                if rbuf.len() >= binary::HEADER_LEN {
                    session.block_from_socket = true;
                }
                return (Flow::Continue, true);
            }
            Ok(Some((req, n))) => {
                // A SASL login runs unauthenticated, so that a failed one shows as such even on
                // a connection that had logged in before (it stays logged in: memcached's rule).
                let login = matches!(req.command, binary::Command::SaslAuth { .. });
                if login
                    && auth_guard::throttled(
                        &shared.auth_guard,
                        &shared.stats,
                        session,
                        Mechanism::Sasl,
                    )
                {
                    // Answered unchecked, then closed, as the last allowed failure is.
                    Stats::incr(&shared.stats.auth_cmds);
                    binary::encode_error(req.opcode, req.opaque, binary::Status::AuthError, out);
                    session.write_point(out.len());
                    return (Flow::Close, true);
                }
                let was_authenticated = login && std::mem::take(&mut session.authenticated);
                let mut done = exec_binary::execute(
                    shared,
                    &req,
                    out,
                    &mut session.held,
                    &mut session.authenticated,
                );
                if login && !session.authenticated {
                    session.authenticated = was_authenticated;
                    if auth_guard::failed(
                        &shared.auth_guard,
                        &shared.stats,
                        session,
                        Mechanism::Sasl,
                    ) {
                        done.flow = Flow::Close;
                        done.flush = true;
                    }
                }
                let from_socket =
                    std::mem::take(&mut session.block_from_socket) || n > MEMCACHED_READ_BUFFER;
                if done.flush || from_socket {
                    session.write_point(out.len());
                }
                (n, done.flow)
            }
            Err(e) => {
                e.encode(out);
                if e.kind == BinErrorKind::TooLarge {
                    apply::store::refused_too_large(&shared.store, &shared.stats, e.unlink, false);
                }
                session.swallow = e.swallow;
                if e.consumed + e.swallow > MEMCACHED_READ_BUFFER {
                    session.block_from_socket = true;
                }
                let flow = match e.close {
                    Close::Now => {
                        out.truncate(session.written);
                        Flow::Close
                    }
                    Close::AfterReply => Flow::Close,
                    Close::No => {
                        if e.swallow == 0 {
                            session.write_point(out.len());
                        }
                        Flow::Continue
                    }
                };
                (e.consumed, flow)
            }
        };
        rbuf.advance(consumed.min(rbuf.len()));
        requests += 1;
        if requests % shared.config.reqs_per_event.max(1) == 0 {
            // The -R budget is spent: memcached yields the connection (`conn_yields`).
            Stats::incr(&shared.stats.conn_yields);
            session.write_point(out.len());
        }
        if flow != Flow::Continue {
            return (flow, true);
        }
        if out.len() >= FLUSH_AT {
            return (Flow::Continue, false);
        }
    }
}
