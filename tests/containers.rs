//! The images as a device runs them (issue 18): the one Dockerfile builds the hub, producer and
//! consumer images from the binaries this test command has just built, and podman runs them on a
//! network with docker-compose.yml's environment. tests/python/container_stack.py holds the steps
//! and the checks (sizes, the seed's table, /metrics, HEALTHCHECK, non-root, the hub's volume, a
//! killed hub). Needs root and what scripts/setup-test-env.sh installs; a missing piece fails.

#[test]
fn the_images_build_small_and_the_three_containers_measure_and_survive_a_hub_kill() {
    test_support::require_program("podman");
    test_support::require_program("strip");
    // The binaries next to the launcher: `cargo build --release --workspace` built all of them.
    let binaries = test_support::bin()
        .parent()
        .expect("the launcher is in a directory")
        .to_path_buf();
    let mut cmd = std::process::Command::new(test_support::python());
    cmd.arg(test_support::repo().join("tests/python/container_stack.py"))
        .arg(test_support::repo())
        .arg(&binaries)
        // runc, netavark and no default ulimits (see the file), without touching /etc/containers.
        .env(
            "CONTAINERS_CONF",
            test_support::repo().join("tests/containers/containers.conf"),
        );
    let (ok, output) = test_support::run_capture(&mut cmd);
    println!("{output}");
    assert!(ok, "the container test failed:\n{output}");
}
