//! `crypto.x509.parse_and_verify_certificates[_with_options]`: the first
//! certificate is the root, the last the leaf, the others intermediates,
//! verified as Go's `Certificate.Verify` does (signatures, validity
//! periods, CA and path length constraints, key usages, extended key
//! usages, unhandled critical extensions and the host name). Name
//! constraints are not checked.

use std::collections::BTreeMap;

use regorus::Value;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::{cert_json, der, pem_input};
use crate::builtins::jwt::x509::{CertSignature, verify_certificate_signature};

/// Go's `x509.VerifyOptions`, as OPA fills them.
#[derive(Default)]
pub(super) struct Options {
    dns_name: String,
    /// Nanoseconds since the epoch; the wall clock when absent.
    current_time: Option<i64>,
    /// Go's `ExtKeyUsage` constants; server authentication when empty.
    key_usages: Vec<i64>,
}

const KEY_USAGES: &[(&str, i64)] = &[
    ("KeyUsageAny", 0),
    ("KeyUsageServerAuth", 1),
    ("KeyUsageClientAuth", 2),
    ("KeyUsageCodeSigning", 3),
    ("KeyUsageEmailProtection", 4),
    ("KeyUsageIPSECEndSystem", 5),
    ("KeyUsageIPSECTunnel", 6),
    ("KeyUsageIPSECUser", 7),
    ("KeyUsageTimeStamping", 8),
    ("KeyUsageOCSPSigning", 9),
    ("KeyUsageMicrosoftServerGatedCrypto", 10),
    ("KeyUsageNetscapeServerGatedCrypto", 11),
    ("KeyUsageMicrosoftCommercialCodeSigning", 12),
    ("KeyUsageMicrosoftKernelCodeSigning", 13),
];

impl Options {
    /// OPA's `extractVerifyOpts`.
    pub(super) fn parse<'a>(
        options: impl Iterator<Item = (&'a Value, &'a Value)>,
    ) -> Result<Self, String> {
        let mut o = Options::default();
        for (k, v) in options {
            let Value::String(k) = k else { continue };
            match k.as_ref() {
                "DNSName" => match v {
                    Value::String(s) => o.dns_name = s.trim_matches('"').to_string(),
                    _ => return Err("'DNSName' should be a string".into()),
                },
                "CurrentTime" => match v {
                    Value::Number(n) => {
                        o.current_time = Some(
                            n.as_i64()
                                .ok_or("'CurrentTime' should be a valid int64 number")?,
                        )
                    }
                    _ => return Err("'CurrentTime' should be a number".into()),
                },
                "MaxConstraintComparisons" => match v {
                    Value::Number(n) => {
                        n.as_i64()
                            .ok_or("'MaxConstraintComparisons' should be a valid number")?;
                    }
                    _ => return Err("'MaxConstraintComparisons' should be a number".into()),
                },
                "KeyUsages" => {
                    let items: Vec<&Value> = match v {
                        Value::Array(a) => a.iter().collect(),
                        Value::Set(s) => s.iter().collect(),
                        _ => return Err("'KeyUsages' should be an Array or Set".into()),
                    };
                    let mut invalid = Vec::new();
                    for item in items {
                        let Value::String(s) = item else { continue };
                        let s = s.trim_matches('"');
                        match KEY_USAGES.iter().find(|(n, _)| *n == s) {
                            Some((_, u)) => o.key_usages.push(*u),
                            None => invalid.push(s.to_string()),
                        }
                    }
                    if !invalid.is_empty() {
                        return Err(format!(
                            "invalid entries for 'KeyUsages' found: [{}]",
                            invalid.join(" ")
                        ));
                    }
                }
                _ => return Err("invalid key option".into()),
            }
        }
        Ok(o)
    }
}

/// `[false, []]`.
pub(super) fn unverified() -> Value {
    Value::from(vec![Value::Bool(false), Value::from(Vec::<Value>::new())])
}

/// One certificate with what verification looks at.
struct Cert {
    json: Value,
    raw_subject: Vec<u8>,
    raw_issuer: Vec<u8>,
    tbs: Vec<u8>,
    spki: Vec<u8>,
    signature: Vec<u8>,
    algorithm: Option<CertSignature>,
    not_before: i64,
    not_after: i64,
}

