//! Application helpers run as the runtime user (S2-22, S2-23, S2-26, S2-28), the Fly socket (S2-21) and
//! the browser path export (S2-29).

mod stage2_support;

use stage2_support::*;
use test_support::TempRoot;

const PY: &str = "/opt/hermes/.venv/bin/python";

/// A stand-in interpreter that records who ran which script, and fails for scripts named in `FAIL`.
fn recording_python(r: &TempRoot) {
    script(
        r,
        PY,
        r#"echo "$(id -u):$(id -g) home=$HOME cwd=$(pwd) skip=$HERMES_SKIP_CONFIG_MIGRATION $*" >> "$HERMES_BOOT_ROOT/tmp/helper-calls"
case "$1" in *skills_sync.py) exit 3 ;; esac
exit 0"#,
    );
    for s in [
        "/opt/hermes/scripts/docker_config_migrate.py",
        "/opt/hermes/scripts/docker_refresh_dependencies.py",
        "/opt/hermes/scripts/docker_rebootstrap_nous_session.py",
        "/opt/hermes/tools/skills_sync.py",
    ] {
        r.write(s, "# script\n");
    }
    r.mkdir("/opt/hermes/skills");
}

#[test]
fn helpers_run_as_the_runtime_user_in_order_and_failures_warn() {
    let r = image();
    recording_python(&r);
    let out = stage2(
        &r,
        &[
            ("HERMES_AUTH_JSON_BOOTSTRAP", "{}"),
            ("HERMES_AUTH_JSON_REBOOTSTRAP", "{\"nous\":1}"),
            ("HERMES_SKIP_CONFIG_MIGRATION", "1"),
        ],
    );
    out.assert_code(0);
    let calls = r.read("/tmp/helper-calls");
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(
        lines,
        [
            "10000:10000 home=/opt/data cwd=/ skip=1 /opt/hermes/scripts/docker_config_migrate.py",
            "10000:10000 home=/opt/data cwd=/ skip=1 /opt/hermes/scripts/docker_refresh_dependencies.py",
            "10000:10000 home=/opt/data cwd=/ skip=1 /opt/hermes/scripts/docker_rebootstrap_nous_session.py /opt/data/auth.json",
            "10000:10000 home=/opt/data cwd=/ skip=1 /opt/hermes/tools/skills_sync.py",
        ]
        .map(|l| l.replace("cwd=/", &format!("cwd={}", r.root().display())))
    );
    assert!(
        out.stdout
            .contains("[stage2] Warning: skills_sync.py failed (exit status 3); continuing"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Setup complete with"), "{}", out.stdout);
}

#[test]
fn missing_migration_script_is_reported_and_missing_config_skips_it() {
    let r = image();
    let out = stage2(&r, &[]);
    assert!(out
        .stdout
        .contains("[stage2] docker_config_migrate.py not present; skipping"));

    let r = TempRoot::new();
    recording_python(&r);
    // No config.yaml seed source: config.yaml does not exist, so the migration does not run.
    stage2(&r, &[]).assert_code(0);
    assert!(!r.read("/tmp/helper-calls").contains("docker_config_migrate.py"));
}

#[test]
fn helper_that_cannot_start_warns() {
    let r = image();
    r.write("/opt/hermes/scripts/docker_config_migrate.py", "# script\n");
    let out = stage2(&r, &[]);
    out.assert_code(0);
    assert!(
        out.stdout
            .contains("[stage2] Warning: docker_config_migrate.py failed (could not start: "),
        "{}",
        out.stdout
    );
}

fn exe(r: &TempRoot, p: &str) {
    script(r, p, "echo Chromium 1.0");
}

#[test]
fn browser_discovery_prefers_full_browsers_and_exports_through_the_envdir() {
    let r = image();
    exe(&r, "/opt/hermes/tools/a-shell/chrome-headless-shell");
    exe(&r, "/opt/hermes/tools/chromium-1/chrome-linux/chrome");
    exe(&r, "/opt/hermes/tools/chromium-1/chrome-linux/chrome.so");
    exe(&r, "/opt/hermes/tools/b/chromium");
    let out = stage2(&r, &[("PLAYWRIGHT_BROWSERS_PATH", "/opt/hermes/tools")]);
    out.assert_code(0);
    let p = "/run/s6/container_environment/AGENT_BROWSER_EXECUTABLE_PATH";
    assert_eq!(r.read(p), "/opt/hermes/tools/chromium-1/chrome-linux/chrome");
    assert_eq!((r.owner(p), r.mode(p)), ((0, 0), 0o644));
    assert_eq!(r.mode("/run/s6/container_environment"), 0o755);
    assert!(out.stdout.contains(
        "[stage2] Found agent-browser Chromium binary: /opt/hermes/tools/chromium-1/chrome-linux/chrome"
    ));

    // Only a headless shell: it wins.
    let r = image();
    exe(&r, "/opt/hermes/tools/x/headless_shell");
    stage2(&r, &[("PLAYWRIGHT_BROWSERS_PATH", "/opt/hermes/tools")]).assert_code(0);
    assert_eq!(r.read(p), "/opt/hermes/tools/x/headless_shell");

    // Nothing there, or no directory at all.
    let r = image();
    r.mkdir("/opt/hermes/tools");
    let out = stage2(&r, &[("PLAYWRIGHT_BROWSERS_PATH", "/opt/hermes/tools")]);
    assert!(out
        .stdout
        .contains("no Chromium binary under /opt/hermes/tools; browser tool may fail"));
    assert!(!r.exists(p));
    let out = stage2(&r, &[("PLAYWRIGHT_BROWSERS_PATH", "/nowhere")]);
    assert!(out
        .stdout
        .contains("no Chromium binary found; browser tool may fail"));
}

#[test]
fn pinned_browser_path_wins_and_a_stale_pin_falls_back() {
    let p = "/run/s6/container_environment/AGENT_BROWSER_EXECUTABLE_PATH";
    let r = image();
    exe(&r, "/usr/lib/chromium/chromium");
    exe(&r, "/opt/hermes/tools/chrome");
    r.write(
        "/etc/hermes/agent-browser-executable-path",
        "/usr/lib/chromium/chromium \n",
    );
    let out = stage2(&r, &[("PLAYWRIGHT_BROWSERS_PATH", "/opt/hermes/tools")]);
    assert!(out
        .stdout
        .contains("[stage2] Using pinned agent-browser Chromium binary: /usr/lib/chromium/chromium"));
    assert_eq!(r.read(p), "/usr/lib/chromium/chromium");

    r.write("/etc/hermes/agent-browser-executable-path", "/gone/chrome\n");
    let out = stage2(&r, &[("PLAYWRIGHT_BROWSERS_PATH", "/opt/hermes/tools")]);
    assert!(out
        .stdout
        .contains("baked Chromium binary is missing (/gone/chrome); browser tool may fail"));
    assert_eq!(r.read(p), "/opt/hermes/tools/chrome");

    r.write("/etc/hermes/agent-browser-executable-path", "");
    let out = stage2(&r, &[("PLAYWRIGHT_BROWSERS_PATH", "/opt/hermes/tools")]);
    assert!(out.stdout.contains("baked Chromium binary is missing (<empty>)"));

    // An operator-provided path disables discovery entirely.
    let r = image();
    exe(&r, "/opt/hermes/tools/chrome");
    let out = stage2(
        &r,
        &[
            ("PLAYWRIGHT_BROWSERS_PATH", "/opt/hermes/tools"),
            ("AGENT_BROWSER_EXECUTABLE_PATH", "/my/chrome"),
        ],
    );
    assert!(!out.stdout.contains("Chromium"), "{}", out.stdout);
    assert!(!r.exists(p));
}

#[test]
fn fly_api_socket_is_granted_to_the_runtime_group() {
    let r = image();
    r.mkdir("/.fly");
    let _l = std::os::unix::net::UnixListener::bind(r.path("/.fly/api")).unwrap();
    r.chmod("/.fly/api", 0o755);
    let out = stage2(&r, &[]);
    assert!(out
        .stdout
        .contains("[stage2] Granted hermes group access to the Fly Machines API socket"));
    assert_eq!(
        (r.owner("/.fly/api"), r.mode("/.fly/api")),
        ((0, HERMES_GID), 0o775)
    );
}

#[test]
fn under_json_what_helpers_print_goes_to_the_log_and_stdout_stays_json() {
    let r = image();
    script(
        &r,
        PY,
        "echo \"helper says hello on stdout\"\necho \"helper says hello on stderr\" >&2\nexit 0",
    );
    r.write("/opt/hermes/tools/skills_sync.py", "# script\n");
    r.mkdir("/opt/hermes/skills");
    let out = stage2_args(&r, &["--json"], &[]);
    out.assert_code(0);
    let events = out.json_lines();
    assert!(
        events.iter().any(|e| e["action"] == "run"),
        "the helper ran: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("helper says hello on stdout"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("helper says hello on stderr"),
        "{}",
        out.stderr
    );
}
