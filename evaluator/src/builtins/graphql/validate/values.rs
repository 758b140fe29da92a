//! ValuesOfCorrectType: literal values must fit the input type expected
//! where they appear.

use crate::builtins::graphql::ast::*;
use crate::builtins::graphql::lexer::Pos;
use crate::builtins::graphql::suggest::with_suggestions;

const BUILTIN_SCALARS: &[&str] = &["Int", "Float", "String", "Boolean", "ID"];

fn one_of(def: &Definition, names: &[&str]) -> bool {
    names.contains(&def.name.as_str())
}

/// Whether gqlparser's `Value.Value(nil)` conversion of `v` succeeds.
fn converts(v: &Value) -> bool {
    match v.kind {
        value_kind::INT => v.raw.parse::<i64>().is_ok(),
        value_kind::FLOAT => v.raw.parse::<f64>().is_ok(),
        value_kind::BOOLEAN => matches!(
            v.raw.as_str(),
            "1" | "t"
                | "T"
                | "TRUE"
                | "true"
                | "True"
                | "0"
                | "f"
                | "F"
                | "FALSE"
                | "false"
                | "False"
        ),
        value_kind::LIST | value_kind::OBJECT => v
            .children
            .iter()
            .all(|c| c.value.as_ref().is_none_or(converts)),
        _ => true,
    }
}

fn type_message(v: &Value, ty: &Type, def: &Definition) -> String {
    let found = v.describe();
    match ty.render().as_str() {
        "Int" | "Int!" => {
            let out_of_range = v
                .raw
                .parse::<i64>()
                .map(|n| i32::try_from(n).is_err())
                .unwrap_or_else(|_| v.raw.bytes().all(|b| b.is_ascii_digit() || b == b'-'));
            if out_of_range && v.kind == value_kind::INT {
                format!("Int cannot represent non 32-bit signed integer value: {found}")
            } else {
                format!("Int cannot represent non-integer value: {found}")
            }
        }
        "String" | "String!" | "[String]" => {
            format!("String cannot represent a non string value: {found}")
        }
        "Boolean" | "Boolean!" => format!("Boolean cannot represent a non boolean value: {found}"),
        "Float" | "Float!" => format!("Float cannot represent non numeric value: {found}"),
        "ID" | "ID!" => format!("ID cannot represent a non-string and non-integer value: {found}"),
        rendered => {
            if def.kind == def_kind::ENUM {
                format!("Enum \"{rendered}\" cannot represent non-enum value: {found}.")
            } else {
                format!("Expected value of type \"{rendered}\", found {found}.")
            }
        }
    }
}

/// The errors for `v` where `ty` (resolving to `def`) is expected; `None`
/// when nothing is expected there.
pub(crate) fn check(
    v: &Value,
    ty: Option<&Type>,
    def: Option<&Definition>,
) -> Option<Vec<(Pos, String)>> {
    let (ty, def) = (ty?, def?);
    let mut errors = Vec::new();
    let enum_values: Vec<String> = def.enum_values.iter().map(|e| e.name.clone()).collect();
    if v.kind == value_kind::NULL && ty.non_null {
        errors.push((
            v.pos,
            format!(
                "Expected value of type \"{}\", found {}.",
                ty.render(),
                v.describe()
            ),
        ));
    }
    if def.kind == def_kind::SCALAR && !one_of(def, BUILTIN_SCALARS) {
        return Some(errors);
    }
    let unexpected = |errors: &mut Vec<(Pos, String)>| {
        errors.push((v.pos, type_message(v, ty, def)));
    };
    if !converts(v) {
        unexpected(&mut errors);
    }
    match v.kind {
        value_kind::NULL | value_kind::VARIABLE => {}
        value_kind::LIST => {
            if ty.elem.is_none() {
                unexpected(&mut errors);
            }
        }
        value_kind::INT => {
            if !one_of(def, &["Int", "Float", "ID"]) {
                unexpected(&mut errors);
            }
        }
        value_kind::FLOAT => {
            if !one_of(def, &["Float"]) {
                unexpected(&mut errors);
            }
        }
        value_kind::STRING | value_kind::BLOCK => {
            if def.kind == def_kind::ENUM {
                let message = format!(
                    "Enum \"{}\" cannot represent non-enum value: {}.",
                    ty.render(),
                    v.describe()
                );
                let message =
                    with_suggestions(message, "Did you mean the enum value", &v.raw, &enum_values);
                errors.push((v.pos, message));
            } else if !one_of(def, &["String", "ID"]) {
                unexpected(&mut errors);
            }
        }
        value_kind::ENUM => {
            if def.kind != def_kind::ENUM {
                unexpected(&mut errors);
            } else if !def.enum_values.iter().any(|e| e.name == v.raw) {
                let message = format!(
                    "Value \"{}\" does not exist in \"{}\" enum.",
                    v.raw,
                    ty.render()
                );
                let message =
                    with_suggestions(message, "Did you mean the enum value", &v.raw, &enum_values);
                errors.push((v.pos, message));
            }
        }
        value_kind::BOOLEAN => {
            if !one_of(def, &["Boolean"]) {
                unexpected(&mut errors);
            }
        }
        value_kind::OBJECT => {
            for field in &def.fields {
                let non_null = field.ty.as_ref().is_some_and(|t| t.non_null);
                let provided = v.children.iter().any(|c| c.name == field.name);
                if non_null && !provided && field.default_value.is_none() {
                    let rendered = field.ty.as_ref().map(Type::render).unwrap_or_default();
                    errors.push((
                        v.pos,
                        format!(
                            "Field \"{}.{}\" of required type \"{}\" was not provided.",
                            def.name, field.name, rendered
                        ),
                    ));
                }
            }
            let fields: Vec<String> = def.fields.iter().map(|f| f.name.clone()).collect();
            for child in &v.children {
                if def.field(&child.name).is_none() {
                    let message = format!(
                        "Field \"{}\" is not defined by type \"{}\".",
                        child.name, def.name
                    );
                    let message = with_suggestions(message, "Did you mean", &child.name, &fields);
                    errors.push((child.pos, message));
                }
            }
        }
        other => errors.push((v.pos, format!("unknown value kind {other}"))),
    }
    Some(errors)
}
