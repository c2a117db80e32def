//! Property-based tests of the wire formats the hub and the modules share: the property-bag codec,
//! topics and usernames, and SAS tokens. Random and adversarial inputs never panic; what is built
//! parses back to what it was built from; what is accepted can be re-encoded.

use edge::bag::{PropertyBag, COMPONENT};
use edge::sas::{self, SasError, SasToken};
use edge::topic::{self, Topic};
use percent_encoding::utf8_percent_encode;
use proptest::prelude::*;
use proptest::test_runner::Config;

fn config(cases: u32) -> Config {
    Config {
        cases,
        // Failures are reported with their minimal input; no regression files in the tree.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Strings made of pieces that matter to the parsers, joined, plus arbitrary text.
fn soup(pieces: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(pieces).prop_map(str::to_owned),
            1 => any::<String>(),
            1 => "[ -~]{0,4}",
        ],
        0..max,
    )
    .prop_map(|parts| parts.concat())
}

// ---------------------------------------------------------------------------------------------
// Property bags

const BAG_PIECES: &[&str] = &[
    "%", "%2", "%24", "%25", "%2F", "%26", "%3D", "%zz", "%FF", "%C3", "%A9", "%E2%82", "%AC",
    "%00", "&", "&&", "=", "==", "/", "//", "$.on", "$.cid", "$.mid", "k", "v", " ", "+", "é",
    "😀", "\u{0}",
];

/// Keys and values with everything the codec must escape, and plain ones.
fn text(min: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(
            prop_oneof![
                prop::sample::select(
                    &[
                        "$", "&", "=", "/", "%", " ", "+", "#", ".", "?", "é", "日本", "😀",
                        "\u{0}", "%25", "%2F"
                    ][..]
                )
                .prop_map(str::to_owned),
                "[a-zA-Z0-9_~-]{1,3}",
                any::<char>().prop_map(String::from),
            ],
            min..8,
        )
        .prop_map(|p| p.concat()),
        any::<String>().prop_filter("length", move |s| s.len() >= min),
    ]
}

fn bag() -> impl Strategy<Value = PropertyBag> {
    prop::collection::vec((text(1), text(0)), 0..8).prop_map(|pairs| pairs.into_iter().collect())
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn bag_decode_never_panics(s in any::<String>()) {
        let _ = PropertyBag::decode(&s);
    }

    /// Whatever the decoder accepts, encoding it again gives a bag that decodes to the same.
    #[test]
    fn bag_accepted_input_reencodes(s in soup(BAG_PIECES, 16)) {
        if let Ok(bag) = PropertyBag::decode(&s) {
            prop_assert_eq!(PropertyBag::decode(&bag.encode()), Ok(bag));
        }
    }

    #[test]
    fn bag_round_trips(bag in bag()) {
        let encoded = bag.encode();
        // Nothing a topic level or an MQTT wildcard could be confused with survives encoding.
        prop_assert!(
            encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%&=".contains(&b)),
            "{encoded}"
        );
        prop_assert_eq!(PropertyBag::decode(&encoded), Ok(bag.clone()));
        // The C# SDK appends a '/'.
        prop_assert_eq!(PropertyBag::decode(&format!("{encoded}/")), Ok(bag));
    }
}

// ---------------------------------------------------------------------------------------------
// Topics and usernames

const TOPIC_PIECES: &[&str] = &[
    "devices/",
    "devices",
    "modules/",
    "modules",
    "inputs/",
    "inputs",
    "messages/events",
    "messages/events/",
    "messages/",
    "events",
    "$iothub/",
    "methods/POST/",
    "methods/res/",
    "twin/GET/",
    "twin/PATCH/properties/reported/",
    "twin/res/",
    "/?",
    "?$rid=",
    "$rid=",
    "&$version=",
    "/",
    "//",
    "d",
    "m",
    "in",
    "200",
    "99999",
    "-1",
    "%24.on=o",
    "&",
    "=",
    "?",
    "#",
    "+",
    " ",
    "é",
    "api-version=",
    "DeviceClientType=",
];

/// A device, module or input id: anything but '/', not empty.
fn id() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9._-]{1,12}", "[^/]{1,12}"]
}

