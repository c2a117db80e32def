//! Shared Access Signature tokens for modules (docs/protocol.md#sas-tokens): built by modules,
//! parsed and verified by the hub exactly as edgeHub does (encoded `sr` signed as sent,
//! fixed-time compare, clock skew).
//!
//! Parsing follows Azure/iotedge `edge-util/src/Microsoft.Azure.Devices.Edge.Util/
//! SharedAccessSignature.cs` (`Parse`, `ExtractFieldValues`, the constructor's expiry check) and
//! the audience rules of `edge-hub/core/src/Microsoft.Azure.Devices.Edge.Hub.CloudProxy/
//! authenticators/DeviceScopeTokenAuthenticator.cs` (`ValidateAudience`):
//!
//! - The token is split on every whitespace character (.NET `string.Split()`, empty words kept):
//!   exactly two words, the first exactly `SharedAccessSignature` (case-sensitive). A leading,
//!   trailing or doubled space makes a third word. Empty or whitespace-only tokens are refused.
//! - The second word is split on `&`; empty fields are skipped. Each field is split on `=`: a field
//!   without `=` is refused, and the value is what lies between the first and the second `=` (the
//!   rest is dropped, as `fieldParts[1]` does).
//! - Field names are compared with .NET's `OrdinalIgnoreCase` (`SR=`, `Sig=`, `sE=` are `sr`,
//!   `sig`, `se`); a name given twice, in any case, is refused (`Dictionary.Add` throws). Unknown
//!   fields and `skn` are accepted and ignored.
//! - `sr` is kept as sent; every other value is `WebUtility.UrlDecode`d (`+` is a space). `sig`,
//!   `se` and `sr` are required (checked in that order). Empty values parse; they fail later.
//! - `se` is read by `double.Parse(se, InvariantCulture)` (sign, decimals, exponent, `,` digit
//!   groups, surrounding spaces, trailing NULs) and must give a .NET `DateTime` even after adding
//!   the 5-minute skew; the signature covers `se` as decoded, not its number.
//! - The audience is `sr` URL-decoded, then trimmed and URL-decoded again, then split on `/`:
//!   3 parts are `{host}/…/{device}`, 5 parts `{host}/…/{device}/…/{module}` (edgeHub does not
//!   look at the 2nd and 4th parts). Anything else is refused.
//! - `sig` is compared as text with the base64 HMAC, in fixed time.

use crate::bag::COMPONENT;
use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use hmac::{Hmac, Mac};
use percent_encoding::utf8_percent_encode;
use sha2::Sha256;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// edgeHub accepts a token until `se` + this skew.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// edgeHub's `SharedAccessSignatureConstants`.
const SHARED_ACCESS_SIGNATURE: &str = "SharedAccessSignature";
const AUDIENCE_FIELD: &str = "sr";
const SIGNATURE_FIELD: &str = "sig";
const EXPIRY_FIELD: &str = "se";
const KEY_NAME_FIELD: &str = "skn";

/// .NET ticks (100 ns) per second; `DateTime`'s epoch and largest value in ticks.
const TICKS_PER_SECOND: i64 = 10_000_000;
const UNIX_EPOCH_TICKS: i64 = 621_355_968_000_000_000;
const MAX_DATE_TIME_TICKS: i64 = 3_155_378_975_999_999_999;

