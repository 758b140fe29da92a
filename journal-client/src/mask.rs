//! Secret masking: API keys, bearer tokens, cookies and configured fields
//! never reach a record, the local log or the journal.

use std::collections::{BTreeMap, BTreeSet};

/// What a masked value is replaced by.
pub const MASK: &str = "***";

/// Headers masked whatever the configuration says.
const ALWAYS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "x-auth-token",
    "x-amz-security-token",
];

/// Header-name fragments that mark a secret (`x-session-token`, `x-client-secret`, …).
const FRAGMENTS: &[&str] = &[
    "token", "secret", "password", "passwd", "api-key", "apikey", "session", "auth",
];

/// Masks headers and strings of one record.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// Lower-case header names masked in addition to the built-in list.
    extra: BTreeSet<String>,
}

impl Masker {
    /// A masker that also masks `extra_headers` (any case).
    pub fn new<I, S>(extra_headers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            extra: extra_headers
                .into_iter()
                .map(|h| h.as_ref().to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether the header `name` carries a secret.
    pub fn is_secret_header(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        ALWAYS.contains(&name.as_str())
            || self.extra.contains(&name)
            || FRAGMENTS.iter().any(|f| name.contains(f))
    }

    /// The headers with secret values masked, and the secret values found
    /// (to scrub them from other strings of the same record).
    pub fn headers<'a, I>(&self, headers: I) -> (BTreeMap<String, String>, Vec<String>)
    where
        I: IntoIterator<Item = (&'a String, &'a String)>,
    {
        let mut out = BTreeMap::new();
        let mut secrets = Vec::new();
        for (name, value) in headers {
            let lower = name.to_ascii_lowercase();
            if self.is_secret_header(&lower) {
                if !value.is_empty() {
                    secrets.push(value.clone());
                    // `Bearer <token>`: the token alone may appear elsewhere.
                    if let Some((_, token)) = value.split_once(' ') {
                        let token = token.trim();
                        if token.len() >= 8 {
                            secrets.push(token.to_owned());
                        }
                    }
                }
                out.insert(lower, MASK.to_owned());
            } else {
                out.insert(lower, value.clone());
            }
        }
        (out, secrets)
    }

    /// `s` with every occurrence of a secret replaced by [`MASK`].
    pub fn scrub(s: &str, secrets: &[String]) -> String {
        let mut out = s.to_owned();
        for secret in secrets {
            if !secret.is_empty() && out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        out
    }

    /// `value` with every string containing a secret scrubbed, recursively.
    pub fn scrub_json(value: &mut serde_json::Value, secrets: &[String]) {
        if secrets.is_empty() {
            return;
        }
        match value {
            serde_json::Value::String(s)
                if secrets
                    .iter()
                    .any(|x| !x.is_empty() && s.contains(x.as_str())) =>
            {
                *s = Self::scrub(s, secrets);
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    Self::scrub_json(item, secrets);
                }
            }
            serde_json::Value::Object(map) => {
                for item in map.values_mut() {
                    Self::scrub_json(item, secrets);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn known_and_configured_headers_are_masked() {
        let m = Masker::new(["X-Tenant-Key"]);
        let h: BTreeMap<String, String> = [
            ("Authorization", "Bearer eyJhbGciOi.payload.sig"),
            ("x-api-key", "demo-key-alice"),
            ("Cookie", "sid=1"),
            ("x-tenant-key", "t-secret"),
            ("x-session-token", "s"),
            ("user-agent", "curl/8"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let (out, secrets) = m.headers(&h);
        assert_eq!(out["authorization"], MASK);
        assert_eq!(out["x-api-key"], MASK);
        assert_eq!(out["cookie"], MASK);
        assert_eq!(out["x-tenant-key"], MASK);
        assert_eq!(out["x-session-token"], MASK);
        assert_eq!(out["user-agent"], "curl/8");
        assert!(secrets.contains(&"eyJhbGciOi.payload.sig".to_owned()));
        assert!(secrets.contains(&"demo-key-alice".to_owned()));
    }

    #[test]
    fn secrets_are_scrubbed_from_nested_values() {
        let secrets = vec!["demo-key-alice".to_owned()];
        let mut v = serde_json::json!({"args": ["/r|header|demo-key-alice", 3], "n": null});
        Masker::scrub_json(&mut v, &secrets);
        assert_eq!(v["args"][0], "/r|header|***");
        assert_eq!(Masker::scrub("no secret", &secrets), "no secret");
    }
}
