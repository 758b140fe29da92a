//! Go's `encoding/json` form of `x509.Certificate` and
//! `x509.CertificateRequest`, as OPA returns them. Extensions are
//! interpreted as Go's `processExtensions` does.

use regorus::Value;
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension, X509Extension};
use x509_parser::prelude::FromDer;

use super::der;
use super::gojson::{
    Object, b64, b64_or_null, big, ip_string, list_or_null, name, oid_arcs, oid_string, oid_value,
    public_key, signature_algorithm_value, strings_or_null, time_value, url_value,
};

/// What Go fills from the subject alternative names.
#[derive(Default)]
struct AltNames {
    dns: Vec<String>,
    email: Vec<String>,
    ip: Vec<Value>,
    uris: Vec<String>,
}

impl AltNames {
    fn add(&mut self, names: &[GeneralName<'_>]) {
        for n in names {
            match n {
                GeneralName::DNSName(s) => self.dns.push(s.to_string()),
                GeneralName::RFC822Name(s) => self.email.push(s.to_string()),
                GeneralName::URI(s) => self.uris.push(s.to_string()),
                GeneralName::IPAddress(b) if b.len() == 4 || b.len() == 16 => {
                    self.ip.push(Value::from(ip_string(b)))
                }
                _ => {}
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.dns.is_empty() && self.email.is_empty() && self.ip.is_empty() && self.uris.is_empty()
    }

    fn write(&self, o: &mut Object) {
        o.set("DNSNames", strings_or_null(&self.dns));
        o.set("EmailAddresses", strings_or_null(&self.email));
        o.set("IPAddresses", list_or_null(self.ip.clone()));
        o.set(
            "URIs",
            list_or_null(self.uris.iter().map(|u| url_value(u)).collect()),
        );
    }
}

fn extension_value(e: &X509Extension<'_>) -> Value {
    let mut o = Object::default();
    o.set("Id", oid_value(&oid_arcs(&e.oid)));
    o.set("Critical", Value::Bool(e.critical));
    o.set("Value", b64(e.value));
    o.into_value()
}

/// Go's `ExtKeyUsage` constants by OID, in the order Go lists them.
fn ext_key_usage(arcs: &[u64]) -> Option<i64> {
    Some(match arcs {
        [2, 5, 29, 37, 0] => 0,
        [1, 3, 6, 1, 5, 5, 7, 3, 1] => 1,
        [1, 3, 6, 1, 5, 5, 7, 3, 2] => 2,
        [1, 3, 6, 1, 5, 5, 7, 3, 3] => 3,
        [1, 3, 6, 1, 5, 5, 7, 3, 4] => 4,
        [1, 3, 6, 1, 5, 5, 7, 3, 5] => 5,
        [1, 3, 6, 1, 5, 5, 7, 3, 6] => 6,
        [1, 3, 6, 1, 5, 5, 7, 3, 7] => 7,
        [1, 3, 6, 1, 5, 5, 7, 3, 8] => 8,
        [1, 3, 6, 1, 5, 5, 7, 3, 9] => 9,
        [1, 3, 6, 1, 4, 1, 311, 10, 3, 3] => 10,
        [2, 16, 840, 1, 113730, 4, 1] => 11,
        [1, 3, 6, 1, 4, 1, 311, 2, 1, 22] => 12,
        [1, 3, 6, 1, 4, 1, 311, 61, 1, 1] => 13,
        _ => return None,
    })
}

/// The certificate's parts Go keeps raw: TBS, issuer, subject, SPKI.
struct RawParts<'a> {
    tbs: &'a [u8],
    issuer: &'a [u8],
    subject: &'a [u8],
    spki: &'a [u8],
    signature_algorithm: &'a [u8],
}

fn raw_parts(der_bytes: &[u8]) -> Option<RawParts<'_>> {
    let top = der::sequence(der_bytes)?;
    let tbs = top.first()?;
    let fields = der::children(tbs.content)?;
    let skip = usize::from(fields.first()?.tag == 0xa0);
    Some(RawParts {
        tbs: tbs.full,
        issuer: fields.get(skip + 2)?.full,
        subject: fields.get(skip + 4)?.full,
        spki: fields.get(skip + 5)?.full,
        signature_algorithm: top.get(1)?.full,
    })
}

/// One DER certificate as Go's JSON of `x509.Certificate` (with OPA's
/// `URIStrings` when `uri_strings`). `der_bytes` must hold one
/// certificate that parses.
pub(super) fn certificate(der_bytes: &[u8], uri_strings: bool) -> Value {
    let Ok((_, cert)) = X509Certificate::from_der(der_bytes) else {
        return Value::Null;
    };
    let Some(raw) = raw_parts(der_bytes) else {
        return Value::Null;
    };
    let tbs = &cert.tbs_certificate;
    let mut o = Object::default();
    o.set("Raw", b64(der_bytes));
    o.set("RawTBSCertificate", b64(raw.tbs));
    o.set("RawSubjectPublicKeyInfo", b64(raw.spki));
    o.set("RawSubject", b64(raw.subject));
    o.set("RawIssuer", b64(raw.issuer));
    o.set("Signature", b64(cert.signature_value.data.as_ref()));
    o.set(
        "SignatureAlgorithm",
        signature_algorithm_value(&cert.signature_algorithm, Some(raw.signature_algorithm)),
    );
    let (algorithm, key) = public_key(&tbs.subject_pki);
    o.set("PublicKeyAlgorithm", Value::from(algorithm));
    o.set("PublicKey", key);
    o.set("Version", Value::from(i64::from(tbs.version.0) + 1));
    o.set("SerialNumber", big(&tbs.serial));
    o.set("Issuer", name(&tbs.issuer));
    o.set("Subject", name(&tbs.subject));
    o.set(
        "NotBefore",
        time_value(tbs.validity.not_before.to_datetime()),
    );
    o.set("NotAfter", time_value(tbs.validity.not_after.to_datetime()));

    let mut key_usage = 0i64;
    let mut ext_usage = Vec::new();
    let mut unknown_ext_usage = Vec::new();
    let mut basic_valid = false;
    let mut is_ca = false;
    let mut max_path_len = 0i64;
    let mut subject_key_id = None;
    let mut authority_key_id = None;
    let mut ocsp = Vec::new();
    let mut issuing = Vec::new();
    let mut alt = AltNames::default();
    let mut crl = Vec::new();
    let mut policy_ids = Vec::new();
    let mut policies = Vec::new();
    let mut unhandled_critical = Vec::new();
    let mut permitted_dns = Vec::new();
    let mut excluded_dns = Vec::new();
    let mut permitted_ip = Vec::new();
    let mut excluded_ip = Vec::new();
    let mut permitted_email = Vec::new();
    let mut excluded_email = Vec::new();
    let mut permitted_uri = Vec::new();
    let mut excluded_uri = Vec::new();
    let mut permitted_critical = false;
    let mut inhibit_any = 0i64;
    let mut inhibit_any_zero = false;
    let mut inhibit_mapping = 0i64;
    let mut inhibit_mapping_zero = false;
    let mut require_explicit = 0i64;
    let mut require_explicit_zero = false;
    let mut mappings = Vec::new();

    for e in tbs.extensions() {
        let arcs = oid_arcs(&e.oid);
        let mut unhandled = false;
        match (arcs.as_slice(), e.parsed_extension()) {
            ([2, 5, 29, 15], ParsedExtension::KeyUsage(ku)) => {
                key_usage = i64::from(ku.flags & 0x1ff);
            }
            ([2, 5, 29, 19], ParsedExtension::BasicConstraints(bc)) => {
                basic_valid = true;
                is_ca = bc.ca;
                max_path_len = bc.path_len_constraint.map_or(-1, i64::from);
            }
            ([2, 5, 29, 17], ParsedExtension::SubjectAlternativeName(san)) => {
                alt.add(&san.general_names);
                unhandled = san.general_names.is_empty() || alt.is_empty();
            }
            ([2, 5, 29, 30], ParsedExtension::NameConstraints(nc)) => {
                permitted_critical = e.critical;
                for (subtrees, dns, ip, email, uri) in [
                    (
                        &nc.permitted_subtrees,
                        &mut permitted_dns,
                        &mut permitted_ip,
                        &mut permitted_email,
                        &mut permitted_uri,
                    ),
                    (
                        &nc.excluded_subtrees,
                        &mut excluded_dns,
                        &mut excluded_ip,
                        &mut excluded_email,
                        &mut excluded_uri,
                    ),
                ] {
                    for s in subtrees.iter().flatten() {
                        match &s.base {
                            GeneralName::DNSName(d) => dns.push(d.to_string()),
                            GeneralName::RFC822Name(m) => email.push(m.to_string()),
                            GeneralName::URI(u) => uri.push(u.to_string()),
                            GeneralName::IPAddress(b) if b.len() == 8 || b.len() == 32 => {
                                let (ip_bytes, mask) = b.split_at(b.len() / 2);
                                let mut net = Object::default();
                                net.set("IP", Value::from(ip_string(ip_bytes)));
                                net.set("Mask", b64(mask));
                                ip.push(net.into_value());
                            }
                            _ => unhandled = true,
                        }
                    }
                }
            }
            ([2, 5, 29, 31], ParsedExtension::CRLDistributionPoints(points)) => {
                for p in &points.points {
                    if let Some(x509_parser::extensions::DistributionPointName::FullName(names)) =
                        &p.distribution_point
                    {
                        for n in names {
                            if let GeneralName::URI(u) = n {
                                crl.push(u.to_string());
                            }
                        }
                    }
                }
            }
            ([2, 5, 29, 35], ParsedExtension::AuthorityKeyIdentifier(akid)) => {
                authority_key_id = akid.key_identifier.as_ref().map(|k| k.0.to_vec());
            }
            ([2, 5, 29, 14], ParsedExtension::SubjectKeyIdentifier(skid)) => {
                subject_key_id = Some(skid.0.to_vec());
            }
            ([2, 5, 29, 37], _) => {
                // Ordered as in the certificate.
                let oids = der::sequence(e.value).unwrap_or_default();
                for t in &oids {
                    let Some(arcs) = der::oid(t) else { continue };
                    match ext_key_usage(&arcs) {
                        Some(u) => ext_usage.push(Value::from(u)),
                        None => unknown_ext_usage.push(oid_value(&arcs)),
                    }
                }
            }
            ([2, 5, 29, 32], ParsedExtension::CertificatePolicies(ps)) => {
                for p in ps.iter() {
                    let arcs = oid_arcs(&p.policy_id);
                    policies.push(Value::from(oid_string(&arcs)));
                    policy_ids.push(oid_value(&arcs));
                }
            }
            ([2, 5, 29, 33], ParsedExtension::PolicyMappings(pm)) => {
                for m in &pm.mappings {
                    let mut v = Object::default();
                    v.set(
                        "IssuerDomainPolicy",
                        Value::from(oid_string(&oid_arcs(&m.issuer_domain_policy))),
                    );
                    v.set(
                        "SubjectDomainPolicy",
                        Value::from(oid_string(&oid_arcs(&m.subject_domain_policy))),
                    );
                    mappings.push(v.into_value());
                }
            }
            ([2, 5, 29, 36], ParsedExtension::PolicyConstraints(pc)) => {
                if let Some(r) = pc.require_explicit_policy {
                    require_explicit = i64::from(r);
                    require_explicit_zero = r == 0;
                }
                if let Some(i) = pc.inhibit_policy_mapping {
                    inhibit_mapping = i64::from(i);
                    inhibit_mapping_zero = i == 0;
                }
            }
            ([2, 5, 29, 54], ParsedExtension::InhibitAnyPolicy(ia)) => {
                inhibit_any = i64::from(ia.skip_certs);
                inhibit_any_zero = ia.skip_certs == 0;
            }
            ([1, 3, 6, 1, 5, 5, 7, 1, 1], ParsedExtension::AuthorityInfoAccess(aia)) => {
                for d in &aia.accessdescs {
                    let GeneralName::URI(u) = &d.access_location else {
                        continue;
                    };
                    match oid_arcs(&d.access_method).as_slice() {
                        [1, 3, 6, 1, 5, 5, 7, 48, 1] => ocsp.push(u.to_string()),
                        [1, 3, 6, 1, 5, 5, 7, 48, 2] => issuing.push(u.to_string()),
                        _ => {}
                    }
                }
            }
            _ => unhandled = true,
        }
        if e.critical && unhandled {
            unhandled_critical.push(oid_value(&arcs));
        }
    }

    o.set("KeyUsage", Value::from(key_usage));
    o.set(
        "Extensions",
        list_or_null(tbs.extensions().iter().map(extension_value).collect()),
    );
    o.set("ExtraExtensions", Value::Null);
    o.set(
        "UnhandledCriticalExtensions",
        list_or_null(unhandled_critical),
    );
    o.set("ExtKeyUsage", list_or_null(ext_usage));
    o.set("UnknownExtKeyUsage", list_or_null(unknown_ext_usage));
    o.set("BasicConstraintsValid", Value::Bool(basic_valid));
    o.set("IsCA", Value::Bool(is_ca));
    o.set("MaxPathLen", Value::from(max_path_len));
    o.set(
        "MaxPathLenZero",
        Value::Bool(basic_valid && max_path_len == 0),
    );
    o.set("SubjectKeyId", b64_or_null(subject_key_id.as_deref()));
    o.set("AuthorityKeyId", b64_or_null(authority_key_id.as_deref()));
    o.set("OCSPServer", strings_or_null(&ocsp));
    o.set("IssuingCertificateURL", strings_or_null(&issuing));
    alt.write(&mut o);
    o.set(
        "PermittedDNSDomainsCritical",
        Value::Bool(permitted_critical),
    );
    o.set("PermittedDNSDomains", strings_or_null(&permitted_dns));
    o.set("ExcludedDNSDomains", strings_or_null(&excluded_dns));
    o.set("PermittedIPRanges", list_or_null(permitted_ip));
    o.set("ExcludedIPRanges", list_or_null(excluded_ip));
    o.set("PermittedEmailAddresses", strings_or_null(&permitted_email));
    o.set("ExcludedEmailAddresses", strings_or_null(&excluded_email));
    o.set("PermittedURIDomains", strings_or_null(&permitted_uri));
    o.set("ExcludedURIDomains", strings_or_null(&excluded_uri));
    o.set("CRLDistributionPoints", strings_or_null(&crl));
    o.set("PolicyIdentifiers", list_or_null(policy_ids));
    o.set("Policies", list_or_null(policies));
    o.set("InhibitAnyPolicy", Value::from(inhibit_any));
    o.set("InhibitAnyPolicyZero", Value::Bool(inhibit_any_zero));
    o.set("InhibitPolicyMapping", Value::from(inhibit_mapping));
    o.set(
        "InhibitPolicyMappingZero",
        Value::Bool(inhibit_mapping_zero),
    );
    o.set("RequireExplicitPolicy", Value::from(require_explicit));
    o.set(
        "RequireExplicitPolicyZero",
        Value::Bool(require_explicit_zero),
    );
    o.set("PolicyMappings", list_or_null(mappings));
    if uri_strings {
        o.set("URIStrings", strings_or_null(&alt.uris));
    }
    o.into_value()
}

/// One DER certificate request as Go's JSON of `x509.CertificateRequest`.
pub(super) fn certificate_request(der_bytes: &[u8]) -> Result<Value, String> {
    let (rest, csr) = X509CertificationRequest::from_der(der_bytes)
        .map_err(|_| "x509: malformed certificate request".to_string())?;
    if !rest.is_empty() {
        return Err("x509: trailing data".into());
    }
    let top = der::sequence(der_bytes).ok_or("x509: malformed certificate request")?;
    let info = top.first().ok_or("x509: malformed certificate request")?;
    let fields = der::children(info.content).ok_or("x509: malformed certificate request")?;
    let (subject, spki) = match (fields.get(1), fields.get(2)) {
        (Some(s), Some(k)) => (s.full, k.full),
        _ => return Err("x509: malformed certificate request".into()),
    };
    let req = &csr.certification_request_info;
    let mut o = Object::default();
    o.set("Raw", b64(der_bytes));
    o.set("RawTBSCertificateRequest", b64(info.full));
    o.set("RawSubjectPublicKeyInfo", b64(spki));
    o.set("RawSubject", b64(subject));
    o.set("Version", Value::from(i64::from(req.version.0)));
    o.set("Signature", b64(csr.signature_value.data.as_ref()));
    o.set(
        "SignatureAlgorithm",
        signature_algorithm_value(&csr.signature_algorithm, top.get(1).map(|t| t.full)),
    );
    let (algorithm, key) = public_key(&req.subject_pki);
    o.set("PublicKeyAlgorithm", Value::from(algorithm));
    o.set("PublicKey", key);
    o.set("Subject", name(&req.subject));
    let mut extensions = Vec::new();
    let mut alt = AltNames::default();
    if let Some(exts) = csr.requested_extensions() {
        for e in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = e {
                alt.add(&san.general_names);
            }
        }
    }
    for attr in req.iter_attributes() {
        if oid_arcs(&attr.oid).as_slice() == [1, 2, 840, 113549, 1, 9, 14]
            && let Some(set) = der::children(attr.value)
        {
            for seq in set {
                for ext in der::children(seq.content).unwrap_or_default() {
                    extensions.push(raw_extension_value(ext.content));
                }
            }
        }
    }
    o.set("Attributes", Value::Null);
    o.set(
        "Extensions",
        list_or_null(extensions.into_iter().flatten().collect()),
    );
    o.set("ExtraExtensions", Value::Null);
    alt.write(&mut o);
    Ok(o.into_value())
}

/// `pkix.Extension` from the contents of an `Extension` SEQUENCE.
fn raw_extension_value(content: &[u8]) -> Option<Value> {
    let fields = der::children(content)?;
    let id = der::oid(fields.first()?)?;
    let (critical, value) = match fields.get(1..)? {
        [c, v] if c.tag == 0x01 => (c.content.first().is_some_and(|&b| b != 0), v),
        [v] => (false, v),
        _ => return None,
    };
    let mut o = Object::default();
    o.set("Id", oid_value(&id));
    o.set("Critical", Value::Bool(critical));
    o.set("Value", b64(value.content));
    Some(o.into_value())
}