/// Longest audience quoted in an error (the audience comes from the client).
const MAX_QUOTED_AUDIENCE: usize = 120;

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
    #[error("not a SharedAccessSignature token (edgeHub wants exactly two words: \"SharedAccessSignature <fields>\")")]
    NotSas,
    #[error("token lacks field {0}")]
    Missing(&'static str),
    #[error("token field {0} is malformed")]
    Malformed(&'static str),
    /// Names the field only when it is one edgeHub knows: the name of another came from the client.
    #[error("token field {0} appears more than once (edgeHub ignores case in field names and refuses repeats)")]
    Duplicate(&'static str),
    #[error("token has a field without '=' (fields are name=value, joined by '&')")]
    FieldWithoutValue,
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

/// A parsed token. `Debug` leaves the signature out, so a logged token gives nothing away.
#[derive(Clone, PartialEq, Eq)]
pub struct SasToken {
    /// `sr` as sent (escape casing kept): it is what was signed.
    pub audience_raw: String,
    /// `se` as edgeHub keeps it, URL-decoded (`se=+1` is " 1"): it is what was signed.
    pub expiry_raw: String,
    /// `se` in unix seconds, rounded to the nearest second; 0 for a time before 1970. (edgeHub
    /// keeps 100 ns ticks: a fractional `se` expires up to half a second off here.)
    pub expiry: u64,
    /// `sig` URL-decoded: base64 text, compared as text with the expected signature.
    pub signature: String,
    pub host: String,
    pub device: String,
    pub module: Option<String>,
}

impl fmt::Debug for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasToken")
            .field("audience_raw", &self.audience_raw)
            .field("expiry_raw", &self.expiry_raw)
            .field("expiry", &self.expiry)
            .field("signature", &"<redacted>")
            .field("host", &self.host)
            .field("device", &self.device)
            .field("module", &self.module)
            .finish()
    }
}

impl SasToken {
    /// Parses a token as edgeHub's `SharedAccessSignature.Parse` does (see the module docs), plus
    /// the audience split of its `DeviceScopeTokenAuthenticator`.
    pub fn parse(token: &str) -> Result<Self, SasError> {
        let fields = extract_field_values(token)?;
        let field = |name: &'static str| {
            fields
                .get(&ordinal_fold(name))
                .ok_or(SasError::Missing(name))
        };
        let signature = field(SIGNATURE_FIELD)?;
        let expiry_raw = field(EXPIRY_FIELD)?;
        let audience_raw = field(AUDIENCE_FIELD)?;
        let expiry = expiry_seconds(expiry_raw).ok_or(SasError::Malformed(EXPIRY_FIELD))?;
        let (host, device, module) = parse_audience(audience_raw)?;
        Ok(Self {
            audience_raw: audience_raw.as_ref().to_owned(),
            expiry_raw: expiry_raw.as_ref().to_owned(),
            expiry,
            signature: signature.as_ref().to_owned(),
            host,
            device,
            module,
        })
    }

    /// Verifies the token for `device`/`module` against any of `keys` (primary, then secondary),
    /// as edgeHub does: host not blank and the IoT Hub or the gateway hostname, identity equal,
    /// not expired beyond the skew, signature text equal in fixed time. The host is compared
    /// ignoring ASCII case, a deliberate difference (docs/protocol.md#how-a-token-is-verified):
    /// edgeHub's `ValidateAudience` uses `string.Equals`, which is case-sensitive.
    pub fn verify(
        &self,
        accepted_hosts: &[&str],
        device: &str,
        module: Option<&str>,
        keys: &[&[u8]],
        now_unix: u64,
    ) -> Result<(), SasError> {
        if self.host.trim().is_empty()
            || !accepted_hosts
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
            let expected = BASE64.encode(hmac_sha256(key, data.as_bytes()));
            bool::from(expected.as_bytes().ct_eq(self.signature.as_bytes()))
        });
        if matched {
            Ok(())
        } else {
            Err(SasError::BadSignature)
        }
    }
}

/// `ExtractFieldValues`: the fields by `OrdinalIgnoreCase` name, `sr` raw, the others decoded.
fn extract_field_values(token: &str) -> Result<HashMap<String, Cow<'_, str>>, SasError> {
    // string.IsNullOrWhiteSpace(rawToken) throws before anything else.
    if token.chars().all(char::is_whitespace) {
        return Err(SasError::NotSas);
    }
    // string.Split() splits on each char.IsWhiteSpace character (the same set as Rust's
    // char::is_whitespace) and keeps empty words.
    let mut words = token.split(char::is_whitespace);
    let (Some(SHARED_ACCESS_SIGNATURE), Some(fields), None) =
        (words.next(), words.next(), words.next())
    else {
        return Err(SasError::NotSas);
    };
    let mut parsed = HashMap::new();
    for field in fields.split('&').filter(|f| !f.is_empty()) {
        let mut parts = field.split('=');
        let name = parts.next().unwrap_or_default();
        // fieldParts[1]: an IndexOutOfRangeException without '='; anything after a second '='
        // is dropped.
        let value = parts.next().ok_or(SasError::FieldWithoutValue)?;
        let folded = ordinal_fold(name);
        let value = if folded == ordinal_fold(AUDIENCE_FIELD) {
            // "We need to preserve the casing of the escape characters in the audience".
            Cow::Borrowed(value)
        } else {
            url_decode(value)
        };
        if parsed.contains_key(&folded) {
            return Err(SasError::Duplicate(field_label(&folded)));
        }
        parsed.insert(folded, value);
    }
    Ok(parsed)
}

/// The name of a known field for an error message; others are not repeated back.
fn field_label(folded: &str) -> &'static str {
    [
        AUDIENCE_FIELD,
        SIGNATURE_FIELD,
        EXPIRY_FIELD,
        KEY_NAME_FIELD,
    ]
    .into_iter()
    .find(|known| ordinal_fold(known) == folded)
    .unwrap_or("other than sr, sig, se and skn")
}

