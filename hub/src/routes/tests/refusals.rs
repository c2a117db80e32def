//! Refused routes name the route and the offending part; no input panics or overflows.

use super::*;

#[test]
fn refuses_unsupported_where_parts_naming_the_route() {
    assert_refused(
        "FROM /messages/* WHERE contains(a, 'x') INTO $upstream",
        &["unsupported in WHERE: function contains (supported: =, !=, <>, AND, OR, NOT, IS_DEFINED, parentheses)"],
    );
    assert_refused(
        "FROM /* WHERE UPPER(a) = 'X' INTO $upstream",
        &["function UPPER"],
    );
    assert_refused(
        "FROM /* WHERE frobnicate(a) INTO $upstream",
        &["function frobnicate", "not an edgeHub built-in"],
    );
    assert_refused(
        "FROM /* WHERE twin_change_includes(x) INTO $upstream",
        &["function twin_change_includes"],
    );
    assert_refused(
        "FROM /* WHERE $body.temperature = '5' INTO $upstream",
        &["body query $body.temperature"],
    );
    assert_refused(
        "FROM /* WHERE {$body.x} = '5' INTO $upstream",
        &["body query $body.x"],
    );
    assert_refused(
        "FROM /* WHERE $BODY.x = '5' INTO $upstream",
        &["body query $BODY.x"],
    );
    assert_refused(
        "FROM /* WHERE $body[0] = '5' INTO $upstream",
        &["body query $body[0]"],
    );
    assert_refused("FROM /* WHERE $x[0] = '5' INTO $upstream", &["$x[0]"]);
    assert_refused("FROM /* WHERE a[0] = '5' INTO $upstream", &["a[0]"]);
    for op in ["<", "<=", ">", ">=", "+", "-", "*", "/", "%", "||", "??"] {
        assert_refused(
            &format!("FROM /* WHERE a {op} 'b' INTO $upstream"),
            &[&format!("unsupported in WHERE: operator {op} ")],
        );
    }
    assert_refused(
        "FROM /* WHERE a = 'x' AND b < 'y' INTO $upstream",
        &["operator <"],
    );
    assert_refused("FROM /* WHERE a = null INTO $upstream", &["literal null"]);
    assert_refused(
        "FROM /* WHERE a = undefined INTO $upstream",
        &["literal undefined"],
    );
    assert_refused("FROM /* WHERE - a = 'b' INTO $upstream", &["unary minus"]);
    assert_refused(
        "FROM /* WHERE IS_DEFINED() INTO $upstream",
        &["one argument to IS_DEFINED"],
    );
    assert_refused(
        "FROM /* WHERE IS_DEFINED(a, b) INTO $upstream",
        &["exactly one argument"],
    );
}

#[test]
fn refuses_type_errors_edgehub_refuses() {
    // Properties are strings in edgeHub: comparing one with a number does not compile there.
    assert_refused(
        "FROM /* WHERE temperature = 5 INTO $upstream",
        &["temperature", "a string with a number", "temperature = '5'"],
    );
    assert_refused(
        "FROM /* WHERE 5 != $messageId INTO $upstream",
        &["a number with a string", "'5' != $messageId"],
    );
    assert_refused(
        "FROM /* WHERE flag = true INTO $upstream",
        &["a string with a condition"],
    );
    assert_refused(
        "FROM /* WHERE a AND b = 'x' INTO $upstream",
        &["AND needs a condition", "'a' is a string"],
    );
    assert_refused(
        "FROM /* WHERE b = 'x' OR 5 INTO $upstream",
        &["OR needs a condition", "'5' is a number"],
    );
    // NOT binds tighter than '=' in edgeHub, so this is (NOT a) = 'x': refused, with the fix.
    assert_refused(
        "FROM /* WHERE NOT a = 'x' INTO $upstream",
        &["NOT needs a condition", "NOT (a = ...)"],
    );
    // A bare property is not a condition (edgeHub would compile it and never route).
    assert_refused(
        "FROM /* WHERE a INTO $upstream",
        &["the condition 'a' is a string"],
    );
    assert_refused("FROM /* WHERE 'x' INTO $upstream", &["is a string"]);
}

