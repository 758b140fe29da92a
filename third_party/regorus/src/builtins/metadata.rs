// policy-engine patch: `rego.metadata.chain()` and `rego.metadata.rule()`
// from OPA's METADATA annotations. The parser drops comments, so the
// annotation blocks are read back from each module's source: a block is a
// run of comment lines directly above a `package` or rule line, the first of
// them `# METADATA`, the rest YAML.

#![allow(clippy::pattern_type_mismatch)]

use crate::ast::{Expr, Module, Ref, Rule, RuleHead};
use crate::lexer::Span;
use crate::value::Value;
use crate::*;

use alloc::collections::BTreeMap;
use anyhow::{anyhow, Result};

/// The YAML of the METADATA block that ends on the line above `line`
/// (1-based) in `source`, if there is one.
fn block_above(source: &str, line: u32) -> Option<String> {
    let lines: Vec<&str> = source.lines().collect();
    let mut idx = usize::try_from(line).ok()?.checked_sub(1)?;
    let mut comments = Vec::new();
    while idx > 0 {
        idx -= 1;
        let text = lines.get(idx)?.trim();
        let Some(comment) = text.strip_prefix('#') else {
            break;
        };
        if comment.trim() == "METADATA" {
            comments.reverse();
            return Some(comments.join("\n"));
        }
        comments.push(comment.strip_prefix(' ').unwrap_or(comment));
    }
    None
}

/// OPA's author from a string: `Name <email>`, `Name`, or `<email>`.
fn author_from_string(text: &str) -> Value {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let mut author = BTreeMap::new();
    let (name, email) = match parts.split_last() {
        Some((last, rest)) if last.len() > 1 && last.starts_with('<') && last.ends_with('>') => {
            (rest.join(" "), Some(last[1..last.len() - 1].to_string()))
        }
        _ => (parts.join(" "), None),
    };
    if !name.is_empty() {
        author.insert(Value::from("name"), Value::from(name));
    }
    if let Some(email) = email.filter(|e| !e.is_empty()) {
        author.insert(Value::from("email"), Value::from(email));
    }
    Value::from_map(author)
}

/// A list field, each item normalised by `item`.
fn list(value: &Value, item: impl Fn(&Value) -> Value) -> Option<Value> {
    let items: Vec<Value> = match value {
        Value::Array(items) => items.iter().map(item).collect(),
        Value::Null | Value::Undefined => return None,
        other => vec![item(other)],
    };
    (!items.is_empty()).then(|| Value::from_array(items))
}

/// The annotation object OPA returns for a METADATA block (its
/// `Annotations.toObject`): the fields set, with `scope` defaulted.
fn annotations(yaml: &str, default_scope: &str) -> Result<Value> {
    let parsed = if yaml.trim().is_empty() {
        Value::new_object()
    } else {
        Value::from_yaml_str(yaml).map_err(|e| anyhow!("invalid METADATA block: {e}"))?
    };
    let fields = match &parsed {
        Value::Object(fields) => fields.clone(),
        Value::Null => Default::default(),
        _ => return Err(anyhow!("invalid METADATA block: not a mapping")),
    };
    let get = |key: &str| fields.get(&Value::from(key)).cloned();
    let mut out = BTreeMap::new();
    let scope = get("scope").unwrap_or_else(|| Value::from(default_scope));
    out.insert(Value::from("scope"), scope);
    for key in ["title", "description"] {
        if let Some(Value::String(s)) = get(key) {
            if !s.is_empty() {
                out.insert(Value::from(key), Value::String(s));
            }
        }
    }
    if get("entrypoint") == Some(Value::Bool(true)) {
        out.insert(Value::from("entrypoint"), Value::Bool(true));
    }
    if let Some(orgs) = get("organizations").and_then(|v| list(&v, Value::clone)) {
        out.insert(Value::from("organizations"), orgs);
    }
    let resource = |v: &Value| match v {
        Value::String(s) => {
            let mut r = BTreeMap::new();
            r.insert(Value::from("ref"), Value::String(s.clone()));
            Value::from_map(r)
        }
        other => other.clone(),
    };
    if let Some(resources) = get("related_resources").and_then(|v| list(&v, resource)) {
        out.insert(Value::from("related_resources"), resources);
    }
    let author = |v: &Value| match v {
        Value::String(s) => author_from_string(s),
        other => other.clone(),
    };
    if let Some(authors) = get("authors").and_then(|v| list(&v, author)) {
        out.insert(Value::from("authors"), authors);
    }
    if let Some(schemas) = get("schemas").and_then(|v| list(&v, Value::clone)) {
        out.insert(Value::from("schemas"), schemas);
    }
    if let Some(custom @ Value::Object(_)) = get("custom") {
        out.insert(Value::from("custom"), custom);
    }
    Ok(Value::from_map(out))
}

/// The annotations of the METADATA block above `span`, if any.
fn annotations_at(span: &Span, default_scope: &str) -> Result<Option<Value>> {
    block_above(span.source.contents(), span.line)
        .map(|yaml| annotations(&yaml, default_scope))
        .transpose()
}

