//! What `policyctl test` prints.
//!
//! Without `-v`: a line per failed or errored test, with the error, failing
//! cases and `print()` output indented under it. With `-v`: the file name,
//! then a line per test as `opa test -v` prints it
//! (`data.pkg.test_x: PASS (312µs)`), with cases and `print()` output.
//! Either way a summary ends the report:
//! `N passed, N failed[, N skipped][, N errored]`, where a test made of
//! cases counts once per case, as in `opa test`.

use std::io::{self, Write};
use std::time::Duration;

use crate::discover::TestCase;

/// How a test ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// Evaluation failed; the one-line error.
    Error(String),
    Skipped,
}

/// One case of a test whose rule produces an object of cases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubResult {
    pub name: String,
    /// Nesting level, 0 for a direct case.
    pub depth: usize,
    pub passed: bool,
}

/// The result of one test.
pub struct TestResult<'t> {
    pub test: &'t TestCase,
    pub outcome: Outcome,
    pub duration: Duration,
    /// `print()` output, `file:row: message` per call.
    pub prints: Vec<String>,
    pub cases: Vec<SubResult>,
}

/// How many tests ended which way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub errored: usize,
}

/// Streams results to `out` as they come.
pub struct Reporter<W: Write> {
    out: W,
    verbose: bool,
    counts: Counts,
    last_file: Option<String>,
}

impl<W: Write> Reporter<W> {
    pub fn new(out: W, verbose: bool) -> Self {
        Self {
            out,
            verbose,
            counts: Counts::default(),
            last_file: None,
        }
    }

    /// Counts `result` and prints what the mode calls for.
    pub fn report(&mut self, result: &TestResult<'_>) -> io::Result<()> {
        self.count(result);

        let name = &result.test.name;
        let took = go_duration(result.duration);
        if self.verbose {
            if self.last_file.as_deref() != Some(result.test.file.as_str()) {
                if self.last_file.is_some() {
                    writeln!(self.out)?;
                }
                writeln!(self.out, "{}:", result.test.file)?;
                self.last_file = Some(result.test.file.clone());
            }
            match result.outcome {
                Outcome::Skipped => writeln!(self.out, "{name}: SKIPPED")?,
                _ => writeln!(self.out, "{name}: {} ({took})", label(&result.outcome))?,
            }
        } else {
            match result.outcome {
                Outcome::Fail | Outcome::Error(_) => {
                    writeln!(self.out, "{}: {name} ({took})", label(&result.outcome))?;
                }
                Outcome::Pass | Outcome::Skipped => return Ok(()),
            }
        }
        self.details(result)?;
        self.out.flush()
    }

    /// Counts a test once, or, as `opa test` does, each leaf case of a test
    /// made of cases.
    fn count(&mut self, result: &TestResult<'_>) {
        let c = &mut self.counts;
        match result.outcome {
            Outcome::Pass | Outcome::Fail if !result.cases.is_empty() => {
                let cases = &result.cases;
                for (i, case) in cases.iter().enumerate() {
                    let is_leaf = cases.get(i + 1).is_none_or(|next| next.depth <= case.depth);
                    match (is_leaf, case.passed) {
                        (false, _) => {}
                        (true, true) => c.passed += 1,
                        (true, false) => c.failed += 1,
                    }
                }
            }
            Outcome::Pass => c.passed += 1,
            Outcome::Fail => c.failed += 1,
            Outcome::Error(_) => c.errored += 1,
            Outcome::Skipped => c.skipped += 1,
        }
    }

    /// The error, cases and `print()` output under a test's line.
    fn details(&mut self, result: &TestResult<'_>) -> io::Result<()> {
        if let Outcome::Error(message) = &result.outcome {
            writeln!(self.out, "  {message}")?;
        }
        for case in &result.cases {
            if self.verbose || !case.passed {
                let indent = "  ".repeat(case.depth + 1);
                let verdict = if case.passed { "PASS" } else { "FAIL" };
                writeln!(self.out, "{indent}{}: {verdict}", case.name)?;
            }
        }
        for line in result.prints.iter().flat_map(|p| p.lines()) {
            writeln!(self.out, "  {line}")?;
        }
        Ok(())
    }

    /// Prints the summary line and returns the counts.
    pub fn finish(mut self) -> io::Result<Counts> {
        let c = self.counts;
        if self.verbose && self.last_file.is_some() {
            writeln!(self.out)?;
        }
        let mut summary = format!("{} passed, {} failed", c.passed, c.failed);
        if c.skipped > 0 {
            summary.push_str(&format!(", {} skipped", c.skipped));
        }
        if c.errored > 0 {
            summary.push_str(&format!(", {} errored", c.errored));
        }
        writeln!(self.out, "{summary}")?;
        self.out.flush()?;
        Ok(c)
    }
}

pub fn label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Pass => "PASS",
        Outcome::Fail => "FAIL",
        Outcome::Error(_) => "ERROR",
        Outcome::Skipped => "SKIPPED",
    }
}

/// `d` rounded to the microsecond and written as Go writes a
/// `time.Duration` (`0s`, `312µs`, `1.25ms`, `2.5s`), which is how
/// `opa test` prints test times.
pub fn go_duration(d: Duration) -> String {
    let micros = d.as_micros();
    if micros == 0 {
        return "0s".to_string();
    }
    let (whole, frac, digits, unit) = if micros < 1_000 {
        return format!("{micros}µs");
    } else if micros < 1_000_000 {
        (micros / 1_000, micros % 1_000, 3, "ms")
    } else {
        (micros / 1_000_000, micros % 1_000_000, 6, "s")
    };
    if frac == 0 {
        return format!("{whole}{unit}");
    }
    let frac = format!("{frac:0digits$}");
    format!("{whole}.{}{unit}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_durations_like_go() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_nanos(400)), "0s");
        assert_eq!(go_duration(Duration::from_micros(312)), "312µs");
        assert_eq!(go_duration(Duration::from_micros(1_250)), "1.25ms");
        assert_eq!(go_duration(Duration::from_micros(1_000)), "1ms");
        assert_eq!(go_duration(Duration::from_micros(1_000_050)), "1.00005s");
        assert_eq!(go_duration(Duration::from_millis(2_500)), "2.5s");
    }
}
