//! Development certificates: a CA, a journal server certificate and client
//! certificates (agents, operators), for `policyctl journal certs`,
//! `policyctl up` and the tests. Not for production: keys are written
//! unencrypted and certificates live for one year.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Errors creating or writing certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid client name `{0}`: use letters, digits, `-`, `_` and `.`")]
    InvalidName(String),
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct PemPair {
    pub cert: String,
    pub key: String,
}

/// A development CA that signs server and client certificates.
pub struct DevCa {
    pub pem: PemPair,
    issuer: Issuer<'static, KeyPair>,
}

impl DevCa {
    /// A new CA named `name`.
    pub fn generate(name: &str) -> Result<Self, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params);
        let cert = params.self_signed(&key)?;
        let pem = PemPair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        };
        Ok(Self {
            pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// A server certificate for `hosts` (DNS names or IP addresses).
    pub fn server(&self, name: &str, hosts: &[&str]) -> Result<PemPair, CertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(name);
        for host in hosts {
            let san = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*host).try_into()?),
            };
            params.subject_alt_names.push(san);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate whose common name is the identity `name`
    /// (an agent id, or an operator such as `policyctl`).
    pub fn client(&self, name: &str) -> Result<PemPair, CertError> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(CertError::InvalidName(name.to_owned()));
        }
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, mut params: CertificateParams) -> Result<PemPair, CertError> {
        validity(&mut params);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(PemPair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

/// Paths of a certificate set written by [`write_dev_set`].
#[derive(Debug, Clone)]
pub struct CertPaths {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertPaths {
    fn in_dir(dir: &Path, name: &str) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}-key.pem")),
        }
    }
}

/// Writes `ca.pem`, `server.pem`/`server-key.pem` (for `localhost`,
/// `127.0.0.1`, `::1` and `extra_hosts`) and `<client>.pem`/`<client>-key.pem`
/// for each client into `dir`. Returns the server's paths.
pub fn write_dev_set(
    dir: &Path,
    extra_hosts: &[&str],
    clients: &[&str],
) -> Result<CertPaths, CertError> {
    fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let ca = DevCa::generate("policy-engine development CA")?;
    write(&dir.join("ca.pem"), &ca.pem.cert)?;
    write(&dir.join("ca-key.pem"), &ca.pem.key)?;
    let mut hosts = vec!["localhost", "127.0.0.1", "::1"];
    hosts.extend_from_slice(extra_hosts);
    let server = ca.server("policy-journal", &hosts)?;
    let paths = CertPaths::in_dir(dir, "server");
    write(&paths.cert, &server.cert)?;
    write(&paths.key, &server.key)?;
    for client in clients {
        let pair = ca.client(client)?;
        let p = CertPaths::in_dir(dir, client);
        write(&p.cert, &pair.cert)?;
        write(&p.key, &pair.key)?;
    }
    Ok(paths)
}

/// The paths [`write_dev_set`] used for `client` in `dir`.
pub fn client_paths(dir: &Path, client: &str) -> CertPaths {
    CertPaths::in_dir(dir, client)
}

fn write(path: &Path, contents: &str) -> Result<(), CertError> {
    let res = fs::write(path, contents);
    #[cfg(unix)]
    let res = res.and_then(|()| {
        use std::os::unix::fs::PermissionsExt;
        if path.to_string_lossy().ends_with("-key.pem") {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        } else {
            Ok(())
        }
    });
    res.map_err(|source| CertError::Write {
        path: path.to_owned(),
        source,
    })
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "policy-engine (development)");
    dn
}

fn validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn writes_a_complete_set_with_private_keys_0600() {
        let dir = tempfile::tempdir().unwrap();
        let server = write_dev_set(dir.path(), &[], &["agent-1", "policyctl"]).unwrap();
        for f in [
            "ca.pem",
            "server.pem",
            "server-key.pem",
            "agent-1.pem",
            "agent-1-key.pem",
            "policyctl.pem",
        ] {
            let text = fs::read_to_string(dir.path().join(f)).unwrap();
            assert!(text.starts_with("-----BEGIN"), "{f}");
        }
        assert_eq!(server.cert, dir.path().join("server.pem"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("agent-1-key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn client_names_are_validated() {
        let ca = DevCa::generate("ca").unwrap();
        assert!(matches!(ca.client("a b"), Err(CertError::InvalidName(_))));
        assert!(matches!(ca.client(""), Err(CertError::InvalidName(_))));
        assert!(ca.client("agent-1").is_ok());
    }
}
