//! reconcile-profiles at boot and at run time, and the supervised gateway it sets up (SPEC §4,
//! §9 "reconcile-profiles").

use std::time::Duration;

use anyhow::Result;
use container_suite::*;

const SVC_TIMEOUT: Duration = Duration::from_secs(20);

/// `sleep infinity` processes that are not under an s6-supervise (i.e. under /init's stage 2, the
/// container command's side); main-hermes's own `sleep infinity` is supervised.
fn unsupervised_sleeps(c: &Container) -> Result<Vec<Proc>> {
    let procs = c.processes()?;
    Ok(procs
        .iter()
        .filter(|p| p.state != 'Z' && p.cmdline.trim() == "sleep infinity")
        .filter(|p| {
            !ancestry(&procs, p.pid)
                .iter()
                .any(|a| a.cmdline.starts_with("s6-supervise"))
        })
        .cloned()
        .collect())
}

fn make_profile(c: &Container, name: &str, state: &str) -> Result<()> {
    c.hermes_ok(&format!(
        "mkdir -p /opt/data/profiles/{name} && echo '# {name}' > /opt/data/profiles/{name}/SOUL.md && \
         echo '{{\"gateway_state\":\"{state}\"}}' > /opt/data/profiles/{name}/gateway_state.json"
    ))?;
    Ok(())
}

#[test]
fn stopped_gateway_stays_stopped_after_restart() -> Result<()> {
    let vol = Volume::new()?;
    let c = Run::new()
        .volume(&vol.name, "/opt/data")
        .cmd(&["sleep", "infinity"])
        .start_ready()?;
    make_profile(&c, "writer", "stopped")?;
    c.restart()?;
    let log = c.root_ok("cat /opt/data/logs/container-boot.log")?;
    assert!(log.contains("profile=writer"), "{log}");
    c.root_ok("test -d /run/service/gateway-writer && test -f /run/service/gateway-writer/down")?;
    assert!(!c.wants_up("/run/service/gateway-writer")?);
    Ok(())
}

#[test]
fn stale_gateway_pid_cleaned_up_on_restart() -> Result<()> {
    let c = Run::new().cmd(&["sleep", "infinity"]).start_ready()?;
    make_profile(&c, "ghost", "stopped")?;
    c.hermes_ok("echo 4242 > /opt/data/profiles/ghost/gateway.pid && echo '[]' > /opt/data/profiles/ghost/processes.json")?;
    c.restart()?;
    for f in ["gateway.pid", "processes.json"] {
        assert!(
            !c.root(&format!("test -e /opt/data/profiles/ghost/{f}"))?.ok(),
            "{f} survived the restart"
        );
    }
    Ok(())
}

#[test]
fn s6_register_creates_service_dir_in_live_container() -> Result<()> {
    let c = Run::new().cmd(&["sleep", "infinity"]).start_ready()?;
    // The registrar design registers profiles that exist on the volume.
    c.hermes_ok(
        "mkdir -p /opt/data/profiles/phase3test && echo '# p' > /opt/data/profiles/phase3test/SOUL.md",
    )?;
    let r = c.hermes("/opt/hermes/docker/bin/reconcile-profiles register phase3test")?;
    assert_eq!(r.code, 0, "{r}");
    for f in ["", "/run", "/log/run"] {
        c.root_ok(&format!("test -e /run/service/gateway-phase3test{f}"))?;
    }
    c.wait_until("a supervisor on the new slot", SVC_TIMEOUT, || {
        Ok(c.svstat("/run/service/gateway-phase3test")?.ok())
    })?;
    let listed = c.hermes_ok("ls /run/service")?;
    assert!(listed.lines().any(|l| l == "gateway-phase3test"), "{listed}");
    Ok(())
}

#[test]
fn gateway_run_redirects_to_supervised() -> Result<()> {
    let c = Run::new().cmd(&["gateway", "run"]).start_ready()?;
    c.wait_until("gateway-default to want up", SVC_TIMEOUT, || {
        c.wants_up("/run/service/gateway-default")
    })?;
    assert!(c.running()?, "the container stopped");
    c.wait_until("the command's sleep infinity", SVC_TIMEOUT, || {
        Ok(!unsupervised_sleeps(&c)?.is_empty())
    })?;
    let logs = c.logs()?;
    assert!(
        logs.contains("s6 supervision") && logs.contains("--no-supervise"),
        "{logs}"
    );
    Ok(())
}

fn assert_legacy_gateway(c: &Container) -> Result<()> {
    c.wait_until("the foreground gateway banner", SVC_TIMEOUT, || {
        Ok(c.logs()?.contains(GATEWAY_BANNER))
    })?;
    let logs = c.logs()?;
    assert!(!logs.contains("s6 supervision"), "breadcrumb printed:\n{logs}");
    c.root_ok("test -d /run/service/gateway-default")?;
    assert!(
        !c.wants_up("/run/service/gateway-default")?,
        "gateway-default wants up"
    );
    let sleeps = unsupervised_sleeps(c)?;
    assert!(
        sleeps.is_empty(),
        "sleep infinity under the wrapper:\n{}",
        ps_table(&sleeps)
    );
    Ok(())
}

