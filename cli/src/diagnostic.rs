//! One-line diagnostics from regorus error messages.
//!
//! regorus formats its errors as a source excerpt:
//!
//! ```text
//!
//! --> policy.rego:6:17
//!   |
//! 6 | test_conf if { f(1) }
//!   |                 ^
//! error: functions must not produce multiple outputs for same inputs
//! ```
//!
//! The CLI reports errors on one line, as `opa` does:
//! `policy.rego:6:17: functions must not produce multiple outputs for same inputs`.

/// `message` (a regorus error) as `file:row:col: reason` on one line; any
/// other text with its lines joined by spaces.
pub fn one_line(message: &str) -> String {
    match split(message) {
        (Some(location), reason) => format!("{location}: {reason}"),
        (None, reason) => reason,
    }
}

/// The `file:row:col` location (if any) and the one-line reason of a
/// regorus error message.
pub fn split(message: &str) -> (Option<String>, String) {
    let mut lines = message.trim_start().lines();
    let located = lines
        .next()
        .and_then(|first| first.strip_prefix("--> "))
        .map(str::trim);
    if let Some(location) = located {
        let reason = lines.find_map(|line| {
            let (kind, rest) = line.split_once(": ")?;
            let is_kind = !kind.is_empty() && kind.chars().all(|c| c.is_ascii_lowercase());
            is_kind.then_some(rest)
        });
        if let Some(reason) = reason {
            let reason = reason.trim().trim_end_matches(':');
            return (Some(location.to_string()), reason.to_string());
        }
    }
    (
        None,
        message.split_whitespace().collect::<Vec<_>>().join(" "),
    )
}

/// The one-line form of every message in `err`'s chain, joined by `: `.
pub fn chain_one_line(err: &anyhow::Error) -> String {
    err.chain()
        .map(|cause| one_line(&cause.to_string()))
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condenses_a_located_regorus_error() {
        let msg = "\n--> a.rego:6:17\n  |\n6 | test_conf if { f(1) }\n  |                 ^\nerror: functions must not produce multiple outputs for same inputs";
        assert_eq!(
            one_line(msg),
            "a.rego:6:17: functions must not produce multiple outputs for same inputs"
        );
    }

    #[test]
    fn keeps_the_first_line_of_a_nested_reason() {
        let msg = "\n--> a.rego:2:1\n  |\n2 | x := y\n  | ^\nerror: recursion detected when evaluating rule:\n--> a.rego:3:1\n  |\n3 | y := x\n  | ^\ndepends on: \ncyclic evaluation";
        assert_eq!(
            one_line(msg),
            "a.rego:2:1: recursion detected when evaluating rule"
        );
    }

    #[test]
    fn joins_unlocated_messages() {
        assert_eq!(one_line("data must be\n object"), "data must be object");
    }

    #[test]
    fn chains_context() {
        let err =
            anyhow::anyhow!("\n--> q:1:1\n  |\n1 | x\n  | ^\nerror: bad").context("evaluating");
        assert_eq!(chain_one_line(&err), "evaluating: q:1:1: bad");
    }
}
