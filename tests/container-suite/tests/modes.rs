//! The image in every way people run it (README, *Where it runs*): as root, as any `--user`, with a
//! read-only root, under the Docker flags a Kubernetes security context maps to, with only the
//! capabilities the boot uses, rootless under Debian's Podman, and not as PID 1.
//!
//! Each mode boots the real s6-overlay and the real application and is put through the same checks
//! ([`exercise`]): the command runs with HOME and HERMES_HOME on the volume, `docker exec` runs as the
//! mode's uid, which has a passwd entry, the application writes its data there, and a gateway starts
//! and stops under supervision. Kubernetes is emulated with those Docker flags; no cluster runs here.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use container_suite::{docker_checked, image, Container, Finished, HostDir, Run, BOOT_TIMEOUT};

/// A gateway is a Python start: slow on a busy machine.
const GATEWAY_TIMEOUT: Duration = Duration::from_secs(60);
/// The line of a boot without root (stage2's `identity`), up to the ids.
const UNPRIVILEGED_LINE: &str = "without root: skipping UID/GID remap, group setup and ownership repair";

/// Runs a shell script in the container as the mode's exec user.
type Exec<'a> = &'a dyn Fn(&str) -> Result<Finished>;

fn ok(exec: Exec, script: &str) -> Result<String> {
    let r = exec(script)?;
    if !r.ok() {
        bail!("`{script}` failed: {r}");
    }
    Ok(r.stdout.trim().to_string())
}

