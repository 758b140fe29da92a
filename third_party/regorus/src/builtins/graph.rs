// Copyright (c) Microsoft Corporation.
// Licensed under the MIT License.

#![allow(clippy::pattern_type_mismatch)]

use crate::ast::{Expr, Ref};
use crate::builtins;
use crate::builtins::utils::{enforce_limit, ensure_args_count, operand_type_error};
use crate::lexer::Span;
use crate::value::Object;
use crate::value::Value;
use crate::*;

use alloc::collections::BTreeSet;

use anyhow::Result;

pub fn register(m: &mut builtins::BuiltinsMap<&'static str, builtins::BuiltinFcn>) {
    m.insert("graph.reachable", (reachable, 2));
    m.insert("graph.reachable_paths", (reachable_paths, 2));
    m.insert("walk", (walk, 1));
}

fn reachable(span: &Span, params: &[Ref<Expr>], args: &[Value], _strict: bool) -> Result<Value> {
    let name = "graph.reachable";
    ensure_args_count(span, name, params, args, 2)?;

    // policy-engine patch: OPA's operand type errors (raised, and so
    // undefined in non-strict mode, for both operands).
    let Value::Object(graph) = &args[0] else {
        return Err(operand_type_error(
            params[0].span(),
            name,
            1,
            &["object"],
            &args[0],
        ));
    };
    let mut worklist = vec![];

    match &args[1] {
        Value::Array(arr) => {
            for node in arr.iter() {
                worklist.push(node.clone());
                // Guard worklist growth when seeding traversal from an array.
                enforce_limit()?;
            }
        }
        Value::Set(set) => {
            for node in set.iter() {
                worklist.push(node.clone());
                // Guard worklist growth when seeding traversal from a set.
                enforce_limit()?;
            }
        }
        other => {
            return Err(operand_type_error(
                params[1].span(),
                name,
                2,
                &["array", "set"],
                other,
            ))
        }
    }

    let mut reachable = BTreeSet::new();
    while let Some(v) = worklist.pop() {
        if reachable.contains(&v) {
            continue;
        }

        match graph.get(&v) {
            Some(Value::Array(arr)) => {
                for neighbor in arr.iter() {
                    worklist.push(neighbor.clone());
                    // Guard worklist growth when enqueuing array neighbors.
                    enforce_limit()?;
                }
            }
            Some(Value::Set(set)) => {
                for neighbor in set.iter() {
                    worklist.push(neighbor.clone());
                    // Guard worklist growth when enqueuing set neighbors.
                    enforce_limit()?;
                }
            }
            Some(_) => (),
            _ => continue,
        }

        reachable.insert(v);
        // Guard reachable set size as discovered vertices accumulate.
        enforce_limit()?;
    }

    Ok(Value::from_set(reachable))
}

/// The vertices of an edge collection (array or set), in order; nothing for
/// any other value.
fn vertices(collection: &Value) -> Vec<Value> {
    match collection {
        Value::Array(arr) => arr.iter().cloned().collect(),
        Value::Set(set) => set.iter().cloned().collect(),
        _ => Vec::new(),
    }
}

/// policy-engine patch: OPA's (v1.20) `pathBuilder`. A path ends where a
/// vertex is missing from the graph (without that vertex), has no edges, or
/// reaches a vertex already reached. `reached` is shared by the whole walk
/// from one start edge, and a vertex's cycle commits accumulate, as in OPA.
fn build_paths(
    graph: &Object,
    root: &Value,
    path: &mut Vec<Value>,
    paths: &mut BTreeSet<Value>,
    reached: &mut BTreeSet<Value>,
) -> Result<()> {
    let Some(edges) = graph.get(root) else {
        paths.insert(Value::from_array(path.clone()));
        // Guard path result growth when ending at a missing vertex.
        enforce_limit()?;
        return Ok(());
    };
    let depth = path.len();
    path.push(root.clone());
    let neighbors = vertices(edges);
    if neighbors.is_empty() {
        paths.insert(Value::from_array(path.clone()));
        // Guard path result growth when ending at a leaf.
        enforce_limit()?;
    }
    let mut committed: Vec<Value> = Vec::new();
    for neighbor in &neighbors {
        if reached.contains(neighbor) {
            committed.extend(path.iter().cloned());
            paths.insert(Value::from_array(committed.clone()));
            // Guard path result growth when reaching a reached vertex.
            enforce_limit()?;
        } else {
            reached.insert(root.clone());
            // Guard reached set growth while marking vertices.
            enforce_limit()?;
            build_paths(graph, neighbor, path, paths, reached)?;
        }
    }
    path.truncate(depth);
    Ok(())
}

