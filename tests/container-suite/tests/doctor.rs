//! `hermes-boot-doctor` in the real image, under the real s6-overlay: healthy after a boot, and each
//! problem an operator meets (ownership drift, a stopped gateway whose state says running, a root-owned
//! `.env`) found with its exit code and a fix that, run as printed, makes the container healthy again.

use anyhow::{bail, Result};
use container_suite::*;
use serde_json::Value;

/// `docker exec <c> hermes-boot-doctor --json` as `user`: the findings and the exit code.
fn doctor(c: &Container, user: &str) -> Result<(Vec<Value>, i32, String)> {
    let r = c.exec_as(user, "hermes-boot-doctor --json")?;
    let mut v = Vec::new();
    for l in r.stdout.lines() {
        match serde_json::from_str::<Value>(l) {
            Ok(o) => v.push(o),
            Err(e) => bail!("doctor printed a line that is not JSON ({e}): {l}\n{r}"),
        }
    }
    match v.last() {
        Some(s) if s["type"] == "summary" && s["exit"] == r.code => {}
        _ => bail!(
            "doctor's last line is not a summary matching its exit code {}:\n{r}",
            r.code
        ),
    }
    Ok((v, r.code, r.all()))
}

fn problems(v: &[Value]) -> Vec<&Value> {
    v.iter().filter(|f| f["status"] == "problem").collect()
}

/// The fix of a finding as a command for this container.
fn fix_command(c: &Container, f: &Value) -> String {
    f["fix"]
        .as_str()
        .unwrap_or_default()
        .replace("docker exec <container> ", "")
        .replace("<container>", c.short())
}

#[test]
fn a_booted_container_is_healthy_for_root_and_for_the_runtime_user() -> Result<()> {
    let c = Run::new().cmd(&["sleep", "infinity"]).start_ready()?;
    for user in ["root", "hermes"] {
        let (v, code, all) = doctor(&c, user)?;
        assert_eq!(code, 0, "as {user}: {all}");
        assert!(problems(&v).is_empty(), "as {user}: {all}");
        let version = v.iter().find(|f| f["check"] == "supervision").unwrap();
        assert!(
            version["details"]["s6_overlay"]
                .as_str()
                .unwrap()
                .starts_with("3."),
            "{all}"
        );
        let registrar = v
            .iter()
            .find(|f| f["details"]["service"] == "profile-registrar")
            .unwrap();
        assert_eq!(registrar["details"]["up"], true, "{all}");
    }
    let text = c.root("hermes-boot-doctor")?;
    assert_eq!(text.code, 0, "{text}");
    assert!(text.stdout.ends_with("healthy: no problems found\n"), "{text}");
    assert!(
        text.stdout
            .contains("runtime user hermes: uid 10000, gid 10000(hermes)"),
        "{text}"
    );
    Ok(())
}

#[test]
fn ownership_drift_is_found_and_the_restart_it_prescribes_repairs_it() -> Result<()> {
    let c = Run::new().cmd(&["sleep", "infinity"]).start_ready()?;
    c.root_ok("touch /opt/data/cron/left-by-root && chmod 644 /opt/data/cron/left-by-root")?;
    let (v, code, all) = doctor(&c, "root")?;
    assert_eq!(code, 1, "{all}");
    let p = problems(&v);
    assert_eq!(p.len(), 1, "{all}");
    assert_eq!(p[0]["check"], "ownership-drift");
    assert_eq!(p[0]["path"], "/opt/data/cron");
    assert_eq!(
        p[0]["details"]["first"][0],
        "/opt/data/cron/left-by-root 0:0 0644"
    );
    assert!(fix_command(&c, p[0]).starts_with("docker restart"), "{all}");
    c.restart()?;
    let (_, code, all) = doctor(&c, "root")?;
    assert_eq!(code, 0, "after the restart: {all}");
    Ok(())
}