fn poll(what: &str, timeout: Duration, mut probe: impl FnMut() -> Result<bool>) -> Result<()> {
    let started = Instant::now();
    while !probe()? {
        if started.elapsed() > timeout {
            bail!("timed out after {}s waiting for {what}", timeout.as_secs());
        }
        sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// The checks every mode passes. `uid`/`gid` are the ids the exec user's processes must have, `name`
/// the name `getpwuid` must give, `port` the API server's (unique per mode: Podman shares the host's
/// network).
fn exercise(exec: Exec, uid: u32, gid: u32, name: &str, port: u16) -> Result<()> {
    // docker exec runs as the uid, which has a passwd entry (whoami, getpwuid).
    let who = ok(exec, "echo $(id -u) $(id -g) $(whoami)")?;
    assert_eq!(who, format!("{uid} {gid} {name}"));
    let home = ok(exec, "getent passwd $(id -u) | cut -d: -f6")?;
    assert!(!home.is_empty(), "getpwuid({uid}) has no entry");
    // The command runs with HOME and HERMES_HOME on the volume (docker exec's own HOME comes from
    // /etc/passwd, which the runtime cannot extend: `hermes` through the exec shim sets both).
    let command_env = ok(
        exec,
        "for p in /proc/[0-9]*; do [ \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" = 'sleep infinity ' ] && \
         tr '\\0' '\\n' < $p/environ | grep -E '^(HOME|HERMES_HOME)=' | sort; done; :",
    )?;
    assert_eq!(command_env, "HERMES_HOME=/opt/data\nHOME=/opt/data");
    assert_eq!(ok(exec, "hermes config path")?, "/opt/data/config.yaml");

    // The application writes its data, as that uid.
    ok(exec, "hermes profile create modes --no-skills")?;
    assert_eq!(
        ok(exec, "stat -c %u /opt/data/profiles/modes/SOUL.md")?,
        uid.to_string()
    );
    ok(
        exec,
        &format!(
            "printf 'API_SERVER_KEY=modes-key-0123456789abcdef\\nAPI_SERVER_PORT={port}\\n' >> \
             /opt/data/profiles/modes/.env"
        ),
    )?;

    // A gateway starts and stops under supervision.
    let svstat = || -> Result<String> { Ok(exec("/command/s6-svstat /run/service/gateway-modes")?.stdout) };
    let r = exec("hermes -p modes gateway start")?;
    assert_eq!(r.code, 0, "{r}");
    poll("gateway-modes up", GATEWAY_TIMEOUT, || {
        Ok(svstat()?.starts_with("up "))
    })
    .with_context(|| format!("{:?}", exec("cat /opt/data/logs/gateways/modes/current 2>&1")))?;
    ok(exec, "hermes -p modes gateway stop")?;
    poll("gateway-modes down", GATEWAY_TIMEOUT, || {
        Ok(svstat()?.starts_with("down"))
    })?;
    let state = ok(exec, "cat /opt/data/profiles/modes/gateway_state.json")?;
    assert!(state.contains(r#""desired_state":"stopped""#), "{state}");

    // The dashboard (enabled by every mode) is supervised, runs as the uid and answers on its port.
    let dashboard_port = dashboard_port(port);
    poll("the dashboard to accept a connection", GATEWAY_TIMEOUT, || {
        Ok(exec(&format!(
            "/opt/hermes/.venv/bin/python -c \"import socket; socket.create_connection(('127.0.0.1', \
             {dashboard_port}), 1)\""
        ))?
        .ok())
    })
    .with_context(|| format!("{:?}", exec("/command/s6-svstat /run/service/dashboard")))?;
    let owners = ok(
        exec,
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q 'hermes dashboar[d] --host' && \
         stat -c %u $p; done; :",
    )?;
    assert!(!owners.is_empty(), "no dashboard process");
    assert!(owners.lines().all(|u| u == uid.to_string()), "{owners}");
    Ok(())
}

/// The dashboard's port in a mode whose API server listens on `port`.
fn dashboard_port(port: u16) -> u16 {
    port + 1000
}

/// What every mode's container gets: the dashboard on, on its own port.
fn dashboard_env(port: u16) -> [(&'static str, String); 2] {
    [
        ("HERMES_DASHBOARD", "1".to_string()),
        ("HERMES_DASHBOARD_PORT", dashboard_port(port).to_string()),
    ]
}

/// Starts a Docker mode, waits for its boot and runs [`exercise`] through `docker exec` as the
/// container's own user (`exec_user` overrides it). Returns the container and its log.
fn docker_mode(run: Run, exec_user: Option<&str>, ids: (u32, u32), port: u16) -> Result<(Container, String)> {
    let mut run = run;
    for (k, v) in dashboard_env(port) {
        run = run.env(k, &v);
    }
    let c = run.cmd(&["sleep", "infinity"]).start()?;
    c.wait_until("the boot's readiness line", BOOT_TIMEOUT, || {
        Ok(c.logs()?.contains("reconcile: profile=default"))
    })?;
    let exec = |script: &str| -> Result<Finished> {
        let mut args = vec!["exec"];
        if let Some(u) = exec_user {
            args.extend(["-u", u]);
        }
        args.extend([c.id.as_str(), "sh", "-c", script]);
        Ok(Finished::from_output(container_suite::docker(&args)?))
    };
    exercise(&exec, ids.0, ids.1, "hermes", port).with_context(|| c.logs().unwrap_or_default())?;
    let logs = c.logs()?;
    Ok((c, logs))
}

/// What a container wrote outside its volume, `/run` and `/tmp` (`docker diff`).
fn written_outside_volume_run_and_tmp(c: &Container) -> Result<Vec<String>> {
    let diff = docker_checked(&["diff", &c.id])?;
    Ok(diff
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, p)| p.to_string()))
        .filter(|p| {
            !["/run", "/tmp"]
                .iter()
                .any(|d| p == d || p.starts_with(&format!("{d}/")))
        })
        .collect())
}

/// The one line a run without root prints, and no remap or repair.
fn assert_unprivileged_boot(logs: &str, uid: u32, gid: u32) {
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains(UNPRIVILEGED_LINE)).collect();
    assert_eq!(lines.len(), 1, "{logs}");
    assert!(
        lines[0].starts_with(&format!("[stage2] running as uid {uid} gid {gid} ")),
        "{}",
        lines[0]
    );
    assert!(!logs.contains("Changing hermes"), "{logs}");
    assert!(!logs.contains("Fixing ownership"), "{logs}");
    assert!(!logs.contains("ERROR"), "{logs}");
}

