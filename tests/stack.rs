//! The bundled stack, validated statically where no server can run here (no Docker engine, no
//! Grafana): the compose file against the compose-spec schema, prometheus.yml with promtool, the
//! Dockerfiles with BuildKit's parser and hadolint, the dashboard's structure, its `${datasource}`
//! variable and `__inputs` (importable into any Grafana), its Runtime row and PromQL (issue 5,
//! "Done when" 1 and 3; issue 18). The dashboard's queries run against the real Prometheus in
//! tests/observability.rs and tests/fleet.rs.

#[test]
fn compose_prometheus_dashboard_and_dockerfiles_validate() {
    let venv_bin = test_support::repo().join(".venv/bin");
    let path = format!(
        "{}:{}",
        venv_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new(test_support::python())
        .arg("tests/stack/check_static.py")
        .current_dir(test_support::repo())
        .env("PATH", path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "static checks failed:\n{text}");
}
