//! `providers.aws.sign_req`: AWS Signature Version 4, with OPA v1.20's
//! semantics (`v1/topdown/providers.go`, `internal/providers/aws/signing_v4.go`).
//!
//! The signing time is the third operand (nanoseconds since the epoch), so
//! the result is a pure function of the operands. The URL is read as Go's
//! `net/url` reads it (see `gourl`) and a `body` is serialised as Go's
//! `json.Marshal` does (see `body`), because both enter the signature.
//! Known difference: OPA rejects a timestamp written with an exponent or a
//! fraction (`1e9`) even when it is a whole number; regorus does not keep
//! the literal's text, so such a timestamp is accepted here.

mod body;
mod gourl;

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use regorus::Value;
use sha2::{Digest, Sha256};

use super::BuiltinError;

const SIGN_REQ: &str = "providers.aws.sign_req";

pub(crate) const BUILTINS: &[(&str, usize)] = &[(SIGN_REQ, 3)];

pub(crate) fn call(name: &str, args: &[Value]) -> Result<Value, BuiltinError> {
    match name {
        SIGN_REQ => sign_req(args),
        _ => Err(BuiltinError::Unknown(name.to_string())),
    }
}

/// The request keys `http.send` accepts (OPA checks the request against them).
const ALLOWED_REQUEST_KEYS: &[&str] = &[
    "method",
    "url",
    "body",
    "enable_redirect",
    "force_json_decode",
    "force_yaml_decode",
    "headers",
    "raw_body",
    "tls_use_system_certs",
    "tls_ca_cert",
    "tls_ca_cert_file",
    "tls_ca_cert_env_variable",
    "tls_client_cert",
    "tls_client_cert_file",
    "tls_client_cert_env_variable",
    "tls_client_key",
    "tls_client_key_file",
    "tls_client_key_env_variable",
    "tls_insecure_skip_verify",
    "tls_server_name",
    "timeout",
    "cache",
    "force_cache",
    "force_cache_duration_seconds",
    "raise_error",
    "caching_mode",
    "max_retry_attempts",
    "cache_ignored_headers",
];

const REQUIRED_CONFIG_KEYS: &[&str] = &[
    "aws_access_key",
    "aws_region",
    "aws_secret_access_key",
    "aws_service",
];

/// Headers a proxy may rewrite, left out of the signature.
const IGNORED_HEADERS: &[&str] = &["authorization", "user-agent", "x-amzn-trace-id"];

const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

type Fields = BTreeMap<Value, Value>;

fn operand(position: usize, expected: &'static str) -> BuiltinError {
    BuiltinError::Operand {
        name: SIGN_REQ,
        position,
        expected,
    }
}

fn object(v: Option<&Value>, position: usize) -> Result<Fields, BuiltinError> {
    match v {
        Some(Value::Object(o)) => Ok(o.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        _ => Err(operand(position, "an object")),
    }
}

/// OPA's `stringFromTerm`: the string, or "" for any other value.
fn text(v: Option<&Value>) -> &str {
    match v {
        Some(Value::String(s)) => s,
        _ => "",
    }
}

fn get<'a>(fields: &'a Fields, key: &str) -> Option<&'a Value> {
    fields.get(&Value::from(key))
}

/// AWS credentials and scope from the config operand.
struct Credentials {
    access_key: String,
    secret_key: String,
    region: String,
    session_token: String,
}

