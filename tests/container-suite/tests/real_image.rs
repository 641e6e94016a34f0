//! What only the real parts show: s6-overlay's environment dump, its stage-2 failure and signal handling,
//! the upstream image contract (tini shim, login shells), routing against the installed application's
//! subcommands, and the application's own profile and gateway commands on the root-owned supervision tree.

use std::time::Duration;

use anyhow::Result;
use container_suite::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const SVC_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn values_reach_the_command_without_s6_overlays_trailing_newline() -> Result<()> {
    // s6-overlay writes every variable of the container environment with a newline after it;
    // with-contenv removes it, and so must main-wrapper.
    let r = Run::new()
        .env("SUITE_VALUE", "plain")
        .env("SUITE_MULTILINE", "a\nb")
        .cmd(&[
            "sh",
            "-c",
            r#"printf '[%s][%s][%s]\n' "$HERMES_HOME" "$SUITE_VALUE" "$SUITE_MULTILINE""#,
        ])
        .run_to_end(RUN_TIMEOUT)?;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("[/opt/data][plain][a\nb]\n"), "{r}");
    Ok(())
}

#[test]
fn the_real_application_creates_a_profile_after_a_remap() -> Result<()> {
    // With the newline left in HERMES_HOME the application failed here with
    // "Permission denied: '/opt/data\n'".
    let c = Run::new()
        .env("PUID", "1234")
        .env("PGID", "1234")
        .cmd(&["sleep", "infinity"])
        .start_ready()?;
    let r = c.hermes("hermes profile create remapped")?;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(c.stat("/opt/data/profiles/remapped")?, "1234:1234 755");
    Ok(())
}

#[test]
fn a_failing_boot_step_stops_the_container_before_the_command() -> Result<()> {
    // A relative HERMES_HOME is fatal for stage2-setup (S2-04); S6_BEHAVIOUR_IF_STAGE2_FAILS=2 makes
    // s6-overlay stop instead of starting the command anyway.
    let r = Run::new()
        .env("HERMES_HOME", "relative/home")
        .cmd(&["sh", "-c", "echo COMMAND_RAN"])
        .run_to_end(RUN_TIMEOUT)?;
    assert_ne!(r.code, 0, "{r}");
    assert!(!r.stdout.contains("COMMAND_RAN"), "{r}");
    let all = r.all();
    let errors: Vec<&str> = all.lines().filter(|l| l.starts_with("[stage2] ERROR:")).collect();
    assert_eq!(errors.len(), 1, "{r}");
    assert!(errors[0].contains("relative/home"), "{r}");
    Ok(())
}

#[test]
fn a_read_only_data_volume_is_refused_at_boot() -> Result<()> {
    let vol = Volume::new()?;
    let r = Run::new()
        .volume(&vol.name, "/opt/data:ro")
        .cmd(&["sh", "-c", "echo COMMAND_RAN"])
        .run_to_end(RUN_TIMEOUT)?;
    assert_ne!(r.code, 0, "{r}");
    assert!(!r.stdout.contains("COMMAND_RAN"), "{r}");
    assert!(
        r.all()
            .contains("[stage2] ERROR: HERMES_HOME /opt/data is on a read-only file system"),
        "{r}"
    );
    Ok(())
}

#[test]
fn old_tini_entrypoints_boot_under_s6_overlay() -> Result<()> {
    for entry in [
        &["-g", "--", "/opt/hermes/docker/entrypoint-dispatch.sh"][..],
        &["--", "/opt/hermes/docker/main-wrapper.sh"][..],
        &["-s", "-p", "SIGKILL", "--"][..],
    ] {
        let mut words: Vec<&str> = entry.to_vec();
        words.extend(["sh", "-c", "echo pid1=$(cat /proc/1/comm) uid=$(id -u); exit 3"]);
        let r = Run::new()
            .opt("--entrypoint")
            .opt("/usr/bin/tini")
            .cmd(&words)
            .run_to_end(RUN_TIMEOUT)?;
        assert_eq!(r.code, 3, "{entry:?}: {r}");
        assert!(r.stdout.contains("pid1=s6-svscan uid=10000"), "{entry:?}: {r}");
    }
    Ok(())
}

