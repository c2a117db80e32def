//! WHERE evaluation: properties, operators, undefined values and literals.

use super::*;

#[test]
fn where_on_application_and_system_properties() {
    let r = route("FROM /messages/* WHERE $connectionModuleId = 'consumer' AND kind = 'time' INTO BrokeredEndpoint(\"/modules/producer/inputs/in\")");
    let good = Props::new(&[("connectionModuleId", "consumer")], &[("kind", "time")]);
    let other_module = Props::new(&[("connectionModuleId", "producer")], &[("kind", "time")]);
    let other_kind = Props::new(&[("connectionModuleId", "consumer")], &[("kind", "date")]);
    assert!(r.matches(CONSUMER_OUT, &good));
    assert!(!r.matches(CONSUMER_OUT, &other_module));
    assert!(!r.matches(CONSUMER_OUT, &other_kind));
    assert!(!r.matches("/twinChangeNotifications", &good));
    assert_eq!(
        r.condition.as_ref().map(Condition::text),
        Some("$connectionModuleId = 'consumer' AND kind = 'time'")
    );

    let sys = Props::new(
        &[
            ("connectionDeviceId", "dev1"),
            ("messageId", "m1"),
            ("correlationId", "c1"),
            ("contentType", "application/json"),
            ("contentEncoding", "utf-8"),
            ("outputName", "GetTimeMessage"),
        ],
        &[("my-prop.v2", "x y")],
    );
    for cond in [
        "$connectionDeviceId = 'dev1'",
        "$messageId <> 'm2'",
        "$correlationId != 'c2'",
        "$contentType = 'application/json'",
        "{$contentEncoding} = 'utf-8'",
        "$outputName = 'GetTimeMessage'",
        "my-prop.v2 = 'x y'",
        "'dev1' = $connectionDeviceId",
        "\"dev1\" = $connectionDeviceId",
        "$connectionDeviceId = $connectionDeviceId",
    ] {
        assert!(when(cond, &sys), "{cond}");
    }
}

#[test]
fn dollar_names_prefer_an_application_property_unless_escaped() {
    let props = Props::new(&[("thing", "system")], &[("$thing", "app")]);
    assert!(when("$thing = 'app'", &props));
    assert!(when("{$thing} = 'system'", &props));
    let props = Props::new(&[("thing", "system")], &[]);
    assert!(when("$thing = 'system'", &props));
}

#[test]
fn boolean_operators_and_precedence() {
    let p = |app: &[(&str, &str)]| Props::new(&[("connectionModuleId", "consumer")], app);
    let a = p(&[("a", "1")]);
    let ab = p(&[("a", "1"), ("b", "2")]);
    let c = p(&[("c", "3")]);
    assert!(when("a = '1' AND b = '2'", &ab));
    assert!(!when("a = '1' AND b = '2'", &a));
    assert!(when("a = '1' OR b = '2'", &a));
    assert!(when("NOT (a = '2')", &a));
    assert!(when("NOT NOT (a = '1')", &a));
    // AND binds tighter than OR.
    assert!(when("a = '1' OR b = '9' AND c = '3'", &a));
    assert!(!when("(a = '1' OR b = '9') AND c = '3'", &a));
    assert!(when(
        "(a = '1' OR b = '9') AND c = '3'",
        &p(&[("a", "1"), ("c", "3")])
    ));
    assert!(when("c = '3' or a = '1' and b = '2'", &c));
    assert!(when("IS_DEFINED(a)", &a));
    assert!(!when("is_defined(b)", &a));
    assert!(when(
        "NOT IS_DEFINED(b) AND Is_Defined($connectionModuleId)",
        &a
    ));
    assert!(!when("NOT IS_DEFINED($connectionModuleId)", &a));
    assert!(when("IS_DEFINED((a = '1'))", &a));
    assert!(!when("IS_DEFINED(b = '1')", &a));
    assert!(when("((((a = '1'))))", &a));
    assert!(when("(a = '1') = true", &a));
    assert!(when("true", &a));
    assert!(!when("false", &a));
    assert!(when("a = '1' AND a = '1' AND a = '1' AND a = '1'", &a));
}

#[test]
fn undefined_properties_never_route() {
    let none = Props::default();
    assert!(!when("missing = 'x'", &none));
    assert!(!when("missing != 'x'", &none));
    assert!(!when("missing <> 'x'", &none));
    assert!(!when("NOT (missing = 'x')", &none));
    assert!(!when("missing = missing", &none));
    assert!(!when("$connectionModuleId = 'consumer'", &none));
    // Kleene logic: undefined OR true is true, undefined AND false is false (not undefined).
    assert!(when("missing = 'x' OR true", &none));
    assert!(!when("missing = 'x' AND true", &none));
    assert!(when("NOT (missing = 'x' AND false)", &none));
    assert!(!when("NOT (missing = 'x' OR false)", &none));
    assert!(when("NOT IS_DEFINED(missing)", &none));
    let a = Props::new(&[], &[("a", "y")]);
    assert!(when("IS_DEFINED(a) AND a != 'x'", &a));
}

#[test]
fn literals_numbers_and_escapes() {
    let none = Props::default();
    assert!(when("1 = 1", &none));
    assert!(when("1.0 = 1", &none));
    assert!(when("-5 = -5.0", &none));
    assert!(when("0x10 = 16", &none));
    assert!(when("1e3 = 1000", &none));
    assert!(when(".5 = 0.5", &none));
    assert!(when("2 != 3", &none));
    assert!(when("true = true", &none));
    assert!(when("true <> false", &none));
    let app = Props::new(
        &[],
        &[
            ("q", "it's"),
            ("d", "say \"hi\""),
            ("u", "A😀"),
            ("b", "back\\slash"),
            ("e", ""),
        ],
    );
    assert!(when("q = 'it\\'s'", &app));
    assert!(when("d = \"say \\\"hi\\\"\"", &app));
    assert!(when("u = '\\u0041\\uD83D\\uDE00'", &app));
    assert!(when("b = 'back\\\\slash'", &app));
    assert!(when("e = ''", &app));
    // edgeHub unescapes \uXXXX before \\, so '\\u0041' becomes '\A'.
    assert!(when("'\\\\u0041' = '\\\\A'", &app));
    assert!(!when("q = 'its'", &app));
    // Names follow edgeHub's lexer: `5s` and `a.b-c` are property names, not numbers.
    let odd = Props::new(&[], &[("x", "5s"), ("5s", "v")]);
    assert!(when("5s = 'v'", &odd));
    assert!(when("x = '5s'", &odd));
}