fn sign_req(args: &[Value]) -> Result<Value, BuiltinError> {
    // OPA reports a non-object config, and a non-number time, as operand 1.
    let req = object(args.first(), 1)?;
    let config = object(args.get(1), 1)?;
    validate_config(&config)?;
    let service = text(get(&config, "aws_service")).to_string();
    let creds = Credentials {
        access_key: text(get(&config, "aws_access_key")).to_string(),
        secret_key: text(get(&config, "aws_secret_access_key")).to_string(),
        region: text(get(&config, "aws_region")).to_string(),
        session_token: text(get(&config, "aws_session_token")).to_string(),
    };
    let ts = match args.get(2) {
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|_| n.is_integer())
            .ok_or_else(|| operand(3, "a time_ns value convertible to a unix timestamp"))?,
        _ => return Err(operand(1, "a number")),
    };
    validate_request(&req)?;

    // OPA reports a non-object `headers` as operand 0.
    let headers = match get(&req, "headers") {
        None => Fields::new(),
        Some(Value::Object(o)) => o.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(_) => return Err(operand(0, "an object")),
    };
    let (Some(Value::String(url)), Some(Value::String(method))) =
        (get(&req, "url"), get(&req, "method"))
    else {
        return Err(operand(1, "an object whose `method` and `url` are strings"));
    };
    let url = gourl::parse(url).map_err(|reason| BuiltinError::Invalid {
        name: SIGN_REQ,
        reason,
    })?;
    let payload = match (get(&req, "raw_body"), get(&req, "body")) {
        (Some(raw), _) => text(Some(raw)).as_bytes().to_vec(),
        (None, Some(b)) => body::marshal(b)
            .map_err(|reason| BuiltinError::Invalid {
                name: SIGN_REQ,
                reason,
            })?
            .into_bytes(),
        (None, None) => Vec::new(),
    };
    let header_map: BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| (text(Some(k)).to_string(), text(Some(v)).to_string()))
        .collect();
    let disable_payload_signing = match get(&config, "disable_payload_signing") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(operand(
                2,
                "an object whose `disable_payload_signing` is a boolean",
            ));
        }
    };

    let signing = Signing {
        method,
        url: &url,
        body: &payload,
        service: &service,
        creds: &creds,
        time_ns: ts,
        disable_payload_signing,
    };
    let (authorization, aws_headers) = signing.sign(&header_map);

    let mut signed: Fields = header_map
        .into_iter()
        .map(|(k, v)| (Value::from(k), Value::from(v)))
        .collect();
    signed.insert(Value::from("Authorization"), Value::from(authorization));
    for (k, v) in aws_headers {
        signed.insert(Value::from(k), Value::from(v));
    }
    let mut out = req;
    out.insert(Value::from("headers"), Value::from(signed));
    Ok(Value::from(out))
}

/// OPA's `validateAWSAuthParameters`.
fn validate_config(config: &Fields) -> Result<(), BuiltinError> {
    if REQUIRED_CONFIG_KEYS
        .iter()
        .any(|k| get(config, k).is_none())
    {
        return Err(operand(
            2,
            "an object with `aws_access_key`, `aws_region`, `aws_secret_access_key` and `aws_service`",
        ));
    }
    if REQUIRED_CONFIG_KEYS
        .iter()
        .any(|k| !matches!(get(config, k), Some(Value::String(_))))
    {
        return Err(operand(
            2,
            "an object whose `aws_access_key`, `aws_region`, `aws_secret_access_key` and `aws_service` are strings",
        ));
    }
    Ok(())
}

/// OPA's `validateHTTPRequestOperand`: only `http.send` keys, with `method` and `url`.
fn validate_request(req: &Fields) -> Result<(), BuiltinError> {
    let allowed =
        |k: &Value| matches!(k, Value::String(s) if ALLOWED_REQUEST_KEYS.contains(&s.as_ref()));
    if !req.keys().all(allowed) {
        return Err(operand(1, "an object with only `http.send` request keys"));
    }
    if get(req, "method").is_none() || get(req, "url").is_none() {
        return Err(operand(1, "an object with `method` and `url`"));
    }
    Ok(())
}

/// One signing operation (OPA's `aws.SignV4`).
struct Signing<'a> {
    method: &'a str,
    url: &'a gourl::Url,
    body: &'a [u8],
    service: &'a str,
    creds: &'a Credentials,
    time_ns: i64,
    disable_payload_signing: bool,
}

