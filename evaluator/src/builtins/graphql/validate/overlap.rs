//! OverlappingFieldsCanBeMerged, as gqlparser implements it: fields with
//! the same response name must be the same field with the same arguments
//! (unless their parents are distinct object types) and return compatible
//! types, compared within each selection set, against the fragments it
//! spreads, and between those fragments. As in gqlparser, arguments
//! compare by kind and raw text only, positionally by name, and a field
//! the walker has not resolved (unknown field or parent) never conflicts.

use std::collections::{HashMap, HashSet};

use crate::builtins::graphql::GqlError;
use crate::builtins::graphql::ast::*;
use crate::builtins::graphql::lexer::Pos;
use crate::builtins::graphql::schema::Schema;

/// What the walker resolved a field to: its definition and the type it
/// was selected on.
#[derive(Clone, Copy)]
pub(super) struct FieldInfo<'a> {
    pub(super) def: Option<&'a FieldDefinition>,
    pub(super) parent: Option<&'a Definition>,
}

/// Resolved fields, keyed by node address.
pub(super) type FieldInfos<'a> = HashMap<*const Field, FieldInfo<'a>>;

/// Fragment pairs already compared, with whether they were compared as
/// mutually exclusive; kept for a whole document.
pub(super) type ComparedPairs = HashMap<String, HashMap<String, bool>>;

struct Conflict {
    response_name: String,
    message: String,
    sub: Vec<Conflict>,
    pos: Pos,
}

impl Conflict {
    fn reason(&self, out: &mut String) {
        if self.sub.is_empty() {
            out.push_str(&self.message);
            return;
        }
        for (i, sub) in self.sub.iter().enumerate() {
            out.push_str(&format!(
                "subfields \"{}\" conflict because ",
                sub.response_name
            ));
            sub.reason(out);
            if i != self.sub.len() - 1 {
                out.push_str(" and ");
            }
        }
    }

    fn into_error(self) -> GqlError {
        let mut reason = String::new();
        self.reason(&mut reason);
        GqlError {
            message: format!(
                "Fields \"{}\" conflict because {reason}. Use different aliases on the fields to fetch both if this was intentional.",
                self.response_name
            ),
            pos: self.pos,
        }
    }
}

/// Fields by response name, in first-seen order.
type FieldsMap<'a> = Vec<(&'a str, Vec<&'a Field>)>;

pub(super) struct Overlap<'a, 'w> {
    pub(super) schema: &'a Schema,
    pub(super) doc: &'a QueryDocument,
    pub(super) fields: &'w FieldInfos<'a>,
    pub(super) pairs: &'w mut ComparedPairs,
    compared: HashSet<String>,
}

impl<'a, 'w> Overlap<'a, 'w> {
    pub(super) fn new(
        schema: &'a Schema,
        doc: &'a QueryDocument,
        fields: &'w FieldInfos<'a>,
        pairs: &'w mut ComparedPairs,
    ) -> Self {
        Self {
            schema,
            doc,
            fields,
            pairs,
            compared: HashSet::new(),
        }
    }

    /// The conflicts within `set`.
    pub(super) fn within(&mut self, set: &'a [Selection]) -> Vec<GqlError> {
        if set.is_empty() {
            return Vec::new();
        }
        let (fields, spreads) = fields_and_spreads(set);
        let mut out = Vec::new();
        for (_, group) in &fields {
            for (i, a) in group.iter().enumerate() {
                for b in &group[i + 1..] {
                    out.extend(self.find_conflict(false, a, b));
                }
            }
        }
        self.compared = HashSet::new();
        for (i, a) in spreads.iter().enumerate() {
            self.between_fields_and_fragment(&mut out, false, &fields, a);
            for b in &spreads[i + 1..] {
                self.between_fragments(&mut out, false, a, b);
            }
        }
        out.into_iter().map(Conflict::into_error).collect()
    }

