//! Certificates: the development CA created on first start, and PEM loading.
//!
//! With no TLS configuration a broker keeps a self-made CA in its data
//! directory (`ca.pem`, `ca-key.pem`) and a broker certificate signed by it
//! (`broker.pem`, `broker-key.pem`) valid for `localhost`, `127.0.0.1` and
//! `::1`. Clients on the same machine trust `ca.pem`.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Errors while creating or loading certificates and keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A PEM file held no usable certificate or key.
    #[error("{path}: {detail}")]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// Certificate generation failed.
    #[error("generating {what}: {source}")]
    Generate {
        /// What was being generated.
        what: &'static str,
        /// rcgen's error.
        source: rcgen::Error,
    },
}

/// A certificate chain with its private key, plus the CA certificates to trust.
#[derive(Debug)]
pub struct TlsIdentity {
    /// Our certificate chain, leaf first.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// Our private key.
    pub key: PrivateKeyDer<'static>,
    /// CA certificates that peers' certificates must chain to.
    pub trust: Vec<CertificateDer<'static>>,
}

/// File names of the development PKI inside a data directory.
#[derive(Debug, Clone)]
pub struct DevPki {
    /// The CA certificate clients trust.
    pub ca_cert: PathBuf,
    /// The broker's certificate.
    pub cert: PathBuf,
    /// The broker's private key.
    pub key: PathBuf,
}

impl DevPki {
    /// The paths used inside `data_dir`.
    pub fn paths(data_dir: &Path) -> DevPki {
        DevPki {
            ca_cert: data_dir.join("ca.pem"),
            cert: data_dir.join("broker.pem"),
            key: data_dir.join("broker-key.pem"),
        }
    }

    /// Makes sure `data_dir` holds a dev CA and a broker certificate signed by
    /// it, creating whatever is missing, and returns their paths.
    pub fn ensure(data_dir: &Path) -> Result<DevPki, PkiError> {
        let paths = DevPki::paths(data_dir);
        let (ca_key, created) = ensure_ca(data_dir)?;
        if created {
            // A new CA invalidates any old broker certificate.
            let _ = fs::remove_file(&paths.cert);
        }
        if !(paths.cert.exists() && paths.key.exists()) {
            issue_files(&ca_key, "meshcast broker", &[], &paths.cert, &paths.key)?;
        }
        Ok(paths)
    }

    /// Loads the broker identity (certificate, key, trusted CA) from these files.
    pub fn load(&self) -> Result<TlsIdentity, PkiError> {
        load_identity(&self.cert, &self.key, &self.ca_cert)
    }
}

/// Loads the CA key kept in `dir` (`ca.pem`, `ca-key.pem`), or creates a new
/// CA there. Returns the key and whether it was just created.
pub fn ensure_ca(dir: &Path) -> Result<(KeyPair, bool), PkiError> {
    fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        action: "creating directory",
        path: dir.to_path_buf(),
        source,
    })?;
    let ca_cert = dir.join("ca.pem");
    let ca_key_path = dir.join("ca-key.pem");
    if ca_cert.exists() && ca_key_path.exists() {
        let pem = read(&ca_key_path)?;
        let key = KeyPair::from_pem(&pem).map_err(|e| PkiError::BadPem {
            path: ca_key_path.clone(),
            detail: e.to_string(),
        })?;
        return Ok((key, false));
    }
    let key = KeyPair::generate().map_err(|source| PkiError::Generate {
        what: "CA key",
        source,
    })?;
    let cert = ca_params()
        .self_signed(&key)
        .map_err(|source| PkiError::Generate {
            what: "CA certificate",
            source,
        })?;
    write(&ca_key_path, &key.serialize_pem(), true)?;
    write(&ca_cert, &cert.pem(), false)?;
    Ok((key, true))
}

/// Issues a certificate for `name` (see [`issue_leaf`]) signed by the CA
/// whose key is `ca_key`, and writes it and its key to the given files.
pub fn issue_files(
    ca_key: &KeyPair,
    name: &str,
    extra_names: &[String],
    cert: &Path,
    key: &Path,
) -> Result<(), PkiError> {
    let issuer = Issuer::new(ca_params(), ca_key);
    let (cert_pem, key_pem) = issue_leaf(&issuer, name, extra_names)?;
    write(key, &key_pem, true)?;
    write(cert, &cert_pem, false)
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "meshcast dev CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// Issues a certificate for `common_name`, valid for `localhost`, the
/// loopback addresses and `extra_names`, usable as TLS server and client.
/// Returns (certificate PEM, key PEM).
pub fn issue_leaf(
    issuer: &Issuer<'_, &KeyPair>,
    common_name: &str,
    extra_names: &[String],
) -> Result<(String, String), PkiError> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    names.extend(extra_names.iter().cloned());
    let mut params = CertificateParams::new(names).map_err(|source| PkiError::Generate {
        what: "certificate parameters",
        source,
    })?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().map_err(|source| PkiError::Generate {
        what: "key",
        source,
    })?;
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|source| PkiError::Generate {
            what: "certificate",
            source,
        })?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Loads every certificate in a PEM file (at least one is required).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::BadPem {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PkiError::BadPem {
            path: path.to_path_buf(),
            detail: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// Loads a private key from a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, PkiError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| PkiError::BadPem {
        path: path.to_path_buf(),
        detail: format!("no usable private key: {e}"),
    })
}

/// Loads a certificate chain, its key and the CA to trust.
pub fn load_identity(cert: &Path, key: &Path, ca: &Path) -> Result<TlsIdentity, PkiError> {
    Ok(TlsIdentity {
        cert_chain: load_certs(cert)?,
        key: load_key(key)?,
        trust: load_certs(ca)?,
    })
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        action: "reading",
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        action: "writing",
        path: path.to_path_buf(),
        source,
    };
    // Write to a temporary name and rename, so a crash never leaves half a file.
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, contents).map_err(io)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    #[cfg(not(unix))]
    let _ = private;
    fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_pki_is_created_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("meshcast-pki-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let p = DevPki::ensure(&dir).unwrap();
        let ca1 = fs::read(&p.ca_cert).unwrap();
        let id = p.load().unwrap();
        assert_eq!(id.cert_chain.len(), 1);
        assert_eq!(id.trust.len(), 1);
        // Losing the broker cert re-issues it under the same CA.
        fs::remove_file(&p.cert).unwrap();
        let p2 = DevPki::ensure(&dir).unwrap();
        assert_eq!(fs::read(&p2.ca_cert).unwrap(), ca1);
        assert!(p2.cert.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_pem_names_the_file() {
        let dir = std::env::temp_dir().join(format!("meshcast-pem-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let f = dir.join("x.pem");
        fs::write(&f, "not pem").unwrap();
        let err = load_certs(&f).unwrap_err();
        assert!(err.to_string().contains("x.pem"), "{err}");
        let err = load_certs(&dir.join("missing.pem")).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
