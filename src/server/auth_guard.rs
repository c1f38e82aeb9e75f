//! What a failed login costs a client (-Y ascii authentication and -S SASL alike): after
//! [`MAX_AUTH_FAILURES`] failed attempts the connection is closed, so password guessing needs a
//! new TCP connection (and, with -Z, a TLS handshake) every few guesses; every failure is
//! logged with the client's address for fail2ban-style tools, at most
//! [`LOG_LINES_PER_SECOND`] lines a second server-wide so that a flood cannot fill the disk.
//!
//! The log line is stable, for a filter to match (`<HOST>` in fail2ban's terms):
//! `auth failure: client <ip> port <port> protocol <ascii|sasl>` followed by
//! `, connection closed` on the attempt that closes it. Leaf module: it knows the counters
//! and the session, not the server.

use super::session::Session;
use super::stats::Stats;
use parking_lot::Mutex;
use std::net::SocketAddr;

/// Failed authentication attempts a connection may make; the last one is answered and the
/// connection closed. memcached has no limit.
pub const MAX_AUTH_FAILURES: u32 = 3;

/// Failure lines logged per second at most (the rest are counted and reported in the next
/// line that is logged).
pub const LOG_LINES_PER_SECOND: u32 = 20;

/// Which login failed, for the log.
#[derive(Debug, Clone, Copy)]
pub enum Mechanism {
    /// -Y: memcached's ascii authentication.
    Ascii,
    /// -S: SASL PLAIN over the binary protocol.
    Sasl,
}

impl Mechanism {
    fn name(self) -> &'static str {
        match self {
            Mechanism::Ascii => "ascii",
            Mechanism::Sasl => "sasl",
        }
    }
}

/// The server-wide rate limit of failure lines.
#[derive(Default)]
pub struct FailureLog {
    /// (the second being counted, lines logged in it, lines suppressed since the last one).
    window: Mutex<(u64, u32, u64)>,
}

impl FailureLog {
    /// Whether a line may be logged now, and how many were suppressed before it.
    fn admit(&self, now_secs: u64) -> Option<u64> {
        let mut w = self.window.lock();
        if w.0 != now_secs {
            w.0 = now_secs;
            w.1 = 0;
        }
        if w.1 >= LOG_LINES_PER_SECOND {
            w.2 += 1;
            return None;
        }
        w.1 += 1;
        Some(std::mem::take(&mut w.2))
    }
}

/// Records one failed attempt of `session`'s client: counts it, logs it (rate-limited) and
/// says whether the connection must now close (the caller answers the attempt first).
pub fn failed(log: &FailureLog, stats: &Stats, session: &mut Session, mech: Mechanism) -> bool {
    session.auth_failures = session.auth_failures.saturating_add(1);
    let close = session.auth_failures >= MAX_AUTH_FAILURES;
    if close {
        Stats::incr(&stats.auth_conns_closed);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if let Some(suppressed) = log.admit(now) {
        let peer = session.peer.strip_prefix("tcp:").unwrap_or(&session.peer);
        let (ip, port) = match peer.parse::<SocketAddr>() {
            Ok(a) => (a.ip().to_string(), a.port().to_string()),
            Err(_) => ("unknown".to_string(), "0".to_string()),
        };
        let closed = if close { ", connection closed" } else { "" };
        let more = if suppressed > 0 {
            format!(" ({suppressed} earlier failure lines suppressed by the rate limit)")
        } else {
            String::new()
        };
        tracing::warn!(
            "auth failure: client {ip} port {port} protocol {}{closed}{more}",
            mech.name()
        );
    }
    close
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_admits_a_bounded_number_of_lines_a_second() {
        let log = FailureLog::default();
        for _ in 0..LOG_LINES_PER_SECOND {
            assert_eq!(log.admit(7), Some(0));
        }
        assert_eq!(log.admit(7), None);
        assert_eq!(log.admit(7), None);
        // A new second: the suppressed lines are reported once.
        assert_eq!(log.admit(8), Some(2));
        assert_eq!(log.admit(8), Some(0));
    }

    #[test]
    fn the_third_failure_closes() {
        let log = FailureLog::default();
        let stats = Stats::default();
        let mut session = Session {
            peer: "tcp:127.0.0.1:4000".into(),
            ..Session::default()
        };
        assert!(!failed(&log, &stats, &mut session, Mechanism::Ascii));
        assert!(!failed(&log, &stats, &mut session, Mechanism::Ascii));
        assert!(failed(&log, &stats, &mut session, Mechanism::Sasl));
        assert_eq!(
            stats
                .auth_conns_closed
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }
}
