//! `policyctl check`: parse and compile Rego without evaluating it, like
//! `opa check`.
//!
//! Reported, each with `file:row:col` and OPA's error code:
//! - `rego_parse_error`: a module that does not parse (every file is parsed,
//!   so all of them are reported at once);
//! - `rego_unsafe_var_error` / `rego_compile_error`: what the compiler
//!   rejects (unsafe variables, conflicting rules, …);
//! - `rego_type_error`: a call to a function that is neither a built-in, a
//!   native builtin of this engine nor a function defined in the modules.
//!
//! Calls to built-ins deprecated before Rego v1 (`any`, `re_match`, …) are
//! `rego_type_error`s. With `--strict`, also OPA's strict-mode errors that
//! need no type information: unused and duplicate imports
//! (`rego_compile_error`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use regorus::unstable::{BUILTINS, Expr, Literal, Module, Query, Ref, Rule, RuleHead};
use serde::Serialize;

use crate::{diagnostic, go_json, load};

/// Arguments of `policyctl check`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Exit status:\n  \
    0  no errors\n  \
    1  errors were found (or a path could not be read)")]
pub struct CheckArgs {
    /// Policy files or directories [default: .]
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Also report unused and duplicate imports
    #[arg(short = 'S', long)]
    pub strict: bool,

    /// Output format: `pretty` or `json` (`{"errors": [...]}` as OPA prints)
    #[arg(short, long, value_enum, default_value_t = Format::Pretty)]
    pub format: Format,

    /// Stop after this many errors (0: no limit)
    #[arg(short = 'm', long = "max-errors", default_value_t = 10)]
    pub max_errors: usize,
}

/// Output formats of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Pretty,
    Json,
}

/// One error, in OPA's JSON shape.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CheckError {
    pub message: String,
    pub code: &'static str,
    pub location: Location,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub row: u32,
    pub col: u32,
}

/// Built-ins OPA reports as deprecated in strict mode.
const DEPRECATED: &[&str] = &[
    "any",
    "all",
    "re_match",
    "net.cidr_overlap",
    "set_diff",
    "cast_array",
    "cast_set",
    "cast_string",
    "cast_boolean",
    "cast_null",
    "cast_object",
];

/// Runs `check`.
pub fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    let mut errors = check_paths(&paths, args.strict)?;
    if args.max_errors > 0 {
        errors.truncate(args.max_errors);
    }
    match args.format {
        Format::Json => {
            if !errors.is_empty() {
                #[derive(Serialize)]
                struct Errors<'a> {
                    errors: &'a [CheckError],
                }
                println!("{}", go_json::to_indented(&Errors { errors: &errors })?);
            }
        }
        Format::Pretty => {
            if !errors.is_empty() {
                let noun = if errors.len() == 1 { "error" } else { "errors" };
                let mut text = format!("{} {noun} occurred:", errors.len());
                for e in &errors {
                    text.push_str(&format!(
                        "\n{}:{}:{}: {}: {}",
                        e.location.file, e.location.row, e.location.col, e.code, e.message
                    ));
                }
                eprintln!("{text}");
            }
        }
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::ERROR)
    })
}

/// Every error in the modules under `paths`, in file order.
pub fn check_paths(paths: &[PathBuf], strict: bool) -> anyhow::Result<Vec<CheckError>> {
    let loaded = load::Loaded::read(paths)?;
    let mut errors = Vec::new();
    let mut engine = policy_agent::new_engine();
    engine.set_rego_v0(false);
    for policy in &loaded.policies {
        let label = policy.path.display().to_string();
        if let Err(e) = engine.add_policy(label.clone(), policy.source.clone()) {
            errors.push(located("rego_parse_error", &label, &e.to_string()));
        }
    }
    if !errors.is_empty() {
        return Ok(errors);
    }
    let natives: BTreeSet<&str> = policy_agent::builtins::NativeBuiltins::signatures()
        .map(|(name, _)| name)
        .collect();
    let modules = engine.get_modules().clone();
    let functions = user_functions(&engine, &modules)?;
    let packages = engine.get_policy_package_components()?;
    for (module, package) in modules.iter().zip(packages) {
        let package = package.components.join(".");
        check_module(module, package, &functions, &natives, strict, &mut errors);
    }
    if errors.is_empty() {
        // The compiler's own checks (unsafe variables, conflicts, …) run
        // when the modules are first prepared for evaluation.
        if let Err(e) = engine.eval_query("true".to_string(), false) {
            let message = e.to_string();
            let code = if message.contains("unsafe") {
                "rego_unsafe_var_error"
            } else {
                "rego_compile_error"
            };
            errors.push(located(code, "", &message));
        }
    }
    Ok(errors)
}

