//! Machine-readable output of `policyctl test`: OPA's JSON result list,
//! OPA's coverage report, JUnit XML, and the evidence report a release
//! pipeline keeps.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Serialize;
use sha2::Digest;

use crate::test_report::{Counts, Outcome, SubResult, TestResult};

/// One test in `opa test --format json`'s shape.
#[derive(Debug, Serialize)]
pub struct JsonResult {
    pub location: JsonLocation,
    pub package: String,
    pub name: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fail: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<JsonError>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skip: bool,
    /// Nanoseconds.
    pub duration: u128,
    /// `print()` output, base64 as Go marshals a byte slice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sub_results: BTreeMap<String, JsonSubResult>,
}

#[derive(Debug, Serialize)]
pub struct JsonLocation {
    pub file: String,
    pub row: u32,
    pub col: u32,
}

#[derive(Debug, Serialize)]
pub struct JsonError {
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct JsonSubResult {
    pub name: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fail: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sub_results: BTreeMap<String, JsonSubResult>,
}

impl JsonResult {
    pub fn from_result(result: &TestResult<'_>) -> Self {
        let test = result.test;
        let output = (!result.prints.is_empty()).then(|| {
            // OPA's captured output is the printed message alone; this
            // engine prefixes each with `file:row: `.
            let mut text = String::new();
            for line in &result.prints {
                text.push_str(without_location(line));
                text.push('\n');
            }
            base64::engine::general_purpose::STANDARD.encode(text)
        });
        Self {
            location: JsonLocation {
                file: test.file.clone(),
                row: test.row,
                col: test.col,
            },
            package: test.package.clone(),
            name: test.short_name().to_string(),
            fail: result.outcome == Outcome::Fail,
            error: match &result.outcome {
                Outcome::Error(message) => Some(JsonError {
                    code: crate::conformance::classify_error(message),
                    message: message.clone(),
                }),
                _ => None,
            },
            skip: result.outcome == Outcome::Skipped,
            duration: result.duration.as_nanos(),
            output,
            sub_results: sub_results(&result.cases),
        }
    }
}

/// `message` of a `file:row: message` print line.
fn without_location(line: &str) -> &str {
    let mut search = 0;
    while let Some(colon) = line[search..].find(':').map(|i| i + search) {
        let rest = &line[colon + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with(": ") {
            return &rest[digits + 2..];
        }
        search = colon + 1;
    }
    line
}

/// The flat depth-first case list as OPA's nested `sub_results`.
fn sub_results(cases: &[SubResult]) -> BTreeMap<String, JsonSubResult> {
    fn build(cases: &[SubResult], i: &mut usize, depth: usize) -> BTreeMap<String, JsonSubResult> {
        let mut out = BTreeMap::new();
        while let Some(case) = cases.get(*i) {
            if case.depth < depth {
                break;
            }
            *i += 1;
            let children = build(cases, i, depth + 1);
            out.insert(
                case.name.clone(),
                JsonSubResult {
                    name: case.name.clone(),
                    fail: !case.passed,
                    sub_results: children,
                },
            );
        }
        out
    }
    let mut i = 0;
    build(cases, &mut i, 0)
}

/// A line range of OPA's coverage report.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Range {
    pub start: Row,
    pub end: Row,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Row {
    pub row: u32,
}

/// Coverage of one file, in OPA's shape.
#[derive(Debug, Default, Serialize)]
pub struct FileCoverage {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub covered: Vec<Range>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_covered: Vec<Range>,
    #[serde(skip_serializing_if = "is_zero")]
    pub covered_lines: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub not_covered_lines: usize,
    #[serde(skip_serializing_if = "is_zero_f64", serialize_with = "go_float")]
    pub coverage: f64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_zero_f64(n: &f64) -> bool {
    *n == 0.0
}

/// OPA's coverage report (`opa test --coverage`).
#[derive(Debug, Default, Serialize)]
pub struct Coverage {
    pub files: BTreeMap<String, FileCoverage>,
    pub covered_lines: usize,
    pub not_covered_lines: usize,
    #[serde(serialize_with = "go_float")]
    pub coverage: f64,
}

/// A float as Go's `encoding/json` writes it: integral values without `.0`.
fn go_float<S: serde::Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        s.serialize_i64(*value as i64)
    } else {
        s.serialize_f64(*value)
    }
}

impl Coverage {
    /// Builds the report from each file's covered and not-covered rows.
    pub fn from_rows(files: BTreeMap<String, (Vec<u32>, Vec<u32>)>) -> Self {
        let mut report = Coverage::default();
        for (path, (mut covered, mut not_covered)) in files {
            covered.sort_unstable();
            covered.dedup();
            not_covered.sort_unstable();
            not_covered.dedup();
            not_covered.retain(|r| covered.binary_search(r).is_err());
            let covered = ranges(&covered);
            let not_covered = ranges(&not_covered);
            let covered_lines = lines(&covered);
            let not_covered_lines = lines(&not_covered);
            report.covered_lines += covered_lines;
            report.not_covered_lines += not_covered_lines;
            report.files.insert(
                path,
                FileCoverage {
                    covered,
                    not_covered,
                    covered_lines,
                    not_covered_lines,
                    coverage: percent(covered_lines, not_covered_lines),
                },
            );
        }
        report.coverage = percent(report.covered_lines, report.not_covered_lines);
        report
    }