impl Signing<'_> {
    /// The `Authorization` header and the headers the signature covers.
    fn sign(&self, headers: &BTreeMap<String, String>) -> (String, BTreeMap<String, String>) {
        let content_sha256 = if self.disable_payload_signing {
            UNSIGNED_PAYLOAD.to_string()
        } else {
            hex::encode(Sha256::digest(self.body))
        };
        let (date, datetime) = timestamps(self.time_ns);

        let mut aws_headers = BTreeMap::from([
            ("host".to_string(), self.url.host.clone()),
            ("x-amz-date".to_string(), datetime.clone()),
        ]);
        if self.service == "s3" || self.service == "glacier" {
            aws_headers.insert("x-amz-content-sha256".to_string(), content_sha256.clone());
        }
        if !self.creds.session_token.is_empty() {
            aws_headers.insert(
                "x-amz-security-token".to_string(),
                self.creds.session_token.clone(),
            );
        }

        let mut to_sign = aws_headers.clone();
        for (k, v) in headers {
            let lower = k.to_lowercase();
            if !IGNORED_HEADERS.contains(&lower.as_str()) {
                to_sign.insert(lower, v.clone());
            }
        }

        let mut canonical = format!(
            "{}\n{}\n{}\n",
            self.method, self.url.escaped_path, self.url.raw_query
        );
        for (k, v) in &to_sign {
            canonical.push_str(&format!("{k}:{v}\n"));
        }
        canonical.push('\n');
        let header_list = to_sign.keys().cloned().collect::<Vec<_>>().join(";");
        canonical.push_str(&header_list);
        canonical.push('\n');
        canonical.push_str(&content_sha256);

        let scope = format!("{date}/{}/{}/aws4_request", self.creds.region, self.service);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{datetime}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac_sha256(
            format!("AWS4{}", self.creds.secret_key).as_bytes(),
            date.as_bytes(),
        );
        for part in [self.creds.region.as_str(), self.service, "aws4_request"] {
            key = hmac_sha256(&key, part.as_bytes());
        }
        let signature = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope},SignedHeaders={header_list},Signature={signature}",
            self.creds.access_key
        );
        (authorization, aws_headers)
    }
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // INVARIANT: HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(msg);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// The signing date (`20060102`) and time (`20060102T150405Z`) in UTC.
fn timestamps(time_ns: i64) -> (String, String) {
    let secs = time_ns.div_euclid(1_000_000_000);
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let date = format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day());
    let datetime = format!("{date}T{:02}{:02}{:02}Z", t.hour(), t.minute(), t.second());
    (date, datetime)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Value {
        Value::from_json_str(&format!(
            r#"{{"aws_access_key": "MYAWSACCESSKEYGOESHERE",
                "aws_secret_access_key": "MYAWSSECRETACCESSKEYGOESHERE",
                "aws_service": "s3", "aws_region": "us-east-1"{extra}}}"#
        ))
        .unwrap()
    }

    const TS: u64 = 1_451_311_705_000_000_000;

    fn header(out: &Value, name: &str) -> String {
        let headers = out
            .as_object()
            .unwrap()
            .get(&Value::from("headers"))
            .unwrap();
        headers
            .as_object()
            .unwrap()
            .get(&Value::from(name))
            .unwrap()
            .as_string()
            .unwrap()
            .to_string()
    }

    #[test]
    fn signs_a_request_without_body() {
        let req =
            Value::from_json_str(r#"{"method": "get", "url": "http://example.com"}"#).unwrap();
        let out = call(SIGN_REQ, &[req, config(""), Value::from(TS)]).unwrap();
        assert_eq!(
            header(&out, "Authorization"),
            "AWS4-HMAC-SHA256 Credential=MYAWSACCESSKEYGOESHERE/20151228/us-east-1/s3/aws4_request,SignedHeaders=host;x-amz-content-sha256;x-amz-date,Signature=0047a7016c81e5c7f29cd522f97e911e04fc472fced0aee7916cbc287ad6c8e3"
        );
        assert_eq!(header(&out, "x-amz-date"), "20151228T140825Z");
        assert_eq!(header(&out, "host"), "example.com");
    }

    #[test]
    fn unsigned_payload() {
        let req = Value::from_json_str(
            r#"{"method": "get", "url": "https://example.com", "headers": {"foo": "bar"}}"#,
        )
        .unwrap();
        let cfg = config(r#", "disable_payload_signing": true"#);
        let out = call(SIGN_REQ, &[req, cfg, Value::from(TS)]).unwrap();
        assert_eq!(header(&out, "x-amz-content-sha256"), UNSIGNED_PAYLOAD);
        assert!(header(&out, "Authorization").ends_with(
            "Signature=c6e6db654e92172f71e18c714c123711de069ac6fd7df1348e5b28fd05532028"
        ));
        assert_eq!(header(&out, "foo"), "bar");
    }

    #[test]
    fn operand_errors_are_type_errors() {
        let req =
            Value::from_json_str(r#"{"method": "get", "url": "http://example.com"}"#).unwrap();
        let type_err =
            |args: &[Value]| matches!(call(SIGN_REQ, args), Err(BuiltinError::Operand { .. }));
        assert!(type_err(&[
            Value::from_json_str("{}").unwrap(),
            config(""),
            Value::from(TS)
        ]));
        assert!(type_err(&[
            req.clone(),
            Value::from_json_str(r#"{"x": 1}"#).unwrap(),
            Value::from(TS)
        ]));
        assert!(type_err(&[
            req.clone(),
            config(r#", "disable_payload_signing": "no""#),
            Value::from(TS)
        ]));
        assert!(type_err(&[req.clone(), config(""), Value::from(1.5)]));
        assert!(type_err(&[req, config(""), Value::from("now")]));
        let bad_url = Value::from_json_str(r#"{"method": "get", "url": "http://h:x/"}"#).unwrap();
        assert!(matches!(
            call(SIGN_REQ, &[bad_url, config(""), Value::from(TS)]),
            Err(BuiltinError::Invalid { .. })
        ));
    }

    #[test]
    fn time_before_the_epoch() {
        assert_eq!(
            timestamps(-1_000_000_000),
            ("19691231".to_string(), "19691231T235959Z".to_string())
        );
    }
}