impl Cert {
    fn field(&self, name: &str) -> Value {
        match &self.json {
            Value::Object(o) => o.get(&Value::from(name)).cloned().unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }

    fn int(&self, name: &str) -> i64 {
        self.field(name).as_i64().unwrap_or(0)
    }

    fn flag(&self, name: &str) -> bool {
        self.field(name) == Value::Bool(true)
    }

    fn ints(&self, name: &str) -> Vec<i64> {
        match self.field(name) {
            Value::Array(a) => a.iter().filter_map(|v| v.as_i64().ok()).collect(),
            _ => Vec::new(),
        }
    }

    fn strings(&self, name: &str) -> Vec<String> {
        match self.field(name) {
            Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_string().ok().map(|s| s.to_string()))
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn signature_algorithm(alg: &[u64], params: Option<&[u8]>) -> Option<CertSignature> {
    Some(match alg {
        [1, 2, 840, 113549, 1, 1, 11] => CertSignature::RsaPkcs1(256),
        [1, 2, 840, 113549, 1, 1, 12] => CertSignature::RsaPkcs1(384),
        [1, 2, 840, 113549, 1, 1, 13] => CertSignature::RsaPkcs1(512),
        [1, 2, 840, 10045, 4, 3, 2] => CertSignature::Ecdsa(256),
        [1, 2, 840, 10045, 4, 3, 3] => CertSignature::Ecdsa(384),
        [1, 2, 840, 10045, 4, 3, 4] => CertSignature::Ecdsa(512),
        [1, 3, 101, 112] => CertSignature::Ed25519,
        [1, 2, 840, 113549, 1, 1, 10] => {
            let hash = params
                .and_then(der::sequence)
                .and_then(|f| f.first().copied())
                .filter(|t| t.tag == 0xa0)
                .and_then(|t| der::sequence(t.content))
                .and_then(|a| a.first().and_then(der::oid))?;
            match hash.as_slice() {
                [2, 16, 840, 1, 101, 3, 4, 2, 1] => CertSignature::RsaPss(256),
                [2, 16, 840, 1, 101, 3, 4, 2, 2] => CertSignature::RsaPss(384),
                [2, 16, 840, 1, 101, 3, 4, 2, 3] => CertSignature::RsaPss(512),
                _ => return None,
            }
        }
        // SHA-1 and MD5 signatures are insecure and rejected.
        _ => return None,
    })
}

fn load(der_bytes: Vec<u8>) -> Option<Cert> {
    let (_, cert) = X509Certificate::from_der(&der_bytes).ok()?;
    let top = der::sequence(&der_bytes)?;
    let tbs = top.first()?;
    let fields = der::children(tbs.content)?;
    let skip = usize::from(fields.first()?.tag == 0xa0);
    let alg = der::sequence(top.get(1)?.full)?;
    let algorithm = signature_algorithm(&der::oid(alg.first()?)?, alg.get(1).map(|t| t.full));
    let validity = &cert.tbs_certificate.validity;
    Some(Cert {
        json: cert_json::certificate(&der_bytes, true),
        raw_issuer: fields.get(skip + 2)?.full.to_vec(),
        raw_subject: fields.get(skip + 4)?.full.to_vec(),
        spki: fields.get(skip + 5)?.full.to_vec(),
        tbs: tbs.full.to_vec(),
        signature: cert.signature_value.data.to_vec(),
        algorithm,
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

/// The verified chain, leaf first, or `[false, []]`.
pub(super) fn parse_and_verify(input: &str, options: &Options, uri_strings: bool) -> Value {
    let Ok(ders) = pem_input::certificates(input) else {
        return unverified();
    };
    if ders.len() < 2 {
        return unverified();
    }
    let Some(certs) = ders.into_iter().map(load).collect::<Option<Vec<_>>>() else {
        return unverified();
    };
    let now_secs = options.current_time.map_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        },
        |ns| ns.div_euclid(1_000_000_000),
    );
    let leaf = certs.len() - 1;
    let mut verifier = Verifier {
        certs: &certs,
        now: now_secs,
        chains: Vec::new(),
    };
    if !verifier.valid(leaf, Role::Leaf, 0) || !host_matches(&certs[leaf], &options.dns_name) {
        return unverified();
    }
    verifier.build(vec![leaf]);
    let usages = if options.key_usages.is_empty() {
        vec![1]
    } else {
        options.key_usages.clone()
    };
    let Some(chain) = verifier
        .chains
        .iter()
        .find(|chain| chain_allows_usages(&certs, chain, &usages))
    else {
        return unverified();
    };
    let list: Vec<Value> = chain
        .iter()
        .map(|&i| {
            if uri_strings {
                certs[i].json.clone()
            } else {
                strip_uri_strings(&certs[i].json)
            }
        })
        .collect();
    Value::from(vec![Value::Bool(true), Value::from(list)])
}

fn strip_uri_strings(v: &Value) -> Value {
    match v {
        Value::Object(o) => {
            let mut m: BTreeMap<Value, Value> =
                o.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            m.remove(&Value::from("URIStrings"));
            Value::from(m)
        }
        other => other.clone(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Leaf,
    Intermediate,
    Root,
}

struct Verifier<'a> {
    certs: &'a [Cert],
    now: i64,
    chains: Vec<Vec<usize>>,
}

impl Verifier<'_> {
    /// Go's `isValid` for certificate `i` in its role, `depth` certificates
    /// below it in the chain.
    fn valid(&self, i: usize, role: Role, below: usize) -> bool {
        let c = &self.certs[i];
        if self.now < c.not_before || self.now > c.not_after {
            return false;
        }
        if c.field("UnhandledCriticalExtensions") != Value::Null {
            return false;
        }
        if role == Role::Intermediate && (!c.flag("BasicConstraintsValid") || !c.flag("IsCA")) {
            return false;
        }
        if role != Role::Leaf && c.flag("BasicConstraintsValid") {
            let max = c.int("MaxPathLen");
            let intermediates_below = below.saturating_sub(1);
            if max >= 0 && (max > 0 || c.flag("MaxPathLenZero")) && intermediates_below as i64 > max
            {
                return false;
            }
        }
        true
    }

    /// Go's `buildChains`: depth-first, roots before intermediates.
    fn build(&mut self, chain: Vec<usize>) {
        if self.chains.len() >= 16 || chain.len() > 16 {
            return;
        }
        let Some(&child_index) = chain.last() else {
            return;
        };
        let child = &self.certs[child_index];
        let last = self.certs.len() - 1;
        let candidates =
            std::iter::once((0, Role::Root)).chain((1..last).map(|i| (i, Role::Intermediate)));
        for (i, role) in candidates {
            let parent = &self.certs[i];
            if parent.raw_subject != child.raw_issuer || chain.contains(&i) {
                continue;
            }
            let Some(alg) = child.algorithm else { continue };
            // Go's `CheckSignatureFrom`: a v3 parent must be a CA, and have
            // the certificate-signing bit when key usage is set.
            let basic = parent.flag("BasicConstraintsValid");
            if (parent.int("Version") == 3 && !basic) || (basic && !parent.flag("IsCA")) {
                continue;
            }
            let key_usage = parent.int("KeyUsage");
            if key_usage != 0 && key_usage & (1 << 5) == 0 {
                continue;
            }
            if !verify_certificate_signature(&parent.spki, alg, &child.tbs, &child.signature) {
                continue;
            }
            if !self.valid(i, role, chain.len()) {
                continue;
            }
            let mut next = chain.clone();
            next.push(i);
            if role == Role::Root {
                self.chains.push(next);
            } else {
                self.build(next);
            }
        }
    }
}

/// Go's `checkChainForKeyUsage`.
fn chain_allows_usages(certs: &[Cert], chain: &[usize], wanted: &[i64]) -> bool {
    if wanted.contains(&0) {
        return true;
    }
    let mut usages: Vec<i64> = wanted.to_vec();
    for &i in chain.iter().rev() {
        let c = &certs[i];
        let ext = c.ints("ExtKeyUsage");
        if ext.is_empty() && c.field("UnknownExtKeyUsage") == Value::Null {
            continue;
        }
        if ext.contains(&0) {
            continue;
        }
        usages.retain(|&u| {
            ext.iter().any(|&e| {
                e == u
                    // Server-gated crypto implies server authentication.
                    || (u == 1 && (e == 10 || e == 11))
            })
        });
        if usages.is_empty() {
            return false;
        }
    }
    true
}

/// Go's `VerifyHostname` (when a DNS name is asked for).
fn host_matches(leaf: &Cert, host: &str) -> bool {
    if host.is_empty() {
        return true;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return leaf.strings("IPAddresses").iter().any(|a| {
            a.parse::<std::net::IpAddr>()
                .is_ok_and(|candidate| candidate == ip)
        });
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    leaf.strings("DNSNames").iter().any(|pattern| {
        let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            Some(suffix) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => pattern == host,
        }
    })
}