/// An error from a regorus message, located where the message says.
fn located(code: &'static str, file: &str, message: &str) -> CheckError {
    let (location, reason) = diagnostic::split(message);
    let mut parts = location.as_deref().unwrap_or(file).rsplitn(3, ':');
    let (col, row, path) = (parts.next(), parts.next(), parts.next());
    let (file, row, col) = match (
        path,
        row.and_then(|r| r.parse().ok()),
        col.and_then(|c| c.parse().ok()),
    ) {
        (Some(path), Some(row), Some(col)) => {
            let col = std::fs::read_to_string(path)
                .ok()
                .and_then(|text| {
                    text.lines()
                        .nth((row as usize).saturating_sub(1))
                        .map(|l| byte_col(l, col))
                })
                .unwrap_or(col);
            (path.to_string(), row, col)
        }
        _ => (location.unwrap_or_else(|| file.to_string()), 0, 0),
    };
    CheckError {
        message: reason,
        code,
        location: Location { file, row, col },
    }
}

/// Full paths (`data.pkg.f`) of the functions defined in the modules.
fn user_functions(
    engine: &regorus::Engine,
    modules: &[Ref<Module>],
) -> anyhow::Result<BTreeSet<String>> {
    let packages = engine.get_policy_package_components()?;
    let mut out = BTreeSet::new();
    for (module, package) in modules.iter().zip(packages) {
        for rule in &module.policy {
            let refr = match rule.as_ref() {
                Rule::Spec {
                    head: RuleHead::Func { refr, .. },
                    ..
                } => refr,
                Rule::Default { refr, args, .. } if !args.is_empty() => refr,
                _ => continue,
            };
            if let Some(path) = ref_path(refr) {
                out.insert(format!("data.{}.{path}", package.components.join(".")));
            }
        }
    }
    Ok(out)
}

/// `a.b.c` for a ref made of a variable and static fields.
fn ref_path(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Var { span, .. } => Some(span.text().to_string()),
        Expr::RefDot { refr, field, .. } => Some(format!("{}.{}", ref_path(refr)?, field.0.text())),
        Expr::RefBrack { refr, index, .. } => match index.as_ref() {
            Expr::String { value, .. } => {
                Some(format!("{}.{}", ref_path(refr)?, value.as_string().ok()?))
            }
            _ => None,
        },
        _ => None,
    }
}

struct Walk<'a> {
    package: String,
    imports: Vec<(String, String)>,
    functions: &'a BTreeSet<String>,
    natives: &'a BTreeSet<&'static str>,
    vars: BTreeSet<String>,
    errors: Vec<CheckError>,
}

fn check_module(
    module: &Ref<Module>,
    package: String,
    functions: &BTreeSet<String>,
    natives: &BTreeSet<&'static str>,
    strict: bool,
    errors: &mut Vec<CheckError>,
) {
    // (alias, path, span) of each import that names a document.
    let mut named = Vec::new();
    let mut seen_imports = BTreeSet::new();
    for import in &module.imports {
        let Some(path) = ref_path(&import.refr) else {
            continue;
        };
        if path == "rego.v1" || path.starts_with("future.") {
            continue;
        }
        let alias = import
            .r#as
            .as_ref()
            .map(|s| s.text().to_string())
            .unwrap_or_else(|| path.rsplit('.').next().unwrap_or(&path).to_string());
        if strict && !seen_imports.insert(path.clone()) {
            errors.push(error_at(
                "rego_compile_error",
                &import.span,
                format!("import {path} is a duplicate"),
            ));
        }
        named.push((alias, path, &import.span));
    }
    let mut walk = Walk {
        package,
        imports: named
            .iter()
            .map(|(alias, path, _)| (alias.clone(), path.clone()))
            .collect(),
        functions,
        natives,
        vars: BTreeSet::new(),
        errors: Vec::new(),
    };
    for rule in &module.policy {
        walk.rule(rule);
    }
    if strict {
        for (alias, path, span) in &named {
            if !walk.vars.contains(alias) {
                walk.errors.push(error_at(
                    "rego_compile_error",
                    span,
                    format!("import {path} unused"),
                ));
            }
        }
    }
    errors.append(&mut walk.errors);
}

fn error_at(code: &'static str, span: &regorus::unstable::Span, message: String) -> CheckError {
    let contents = span.source.contents();
    let start = (span.start as usize).min(contents.len());
    let line_start = contents[..start].rfind('\n').map_or(0, |i| i + 1);
    CheckError {
        message,
        code,
        location: Location {
            file: span.source.file().clone(),
            row: span.line,
            // OPA counts columns in bytes (a tab is one column).
            col: u32::try_from(start - line_start + 1).unwrap_or(span.col),
        },
    }
}

/// OPA's byte column for a column of a regorus message, which counts a
/// tab as four columns.
fn byte_col(line: &str, col: u32) -> u32 {
    let mut width = 1;
    for (i, c) in line.char_indices() {
        if width >= col {
            return u32::try_from(i + 1).unwrap_or(col);
        }
        width += if c == '\t' { 4 } else { 1 };
    }
    u32::try_from(line.len() + 1).unwrap_or(col)
}

