//! The snapshot's types: a statistic's [`Name`] and typed [`Value`], and the ordered
//! [`Snapshot`] of one group, with memcached's text rendering.

use crate::protocol::reply::push_u64;
use crate::replication::ReportValue;
use std::borrow::Cow;
use std::fmt;

/// A statistic's name. Per-class and per-connection names keep their parts apart, so that
/// readers (the exporter) group them without splitting strings.
#[derive(Debug, Clone, PartialEq)]
pub enum Name {
    /// A plain field: `pid`.
    Field(&'static str),
    /// A slab class's field (`stats slabs`): `1:chunk_size`.
    Slab(u32, &'static str),
    /// A slab class's item field (`stats items`): `items:1:number`.
    Item(u32, &'static str),
    /// A socket's field (`stats conns`), by fd: `5:addr`.
    Conn(i32, &'static str),
    /// A name made elsewhere (replication's rows, `peer0:addr`).
    Owned(String),
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Name::Field(n) => f.write_str(n),
            Name::Slab(class, n) => write!(f, "{class}:{n}"),
            Name::Item(class, n) => write!(f, "items:{class}:{n}"),
            Name::Conn(fd, n) => write!(f, "{fd}:{n}"),
            Name::Owned(n) => f.write_str(n),
        }
    }
}

impl From<&'static str> for Name {
    fn from(name: &'static str) -> Name {
        Name::Field(name)
    }
}

impl From<String> for Name {
    fn from(name: String) -> Name {
        Name::Owned(name)
    }
}

/// A statistic's value, typed as its owner knows it; [`fmt::Display`] is memcached's format.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A counter or gauge: decimal.
    Count(u64),
    /// CPU time as memcached prints it: `seconds.microseconds` (six digits).
    CpuTime { secs: i64, micros: i64 },
    /// `yes` or `no`.
    YesNo(bool),
    /// A fixed word (`tokio`, `NULL`, `1.25`, `on`).
    Word(&'static str),
    /// Text made at run time (addresses, paths, values other modules hand over as text).
    Text(String),
}

impl Value {
    /// The value as text (no copy for words and text).
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Value::Word(w) => Cow::Borrowed(w),
            Value::Text(t) => Cow::Borrowed(t),
            other => Cow::Owned(other.to_string()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Count(n) => write!(f, "{n}"),
            Value::CpuTime { secs, micros } => write!(f, "{secs}.{micros:06}"),
            Value::YesNo(b) => f.write_str(if *b { "yes" } else { "no" }),
            Value::Word(w) => f.write_str(w),
            Value::Text(t) => f.write_str(t),
        }
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Value {
        Value::Count(n)
    }
}

impl From<ReportValue> for Value {
    fn from(v: ReportValue) -> Value {
        match v {
            ReportValue::Count(n) => Value::Count(n),
            ReportValue::Word(w) => Value::Word(w),
            ReportValue::Text(t) => Value::Text(t),
        }
    }
}

/// One statistic.
#[derive(Debug, Clone, PartialEq)]
pub struct Stat {
    pub name: Name,
    pub value: Value,
}

impl Stat {
    /// memcached's `STAT name value\r\n`.
    pub fn write_text(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        out.extend_from_slice(b"STAT ");
        match &self.name {
            Name::Field(n) => out.extend_from_slice(n.as_bytes()),
            name => {
                let _ = write!(out, "{name}");
            }
        }
        out.push(b' ');
        match &self.value {
            Value::Count(n) => push_u64(out, *n),
            Value::Word(w) => out.extend_from_slice(w.as_bytes()),
            Value::Text(t) => out.extend_from_slice(t.as_bytes()),
            value => {
                let _ = write!(out, "{value}");
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// An ordered list of statistics, as one `stats` group reports them.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub stats: Vec<Stat>,
}

impl Snapshot {
    pub fn field(&mut self, name: &'static str, value: Value) {
        self.push(Name::Field(name), value);
    }

    pub fn count(&mut self, name: &'static str, n: u64) {
        self.push(Name::Field(name), Value::Count(n));
    }

    pub fn push(&mut self, name: Name, value: Value) {
        self.stats.push(Stat { name, value });
    }

    /// Rows another module hands over typed as (name, value), e.g. replication's.
    pub fn extend<N: Into<Name>, V: Into<Value>>(
        &mut self,
        rows: impl IntoIterator<Item = (N, V)>,
    ) {
        for (name, value) in rows {
            self.push(name.into(), value.into());
        }
    }

    /// Rows another module hands over as (name, text).
    pub fn extend_text<N: Into<Name>>(&mut self, rows: impl IntoIterator<Item = (N, String)>) {
        for (name, value) in rows {
            self.push(name.into(), Value::Text(value));
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Stat> {
        self.stats.iter()
    }

    /// Every statistic as `STAT` lines (no `END`).
    pub fn write_text(&self, out: &mut Vec<u8>) {
        for s in &self.stats {
            s.write_text(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_are_memcacheds() {
        let mut s = Snapshot::default();
        s.count("pid", 12);
        s.field(
            "rusage_user",
            Value::CpuTime {
                secs: 3,
                micros: 4_005,
            },
        );
        s.field("cas_enabled", Value::YesNo(true));
        s.push(Name::Slab(1, "chunk_size"), Value::Count(96));
        s.push(Name::Item(1, "number"), Value::Count(0));
        s.push(Name::Conn(7, "addr"), Value::Text("tcp:127.0.0.1:5".into()));
        s.push(
            Name::Owned("peer0:last_error".into()),
            Value::Text("a b".into()),
        );
        s.field("empty", Value::Text(String::new()));
        let mut out = Vec::new();
        s.write_text(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "STAT pid 12\r\nSTAT rusage_user 3.004005\r\nSTAT cas_enabled yes\r\n\
             STAT 1:chunk_size 96\r\nSTAT items:1:number 0\r\nSTAT 7:addr tcp:127.0.0.1:5\r\n\
             STAT peer0:last_error a b\r\nSTAT empty \r\n"
        );
        assert_eq!(Value::Count(u64::MAX).text(), u64::MAX.to_string());
    }
}
