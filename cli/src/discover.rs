//! Test rules in the loaded modules, found the way `opa test` finds them.
//!
//! A test is a rule (not a function) whose path has a component starting
//! with `test_`; `todo_test_` marks a test to skip. The test's name is the
//! package path extended with the rule path up to that component, e.g.
//! `data.policies.apiKeyAuth_test.test_missing_key`. As in OPA, a test name
//! defined several times is several tests: the second is reported as
//! `test_x#01`, the third `test_x#02`, and each definition is evaluated on
//! its own (regorus would otherwise merge them into one rule that passes if
//! any definition does).
//!
//! Finding rules needs regorus's parsed modules, which 0.14.1 exposes only
//! through `#[doc(hidden)]` items (`Engine::get_modules`,
//! `regorus::unstable`); `test_cmd` evaluates each definition with the
//! equally hidden `Engine::eval_rule_in_module`. A regorus upgrade must
//! re-check these.

use std::collections::HashMap;

use regorus::Engine;
use regorus::unstable::{Expr, Module, Ref, Rule, RuleHead};

const TEST_PREFIX: &str = "test_";
const SKIP_PREFIX: &str = "todo_test_";

/// One test rule definition.
pub struct TestCase {
    /// Full name, e.g. `data.pkg.test_x` or `data.pkg.test_x#01`.
    pub name: String,
    /// The package, e.g. `data.pkg`.
    pub package: String,
    /// The file the rule is in, as loaded.
    pub file: String,
    /// Where the rule starts (1-based).
    pub row: u32,
    pub col: u32,
    /// Whether the test is marked `todo_test_` and is not run.
    pub is_skipped: bool,
    /// Components under `data` of the document the test produces.
    pub path: Vec<String>,
    /// Whether the rule path continues past the test name with variables
    /// (`test_cases[name] if …`): the test is an object of sub-tests.
    pub has_cases: bool,
    pub module: Ref<Module>,
    pub rule: Ref<Rule>,
}

impl TestCase {
    /// The name under the package, e.g. `test_x` or `p.q.test_x#01`.
    pub fn short_name(&self) -> &str {
        self.name
            .strip_prefix(self.package.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or(&self.name)
    }
}

/// Every test in `engine`'s modules, in load order then source order.
pub fn discover(engine: &mut Engine) -> anyhow::Result<Vec<TestCase>> {
    let packages = engine.get_policy_package_components()?;
    let modules = engine.get_modules().clone();
    let mut definitions: HashMap<String, usize> = HashMap::new();
    let mut tests = Vec::new();
    for (module, package) in modules.iter().zip(packages) {
        for rule in &module.policy {
            let Rule::Spec { span, head, .. } = rule.as_ref() else {
                continue;
            };
            let refr = match head {
                RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. } => refr,
                RuleHead::Func { refr, args, .. } if args.is_empty() => refr,
                RuleHead::Func { .. } => continue,
            };
            let mut components = Vec::new();
            ref_components(refr, &mut components);
            let ground: Vec<&str> = components.iter().map_while(|c| c.as_deref()).collect();
            let Some(at) = ground
                .iter()
                .position(|c| c.starts_with(TEST_PREFIX) || c.starts_with(SKIP_PREFIX))
            else {
                continue;
            };
            let rule_path = &ground[..=at];
            let is_skipped = rule_path[at].starts_with(SKIP_PREFIX);
            let mut name = format_ref(
                package
                    .components
                    .iter()
                    .map(String::as_str)
                    .chain(rule_path.iter().copied()),
            );
            if !is_skipped {
                let seen = definitions.entry(name.clone()).or_default();
                if *seen > 0 {
                    name = format!("{name}#{:02}", *seen);
                }
                *seen += 1;
            }
            tests.push(TestCase {
                name,
                package: format_ref(package.components.iter().map(String::as_str)),
                file: span.source.file().clone(),
                row: span.line,
                col: span.col,
                is_skipped,
                path: package
                    .components
                    .iter()
                    .cloned()
                    .chain(rule_path.iter().map(|c| (*c).to_string()))
                    .collect(),
                has_cases: components.len() > rule_path.len()
                    && components[rule_path.len()..].iter().any(Option::is_none),
                module: module.clone(),
                rule: rule.clone(),
            });
        }
    }
    Ok(tests)
}

/// The components of a rule reference; `None` for a variable component.
fn ref_components(expr: &Expr, out: &mut Vec<Option<String>>) {
    match expr {
        Expr::Var { span, .. } => out.push(Some(span.text().to_string())),
        Expr::RefDot { refr, field, .. } => {
            ref_components(refr, out);
            out.push(Some(field.0.text().to_string()));
        }
        Expr::RefBrack { refr, index, .. } => {
            ref_components(refr, out);
            out.push(match index.as_ref() {
                Expr::String { value, .. } | Expr::RawString { value, .. } => {
                    value.as_string().ok().map(|s| s.to_string())
                }
                _ => None,
            });
        }
        _ => out.push(None),
    }
}

/// `data.a.b["c-d"]`: `data` and the components, dotted where they are
/// identifiers and bracketed otherwise.
fn format_ref<'a>(components: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::from("data");
    for c in components {
        let is_ident = c.starts_with(|ch: char| ch.is_ascii_alphabetic() || ch == '_')
            && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        if is_ident {
            out.push('.');
            out.push_str(c);
        } else {
            out.push('[');
            out.push_str(&serde_json::to_string(c).unwrap_or_else(|_| format!("\"{c}\"")));
            out.push(']');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(policies: &[(&str, &str)]) -> Vec<(String, bool, bool)> {
        let mut engine = policy_agent::new_engine();
        for (path, src) in policies {
            engine
                .add_policy((*path).to_string(), (*src).to_string())
                .unwrap();
        }
        discover(&mut engine)
            .unwrap()
            .into_iter()
            .map(|t| (t.name, t.is_skipped, t.has_cases))
            .collect()
    }

    #[test]
    fn finds_tests_todos_and_numbers_duplicates() {
        let src = "package a.b\n\
            test_x if true\n\
            test_x if false\n\
            todo_test_y if false\n\
            f(x) := x\n\
            test_f(x) := x\n\
            helper := 1\n\
            sub.test_z if true\n\
            test_cases[n] if { some n in [\"p\"] }\n";
        assert_eq!(
            names(&[("a.rego", src)]),
            vec![
                ("data.a.b.test_x".into(), false, false),
                ("data.a.b.test_x#01".into(), false, false),
                ("data.a.b.todo_test_y".into(), true, false),
                ("data.a.b.sub.test_z".into(), false, false),
                ("data.a.b.test_cases".into(), false, true),
            ]
        );
    }

    #[test]
    fn quotes_non_identifier_package_components() {
        assert_eq!(
            names(&[("q.rego", "package x[\"a-b\"]\ntest_q if true\n")]),
            vec![("data.x[\"a-b\"].test_q".into(), false, false)]
        );
    }
}
