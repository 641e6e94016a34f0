//! stage2-setup as cont-init `01-hermes-setup` in a booted container (SPEC §2, §9 "stage2-setup").

use std::time::Duration;

use anyhow::Result;
use container_suite::*;

fn sleeper() -> Run {
    Run::new().cmd(&["sleep", "infinity"])
}

#[test]
fn puid_pgid_remaps_hermes_user() -> Result<()> {
    let c = sleeper().env("PUID", "1000").env("PGID", "1000").start_ready()?;
    assert_eq!(c.root_ok("id -u hermes")?, "1000");
    assert_eq!(c.root_ok("id -g hermes")?, "1000");
    c.hermes_ok("touch /opt/data/test_write")?;
    assert_eq!(c.stat("/opt/data/test_write")?, "1000:1000 644");
    Ok(())
}

#[test]
fn nas_low_uid_accepted() -> Result<()> {
    let c = sleeper().env("PUID", "99").env("PGID", "100").start_ready()?;
    assert_eq!(c.root_ok("id -u hermes")?, "99");
    assert_eq!(c.root_ok("id -g hermes")?, "100");
    Ok(())
}

#[test]
fn logs_gateways_seeded_and_hermes_owned() -> Result<()> {
    let c = sleeper().start_ready()?;
    for dir in ["/opt/data/logs", "/opt/data/logs/gateways"] {
        assert_eq!(
            c.root_ok(&format!("stat -c '%F %U' {dir}"))?,
            "directory hermes",
            "{dir}"
        );
    }
    Ok(())
}

#[test]
fn root_owned_state_files_repaired_on_boot() -> Result<()> {
    let c = sleeper().start_ready()?;
    let files = ["auth.json", "state.db", "gateway.lock", "gateway_state.json"];
    for f in files {
        c.root_ok(&format!(
            "echo '{{}}' > /opt/data/{f} && chown root:root /opt/data/{f}"
        ))?;
    }
    c.restart()?;
    for f in files {
        assert_eq!(
            c.root_ok(&format!("stat -c %U:%G /opt/data/{f}"))?,
            "hermes:hermes",
            "{f}"
        );
    }
    Ok(())
}

#[test]
fn non_allowlisted_host_file_not_touched() -> Result<()> {
    let c = sleeper().start_ready()?;
    c.root_ok("echo secret > /opt/data/host_secret.json && chown root:root /opt/data/host_secret.json")?;
    c.restart()?;
    assert_eq!(
        c.root_ok("stat -c %U:%G /opt/data/host_secret.json")?,
        "root:root"
    );
    Ok(())
}

#[test]
fn symlinked_allowlisted_file_not_chowned() -> Result<()> {
    let home = HostDir::new()?;
    std::os::unix::fs::symlink("/etc/passwd", home.join("auth.json"))?;
    let c = sleeper().volume(home.as_str(), "/opt/data").start_ready()?;
    let meta = std::fs::symlink_metadata(home.join("auth.json"))?;
    assert!(meta.file_type().is_symlink(), "auth.json is no longer a symlink");
    assert_eq!(
        c.root_ok("stat -c %U:%G /etc/passwd")?,
        "root:root",
        "the link target was chowned"
    );
    let logs = c.logs()?;
    assert!(
        logs.lines()
            .any(|l| l.contains("refusing") && l.contains("auth.json")),
        "no refusal logged:\n{logs}"
    );
    Ok(())
}

#[test]
fn stage2_repairs_profiles_and_cron_ownership() -> Result<()> {
    let c = sleeper().start_ready()?;
    c.root_ok(
        "mkdir -p /opt/data/profiles/testprof /opt/data/cron && \
         echo x > /opt/data/profiles/testprof/marker && echo '{}' > /opt/data/cron/root_owned.json && \
         chown -R root:root /opt/data/profiles/testprof /opt/data/cron/root_owned.json",
    )?;
    c.restart()?;
    for f in [
        "/opt/data/profiles/testprof/marker",
        "/opt/data/cron/root_owned.json",
    ] {
        assert_eq!(c.root_ok(&format!("stat -c %U:%G {f}"))?, "hermes:hermes", "{f}");
    }
    Ok(())
}