#[test]
fn login_shells_of_the_runtime_user_get_the_application_path() -> Result<()> {
    let c = Run::new().cmd(&["sleep", "infinity"]).start_ready()?;
    let path = c.exec_as("hermes", "env -i HOME=/opt/data /bin/sh -lc 'echo $PATH'")?;
    assert!(path.ok(), "{path}");
    let p = path.stdout.trim();
    // The user's own tools first, so the agent finds what it installed.
    assert!(p.starts_with("/opt/data/.local/bin:"), "{p}");
    assert!(p.contains("/opt/hermes/.venv/bin"), "{p}");
    let root = c.exec_as("root", "env -i HOME=/root /bin/sh -lc 'echo $PATH'")?;
    assert!(!root.stdout.contains("/opt/data"), "{root}");
    Ok(())
}

#[test]
fn every_subcommand_of_the_installed_application_reaches_it() -> Result<()> {
    let c = Run::new().cmd(&["sleep", "infinity"]).start_ready()?;
    let list = c.root_ok("grep -v '^#' /etc/hermes/cli-subcommands")?;
    let subs: Vec<&str> = list.lines().filter(|l| !l.is_empty()).collect();
    assert!(subs.len() >= 50, "only {} subcommands listed", subs.len());
    for must in [
        "kanban", "logs", "send", "dump", "debug", "import", "proxy", "serve", "gateway",
    ] {
        assert!(subs.contains(&must), "{must} missing from {subs:?}");
    }
    assert!(
        !subs.contains(&"honcho"),
        "a subcommand 0.19.0 does not have is listed"
    );
    // main-wrapper run from `docker exec` with s6 up takes the wrapper role: the same routing as the
    // container command. Two at a time; each one is a Python start.
    let r = c.root(
        r#"grep -v '^#' /etc/hermes/cli-subcommands | xargs -P 2 -I{} sh -c '
  out=$(/opt/hermes/docker/bin/main-wrapper {} --help 2>&1 </dev/null)
  case "$out" in
    *"usage: hermes "*) ;;
    *) echo "MISSED {}: $(printf %s "$out" | head -c 300)" ;;
  esac'"#,
    )?;
    assert!(!r.stdout.contains("MISSED"), "{r}");
    Ok(())
}

#[test]
fn profile_create_never_warns_about_registration() -> Result<()> {
    let c = Run::new().cmd(&["sleep", "infinity"]).start_ready()?;
    let r = c.hermes(
        "for i in $(seq 1 20); do hermes profile create p$i --no-skills 2>&1 | grep -i 'could not register'; done; true",
    )?;
    assert!(r.ok(), "{r}");
    assert_eq!(r.stdout.trim(), "", "registration warnings:\n{r}");
    for i in 1..=20 {
        assert!(
            c.root(&format!("test -d /run/service/gateway-p{i}"))?.ok(),
            "no slot for p{i}"
        );
        assert_eq!(c.stat(&format!("/run/service/gateway-p{i}/run"))?, "0:0 755");
    }
    Ok(())
}

