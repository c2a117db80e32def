//! Property-based tests of the route grammar (`hub::routes`): arbitrary text, near-valid routes
//! with random WHERE clauses, deep nesting and huge inputs never panic (a refusal is fine and
//! names the route); generated valid routes parse, keep their source and sink, and route exactly
//! as a reference model of edgeHub's three-valued logic says.

use hub::routes::{MessageProperties, RouteTable, Sink};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt::Write as _;

fn config(cases: u32) -> Config {
    Config {
        cases,
        // Failures are reported with their minimal input; no regression files in the tree.
        failure_persistence: None,
        ..Config::default()
    }
}

#[derive(Debug, Clone, Default)]
struct Props {
    system: HashMap<String, String>,
    app: HashMap<String, String>,
}

impl MessageProperties for Props {
    fn system(&self, name: &str) -> Option<&str> {
        self.system.get(name).map(String::as_str)
    }
    fn application(&self, name: &str) -> Option<&str> {
        self.app.get(name).map(String::as_str)
    }
}

/// A deployment manifest whose `$edgeHub` has `routes` under `schemaVersion`.
fn manifest(schema: &str, routes: serde_json::Map<String, Value>) -> Value {
    json!({"modulesContent": {"$edgeHub": {"properties.desired": {
        "schemaVersion": schema, "routes": Value::Object(routes)
    }}}})
}

/// Parses, and checks what every outcome must satisfy: a refusal names the route, an accepted
/// route can be evaluated.
fn check(name: &str, text: &str, props: &Props) -> Result<bool, TestCaseError> {
    match RouteTable::parse(name, text) {
        Ok(route) => {
            let _ = route.matches("/messages/modules/x/outputs/y", props);
            let _ = route.matches("", props);
            Ok(true)
        }
        Err(e) => {
            let message = e.to_string();
            prop_assert!(message.contains(&format!("{name:?}")), "{message}");
            Ok(false)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Generated valid routes and a reference model

const KEYWORDS: &[&str] = &[
    "select",
    "from",
    "where",
    "into",
    "and",
    "or",
    "not",
    "true",
    "false",
    "null",
    "undefined",
];

/// A name the lexer reads as one identifier: a letter first (not `e`, which starts a real
/// literal like `e5`), no keyword.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(&["a", "b", "temp", "x_1", "Out-2"][..]).prop_map(str::to_owned),
        "[a-df-zA-DF-Z][a-zA-Z0-9_-]{0,10}",
    ]
    .prop_filter("keyword", |n| {
        !KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(n))
    })
}

fn system_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(
            &[
                "connectionModuleId",
                "connectionDeviceId",
                "messageId",
                "correlationId",
                "x"
            ][..]
        )
        .prop_map(str::to_owned),
        "[a-zA-Z][a-zA-Z0-9]{0,10}",
    ]
    .prop_filter("body", |n| !n.eq_ignore_ascii_case("body"))
}

/// String values: a small pool, so comparisons sometimes hold, and arbitrary text without `\`
/// (edgeHub unescapes `\uXXXX` before `\\`, so not every backslash round-trips) or `*` (a `*/`
/// would close a comment opened by a `/*` source).
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(&["v", "w", "", "é 😀", "it's", "say \"hi\""][..]).prop_map(str::to_owned),
        1 => "[^\\\\*]{0,12}",
    ]
}

#[derive(Debug, Clone)]
enum Operand {
    App(String),
    Sys { name: String, escaped: bool },
    Str { value: String, quote: char },
    Num(i64),
}

#[derive(Debug, Clone)]
enum Cond {
    Lit(bool),
    Cmp {
        left: Operand,
        op: &'static str,
        right: Operand,
    },
    IsDefined(Operand),
    Not(Box<Cond>),
    And(Vec<Cond>),
    Or(Vec<Cond>),
}

fn string_operand() -> impl Strategy<Value = Operand> {
    prop_oneof![
        name().prop_map(Operand::App),
        (system_name(), any::<bool>()).prop_map(|(name, escaped)| Operand::Sys { name, escaped }),
        (value(), prop::sample::select(&['\'', '"'][..]))
            .prop_map(|(value, quote)| Operand::Str { value, quote }),
    ]
}