/// A host directory owned by `uid:gid` with `mode`, for a bind-mounted volume.
fn volume_dir(uid: u32, gid: u32, mode: u32) -> Result<HostDir> {
    use std::os::unix::fs::PermissionsExt;
    let d = HostDir::new()?;
    std::os::unix::fs::chown(&d.path, Some(uid), Some(gid))?;
    std::fs::set_permissions(&d.path, std::fs::Permissions::from_mode(mode))?;
    Ok(d)
}

// ---------------------------------------------------------------------------------------------------------
// Docker
// ---------------------------------------------------------------------------------------------------------

#[test]
fn root_remaps_and_drops_to_the_runtime_user() -> Result<()> {
    let (c, logs) = docker_mode(
        Run::new().env("HERMES_UID", "1000").env("HERMES_GID", "1000"),
        Some("hermes"),
        (1000, 1000),
        8661,
    )?;
    assert!(logs.contains("[stage2] Changing hermes UID to 1000"), "{logs}");
    assert!(!logs.contains(UNPRIVILEGED_LINE), "{logs}");
    assert_eq!(
        c.stat("/run")?,
        "0:0 755",
        "a root boot makes /run root's before /init"
    );
    Ok(())
}

#[test]
fn the_images_own_ids_as_user() -> Result<()> {
    let (c, logs) = docker_mode(Run::new().user("10000:10000"), None, (10000, 10000), 8662)?;
    assert_unprivileged_boot(&logs, 10000, 10000);
    assert_eq!(written_outside_volume_run_and_tmp(&c)?, Vec::<String>::new());
    // The supervision tree is the user's own: there is no root to protect.
    assert_eq!(c.stat("/run/service")?, "10000:10000 755");
    Ok(())
}

#[test]
fn any_uid_and_gid_on_a_volume_it_owns() -> Result<()> {
    let vol = volume_dir(1234, 5678, 0o755)?;
    let (c, logs) = docker_mode(
        Run::new().user("1234:5678").volume(vol.as_str(), "/opt/data"),
        None,
        (1234, 5678),
        8663,
    )?;
    assert_unprivileged_boot(&logs, 1234, 5678);
    assert!(
        logs.contains("[stage2] Added passwd entry hermes:5678 for uid 1234 in /run/hermes-boot/nss"),
        "{logs}"
    );
    assert_eq!(
        c.exec_as("1234:5678", "getent passwd 1234; getent group 5678")?
            .stdout,
        "hermes:x:1234:5678:hermes:/opt/data:/bin/sh\nhermes:x:5678:\n"
    );
    assert_eq!(written_outside_volume_run_and_tmp(&c)?, Vec::<String>::new());
    // The entry is the run's own and believed only by its own processes: root's /etc is untouched.
    assert!(!c.root_ok("cat /etc/passwd")?.contains(":1234:"));
    Ok(())
}

#[test]
fn openshift_arbitrary_uid_with_gid_0() -> Result<()> {
    // OpenShift's convention: the volume is writable by group 0 (`chgrp 0; chmod g=u`), setgid.
    let vol = volume_dir(0, 0, 0o2770)?;
    let (c, logs) = docker_mode(
        Run::new().user("1000170000:0").volume(vol.as_str(), "/opt/data"),
        None,
        (1000170000, 0),
        8664,
    )?;
    assert_unprivileged_boot(&logs, 1000170000, 0);
    assert_eq!(
        c.exec_as("1000170000:0", "getent passwd 1000170000")?.stdout,
        "hermes:x:1000170000:0:hermes:/opt/data:/bin/sh\n"
    );
    Ok(())
}

/// A uid that cannot write the volume: it cannot repair it either, so the boot stops with one line
/// saying what to do, and the command does not run.
#[test]
fn a_volume_the_user_cannot_write_stops_the_boot() -> Result<()> {
    let vol = volume_dir(10000, 10000, 0o755)?;
    let r = Run::new()
        .user("1234:5678")
        .volume(vol.as_str(), "/opt/data")
        .cmd(&["sh", "-c", "echo COMMAND_RAN"])
        .run_to_end(BOOT_TIMEOUT)?;
    assert_ne!(r.code, 0, "{r}");
    assert!(!r.stdout.contains("COMMAND_RAN"), "{r}");
    let all = r.all();
    let errors: Vec<&str> = all.lines().filter(|l| l.starts_with("[stage2] ERROR:")).collect();
    assert_eq!(
        errors,
        ["[stage2] ERROR: HERMES_HOME /opt/data is not writable by uid 1234 gid 5678, which the container runs \
as (owner 10000:10000, mode 0755); give the volume to that uid or group, or start as root with \
-e HERMES_UID=1234 -e HERMES_GID=5678 — stopping"],
        "{r}"
    );
    Ok(())
}