#[test]
fn a_stopped_gateway_whose_state_says_running_is_found() -> Result<()> {
    let c = Run::new().cmd(&["sleep", "infinity"]).start_ready()?;
    // The root profile's slot is down after a boot without state; the application records that it
    // should run.
    c.hermes_ok(r#"printf '{"gateway_state": "running"}' > /opt/data/gateway_state.json"#)?;
    let (v, code, all) = doctor(&c, "hermes")?;
    assert_eq!(code, 1, "{all}");
    let p = problems(&v);
    assert_eq!(p.len(), 1, "{all}");
    assert_eq!(p[0]["check"], "gateway-down");
    assert_eq!(p[0]["details"]["profile"], "default");
    assert_eq!(p[0]["details"]["slot_state"], "down");
    assert_eq!(fix_command(&c, p[0]), "s6-svc -u /run/service/gateway-default");
    Ok(())
}

#[test]
fn a_root_owned_env_is_found_and_its_fix_works() -> Result<()> {
    let c = Run::new().cmd(&["sleep", "infinity"]).start_ready()?;
    c.root_ok("chown root:root /opt/data/.env")?;
    let (v, code, all) = doctor(&c, "root")?;
    assert_eq!(code, 1, "{all}");
    let p = problems(&v);
    assert_eq!(p.len(), 1, "{all}");
    assert_eq!(p[0]["check"], "secret-owner");
    assert_eq!(p[0]["path"], "/opt/data/.env");
    // As printed (two docker exec commands joined by &&), each run in the container.
    c.root_ok(&fix_command(&c, p[0]))?;
    let (_, code, all) = doctor(&c, "root")?;
    assert_eq!(code, 0, "after the fix: {all}");
    assert_eq!(c.stat("/opt/data/.env")?, "10000:10000 600");
    Ok(())
}

#[test]
fn the_image_healthcheck_is_the_quick_doctor_and_reports_healthy() -> Result<()> {
    let img = image();
    let test = docker_checked(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Healthcheck.Test}}",
        &img,
    ])?;
    assert_eq!(
        test,
        r#"["CMD","/opt/hermes/docker/bin/hermes-boot-doctor","--quick"]"#
    );
    // The image checks every 60 s; here every second, to see the verdict within the test.
    let c = Run::new()
        .opt("--health-interval=1s")
        .cmd(&["sleep", "infinity"])
        .start_ready()?;
    c.wait_until("healthy", std::time::Duration::from_secs(60), || {
        Ok(c.inspect("{{.State.Health.Status}}")? == "healthy")
    })?;
    // A problem the quick checks see makes it unhealthy.
    c.root_ok("chown root:root /opt/data/.env")?;
    c.wait_until("unhealthy", std::time::Duration::from_secs(60), || {
        Ok(c.inspect("{{.State.Health.Status}}")? == "unhealthy")
    })?;
    Ok(())
}

/// The last boot's warnings, as the real boot under s6-overlay printed them to `docker logs`, are in the
/// boot record, root's alone, and in the doctor's report as warnings.
#[test]
fn the_last_boots_warnings_are_in_the_boot_record_and_the_report() -> Result<()> {
    let c = Run::new()
        .env("HERMES_UID", "abc")
        .cmd(&["sleep", "infinity"])
        .start_ready()?;
    let wanted =
        "[stage2] Warning: ignoring HERMES_UID='abc': must be a decimal number from 1 to 65534 — continuing";
    let logs = c.logs()?;
    assert!(logs.contains(wanted), "{logs}");
    let (v, code, all) = doctor(&c, "hermes")?;
    // The value is a problem the doctor finds itself (with its fix); the boot's line about it is a
    // warning, which alone would not fail the check.
    assert_eq!(code, 1, "{all}");
    let p = problems(&v);
    assert_eq!(p.len(), 1, "{all}");
    assert_eq!(p[0]["check"], "uid-remap", "{all}");
    assert_eq!(v.last().unwrap()["warnings"], 1, "{all}");
    let lines: Vec<&str> = v
        .iter()
        .filter(|f| f["check"] == "boot-warning" && f["status"] == "warning")
        .map(|f| f["details"]["line"].as_str().unwrap_or_default())
        .collect();
    assert!(lines.contains(&wanted), "{all}");
    // Every recorded line is one docker logs shows.
    for l in &lines {
        assert!(logs.contains(l), "{l} is not in docker logs:\n{logs}");
    }
    let record = c.root(
        "cat /run/hermes-boot/warnings; stat -c '%u:%g %a' /run/hermes-boot /run/hermes-boot/warnings",
    )?;
    assert!(record.stdout.ends_with("0:0 755\n0:0 644\n"), "{record}");
    Ok(())
}
