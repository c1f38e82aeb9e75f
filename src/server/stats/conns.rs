//! `stats conns`: listening sockets and client connections, by fd, as memcached lists them.

use super::snapshot::{Name, Snapshot, Value};
use crate::server::shared::ServerState;
use std::sync::atomic::Ordering;

pub fn conns(shared: &ServerState) -> Snapshot {
    let now = crate::store::unix_now();
    // Listeners have run no command: memcached counts their idle time from the start.
    let since_start = now.saturating_sub(shared.started_unix) as u64;
    let mut rows: Vec<(i32, Vec<(&'static str, Value)>)> = Vec::new();
    for l in shared.listeners.lock().iter() {
        let mut row = Vec::with_capacity(4);
        if l.udp {
            row.push(("UDP", Value::Word("UDP")));
        }
        row.push(("addr", Value::Text(l.addr.clone())));
        let state = if l.udp { "conn_read" } else { "conn_listening" };
        row.push(("state", Value::Word(state)));
        row.push(("secs_since_last_cmd", Value::Count(since_start)));
        rows.push((l.fd, row));
    }
    for (fd, info) in shared.conns.lock().iter() {
        let state = if info.nread.load(Ordering::Relaxed) {
            "conn_nread"
        } else {
            "conn_parse_cmd"
        };
        let idle = now.saturating_sub(info.last_cmd.load(Ordering::Relaxed)) as u64;
        let row = vec![
            ("addr", Value::Text(info.peer.clone())),
            ("listen_addr", Value::Text(info.listen.clone())),
            ("state", Value::Word(state)),
            ("secs_since_last_cmd", Value::Count(idle)),
        ];
        rows.push((*fd, row));
    }
    rows.sort_by_key(|(fd, _)| *fd);
    let mut s = Snapshot::default();
    for (fd, row) in rows {
        for (name, value) in row {
            s.push(Name::Conn(fd, name), value);
        }
    }
    s
}