#[test]
fn read_only_root_as_root() -> Result<()> {
    let (c, logs) = docker_mode(
        Run::new()
            .opt("--read-only")
            .opt("--tmpfs")
            .opt("/run:exec")
            .opt("--tmpfs")
            .opt("/tmp")
            .env("S6_READ_ONLY_ROOT", "1"),
        Some("hermes"),
        (10000, 10000),
        8665,
    )?;
    assert!(
        !logs.contains("Warning"),
        "a read-only root costs nothing: {logs}"
    );
    assert_eq!(c.stat("/run")?, "0:0 755");
    Ok(())
}

#[test]
fn read_only_root_as_user() -> Result<()> {
    let (_c, logs) = docker_mode(
        Run::new()
            .user("10000:10000")
            .opt("--read-only")
            .opt("--tmpfs")
            .opt("/run:exec")
            .opt("--tmpfs")
            .opt("/tmp")
            .env("S6_READ_ONLY_ROOT", "1"),
        None,
        (10000, 10000),
        8666,
    )?;
    assert_unprivileged_boot(&logs, 10000, 10000);
    assert!(!logs.contains("Warning"), "{logs}");
    Ok(())
}

/// runAsUser/runAsGroup, fsGroup, readOnlyRootFilesystem, capabilities drop ALL and
/// allowPrivilegeEscalation false, as `docker/k8s/fsgroup.yaml` sets them. The PVC is group fsGroup
/// with setgid directories, as the kubelet leaves it.
#[test]
fn kubernetes_restricted_context() -> Result<()> {
    let vol = volume_dir(0, 2000, 0o2775)?;
    // An emptyDir after the kubelet applied fsGroup: root's, group fsGroup, 2777, not sticky. A bind
    // mount, because Docker gives a tmpfs on /run the image's own mode.
    let run_dir = volume_dir(0, 2000, 0o2777)?;
    let (c, logs) = docker_mode(
        Run::new()
            .user("10000:10000")
            .opt("--group-add")
            .opt("2000")
            .opt("--read-only")
            .volume(run_dir.as_str(), "/run")
            .opt("--tmpfs")
            .opt("/tmp")
            .opt("--cap-drop")
            .opt("ALL")
            .opt("--security-opt")
            .opt("no-new-privileges")
            .env("S6_READ_ONLY_ROOT", "1")
            .env("S6_YES_I_WANT_A_WORLD_WRITABLE_RUN_BECAUSE_KUBERNETES", "1")
            .volume(vol.as_str(), "/opt/data"),
        None,
        (10000, 10000),
        8667,
    )?;
    assert_unprivileged_boot(&logs, 10000, 10000);
    assert!(
        logs.contains("instructed to accept it"),
        "s6-overlay's own line: {logs}"
    );
    // fsGroup: what the application made is the volume's group, through the setgid directory.
    assert_eq!(
        c.exec_as("10000:10000", "stat -c %g /opt/data/profiles/modes")?
            .stdout
            .trim(),
        "2000"
    );
    Ok(())
}

fn root_with_only(caps: &[&str]) -> Run {
    let mut run = Run::new().opt("--cap-drop").opt("ALL");
    for cap in caps {
        run = run.opt("--cap-add").opt(cap);
    }
    run.env("HERMES_UID", "1000")
}

/// What users reach for when `runAsNonRoot` is not possible: root with only the boot's capabilities,
/// and KILL, without which s6 (root) cannot signal the runtime user's gateways (`docker/k8s/root.yaml`).
#[test]
fn root_with_boot_capabilities_only() -> Result<()> {
    let run = root_with_only(&["CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE", "KILL"]);
    let (_c, logs) = docker_mode(run, Some("hermes"), (1000, 10000), 8668)?;
    assert!(logs.contains("[stage2] Changing hermes UID to 1000"), "{logs}");
    assert!(!logs.contains("Warning"), "{logs}");
    Ok(())
}

