// policy-engine patch: a per-thread memo of pure builtins on strings.
//
// A policy often decodes the same document again and again: the same bearer
// token arrives with every request of a session, and it is matched against
// a pattern and its segments base64url-decoded, validated and parsed each
// time. `base64url.decode`, `json.is_valid`, `json.unmarshal` and
// `regex.match` are pure functions of their string operands, so their
// answers can be kept: each thread has a small table, direct-mapped by the
// operand's hash, whose entries hold the operands (shared references,
// compared by content), the builtin and its answer. A hit
// answers exactly what a fresh call would; an entry is simply replaced by
// the next operand that hashes to its slot, so the table stays bounded
// (`SLOTS` entries of operands up to `MAX_LEN` bytes and their answers) and
// a collision costs only a miss. Errors are not kept. Without `std` (no
// thread-local storage) every call computes its answer.

use crate::value::Value;
use crate::Rc;

/// The builtins kept.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Memo {
    Base64UrlDecode,
    JsonIsValid,
    JsonUnmarshal,
    /// Keyed by the value matched, then the pattern.
    RegexMatch,
}

/// `compute()`, the answer of builtin `memo` on operand `s`, from this
/// thread's table when it was computed for the same operand before.
pub(crate) fn memoized<E>(
    memo: Memo,
    s: &Rc<str>,
    compute: impl FnOnce() -> Result<Value, E>,
) -> Result<Value, E> {
    memoized2(memo, s, None, compute)
}

/// `memoized` for a builtin with a second operand `t` (compared too).
pub(crate) fn memoized2<E>(
    memo: Memo,
    s: &Rc<str>,
    t: Option<&Rc<str>>,
    compute: impl FnOnce() -> Result<Value, E>,
) -> Result<Value, E> {
    #[cfg(feature = "std")]
    return table::memoized2(memo, s, t, compute);
    #[cfg(not(feature = "std"))]
    {
        let _ = (memo, s, t);
        compute()
    }
}

#[cfg(feature = "std")]
mod table {
    use super::{Memo, Rc, Value};
    use alloc::vec::Vec;
    use core::cell::RefCell;

    /// Entries per thread.
    const SLOTS: usize = 64;

    /// Operands shorter than this are cheaper to compute again than to look up.
    const MIN_LEN: usize = 24;

    /// Operands longer than this are not kept.
    const MAX_LEN: usize = 4096;

    /// The builtin, its operand, its second operand if any, its answer.
    type Entry = Option<(Memo, Rc<str>, Option<Rc<str>>, Value)>;

    std::thread_local! {
        static TABLE: RefCell<Vec<Entry>> = RefCell::new(alloc::vec![None; SLOTS]);
    }

    /// FNV-style hash of 8 bytes at a time (the table needs a spread, not
    /// resistance: a collision only replaces an entry).
    fn slot(memo: Memo, s: &[u8]) -> usize {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (memo as u64);
        let mut chunks = s.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0x0100_0000_01b3_0001);
            h ^= h >> 29;
        }
        for &b in chunks.remainder() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        h ^= h >> 32;
        usize::try_from(h % SLOTS as u64).unwrap_or(0)
    }

    pub(super) fn memoized2<E>(
        memo: Memo,
        s: &Rc<str>,
        t: Option<&Rc<str>>,
        compute: impl FnOnce() -> Result<Value, E>,
    ) -> Result<Value, E> {
        if s.len() < MIN_LEN || s.len() > MAX_LEN || t.is_some_and(|t| t.len() > MAX_LEN) {
            return compute();
        }
        let i = slot(memo, s.as_bytes());
        let same_second = |kept: &Option<Rc<str>>| match (kept, t) {
            (None, None) => true,
            (Some(a), Some(b)) => Rc::ptr_eq(a, b) || a.as_ref() == b.as_ref(),
            _ => false,
        };
        let hit = TABLE.with(|table| {
            table.borrow().get(i).and_then(|e| match e {
                Some((m, k, k2, v))
                    if *m == memo && k.as_ref() == s.as_ref() && same_second(k2) =>
                {
                    Some(v.clone())
                }
                _ => None,
            })
        });
        if let Some(v) = hit {
            return Ok(v);
        }
        let v = compute()?;
        TABLE.with(|table| {
            if let Some(e) = table.borrow_mut().get_mut(i) {
                *e = Some((memo, s.clone(), t.cloned(), v.clone()));
            }
        });
        Ok(v)
    }
}
