//! Payload sizes of a workload: the consumer's request (`PAYLOAD_BYTES`) and the producer's reply
//! (`REPLY_BYTES`) carry that many extra bytes in a `padding` field, which the seed's modules
//! ignore (its producer never reads the message body or the method payload, its consumer reads
//! only `UtcTime`). Sizes are written `0`, `512`, `512B`, `1KiB`, `16KiB`, `1MiB`; limits are
//! IoT Hub's and edgeHub's: 128 KiB of direct-method payload, 256 KiB of message (body and
//! properties).

/// The JSON field that carries the padding, in a message body, a method payload and a reply.
pub const PADDING_FIELD: &str = "padding";

/// A direct method's payload limit (request and response), as IoT Hub and edgeHub enforce it.
pub const METHOD_PAYLOAD_LIMIT: usize = 128 * 1024;
/// A message's limit, body and properties together (IoT Hub's and edgeHub's).
pub const MESSAGE_LIMIT: usize = crate::topic::MAX_MESSAGE_SIZE;
/// Kept free of padding under each limit: the JSON framing (`{"padding":""}`), the trace context
/// (a `traceparent` and a `tracestate` of up to 512 characters) and a message's properties.
pub const RESERVE: usize = 1024;

/// The largest padding a direct method's payload (or its response) can carry.
pub const MAX_METHOD_PADDING: usize = METHOD_PAYLOAD_LIMIT - RESERVE;
/// The largest padding a message (or its reply) can carry.
pub const MAX_MESSAGE_PADDING: usize = MESSAGE_LIMIT - RESERVE;

/// Why a size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("size {0:?} is empty or not a whole number of bytes with a unit: write it like 0, 512, 16KiB or 1MiB")]
    Malformed(String),
    #[error("size {given:?} has an unknown unit {unit:?}: use B, KiB or MiB (powers of 1024), for example 16KiB")]
    UnknownUnit { given: String, unit: String },
    #[error("size {0:?} is too large: write it like 120KiB")]
    TooLarge(String),
    #[error("{what} of {} is over the {limit_name}: at most {} of padding ({} is kept for the JSON framing, trace context and properties), for example 120KiB", format_size(*.size), format_size(*.max), format_size(RESERVE))]
    OverLimit {
        what: &'static str,
        size: usize,
        max: usize,
        limit_name: &'static str,
    },
}

/// Parses `0`, `512`, `512B`, `16KiB`, `1MiB` (units case-insensitive, spaces allowed before the
/// unit). Decimal units (`KB`, `k`) are refused: they are ambiguous between 1000 and 1024.
pub fn parse_size(text: &str) -> Result<usize, SizeError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(SizeError::Malformed(text.to_owned()));
    }
    let unit = unit.trim();
    let scale: usize = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1024,
        "mib" => 1024 * 1024,
        _ if unit.chars().all(|c| c.is_ascii_alphabetic()) => {
            return Err(SizeError::UnknownUnit {
                given: text.to_owned(),
                unit: unit.to_owned(),
            })
        }
        _ => return Err(SizeError::Malformed(text.to_owned())),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| SizeError::TooLarge(text.to_owned()))
}

/// The shortest exact form: `0`, `1000B`, `16KiB`, `1MiB`.
pub fn format_size(bytes: usize) -> String {
    match bytes {
        0 => "0".to_owned(),
        b if b % (1024 * 1024) == 0 => format!("{}MiB", b / (1024 * 1024)),
        b if b % 1024 == 0 => format!("{}KiB", b / 1024),
        b => format!("{b}B"),
    }
}

/// Refuses a padding of `size` bytes that a direct method cannot carry (`what` names the flag).
pub fn check_method(what: &'static str, size: usize) -> Result<(), SizeError> {
    check(
        what,
        size,
        MAX_METHOD_PADDING,
        "direct method's 128 KiB payload limit",
    )
}

/// Refuses a padding of `size` bytes that a message cannot carry.
pub fn check_message(what: &'static str, size: usize) -> Result<(), SizeError> {
    check(
        what,
        size,
        MAX_MESSAGE_PADDING,
        "message's 256 KiB limit (body and properties)",
    )
}

fn check(
    what: &'static str,
    size: usize,
    max: usize,
    limit_name: &'static str,
) -> Result<(), SizeError> {
    if size > max {
        return Err(SizeError::OverLimit {
            what,
            size,
            max,
            limit_name,
        });
    }
    Ok(())
}

/// `size` bytes of padding: printable ASCII that JSON carries unescaped.
pub fn padding(size: usize) -> String {
    const PATTERN: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..size)
        .map(|i| char::from(PATTERN[i % PATTERN.len()]))
        .collect()
}

/// A message body with `size` bytes of padding: `{"padding":"…"}`, or empty (the seed's body)
/// for 0.
pub fn message_body(size: usize) -> Vec<u8> {
    if size == 0 {
        return Vec::new();
    }
    serde_json::json!({ PADDING_FIELD: padding(size) })
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units_and_refuse_the_rest() {
        for (text, bytes) in [
            ("0", 0),
            ("512", 512),
            ("512B", 512),
            ("1KiB", 1024),
            ("16kib", 16 * 1024),
            ("120 KiB", 120 * 1024),
            ("1MiB", 1024 * 1024),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        let e = parse_size("16KB").unwrap_err();
        assert!(matches!(e, SizeError::UnknownUnit { .. }), "{e}");
        assert!(
            e.to_string().contains("\"KB\"") && e.to_string().contains("16KiB"),
            "{e}"
        );
        for bad in ["", "KiB", "-1", "1.5KiB", "1 2"] {
            assert!(
                matches!(parse_size(bad), Err(SizeError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_size("99999999999999999999"),
            Err(SizeError::TooLarge(_))
        ));
        for n in [0, 1000, 1024, 16 * 1024, 1024 * 1024] {
            assert_eq!(parse_size(&format_size(n)), Ok(n));
        }
    }

    #[test]
    fn limits_are_named_and_120_kib_fits_both_kinds() {
        assert!(check_method("PAYLOAD_BYTES", 120 * 1024).is_ok());
        assert!(check_message("PAYLOAD_BYTES", 120 * 1024).is_ok());
        let e = check_method("PAYLOAD_BYTES", 129 * 1024)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("PAYLOAD_BYTES of 129KiB") && e.contains("128 KiB payload limit"),
            "{e}"
        );
        assert!(check_message("PAYLOAD_BYTES", 200 * 1024).is_ok());
        let e = check_message("PAYLOAD_BYTES", 256 * 1024)
            .unwrap_err()
            .to_string();
        assert!(e.contains("256 KiB limit"), "{e}");
    }

    #[test]
    fn padding_is_exact_and_bodies_stay_seed_compatible() {
        assert_eq!(padding(40).len(), 40);
        assert!(message_body(0).is_empty());
        let body: serde_json::Value = serde_json::from_slice(&message_body(1000)).unwrap();
        assert_eq!(body[PADDING_FIELD].as_str().map(str::len), Some(1000));
    }
}