#[test]
fn the_applications_gateway_commands_work_as_the_runtime_user() -> Result<()> {
    let c = Run::new().cmd(&["sleep", "infinity"]).start_ready()?;
    let slot = "/run/service/gateway-ops";
    c.hermes_ok("hermes profile create ops --no-skills")?;
    // A gateway with no platform exits as misconfigured (78); the API server is the one platform that
    // needs no account.
    c.hermes_ok(
        "printf 'API_SERVER_KEY=ops-key-0123456789abcdef\\nAPI_SERVER_PORT=8650\\n' >> /opt/data/profiles/ops/.env",
    )?;
    let r = c.hermes("hermes -p ops gateway start")?;
    assert_eq!(r.code, 0, "{r}");
    c.wait_until("gateway-ops up", SVC_TIMEOUT, || {
        Ok(c.svstat(slot)?.stdout.starts_with("up "))
    })?;
    let status = c.hermes("hermes -p ops gateway status")?;
    assert_eq!(status.code, 0, "{status}");
    let first = c.processes_matching("-p ops gateway run")?;
    assert!(!first.is_empty(), "{}", ps_table(&c.processes()?));

    let r = c.hermes("hermes -p ops gateway restart")?;
    assert_eq!(r.code, 0, "{r}");
    // The old gateway tears down first, then s6 starts a new one (a Python start: slow on a busy machine).
    c.wait_until("a new gateway process", Duration::from_secs(60), || {
        // The gateway may fork helpers that keep its command line: compare the supervised pid.
        let now = c.processes_matching("-p ops gateway run")?;
        Ok(!now.is_empty() && now.iter().all(|p| p.pid != first[0].pid))
    })?;

    c.hermes_ok("hermes -p ops gateway stop")?;
    c.wait_until("gateway-ops down", SVC_TIMEOUT, || {
        Ok(c.svstat(slot)?.stdout.starts_with("down"))
    })?;
    let state = c.root_ok("cat /opt/data/profiles/ops/gateway_state.json")?;
    assert!(state.contains(r#""desired_state":"stopped""#), "{state}");

    let r = c.hermes("hermes profile delete -y ops")?;
    assert_eq!(r.code, 0, "{r}");
    assert!(!r.all().contains("Could not unregister"), "{r}");
    // unregister waits for the registrar, so the slot is gone when the command returns.
    assert!(!c.root(&format!("test -e {slot}"))?.ok(), "{r}");
    Ok(())
}

#[test]
fn root_never_runs_what_the_runtime_user_planted_on_its_path() -> Result<()> {
    let c = Run::new().cmd(&["sleep", "infinity"]).start_ready()?;
    // As the agent could: programs named like the operator's commands in the user's tool directory.
    c.hermes_ok(
        r#"mkdir -p /opt/data/.local/bin && for p in ls sh bash id cat x; do
  printf '#!/bin/sh\necho planted-%s-ran-as-$(/usr/bin/id -u) >> /tmp/planted.log\necho PLANTED\n' "$p" > /opt/data/.local/bin/$p
  chmod 755 /opt/data/.local/bin/$p
done"#,
    )?;
    for (what, args) in [
        ("docker exec C ls /", vec!["ls", "/"]),
        (
            "docker exec C sh -c",
            vec!["sh", "-c", "id -u; cat /etc/hostname"],
        ),
        ("docker exec C bash -lc", vec!["bash", "-lc", "id -u"]),
    ] {
        let mut full = vec!["exec", c.id.as_str()];
        full.extend(args.iter().copied());
        let out = docker(&full)?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("PLANTED"), "{what} ran a planted program:\n{text}");
    }
    let log = c.root("cat /tmp/planted.log 2>/dev/null")?;
    assert!(!log.stdout.contains("ran-as-0"), "root ran: {}", log.stdout);
    // The runtime user's own processes still find its tools first: login shells, the exec shim's
    // program and the supervised gateway.
    let found = c.exec_as("hermes", "sh -lc 'command -v x'")?;
    assert_eq!(found.stdout.trim(), "/opt/data/.local/bin/x", "{found}");
    // main-wrapper's program (the container command, here through `docker exec` in the wrapper role)
    // runs as the runtime user with its tools first.
    let wrapped =
        c.root_ok("/opt/hermes/docker/bin/main-wrapper /bin/sh -c '/usr/bin/id -u; command -v x'")?;
    assert_eq!(wrapped, "10000\n/opt/data/.local/bin/x", "{wrapped}");
    Ok(())
}
