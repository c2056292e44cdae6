//! The panel's certificate: generated on first start (self-signed, for
//! `hashwatt.local`, this host's names and `localhost`), kept in the state
//! directory with its key at mode 0600, and identified by its SHA-256
//! fingerprint, which the console and the log show so the operator can
//! check what the browser warns about.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use sha2::{Digest, Sha256};
use tokio_rustls::rustls;

/// A loaded certificate and what serves with it.
pub struct PanelCert {
    /// The rustls configuration for the listener.
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the DER certificate, `AB:CD:…`.
    pub fingerprint: String,
    /// Made just now (first start).
    pub created: bool,
}

/// Loads `<dir>/cert.pem` and `<dir>/key.pem`, generating them first if
/// absent, for `names` (host names or IP addresses).
pub fn load_or_create(dir: &Path, names: &[String]) -> anyhow::Result<PanelCert> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    let mut created = false;
    if !cert_path.exists() || !key_path.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut params = rcgen::CertificateParams::new(names.to_vec())
            .context("cannot build the certificate's names")?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "hashwatt appliance");
        let now = time_now();
        params.not_before = now - std::time::Duration::from_secs(86_400);
        params.not_after = now + std::time::Duration::from_secs(10 * 365 * 86_400);
        let key = rcgen::KeyPair::generate().context("cannot generate the certificate key")?;
        let cert = params
            .self_signed(&key)
            .context("cannot sign the certificate")?;
        // Key first: a cert without its key would be useless at next start.
        hashwatt_state::atomic_write_with_mode(&key_path, key.serialize_pem().as_bytes(), 0o600)
            .with_context(|| format!("cannot write {}", key_path.display()))?;
        hashwatt_state::atomic_write(&cert_path, cert.pem().as_bytes())
            .with_context(|| format!("cannot write {}", cert_path.display()))?;
        created = true;
    }
    let cert_pem = std::fs::read(&cert_path)
        .with_context(|| format!("cannot read {}", cert_path.display()))?;
    let key_pem =
        std::fs::read(&key_path).with_context(|| format!("cannot read {}", key_path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate", cert_path.display()))?;
    let first = certs
        .first()
        .with_context(|| format!("{} holds no certificate", cert_path.display()))?;
    let fingerprint = Sha256::digest(first.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .with_context(|| format!("{} is not a PEM key", key_path.display()))?
        .with_context(|| format!("{} holds no key", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate does not match its key")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(PanelCert {
        config: Arc::new(config),
        fingerprint,
        created,
    })
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused_with_the_same_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["hashwatt.local".to_string(), "127.0.0.1".to_string()];
        let a = load_or_create(dir.path(), &names).unwrap();
        assert!(a.created);
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
        let b = load_or_create(dir.path(), &names).unwrap();
        assert!(!b.created);
        assert_eq!(a.fingerprint, b.fingerprint);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