#[test]
fn gateway_run_no_supervise_flag_preserves_legacy_behavior() -> Result<()> {
    let c = Run::new()
        .cmd(&["gateway", "run", "--no-supervise"])
        .start_ready()?;
    assert_legacy_gateway(&c)
}

#[test]
fn gateway_run_no_supervise_env_var() -> Result<()> {
    let c = Run::new()
        .env("HERMES_GATEWAY_NO_SUPERVISE", "1")
        .cmd(&["gateway", "run"])
        .start_ready()?;
    assert_legacy_gateway(&c)
}

#[test]
fn supervised_gateway_does_not_recurse() -> Result<()> {
    let c = Run::new().cmd(&["gateway", "run"]).start_ready()?;
    c.wait_until("the supervised gateway", SVC_TIMEOUT, || {
        Ok(!c.processes_matching("gateway run --replace")?.is_empty())
    })?;
    // The container command redirects to supervision, then parks as one `sleep`; only after that does
    // a count of gateway processes mean anything.
    c.wait_until("the container command parked", Duration::from_secs(40), || {
        Ok(unsupervised_sleeps(&c)?.len() == 1)
    })?;
    // Give a recursion (a supervised gateway redirecting to supervision again) time to show.
    std::thread::sleep(Duration::from_secs(2));
    // /init's stage 2 (like s6-overlay's rc.init) carries the container command in its argv too;
    // only the hermes processes count.
    let runs = c.processes_matching("hermes gateway run")?;
    assert!(runs.len() <= 1, "more than one gateway run:\n{}", ps_table(&runs));
    let sleeps = unsupervised_sleeps(&c)?;
    assert_eq!(sleeps.len(), 1, "\n{}", ps_table(&c.processes()?));
    Ok(())
}

#[test]
fn dashboard_supervised_when_env_set() -> Result<()> {
    let c = Run::new()
        .env("HERMES_DASHBOARD", "1")
        .cmd(&["gateway", "run"])
        .start_ready()?;
    c.wait_until("gateway-default and dashboard to want up", SVC_TIMEOUT, || {
        Ok(c.wants_up("/run/service/gateway-default")? && c.wants_up("/run/service/dashboard")?)
    })
}

#[test]
fn supervised_gateway_stdout_reaches_docker_logs() -> Result<()> {
    let c = Run::new().cmd(&["gateway", "run"]).start_ready()?;
    c.wait_until("the banner in docker logs", SVC_TIMEOUT, || {
        Ok(c.logs()?.contains(GATEWAY_BANNER))
    })?;
    c.wait_until("the banner in the gateway log file", SVC_TIMEOUT, || {
        Ok(c.root(&format!(
            "grep -q '{GATEWAY_BANNER}' /opt/data/logs/gateways/default/current"
        ))?
        .ok())
    })?;
    // The supervised gateway runs as the runtime user with the slot's fixed HOME (RP-13).
    let gw = c.processes_matching("gateway run --replace")?;
    assert_eq!(gw.len(), 1, "{}", ps_table(&gw));
    assert_eq!(gw[0].uid, HERMES_UID);
    assert!(c.environ(&gw[0])?.iter().any(|e| e == "HOME=/opt/data"));
    Ok(())
}

#[test]
fn dashboard_container_registers_no_gateways() -> Result<()> {
    let c = Run::new()
        .cmd(&["dashboard", "--host", "127.0.0.1", "--port", "9200"])
        .start()?;
    c.wait_until("the reconcile skip message", Duration::from_secs(45), || {
        Ok(c.logs()?.contains("reconcile: skipping (dashboard container"))
    })?;
    // Long enough for anything started at boot to have registered slots.
    c.wait_until("the dashboard listener", Duration::from_secs(30), || {
        Ok(c.listening_ports()?.contains(&9200))
    })?;
    // The boot pass and the profile registrar each decide it (RP-03) and say so once.
    let skip = "reconcile: skipping (dashboard container";
    c.wait_until("the registrar's skip message", Duration::from_secs(30), || {
        Ok(c.logs()?.matches(skip).count() >= 2)
    })?;
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !c.root("test -e /run/service/gateway-default")?.ok(),
        "gateway-default registered"
    );
    // The registrar idles instead of exiting (s6 would restart it and it would print again).
    let logs = c.logs()?;
    assert_eq!(logs.matches(skip).count(), 2, "{logs}");
    assert!(!logs.contains("reconcile: registered"), "{logs}");
    assert!(c
        .svstat("/run/service/profile-registrar")?
        .stdout
        .starts_with("up "));
    Ok(())
}
