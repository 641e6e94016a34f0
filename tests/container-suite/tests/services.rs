//! The static s6-rc services `dashboard` and `main-hermes`, their permissions for the runtime user
//! and the files under docker/ (SPEC §3, §6, §9 "Static services and files").

use std::time::Duration;

use anyhow::Result;
use container_suite::*;

const DASHBOARD_TIMEOUT: Duration = Duration::from_secs(30);

fn dashboard_container(extra_env: &[(&str, &str)]) -> Result<Container> {
    let mut run = Run::new()
        .env("HERMES_DASHBOARD", "1")
        .cmd(&["sleep", "infinity"]);
    for (k, v) in extra_env {
        run = run.env(k, v);
    }
    run.start_ready()
}

/// Gives the dashboard a password (the application's bundled basic-auth provider), which it needs before it
/// binds a non-loopback address; the supervised dashboard picks it up on its next restart.
fn enable_basic_auth(c: &Container) -> Result<()> {
    c.hermes_ok(
        "h=$(/opt/hermes/.venv/bin/python -c \"from plugins.dashboard_auth.basic import hash_password; \
         print(hash_password('suite-password'))\") && \
         hermes config set dashboard.basic_auth.username suite >/dev/null && \
         hermes config set dashboard.basic_auth.password_hash \"$h\" >/dev/null",
    )?;
    Ok(())
}

/// The dashboard process (`hermes dashboard` run by the service), once it exists.
fn dashboard_proc(c: &Container) -> Result<Proc> {
    let mut found = None;
    c.wait_until("the dashboard process", DASHBOARD_TIMEOUT, || {
        found = c.processes_matching("hermes dashboard")?.into_iter().next();
        Ok(found.is_some())
    })?;
    Ok(found.expect("wait_until returned true"))
}

#[test]
fn dashboard_not_running_by_default() -> Result<()> {
    let c = Run::new().cmd(&["sleep", "60"]).start_ready()?;
    std::thread::sleep(Duration::from_secs(5));
    let procs = c.processes_matching("hermes dashboard")?;
    assert!(procs.is_empty(), "{}", ps_table(&procs));
    Ok(())
}

#[test]
fn dashboard_slot_reports_down_when_disabled() -> Result<()> {
    let c = Run::new().cmd(&["sleep", "infinity"]).start_ready()?;
    c.wait_until(
        "dashboard/run to have exited and been parked",
        DASHBOARD_TIMEOUT,
        || {
            let r = c.svstat("/run/service/dashboard")?;
            Ok(r.ok() && r.stdout.starts_with("down"))
        },
    )?;
    // Parked, not restarting: it stays down.
    std::thread::sleep(Duration::from_secs(2));
    let r = c.svstat("/run/service/dashboard")?;
    assert!(r.ok() && r.stdout.starts_with("down"), "{r}");
    Ok(())
}

#[test]
fn dashboard_slot_reports_up_when_enabled() -> Result<()> {
    let c = dashboard_container(&[])?;
    c.wait_until("s6-svstat dashboard to say up", DASHBOARD_TIMEOUT, || {
        Ok(c.svstat("/run/service/dashboard")?.stdout.starts_with("up "))
    })
}

#[test]
fn dashboard_opt_in_starts() -> Result<()> {
    let c = dashboard_container(&[])?;
    let p = dashboard_proc(&c)?;
    assert_eq!(p.uid, HERMES_UID, "{p:?}");
    assert!(
        p.cmdline.contains("--host 127.0.0.1 --port 9119 --no-open"),
        "{p:?}"
    );
    c.wait_until("a listener on 9119", DASHBOARD_TIMEOUT, || {
        Ok(c.listening_ports()?.contains(&9119))
    })
}

#[test]
fn dashboard_port_override() -> Result<()> {
    let c = dashboard_container(&[
        ("HERMES_DASHBOARD_PORT", "9120"),
        ("HERMES_DASHBOARD_HOST", "0.0.0.0"),
    ])?;
    enable_basic_auth(&c)?;
    c.wait_until("a listener on 9120", Duration::from_secs(60), || {
        Ok(c.listening_ports()?.contains(&9120))
    })
}

#[test]
fn dashboard_restarts_after_crash() -> Result<()> {
    let c = dashboard_container(&[])?;
    let first = dashboard_proc(&c)?;
    c.hermes_ok(&format!("kill -KILL {}", first.pid))?;
    c.wait_until("a new dashboard pid", Duration::from_secs(15), || {
        Ok(c.processes_matching("hermes dashboard")?
            .iter()
            .any(|p| p.pid != first.pid))
    })
}

#[test]
fn dashboard_non_loopback_bind_is_passed_through() -> Result<()> {
    // Mirrors the OAuth-gate scenario as far as the boot goes: the application gets the requested
    // host, runs as hermes, and listens on every address.
    let c = dashboard_container(&[("HERMES_DASHBOARD_HOST", "0.0.0.0")])?;
    enable_basic_auth(&c)?;
    let p = dashboard_proc(&c)?;
    assert!(p.cmdline.contains("--host 0.0.0.0 --port 9119"), "{p:?}");
    assert_eq!(p.uid, HERMES_UID);
    c.wait_until("a listener on 9119", DASHBOARD_TIMEOUT, || {
        Ok(c.listening_ports()?.contains(&9119))
    })
}

