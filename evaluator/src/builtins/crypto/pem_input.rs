//! How OPA reads certificate and CSR operands: PEM text, or standard
//! base64 of PEM or DER.

use regorus::Value;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::{cert_json, der};
use crate::builtins::jwt::b64::std_padded;
use crate::builtins::jwt::x509::pem_decode;

/// Go's `base64.StdEncoding.DecodeString`, with its error text.
pub(super) fn std_base64(input: &str) -> Result<Vec<u8>, String> {
    std_padded(input.as_bytes()).ok_or_else(|| {
        format!(
            "illegal base64 data at input byte {}",
            error_offset(input.as_bytes())
        )
    })
}

/// Where Go's padded standard decoder reports bad input
/// (`CorruptInputError`), following its `decodeQuantum`.
fn error_offset(src: &[u8]) -> usize {
    let valid = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    let newline = |c: u8| c == b'\n' || c == b'\r';
    let mut si = 0;
    loop {
        let mut j = 0;
        while j < 4 {
            let Some(&c) = src.get(si) else {
                return if j == 0 { si } else { si - j };
            };
            si += 1;
            if valid(c) {
                j += 1;
                continue;
            }
            if newline(c) {
                continue;
            }
            if c != b'=' || j < 2 {
                return si - 1;
            }
            if j == 2 {
                while src.get(si).copied().is_some_and(newline) {
                    si += 1;
                }
                match src.get(si) {
                    None => return src.len(),
                    Some(&b'=') => si += 1,
                    Some(_) => return si - 1,
                }
            }
            while src.get(si).copied().is_some_and(newline) {
                si += 1;
            }
            return si;
        }
        if si >= src.len() {
            return si;
        }
    }
}

/// OPA's `getX509CertsFromString`: each certificate's DER.
pub(super) fn certificates(input: &str) -> Result<Vec<Vec<u8>>, String> {
    if input.starts_with("-----BEGIN") {
        return certificates_from_pem(input.as_bytes());
    }
    let bytes = std_base64(input)?;
    if bytes.starts_with(b"-----BEGIN") {
        return certificates_from_pem(&bytes);
    }
    parse_certificates(&bytes)
}

/// OPA's `getX509CertsFromPem`: every leading `CERTIFICATE` block.
fn certificates_from_pem(mut pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut der_bytes = Vec::new();
    while !pem.is_empty() {
        let Some((block, rest)) = pem_decode(pem) else {
            break;
        };
        if block.kind != b"CERTIFICATE" {
            return Err(format!(
                "PEM block type is '{}', expected CERTIFICATE",
                String::from_utf8_lossy(&block.kind)
            ));
        }
        der_bytes.extend_from_slice(&block.bytes);
        pem = rest;
    }
    parse_certificates(&der_bytes)
}

/// Go's `x509.ParseCertificates`: concatenated DER certificates.
pub(super) fn parse_certificates(mut input: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (tlv, rest) = der::read(input).ok_or("x509: malformed certificate")?;
        if tlv.tag != 0x30 {
            return Err("x509: malformed certificate".into());
        }
        match X509Certificate::from_der(tlv.full) {
            Ok(([], _)) => {}
            _ => return Err("x509: malformed certificate".into()),
        }
        out.push(tlv.full.to_vec());
        input = rest;
    }
    Ok(out)
}

/// OPA's `crypto.x509.parse_certificate_request`.
pub(super) fn certificate_request(input: &str) -> Result<Value, String> {
    let mut bytes = if input.starts_with("-----BEGIN CERTIFICATE REQUEST-----") {
        input.as_bytes().to_vec()
    } else {
        std_base64(input)?
    };
    if let Some((block, _)) = pem_decode(&bytes) {
        if block.kind != b"CERTIFICATE REQUEST" {
            return Err("invalid PEM-encoded certificate signing request".into());
        }
        bytes = block.bytes;
    }
    cert_json::certificate_request(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_errors_name_go_offsets() {
        assert_eq!(error_offset(b"foobar"), 4);
        assert_eq!(error_offset(b"invalid"), 4);
        assert_eq!(error_offset(b"ab!d"), 2);
        assert_eq!(error_offset(b"a==="), 1);
        assert_eq!(error_offset(b"ab==cd"), 4);
        assert_eq!(
            std_base64("foobar"),
            Err("illegal base64 data at input byte 4".into())
        );
        assert_eq!(std_base64("Zm9v\r\nYmFy"), Ok(b"foobar".to_vec()));
    }
}
