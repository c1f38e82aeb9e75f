//! The Prometheus text format (0.0.4): families of samples, each family written in one block
//! with its HELP and TYPE lines, label values escaped.

use std::collections::BTreeMap;
use std::fmt::Write as _;

pub const COUNTER: &str = "counter";
pub const GAUGE: &str = "gauge";
pub const HISTOGRAM: &str = "histogram";

/// Families of samples, kept by name so that each family is written in one block.
#[derive(Default)]
pub struct Families {
    map: BTreeMap<String, Family>,
}

struct Family {
    help: &'static str,
    kind: &'static str,
    samples: Vec<String>,
}

impl Families {
    pub fn add(
        &mut self,
        name: &str,
        help: &'static str,
        kind: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        self.add_sample(name, name, help, kind, labels, value);
    }

    /// A sample under `family` whose series is called `series` (histograms: `_bucket`, ...).
    pub fn add_sample(
        &mut self,
        family: &str,
        series: &str,
        help: &'static str,
        kind: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let f = self.map.entry(family.to_string()).or_insert(Family {
            help,
            kind,
            samples: Vec::new(),
        });
        let mut s = series.to_string();
        if !labels.is_empty() {
            s.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(s, "{k}=\"{v}\"");
            }
            s.push('}');
        }
        let _ = write!(s, " {value}");
        f.samples.push(s);
    }

    pub fn write(&self, out: &mut String) {
        for (name, f) in &self.map {
            let _ = writeln!(out, "# HELP {name} {}", f.help);
            let _ = writeln!(out, "# TYPE {name} {}", f.kind);
            for s in &f.samples {
                out.push_str(s);
                out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_block_per_family_and_escaped_labels() {
        let mut f = Families::default();
        f.add("a_total", "help", COUNTER, &[("x", "q\"uote")], 2.0);
        f.add("a_total", "help", COUNTER, &[("x", "y")], 3.0);
        let mut s = String::new();
        f.write(&mut s);
        assert_eq!(
            s,
            "# HELP a_total help\n# TYPE a_total counter\na_total{x=\"q\\\"uote\"} 2\na_total{x=\"y\"} 3\n"
        );
    }
}