/// The usual four without KILL: the boot and the command work, and one line says that stopping the
/// user's services cannot.
#[test]
fn root_without_kill_says_what_cannot_work() -> Result<()> {
    let c = root_with_only(&["CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE"])
        .cmd(&["sleep", "infinity"])
        .start()?;
    c.wait_until("the boot's readiness line", BOOT_TIMEOUT, || {
        Ok(c.logs()?.contains("reconcile: profile=default"))
    })?;
    let logs = c.logs()?;
    let warnings: Vec<&str> = logs.lines().filter(|l| l.contains("Warning")).collect();
    assert_eq!(
        warnings,
        ["[stage2] Warning: root has no CAP_KILL (capabilities dropped): s6 cannot signal the runtime user's \
services, so gateway stop and restart do nothing and docker stop waits for its timeout; add the KILL \
capability — continuing"],
        "{logs}"
    );
    assert_eq!(
        c.hermes_ok("id -u; hermes config path")?,
        "1000\n/opt/data/config.yaml"
    );
    Ok(())
}

/// Not PID 1 (`--init`): no supervision tree, so no gateways; the command and the volume work.
#[test]
fn not_pid_1_as_user() -> Result<()> {
    let vol = volume_dir(1234, 5678, 0o755)?;
    let r = Run::new()
        .opt("--init")
        .user("1234:5678")
        .volume(vol.as_str(), "/opt/data")
        .cmd(&[
            "sh",
            "-c",
            "echo $(id -u) $HOME $HERMES_HOME $(whoami); hermes profile create modes --no-skills >/dev/null && stat -c %u /opt/data/profiles/modes/SOUL.md",
        ])
        .run_to_end(BOOT_TIMEOUT)?;
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout.contains("1234 /opt/data /opt/data hermes\n1234\n"),
        "{r}"
    );
    assert!(r.stderr.contains("not PID 1"), "{r}");
    assert_unprivileged_boot(&r.all(), 1234, 5678);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Rootless Podman
// ---------------------------------------------------------------------------------------------------------

/// The unprivileged user that runs Podman, with a subordinate id range.
const PODMAN_USER: &str = "hermes-suite-podman";
/// Its runtime directory (no login session here to make one).
const PODMAN_RUNTIME_DIR: &str = "/tmp/hermes-suite-podman-run";

fn podman_cmd(args: &[&str]) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", PODMAN_USER, "--", "env"])
        .arg(format!("XDG_RUNTIME_DIR={PODMAN_RUNTIME_DIR}"))
        .arg(format!("HOME=/home/{PODMAN_USER}"))
        .arg("podman")
        .args(args)
        .current_dir("/");
    c
}

fn podman(args: &[&str]) -> Result<Finished> {
    let out = podman_cmd(args).output().context("cannot run podman")?;
    Ok(Finished::from_output(out))
}

/// Creates the user and its subordinate ids once and loads the test image into its storage
/// (`docker save` | `podman load`). Fails, never skips, when Podman cannot run: the suite installs it.
fn podman_image() -> Result<String> {
    static LOADED: OnceLock<Result<String, String>> = OnceLock::new();
    LOADED
        .get_or_init(|| load_into_podman().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn load_into_podman() -> Result<String> {
    let home = format!("/home/{PODMAN_USER}");
    if !Path::new(&home).exists() {
        let st = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", PODMAN_USER])
            .status()?;
        if !st.success() {
            bail!("useradd {PODMAN_USER} failed");
        }
    }
    // A range wide enough for the image's ids (10000) in the user namespace.
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if !text.lines().any(|l| l.starts_with(&format!("{PODMAN_USER}:"))) {
            std::fs::write(file, format!("{text}{PODMAN_USER}:300000:65536\n"))
                .with_context(|| format!("cannot write {file}"))?;
        }
    }
    std::fs::create_dir_all(PODMAN_RUNTIME_DIR)?;
    let uid = nix::unistd::User::from_name(PODMAN_USER)?
        .context("no podman user")?
        .uid;
    nix::unistd::chown(PODMAN_RUNTIME_DIR, Some(uid), None)?;
    let tar = Path::new(PODMAN_RUNTIME_DIR).join("image.tar");
    let tar_s = tar.to_str().context("path")?;
    let img = image();
    docker_checked(&["save", "-o", tar_s, &img])?;
    nix::unistd::chown(&tar, Some(uid), None)?;
    let r = podman(&["load", "-i", tar_s])?;
    let _ = std::fs::remove_file(&tar);
    if !r.ok() {
        bail!("podman load: {r}");
    }
    // docker save names the image as tagged; Podman keeps short names under localhost/.
    let name = if img.contains('/') {
        img
    } else {
        format!("localhost/{img}")
    };
    Ok(name)
}

/// A rootless Podman container, removed when dropped.
struct PodmanContainer {
    name: String,
}

impl Drop for PodmanContainer {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.name]);
    }
}