    fn fragment(&self, name: &str) -> Option<&'a FragmentDefinition> {
        self.doc.fragments.iter().find(|f| f.name == name)
    }

    fn between_fields_and_fragment(
        &mut self,
        out: &mut Vec<Conflict>,
        exclusive: bool,
        fields: &FieldsMap<'a>,
        spread: &'a FragmentSpread,
    ) {
        if !self.compared.insert(spread.name.clone()) {
            return;
        }
        let Some(def) = self.fragment(&spread.name) else {
            return;
        };
        let (fields_b, spreads_b) = fields_and_spreads(&def.selection_set);
        if same_fields(fields, &fields_b) {
            return;
        }
        self.between(out, exclusive, fields, &fields_b);
        for s in spreads_b {
            if s.name != spread.name {
                self.between_fields_and_fragment(out, exclusive, fields, s);
            }
        }
    }

    fn pair_seen(&self, a: &str, b: &str, exclusive: bool) -> bool {
        match self.pairs.get(a).and_then(|m| m.get(b)) {
            None => false,
            Some(stored) => exclusive || !*stored,
        }
    }

    fn between_fragments(
        &mut self,
        out: &mut Vec<Conflict>,
        exclusive: bool,
        a: &'a FragmentSpread,
        b: &'a FragmentSpread,
    ) {
        if a.name == b.name || self.pair_seen(&a.name, &b.name, exclusive) {
            return;
        }
        for (x, y) in [(&a.name, &b.name), (&b.name, &a.name)] {
            self.pairs
                .entry(x.clone())
                .or_default()
                .insert(y.clone(), exclusive);
        }
        let (Some(def_a), Some(def_b)) = (self.fragment(&a.name), self.fragment(&b.name)) else {
            return;
        };
        let (fields_a, spreads_a) = fields_and_spreads(&def_a.selection_set);
        let (fields_b, spreads_b) = fields_and_spreads(&def_b.selection_set);
        self.between(out, exclusive, &fields_a, &fields_b);
        for s in spreads_b {
            self.between_fragments(out, exclusive, a, s);
        }
        for s in spreads_a {
            self.between_fragments(out, exclusive, s, b);
        }
    }

    fn between_sub_selections(
        &mut self,
        exclusive: bool,
        set_a: &'a [Selection],
        set_b: &'a [Selection],
    ) -> Vec<Conflict> {
        let mut out = Vec::new();
        let (fields_a, spreads_a) = fields_and_spreads(set_a);
        let (fields_b, spreads_b) = fields_and_spreads(set_b);
        self.between(&mut out, exclusive, &fields_a, &fields_b);
        for s in &spreads_b {
            self.compared = HashSet::new();
            self.between_fields_and_fragment(&mut out, exclusive, &fields_a, s);
        }
        for s in &spreads_a {
            self.compared = HashSet::new();
            self.between_fields_and_fragment(&mut out, exclusive, &fields_b, s);
        }
        for a in &spreads_a {
            for b in &spreads_b {
                self.between_fragments(&mut out, exclusive, a, b);
            }
        }
        out
    }

    fn between(
        &mut self,
        out: &mut Vec<Conflict>,
        exclusive: bool,
        fields_a: &FieldsMap<'a>,
        fields_b: &FieldsMap<'a>,
    ) {
        for (name, group_a) in fields_a {
            let Some((_, group_b)) = fields_b.iter().find(|(n, _)| n == name) else {
                continue;
            };
            for a in group_a {
                for b in group_b {
                    out.extend(self.find_conflict(exclusive, a, b));
                }
            }
        }
    }

    fn resolved(&self, f: &Field) -> Option<(&'a FieldDefinition, &'a Definition)> {
        let info = self.fields.get(&std::ptr::from_ref(f))?;
        Some((info.def?, info.parent?))
    }

    fn find_conflict(
        &mut self,
        parents_exclusive: bool,
        a: &'a Field,
        b: &'a Field,
    ) -> Option<Conflict> {
        let (def_a, parent_a) = self.resolved(a)?;
        let (def_b, parent_b) = self.resolved(b)?;
        let exclusive = parents_exclusive
            || (parent_a.name != parent_b.name
                && parent_a.kind == def_kind::OBJECT
                && parent_b.kind == def_kind::OBJECT);
        let response_name = response_name(a).to_string();
        let conflict = |message: String| Conflict {
            response_name: response_name.clone(),
            message,
            sub: Vec::new(),
            pos: b.pos,
        };
        if !exclusive {
            if a.name != b.name {
                return Some(conflict(format!(
                    "{} and {} are different fields",
                    a.name, b.name
                )));
            }
            if !same_arguments(&a.arguments, &b.arguments) {
                return Some(conflict("they have differing arguments".to_string()));
            }
        }
        if let (Some(t1), Some(t2)) = (&def_a.ty, &def_b.ty)
            && self.types_conflict(t1, t2)
        {
            return Some(conflict(format!(
                "they return conflicting types {} and {}",
                t1.render(),
                t2.render()
            )));
        }
        let sub = self.between_sub_selections(exclusive, &a.selection_set, &b.selection_set);
        if sub.is_empty() {
            return None;
        }
        Some(Conflict {
            response_name,
            message: String::new(),
            sub,
            pos: b.pos,
        })
    }

    fn types_conflict(&self, t1: &Type, t2: &Type) -> bool {
        match (&t1.elem, &t2.elem) {
            (Some(e1), Some(e2)) => return self.types_conflict(e1, e2),
            (Some(_), None) | (None, Some(_)) => return true,
            (None, None) => {}
        }
        if t1.non_null != t2.non_null {
            return true;
        }
        match (
            self.schema.ty(&t1.named_type),
            self.schema.ty(&t2.named_type),
        ) {
            (Some(d1), Some(d2)) if d1.is_leaf() && d2.is_leaf() => d1.name != d2.name,
            _ => false,
        }
    }
}

