//! TLS on the replica's port, when given a certificate and its key
//! (`--tls-cert`, `--tls-key`, PEM): rustls, offering HTTP/2 and HTTP/1.1 by
//! ALPN. The certificate is read again on SIGHUP, as the component is; each
//! new connection takes the one current then.

use anyhow::{Context as _, Result, anyhow, bail};
use arc_swap::ArcSwap;
use replica_config::Config;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// The certificate the replica's port serves, replaceable while serving.
pub(crate) struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<ServerConfig>,
}

impl Tls {
    /// TLS as `config` asks for it: `None` without `--tls-cert`. A certificate
    /// or key that cannot be used stops the host here, before it binds.
    pub(crate) fn from_config(config: &Config) -> Result<Option<Tls>> {
        let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
            return Ok(None);
        };
        let current = ArcSwap::from_pointee(server_config(cert, key)?);
        Ok(Some(Tls {
            cert: cert.clone(),
            key: key.clone(),
            current,
        }))
    }

    /// Reads the certificate and key again; a pair that cannot be used is
    /// refused, and the one before goes on serving.
    pub(crate) fn reload(&self) -> Result<()> {
        self.current
            .store(Arc::new(server_config(&self.cert, &self.key)?));
        Ok(())
    }

    /// An acceptor with the current certificate, for one new connection.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }
}

/// A rustls server configuration for the PEM certificate chain at `cert` and
/// the PEM private key at `key`, offering h2 and http/1.1.
fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            anyhow!(e).context(format!(
                "cannot read a PEM certificate chain from {}: pass --tls-cert with one",
                cert.display()
            ))
        })?;
    if chain.is_empty() {
        bail!(
            "{} holds no PEM certificate: pass --tls-cert with one",
            cert.display()
        );
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        anyhow!(e).context(format!(
            "cannot read a PEM private key from {}: pass --tls-key with the certificate's key",
            key.display()
        ))
    })?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("cannot set up TLS")?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .with_context(|| {
                format!(
                    "the certificate {} and the key {} cannot be used together: pass the key that \
             belongs to the certificate",
                    cert.display(),
                    key.display()
                )
            })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