#[test]
fn refuses_malformed_routes_naming_the_route() {
    assert_refused("", &["the route is empty"]);
    assert_refused("  \n ", &["the route is empty"]);
    assert_refused("/messages/* INTO $upstream", &["expected FROM", "'/'"]);
    assert_refused("SELECT a FROM /* INTO $upstream", &["'*' after SELECT"]);
    assert_refused(
        "SELECT* FROM /* INTO $upstream",
        &["expected FROM", "'SELECT*'"],
    );
    assert_refused("FROM INTO $upstream", &["source path starting with '/'"]);
    assert_refused(
        "FROM messages INTO $upstream",
        &["source path starting with '/'"],
    );
    assert_refused("FROM /messages/ INTO $upstream", &["path item", "'INTO'"]);
    assert_refused("FROM / INTO $upstream", &["path item"]);
    assert_refused(
        "FROM /messages/modules/not/* INTO $upstream",
        &["'not'", "keyword"],
    );
    assert_refused(
        "FROM /messages/modules/$edgeHub INTO $upstream",
        &["path item", "'$edgeHub'"],
    );
    assert_refused(
        "FROM /messages/*",
        &["'/', WHERE or INTO", "end of the route"],
    );
    assert_refused(
        "FROM /messages/* $upstream",
        &["'/', WHERE or INTO", "'$upstream'"],
    );
    assert_refused("FROM /messages/* INTO", &["a sink after INTO"]);
    assert_refused("FROM /* WHERE INTO $upstream", &["a condition after WHERE"]);
    assert_refused(
        "FROM /* WHERE a = 'x' b = 'y' INTO $upstream",
        &["AND, OR or INTO", "'b'"],
    );
    assert_refused(
        "FROM /* WHERE a = 'x INTO $upstream",
        &["closed by its quote", "closing quote"],
    );
    assert_refused(
        "FROM /* WHERE a = \"x INTO $upstream",
        &["closed by its quote"],
    );
    assert_refused(
        "FROM /* WHERE a = 'bad \\n escape' INTO $upstream",
        &["closed by its quote"],
    );
    assert_refused(
        "FROM /* WHERE (a = 'x' INTO $upstream",
        &["')' to close the '(' at column 15"],
    );
    assert_refused(
        "FROM /* WHERE a = 'x') INTO $upstream",
        &["AND, OR or INTO", "')'"],
    );
    assert_refused("FROM /* WHERE () INTO $upstream", &["an operand"]);
    assert_refused("FROM /* WHERE a = @ INTO $upstream", &["an operand", "'@'"]);
    assert_refused(
        "FROM /* WHERE {a} = 'x' INTO $upstream",
        &["$system property inside '{ }'"],
    );
    assert_refused(
        "FROM /* WHERE a!='x' INTO $upstream",
        &["a space before '!='"],
    );
    assert_refused(
        "FROM /* INTO $upstream WHERE a = 'x'",
        &["end of the route after the sink", "'WHERE'"],
    );
    assert_refused(
        "FROM /* INTO $upstream $upstream",
        &["end of the route after the sink"],
    );
    assert_refused(
        "FROM /* WHERE a = '\\uD800' INTO $upstream",
        &["\\u escapes"],
    );
}

#[test]
fn refuses_bad_sinks_naming_the_route_and_sink() {
    let cases = [
        (
            "FROM /* INTO Nowhere(\"x\")",
            &[
                "unsupported sink 'Nowhere(\"x\")'",
                "Nowhere is not a function endpoint",
            ][..],
        ),
        (
            "FROM /* INTO $downstream",
            &["'$downstream'", "only one is $upstream"],
        ),
        ("FROM /* INTO upstream", &["'upstream'", "not a sink"]),
        (
            "FROM /* INTO BrokeredEndpoint(\"/modules/x\")",
            &["'/modules/x' is not /modules/<module>/inputs/<input>"],
        ),
        (
            "FROM /* INTO BrokeredEndpoint(\"/devices/x/inputs/y\")",
            &["'/devices/x/inputs/y'"],
        ),
        (
            "FROM /* INTO BrokeredEndpoint(\"/modules/x/outputs/y\")",
            &["'/modules/x/outputs/y'"],
        ),
        (
            "FROM /* INTO BrokeredEndpoint(\"/modules//inputs/y\")",
            &["'/modules//inputs/y'"],
        ),
        (
            "FROM /* INTO BrokeredEndpoint(\"/modules/a b/inputs/y\")",
            &["'/modules/a b/inputs/y'"],
        ),
        (
            "FROM /* INTO BrokeredEndpoint(\"/modules/x/inputs/y/z\")",
            &["'/modules/x/inputs/y/z'"],
        ),
        (
            "FROM /* INTO BrokeredEndpoint(/modules/x/inputs/y)",
            &["takes one quoted address"],
        ),
        (
            "FROM /* INTO BrokeredEndpoint(\"/modules/x/inputs/y\"",
            &["')' after the BrokeredEndpoint address"],
        ),
        (
            "FROM /* INTO BrokeredEndpoint(\"/modules/x/inputs/y)",
            &["takes one quoted address"],
        ),
        (
            "FROM /* INTO BrokeredEndpoint",
            &["'BrokeredEndpoint'", "not a sink"],
        ),
    ];
    for (text, parts) in cases {
        assert_refused(text, parts);
    }
}

