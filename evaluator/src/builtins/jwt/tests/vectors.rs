//! Differential test against real OPA v1.20: `tests/opa/jwt_vectors.json`
//! holds calls answered by OPA (`"expected": "undefined"` where OPA
//! raised an error). Time-dependent cases use `exp`/`nbf` in 2000 or 2100,
//! or an explicit `time` constraint.

use regorus::Value;

use super::super::call;
use super::super::json::{self, Json};

const VECTORS: &str = include_str!("../../../../../tests/opa/jwt_vectors.json");

fn member<'a>(v: &'a Json, name: &'a str) -> &'a Json {
    v.members(name).next().unwrap_or(&Json::Null)
}

#[test]
fn results_match_opa() {
    let Some(Json::Array(vectors)) = json::parse(VECTORS.as_bytes()) else {
        panic!("jwt_vectors.json is not a JSON array");
    };
    assert!(vectors.len() >= 30, "too few vectors");
    let mut failures = Vec::new();
    for v in &vectors {
        let (Json::String(note), Json::String(name), Json::Array(args)) =
            (member(v, "note"), member(v, "call"), member(v, "args"))
        else {
            panic!("malformed vector {v:?}");
        };
        let args: Vec<Value> = args
            .iter()
            .map(|a| json::to_value(a).expect("arg"))
            .collect();
        let got = call(name, &args);
        let ok = match (member(v, "expected"), &got) {
            (Json::String(s), Err(_)) if s == "undefined" => true,
            (expected, Ok(value)) => json::to_value(expected).as_ref() == Some(value),
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{note} ({name}): OPA {:?}, we {got:?}",
                member(v, "expected")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors differ from OPA:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}
