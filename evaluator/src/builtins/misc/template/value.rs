//! Template data as Go holds it after OPA decodes the variables object into
//! `map[string]any` (numbers as `json.Number`), and Go's printing of it.

use std::collections::BTreeMap;

use regorus::Value;

/// A Go value reachable from template data.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum GoVal {
    /// No value (a missing map key, `reflect.Value{}`).
    Invalid,
    /// A nil `any` (JSON null).
    Nil,
    Bool(bool),
    Str(String),
    /// `json.Number`: printed as written, compared as a string.
    Number(String),
    Int(i64),
    Float(f64),
    Slice(Vec<GoVal>),
    Map(BTreeMap<String, GoVal>),
}

impl GoVal {
    /// The template variables as OPA's `ast.As` decodes them; sets and
    /// non-string keys do not survive its JSON round trip.
    pub(super) fn from_value(v: &Value) -> Result<GoVal, String> {
        Ok(match v {
            Value::Null => GoVal::Nil,
            Value::Bool(b) => GoVal::Bool(*b),
            Value::Number(_) => GoVal::Number(v.to_json_str().map_err(|e| e.to_string())?),
            Value::String(s) => GoVal::Str(s.to_string()),
            Value::Array(items) => GoVal::Slice(
                items
                    .iter()
                    .map(GoVal::from_value)
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(fields) => {
                let mut map = BTreeMap::new();
                for (k, v) in fields.iter() {
                    let Value::String(k) = k else {
                        return Err("template variables must have string keys".to_string());
                    };
                    map.insert(k.to_string(), GoVal::from_value(v)?);
                }
                GoVal::Map(map)
            }
            Value::Set(_) => return Err("template variables cannot hold sets".to_string()),
            Value::Undefined => return Err("undefined template variable".to_string()),
        })
    }

    /// Go's type name, for error messages.
    pub(super) fn type_name(&self) -> &'static str {
        match self {
            GoVal::Invalid => "<nil>",
            GoVal::Nil => "interface {}",
            GoVal::Bool(_) => "bool",
            GoVal::Str(_) => "string",
            GoVal::Number(_) => "json.Number",
            GoVal::Int(_) => "int",
            GoVal::Float(_) => "float64",
            GoVal::Slice(_) => "[]interface {}",
            GoVal::Map(_) => "map[string]interface {}",
        }
    }

    /// Whether Go's `reflect.Kind` of the value is `String`.
    pub(super) fn is_string_kind(&self) -> bool {
        matches!(self, GoVal::Str(_) | GoVal::Number(_))
    }

    /// text/template's `isTrue`.
    pub(super) fn is_true(&self) -> bool {
        match self {
            GoVal::Invalid | GoVal::Nil => false,
            GoVal::Bool(b) => *b,
            GoVal::Str(s) | GoVal::Number(s) => !s.is_empty(),
            GoVal::Int(i) => *i != 0,
            GoVal::Float(f) => *f != 0.0,
            GoVal::Slice(v) => !v.is_empty(),
            GoVal::Map(m) => !m.is_empty(),
        }
    }

    /// What `{{…}}` prints for the value (`fmt.Fprint`, `<no value>` for none).
    pub(super) fn print(&self) -> String {
        match self {
            GoVal::Invalid | GoVal::Nil => "<no value>".to_string(),
            other => other.fmt_v(),
        }
    }

    /// Go's `%v`.
    pub(super) fn fmt_v(&self) -> String {
        match self {
            GoVal::Invalid | GoVal::Nil => "<nil>".to_string(),
            GoVal::Bool(b) => b.to_string(),
            GoVal::Str(s) | GoVal::Number(s) => s.clone(),
            GoVal::Int(i) => i.to_string(),
            GoVal::Float(f) => format_float(*f),
            GoVal::Slice(items) => format!(
                "[{}]",
                items.iter().map(GoVal::fmt_v).collect::<Vec<_>>().join(" ")
            ),
            GoVal::Map(m) => format!(
                "map[{}]",
                m.iter()
                    .map(|(k, v)| format!("{k}:{}", v.fmt_v()))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        }
    }
}

/// Go's `%v` for a float64 (`strconv.FormatFloat(f, 'g', -1, 64)`: the
/// shortest digits, in exponent form below 1e-4 and from 1e6 upwards).
pub(super) fn format_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    format!("{f}")
}
