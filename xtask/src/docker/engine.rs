//! A running Docker engine: reused when one answers, else Debian's `docker.io` is installed (when
//! missing) and `dockerd` is started in the background.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::setup;

/// Where the started daemon logs; kept after the run for diagnosis.
const DOCKERD_LOG: &str = "/var/log/hermes-boot-dockerd.log";
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Daemon flag sets tried in order. The defaults (overlay2, bridge with iptables NAT) work on a
/// Debian 12 Firecracker guest; the fallback avoids both kernel features a stripped-down VM may
/// lack. Builds use `--network host`, so the fallback's missing bridge does not break apt in RUN.
const FLAG_SETS: [&[&str]; 2] = [
    &[],
    &[
        "--storage-driver=vfs",
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
    ],
];

pub fn engine_answers() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn ensure_engine() -> Result<()> {
    if engine_answers() {
        return Ok(());
    }
    if !on_path("dockerd") || !on_path("docker") {
        setup::ensure_packages(&["docker.io"])?;
    }
    let mut last_err = None;
    for flags in FLAG_SETS {
        match start_dockerd(flags) {
            Ok(()) => return Ok(()),
            Err(e) => {
                eprintln!("xtask: {e:#}");
                last_err = Some(e);
            }
        }
    }
    Err(last_err.expect("at least one flag set")).context(format!("no Docker engine; see {DOCKERD_LOG}"))
}

/// dockerd refuses to start while its pid file exists, even when the daemon that wrote it was killed
/// (a CI machine reused after a session ended leaves one). Removes the file unless it names a live dockerd.
fn remove_stale_pid_file() {
    const PID_FILE: &str = "/var/run/docker.pid";
    let Ok(text) = std::fs::read_to_string(PID_FILE) else {
        return;
    };
    let live = text
        .trim()
        .parse::<u32>()
        .ok()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok())
        .is_some_and(|comm| comm.trim() == "dockerd");
    if !live {
        eprintln!("xtask: removing stale {PID_FILE} ({})", text.trim());
        let _ = std::fs::remove_file(PID_FILE);
    }
}

fn start_dockerd(flags: &[&str]) -> Result<()> {
    remove_stale_pid_file();
    eprintln!("xtask: starting dockerd {} (log: {DOCKERD_LOG})", flags.join(" "));
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(DOCKERD_LOG)
        .with_context(|| format!("cannot open {DOCKERD_LOG}"))?;
    let log_err = log
        .try_clone()
        .context("cannot duplicate the dockerd log descriptor")?;
    // Own process group: the daemon must outlive this process and not get the terminal's Ctrl-C.
    let mut child = Command::new("dockerd")
        .args(flags)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .context("cannot start dockerd")?;
    let started = Instant::now();
    while started.elapsed() < START_TIMEOUT {
        if engine_answers() {
            eprintln!(
                "xtask: dockerd answers after {:.1}s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if let Some(status) = child.try_wait().context("cannot poll dockerd")? {
            bail!("dockerd {} exited early ({status})", flags.join(" "));
        }
        sleep(Duration::from_millis(250));
    }
    // Only the daemon started here is stopped, by its own pid.
    let _ = child.kill();
    let _ = child.wait();
    bail!(
        "dockerd {} did not answer within {}s",
        flags.join(" "),
        START_TIMEOUT.as_secs()
    )
}

pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| is_executable(&dir.join(program))))
        .unwrap_or(false)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
