//! The module's flags: schedules, the watchdog, sweeps and sizes.
use super::*;
use std::time::Instant;

#[test]
fn rate_zero_is_the_closed_loop_and_bad_values_are_refused() {
    let args = |extra: &[&str]| {
        let mut argv = vec!["consumer"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    };
    assert_eq!(args(&[]).schedule().unwrap(), Schedule::Closed);
    assert_eq!(
        args(&["--rate", "50"]).schedule().unwrap(),
        Schedule::Open {
            rate: 50.0,
            max_in_flight: 100
        }
    );
    assert_eq!(
        args(&["--rate", "0.5", "--max-in-flight", "3"])
            .schedule()
            .unwrap(),
        Schedule::Open {
            rate: 0.5,
            max_in_flight: 3
        }
    );
    for bad in [
        &["--rate=-1"][..],
        &["--rate", "NaN"],
        &["--rate", "1e9"],
        &["--rate", "5", "--max-in-flight", "0"],
    ] {
        assert!(args(bad).schedule().is_err(), "{bad:?}");
    }
}

#[test]
fn the_watchdog_must_outlast_an_exchange_and_healthcheck_needs_nothing_else() {
    let args = |extra: &[&str]| {
        let mut argv = vec!["consumer"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    };
    let default = args(&[]);
    assert_eq!(default.watchdog_timeout, Duration::from_secs(60));
    assert!(default.check_watchdog().is_ok());
    assert!(args(&["--watchdog-timeout", "0"]).check_watchdog().is_ok());
    let e = args(&["--watchdog-timeout", "30s"])
        .check_watchdog()
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("WATCHDOG_TIMEOUT (30s) must be longer than EXCHANGE_TIMEOUT (30s)"),
        "{e}"
    );
    assert!(
        args(&["--watchdog-timeout", "3s", "--exchange-timeout", "1s"])
            .check_watchdog()
            .is_ok()
    );

    // `consumer healthcheck`, as the image's HEALTHCHECK runs it: no other argument.
    assert_eq!(args(&["healthcheck"]).command, Some(Command::Healthcheck));
    assert_eq!(default.command, None);
    // The freeze switch is a test's: parsed, never shown.
    let frozen = args(&["--test-freeze-after", "2s", "--test-freeze-kind", "method"])
        .config()
        .unwrap();
    let t0 = Instant::now();
    assert_eq!(
        frozen.freeze_at(Kind::Method, t0),
        Some(t0 + Duration::from_secs(2))
    );
    assert_eq!(frozen.freeze_at(Kind::Message, t0), None);
    assert_eq!(default.config().unwrap().freeze_at(Kind::Method, t0), None);
    let help = <Args as clap::CommandFactory>::command()
        .render_long_help()
        .to_string();
    assert!(
        help.contains("WATCHDOG_TIMEOUT") && help.contains("healthcheck"),
        "{help}"
    );
    assert!(!help.contains("freeze"), "{help}");
}

#[test]
fn sweeps_and_sizes_are_checked_at_start_up_with_examples() {
    let args = |extra: &[&str]| {
        let mut argv = vec!["consumer"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv)
    };
    let ok = args(&["--sweep", "rate=50,100", "--step", "3s", "--warmup", "1s"]).unwrap();
    let plan = ok.plan().unwrap().unwrap();
    assert_eq!(plan.steps.len(), 2);
    assert_eq!(
        ok.schedule().unwrap(),
        Schedule::Open {
            rate: 50.0,
            max_in_flight: 100
        }
    );
    let payload = args(&["--rate", "50", "--sweep", "payload=0,120KiB"]).unwrap();
    assert_eq!(
        payload.plan().unwrap().unwrap().sizes(),
        vec![0, 120 * 1024]
    );
    assert!(args(&[]).unwrap().plan().unwrap().is_none());

    let refused = |extra: &[&str]| match args(extra) {
        Err(e) => e.to_string(),
        Ok(a) => a
            .plan()
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string()),
    };
    for (extra, why) in [
        (&["--payload-bytes", "129KiB"][..], "128 KiB payload limit"),
        (
            &["--rate", "50", "--sweep", "payload=0,129KiB"],
            "128 KiB payload limit",
        ),
        (&["--payload-bytes", "16KB"], "unknown unit"),
        (
            &["--sweep", "rate=50", "--step", "2s", "--warmup", "5s"],
            "STEP (2s) is shorter than WARMUP (5s)",
        ),
        (&["--sweep", "rate=50", "--rate", "10"], "both set the rate"),
        (&["--sweep", "rate=1,x"], "rate=50,100,200,400"),
    ] {
        let e = refused(extra);
        assert!(e.contains(why), "{extra:?}: {e}");
    }
    // Messages alone go up to 255 KiB.
    let e = refused(&["--payload-bytes", "200KiB"]);
    assert!(e.contains("EnableMethod=false"), "{e}");
    assert!(
        args(&["--payload-bytes", "200KiB", "--enable-method", "false"])
            .unwrap()
            .plan()
            .is_ok()
    );
}
