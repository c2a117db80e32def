//! rustls client configuration trusting a PEM bundle (the IoT Edge trust bundle or a local CA).
//! One TLS stack in the whole project: rustls with the aws-lc-rs provider.

use rustls::{ClientConfig, RootCertStore};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the CA bundle has no PEM certificate in it")]
    NoCertificates,
    #[error("the CA bundle holds an unusable certificate: {0}")]
    BadCertificate(String),
    #[error("TLS set-up failed: {0}")]
    Rustls(#[from] rustls::Error),
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub fn root_store(ca_pem: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| TlsError::BadCertificate(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificates);
    }
    Ok(roots)
}

/// A client config that verifies the server against `ca_pem` (verification is always on).
pub fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> Result<ClientConfig, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store(ca_pem)?)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