#[test]
fn seeds_running_state_on_blank_volume() -> Result<()> {
    let c = sleeper()
        .env("HERMES_GATEWAY_BOOTSTRAP_STATE", "running")
        .start_ready()?;
    let state = c.root_ok("cat /opt/data/gateway_state.json")?;
    let v: serde_json::Value = serde_json::from_str(&state)?;
    assert_eq!(v["gateway_state"], "running", "{state}");
    assert_eq!(c.stat("/opt/data/gateway_state.json")?, "10000:10000 644");
    Ok(())
}

#[test]
fn no_seed_when_env_unset() -> Result<()> {
    let c = sleeper().start_ready()?;
    assert!(
        !c.root("test -e /opt/data/gateway_state.json")?.ok(),
        "gateway_state.json was created"
    );
    Ok(())
}

#[test]
fn non_running_value_ignored() -> Result<()> {
    let c = sleeper()
        .env("HERMES_GATEWAY_BOOTSTRAP_STATE", "stopped")
        .start_ready()?;
    assert!(
        !c.root("test -e /opt/data/gateway_state.json")?.ok(),
        "gateway_state.json was created"
    );
    Ok(())
}

#[test]
fn does_not_seed_gateway_state_through_symlink() -> Result<()> {
    let home = HostDir::new()?;
    std::os::unix::fs::symlink("/tmp/planted-state.json", home.join("gateway_state.json"))?;
    let c = sleeper()
        .volume(home.as_str(), "/opt/data")
        .env("HERMES_GATEWAY_BOOTSTRAP_STATE", "running")
        .start_ready()?;
    let meta = std::fs::symlink_metadata(home.join("gateway_state.json"))?;
    assert!(
        meta.file_type().is_symlink(),
        "gateway_state.json is no longer a symlink"
    );
    assert!(
        !c.root("test -e /tmp/planted-state.json")?.ok(),
        "seeded through the symlink"
    );
    let logs = c.logs()?;
    assert!(
        logs.lines()
            .any(|l| l.contains("refusing") && l.contains("gateway_state.json")),
        "no refusal logged:\n{logs}"
    );
    Ok(())
}

#[test]
fn config_migration_runs_on_boot() -> Result<()> {
    let c = sleeper().start_ready()?;
    assert_eq!(c.stat("/opt/data/config.yaml")?, "10000:10000 640");
    let logs = c.logs()?;
    // The image's migration helper (a test double) reports the identity it ran with.
    assert!(
        logs.contains("[config-migrate] test double checked /opt/data/config.yaml as uid 10000 gid 10000"),
        "migration helper did not run as hermes:\n{logs}"
    );
    Ok(())
}

#[test]
fn first_boot_seeds_env_and_soul() -> Result<()> {
    let c = sleeper().start_ready()?;
    assert_eq!(c.stat("/opt/data/.env")?, "10000:10000 600");
    assert_eq!(c.stat("/opt/data/SOUL.md")?, "10000:10000 644");
    let key = c.root_ok("grep -c '^API_SERVER_KEY=[0-9a-f]\\{64\\}$' /opt/data/.env")?;
    assert_eq!(key, "1", "no generated API_SERVER_KEY line");
    Ok(())
}

#[test]
fn stage2_discovers_chromium_binary() -> Result<()> {
    let c = sleeper().start_ready()?;
    let path = c.root_ok("cat /run/s6/container_environment/AGENT_BROWSER_EXECUTABLE_PATH")?;
    assert!(!path.is_empty(), "no browser path exported");
    let base = path.rsplit('/').next().unwrap_or_default();
    assert!(
        ["chrome", "chromium", "chromium-browser"].contains(&base),
        "basename {base}"
    );
    c.root_ok(&format!("test -x '{path}' && test -f '{path}'"))?;
    let headless =
        c.root_ok("find /opt/hermes/tools -name 'chrome-headless-shell' -o -name headless_shell")?;
    assert!(headless.is_empty(), "the image has a headless shell: {headless}");
    let version = c.hermes_ok(&format!("'{path}' --version"))?;
    assert!(version.contains("Chrom"), "{version}");
    // The main program sees it too (stage2 exports reach the command, SPEC MW-05).
    let r = Run::new()
        .cmd(&["sh", "-c", "echo \"BROWSER=$AGENT_BROWSER_EXECUTABLE_PATH\""])
        .run_to_end(Duration::from_secs(60))?;
    assert!(r.stdout.contains(&format!("BROWSER={path}")), "{r}");
    Ok(())
}

