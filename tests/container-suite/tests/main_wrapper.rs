//! main-wrapper in the image: routing, exit codes, TTY, reaping, the working
//! directory and the `docker exec` shim (SPEC §5, §9 "main-wrapper").

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use container_suite::*;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn chat_subcommand_passthrough() -> Result<()> {
    let r = Run::new().cmd(&["chat", "--help"]).run_to_end(RUN_TIMEOUT)?;
    assert_eq!(r.code, 0, "{r}");
    let out = r.all().to_lowercase();
    assert!(out.contains("usage: hermes chat"), "{r}");
    Ok(())
}

#[test]
fn subcommands_named_like_a_program_on_path_reach_hermes() -> Result<()> {
    // The test image has /usr/bin/login and a decoy /usr/local/bin/mcp.
    for name in ["mcp", "login"] {
        let r = Run::new().cmd(&[name, "--help"]).run_to_end(RUN_TIMEOUT)?;
        assert_eq!(r.code, 0, "{name}: {r}");
        assert!(r.stdout.contains(&format!("usage: hermes {name}")), "{name}: {r}");
        assert!(!r.all().contains("decoy"), "{name} reached the PATH program: {r}");
    }
    Ok(())
}

#[test]
fn bash_pattern() -> Result<()> {
    let r = Run::new()
        .cmd(&["bash", "-c", "echo ok"])
        .run_to_end(RUN_TIMEOUT)?;
    assert_eq!(r.code, 0, "{r}");
    // Boot and shutdown lines share stdout; the command's own line must be there.
    assert!(r.stdout.lines().any(|l| l == "ok"), "{r}");
    Ok(())
}

#[test]
fn container_exit_code_matches_inner_exit() -> Result<()> {
    let r = Run::new().cmd(&["sh", "-c", "exit 42"]).run_to_end(RUN_TIMEOUT)?;
    assert_eq!(r.code, 42, "{r}");
    Ok(())
}

#[test]
fn tty_passthrough_to_container() -> Result<()> {
    let c = Run::new()
        .opt("-t")
        .env("COLUMNS", "123")
        .cmd(&[
            "sh",
            "-c",
            r#"if [ -t 0 ] && [ -t 1 ]; then echo TTY_MARKER; fi; echo "COLUMNS_MARKER=${COLUMNS:-0}""#,
        ])
        .create()?;
    // `script` gives `docker start -a` a pseudo-terminal, as an interactive user would.
    let out = Command::new("script")
        .args(["-qec", &format!("docker start -a {}", c.id), "/dev/null"])
        .output()
        .context("cannot run script(1); install bsdutils")?;
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let code = c.wait_exit(RUN_TIMEOUT)?.code;
    assert_eq!(code, 0, "output:\n{text}");
    assert!(text.contains("TTY_MARKER"), "no TTY in the container:\n{text}");
    let cols: i64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("COLUMNS_MARKER="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(cols > 0, "no positive column count:\n{text}");
    Ok(())
}

#[test]
fn orphan_zombies_reaped() -> Result<()> {
    // The inner sh exits at once, so its `sleep 1` child is re-parented to PID 1.
    let c = Run::new()
        .cmd(&["sh", "-c", "sh -c 'sleep 1 &'; exec sleep 60"])
        .start_ready()?;
    c.wait_until(
        "the orphan to exit and be reaped",
        Duration::from_secs(10),
        || {
            let procs = c.processes()?;
            let orphan_alive = procs
                .iter()
                .any(|p| p.cmdline.trim() == "sleep 1" && p.state != 'Z');
            let zombies = procs.iter().filter(|p| p.state == 'Z').count();
            Ok(!orphan_alive && zombies == 0)
        },
    )?;
    let zombies: Vec<Proc> = c.processes()?.into_iter().filter(|p| p.state == 'Z').collect();
    assert!(zombies.is_empty(), "zombies left:\n{}", ps_table(&zombies));
    Ok(())
}

#[test]
fn user_pinned_to_hermes_uid_works() -> Result<()> {
    let r = Run::new()
        .user("10000:10000")
        .cmd(&["sh", "-c", "echo OK"])
        .run_to_end(RUN_TIMEOUT)?;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.lines().any(|l| l.trim() == "OK"), "{r}");
    Ok(())
}

