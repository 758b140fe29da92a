//! `policyctl eval`: evaluates a query against policies and data, like
//! `opa eval`.
//!
//! `--format json` prints OPA's result set byte for byte in shape and
//! escaping; values are whatever regorus computes. `--format pretty` prints
//! a lone value as indented JSON and anything else as a table, as
//! `opa eval -f pretty` does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use regorus::{QueryResults, Value};
use serde::Serialize;

use crate::load::{self, DataFormat};
use crate::query_text::{self, ExprText};
use crate::{go_json, table};

/// Arguments of `policyctl eval`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Exit status:\n  \
    0  the query was evaluated (also when its result is undefined)\n  \
    1  a policy, data or input file could not be loaded, or evaluation failed")]
pub struct EvalArgs {
    /// Policy or data file or directory to load (repeatable)
    #[arg(short = 'd', long = "data", value_name = "PATH")]
    pub data: Vec<PathBuf>,

    /// Input document: JSON, or YAML when the name ends in .yaml or .yml
    #[arg(short = 'i', long = "input", value_name = "FILE")]
    pub input: Option<PathBuf>,

    /// Output format
    #[arg(short = 'f', long, value_enum, default_value_t = Format::Json)]
    pub format: Format,

    /// Rego query, e.g. `data.policies.apiKeyAuth.result(ctx, {})`
    pub query: String,
}

/// How `eval` prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// OPA's JSON result set
    Json,
    /// The value alone as indented JSON, or a table of bindings
    Pretty,
}

/// Runs `eval`; errors are reported by the caller with exit status 1.
pub fn run(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    let mut engine = load::engine_from_paths(&args.data)?;
    if let Some(path) = &args.input {
        engine.set_input(read_input(path)?);
    }
    let results = engine
        .eval_query(args.query.clone(), false)
        .context("evaluation failed")?;
    let output = ResultSet::from_regorus(&args.query, &results);
    let text = match args.format {
        Format::Json => format!("{}\n", go_json::to_indented(&output)?),
        Format::Pretty => pretty(&output)?,
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// Reads the input document from `path`.
fn read_input(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read input `{}`", path.display()))?;
    let parsed = match load::data_format(path) {
        Some(format) => format.parse(&text).map_err(|reason| (format, reason)),
        // Unknown extension: JSON, else YAML (which also accepts most JSON).
        None => DataFormat::Json
            .parse(&text)
            .or_else(|_| DataFormat::Yaml.parse(&text))
            .map_err(|reason| (DataFormat::Yaml, reason)),
    };
    parsed.map_err(|(format, reason)| {
        anyhow!(
            "input `{}`: invalid {}: {reason}",
            path.display(),
            format.name()
        )
    })
}

/// OPA's `{"result": [...]}` shape; `{}` when the query is undefined.
#[derive(Debug, Serialize)]
struct ResultSet<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    result: Vec<QueryResult<'a>>,
}

#[derive(Debug, Serialize)]
struct QueryResult<'a> {
    expressions: Vec<Expression<'a>>,
    #[serde(skip_serializing_if = "is_empty_object")]
    bindings: &'a Value,
}

#[derive(Debug, Serialize)]
struct Expression<'a> {
    value: &'a Value,
    text: String,
    location: Location,
}

#[derive(Debug, Serialize)]
struct Location {
    row: u32,
    col: u32,
}

fn is_empty_object(v: &&Value) -> bool {
    match v {
        Value::Object(o) => o.is_empty(),
        Value::Undefined => true,
        _ => false,
    }
}

impl<'a> ResultSet<'a> {
    fn from_regorus(query: &str, results: &'a QueryResults) -> Self {
        let result = results
            .result
            .iter()
            .map(|r| QueryResult {
                expressions: r
                    .expressions
                    .iter()
                    .filter_map(|e| {
                        let ExprText { text, row, col } = query_text::opa_text_and_location(
                            query,
                            &e.text,
                            e.location.row,
                            e.location.col,
                        );
                        // OPA does not report `some x` declarations.
                        let declaration =
                            query_text::is_some_declaration(&text) && e.value == Value::Bool(true);
                        (!declaration).then_some(Expression {
                            value: &e.value,
                            text,
                            location: Location { row, col },
                        })
                    })
                    .collect(),
                bindings: &r.bindings,
            })
            .collect();
        Self { result }
    }
}