fn reachable_paths(
    span: &Span,
    params: &[Ref<Expr>],
    args: &[Value],
    _strict: bool,
) -> Result<Value> {
    let name = "graph.reachable_paths";
    ensure_args_count(span, name, params, args, 2)?;

    // policy-engine patch: OPA's `builtinReachablePaths`, with its operand
    // type errors.
    let Value::Object(graph) = &args[0] else {
        return Err(operand_type_error(
            params[0].span(),
            name,
            1,
            &["object"],
            &args[0],
        ));
    };
    let initial = match &args[1] {
        v @ (Value::Array(_) | Value::Set(_)) => vertices(v),
        other => {
            return Err(operand_type_error(
                params[1].span(),
                name,
                2,
                &["array", "set"],
                other,
            ))
        }
    };

    let mut paths = BTreeSet::new();
    for node in &initial {
        let Some(edges) = graph.get(node) else {
            continue;
        };
        let neighbors = vertices(edges);
        if neighbors.is_empty() {
            paths.insert(Value::from_array(vec![node.clone()]));
            // Guard path result growth when a start vertex has no edges.
            enforce_limit()?;
            continue;
        }
        for neighbor in &neighbors {
            let mut reached: BTreeSet<Value> = [node.clone()].into_iter().collect();
            let mut path = vec![node.clone()];
            build_paths(graph, neighbor, &mut path, &mut paths, &mut reached)?;
        }
    }

    Ok(Value::from_set(paths))
}

fn walk_visit(path: &mut Vec<Value>, value: &Value, paths: &mut Vec<Value>) -> Result<()> {
    {
        let path = Value::from_array(path.clone());
        paths.push(Value::from_array([path, value.clone()].into()));
        // Guard walk result growth when emitting a new path/value pair.
        enforce_limit()?;
    }
    match value {
        Value::Array(arr) => {
            for (idx, elem) in arr.iter().enumerate() {
                path.push(Value::from(idx));
                // Guard path stack growth while traversing array members.
                enforce_limit()?;
                walk_visit(path, elem, paths)?;
                path.pop();
            }
        }
        Value::Set(set) => {
            for elem in set.iter() {
                path.push(elem.clone());
                // Guard path stack growth while traversing set members.
                enforce_limit()?;
                walk_visit(path, elem, paths)?;
                path.pop();
            }
        }
        Value::Object(obj) => {
            for (key, value) in obj.iter_sorted() {
                path.push(key.clone());
                // Guard path stack growth while traversing object entries.
                enforce_limit()?;
                walk_visit(path, value, paths)?;
                path.pop();
            }
        }
        _ => (),
    }
    Ok(())
}

fn walk(span: &Span, params: &[Ref<Expr>], args: &[Value], _strict: bool) -> Result<Value> {
    let name = "walk";
    ensure_args_count(span, name, params, args, 1)?;
    let mut paths = vec![];
    walk_visit(&mut vec![], &args[0], &mut paths)?;
    Ok(Value::from_array(paths))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths_from(graph_json: &str, start: &str) -> Value {
        let graph = Value::from_json_str(graph_json).expect("graph");
        let graph = graph.as_object().expect("object").clone();
        let mut paths = BTreeSet::new();
        let start = Value::from(start);
        for neighbor in graph.get(&start).map(vertices).unwrap_or_default() {
            let mut reached: BTreeSet<Value> = [start.clone()].into_iter().collect();
            let mut path = vec![start.clone()];
            build_paths(&graph, &neighbor, &mut path, &mut paths, &mut reached).expect("paths");
        }
        Value::from_set(paths)
    }

    #[test]
    fn reached_vertices_are_shared_by_one_start_edge() {
        let graph = r#"{"one": ["two", "five"], "two": ["four"], "three": [""],
            "four": ["three"], "five": ["seven", "six"], "six": ["nine", "seven"],
            "seven": ["eight"], "eight": ["three"], "nine": [""]}"#;
        let want = Value::from_json_str(
            r#"[["one","five","seven","eight","three"],["one","five","six"],
                ["one","five","six","nine"],["one","two","four","three"]]"#,
        )
        .expect("want");
        let want = Value::from_set(want.as_array().expect("array").iter().cloned().collect());
        assert_eq!(paths_from(graph, "one"), want);
    }

    #[test]
    fn a_cycle_ends_the_path() {
        let got = paths_from(r#"{"a": ["b"], "b": ["c"], "c": ["a"]}"#, "a");
        let want = Value::from_json_str(r#"[["a", "b", "c"]]"#).expect("want");
        let want = Value::from_set(want.as_array().expect("array").iter().cloned().collect());
        assert_eq!(got, want);
    }
}