#[test]
fn deep_nesting_is_refused_without_overflowing() {
    let deep = format!(
        "FROM /* WHERE {}a = 'x'{} INTO $upstream",
        "(".repeat(5000),
        ")".repeat(5000)
    );
    assert_refused(&deep, &["nesting deeper than 64"]);
    let nots = format!("FROM /* WHERE {}true INTO $upstream", "NOT ".repeat(5000));
    assert_refused(&nots, &["nesting deeper than 64"]);
    let eqs = format!(
        "FROM /* WHERE true{} INTO $upstream",
        " = true".repeat(5000)
    );
    assert_refused(&eqs, &["nesting deeper than 64"]);
    // Long flat AND/OR chains are fine.
    let chain = ["a = '1'"; 5000].join(" AND ");
    assert!(when(&chain, &Props::new(&[], &[("a", "1")])));
    let chain = ["a = '2'"; 5000].join(" OR ");
    assert!(!when(&chain, &Props::new(&[], &[("a", "1")])));
}

#[test]
fn no_input_panics() {
    const PIECES: &[&str] = &[
        "FROM",
        "from",
        "INTO",
        "into",
        "WHERE",
        "SELECT",
        "*",
        "/",
        "/messages",
        "/modules",
        "/outputs",
        "/*",
        "*/",
        "consumer",
        "x",
        "$upstream",
        "$UPSTREAM",
        "BrokeredEndpoint",
        "(",
        ")",
        "\"",
        "'",
        "\"/modules/a/inputs/b\"",
        "'/modules/a/inputs/b'",
        "'v'",
        "\"v\"",
        "AND",
        "OR",
        "NOT",
        "IS_DEFINED",
        "contains",
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
        "$body[",
        "{",
        "}",
        "$connectionModuleId",
        "{$messageId}",
        "1",
        "-1",
        "0x1F",
        "0x",
        "1.5e3",
        "1e",
        ".",
        "true",
        "false",
        "null",
        "undefined",
        "\\",
        "\\u00",
        "\\uD83D",
        "\\'",
        "é",
        "😀",
        "İ",
        "[",
        "]",
        "@",
        "!",
        "?",
        "$",
        " ",
        " ",
        " ",
        "\t",
        "\n",
        "a!",
        "5s",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state % bound as u64).unwrap_or(0)
    };
    let props = Props::new(&[("connectionModuleId", "consumer")], &[("x", "v")]);
    let check = |text: &str| {
        if let Ok(r) = RouteTable::parse("fuzz", text) {
            let _ = r.matches(CONSUMER_OUT, &props);
            let _ = r.matches("", &props);
        } else if let Err(e) = RouteTable::parse("fuzz", text) {
            assert!(e.to_string().contains("\"fuzz\""), "{e}");
        }
    };
    for _ in 0..800 {
        let mut text = String::new();
        for _ in 0..=next(24) {
            text.push_str(PIECES[next(PIECES.len())]);
            if next(3) > 0 {
                text.push(' ');
            }
        }
        check(&text);
    }
    // Every prefix of well-formed routes.
    for full in [
        "SELECT * FROM /messages/modules/consumer/outputs/* WHERE NOT IS_DEFINED($connectionModuleId) OR (x = 'v' AND {$messageId} <> \"m\\u0041\") INTO BrokeredEndpoint(\"/modules/p/inputs/i\")",
        "FROM /messages/* /* c */ WHERE x = 'it\\'s é 😀' INTO $upstream",
    ] {
        for (i, _) in full.char_indices() {
            check(&full[..i]);
            check(&full[i..]);
        }
    }
}
