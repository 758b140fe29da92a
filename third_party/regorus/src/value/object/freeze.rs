// Copyright (c) Microsoft Corporation.
// Licensed under the MIT License.

//! Freeze/thaw transitions between mutable `BTree` storage and compact
//! read-mostly `Frozen` boxed-slice storage.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::{Object, Repr};
use crate::value::Value;

/// policy-engine patch: the order of object keys (`Value`'s), strings
/// compared as bytes without the generic comparison.
#[inline]
pub(crate) fn key_order(a: &Value, b: &Value) -> core::cmp::Ordering {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        _ => a.cmp(b),
    }
}

impl Object {
    /// Convert to the immutable boxed-slice representation.
    pub(crate) fn freeze(mut self) -> Self {
        self.freeze_in_place();
        self
    }

    /// Wrap into a `Value::Object`.
    #[inline]
    pub fn into_value(self) -> Value {
        Value::Object(crate::Rc::new(self.freeze()))
    }

    #[cfg(test)]
    #[doc(hidden)]
    pub(crate) const fn storage_variant_for_memory_diagnostics(&self) -> &'static str {
        match &self.repr {
            Repr::Empty => "Empty",
            Repr::Frozen(_) => "Frozen",
            Repr::BTree(_) => "BTree",
        }
    }

    fn freeze_in_place(&mut self) {
        match core::mem::take(&mut self.repr) {
            Repr::Empty => {
                self.repr = Repr::Frozen(Box::new([]));
            }
            Repr::Frozen(v) => {
                debug_assert_sorted_dedup(&v);
                self.repr = Repr::Frozen(v);
            }
            Repr::BTree(m) => {
                let boxed = m.into_iter().collect::<Vec<_>>().into_boxed_slice();
                // Release-critical invariant: BTreeMap iteration is sorted and deduplicated
                // before Frozen binary-search storage is constructed.
                debug_assert_sorted_dedup(&boxed);
                self.repr = Repr::Frozen(boxed);
            }
        }
    }

    /// policy-engine patch: an object from entries already strictly sorted
    /// by key and deduplicated (as `iter_sorted` yields them), in compact
    /// storage with one allocation.
    pub(crate) fn from_sorted_entries(v: Vec<(Value, Value)>) -> Self {
        if v.is_empty() {
            return Self::new();
        }
        let boxed = v.into_boxed_slice();
        debug_assert_sorted_dedup(&boxed);
        Self {
            repr: Repr::Frozen(boxed),
        }
    }

    /// policy-engine patch: an object from entries in any order, in compact
    /// storage; when a key repeats, the later entry wins (as in an object
    /// literal). Entries already strictly sorted by key are taken as they are.
    pub(crate) fn from_entries(mut entries: Vec<(Value, Value)>) -> Self {
        if !entries.windows(2).all(|w| {
            matches!((w.first(), w.get(1)), (Some(a), Some(b)) if key_order(&a.0, &b.0).is_lt())
        }) {
            // Stable: equal keys keep their order, and the later one wins.
            entries.sort_by(|a, b| key_order(&a.0, &b.0));
            entries.dedup_by(|later, kept| {
                if later.0 == kept.0 {
                    core::mem::swap(&mut later.1, &mut kept.1);
                    true
                } else {
                    false
                }
            });
        }
        Self::from_sorted_entries(entries)
    }

    pub(super) fn thawed_repr(v: Box<[(Value, Value)]>) -> Repr {
        debug_assert_sorted_dedup(&v);
        if v.is_empty() {
            Repr::Empty
        } else {
            Repr::BTree(Vec::from(v).into_iter().collect())
        }
    }

    pub(super) fn thaw(&mut self) {
        let repr = core::mem::take(&mut self.repr);
        self.repr = match repr {
            Repr::Frozen(v) => Self::thawed_repr(v),
            other => other,
        };
    }
}

#[cfg(debug_assertions)]
fn debug_assert_sorted_dedup(v: &[(Value, Value)]) {
    // This debug-only check documents a release-critical invariant: Frozen storage is
    // always sorted and deduplicated by construction, and release binary searches depend on it.
    for pair in v.windows(2) {
        debug_assert!(
            pair[0].0.cmp(&pair[1].0).is_lt(),
            "Object Frozen entries must be strictly sorted and deduplicated; \
             TODO(Number): revisit NaN ordering/equality semantics in src/number.rs:290-316"
        );
    }
}

#[cfg(not(debug_assertions))]
#[inline]
fn debug_assert_sorted_dedup(_: &[(Value, Value)]) {}