/// IoT Hub's id characters but '%' (a username's ids are URL-decoded, as edgeHub does).
fn hub_id() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9.*?!(),:=@$'_-]{1,24}"
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn topic_parse_never_panics(s in prop_oneof![any::<String>(), soup(TOPIC_PIECES, 12)]) {
        let _ = topic::parse(&s);
        let _ = topic::parse_username(&s);
    }

    #[test]
    fn input_topic_round_trips(d in id(), m in id(), input in id(), bag in bag()) {
        let t = topic::input(&d, &m, &input, &bag);
        let encoded = bag.encode();
        prop_assert_eq!(
            topic::parse(&t),
            Topic::Input {
                device: d.as_str(),
                module: m.as_str(),
                input: input.as_str(),
                bag: encoded.as_str(),
            }
        );
        prop_assert_eq!(PropertyBag::decode(&encoded), Ok(bag.clone()));
    }

    #[test]
    fn output_topic_round_trips(d in id(), m in id(), bag in bag()) {
        let t = topic::output(&d, &m, &bag);
        let Topic::Events { device, module, bag: got } = topic::parse(&t) else {
            return Err(TestCaseError::fail(format!("{t:?} is not an events topic")));
        };
        prop_assert_eq!((device, module), (d.as_str(), Some(m.as_str())));
        prop_assert_eq!(PropertyBag::decode(got), Ok(bag));
    }

    #[test]
    fn username_round_trips(host in "[a-z0-9.-]{1,20}", d in hub_id(), m in hub_id(), client in any::<String>()) {
        let u = topic::username(&host, &d, &m, &client);
        let id = topic::parse_username(&u).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(id.device, d);
        prop_assert_eq!(id.module, Some(m));
        prop_assert_eq!(id.client_type, Some(client));
    }
}

// ---------------------------------------------------------------------------------------------
// SAS tokens

const SAS_PIECES: &[&str] = &[
    "SharedAccessSignature",
    "SharedAccessSignature ",
    "sharedaccesssignature ",
    " ",
    "\t",
    "\u{a0}",
    "sr=",
    "SR=",
    "sig=",
    "SIG=",
    "se=",
    "SE=",
    "skn=",
    "&",
    "&&",
    "=",
    "==",
    "%",
    "%2F",
    "%252F",
    "%3D",
    "%2B",
    "+",
    "%20",
    "%00",
    "%FF",
    "h",
    "/devices/",
    "%2Fdevices%2F",
    "%2Fmodules%2F",
    "1",
    "1e9",
    "-1",
    "1,000",
    ".",
    "e",
    "Infinity",
    "NaN",
    "253402300500",
    "AAAA",
    "é",
    "ſ",
    "ı",
];

/// A generated token's inputs: hub, ids, key and expiry.
fn generated() -> impl Strategy<Value = (String, String, String, Vec<u8>, u64)> {
    (
        "[a-z0-9][a-z0-9.-]{0,30}",
        "[^/]{0,16}",
        "[^/]{0,16}",
        prop::collection::vec(any::<u8>(), 0..64),
        0..=253_402_300_499u64,
    )
}

