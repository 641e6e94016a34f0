//! The profile registrar in a live container: root-owned gateway slots (the default), the runtime user's
//! profile and gateway commands working through it, and the runtime user's attempts on the supervision
//! tree failing.

use std::time::Duration;

use anyhow::Result;
use container_suite::*;

const SVC_TIMEOUT: Duration = Duration::from_secs(20);

fn slot_exists(c: &Container, p: &str) -> Result<bool> {
    Ok(c.root(&format!("test -d /run/service/gateway-{p}"))?.ok())
}

#[test]
fn profile_and_gateway_commands_work_as_the_runtime_user() -> Result<()> {
    let c = Run::new().cmd(&["sleep", "infinity"]).start_ready()?;
    // The registrar runs as root.
    c.wait_until("the profile registrar", SVC_TIMEOUT, || {
        Ok(c.processes_matching("reconcile-profiles watch")?
            .iter()
            .any(|p| p.uid == 0))
    })?;

    let r = c.hermes("hermes profile create coder")?;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(c.stat("/run/service/gateway-coder")?, "0:0 755");
    assert_eq!(c.stat("/run/service/gateway-coder/run")?, "0:0 755");
    c.wait_until("a supervisor on gateway-coder", SVC_TIMEOUT, || {
        Ok(c.svstat("/run/service/gateway-coder")?.ok())
    })?;

    let r = c.hermes("hermes -p coder gateway start")?;
    assert_eq!(r.code, 0, "{r}");
    c.wait_until("gateway-coder up", SVC_TIMEOUT, || {
        Ok(c.svstat("/run/service/gateway-coder")?.stdout.starts_with("up "))
    })?;
    // The gateway itself runs as the runtime user.
    c.wait_until("the coder gateway process", SVC_TIMEOUT, || {
        Ok(c.processes_matching("-p coder gateway run")?
            .iter()
            .any(|p| p.uid == HERMES_UID))
    })?;

    let r = c.hermes("hermes -p coder gateway stop")?;
    assert_eq!(r.code, 0, "{r}");
    c.wait_until("gateway-coder down", SVC_TIMEOUT, || {
        Ok(c.svstat("/run/service/gateway-coder")?.stdout.starts_with("down"))
    })?;

    let r = c.hermes("hermes profile delete -y coder")?;
    assert_eq!(r.code, 0, "{r}");
    assert!(!slot_exists(&c, "coder")?);
    assert!(!c.root("test -e /opt/data/profiles/coder")?.ok());
    Ok(())
}

#[test]
fn a_profile_made_on_the_host_side_of_a_bind_mount_gets_its_slot() -> Result<()> {
    let host = HostDir::new()?;
    let c = Run::new()
        .volume(host.as_str(), "/opt/data")
        .cmd(&["sleep", "infinity"])
        .start_ready()?;
    let dir = host.join("profiles/hostmade");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("SOUL.md"), "# hostmade\n")?;
    // inotify, or at the latest the 30 s rescan for mounts that deliver no events.
    c.wait_until("gateway-hostmade", Duration::from_secs(45), || {
        slot_exists(&c, "hostmade")
    })?;
    assert!(c.root("test -e /run/service/gateway-hostmade/down")?.ok());
    std::fs::remove_dir_all(&dir)?;
    c.wait_until("gateway-hostmade removed", Duration::from_secs(45), || {
        Ok(!slot_exists(&c, "hostmade")?)
    })?;
    Ok(())
}

#[test]
fn the_runtime_user_cannot_change_the_supervision_tree() -> Result<()> {
    let c = Run::new().cmd(&["sleep", "infinity"]).start_ready()?;
    let s = "/run/service";
    let g = "/run/service/gateway-default";
    let ftrig = "ftrig1:@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for attack in [
        format!("mkdir {s}/gateway-evil"),
        format!("printf 'id -u > /tmp/canary\\n' >> {g}/run"),
        format!("rm -f {g}/run"),
        format!("printf 'id -u > /tmp/canary\\n' >> {g}/finish"),
        format!("printf 'id -u > /tmp/canary\\n' >> {g}/log/run"),
        format!("mv {g} {s}/.away"),
        format!("ln -s /etc/passwd {g}/supervise/planted"),
        format!("mkfifo {g}/supervise/planted"),
        format!("ln -s /etc/passwd {g}/event/{ftrig}"),
        format!("ln -s /etc/passwd {g}/supervise/event/{ftrig}"),
        format!("printf a > {s}/.s6-svscan/control"),
        format!("rm {g}/down"),
    ] {
        let r = c.hermes(&attack)?;
        assert_ne!(r.code, 0, "as hermes, `{attack}` succeeded: {r}");
    }
    assert_eq!(c.stat(s)?, "0:0 755");
    assert_eq!(c.stat(g)?, "0:0 755");
    assert_eq!(c.stat(&format!("{g}/supervise"))?, "0:10000 710");
    assert_eq!(c.stat(&format!("{g}/supervise/control"))?, "0:10000 620");
    assert!(!c.root("test -e /tmp/canary")?.ok());
    // What the runtime user may do.
    let r = c.hermes(&format!("/command/s6-svstat {g} && /command/s6-svok {g}"))?;
    assert_eq!(r.code, 0, "{r}");
    Ok(())
}

#[test]
fn user_owned_switch_restores_the_upstream_ownership_with_a_warning() -> Result<()> {
    let c = Run::new()
        .env("HERMES_GATEWAY_SLOTS", "user-owned")
        .cmd(&["sleep", "infinity"])
        .start_ready()?;
    assert_eq!(c.stat("/run/service")?, "10000:10000 755");
    assert_eq!(c.stat("/run/service/gateway-default/run")?, "10000:10000 755");
    let logs = c.logs()?;
    assert!(
        logs.contains("HERMES_GATEWAY_SLOTS=user-owned") && logs.contains("can gain root"),
        "{logs}"
    );
    let r = c.hermes("/opt/hermes/docker/bin/reconcile-profiles register phase3test")?;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(c.stat("/run/service/gateway-phase3test")?, "10000:10000 755");
    Ok(())
}
