//! Shared Access Signature tokens for modules (PROTOCOL.md §1.3): built by modules, verified by
//! the hub exactly as edgeHub does (encoded `sr` signed as sent, fixed-time compare, clock skew).

use crate::bag::COMPONENT;
use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode};
use sha2::Sha256;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// edgeHub accepts a token until `se` + this skew.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// `{hub}/devices/{d}/modules/{m}`, ids escaped, then the whole resource escaped again: the `sr`
/// as it goes on the wire.
pub fn module_audience(iothub_hostname: &str, device: &str, module: &str) -> String {
    let resource = format!(
        "{iothub_hostname}/devices/{}/modules/{}",
        utf8_percent_encode(device, COMPONENT),
        utf8_percent_encode(module, COMPONENT)
    );
    utf8_percent_encode(&resource, COMPONENT).to_string()
}

/// The string the signature covers: the *encoded* audience, a newline, the expiry.
pub fn string_to_sign(audience: &str, expiry: u64) -> String {
    format!("{audience}\n{expiry}")
}

/// base64(HMAC-SHA256(key, data)).
pub fn sign(key: &[u8], data: &str) -> String {
    BASE64.encode(hmac_sha256(key, data.as_bytes()))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so new_from_slice cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `SharedAccessSignature sr=…&sig=…&se=…` from an audience, a base64 signature and an expiry.
pub fn format_token(audience: &str, signature: &str, expiry: u64) -> String {
    format!(
        "SharedAccessSignature sr={audience}&sig={}&se={expiry}",
        utf8_percent_encode(signature, COMPONENT)
    )
}

/// A token built locally from a module's key.
pub fn module_token(
    key: &[u8],
    iothub_hostname: &str,
    device: &str,
    module: &str,
    expiry: u64,
) -> String {
    let audience = module_audience(iothub_hostname, device, module);
    let signature = sign(key, &string_to_sign(&audience, expiry));
    format_token(&audience, &signature, expiry)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SasError {
    #[error("not a SharedAccessSignature token")]
    NotSas,
    #[error("token lacks field {0}")]
    Missing(&'static str),
    #[error("token field {0} is malformed")]
    Malformed(&'static str),
    #[error("token audience {0:?} is not {{host}}/devices/{{device}}[/modules/{{module}}]")]
    Audience(String),
    #[error("token is for host {0:?}, not this hub")]
    WrongHost(String),
    #[error("token is for {found}, the connection is {expected}")]
    WrongIdentity { found: String, expected: String },
    #[error("token expired at {0} (unix seconds)")]
    Expired(u64),
    #[error("signature does not match")]
    BadSignature,
}

/// A parsed token; `audience_raw` keeps the escape casing as sent, because that is what was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SasToken {
    pub audience_raw: String,
    pub expiry_raw: String,
    pub expiry: u64,
    pub signature: Vec<u8>,
    pub host: String,
    pub device: String,
    pub module: Option<String>,
}

impl SasToken {
    pub fn parse(token: &str) -> Result<Self, SasError> {
        let mut words = token.split_whitespace();
        if words.next() != Some("SharedAccessSignature") {
            return Err(SasError::NotSas);
        }
        let fields = words.next().ok_or(SasError::Missing("sr"))?;
        let (mut sr, mut sig, mut se) = (None, None, None);
        for kv in fields.split('&') {
            match kv.split_once('=') {
                Some(("sr", v)) => sr = Some(v),
                Some(("sig", v)) => sig = Some(v),
                Some(("se", v)) => se = Some(v),
                _ => {}
            }
        }
        let audience_raw = sr.ok_or(SasError::Missing("sr"))?.to_owned();
        let expiry_raw = se.ok_or(SasError::Missing("se"))?.to_owned();
        let expiry = expiry_raw.parse().map_err(|_| SasError::Malformed("se"))?;
        let sig = percent_decode_str(sig.ok_or(SasError::Missing("sig"))?).decode_utf8_lossy();
        let signature = BASE64
            .decode(sig.as_bytes())
            .map_err(|_| SasError::Malformed("sig"))?;
        let audience = percent_decode_str(&audience_raw)
            .decode_utf8_lossy()
            .into_owned();
        let parts: Vec<&str> = audience.split('/').collect();
        let dec = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let (host, device, module) = match parts.as_slice() {
            [h, "devices", d] => (h.to_string(), dec(d), None),
            [h, "devices", d, "modules", m] => (h.to_string(), dec(d), Some(dec(m))),
            _ => return Err(SasError::Audience(audience)),
        };
        Ok(Self {
            audience_raw,
            expiry_raw,
            expiry,
            signature,
            host,
            device,
            module,
        })
    }

    /// Verifies the token for `device`/`module` against any of `keys` (primary, then secondary),
    /// as edgeHub does: host is the IoT Hub or the gateway hostname (case-insensitive), identity
    /// equal, not expired beyond the skew, signature equal in fixed time.
    pub fn verify(
        &self,
        accepted_hosts: &[&str],
        device: &str,
        module: Option<&str>,
        keys: &[&[u8]],
        now_unix: u64,
    ) -> Result<(), SasError> {
        if !accepted_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&self.host))
        {
            return Err(SasError::WrongHost(self.host.clone()));
        }
        if self.device != device || self.module.as_deref() != module {
            return Err(SasError::WrongIdentity {
                found: identity_name(&self.device, self.module.as_deref()),
                expected: identity_name(device, module),
            });
        }
        if self.expiry.saturating_add(MAX_CLOCK_SKEW.as_secs()) <= now_unix {
            return Err(SasError::Expired(self.expiry));
        }
        let data = format!("{}\n{}", self.audience_raw, self.expiry_raw);
        let matched = keys.iter().any(|key| {
            let expected = hmac_sha256(key, data.as_bytes());
            bool::from(expected.as_slice().ct_eq(&self.signature))
        });
        if matched {
            Ok(())
        } else {
            Err(SasError::BadSignature)
        }
    }
}

fn identity_name(device: &str, module: Option<&str>) -> String {
    match module {
        Some(m) => format!("{device}/{m}"),
        None => device.to_owned(),
    }
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fixed key and expiry: the signature below was computed independently with
    // Python's hmac/hashlib (base64(HMAC-SHA256(b64decode(key), sr + "\n" + se))).
    const KEY_B64: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0NTY=";

    #[test]
    fn token_matches_the_test_vector() {
        let key = BASE64.decode(KEY_B64).unwrap();
        let token = module_token(
            &key,
            "myhub.azure-devices.net",
            "dev1",
            "producer",
            1_700_000_000,
        );
        assert_eq!(
            token,
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev1%2Fmodules%2Fproducer\
             &sig=3PLu2cnkGdT4c43tkRbdvZ4u4btWqNxxcb54y3fra3M%3D&se=1700000000"
        );
    }

    #[test]
    fn verifies_like_edgehub() {
        let key = BASE64.decode(KEY_B64).unwrap();
        let other = b"another key".to_vec();
        let t = module_token(&key, "Hub.Example", "d", "m", 1000);
        let parsed = SasToken::parse(&t).unwrap();
        let hosts = ["hub.example", "localhost"];
        assert_eq!(parsed.verify(&hosts, "d", Some("m"), &[&key], 900), Ok(()));
        // Secondary key works too.
        assert_eq!(
            parsed.verify(&hosts, "d", Some("m"), &[&other, &key], 900),
            Ok(())
        );
        // Within the 5-minute skew, then expired.
        assert_eq!(parsed.verify(&hosts, "d", Some("m"), &[&key], 1299), Ok(()));
        assert_eq!(
            parsed.verify(&hosts, "d", Some("m"), &[&key], 1300),
            Err(SasError::Expired(1000))
        );
        assert_eq!(
            parsed.verify(&hosts, "d", Some("m"), &[&other], 900),
            Err(SasError::BadSignature)
        );
        assert!(matches!(
            parsed.verify(&hosts, "d", Some("x"), &[&key], 900),
            Err(SasError::WrongIdentity { .. })
        ));
        assert!(matches!(
            parsed.verify(&["elsewhere"], "d", Some("m"), &[&key], 900),
            Err(SasError::WrongHost(_))
        ));
    }

    #[test]
    fn signs_the_audience_as_sent() {
        // Lower-case escapes are a different string to sign: a token re-encoded by a proxy fails.
        let key = b"k".to_vec();
        let t = module_token(&key, "h", "d", "m", 1000).replace("%2F", "%2f");
        let parsed = SasToken::parse(&t).unwrap();
        assert_eq!(
            parsed.verify(&["h"], "d", Some("m"), &[&key], 0),
            Err(SasError::BadSignature)
        );
    }

    #[test]
    fn rejects_malformed_tokens() {
        for bad in [
            "",
            "Bearer x",
            "SharedAccessSignature",
            "SharedAccessSignature sr=a&se=1",
            "SharedAccessSignature sr=h%2Fx&sig=AA%3D%3D&se=1",
            "SharedAccessSignature sr=h%2Fdevices%2Fd&sig=!!&se=1",
            "SharedAccessSignature sr=h%2Fdevices%2Fd&sig=AA%3D%3D&se=x",
        ] {
            assert!(SasToken::parse(bad).is_err(), "{bad}");
        }
    }
}