/// The three fields of a token, `(name, value)`, as `format_token` writes them.
fn fields_of(token: &str) -> Vec<(String, String)> {
    token
        .strip_prefix("SharedAccessSignature ")
        .unwrap_or_default()
        .split('&')
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn join(fields: &[(String, String)]) -> String {
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("SharedAccessSignature {}", body.join("&"))
}

/// Each letter upper-cased where the mask says so.
fn recase(name: &str, mask: u8) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask & (1 << i) != 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn sas_parse_never_panics(s in prop_oneof![any::<String>(), soup(SAS_PIECES, 20)]) {
        if let Ok(t) = SasToken::parse(&s) {
            let _ = t.verify(&["h"], "d", Some("m"), &[b"k"], 0);
        }
    }

    /// `SharedAccessSignature <fields>` is one word, a whitespace character and another: a
    /// second whitespace character anywhere makes three words, which edgeHub refuses.
    #[test]
    fn sas_more_than_two_words_are_refused(
        (hub, d, m, key, expiry) in generated(),
        at in any::<prop::sample::Index>(),
        ws in prop::sample::select(&[' ', '\t', '\n', '\r', '\u{a0}', '\u{2028}', '\u{3000}'][..]),
    ) {
        let mut t = sas::module_token(&key, &hub, &d, &m, expiry);
        let positions: Vec<usize> = t.char_indices().map(|(i, _)| i).chain([t.len()]).collect();
        t.insert(positions[at.index(positions.len())], ws);
        prop_assert_eq!(SasToken::parse(&t), Err(SasError::NotSas));
    }

    #[test]
    fn sas_generated_token_parses_back((hub, d, m, key, expiry) in generated()) {
        let t = sas::module_token(&key, &hub, &d, &m, expiry);
        let parsed = SasToken::parse(&t).map_err(|e| TestCaseError::fail(format!("{t}: {e}")))?;
        prop_assert_eq!(&parsed.host, &hub);
        prop_assert_eq!(&parsed.device, &d);
        prop_assert_eq!(parsed.module.as_ref(), Some(&m));
        prop_assert_eq!(parsed.expiry, expiry);
        prop_assert_eq!(&parsed.expiry_raw, &expiry.to_string());
        prop_assert_eq!(&parsed.audience_raw, &sas::module_audience(&hub, &d, &m));
        prop_assert_eq!(parsed.verify(&[&hub], &d, Some(&m), &[&key], expiry), Ok(()));
        prop_assert_eq!(
            parsed.verify(&[&hub], &d, Some(&m), &[b"not the key"], expiry),
            Err(SasError::BadSignature)
        );
    }

    /// Field names in any case, and in any order, are the same token.
    #[test]
    fn sas_case_and_order_of_fields_do_not_matter(
        (hub, d, m, key, expiry) in generated(),
        masks in any::<[u8; 3]>(),
        order in Just(vec![0usize, 1, 2]).prop_shuffle(),
    ) {
        let t = sas::module_token(&key, &hub, &d, &m, expiry);
        let plain = SasToken::parse(&t).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let fields = fields_of(&t);
        let varied: Vec<(String, String)> = order
            .iter()
            .map(|&i| (recase(&fields[i].0, masks[i]), fields[i].1.clone()))
            .collect();
        prop_assert_eq!(SasToken::parse(&join(&varied)), Ok(plain));
    }

    /// A field given twice, in any case and with any value, is refused.
    #[test]
    fn sas_duplicate_fields_are_refused(
        (hub, d, m, key, expiry) in generated(),
        which in 0usize..4,
        mask in any::<u8>(),
        value in "[^&\\s]{0,12}",
    ) {
        let mut t = sas::module_token(&key, &hub, &d, &m, expiry);
        let name = ["sr", "sig", "se", "skn"][which];
        if name == "skn" {
            t.push_str("&skn=primary");
        }
        let again = format!("&{}={value}", recase(name, mask));
        prop_assert_eq!(SasToken::parse(&format!("{t}{again}")), Err(SasError::Duplicate(name)));
    }

    /// Fields edgeHub does not know are ignored, wherever they are.
    #[test]
    fn sas_unknown_fields_are_ignored(
        (hub, d, m, key, expiry) in generated(),
        name in "[^&=\\s]{0,8}",
        value in "[^&\\s]{0,12}",
        at in 0usize..4,
    ) {
        // (Rust's upper case also maps ſ and ı, which .NET's ordinal comparison does not: such
        // names are left out rather than modelled.)
        let known = ["SR", "SIG", "SE"];
        prop_assume!(!known.contains(&name.to_uppercase().as_str()));
        let t = sas::module_token(&key, &hub, &d, &m, expiry);
        let plain = SasToken::parse(&t).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut fields = fields_of(&t);
        fields.insert(at.min(fields.len()), (name, value));
        prop_assert_eq!(SasToken::parse(&join(&fields)), Ok(plain));
    }

    /// Integer expiries read as themselves; what double.Parse reads, within DateTime, is kept.
    #[test]
    fn sas_integer_expiry_is_read_exactly(
        se in prop_oneof![0..=253_402_300_499i64, -62_135_596_800..0i64, any::<i64>()],
        sig in "[A-Za-z0-9%]{0,44}",
    ) {
        let sr = utf8_percent_encode("h/devices/d", COMPONENT).to_string();
        let t = format!("SharedAccessSignature sr={sr}&sig={sig}&se={se}");
        let got = SasToken::parse(&t).map(|t| t.expiry);
        if (-62_135_596_800..=253_402_300_499).contains(&se) {
            prop_assert_eq!(got, Ok(u64::try_from(se).unwrap_or(0)));
        } else {
            prop_assert_eq!(got, Err(SasError::Malformed("se")));
        }
    }
}