fn leaf() -> impl Strategy<Value = Cond> {
    let op = prop::sample::select(&["=", "!=", "<>"][..]);
    prop_oneof![
        any::<bool>().prop_map(Cond::Lit),
        (string_operand(), op.clone(), string_operand()).prop_map(|(left, op, right)| Cond::Cmp {
            left,
            op,
            right
        }),
        (-3i64..3, op, -3i64..3).prop_map(|(l, op, r)| Cond::Cmp {
            left: Operand::Num(l),
            op,
            right: Operand::Num(r)
        }),
        string_operand().prop_map(Cond::IsDefined),
    ]
}

fn cond() -> impl Strategy<Value = Cond> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|c| Cond::Not(Box::new(c))),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Cond::And),
            prop::collection::vec(inner, 2..4).prop_map(Cond::Or),
        ]
    })
}

/// Writes a keyword in one of its cases.
fn keyword(word: &str, case: u8) -> String {
    match case % 3 {
        0 => word.to_ascii_uppercase(),
        1 => word.to_ascii_lowercase(),
        _ => {
            let mut c = word.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase())
                .unwrap_or_default()
        }
    }
}

fn render_operand(o: &Operand, out: &mut String) {
    match o {
        Operand::App(n) => out.push_str(n),
        Operand::Sys {
            name,
            escaped: false,
        } => {
            let _ = write!(out, "${name}");
        }
        Operand::Sys {
            name,
            escaped: true,
        } => {
            let _ = write!(out, "{{${name}}}");
        }
        Operand::Str { value, quote } => {
            out.push(*quote);
            for c in value.chars() {
                if c == *quote {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push(*quote);
        }
        Operand::Num(n) => {
            let _ = write!(out, "{n}");
        }
    }
}

fn render(c: &Cond, case: u8, out: &mut String) {
    let group = |c: &Cond, out: &mut String| {
        if matches!(c, Cond::And(_) | Cond::Or(_)) {
            out.push('(');
            render(c, case, out);
            out.push(')');
        } else {
            render(c, case, out);
        }
    };
    match c {
        Cond::Lit(b) => out.push_str(if *b { "true" } else { "false" }),
        Cond::Cmp { left, op, right } => {
            render_operand(left, out);
            let _ = write!(out, " {op} ");
            render_operand(right, out);
        }
        Cond::IsDefined(o) => {
            out.push_str(["IS_DEFINED(", "is_defined(", "Is_Defined( "][usize::from(case % 3)]);
            render_operand(o, out);
            out.push(')');
        }
        Cond::Not(inner) => {
            let _ = write!(out, "{} (", keyword("not", case));
            render(inner, case, out);
            out.push(')');
        }
        Cond::And(parts) | Cond::Or(parts) => {
            let op = keyword(
                if matches!(c, Cond::And(_)) {
                    "and"
                } else {
                    "or"
                },
                case,
            );
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    let _ = write!(out, " {op}{}", if case >= 128 { "\n" } else { " " });
                }
                group(part, out);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum V<'a> {
    Str(&'a str),
    Num(i64),
    Bool(bool),
    Undefined,
}

fn eval_operand<'a>(o: &'a Operand, props: &'a Props) -> V<'a> {
    match o {
        Operand::App(n) => props.app.get(n).map_or(V::Undefined, |v| V::Str(v)),
        Operand::Sys { name, escaped } => {
            // An application property literally named `$x` wins, unless written `{$x}`.
            let app = (!escaped)
                .then(|| props.app.get(&format!("${name}")))
                .flatten();
            app.or_else(|| props.system.get(name))
                .map_or(V::Undefined, |v| V::Str(v))
        }
        Operand::Str { value, .. } => V::Str(value),
        Operand::Num(n) => V::Num(*n),
    }
}

/// edgeHub's three-valued logic: undefined operands make a comparison undefined, false AND
/// anything is false, true OR anything is true, NOT undefined is undefined.
fn eval(c: &Cond, props: &Props) -> V<'static> {
    match c {
        Cond::Lit(b) => V::Bool(*b),
        Cond::Cmp { left, op, right } => {
            match (eval_operand(left, props), eval_operand(right, props)) {
                (V::Undefined, _) | (_, V::Undefined) => V::Undefined,
                (l, r) => V::Bool((l == r) == (*op == "=")),
            }
        }
        Cond::IsDefined(o) => V::Bool(eval_operand(o, props) != V::Undefined),
        Cond::Not(inner) => match eval(inner, props) {
            V::Bool(b) => V::Bool(!b),
            _ => V::Undefined,
        },
        Cond::And(parts) => {
            let values: Vec<V> = parts.iter().map(|p| eval(p, props)).collect();
            if values.contains(&V::Bool(false)) {
                V::Bool(false)
            } else if values.iter().all(|v| *v == V::Bool(true)) {
                V::Bool(true)
            } else {
                V::Undefined
            }
        }
        Cond::Or(parts) => {
            let values: Vec<V> = parts.iter().map(|p| eval(p, props)).collect();
            if values.contains(&V::Bool(true)) {
                V::Bool(true)
            } else if values.iter().all(|v| *v == V::Bool(false)) {
                V::Bool(false)
            } else {
                V::Undefined
            }
        }
    }
}

fn props() -> impl Strategy<Value = Props> {
    let pairs = |names: BoxedStrategy<String>| prop::collection::hash_map(names, value(), 0..5);
    (
        pairs(system_name().boxed()),
        pairs(prop_oneof![name(), system_name().prop_map(|n| format!("${n}"))].boxed()),
    )
        .prop_map(|(system, app)| Props { system, app })
}

#[derive(Debug, Clone)]
struct Generated {
    text: String,
    source: String,
    message_source: String,
    cond: Option<Cond>,
    sink: Sink,
}

fn generated_route() -> impl Strategy<Value = Generated> {
    let source = prop_oneof![
        (name(), name()).prop_map(|(m, o)| (
            format!("/messages/modules/{m}/outputs/{o}"),
            format!("/messages/modules/{m}/outputs/{o}")
        )),
        (name(), name()).prop_map(|(m, o)| (
            format!("/messages/modules/{m}/*"),
            format!("/messages/modules/{m}/outputs/{o}")
        )),
        name().prop_map(|o| (
            "/messages/*".to_owned(),
            format!("/messages/modules/x/outputs/{o}")
        )),
        Just(("/*".to_owned(), "/messages/modules/x/outputs/y".to_owned())),
    ];
    let sink = prop_oneof![
        Just(Sink::Upstream),
        (name(), name()).prop_map(|(module, input)| Sink::Module { module, input }),
    ];
    (
        source,
        prop::option::of(cond()),
        sink,
        any::<u8>(),
        any::<bool>(),
        prop::sample::select(&[" ", "  ", "\t", "\n", " \r\n "][..]),
    )
        .prop_map(
            |((source, message_source), cond, sink, case, select, space)| {
                let mut text = String::new();
                if select {
                    let _ = write!(text, "{}{space}*{space}", keyword("select", case));
                }
                let _ = write!(text, "{}{space}{source}{space}", keyword("from", case));
                if let Some(c) = &cond {
                    let _ = write!(text, "{}{space}", keyword("where", case));
                    render(c, case, &mut text);
                    text.push_str(space);
                }
                let _ = write!(text, "{}{space}", keyword("into", case));
                match &sink {
                    Sink::Upstream => text
                        .push_str(["$upstream", "$UPSTREAM", "$Upstream"][usize::from(case % 3)]),
                    Sink::Module { module, input } => {
                        let _ = write!(
                            text,
                            "{}(\"/{}/{module}/{}/{input}\")",
                            ["BrokeredEndpoint", "brokeredendpoint", "BROKEREDENDPOINT"]
                                [usize::from(case % 3)],
                            keyword("modules", case / 3),
                            keyword("inputs", case / 3),
                        );
                    }
                }
                Generated {
                    text,
                    source,
                    message_source,
                    cond,
                    sink,
                }
            },
        )
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn generated_routes_parse_and_route_as_the_model(g in generated_route(), props in props()) {
        let route = RouteTable::parse("gen", &g.text)
            .map_err(|e| TestCaseError::fail(format!("{:?} should parse: {e}", g.text)))?;
        prop_assert_eq!(route.source.as_str(), g.source.as_str());
        prop_assert_eq!(&route.sink, &g.sink);
        prop_assert_eq!(route.condition.is_some(), g.cond.is_some());
        let expected = g.cond.as_ref().is_none_or(|c| eval(c, &props) == V::Bool(true));
        prop_assert_eq!(
            route.matches(&g.message_source, &props),
            expected,
            "{:?} with {:?}",
            g.text,
            props
        );
        // Another module's output never matches a module-specific source.
        if g.source.starts_with("/messages/modules/") {
            prop_assert!(!route.matches("/messages/modules/other-module-z/outputs/o", &props));
        }
    }

    /// Every generated route in a manifest, in either form, is read back.
    #[test]
    fn generated_manifests_load(
        routes in prop::collection::vec((name(), generated_route(), prop::option::of((0u64..=9, 0u64..100_000))), 1..6),
    ) {
        let mut map = serde_json::Map::new();
        for (n, g, object) in &routes {
            let spec = match object {
                None => json!(g.text),
                Some((priority, ttl)) => json!({"route": g.text, "priority": priority, "timeToLiveSecs": ttl}),
            };
            map.insert(n.clone(), spec);
        }
        let manifest = manifest("1.1", map.clone());
        let table = RouteTable::from_manifest(&manifest)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(table.routes().len(), map.len());
    }
}

// ---------------------------------------------------------------------------------------------
// Arbitrary and adversarial text

const PIECES: &[&str] = &[
    "FROM",
    "from",
    "INTO",
    "into",
    "WHERE",
    "where",
    "SELECT",
    "*",
    "/",
    "/messages",
    "/modules",
    "/outputs",
    "/*",
    "*/",
    "/* c */",
    "x",
    "y",
    "$upstream",
    "BrokeredEndpoint",
    "(",
    ")",
    "((",
    "))",
    "\"",
    "'",
    "\"/modules/a/inputs/b\"",
    "'v'",
    "\"v\"",
    "'\\''",
    "'\\u0041'",
    "'\\uD83D'",
    "AND",
    "OR",
    "NOT",
    "and",
    "IS_DEFINED",
    "is_defined(",
    "contains(",
    "=",
    "!=",
    "<>",
    "<",
    ">=",
    "||",
    "??",
    "+",
    "-",
    "%",
    ",",
    "$body.x",
    "$body[0]",
    "{",
    "}",
    "{$messageId}",
    "$connectionModuleId",
    "$",
    "1",
    "-1",
    "0x1F",
    "0xFFFFFFFFFFFFFFFFF",
    "1.5e3",
    "1e",
    "e5",
    ".",
    "true",
    "false",
    "null",
    "undefined",
    "\\",
    "é",
    "😀",
    "İ",
    "[",
    "]",
    "@",
    "!",
    "a!",
    "?",
    " ",
    "\t",
    "\n",
    "\r",
];

fn soup(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            6 => prop::sample::select(PIECES).prop_map(str::to_owned),
            1 => any::<String>(),
        ],
        0..max,
    )
    .prop_map(|parts| parts.join(" "))
}

/// Opening and closing pieces of nested WHERE clauses.
const NESTINGS: &[(&str, &str)] = &[
    ("(", ")"),
    ("NOT ", ""),
    ("NOT (", ")"),
    ("IS_DEFINED(", ")"),
    ("{", "}"),
    ("((", "))"),
    ("NOT NOT ", ""),
    ("(a = 'x' AND ", ")"),
    ("(a = 'x' OR (", "))"),
    ("a = (", ")"),
    ("IS_DEFINED(IS_DEFINED(", "))"),
];

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>(), name in any::<String>(), props in props()) {
        check(&name, &text, &props)?;
    }

    #[test]
    fn route_shaped_soup_never_panics(text in soup(40), props in props()) {
        check("soup", &text, &props)?;
    }

    #[test]
    fn near_valid_routes_never_panic(
        x in name(), y in name(), z in name(), w in name(),
        fragment in soup(24),
        props in props(),
    ) {
        let text = format!(
            "FROM /messages/modules/{x}/outputs/{y} WHERE {fragment} INTO BrokeredEndpoint(\"/modules/{z}/inputs/{w}\")"
        );
        check("near", &text, &props)?;
    }

    /// Nesting far past any limit is refused or parsed, never a stack overflow.
    #[test]
    fn deep_nesting_never_overflows(
        which in 0..NESTINGS.len(),
        depth in prop_oneof![0usize..100, 100usize..20_000],
        closed in any::<bool>(),
        props in props(),
    ) {
        let (open, close) = NESTINGS[which];
        let mut text = String::from("FROM /messages/* WHERE ");
        text.push_str(&open.repeat(depth));
        text.push_str("a = 'x'");
        if closed {
            text.push_str(&close.repeat(depth));
        }
        text.push_str(" INTO $upstream");
        let parsed = check("deep", &text, &props)?;
        if depth > 200 && closed && !close.is_empty() {
            prop_assert!(!parsed, "{} levels of {open:?} were accepted", depth);
        }
    }

}