/// The ground prefix of a reference as path components (OPA's
/// `Ref.GroundPrefix`), `data` left out.
fn ground_path(expr: &Expr, out: &mut Vec<Value>) -> bool {
    match expr {
        Expr::Var { span, .. } => {
            if span.text() != "data" {
                out.push(Value::from(span.text()));
            }
            true
        }
        Expr::RefDot { refr, field, .. } => {
            ground_path(refr, out) && {
                out.push(Value::from(field.0.text()));
                true
            }
        }
        Expr::RefBrack { refr, index, .. } => {
            ground_path(refr, out)
                && match index.as_ref() {
                    Expr::String { value, .. }
                    | Expr::Number { value, .. }
                    | Expr::Bool { value, .. } => {
                        out.push(value.clone());
                        true
                    }
                    _ => false,
                }
        }
        _ => false,
    }
}

fn package_path(module: &Module) -> Vec<Value> {
    let mut path = Vec::new();
    ground_path(&module.package.refr, &mut path);
    path
}

fn rule_path(module: &Module, rule: &Rule) -> Vec<Value> {
    let refr = match rule {
        Rule::Spec { head, .. } => match head {
            RuleHead::Compr { refr, .. }
            | RuleHead::Set { refr, .. }
            | RuleHead::Func { refr, .. } => refr,
        },
        Rule::Default { refr, .. } => refr,
    };
    let mut path = package_path(module);
    ground_path(refr, &mut path);
    path
}

fn scope_of(annotations: &Value) -> &str {
    match &annotations["scope"] {
        Value::String(s) => s.as_ref(),
        _ => "",
    }
}

fn chain_entry(path: Vec<Value>, annotations: Option<Value>) -> Value {
    let mut entry = BTreeMap::new();
    entry.insert(Value::from("path"), Value::from_array(path));
    if let Some(annotations) = annotations {
        entry.insert(Value::from("annotations"), annotations);
    }
    Value::from_map(entry)
}

/// `rego.metadata.rule()`: the rule-scope annotations of `rule` (an empty
/// object when it has none).
pub fn metadata_rule(rule: &Rule) -> Result<Value> {
    Ok(annotations_at(rule.span(), "rule")?
        .filter(|a| scope_of(a) == "rule")
        .unwrap_or_else(Value::new_object))
}

/// `rego.metadata.chain()` for `rule` of `module`: the rule's entry (with
/// its rule-scope annotations, if any), then the document-scope entry for
/// its path, the package-scope entry of its package and the
/// subpackages-scope entries of the package and its parents, from any of
/// `modules` (OPA's `AnnotationSet.Chain`).
pub fn metadata_chain(modules: &[Ref<Module>], module: &Module, rule: &Rule) -> Result<Value> {
    let path = rule_path(module, rule);
    let mut chain = Vec::new();
    let own = annotations_at(rule.span(), "rule")?.filter(|a| scope_of(a) == "rule");
    chain.push(chain_entry(path.clone(), own));

    let mut document = None;
    let mut package = None;
    let mut subpackages: Vec<(Vec<Value>, Value)> = Vec::new();
    let pkg_path = package_path(module);
    for m in modules {
        let m_pkg = package_path(m);
        if let Some(a) = annotations_at(&m.package.span, "package")? {
            match scope_of(&a) {
                "package" if m_pkg == pkg_path && package.is_none() => package = Some(a),
                "subpackages" if pkg_path.starts_with(&m_pkg) => subpackages.push((m_pkg, a)),
                _ => {}
            }
        }
        if document.is_some() {
            continue;
        }
        for r in &m.policy {
            if rule_path(m, r) != path {
                continue;
            }
            if let Some(a) = annotations_at(r.span(), "rule")? {
                if scope_of(&a) == "document" {
                    document = Some(a);
                    break;
                }
            }
        }
    }
    if let Some(a) = document {
        chain.push(chain_entry(path, Some(a)));
    }
    if let Some(a) = package {
        chain.push(chain_entry(pkg_path, Some(a)));
    }
    subpackages.sort_by(|a, b| b.0.len().cmp(&a.0.len()));
    for (p, a) in subpackages {
        chain.push(chain_entry(p, Some(a)));
    }
    Ok(Value::from_array(chain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_directly_above_a_line_is_found() {
        let src = "package x\n\n# METADATA\n# title: T\n# authors:\n# - A B <a@b.c>\np := 1\n";
        let yaml = block_above(src, 7).expect("block");
        let a = annotations(&yaml, "rule").expect("annotations");
        assert_eq!(a["title"], Value::from("T"));
        assert_eq!(a["scope"], Value::from("rule"));
        assert_eq!(a["authors"][0]["name"], Value::from("A B"));
        assert_eq!(a["authors"][0]["email"], Value::from("a@b.c"));
    }

    #[test]
    fn comments_without_metadata_marker_are_not_annotations() {
        let src = "package x\n# just a comment\np := 1\n";
        assert!(block_above(src, 3).is_none());
    }

    #[test]
    fn malformed_yaml_is_an_error() {
        assert!(annotations("title: [unclosed", "rule").is_err());
    }
}
