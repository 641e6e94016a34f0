//! The s6-overlay 3.2.3.0 compatibility boot: the image built on the previous release still boots, runs
//! the command with the runtime user's identity, brings up the user bundle (read from `s6-rc.d/user`,
//! the only place 3.2.3.0 looks) and keeps the command's exit status on `docker stop`.

use std::path::PathBuf;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{capture, docker_ok, inputs};
use crate::setup;

const COMPAT_IMAGE: &str = "hermes-boot:test-s6-3.2.3.0";
const COMPAT_DIR_ENV: &str = "HERMES_S6_OVERLAY_COMPAT_DIR";

fn source() -> Result<PathBuf> {
    let dir = match std::env::var_os(COMPAT_DIR_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => setup::workspace_root().join("../shared/s6-overlay/3.2.3.0"),
    };
    if !dir.join("SHA256SUMS").is_file() {
        bail!(
            "{}: no s6-overlay 3.2.3.0 release files (set {COMPAT_DIR_ENV}, or pass --no-compat)",
            dir.display()
        );
    }
    Ok(dir)
}

pub fn check() -> Result<()> {
    let dir = source()?;
    let version = inputs::s6_overlay_version(&dir)?;
    if version != "3.2.3.0" {
        bail!("{}: holds s6-overlay {version}, not 3.2.3.0", dir.display());
    }
    let root = setup::workspace_root();
    super::build_test_image(&root, COMPAT_IMAGE, &dir)?;

    let out = Command::new("docker")
        .args(["run", "--rm", COMPAT_IMAGE, "sh", "-c"])
        .arg("echo pid1=$(cat /proc/1/comm) uid=$(id -u) home=[$HERMES_HOME]; ls -d /package/admin/s6-overlay-[0-9]*; exit 3")
        .output()
        .context("cannot run the 3.2.3.0 image")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.code() != Some(3)
        || !text.contains("pid1=s6-svscan uid=10000 home=[/opt/data]")
        || !text.contains("/package/admin/s6-overlay-3.2.3.0")
    {
        bail!(
            "one-shot command: status {:?}, output:\n{text}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let id = capture(
        Command::new("docker").args([
            "run",
            "-d",
            COMPAT_IMAGE,
            "sh",
            "-c",
            "trap 'exit 7' TERM; while :; do sleep 0.2; done",
        ]),
        "docker run -d (3.2.3.0)",
    )?
    .trim()
    .to_string();
    let result = supervised(&id);
    let _ = Command::new("docker").args(["rm", "-f", "-v", &id]).output();
    result?;
    eprintln!("xtask: s6-overlay 3.2.3.0 image {COMPAT_IMAGE}: boots, runs as 10000, user bundle up, stop keeps status 7");
    Ok(())
}

fn supervised(id: &str) -> Result<()> {
    let started = Instant::now();
    let probe = "/command/s6-svstat -o up /run/service/profile-registrar | grep -qx true \
                 && test -d /run/service/gateway-default";
    while !docker_ok(&["exec", id, "sh", "-c", probe]) {
        if started.elapsed() > Duration::from_secs(45) {
            let logs = Command::new("docker").args(["logs", id]).output()?;
            bail!(
                "the registrar is not up after 45 s:\n{}{}",
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        sleep(Duration::from_millis(300));
    }
    capture(
        Command::new("docker").args(["stop", "-t", "20", id]),
        "docker stop (3.2.3.0)",
    )?;
    let code = capture(
        Command::new("docker").args(["inspect", "-f", "{{.State.ExitCode}}", id]),
        "docker inspect",
    )?;
    if code.trim() != "7" {
        bail!("docker stop: exit code {}, not the command's 7", code.trim());
    }
    Ok(())
}
