//! Reading samples out of an OpenMetrics / Prometheus text exposition.

use std::collections::BTreeMap;

/// One sample: metric name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed `/metrics` answer (the text is kept for messages).
#[derive(Debug, Clone)]
pub struct MetricsText {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl MetricsText {
    /// Parses every sample line (comments and malformed lines are skipped).
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(sample)
            .collect();
        Self {
            text: text.to_string(),
            samples,
        }
    }

    /// The samples of `name` whose labels include every pair of `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The value of the one sample of `name` with exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.find(name, labels)
            .into_iter()
            .find(|s| s.labels.len() == labels.len())
            .map(|s| s.value)
    }

    /// Whether a `# TYPE name kind` line declares `name`.
    pub fn declares(&self, name: &str, kind: &str) -> bool {
        self.text
            .lines()
            .any(|l| l == format!("# TYPE {name} {kind}"))
    }
}

fn sample(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find('{') {
        Some(i) => (line.get(..i)?, line.get(i..)?),
        None => {
            let (n, r) = line.split_once(' ')?;
            return Some(Sample {
                name: n.to_string(),
                labels: BTreeMap::new(),
                value: r.split_whitespace().next()?.parse().ok()?,
            });
        }
    };
    let close = rest.rfind('}')?;
    let labels = labels(rest.get(1..close)?)?;
    let value = rest
        .get(close + 1..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `a="x",b="y\"z"` → {a: x, b: y"z}.
fn labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek() == Some(&',') || chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key.trim().to_string(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_labelled_and_plain_samples() {
        let m = MetricsText::parse(
            "# TYPE a counter\na_total{route=\"/x,y\",agent=\"q\\\"\"} 3\nb 1.5\n# EOF\n",
        );
        assert!(m.declares("a", "counter"));
        assert_eq!(
            m.value("a_total", &[("route", "/x,y"), ("agent", "q\"")]),
            Some(3.0)
        );
        assert_eq!(m.value("b", &[]), Some(1.5));
        assert_eq!(m.value("a_total", &[("route", "/x,y")]), None);
        assert_eq!(m.find("a_total", &[("route", "/x,y")]).len(), 1);
    }
}