impl PodmanContainer {
    fn exec(&self, user: Option<&str>, script: &str) -> Result<Finished> {
        let mut args = vec!["exec"];
        if let Some(u) = user {
            args.extend(["-u", u]);
        }
        args.extend([self.name.as_str(), "sh", "-c", script]);
        podman(&args)
    }
    fn logs(&self) -> Result<String> {
        Ok(podman(&["logs", &self.name])?.all())
    }
}

/// Boots the image under rootless Podman with `opts` and runs [`exercise`]. The host network: this
/// machine's `/dev/net/tun` is root's only, so slirp4netns cannot give a rootless container its own.
fn podman_mode(
    opts: &[&str],
    exec_user: Option<&str>,
    ids: (u32, u32),
    name: &str,
    port: u16,
) -> Result<String> {
    let image = podman_image()?;
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let c = PodmanContainer {
        name: format!(
            "hermes-suite-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ),
    };
    let env: Vec<String> = dashboard_env(port)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut args = vec!["run", "-d", "--name", c.name.as_str(), "--network", "host"];
    for e in &env {
        args.extend(["-e", e.as_str()]);
    }
    args.extend_from_slice(opts);
    args.extend([image.as_str(), "sleep", "infinity"]);
    let r = podman(&args)?;
    if !r.ok() {
        bail!("podman run: {r}");
    }
    poll("the boot's readiness line", BOOT_TIMEOUT, || {
        Ok(c.logs()?.contains("reconcile: profile=default"))
    })
    .with_context(|| c.logs().unwrap_or_default())?;
    let exec = |script: &str| c.exec(exec_user, script);
    exercise(&exec, ids.0, ids.1, name, port).with_context(|| c.logs().unwrap_or_default())?;
    c.logs()
}

#[test]
fn rootless_podman_as_root_in_the_user_namespace() -> Result<()> {
    let logs = podman_mode(&[], Some("hermes"), (10000, 10000), "hermes", 8671)?;
    assert!(
        !logs.contains(UNPRIVILEGED_LINE),
        "root in its namespace does the root steps: {logs}"
    );
    assert!(!logs.contains("ERROR"), "{logs}");
    Ok(())
}

#[test]
fn rootless_podman_keep_id() -> Result<()> {
    podman_image()?; // creates the user
    let user = nix::unistd::User::from_name(PODMAN_USER)?.context("no podman user")?;
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    let data = format!("/home/{PODMAN_USER}/keep-id-data");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir(&data)?;
    std::os::unix::fs::chown(&data, Some(uid), Some(gid))?;
    let volume = format!("{data}:/opt/data");
    let logs = podman_mode(
        &["--userns=keep-id", "-v", &volume],
        None,
        (uid, gid),
        PODMAN_USER,
        8672,
    );
    let on_host = container_suite::host_owner(&Path::new(&data).join("profiles/modes/SOUL.md"));
    let _ = std::fs::remove_dir_all(&data);
    let logs = logs?;
    assert_unprivileged_boot(&logs, uid, gid);
    // The files on the host are the Podman user's own.
    assert_eq!(on_host?, (uid, gid));
    Ok(())
}