/// A name as .NET's `StringComparer.OrdinalIgnoreCase` compares it: each character upper-cased.
fn ordinal_fold(name: &str) -> String {
    name.chars().map(ordinal_upper).collect()
}

/// The per-character upper case of .NET's ordinal ignore-case comparison: Unicode's simple
/// upper-case mapping, except that U+0131 (dotless i) and U+017F (long s) keep their case, so
/// `ſr` is not `sr` (dotnet/runtime `pal_casing.c` `InitOrdinalCasingPage`, and GenUnicodeProp's
/// `CategoryCasingInfo` for the invariant globalization mode of edgeHub's Alpine image).
fn ordinal_upper(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_uppercase();
    }
    if matches!(c, '\u{131}' | '\u{17f}') {
        return c;
    }
    let mut upper = c.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(u), None) => u,
        // Rust gives the full mapping; where it expands, the simple mapping is the letter itself,
        // except for the Greek letters with ypogegrammeni, whose simple mapping is the letter with
        // prosgegrammeni.
        _ => {
            let code = u32::from(c);
            let simple = match code {
                0x1F80..=0x1F87 | 0x1F90..=0x1F97 | 0x1FA0..=0x1FA7 => code + 8,
                0x1FB3 | 0x1FC3 | 0x1FF3 => code + 9,
                _ => code,
            };
            char::from_u32(simple).unwrap_or(c)
        }
    }
}