fn response_name(f: &Field) -> &str {
    if f.alias.is_empty() {
        &f.name
    } else {
        &f.alias
    }
}

/// The fields of `set` (through inline fragments) and the fragments it
/// spreads.
fn fields_and_spreads(set: &[Selection]) -> (FieldsMap<'_>, Vec<&FragmentSpread>) {
    fn walk<'a>(
        set: &'a [Selection],
        fields: &mut FieldsMap<'a>,
        spreads: &mut Vec<&'a FragmentSpread>,
    ) {
        for sel in set {
            match sel {
                Selection::Field(f) => {
                    let name = response_name(f);
                    match fields.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, group)) => group.push(f),
                        None => fields.push((name, vec![f])),
                    }
                }
                Selection::InlineFragment(i) => walk(&i.selection_set, fields, spreads),
                Selection::FragmentSpread(s) => spreads.push(s),
            }
        }
    }
    let mut fields = FieldsMap::new();
    let mut spreads = Vec::new();
    walk(set, &mut fields, &mut spreads);
    (fields, spreads)
}

/// Whether two collections hold the very same field nodes.
fn same_fields(a: &FieldsMap<'_>, b: &FieldsMap<'_>) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((na, fa), (nb, fb))| {
            na == nb && fa.len() == fb.len() && fa.iter().zip(fb).all(|(x, y)| std::ptr::eq(*x, *y))
        })
}

/// gqlparser's argument comparison: equal counts, and every pair across
/// the two lists must match by name and by value kind and raw text.
fn same_arguments(a: &[Argument], b: &[Argument]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().all(|x| {
        b.iter().all(|y| {
            x.name == y.name
                && match (&x.value, &y.value) {
                    (Some(v1), Some(v2)) => v1.kind == v2.kind && v1.raw == v2.raw,
                    (None, None) => true,
                    _ => false,
                }
        })
    })
}
