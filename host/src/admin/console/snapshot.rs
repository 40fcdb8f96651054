//! The host's own metrics read back from their OpenMetrics text ([`crate::metrics::Metrics::encode`])
//! into a map, for the console's overview: the console shows exactly what `/metrics` says,
//! with no second set of counters to drift from it.

use std::collections::BTreeMap;

/// One sample: the full name (with `_total`, `_bucket`… as exposed) and its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric's name as exposed, e.g. `cosell_sync_events_total`.
    pub name: String,
    /// The sample's labels, by name; empty when it has none.
    pub labels: BTreeMap<String, String>,
    /// The sample's value; `+Inf` and `-Inf` are read as infinities.
    pub value: f64,
}

/// Every sample of one scrape.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    samples: Vec<Sample>,
}

impl Snapshot {
    /// Reads OpenMetrics (or Prometheus) text; lines that are not samples are skipped.
    pub fn parse(text: &str) -> Self {
        Self {
            samples: text.lines().filter_map(parse_line).collect(),
        }
    }

    /// The samples named `name` whose labels include every `(label, value)` of `filter`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        filter: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && filter
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|have| have == v))
        })
    }

    /// The sum of the matching samples; `None` when the metric has no such sample (not
    /// registered on this host, or nothing counted yet): the console shows "—" then.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> Option<f64> {
        self.matching(name, filter)
            .map(|s| s.value)
            .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
    }

    /// The values of `label` among the samples named `name`, sorted, without repeats.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .matching(name, &[])
            .filter_map(|s| s.labels.get(label).cloned())
            .collect();
        values.sort();
        values.dedup();
        values
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (name, rest, labels) = match line.find('{') {
        Some(open) if line[..open].find(' ').is_none() => {
            let (labels, after) = parse_labels(&line[open + 1..])?;
            (&line[..open], after, labels)
        }
        _ => {
            let (name, rest) = line.split_once(' ')?;
            (name, rest, BTreeMap::new())
        }
    };
    // The value, then an optional timestamp (and exemplar) after a space.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Reads `a="x",b="y"}` and answers the labels and what follows the `}`.
fn parse_labels(text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                other => value.push(other),
            }
        };
        labels.insert(name.trim().to_owned(), value);
        rest = &after[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP cosell_sync_events Sync events.
# TYPE cosell_sync_events counter
cosell_sync_events_total{side="dataverse",outcome="created"} 3
cosell_sync_events_total{side="dataverse",outcome="updated"} 2
cosell_sync_events_total{side="partner-center",outcome="created"} 1
cosell_queue_events{state="pending"} 7
cosell_odd{text="a \"quoted\" }, value"} 1.5 1700000000
cosell_plain 4
# EOF
"#;

    #[test]
    fn samples_are_read_with_their_labels_and_summed_by_filter() {
        let s = Snapshot::parse(TEXT);
        assert_eq!(
            s.sum("cosell_sync_events_total", &[("side", "dataverse")]),
            Some(5.0)
        );
        assert_eq!(s.sum("cosell_sync_events_total", &[]), Some(6.0));
        assert_eq!(
            s.sum("cosell_queue_events", &[("state", "pending")]),
            Some(7.0)
        );
        assert_eq!(s.sum("cosell_plain", &[]), Some(4.0));
        assert_eq!(
            s.sum("cosell_odd", &[("text", "a \"quoted\" }, value")]),
            Some(1.5)
        );
        assert_eq!(s.sum("cosell_dead_letters", &[]), None);
        assert_eq!(
            s.label_values("cosell_sync_events_total", "side"),
            ["dataverse", "partner-center"]
        );
    }
}