impl Walk<'_> {
    fn rule(&mut self, rule: &Ref<Rule>) {
        match rule.as_ref() {
            Rule::Spec { head, bodies, .. } => {
                match head {
                    RuleHead::Compr { refr, assign, .. } => {
                        self.expr(refr);
                        if let Some(a) = assign {
                            self.expr(&a.value);
                        }
                    }
                    RuleHead::Set { refr, key, .. } => {
                        self.expr(refr);
                        if let Some(k) = key {
                            self.expr(k);
                        }
                    }
                    RuleHead::Func {
                        refr, args, assign, ..
                    } => {
                        self.expr(refr);
                        for a in args {
                            self.expr(a);
                        }
                        if let Some(a) = assign {
                            self.expr(&a.value);
                        }
                    }
                }
                for body in bodies {
                    if let Some(a) = &body.assign {
                        self.expr(&a.value);
                    }
                    self.query(&body.query);
                }
            }
            Rule::Default {
                refr, args, value, ..
            } => {
                self.expr(refr);
                for a in args {
                    self.expr(a);
                }
                self.expr(value);
            }
        }
    }

    fn query(&mut self, query: &Ref<Query>) {
        for stmt in &query.stmts {
            match &stmt.literal {
                Literal::SomeVars { .. } => {}
                Literal::SomeIn {
                    key,
                    value,
                    collection,
                    ..
                } => {
                    if let Some(k) = key {
                        self.expr(k);
                    }
                    self.expr(value);
                    self.expr(collection);
                }
                Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => self.expr(expr),
                Literal::Every { domain, query, .. } => {
                    self.expr(domain);
                    self.query(query);
                }
            }
            for with in &stmt.with_mods {
                // The target of `with` may name a function to replace; it
                // is not a call.
                if let Some(path) = ref_path(&with.refr) {
                    self.note_root(&path);
                }
                self.expr(&with.r#as);
            }
        }
    }

    fn note_root(&mut self, path: &str) {
        let root = path.split('.').next().unwrap_or(path);
        self.vars.insert(root.to_string());
    }

    fn expr(&mut self, expr: &Ref<Expr>) {
        match expr.as_ref() {
            Expr::String { .. }
            | Expr::RawString { .. }
            | Expr::Number { .. }
            | Expr::Bool { .. }
            | Expr::Null { .. } => {}
            Expr::Var { span, .. } => {
                self.vars.insert(span.text().to_string());
            }
            Expr::Array { items, .. } | Expr::Set { items, .. } => {
                for i in items {
                    self.expr(i);
                }
            }
            Expr::Object { fields, .. } => {
                for (_, k, v) in fields {
                    self.expr(k);
                    self.expr(v);
                }
            }
            Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
                self.expr(term);
                self.query(query);
            }
            Expr::ObjectCompr {
                key, value, query, ..
            } => {
                self.expr(key);
                self.expr(value);
                self.query(query);
            }
            Expr::Call { fcn, params, .. } => {
                self.call(fcn, fcn.span());
                for p in params {
                    self.expr(p);
                }
            }
            Expr::UnaryExpr { expr, .. } => self.expr(expr),
            Expr::RefDot { refr, .. } => self.expr(refr),
            Expr::RefBrack { refr, index, .. } => {
                self.expr(refr);
                self.expr(index);
            }
            Expr::BinExpr { lhs, rhs, .. }
            | Expr::BoolExpr { lhs, rhs, .. }
            | Expr::ArithExpr { lhs, rhs, .. }
            | Expr::AssignExpr { lhs, rhs, .. } => {
                self.expr(lhs);
                self.expr(rhs);
            }
            Expr::Membership {
                key,
                value,
                collection,
                ..
            } => {
                if let Some(k) = key {
                    self.expr(k);
                }
                self.expr(value);
                self.expr(collection);
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// Checks that the function a call names exists.
    fn call(&mut self, fcn: &Ref<Expr>, span: &regorus::unstable::Span) {
        let Some(path) = ref_path(fcn) else {
            self.expr(fcn);
            return;
        };
        self.note_root(&path);
        // Rego v1 modules may not call deprecated built-ins, strict or not.
        if DEPRECATED.contains(&path.as_str()) {
            self.errors.push(error_at(
                "rego_type_error",
                span,
                format!("deprecated built-in function calls in expression: {path}"),
            ));
            return;
        }
        if self.resolves(&path) {
            return;
        }
        self.errors.push(error_at(
            "rego_type_error",
            span,
            format!("undefined function {path}"),
        ));
    }

    fn resolves(&self, path: &str) -> bool {
        if path == "print"
            || path.starts_with("internal.")
            || BUILTINS.contains_key(path)
            || self.natives.contains(path)
        {
            return true;
        }
        let local = format!("data.{}.{path}", self.package);
        if self.functions.contains(path) || self.functions.contains(&local) {
            return true;
        }
        let (root, rest) = path.split_once('.').unwrap_or((path, ""));
        self.imports.iter().any(|(alias, target)| {
            alias == root && {
                let full = if rest.is_empty() {
                    target.clone()
                } else {
                    format!("{target}.{rest}")
                };
                self.functions.contains(&full)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::byte_col;

    #[test]
    fn tabs_count_as_one_column() {
        assert_eq!(byte_col("\tx == y", 5), 2);
        assert_eq!(byte_col("\t\tx", 9), 3);
        assert_eq!(byte_col("abc", 2), 2);
        assert_eq!(byte_col("ab", 7), 3);
    }
}
