//! The hub's TLS identity: a server certificate and key from files, or a local CA generated once
//! into the state directory (and reused, so clients keep trusting it) plus a server certificate
//! for the gateway hostname, `localhost` and 127.0.0.1, issued on every start.

use anyhow::{bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One server certificate and key, loaded or issued once, presented by both listeners.
pub struct ServerTls {
    /// MQTT over TLS (no ALPN, as edgeHub on 8883).
    pub mqtt: Arc<rustls::ServerConfig>,
    /// HTTPS, offering `http/1.1` by ALPN.
    pub https: Arc<rustls::ServerConfig>,
    /// The PEM file clients must trust.
    pub ca_path: PathBuf,
}

/// Certificate files given on the command line.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

pub fn load_or_generate(
    state_dir: &Path,
    files: Option<&CertFiles>,
    hostnames: &[String],
) -> Result<ServerTls> {
    let (chain, key, ca_path) = match files {
        Some(f) => {
            let chain = read_certs(&f.cert)?;
            let key = rustls_pemfile::private_key(
                &mut std::fs::read(&f.key)
                    .with_context(|| format!("reading TLS key {}", f.key.display()))?
                    .as_slice(),
            )
            .with_context(|| format!("parsing TLS key {}", f.key.display()))?
            .with_context(|| format!("no private key in {}", f.key.display()))?;
            (chain, key, f.ca.clone())
        }
        None => generate(state_dir, hostnames)?,
    };
    let mqtt = rustls::ServerConfig::builder_with_provider(edge::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not match")?;
    let mut https = mqtt.clone();
    https.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerTls {
        mqtt: Arc::new(mqtt),
        https: Arc::new(https),
        ca_path,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem =
        std::fs::read(path).with_context(|| format!("reading certificate {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<std::result::Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificate {}", path.display()))?;
    if certs.is_empty() {
        bail!("no PEM certificate in {}", path.display());
    }
    Ok(certs)
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

fn ca_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(
        DnType::CommonName,
        "IoT Edge Method vs Message local hub CA",
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn generate(
    state_dir: &Path,
    hostnames: &[String],
) -> Result<(
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
    PathBuf,
)> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating state directory {}", state_dir.display()))?;
    let ca_path = state_dir.join("ca.pem");
    let ca_key_path = state_dir.join("ca.key");
    let (ca_pem, ca_key) = if ca_path.exists() && ca_key_path.exists() {
        let key_pem = std::fs::read_to_string(&ca_key_path)
            .with_context(|| format!("reading {}", ca_key_path.display()))?;
        let key = KeyPair::from_pem(&key_pem)
            .with_context(|| format!("parsing {}", ca_key_path.display()))?;
        (std::fs::read_to_string(&ca_path)?, key)
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        write_private(&ca_key_path, &key.serialize_pem())?;
        std::fs::write(&ca_path, cert.pem())
            .with_context(|| format!("writing {}", ca_path.display()))?;
        (cert.pem(), key)
    };
    // The issuer's name and key identifier are all a signature needs, and both are derived
    // from the same parameters and key as the stored CA certificate.
    let issuer = Issuer::new(ca_params()?, &ca_key);
    let mut names: Vec<String> = hostnames.to_vec();
    for n in ["localhost", "127.0.0.1"] {
        if !names.iter().any(|h| h == n) {
            names.push(n.to_owned());
        }
    }
    let server_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name.push(
        DnType::CommonName,
        hostnames.first().map(String::as_str).unwrap_or("localhost"),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let cert = params.signed_by(&server_key, &issuer)?;
    let server_pem = format!("{}{}", cert.pem(), ca_pem);
    std::fs::write(state_dir.join("server.pem"), &server_pem)?;
    write_private(&state_dir.join("server.key"), &server_key.serialize_pem())?;
    let chain = vec![cert.der().clone(), read_certs(&ca_path)?.remove(0)];
    let key = PrivateKeyDer::try_from(server_key.serialize_der())
        .map_err(|e| anyhow::anyhow!("server key: {e}"))?;
    Ok((chain, key, ca_path))
}
