//! The image contract (SPEC SV-06) and whole-container scenarios: read-only root, restart with a
//! named volume, a bind-mounted home after a remap, the profile gateway lifecycle, docker stop.

use std::time::Duration;

use anyhow::Result;
use container_suite::*;

const SVC_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn image_contract() -> Result<()> {
    let img = image();
    let cfg = |f: &str| docker_checked(&["image", "inspect", "-f", f, &img]);
    assert_eq!(
        cfg("{{json .Config.Entrypoint}}")?,
        r#"["/opt/hermes/docker/bin/main-wrapper"]"#
    );
    let cmd = cfg("{{json .Config.Cmd}}")?;
    assert!(cmd == "null" || cmd == "[]", "CMD {cmd}");
    assert_eq!(cfg("{{.Config.User}}")?, "");
    assert!(cfg("{{json .Config.Volumes}}")?.contains("\"/opt/data\""));
    let env = cfg("{{json .Config.Env}}")?;
    for want in [
        "HERMES_HOME=/opt/data",
        "HERMES_WRITE_SAFE_ROOT=/opt/data:/tmp/hermes-files",
        "PLAYWRIGHT_BROWSERS_PATH=/opt/hermes/tools",
        "PYTHONUNBUFFERED=1",
        "PYTHONDONTWRITEBYTECODE=1",
        "PATH=/opt/hermes/bin:/opt/hermes/.venv/bin:/usr/local/sbin:",
        "HERMES_DISABLE_LAZY_INSTALLS=1",
        "S6_BEHAVIOUR_IF_STAGE2_FAILS=2",
        "S6_CMD_RECEIVE_SIGNALS=1",
    ] {
        assert!(env.contains(want), "ENV lacks {want}: {env}");
    }
    assert!(!env.contains("TMPDIR="), "{env}");
    // Root's PATH holds no directory the runtime user can write.
    let path = env
        .split('"')
        .find(|e| e.starts_with("PATH="))
        .unwrap_or_default();
    assert!(!path.contains("/opt/data"), "{path}");
    assert!(cfg("{{json .Config.ExposedPorts}}")?.contains("9119/tcp"));
    let labels = cfg("{{json .Config.Labels}}")?;
    for want in [
        r#""org.opencontainers.image.title":"hermes-agent""#,
        r#""org.opencontainers.image.version":"0.19.0""#,
    ] {
        assert!(labels.contains(want), "labels lack {want}: {labels}");
    }

    // Inside, without booting: a plain shell as entrypoint.
    let r = Run::new()
        .opt("--entrypoint")
        .opt("/bin/sh")
        .cmd(&[
            "-c",
            r#"set -e
for p in stage2-setup supervise-perms reconcile-profiles main-wrapper; do
  stat -c "bin %n %U:%G %a" /opt/hermes/docker/bin/$p
done
for l in /opt/hermes/bin/hermes /opt/hermes/docker/main-wrapper.sh /opt/hermes/docker/entrypoint-dispatch.sh /opt/hermes/docker/stage2-hook.sh; do
  echo "link $l -> $(readlink -f $l)"
done
for f in 01-hermes-setup 015-supervise-perms 02-reconcile-profiles; do
  echo "init $f $(stat -c %a /etc/cont-init.d/$f) $(wc -l < /etc/cont-init.d/$f) $(head -1 /etc/cont-init.d/$f)"
done
echo "passwd $(grep '^hermes:' /etc/passwd | cut -d: -f3,4,6)"
echo "group $(grep '^hermes:' /etc/group | cut -d: -f3)"
echo "writable-by-others $(find /opt/hermes -perm -o+w ! -type l | wc -l)"
echo "subcommands $(grep -cxE 'chat|gateway|dashboard|profile|config|mcp|login' /etc/hermes/cli-subcommands)"
echo "browser-path-bytes $(tail -c1 /etc/hermes/agent-browser-executable-path | od -An -c | tr -d ' ')"
echo "app $(/opt/hermes/.venv/bin/python -c 'import importlib.metadata as m, sys; print(m.version("hermes-agent"), sys.version_info[:2])')"
echo "venv-writable-by-hermes $(su -s /bin/sh hermes -c 'test -w /opt/hermes/.venv/bin && echo yes || echo no')"
echo "install-method $(cat /opt/hermes/.install_method)"
echo "provenance $(stat -c %a /etc/hermes/image-provenance.json) $(cat /etc/hermes/image-provenance.json)"
echo "user-bundle $(ls /etc/s6-overlay/user-bundles.d/user/contents.d | tr '\n' ' ')"
echo "old-bundle $(test -e /etc/s6-overlay/s6-rc.d/user && echo present || echo absent)"
echo "s6-overlay $(ls -d /package/admin/s6-overlay-[0-9]*)"
echo "tini $(stat -c %a /usr/bin/tini)"
echo "profile-d $(test -r /etc/profile.d/hermes.sh && echo yes)"
"#,
        ])
        .run_to_end(Duration::from_secs(60))?;
    assert_eq!(r.code, 0, "{r}");
    let out = r.stdout;
    for p in [
        "stage2-setup",
        "supervise-perms",
        "reconcile-profiles",
        "main-wrapper",
    ] {
        assert!(
            out.contains(&format!("bin /opt/hermes/docker/bin/{p} root:root 755")),
            "{p}:\n{out}"
        );
    }
    for (link, target) in [
        ("/opt/hermes/bin/hermes", "main-wrapper"),
        ("/opt/hermes/docker/main-wrapper.sh", "main-wrapper"),
        ("/opt/hermes/docker/entrypoint-dispatch.sh", "main-wrapper"),
        ("/opt/hermes/docker/stage2-hook.sh", "stage2-setup"),
    ] {
        assert!(
            out.contains(&format!("link {link} -> /opt/hermes/docker/bin/{target}")),
            "{link}:\n{out}"
        );
    }
    for f in ["01-hermes-setup", "015-supervise-perms", "02-reconcile-profiles"] {
        assert!(
            out.contains(&format!("init {f} 755 2 #!/command/with-contenv /bin/sh")),
            "{f}:\n{out}"
        );
    }
    assert!(out.contains("passwd 10000:10000:/opt/data"), "{out}");
    assert!(out.contains("group 10000"), "{out}");
    assert!(out.contains("writable-by-others 0"), "{out}");
    assert!(out.contains("subcommands 7"), "{out}");
    assert!(out.contains("app 0.19.0 (3, 13)"), "{out}");
    assert!(out.contains("venv-writable-by-hermes no"), "{out}");
    assert!(out.contains("install-method docker"), "{out}");
    assert!(
        out.contains(r#"provenance 444 {"deployment_kind":"image","#)
            && out.contains(r#""version":"0.19.0"}"#),
        "{out}"
    );
    assert!(
        out.contains("user-bundle dashboard gateways main-hermes profile-registrar "),
        "{out}"
    );
    assert!(out.contains("old-bundle absent"), "{out}");
    assert!(
        out.contains("s6-overlay /package/admin/s6-overlay-3.2.3.2"),
        "{out}"
    );
    assert!(out.contains("tini 755"), "{out}");
    assert!(out.contains("profile-d yes"), "{out}");
    assert!(
        !out.contains("browser-path-bytes \\n"),
        "trailing newline in the baked browser path:\n{out}"
    );
    Ok(())
}

#[test]
fn read_only_root_with_tmpfs_run_boots() -> Result<()> {
    // /etc is read-only, so the requested remap cannot happen: the boot warns and goes on with
    // the identity the image has.
    let c = Run::new()
        .opt("--read-only")
        .opt("--tmpfs")
        .opt("/run:rw,exec,mode=755")
        .opt("--tmpfs")
        .opt("/tmp:rw,mode=1777")
        .env("PUID", "1000")
        .cmd(&["sleep", "infinity"])
        .start_ready()?;
    assert_eq!(c.root_ok("id -u hermes")?, "10000");
    let logs = c.logs()?;
    assert!(logs.contains("/etc/"), "no warning naming /etc:\n{logs}");
    c.wait_until("main-hermes up", SVC_TIMEOUT, || {
        Ok(c.svstat("/run/service/main-hermes")?.stdout.starts_with("up "))
    })?;
    assert_eq!(c.root_ok("/opt/hermes/docker/bin/main-wrapper id -u")?, "10000");
    assert!(
        !c.root("touch /opt/hermes/probe")?.ok(),
        "the root filesystem is writable"
    );
    Ok(())
}

#[test]
fn restart_with_named_volume_keeps_profiles_and_state_and_rebuilds_run() -> Result<()> {
    let vol = Volume::new()?;
    let c = Run::new()
        .volume(&vol.name, "/opt/data")
        .cmd(&["sleep", "infinity"])
        .start_ready()?;
    let r = c.hermes("hermes profile create keeper && hermes -p keeper gateway start")?;
    assert!(r.ok(), "{r}");
    c.wait_until("gateway-keeper up", SVC_TIMEOUT, || {
        Ok(c.svstat("/run/service/gateway-keeper")?.stdout.starts_with("up "))
    })?;
    c.root_ok("touch /run/service/.stale-marker /run/s6/stale-marker")?;
    c.restart()?;
    c.root_ok("test -f /opt/data/profiles/keeper/SOUL.md")?;
    let state = c.root_ok("cat /opt/data/profiles/keeper/gateway_state.json")?;
    assert!(state.contains("running"), "{state}");
    assert!(
        !c.root("test -e /run/service/.stale-marker || test -e /run/s6/stale-marker")?
            .ok(),
        "/run kept"
    );
    c.wait_until("gateway-keeper up again", SVC_TIMEOUT, || {
        Ok(c.svstat("/run/service/gateway-keeper")?.stdout.starts_with("up "))
    })?;
    let log = c.root_ok("cat /opt/data/logs/container-boot.log")?;
    assert!(
        log.contains("profile=keeper prior_state=running action=started"),
        "{log}"
    );
    Ok(())
}

#[test]
fn bind_mounted_home_foreign_file_untouched_after_puid_remap() -> Result<()> {
    use std::os::unix::fs::chown;
    let home = HostDir::new()?;
    let foreign = home.join("notes-from-host.txt");
    std::fs::write(&foreign, "host data\n")?;
    chown(&foreign, Some(4242), Some(4242))?;
    let c = Run::new()
        .volume(home.as_str(), "/opt/data")
        .env("PUID", "1000")
        .env("PGID", "1000")
        .cmd(&["sleep", "infinity"])
        .start_ready()?;
    assert_eq!(c.root_ok("id -u hermes")?, "1000");
    assert_eq!(host_owner(&foreign)?, (4242, 4242), "the host file was re-owned");
    assert_eq!(
        host_owner(&home.path)?,
        (1000, 1000),
        "HERMES_HOME was not handed to the new uid"
    );
    assert_eq!(host_owner(&home.join("logs"))?, (1000, 1000));
    Ok(())
}

#[test]
fn profile_gateway_lifecycle_as_runtime_user() -> Result<()> {
    let c = Run::new().cmd(&["sleep", "infinity"]).start_ready()?;
    let slot = "/run/service/gateway-life";
    let r = c.hermes("hermes profile create life")?;
    assert!(r.ok(), "{r}");
    // The application's own registration goes through the registrar: no warning, and the slot exists
    // when the command returns.
    assert!(!r.all().contains("Could not register"), "{r}");
    assert!(c.root("test -d /run/service/gateway-life")?.ok(), "{r}");
    c.wait_until("a supervisor on gateway-life", SVC_TIMEOUT, || {
        Ok(c.svstat(slot)?.ok())
    })?;
    assert!(c.svstat(slot)?.stdout.starts_with("down"));

    c.hermes_ok("hermes -p life gateway start")?;
    c.wait_until("gateway-life up", SVC_TIMEOUT, || {
        Ok(c.svstat(slot)?.stdout.starts_with("up "))
    })?;
    let gw = c.processes_matching("-p life gateway run --replace")?;
    assert_eq!(gw.len(), 1, "{}", ps_table(&gw));
    assert_eq!(gw[0].uid, HERMES_UID);

    c.hermes_ok("hermes -p life gateway stop")?;
    c.wait_until("gateway-life down", SVC_TIMEOUT, || {
        Ok(c.svstat(slot)?.stdout.starts_with("down"))
    })?;
    c.wait_until("the gateway process to end", SVC_TIMEOUT, || {
        Ok(c.processes_matching("-p life gateway run")?.is_empty())
    })
}

#[test]
fn docker_stop_ends_services_and_keeps_exit_status() -> Result<()> {
    let c = Run::new()
        .env("HERMES_DASHBOARD", "1")
        .env("HERMES_GATEWAY_BOOTSTRAP_STATE", "running")
        .cmd(&["sh", "-c", "trap 'exit 7' TERM; while :; do sleep 0.2; done"])
        .start_ready()?;
    c.wait_until("gateway and dashboard processes", SVC_TIMEOUT, || {
        Ok(!c.processes_matching("gateway run --replace")?.is_empty()
            && !c.processes_matching("hermes dashboard")?.is_empty())
    })?;
    // Until its platforms are connected the gateway has not installed its signal handlers yet.
    c.wait_until(
        "the gateway's API server connected",
        Duration::from_secs(40),
        || {
            Ok(
                c.root("grep -q '\"state\":\"connected\"' /opt/data/gateway_state.json")?
                    .ok(),
            )
        },
    )?;
    let code = c.stop()?;
    assert_eq!(code, 7, "the main program's status was not kept\n{}", c.logs()?);
    let logs = c.logs()?;
    // The gateway got SIGTERM from its supervisor (the "gateways" oneshot), not the final kill, and
    // finished its own teardown: its clean-stop line is in its log on the volume.
    assert!(
        logs.contains("Shutdown context: signal=SIGTERM") && logs.contains("parent_name=s6-supervise"),
        "{logs}"
    );
    let gateway_log = c.volume_file("logs/gateway.log")?;
    assert!(
        gateway_log.contains("Gateway stopped (total teardown"),
        "no clean stop in gateway.log:\n{gateway_log}"
    );
    // s6-rc brought the dashboard down with SIGTERM and saw it exit.
    assert!(
        logs.contains("s6-rc: info: service dashboard successfully stopped"),
        "{logs}"
    );
    assert!(
        logs.contains("s6-rc: info: service gateways successfully stopped"),
        "{logs}"
    );
    Ok(())
}