#[test]
fn main_wrapper_preserves_docker_workdir() -> Result<()> {
    let r = Run::new()
        .workdir("/tmp")
        .cmd(&["sh", "-c", "pwd"])
        .run_to_end(RUN_TIMEOUT)?;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.lines().any(|l| l == "/tmp"), "{r}");
    assert!(!r.stdout.lines().any(|l| l == "/"), "{r}");
    Ok(())
}

#[test]
fn hermes_help() -> Result<()> {
    let r = Run::new().cmd(&["--help"]).run_to_end(RUN_TIMEOUT)?;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("usage: hermes"), "{r}");
    assert!(!r.all().contains("Traceback"), "{r}");
    Ok(())
}

#[test]
fn dashboard_subcommand_present() -> Result<()> {
    let r = Run::new().cmd(&["dashboard", "--help"]).run_to_end(RUN_TIMEOUT)?;
    assert_eq!(r.code, 0, "{r}");
    let out = r.all().to_lowercase();
    assert!(out.contains("dashboard") || out.contains("usage"), "{r}");
    Ok(())
}

#[test]
fn program_runs_as_hermes_with_home_and_venv() -> Result<()> {
    let r = Run::new()
        .cmd(&[
            "sh",
            "-c",
            r#"echo "IDS=$(id -u):$(id -g)"; echo "HOME=$HOME"; echo "VENV=$VIRTUAL_ENV"; echo "HERMES=$(command -v hermes)""#,
        ])
        .run_to_end(RUN_TIMEOUT)?;
    assert_eq!(r.code, 0, "{r}");
    // The boot's own lines share stdout, so only the marked lines count. The venv comes first on
    // PATH after activation (MW-09).
    for want in [
        "IDS=10000:10000",
        "HOME=/opt/data",
        "VENV=/opt/hermes/.venv",
        "HERMES=/opt/hermes/.venv/bin/hermes",
    ] {
        assert!(r.stdout.lines().any(|l| l == want), "missing {want}: {r}");
    }
    Ok(())
}

#[test]
fn shim_drops_root_to_hermes_uid() -> Result<()> {
    let c = Run::new().cmd(&["sleep", "infinity"]).start_ready()?;
    c.root_ok("rm -f /opt/data/config.yaml")?;
    let r = c.root("hermes config set model.default shim-test")?;
    assert!(r.ok(), "{r}");
    assert_eq!(c.root_ok("stat -c %U:%G /opt/data/config.yaml")?, "hermes:hermes");
    Ok(())
}

#[test]
fn e2e_login_then_supervised_gateway_can_read_auth() -> Result<()> {
    let c = Run::new().cmd(&["sleep", "infinity"]).start_ready()?;
    let r = c.root("hermes config set provider nous")?;
    assert!(r.ok(), "{r}");
    let unreadable = c.hermes_ok("find /opt/data -maxdepth 2 ! -readable")?;
    assert!(unreadable.is_empty(), "not readable by hermes:\n{unreadable}");
    Ok(())
}

#[test]
fn shim_keeps_root_when_asked() -> Result<()> {
    // HERMES_DOCKER_EXEC_AS_ROOT=1 keeps root for the real hermes (SPEC MW-12): the file it
    // writes is root-owned.
    let c = Run::new().cmd(&["sleep", "infinity"]).start_ready()?;
    c.root_ok("rm -f /opt/data/config.yaml")?;
    let out = docker(&[
        "exec",
        "-e",
        "HERMES_DOCKER_EXEC_AS_ROOT=1",
        &c.id,
        "hermes",
        "config",
        "set",
        "k",
        "v",
    ])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(c.root_ok("stat -c %U /opt/data/config.yaml")?, "root");
    Ok(())
}
