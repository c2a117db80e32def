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
mod tests;
