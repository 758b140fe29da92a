//! Lookups the rules share: fragment reachability and cycles, the fields
//! a subscription selects, and suggestions for unknown fields.

use std::collections::{HashMap, HashSet};

use super::Walker;
use crate::builtins::graphql::ast::*;
use crate::builtins::graphql::lexer::{Pos, go_quote};
use crate::builtins::graphql::suggest::{quoted_or_list, with_suggestions};

impl<'a> Walker<'a> {
    pub(super) fn single_field_subscription(&mut self, op: &'a OperationDefinition) {
        let mut fields: Vec<(&str, Pos)> = Vec::new();
        let mut seen = HashSet::new();
        let mut visited = HashSet::new();
        self.top_fields(&op.selection_set, &mut fields, &mut seen, &mut visited);
        let name = if op.name.is_empty() {
            "Anonymous Subscription".to_string()
        } else {
            format!("Subscription {}", go_quote(&op.name))
        };
        if let Some((_, pos)) = fields.get(1) {
            self.error(
                *pos,
                format!("{name} must select only one top level field."),
            );
        }
        for (field, pos) in fields {
            if field.starts_with("__") {
                self.error(
                    pos,
                    format!("{name} must not select an introspection top level field."),
                );
            }
        }
    }

    pub(super) fn top_fields(
        &self,
        set: &'a [Selection],
        out: &mut Vec<(&'a str, Pos)>,
        seen: &mut HashSet<&'a str>,
        visited: &mut HashSet<&'a str>,
    ) {
        for sel in set {
            match sel {
                Selection::Field(f) => {
                    if seen.insert(f.name.as_str()) {
                        out.push((f.name.as_str(), f.pos));
                    }
                }
                Selection::InlineFragment(f) => {
                    self.top_fields(&f.selection_set, out, seen, visited)
                }
                Selection::FragmentSpread(s) => {
                    if let Some(frag) = self.fragment(&s.name)
                        && visited.insert(frag.name.as_str())
                    {
                        self.top_fields(&frag.selection_set, out, seen, visited);
                    }
                }
            }
        }
    }

    pub(super) fn fragment_cycles(
        &mut self,
        frag: &'a FragmentDefinition,
        path: &mut Vec<&'a FragmentSpread>,
        index: &mut HashMap<&'a str, usize>,
    ) {
        if !self.cycle_checked.insert(frag.name.clone()) {
            return;
        }
        let mut spreads = Vec::new();
        collect_spreads(&frag.selection_set, &mut spreads);
        if spreads.is_empty() {
            return;
        }
        index.insert(frag.name.as_str(), path.len());
        for spread in spreads {
            let cycle_index = index.get(spread.name.as_str()).copied();
            path.push(spread);
            match cycle_index {
                None => {
                    if let Some(next) = self.fragment(&spread.name) {
                        self.fragment_cycles(next, path, index);
                    }
                }
                Some(start) => {
                    let names: Vec<String> = path[start..path.len() - 1]
                        .iter()
                        .map(|s| format!("\"{}\"", s.name))
                        .collect();
                    let via = if names.is_empty() {
                        String::new()
                    } else {
                        format!(" via {}", names.join(", "))
                    };
                    self.error(
                        spread.pos,
                        format!(
                            "Cannot spread fragment \"{}\" within itself{via}.",
                            spread.name
                        ),
                    );
                }
            }
            path.pop();
        }
        index.remove(frag.name.as_str());
    }

    /// FieldsOnCorrectType's message, suggesting the types that do have the
    /// field (for an abstract parent) or similarly named fields.
    pub(super) fn unknown_field_message(&self, parent: &Definition, name: &str) -> String {
        let message = format!("Cannot query field \"{name}\" on type \"{}\".", parent.name);
        if matches!(parent.kind.as_str(), def_kind::INTERFACE | def_kind::UNION) {
            let mut objects: Vec<String> = Vec::new();
            let mut interfaces: Vec<String> = Vec::new();
            let mut usage: HashMap<String, usize> = HashMap::new();
            for possible in self.schema.possible_types(&parent.name) {
                let Some(possible) = self.schema.ty(possible) else {
                    continue;
                };
                if possible.field(name).is_none() {
                    continue;
                }
                objects.push(possible.name.clone());
                for intf in &possible.interfaces {
                    if self
                        .schema
                        .ty(intf)
                        .is_some_and(|i| i.field(name).is_some())
                    {
                        let count = usage.entry(intf.clone()).or_default();
                        if *count == 0 {
                            interfaces.push(intf.clone());
                        }
                        *count += 1;
                    }
                }
            }
            interfaces.extend(objects);
            if !interfaces.is_empty() {
                let count = |t: &String| usage.get(t).copied().unwrap_or(0);
                interfaces.sort_by(|a, b| count(b).cmp(&count(a)).then_with(|| a.cmp(b)));
                return format!(
                    "{message} Did you mean to use an inline fragment on {}?",
                    quoted_or_list(&interfaces)
                );
            }
        }
        if matches!(parent.kind.as_str(), def_kind::OBJECT | def_kind::INTERFACE) {
            let fields: Vec<String> = parent.fields.iter().map(|f| f.name.clone()).collect();
            return with_suggestions(message, "Did you mean", name, &fields);
        }
        message
    }

    /// Whether a fragment on `type_condition` can apply inside `parent`.
    pub(super) fn spread_possible(
        &self,
        parent: Option<&Definition>,
        type_condition: &str,
    ) -> bool {
        let Some(parent) = parent else {
            return true;
        };
        let Some(frag_type) = self.schema.ty(type_condition) else {
            return true;
        };
        if !frag_type.is_composite() {
            return true;
        }
        let parents = self.schema.possible_types(&parent.name);
        self.schema
            .possible_types(&frag_type.name)
            .iter()
            .any(|t| parents.contains(t))
    }
}

fn collect_spreads<'a>(set: &'a [Selection], out: &mut Vec<&'a FragmentSpread>) {
    for sel in set {
        match sel {
            Selection::Field(f) => collect_spreads(&f.selection_set, out),
            Selection::InlineFragment(f) => collect_spreads(&f.selection_set, out),
            Selection::FragmentSpread(s) => out.push(s),
        }
    }
}