#[test]
fn container_sets_hosted_write_policy_env() -> Result<()> {
    let r = Run::new()
        .opt("--entrypoint")
        .opt("/opt/hermes/docker/bin/main-wrapper")
        .cmd(&[
            "sh",
            "-c",
            "echo HH=$HERMES_HOME; echo WSR=$HERMES_WRITE_SAFE_ROOT; echo TMPDIR=${TMPDIR-unset}; \
             echo LAZY=${HERMES_DISABLE_LAZY_INSTALLS-unset}; echo PDWB=$PYTHONDONTWRITEBYTECODE",
        ])
        .run_to_end(Duration::from_secs(60))?;
    assert_eq!(r.code, 0, "{r}");
    for want in [
        "HH=/opt/data",
        "WSR=/opt/data:/tmp/hermes-files",
        "TMPDIR=unset",
        // The venv is sealed: the application must not pip-install at run time (upstream's image contract).
        "LAZY=1",
        "PDWB=1",
    ] {
        assert!(r.stdout.lines().any(|l| l == want), "missing {want}: {r}");
    }
    Ok(())
}

#[test]
fn container_initializes_private_file_scratch_dir() -> Result<()> {
    let c = sleeper().start_ready()?;
    assert_eq!(
        c.root_ok("stat -c '%F %U:%G %a' /tmp/hermes-files")?,
        "directory hermes:hermes 700"
    );
    c.hermes_ok("echo ok > /tmp/hermes-files/probe && test -s /tmp/hermes-files/probe")?;
    Ok(())
}