    /// `Code coverage threshold not met: …` with every uncovered range, as
    /// OPA prints it.
    pub fn threshold_message(&self, threshold: f64) -> String {
        let mut text = format!(
            "Code coverage threshold not met: got {:.2} instead of {threshold:.2}",
            self.coverage
        );
        if !self.files.is_empty() {
            text.push_str("\nLines not covered:");
            for (file, report) in &self.files {
                for r in &report.not_covered {
                    if r.start == r.end {
                        let _ = write!(text, "\n\t{file}:{}", r.start.row);
                    } else {
                        let _ = write!(text, "\n\t{file}:{}-{}", r.start.row, r.end.row);
                    }
                }
            }
        }
        text
    }
}

fn percent(covered: usize, not_covered: usize) -> f64 {
    let total = covered + not_covered;
    if total == 0 {
        return 0.0;
    }
    100.0 * covered as f64 / total as f64
}

fn lines(ranges: &[Range]) -> usize {
    ranges
        .iter()
        .map(|r| (r.end.row - r.start.row + 1) as usize)
        .sum()
}

/// Sorted, deduplicated rows as ranges of consecutive rows.
fn ranges(rows: &[u32]) -> Vec<Range> {
    let mut out: Vec<Range> = Vec::new();
    for &row in rows {
        match out.last_mut() {
            Some(r) if r.end.row + 1 == row => r.end.row = row,
            Some(r) if r.end.row == row => {}
            _ => out.push(Range {
                start: Row { row },
                end: Row { row },
            }),
        }
    }
    out
}

/// JUnit XML: one `<testsuite>` per file, one `<testcase>` per test.
pub fn junit(results: &[TestResult<'_>], counts: &Counts) -> String {
    let mut by_file: BTreeMap<&str, Vec<&TestResult<'_>>> = BTreeMap::new();
    for r in results {
        by_file.entry(r.test.file.as_str()).or_default().push(r);
    }
    let total_secs: f64 = results.iter().map(|r| r.duration.as_secs_f64()).sum();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"policyctl test\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{total_secs:.6}\">",
        counts.passed + counts.failed + counts.errored + counts.skipped,
        counts.failed,
        counts.errored,
        counts.skipped,
    );
    for (file, tests) in by_file {
        let count = |o: fn(&Outcome) -> bool| tests.iter().filter(|t| o(&t.outcome)).count();
        let failures = count(|o| *o == Outcome::Fail);
        let errors = count(|o| matches!(o, Outcome::Error(_)));
        let skipped = count(|o| *o == Outcome::Skipped);
        let secs: f64 = tests.iter().map(|t| t.duration.as_secs_f64()).sum();
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{secs:.6}\">",
            escape(file),
            tests.len(),
        );
        for t in tests {
            let _ = write!(
                xml,
                "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" line=\"{}\" time=\"{:.6}\"",
                escape(t.test.short_name()),
                escape(&t.test.package),
                escape(file),
                t.test.row,
                t.duration.as_secs_f64(),
            );
            let failed_cases: Vec<&str> = t
                .cases
                .iter()
                .filter(|c| !c.passed)
                .map(|c| c.name.as_str())
                .collect();
            let body = match &t.outcome {
                Outcome::Pass if t.prints.is_empty() => None,
                Outcome::Pass => Some(String::new()),
                Outcome::Fail if failed_cases.is_empty() => {
                    Some("      <failure message=\"test failed\"/>\n".to_string())
                }
                Outcome::Fail => Some(format!(
                    "      <failure message=\"failing cases: {}\"/>\n",
                    escape(&failed_cases.join(", "))
                )),
                Outcome::Error(message) => Some(format!(
                    "      <error message=\"{}\" type=\"{}\"/>\n",
                    escape(message),
                    crate::conformance::classify_error(message),
                )),
                Outcome::Skipped => Some("      <skipped/>\n".to_string()),
            };
            match body {
                None => xml.push_str("/>\n"),
                Some(mut inner) => {
                    if !t.prints.is_empty() {
                        let _ = writeln!(
                            inner,
                            "      <system-out>{}</system-out>",
                            escape(&t.prints.join("\n"))
                        );
                    }
                    let _ = write!(xml, ">\n{inner}    </testcase>\n");
                }
            }
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

/// XML attribute and text escaping; characters XML 1.0 cannot carry are
/// replaced.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A policy or data file and its SHA-256, for the evidence report.
#[derive(Debug, Serialize)]
pub struct FileDigest {
    pub path: String,
    pub kind: &'static str,
    pub sha256: String,
}

/// The evidence a release keeps: what was tested, with which tool, and how
/// it ended.
#[derive(Debug, Serialize)]
pub struct EvidenceReport<'a> {
    pub tool: Tool,
    /// RFC 3339, UTC.
    pub generated_at: String,
    pub paths: Vec<String>,
    pub summary: Summary,
    pub passed: bool,
    pub results: &'a [JsonResult],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<&'a Coverage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage_threshold: Option<f64>,
    pub files: Vec<FileDigest>,
}

#[derive(Debug, Serialize)]
pub struct Tool {
    pub name: &'static str,
    pub version: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub errored: usize,
}

impl From<Counts> for Summary {
    fn from(c: Counts) -> Self {
        Self {
            passed: c.passed,
            failed: c.failed,
            skipped: c.skipped,
            errored: c.errored,
        }
    }
}

/// Name of the evidence file inside `--report DIR`.
pub const REPORT_FILE: &str = "policy-test-report.json";

/// SHA-256 of each file, read again from disk.
pub fn digests(files: &[(PathBuf, &'static str)]) -> anyhow::Result<Vec<FileDigest>> {
    files
        .iter()
        .map(|(path, kind)| {
            let bytes = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", path.display()))?;
            Ok(FileDigest {
                path: path.display().to_string(),
                kind,
                sha256: hex::encode(sha2::Sha256::digest(&bytes)),
            })
        })
        .collect()
}

/// Writes `report` to `dir/REPORT_FILE` (tmp file, then rename).
pub fn write_report(dir: &Path, report: &EvidenceReport<'_>) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", dir.display()))?;
    let path = dir.join(REPORT_FILE);
    let tmp = dir.join(format!(".{REPORT_FILE}.tmp"));
    let text = crate::go_json::to_indented(report)?;
    std::fs::write(&tmp, format!("{text}\n"))
        .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path)
        .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))?;
    Ok(path)
}

/// Now as RFC 3339 in UTC with seconds precision.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_opa_ranges() {
        assert_eq!(
            ranges(&[1, 2, 3, 5, 7, 8]),
            vec![
                Range {
                    start: Row { row: 1 },
                    end: Row { row: 3 }
                },
                Range {
                    start: Row { row: 5 },
                    end: Row { row: 5 }
                },
                Range {
                    start: Row { row: 7 },
                    end: Row { row: 8 }
                },
            ]
        );
    }

    #[test]
    fn coverage_percentages_and_threshold_message() {
        let report = Coverage::from_rows(BTreeMap::from([(
            "a.rego".to_string(),
            (vec![3, 4, 5], vec![7, 9, 10, 4]),
        )]));
        assert_eq!(report.covered_lines, 3);
        assert_eq!(report.not_covered_lines, 3);
        assert_eq!(report.coverage, 50.0);
        assert_eq!(
            report.threshold_message(80.0),
            "Code coverage threshold not met: got 50.00 instead of 80.00\n\
             Lines not covered:\n\ta.rego:7\n\ta.rego:9-10"
        );
    }

    #[test]
    fn nested_cases_become_sub_results() {
        let cases = [
            SubResult {
                name: "one".into(),
                depth: 0,
                passed: true,
            },
            SubResult {
                name: "bar".into(),
                depth: 1,
                passed: true,
            },
            SubResult {
                name: "two".into(),
                depth: 0,
                passed: false,
            },
            SubResult {
                name: "foo".into(),
                depth: 1,
                passed: false,
            },
        ];
        let json = serde_json::to_value(sub_results(&cases)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "one": {"name": "one", "sub_results": {"bar": {"name": "bar"}}},
                "two": {"name": "two", "fail": true, "sub_results": {"foo": {"name": "foo", "fail": true}}}
            })
        );
    }

    #[test]
    fn print_lines_lose_their_location() {
        assert_eq!(without_location("dir/a.rego:7: sum is 3"), "sum is 3");
        assert_eq!(without_location("c:/x.rego:12: a: 1"), "a: 1");
        assert_eq!(without_location("no location"), "no location");
    }

    #[test]
    fn floats_as_go_writes_them() {
        let report = Coverage::from_rows(BTreeMap::from([(
            "a.rego".to_string(),
            (vec![1, 2], vec![3]),
        )]));
        let text = serde_json::to_string(&report).unwrap();
        assert!(
            text.ends_with(
                r#""covered_lines":2,"not_covered_lines":1,"coverage":66.66666666666667}"#
            ),
            "{text}"
        );
        let full = Coverage::from_rows(BTreeMap::from([("a.rego".to_string(), (vec![1], vec![]))]));
        assert!(
            serde_json::to_string(&full)
                .unwrap()
                .ends_with(r#""coverage":100}"#)
        );
    }

    #[test]
    fn xml_escaping() {
        assert_eq!(
            escape("a<b & \"c\"\n\u{1}"),
            "a&lt;b &amp; &quot;c&quot;&#10;\u{FFFD}"
        );
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
