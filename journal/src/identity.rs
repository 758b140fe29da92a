//! Who is calling: the common name of the verified client certificate.

use tonic::Status;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The identity of the client of `request`: the common name of the leaf
/// certificate it presented (rustls already verified the chain against the
/// configured CA). Errors are `UNAUTHENTICATED`.
pub fn client_identity<T>(request: &tonic::Request<T>) -> Result<String, Status> {
    let certs = request
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    common_name(leaf.as_ref())
        .ok_or_else(|| Status::unauthenticated("the client certificate has no usable common name"))
}

/// The first common name of a DER certificate, if it is non-empty text
/// without control characters.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    (!cn.is_empty() && !cn.chars().any(char::is_control)).then(|| cn.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_the_common_name_of_a_dev_client_cert() {
        let ca = journal_client::devcerts::DevCa::generate("ca").unwrap();
        let pair = ca.client("agent-7").unwrap();
        let der = pem_to_der(&pair.cert);
        assert_eq!(common_name(&der).as_deref(), Some("agent-7"));
        assert_eq!(common_name(b"not a certificate"), None);
    }

    fn pem_to_der(pem: &str) -> Vec<u8> {
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        p.contents
    }
}