proptest! {
    // Each case parses a few hundred kilobytes: fewer cases.
    #![proptest_config(config(48))]

    /// Long flat chains and huge names, strings, paths and gaps: parsed, in linear time.
    #[test]
    fn huge_routes_parse(
        len in 1usize..200_000,
        chain in 1usize..3_000,
        items in 1usize..3_000,
        props in props(),
    ) {
        let long_name = format!("p{}", "q".repeat(len));
        let long_value = "v".repeat(len);
        for text in [
            format!("FROM /messages/* WHERE {long_name} = '{long_value}' INTO $upstream"),
            format!("FROM /messages/* WHERE {} INTO $upstream", vec!["a = 'v'"; chain].join(" AND ")),
            format!("FROM /messages/* WHERE {} INTO $upstream", vec!["(a = 'v')"; chain].join(" OR ")),
            format!("FROM {} INTO $upstream", "/m".repeat(items)),
            format!("FROM{}/messages/*{}INTO $upstream", " ".repeat(len), "\n".repeat(len)),
            format!("FROM /messages/modules/a /*{}*/ INTO $upstream", "x".repeat(len)),
        ] {
            let route = RouteTable::parse("huge", &text)
                .map_err(|e| TestCaseError::fail(format!("{e}")))?;
            let _ = route.matches("/messages/modules/a/outputs/b", &props);
        }
        // Unterminated strings and comments of the same size are refused, quickly.
        for text in [
            format!("FROM /messages/* WHERE a = '{long_value} INTO $upstream"),
            format!("FROM /messages/* WHERE a = 'v' /*{long_value} INTO $upstream"),
            format!("FROM /messages/* WHERE {}a = 'v' INTO $upstream", "(".repeat(len.min(50_000))),
        ] {
            let refused = !check("huge", &text, &props)?;
            prop_assert!(refused);
        }
    }

}

proptest! {
    #![proptest_config(config(256))]

    /// Manifests with arbitrary route names and entries (strings, objects, other JSON).
    #[test]
    fn manifests_never_panic(
        entries in prop::collection::vec(
            (
                any::<String>(),
                prop_oneof![
                    soup(12).prop_map(Value::String),
                    generated_route().prop_map(|g| Value::String(g.text)),
                    (soup(8), any::<i64>(), any::<i64>()).prop_map(|(r, p, t)| json!({"route": r, "priority": p, "timeToLiveSecs": t})),
                    (generated_route(), -2i64..12, any::<bool>()).prop_map(|(g, p, f)| {
                        let ttl = if f { json!(1.5) } else { json!(-1) };
                        json!({"route": g.text, "priority": p, "timeToLiveSecs": ttl})
                    }),
                    Just(json!(null)),
                    Just(json!([1, 2])),
                    any::<f64>().prop_map(|f| json!(f)),
                ],
            ),
            0..6,
        ),
        schema in prop::sample::select(&["1.0", "1.1", "1.2", ""][..]),
    ) {
        let manifest = manifest(schema, entries.into_iter().collect());
        let _ = RouteTable::from_manifest(&manifest).map(|t| t.routes().len());
    }
}