/// `opa eval -f pretty`: `undefined`, one value as indented JSON, or a table
/// with a column per binding (sorted) and per non-boolean expression.
fn pretty(output: &ResultSet<'_>) -> anyhow::Result<String> {
    let rs = &output.result;
    let Some(first) = rs.first() else {
        return Ok("undefined\n".to_string());
    };
    let no_bindings = is_empty_object(&first.bindings);
    if rs.len() == 1 && no_bindings {
        let all_bool = first
            .expressions
            .iter()
            .all(|e| matches!(e.value, Value::Bool(_)));
        if let Some(e) = first.expressions.first()
            && (first.expressions.len() == 1 || all_bool)
        {
            return Ok(format!("{}\n", go_json::to_indented(e.value)?));
        }
    }

    let mut vars: Vec<&Value> = match first.bindings {
        Value::Object(o) => o.keys().collect(),
        _ => Vec::new(),
    };
    vars.sort();
    let exprs: Vec<usize> = (0..first.expressions.len())
        .filter(|&i| {
            let is_bool = matches!(first.expressions[i].value, Value::Bool(_));
            !is_bool || no_bindings
        })
        .collect();
    let header: Vec<String> = vars
        .iter()
        .map(|v| match v {
            Value::String(s) => s.to_string(),
            other => other.to_string(),
        })
        .chain(exprs.iter().map(|&i| first.expressions[i].text.clone()))
        .collect();
    let rows = rs
        .iter()
        .map(|r| {
            let var_cells = vars.iter().map(|v| cell(&r.bindings[*v]));
            let expr_cells = exprs
                .iter()
                .map(|&i| cell(r.expressions.get(i).map_or(&Value::Undefined, |e| e.value)));
            var_cells
                .chain(expr_cells)
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(table::render(&header, &rows))
}

/// A value as compact JSON for a table cell; a missing value is `null`.
fn cell(v: &Value) -> anyhow::Result<String> {
    match v {
        Value::Undefined => Ok("null".to_string()),
        v => Ok(go_json::to_compact(v)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regorus::Engine;

    fn output_of(query: &str) -> (String, String) {
        let results = Engine::new().eval_query(query.to_string(), false).unwrap();
        let set = ResultSet::from_regorus(query, &results);
        (go_json::to_compact(&set).unwrap(), pretty(&set).unwrap())
    }

    #[test]
    fn undefined_is_an_empty_object_and_the_word_undefined() {
        assert_eq!(
            output_of("x := 1; false"),
            ("{}".into(), "undefined\n".into())
        );
    }

    #[test]
    fn a_single_value_prints_alone_in_pretty_mode() {
        let (json, pretty) = output_of(r#"{"a": "<b>"}"#);
        assert_eq!(
            json,
            r#"{"result":[{"expressions":[{"value":{"a":"\u003cb\u003e"},"text":"{\"a\": \"\u003cb\u003e\"}","location":{"row":1,"col":1}}]}]}"#
        );
        assert_eq!(pretty, "{\n  \"a\": \"\\u003cb\\u003e\"\n}\n");
    }

    #[test]
    fn bindings_come_after_expressions_and_some_is_dropped() {
        let (json, pretty) = output_of("some i; x := [10, 20][i]");
        assert_eq!(
            json,
            r#"{"result":[{"expressions":[{"value":true,"text":"x := [10, 20][i]","location":{"row":1,"col":9}}],"bindings":{"i":0,"x":10}},{"expressions":[{"value":true,"text":"x := [10, 20][i]","location":{"row":1,"col":9}}],"bindings":{"i":1,"x":20}}]}"#
        );
        assert_eq!(
            pretty,
            "+---+----+\n| i | x  |\n+---+----+\n| 0 | 10 |\n| 1 | 20 |\n+---+----+\n"
        );
    }

    #[test]
    fn several_values_without_bindings_make_a_table() {
        let (_, pretty) = output_of("1 + 1; \"s\"");
        assert_eq!(
            pretty,
            "+-------+-----+\n| 1 + 1 | \"s\" |\n+-------+-----+\n| 2     | \"s\" |\n+-------+-----+\n"
        );
    }
}