#[test]
fn container_boots_when_scratch_chown_fails() -> Result<()> {
    let c = sleeper().opt("--cap-drop").opt("CHOWN").start_ready()?;
    assert_eq!(
        c.root_ok("stat -c '%F %U:%G %a' /tmp/hermes-files")?,
        "directory root:root 700"
    );
    assert!(
        !c.hermes("touch /tmp/hermes-files/probe")?.ok(),
        "hermes could write the root-owned dir"
    );
    // The rest of the boot still happened: services supervised, command running.
    assert!(c.running()?);
    // Asked as root: without CAP_CHOWN supervise-perms cannot give the runtime group control of the
    // static services either, so the runtime user cannot read their status.
    assert!(c
        .root_ok("/command/s6-svstat /run/service/main-hermes")?
        .starts_with("up "));
    // reconcile-profiles published the default slot root's alone (no group control without
    // CAP_CHOWN) and said so in one warning (the registrar had nothing to build).
    assert_eq!(
        c.root_ok("stat -c '%U:%G %a' /run/service/gateway-default/supervise/control")?,
        "root:root 620"
    );
    c.root_ok("test -f /run/service/gateway-default/run && ! test -e /run/service/.gateway-default.tmp")?;
    let logs = c.logs()?;
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.starts_with("reconcile: WARNING"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(
        warnings[0].contains("EPERM") && warnings[0].contains("hermes cannot control gateways"),
        "{logs}"
    );
    Ok(())
}

#[test]
fn hermes_user_cannot_modify_install_but_can_write_data() -> Result<()> {
    let c = sleeper().start_ready()?;
    let r = c.hermes("echo x >> /opt/hermes/docker/SOUL.md")?;
    assert!(!r.ok(), "hermes appended to the install: {r}");
    assert!(!c.hermes("touch /opt/hermes/docker/bin/planted")?.ok());
    c.hermes_ok("mkdir -p /opt/data/skills/probe && echo ok > /opt/data/skills/probe/SKILL.md")?;
    Ok(())
}

/// A character device node owned by `gid` at /dev/dri/renderD128, then stage2-setup rerun as root.
fn render_node(c: &Container, gid: u32) -> Result<Finished> {
    c.root_ok(&format!(
        "mkdir -p /dev/dri && mknod /dev/dri/renderD128 c 226 128 && chgrp {gid} /dev/dri/renderD128"
    ))?;
    c.root("/opt/hermes/docker/bin/stage2-setup")
}

#[test]
fn render_node_gid_survives_privilege_drop() -> Result<()> {
    let c = sleeper().start_ready()?;
    let r = render_node(&c, 64000)?;
    assert_eq!(r.code, 0, "{r}");
    let groups = c.hermes_ok("id -G")?;
    assert!(
        groups.split_whitespace().any(|g| g == "64000"),
        "groups: {groups}"
    );
    // main-wrapper's privilege drop (MW-11) keeps the group for the programs it starts.
    let dropped = c.root_ok("/opt/hermes/docker/bin/main-wrapper id -G")?;
    assert!(
        dropped.split_whitespace().any(|g| g == "64000"),
        "after main-wrapper's drop: {dropped}"
    );
    Ok(())
}

#[test]
fn existing_group_name_is_reused_not_duplicated() -> Result<()> {
    let c = sleeper().start_ready()?;
    let r = render_node(&c, 44)?;
    assert_eq!(r.code, 0, "{r}");
    let groups = c.hermes_ok("id -G")?;
    assert!(groups.split_whitespace().any(|g| g == "44"), "groups: {groups}");
    let count = c.root_ok("cut -d: -f3 /etc/group | grep -cx 44")?;
    assert_eq!(count, "1", "{}", c.root_ok("cat /etc/group")?);
    Ok(())
}

#[test]
fn rerun_is_idempotent() -> Result<()> {
    let c = sleeper().start_ready()?;
    let first = render_node(&c, 64001)?;
    assert_eq!(first.code, 0, "{first}");
    let groups = c.hermes_ok("id -G")?;
    let again = c.root("/opt/hermes/docker/bin/stage2-setup")?;
    assert_eq!(again.code, 0, "{again}");
    assert!(!again.all().contains("Added hermes to group"), "{again}");
    assert_eq!(c.hermes_ok("id -G")?, groups);
    Ok(())
}

#[test]
fn root_owned_node_does_not_grant_root_group() -> Result<()> {
    let c = sleeper().start_ready()?;
    let r = render_node(&c, 0)?;
    assert_eq!(r.code, 0, "{r}");
    let groups = c.hermes_ok("id -G")?;
    assert!(!groups.split_whitespace().any(|g| g == "0"), "groups: {groups}");
    Ok(())
}

#[test]
fn invalid_puid_is_ignored_with_a_warning() -> Result<()> {
    let c = sleeper().env("PUID", "0").start_ready()?;
    assert_eq!(c.root_ok("id -u hermes")?, "10000");
    let logs = c.logs()?;
    assert!(logs.contains("ignoring PUID='0'"), "{logs}");
    Ok(())
}

/// The `change` events of a `--json` run, sorted (parallel work reports in the order it finishes).
fn json_changes(c: &Container, args: &str) -> Result<Vec<serde_json::Value>> {
    let r = c.exec_as("root", &format!("/opt/hermes/docker/bin/stage2-setup {args}"))?;
    anyhow::ensure!(r.code == 0, "stage2-setup {args}: {r}");
    let mut v = Vec::new();
    for l in r.stdout.lines() {
        let o: serde_json::Value = serde_json::from_str(l)
            .map_err(|e| anyhow::anyhow!("stdout line is not JSON ({e}): {l}\n{r}"))?;
        v.push(o);
    }
    anyhow::ensure!(
        v.last().is_some_and(|s| s["type"] == "summary" && s["exit"] == 0),
        "no closing summary: {r}"
    );
    let mut changes: Vec<_> = v.into_iter().filter(|o| o["type"] == "change").collect();
    changes.sort_by_key(|o| o.to_string());
    Ok(changes)
}

#[test]
fn json_plan_on_the_real_image_is_what_the_real_run_then_does() -> Result<()> {
    let c = sleeper().start_ready()?;
    // Drift a booted container picks up: a file left by root in a repaired tree, a .env made readable.
    c.root_ok("touch /opt/data/cron/left-by-root && chmod 644 /opt/data/.env")?;
    let plan = json_changes(&c, "--dry-run --json")?;
    let chown = plan
        .iter()
        .find(|o| o["action"] == "chown" && o["path"] == "/opt/data/cron/left-by-root");
    assert!(chown.is_some_and(|o| o["old_owner"]["uid"] == 0), "{plan:#?}");
    assert!(
        plan.iter()
            .any(|o| o["action"] == "chmod" && o["path"] == "/opt/data/.env" && o["new_mode"] == "0600"),
        "{plan:#?}"
    );
    let real = json_changes(&c, "--json")?;
    assert_eq!(plan, real, "the real run did other than its plan");
    assert_eq!(c.stat("/opt/data/cron/left-by-root")?, "10000:10000 644");
    // Repaired: what is left to plan is only the helpers every boot runs.
    let again = json_changes(&c, "--dry-run --json")?;
    assert!(again.iter().all(|o| o["action"] == "run"), "{again:#?}");
    Ok(())
}