/// `WebUtility.UrlDecode`: `+` is a space, `%XX` a byte, a `%` without two hex digits stays as it
/// is, and the bytes are read as UTF-8 with U+FFFD for each invalid sequence.
fn url_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['+', '%']) {
        return Cow::Borrowed(s);
    }
    let hex = |b: Option<&u8>| b.and_then(|&b| char::from(b).to_digit(16));
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(high), Some(low)) => {
                    // Two hex digits make one byte: the cast cannot truncate.
                    out.push((high * 16 + low) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// `se` as edgeHub reads it: `EpochTime + TimeSpan.FromSeconds(double.Parse(se))`, which must be a
/// `DateTime`, as must that time plus the skew (the constructor's `IsExpired`). Returns unix
/// seconds rounded to the nearest second (edgeHub keeps 100 ns ticks; 0 before 1970), or None
/// where edgeHub throws.
fn expiry_seconds(se: &str) -> Option<u64> {
    let seconds = dotnet_parse_double(se)?;
    // TimeSpan.FromSeconds: seconds times ticks per second, in double, outside long's range an
    // OverflowException, else truncated.
    let ticks = seconds * TICKS_PER_SECOND as f64;
    if !(ticks >= i64::MIN as f64 && ticks <= i64::MAX as f64) {
        return None;
    }
    // In range (the f64 bound is 2^63, which saturates to i64::MAX, also refused below).
    let ticks = ticks as i64;
    let skew = i64::try_from(MAX_CLOCK_SKEW.as_secs()).ok()? * TICKS_PER_SECOND;
    let earliest = -UNIX_EPOCH_TICKS;
    let latest = MAX_DATE_TIME_TICKS - UNIX_EPOCH_TICKS - skew;
    if !(earliest..=latest).contains(&ticks) {
        return None;
    }
    // To the nearest second: an integer `se` stays itself even where the product above is off by
    // a few ticks (beyond 2^53 ticks, from about the year 5600).
    let seconds = (ticks + TICKS_PER_SECOND / 2).div_euclid(TICKS_PER_SECOND);
    Some(u64::try_from(seconds).unwrap_or(0))
}

/// `double.Parse(s, CultureInfo.InvariantCulture)` (NumberStyles.Float | AllowThousands, .NET
/// Core 3.0+ parsing): spaces and `\t`..`\r` around, one leading `+`/`-`, digits with `,` groups
/// after the first digit and before the `.`, an optional `e`/`E` exponent (ignored when no digit
/// follows it, which then fails), then only NUL characters. The infinities and NaN, which .NET
/// parses by name or on overflow, are None: `TimeSpan.FromSeconds` throws on them.
fn dotnet_parse_double(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let is_white = |c: &u8| *c == b' ' || (b'\t'..=b'\r').contains(c);
    let skip_white = |mut p: usize| {
        while b.get(p).is_some_and(is_white) {
            p += 1;
        }
        p
    };
    let mut p = skip_white(0);
    let mut number = String::with_capacity(s.len() + 4);
    match b.get(p) {
        Some(b'+') => p += 1,
        Some(b'-') => {
            number.push('-');
            p += 1;
        }
        _ => {}
    }
    let (mut any_digit, mut decimal) = (false, false);
    number.push('0');
    while let Some(&c) = b.get(p) {
        match c {
            b'0'..=b'9' => {
                any_digit = true;
                number.push(char::from(c));
            }
            b'.' if !decimal => {
                decimal = true;
                number.push('.');
            }
            b',' if any_digit && !decimal => {}
            _ => break,
        }
        p += 1;
    }
    if !any_digit {
        return None;
    }
    if decimal {
        number.push('0');
    }
    if matches!(b.get(p), Some(b'e' | b'E')) {
        let mut q = p + 1;
        let sign = match b.get(q) {
            Some(b'+') => {
                q += 1;
                ""
            }
            Some(b'-') => {
                q += 1;
                "-"
            }
            _ => "",
        };
        let digits = b
            .get(q..)
            .map_or(0, |r| r.iter().take_while(|c| c.is_ascii_digit()).count());
        if digits > 0 {
            number.push('e');
            number.push_str(sign);
            number.push_str(&s[q..q + digits]);
            p = q + digits;
        }
    }
    let p = skip_white(p);
    // Number.TrailingZeros: what the parser did not take must be NUL characters only.
    if !b.get(p..).unwrap_or_default().iter().all(|&c| c == 0) {
        return None;
    }
    number.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// edgeHub's `ValidateAudience` split: `sr` decoded (the constructor's `Audience`), refused if
/// blank, trimmed and decoded again, then 3 or 5 `/`-separated parts.
fn parse_audience(raw: &str) -> Result<(String, String, Option<String>), SasError> {
    let once = url_decode(raw);
    let trimmed = once.trim();
    if trimmed.is_empty() {
        return Err(SasError::Audience(shorten(&once)));
    }
    let twice = url_decode(trimmed);
    let parts: Vec<&str> = twice.splitn(6, '/').collect();
    match parts.as_slice() {
        [host, _, device] => Ok(((*host).to_owned(), (*device).to_owned(), None)),
        [host, _, device, _, module] => Ok((
            (*host).to_owned(),
            (*device).to_owned(),
            Some((*module).to_owned()),
        )),
        _ => Err(SasError::Audience(shorten(&twice))),
    }
}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED_AUDIENCE) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
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
    const KEY: &[u8] = b"key";
    const HOSTS: [&str; 1] = ["h"];

    /// A token whose fields are given as written, signed over `sr` and `se` as edgeHub reads them.
    fn token_with(fields: &[(&str, &str)]) -> String {
        let sr = fields.iter().find(|(k, _)| k.eq_ignore_ascii_case("sr"));
        let se = fields.iter().find(|(k, _)| k.eq_ignore_ascii_case("se"));
        let sig = match (sr, se) {
            (Some((_, sr)), Some((_, se))) => {
                utf8_percent_encode(&sign(KEY, &format!("{sr}\n{}", url_decode(se))), COMPONENT)
                    .to_string()
            }
            _ => String::new(),
        };
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| {
                let v = if *v == "{sig}" { sig.as_str() } else { v };
                format!("{k}={v}")
            })
            .collect();
        format!("SharedAccessSignature {}", body.join("&"))
    }

    fn audience() -> String {
        module_audience("h", "d", "m")
    }

    fn verify(t: &SasToken) -> Result<(), SasError> {
        t.verify(&HOSTS, "d", Some("m"), &[KEY], 0)
    }

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
    fn field_names_are_case_insensitive_as_edgehub() {
        let plain = SasToken::parse(&module_token(KEY, "h", "d", "m", 1000)).unwrap();
        for (sr, sig, se) in [
            ("SR", "SIG", "SE"),
            ("Sr", "Sig", "Se"),
            ("sR", "sIG", "sE"),
        ] {
            let t = module_token(KEY, "h", "d", "m", 1000)
                .replacen(" sr=", &format!(" {sr}="), 1)
                .replacen("&sig=", &format!("&{sig}="), 1)
                .replacen("&se=", &format!("&{se}="), 1);
            let parsed = SasToken::parse(&t).unwrap();
            assert_eq!(parsed, plain, "{sr} {sig} {se}");
            assert_eq!(verify(&parsed), Ok(()));
        }
    }

    #[test]
    fn upper_case_sr_is_kept_raw_as_edgehub() {
        // edgeHub keeps the value of `SR` undecoded too: it compares the name ignoring case.
        let a = audience();
        let t = token_with(&[("SR", &a), ("sig", "{sig}"), ("se", "1000")]);
        let parsed = SasToken::parse(&t).unwrap();
        assert_eq!(parsed.audience_raw, a);
        assert_eq!(verify(&parsed), Ok(()));
    }

    #[test]
    fn field_names_use_dotnet_ordinal_ignore_case() {
        // Long s (U+017F) and dotless i (U+0131) upper-case to S and I in Unicode, but .NET's
        // ordinal comparison leaves them alone: `ſr` is an unknown field, not `sr`.
        let a = audience();
        let t = token_with(&[("ſr", &a), ("sig", "{sig}"), ("se", "1000")]);
        assert_eq!(SasToken::parse(&t), Err(SasError::Missing("sr")));
        let t = token_with(&[("sr", &a), ("sıg", "x"), ("se", "1000")]);
        assert_eq!(SasToken::parse(&t), Err(SasError::Missing("sig")));
        // Other letters compare by their simple upper case, so these two names are one field.
        let t = format!("{}&é=1&É=2", module_token(KEY, "h", "d", "m", 1000));
        assert_eq!(
            SasToken::parse(&t),
            Err(SasError::Duplicate("other than sr, sig, se and skn"))
        );
        assert_eq!(ordinal_upper('ß'), 'ß');
        assert_eq!(ordinal_upper('\u{1F80}'), '\u{1F88}');
        assert_eq!(ordinal_upper('\u{1FB3}'), '\u{1FBC}');
        assert_eq!(ordinal_upper('\u{01C5}'), '\u{01C4}');
    }

    #[test]
    fn duplicate_field_is_refused_as_edgehub() {
        let t = module_token(KEY, "h", "d", "m", 1000);
        let a = audience();
        for (extra, field) in [
            (format!("&sr={a}"), "sr"),
            (format!("&SR={a}"), "sr"),
            ("&sig=AAAA".to_owned(), "sig"),
            ("&Sig=AAAA".to_owned(), "sig"),
            ("&se=1000".to_owned(), "se"),
            ("&SE=2000".to_owned(), "se"),
            ("&skn=a&skn=a".to_owned(), "skn"),
            ("&skn=a&SKN=b".to_owned(), "skn"),
            ("&x=1&X=1".to_owned(), "other than sr, sig, se and skn"),
            ("&=1&=2".to_owned(), "other than sr, sig, se and skn"),
        ] {
            assert_eq!(
                SasToken::parse(&format!("{t}{extra}")),
                Err(SasError::Duplicate(field)),
                "{extra}"
            );
        }
    }

    #[test]
    fn three_words_are_refused() {
        let t = module_token(KEY, "h", "d", "m", 1000);
        let fields = t.strip_prefix("SharedAccessSignature ").unwrap();
        for bad in [
            format!("{t} x"),
            format!("{t} "),
            format!(" {t}"),
            format!("SharedAccessSignature  {fields}"),
            format!("SharedAccessSignature {fields}\n"),
            format!("SharedAccessSignature \t{fields}"),
            format!("SharedAccessSignature x {fields}"),
        ] {
            assert_eq!(SasToken::parse(&bad), Err(SasError::NotSas), "{bad:?}");
        }
    }

    #[test]
    fn one_word_is_refused_as_edgehub() {
        for bad in ["SharedAccessSignature", "sr=a&sig=b&se=1", "x"] {
            assert_eq!(SasToken::parse(bad), Err(SasError::NotSas), "{bad:?}");
        }
    }

    #[test]
    fn any_whitespace_character_separates_the_two_words_as_edgehub() {
        // string.Split() splits on every char.IsWhiteSpace character, not only on ' '.
        let t = module_token(KEY, "h", "d", "m", 1000);
        let fields = t.strip_prefix("SharedAccessSignature ").unwrap();
        for sep in [
            '\t', '\n', '\r', '\u{0B}', '\u{0C}', '\u{85}', '\u{A0}', '\u{2003}', '\u{3000}',
        ] {
            let parsed = SasToken::parse(&format!("SharedAccessSignature{sep}{fields}"));
            assert_eq!(verify(&parsed.unwrap()), Ok(()), "{sep:?}");
        }
        // Not whitespace for .NET either: the first word is then not SharedAccessSignature.
        for sep in ['\u{200B}', '\u{180E}', '\u{FEFF}'] {
            assert_eq!(
                SasToken::parse(&format!("SharedAccessSignature{sep}{fields}")),
                Err(SasError::NotSas),
                "{sep:?}"
            );
        }
    }

    #[test]
    fn leading_word_is_case_sensitive_as_edgehub() {
        let t = module_token(KEY, "h", "d", "m", 1000);
        let fields = t.strip_prefix("SharedAccessSignature ").unwrap();
        for word in [
            "sharedaccesssignature",
            "SHAREDACCESSSIGNATURE",
            "SharedAccessSignatur",
            "Bearer",
        ] {
            assert_eq!(
                SasToken::parse(&format!("{word} {fields}")),
                Err(SasError::NotSas),
                "{word}"
            );
        }
    }

    #[test]
    fn empty_or_blank_token_is_refused_as_edgehub() {
        for bad in ["", " ", "\t\n", "\u{3000}"] {
            assert_eq!(SasToken::parse(bad), Err(SasError::NotSas), "{bad:?}");
        }
    }

    #[test]
    fn empty_fields_are_skipped_as_edgehub() {
        let t = module_token(KEY, "h", "d", "m", 1000);
        let fields = t.strip_prefix("SharedAccessSignature ").unwrap();
        let padded = format!("SharedAccessSignature &&{}&&", fields.replace('&', "&&&"));
        assert_eq!(SasToken::parse(&padded), SasToken::parse(&t));
        assert_eq!(verify(&SasToken::parse(&padded).unwrap()), Ok(()));
    }

    #[test]
    fn field_without_equals_is_refused_as_edgehub() {
        let t = module_token(KEY, "h", "d", "m", 1000);
        for bad in [
            format!("{t}&flag"),
            format!("{t}&sr"),
            t.replacen("&se=", "&se", 1),
        ] {
            assert_eq!(
                SasToken::parse(&bad),
                Err(SasError::FieldWithoutValue),
                "{bad}"
            );
        }
    }

    #[test]
    fn value_ends_at_the_second_equals_as_edgehub() {
        // fieldParts[1]: "se=1000=x" is se "1000", and the signature still covers "1000".
        let t = module_token(KEY, "h", "d", "m", 1000).replacen("&se=1000", "&se=1000=x=y", 1);
        let parsed = SasToken::parse(&t).unwrap();
        assert_eq!(parsed.expiry_raw, "1000");
        assert_eq!(verify(&parsed), Ok(()));
        // A signature sent with bare '=' padding loses it, so it no longer matches.
        let t = module_token(KEY, "h", "d", "m", 1000).replace("%3D", "=");
        let parsed = SasToken::parse(&t).unwrap();
        assert!(!parsed.signature.ends_with('='));
        assert_eq!(verify(&parsed), Err(SasError::BadSignature));
    }

    #[test]
    fn unknown_fields_and_skn_are_ignored_as_edgehub() {
        let t = module_token(KEY, "h", "d", "m", 1000);
        let plain = SasToken::parse(&t).unwrap();
        for extra in [
            "&skn=primary",
            "&SKN=",
            "&foo=bar",
            "&=x",
            "&foo=%ZZ",
            "&sr2=x",
        ] {
            assert_eq!(
                SasToken::parse(&format!("{t}{extra}")).as_ref(),
                Ok(&plain),
                "{extra}"
            );
        }
    }

    #[test]
    fn missing_fields_are_named_in_edgehub_order() {
        // Parse looks for sig, then se, then sr.
        let a = audience();
        for (fields, missing) in [
            (vec![("sr", a.as_str()), ("se", "1")], "sig"),
            (vec![("se", "1")], "sig"),
            (vec![("sr", a.as_str()), ("sig", "x")], "se"),
            (vec![("sig", "x")], "se"),
            (vec![("sig", "x"), ("se", "1")], "sr"),
            (vec![("skn", "x")], "sig"),
        ] {
            assert_eq!(
                SasToken::parse(&token_with(&fields)),
                Err(SasError::Missing(missing)),
                "{fields:?}"
            );
        }
        assert_eq!(
            SasToken::parse("SharedAccessSignature &&&"),
            Err(SasError::Missing("sig"))
        );
    }

    #[test]
    fn empty_values_parse_and_fail_later_as_edgehub() {
        let a = audience();
        // An empty signature parses; it just never matches.
        let parsed = SasToken::parse(&token_with(&[("sr", &a), ("sig", ""), ("se", "1000")]));
        assert_eq!(verify(&parsed.unwrap()), Err(SasError::BadSignature));
        // An empty se is no number.
        assert_eq!(
            SasToken::parse(&token_with(&[("sr", &a), ("sig", "x"), ("se", "")])),
            Err(SasError::Malformed("se"))
        );
        // An empty (or blank) audience fails ValidateAudience's CheckNonWhiteSpace.
        for sr in ["", "%20", "+", "%09%20"] {
            assert!(matches!(
                SasToken::parse(&token_with(&[("sr", sr), ("sig", "x"), ("se", "1000")])),
                Err(SasError::Audience(_))
            ));
        }
    }

    #[test]
    fn values_are_url_decoded_except_sr_as_edgehub() {
        let a = audience();
        // se: %XX and '+' (a space, which double.Parse skips) are decoded before signing.
        for se in ["%31000", "+1000", "%2B1000", "1000%20", "1000+"] {
            let parsed =
                SasToken::parse(&token_with(&[("sr", &a), ("sig", "{sig}"), ("se", se)])).unwrap();
            assert_eq!(parsed.expiry, 1000, "{se}");
            assert_eq!(parsed.expiry_raw, url_decode(se), "{se}");
            assert_eq!(verify(&parsed), Ok(()), "{se}");
        }
        // sig: a bare '+' of base64 decodes to a space, so the signature no longer matches.
        let good = module_token(KEY, "h", "d", "m", 1002);
        assert!(good.contains("%2B"), "{good}");
        let parsed = SasToken::parse(&good.replace("%2B", "+")).unwrap();
        assert_eq!(verify(&parsed), Err(SasError::BadSignature));
        assert_eq!(verify(&SasToken::parse(&good).unwrap()), Ok(()));
        // Invalid escapes stay as they are, invalid UTF-8 becomes U+FFFD (WebUtility.UrlDecode).
        assert_eq!(url_decode("%zz%4"), "%zz%4");
        assert_eq!(url_decode("%41%c3%a9%FF+"), "Aé\u{FFFD} ");
        assert_eq!(url_decode("%E2%82%E2%82%AC"), "\u{FFFD}€");
    }

    #[test]
    fn se_is_read_as_a_dotnet_double_as_edgehub() {
        for (se, expiry) in [
            ("1000", 1000),
            ("1000.4", 1000),
            ("999.5", 1000),
            ("1e3", 1000),
            ("1E%2B3", 1000),
            ("10000e-1", 1000),
            (".5e4", 5000),
            ("1000.", 1000),
            ("1,000", 1000),
            ("1,,0,00", 1000),
            ("1,000,", 1000),
            ("001000", 1000),
            ("%201000%09", 1000),
            ("1000%00%00", 1000),
            ("1000%20%00", 1000),
            ("-5", 0),
            ("-0", 0),
            ("+-1", 0),
            ("0", 0),
            ("4102444800", 4_102_444_800),
        ] {
            let a = audience();
            let got = SasToken::parse(&token_with(&[("sr", &a), ("sig", "x"), ("se", se)]))
                .map(|t| t.expiry);
            assert_eq!(got, Ok(expiry), "{se}");
        }
        for se in [
            // A bare '+' is a space once decoded: "1E 3".
            "1E+3",
            "x",
            "0x10",
            "1e",
            "1e%2B",
            "1000e",
            "e5",
            ".",
            "-",
            "%2B",
            "--1",
            "%2B-1",
            "-%201",
            "-+1",
            "1%20000",
            "%00%201",
            "1000%00x",
            ",1",
            "1.2.3",
            "1.,5",
            "Infinity",
            "-Infinity",
            "NaN",
            "1e400",
            "1_000",
            "1000L",
            "١٠٠٠",
            "%EF%BC%91",
        ] {
            let a = audience();
            assert_eq!(
                SasToken::parse(&token_with(&[("sr", &a), ("sig", "x"), ("se", se)])),
                Err(SasError::Malformed("se")),
                "{se}"
            );
        }
    }

    #[test]
    fn se_must_be_a_dotnet_date_time_with_the_skew_as_edgehub() {
        let parse = |se: &str| {
            let a = audience();
            SasToken::parse(&token_with(&[("sr", &a), ("sig", "x"), ("se", se)])).map(|t| t.expiry)
        };
        // DateTime.MaxValue is 253402300799.9999999 s after the epoch; the constructor adds
        // 5 minutes of skew, which must fit too.
        assert_eq!(parse("253402300499"), Ok(253_402_300_499));
        assert_eq!(parse("253402300499.9999"), Ok(253_402_300_500));
        assert_eq!(parse("253402300500"), Err(SasError::Malformed("se")));
        assert_eq!(parse("1e12"), Err(SasError::Malformed("se")));
        // DateTime.MinValue is 62135596800 s before the epoch: expired, but a DateTime.
        assert_eq!(parse("-62135596800"), Ok(0));
        assert_eq!(parse("-62135596801"), Err(SasError::Malformed("se")));
        assert_eq!(parse("-1e300"), Err(SasError::Malformed("se")));
    }

    #[test]
    fn audience_is_decoded_twice_and_split_as_edgehub() {
        let parse =
            |sr: &str| SasToken::parse(&token_with(&[("sr", sr), ("sig", "x"), ("se", "1")]));
        let t = parse(&module_audience("h", "d", "m")).unwrap();
        assert_eq!(
            (t.host.as_str(), t.device.as_str(), t.module.as_deref()),
            ("h", "d", Some("m"))
        );
        // 3 parts: a device token.
        let t = parse("h%2Fdevices%2Fd").unwrap();
        assert_eq!(
            (t.host.as_str(), t.device.as_str(), t.module),
            ("h", "d", None)
        );
        // Ids are decoded by the second pass: a '%' in an id survives the round trip.
        let t = parse(&module_audience("h", "d%41", "m+x")).unwrap();
        assert_eq!(
            (t.device.as_str(), t.module.as_deref()),
            ("d%41", Some("m+x"))
        );
        // Unencoded sr works as well, and so does a '+' for a space.
        let t = parse("h/devices/d/modules/m+x").unwrap();
        assert_eq!(t.module.as_deref(), Some("m x"));
        // Whitespace around the once-decoded audience is trimmed.
        let t = parse("%20h%2Fdevices%2Fd%09").unwrap();
        assert_eq!((t.host.as_str(), t.device.as_str()), ("h", "d"));
        // edgeHub does not look at the 2nd and 4th parts.
        let t = parse("h/x/d/y/m").unwrap();
        assert_eq!(
            (t.host.as_str(), t.device.as_str(), t.module.as_deref()),
            ("h", "d", Some("m"))
        );
        for bad in [
            "h",
            "h/devices",
            "h/devices/d/modules",
            "h/devices/d/modules/m/x",
            "h%2Fdevices%2Fd%252Fx",
        ] {
            assert!(matches!(parse(bad), Err(SasError::Audience(_))), "{bad}");
        }
    }

    #[test]
    fn blank_host_is_refused_as_edgehub() {
        let t = SasToken::parse(&token_with(&[
            ("sr", "%2520/devices/d/modules/m"),
            ("sig", "x"),
            ("se", "1"),
        ]))
        .unwrap();
        assert_eq!(t.host, " ");
        assert!(matches!(
            t.verify(&[" "], "d", Some("m"), &[KEY], 0),
            Err(SasError::WrongHost(_))
        ));
    }

    #[test]
    fn errors_and_debug_never_show_the_signature() {
        let secret = "c2VjcmV0LXNpZ25hdHVyZS12YWx1ZQ";
        let a = audience();
        for t in [
            token_with(&[("sr", &a), ("sig", secret), ("se", "x")]),
            token_with(&[("sr", &a), ("sig", secret), ("sig", secret), ("se", "1")]),
            token_with(&[(secret, secret), (secret, secret)]),
            format!("SharedAccessSignature sig={secret}&{secret}"),
            format!("SharedAccessSignature {secret} x"),
            token_with(&[("sr", "h"), ("sig", secret), ("se", "1")]),
            token_with(&[("sig", secret), ("se", "1")]),
        ] {
            let e = SasToken::parse(&t).unwrap_err();
            assert!(!e.to_string().contains(secret), "{e}");
            assert!(!format!("{e:?}").contains(secret), "{e:?}");
        }
        let parsed =
            SasToken::parse(&token_with(&[("sr", &a), ("sig", secret), ("se", "1000")])).unwrap();
        assert!(!format!("{parsed:?}").contains(secret));
        let e = verify(&parsed).unwrap_err();
        assert!(!e.to_string().contains(secret), "{e}");
    }

    #[test]
    fn long_audiences_are_shortened_in_errors() {
        let sr = "a".repeat(10_000);
        let e =
            SasToken::parse(&token_with(&[("sr", &sr), ("sig", "x"), ("se", "1")])).unwrap_err();
        assert!(e.to_string().len() < 300, "{e}");
    }

    #[test]
    fn rejects_malformed_tokens() {
        for bad in [
            "",
            "Bearer x",
            "SharedAccessSignature",
            "SharedAccessSignature sr=a&se=1",
            "SharedAccessSignature sr=h%2Fx&sig=AA%3D%3D&se=1",
            "SharedAccessSignature sr=h%2Fdevices%2Fd&sig=AA%3D%3D&se=x",
        ] {
            assert!(SasToken::parse(bad).is_err(), "{bad}");
        }
    }
}