#[test]
fn dashboard_insecure_env_var_no_longer_bypasses_gate() -> Result<()> {
    let c = dashboard_container(&[
        ("HERMES_DASHBOARD_HOST", "0.0.0.0"),
        ("HERMES_DASHBOARD_INSECURE", "1"),
    ])?;
    let p = dashboard_proc(&c)?;
    assert!(!p.cmdline.contains("--insecure"), "{p:?}");
    let logs = c.logs()?;
    let notes = logs.lines().filter(|l| l.starts_with("[dashboard] ")).count();
    assert!(notes >= 4, "expected the four [dashboard] notes:\n{logs}");
    // Without an auth provider the application itself refuses the public bind.
    c.wait_until("the application's refusal", DASHBOARD_TIMEOUT, || {
        Ok(c.logs()?.contains("Refusing to bind dashboard to 0.0.0.0"))
    })?;
    assert!(!c.listening_ports()?.contains(&9119));
    Ok(())
}

#[test]
fn dashboard_service_resets_home() -> Result<()> {
    let c = dashboard_container(&[("HERMES_DASHBOARD_HOST", "127.0.0.1")])?;
    let p = dashboard_proc(&c)?;
    let env = c.environ(&p)?;
    assert!(env.iter().any(|e| e == "HOME=/opt/data"), "{env:?}");
    Ok(())
}

#[test]
fn dashboard_service_resets_home_with_real_home() -> Result<()> {
    let c = dashboard_container(&[("HERMES_REAL_HOME", "/home/agent")])?;
    let p = dashboard_proc(&c)?;
    let env = c.environ(&p)?;
    assert!(env.iter().any(|e| e == "HOME=/home/agent"), "{env:?}");
    c.hermes_ok("mkdir -p /home/agent/.config/hermes-probe && touch /home/agent/.config/hermes-probe/ok")?;
    assert_eq!(
        c.root_ok("stat -c %U /home/agent/.config/hermes-probe/ok")?,
        "hermes"
    );
    Ok(())
}

#[test]
fn dashboard_does_not_auto_insecure_from_host() -> Result<()> {
    let c = dashboard_container(&[("HERMES_DASHBOARD_HOST", "0.0.0.0")])?;
    let p = dashboard_proc(&c)?;
    assert!(!p.cmdline.contains("--insecure"), "{p:?}");
    Ok(())
}

#[test]
fn static_services_controllable_by_runtime_user() -> Result<()> {
    // SP-03: root owns supervise/, the runtime group controls it.
    let c = Run::new().cmd(&["sleep", "infinity"]).start_ready()?;
    for svc in ["dashboard", "main-hermes"] {
        let dir = format!("/run/s6-rc/servicedirs/{svc}");
        assert_eq!(c.stat(&format!("{dir}/supervise"))?, "0:10000 710", "{svc}");
        assert_eq!(
            c.stat(&format!("{dir}/supervise/control"))?,
            "0:10000 620",
            "{svc}"
        );
    }
    let svc = "/run/service/main-hermes";
    c.hermes_ok(&format!("/command/s6-svc -d {svc}"))?;
    c.wait_until("main-hermes down", DASHBOARD_TIMEOUT, || {
        Ok(c.svstat(svc)?.stdout.starts_with("down"))
    })?;
    c.hermes_ok(&format!("/command/s6-svc -u {svc}"))?;
    c.wait_until("main-hermes up", DASHBOARD_TIMEOUT, || {
        Ok(c.svstat(svc)?.stdout.starts_with("up "))
    })?;
    c.hermes_ok(&format!("/command/s6-svok {svc}"))?;
    Ok(())
}

#[test]
fn docker_runtime_files_are_utf8_without_bom_and_lf_only() -> Result<()> {
    let root = docker_dir();
    let mut files = Vec::new();
    for sub in ["s6-rc.d", "cont-init.d"] {
        collect(&root.join(sub), &mut files)?;
    }
    for entry in std::fs::read_dir(&root)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "sh") {
            files.push(path);
        }
    }
    assert!(
        files.len() >= 8,
        "too few files found under {}: {files:?}",
        root.display()
    );
    for f in &files {
        let bytes = std::fs::read(f)?;
        assert!(!bytes.starts_with(b"\xEF\xBB\xBF"), "BOM in {}", f.display());
        assert!(!bytes.contains(&b'\r'), "CR in {}", f.display());
        assert!(std::str::from_utf8(&bytes).is_ok(), "not UTF-8: {}", f.display());
        if bytes.starts_with(b"#!") {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(f)?.permissions().mode();
            assert!(mode & 0o111 != 0, "script not executable: {}", f.display());
        }
    }
    Ok(())
}

fn collect(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}
