//! Bounded process-wide caches: parsed key material, and the outcome of
//! signature checks.
//!
//! Both hold pure functions of their keys, so a hit answers exactly what a
//! fresh computation would:
//! - a key set is what [`keys_from_cert_or_jwk`] makes of the key text (the
//!   keys or the parse error), which depends on nothing else;
//! - a signature check depends on the builtin, the key set, the signing
//!   input and the signature (the header's `kid` and `alg`, which pick the
//!   keys, are part of the signing input), never on the time: the claim
//!   checks of `decode_verify` are not cached.
//!
//! Each key set parsed for the cache gets an id that is never reused, and
//! signature checks are cached under that id, so a key set that is evicted
//! and parsed again simply starts with no cached checks. Check entries are
//! keyed by their inputs themselves (length-prefixed), compared byte for
//! byte: a hit can only be the very same check.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use moka::sync::Cache;

use super::{KeyMaterial, VerificationKey, keys_from_cert_or_jwk};

/// Key texts longer than this are parsed at each call and not cached.
const MAX_CACHED_KEY_TEXT: usize = 256 * 1024;

/// Total weight (about the bytes held) of the cached key sets.
const KEY_SET_CAPACITY: u64 = 8 * 1024 * 1024;

/// Total weight (about the bytes held) of the cached signature checks.
const CHECK_CAPACITY: u64 = 4 * 1024 * 1024;

/// Checks whose inputs are longer than this are made at each call and not
/// cached.
const MAX_CACHED_CHECK: usize = 64 * 1024;

/// What a cached check holds besides its key.
const CHECK_OVERHEAD: usize = 64;

/// The keys of one key text (a PEM block, a JWK or a JWK Set), or why it
/// does not parse.
pub(super) struct KeySet {
    /// Never reused; 0 for a key set that is not cached.
    id: u64,
    pub(super) keys: Result<Vec<VerificationKey>, String>,
}

impl KeySet {
    /// About the bytes this key set holds.
    fn weight(&self) -> usize {
        match &self.keys {
            Err(e) => 64 + e.len(),
            Ok(keys) => keys
                .iter()
                .map(|k| {
                    let material = match &k.material {
                        KeyMaterial::Rsa(key) => key.weight(),
                        KeyMaterial::Ec { point, .. } => 64 + point.len(),
                        KeyMaterial::Ed25519(b) | KeyMaterial::Oct(b) => 64 + b.len(),
                        KeyMaterial::Unusable => 64,
                    };
                    material + k.alg.len() + k.kid.len()
                })
                .sum::<usize>()
                .saturating_add(64),
        }
    }
}

static NEXT_KEY_SET_ID: AtomicU64 = AtomicU64::new(1);

/// The hasher of both caches: randomly keyed per process, like the
/// standard library's, and several times faster on keys of a few hundred
/// bytes (a PEM key, a token).
type Hasher = ahash::RandomState;

static KEY_SETS: LazyLock<Cache<String, Arc<KeySet>, Hasher>> = LazyLock::new(|| {
    Cache::builder()
        .max_capacity(KEY_SET_CAPACITY)
        .weigher(|text: &String, set: &Arc<KeySet>| {
            u32::try_from(text.len().saturating_add(set.weight())).unwrap_or(u32::MAX)
        })
        .build_with_hasher(Hasher::new())
});

/// A signature check's inputs, length-prefixed.
type CheckKey = Box<[u8]>;

static CHECKS: LazyLock<Cache<CheckKey, bool, Hasher>> = LazyLock::new(|| {
    Cache::builder()
        .max_capacity(CHECK_CAPACITY)
        .weigher(|key: &CheckKey, _: &bool| {
            u32::try_from(key.len().saturating_add(CHECK_OVERHEAD)).unwrap_or(u32::MAX)
        })
        .build_with_hasher(Hasher::new())
});

/// [`keys_from_cert_or_jwk`] of `text`, from the cache when it was parsed
/// before.
pub(super) fn key_set(text: &str) -> Arc<KeySet> {
    if text.len() > MAX_CACHED_KEY_TEXT {
        return Arc::new(KeySet {
            id: 0,
            keys: keys_from_cert_or_jwk(text),
        });
    }
    KEY_SETS.get_with_by_ref(text, || {
        Arc::new(KeySet {
            id: NEXT_KEY_SET_ID.fetch_add(1, Ordering::Relaxed),
            keys: keys_from_cert_or_jwk(text),
        })
    })
}

/// The outcome of the signature check `check` that `builtin` makes with the
/// keys of `set` on `parts`, cached when it is `Ok`.
pub(super) fn checked<E>(
    builtin: &str,
    set: &KeySet,
    parts: &[&[u8]],
    check: impl FnOnce() -> Result<bool, E>,
) -> Result<bool, E> {
    if set.id == 0 {
        return check();
    }
    let len = builtin.len() + parts.iter().map(|p| p.len() + 8).sum::<usize>() + 24;
    if len > MAX_CACHED_CHECK {
        return check();
    }
    let mut key = Vec::with_capacity(len);
    for part in [builtin.as_bytes(), &set.id.to_be_bytes()]
        .into_iter()
        .chain(parts.iter().copied())
    {
        key.extend_from_slice(&(part.len() as u64).to_be_bytes());
        key.extend_from_slice(part);
    }
    if let Some(valid) = CHECKS.get(key.as_slice()) {
        return Ok(valid);
    }
    let valid = check()?;
    CHECKS.insert(key.into_boxed_slice(), valid);
    Ok(valid)
}
