//! Helpers for the container suite: start containers from the test image, run commands in them,
//! wait for the boot, inspect processes, files and listeners.
//!
//! The image comes from `HERMES_TEST_IMAGE`, which `cargo xtask docker-test` sets after building
//! it. Every container, volume and host directory a test creates is removed by a guard's `Drop`,
//! also when the test fails.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The variable naming the image under test.
pub const IMAGE_ENV: &str = "HERMES_TEST_IMAGE";
/// Label on every container the suite creates, for manual clean-up after a crash.
pub const LABEL: &str = "hermes-boot-container-suite=1";
/// How long a boot may take until the readiness line (2 cores, several tests in parallel).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(45);
/// The boot log of RP-16 (the readiness signal), in the container's shell syntax.
const BOOT_LOG: &str = r#""${HERMES_HOME:-/opt/data}/logs/container-boot.log""#;
/// The runtime user's default ids (SPEC SV-06).
pub const HERMES_UID: u32 = 10000;
/// The first line of the real `hermes gateway run` banner (hermes-agent 0.19.0, `gateway/run.py`).
pub const GATEWAY_BANNER: &str = "Hermes Gateway Starting";

/// The image under test. Panics (fails the test) when the variable is unset: the suite must never
/// pass without having run.
pub fn image() -> String {
    match std::env::var(IMAGE_ENV) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{IMAGE_ENV} is not set: the container suite needs a built test image and a Docker engine; \
             run it with `cargo xtask docker-test`"
        ),
    }
}

fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `docker <args>`, output captured; a failure to start docker is an error, a non-zero exit is not.
pub fn docker(args: &[&str]) -> Result<Output> {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run docker {}", args.join(" ")))
}

/// `docker <args>` that must succeed; returns trimmed stdout.
pub fn docker_checked(args: &[&str]) -> Result<String> {
    let out = docker(args)?;
    if !out.status.success() {
        bail!(
            "docker {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Result of a command run to its end.
#[derive(Debug, Clone)]
pub struct Finished {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn from_output(out: Output) -> Self {
        Finished {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// stdout followed by stderr, for "the output mentions …" checks.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A `docker create` command line under construction.
#[derive(Clone, Default)]
pub struct Run {
    opts: Vec<String>,
    cmd: Vec<String>,
}

impl Run {
    pub fn new() -> Self {
        Run::default()
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.opts.extend(["-e".into(), format!("{key}={value}")]);
        self
    }

    pub fn user(self, user: &str) -> Self {
        self.opt("--user").opt(user)
    }

    pub fn workdir(self, dir: &str) -> Self {
        self.opt("-w").opt(dir)
    }

    /// `-v source:target` (a named volume or a host path).
    pub fn volume(self, source: &str, target: &str) -> Self {
        self.opt("-v").opt(&format!("{source}:{target}"))
    }

    /// A raw `docker create` option.
    pub fn opt(mut self, opt: &str) -> Self {
        self.opts.push(opt.to_string());
        self
    }

    pub fn cmd(mut self, words: &[&str]) -> Self {
        self.cmd = words.iter().map(|w| w.to_string()).collect();
        self
    }

    /// Creates the container (guarded) without starting it.
    pub fn create(&self) -> Result<Container> {
        let image = image();
        let mut args: Vec<&str> = vec!["create", "--label", LABEL];
        args.extend(self.opts.iter().map(String::as_str));
        args.push(&image);
        args.extend(self.cmd.iter().map(String::as_str));
        let id = docker_checked(&args)?;
        if id.is_empty() || id.contains(char::is_whitespace) {
            bail!("docker create printed no container id: {id:?}");
        }
        Ok(Container { id })
    }

    /// Creates and starts the container in the background.
    pub fn start(&self) -> Result<Container> {
        let c = self.create()?;
        docker_checked(&["start", &c.id])?;
        Ok(c)
    }

    /// Creates, starts and waits for the boot's readiness line.
    pub fn start_ready(&self) -> Result<Container> {
        let c = self.start()?;
        c.wait_ready()?;
        Ok(c)
    }

    /// Runs the container to its end (at most `timeout`); the container is removed afterwards.
    pub fn run_to_end(&self, timeout: Duration) -> Result<Finished> {
        let c = self.start()?;
        c.wait_exit(timeout)
    }
}

/// A container, removed (with its anonymous volumes) when dropped.
pub struct Container {
    pub id: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.id]);
    }
}

/// One process seen in a container's /proc.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub state: char,
    pub uid: u32,
    pub cmdline: String,
}

const PS_SCRIPT: &str = r#"for d in /proc/[0-9]*; do
  st=$(cat "$d/stat" 2>/dev/null) || continue
  rest=${st##*\) }
  set -- $rest
  uid=$(sed -n 's/^Uid:[[:space:]]*\([0-9]*\).*/\1/p' "$d/status" 2>/dev/null)
  cmd=$(tr '\0' ' ' < "$d/cmdline" 2>/dev/null)
  printf '%s\t%s\t%s\t%s\t%s\n' "${d#/proc/}" "$2" "$1" "$uid" "$cmd"
done"#;

impl Container {
    pub fn short(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }

    /// `docker exec [-u user] <id> sh -c <script>`.
    pub fn exec_as(&self, user: &str, script: &str) -> Result<Finished> {
        let out = docker(&["exec", "-u", user, &self.id, "sh", "-c", script])?;
        Ok(Finished::from_output(out))
    }

    /// A shell script run as root.
    pub fn root(&self, script: &str) -> Result<Finished> {
        self.exec_as("root", script)
    }

    /// A shell script run as the runtime user.
    pub fn hermes(&self, script: &str) -> Result<Finished> {
        self.exec_as("hermes", script)
    }

    /// A root script that must exit 0; returns its trimmed stdout.
    pub fn root_ok(&self, script: &str) -> Result<String> {
        let r = self.root(script)?;
        if !r.ok() {
            bail!("`{script}` failed in {}: {r}", self.short());
        }
        Ok(r.stdout.trim().to_string())
    }

    /// A runtime-user script that must exit 0; returns its trimmed stdout.
    pub fn hermes_ok(&self, script: &str) -> Result<String> {
        let r = self.hermes(script)?;
        if !r.ok() {
            bail!("`{script}` as hermes failed in {}: {r}", self.short());
        }
        Ok(r.stdout.trim().to_string())
    }

    /// `docker logs`: the container's stdout and stderr.
    pub fn logs(&self) -> Result<String> {
        let out = docker(&["logs", &self.id])?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    pub fn inspect(&self, format: &str) -> Result<String> {
        docker_checked(&["inspect", "-f", format, &self.id])
    }

    pub fn running(&self) -> Result<bool> {
        Ok(self.inspect("{{.State.Running}}")? == "true")
    }

    /// Polls `probe` every 200 ms until it returns true; fails after `timeout` with the container's
    /// logs, so a failure shows what the boot printed.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let started = Instant::now();
        loop {
            if probe()? {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!(
                    "timed out after {}s waiting for {what} in {}\n--- docker logs ---\n{}",
                    timeout.as_secs(),
                    self.short(),
                    self.logs().unwrap_or_default()
                );
            }
            sleep(Duration::from_millis(200));
        }
    }

    /// Waits for the readiness signal of SPEC §0: `profile=default` in the boot log.
    pub fn wait_ready(&self) -> Result<()> {
        self.wait_ready_after(0)
    }

    /// How many readiness lines the boot log holds now (0 when it does not exist). A boot appends one
    /// (RP-16), so a later boot is known by a count above this one.
    pub fn ready_lines(&self) -> Result<usize> {
        let out = self.root_ok(&format!(
            "grep -c 'profile=default' {BOOT_LOG} 2>/dev/null || true"
        ))?;
        Ok(out.parse().unwrap_or(0))
    }

    /// Waits for a boot that appended its readiness line after the log held `before` of them: the
    /// count grew, or the log was rotated (RP-16: the new file starts with the writing boot's lines).
    pub fn wait_ready_after(&self, before: usize) -> Result<()> {
        self.wait_until(
            &format!("a new profile=default line in $HERMES_HOME/logs/container-boot.log (had {before})"),
            BOOT_TIMEOUT,
            || {
                if !self.running()? {
                    bail!(
                        "container {} exited before the boot completed ({})\n--- docker logs ---\n{}",
                        self.short(),
                        self.inspect("{{.State.ExitCode}}")?,
                        self.logs()?
                    );
                }
                let now = self.ready_lines()?;
                Ok(now > before || (now >= 1 && now < before))
            },
        )
    }

    /// Waits for the container to exit; returns its exit code and `docker logs` output.
    pub fn wait_exit(&self, timeout: Duration) -> Result<Finished> {
        self.wait_until("the container to exit", timeout, || Ok(!self.running()?))?;
        let code: i32 = self
            .inspect("{{.State.ExitCode}}")?
            .parse()
            .context("exit code")?;
        let out = docker(&["logs", &self.id])?;
        Ok(Finished {
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// `docker restart`, then waits for the new boot's readiness line. The first boot's line is still in
    /// the log (and the static services are supervised before cont-init runs), so only a line added
    /// after the restart counts.
    pub fn restart(&self) -> Result<()> {
        let lines = self.ready_lines()?;
        let before = self.inspect("{{.State.StartedAt}}")?;
        docker_checked(&["restart", "-t", "10", &self.id])?;
        self.wait_until("a new start", BOOT_TIMEOUT, || {
            Ok(self.inspect("{{.State.StartedAt}}")? != before)
        })?;
        self.wait_ready_after(lines)
    }

    /// `docker stop`; returns the container's exit code.
    pub fn stop(&self) -> Result<i32> {
        docker_checked(&["stop", "-t", "20", &self.id])?;
        self.inspect("{{.State.ExitCode}}")?.parse().context("exit code")
    }

    /// A file of the container's `/opt/data` volume, read through a throw-away container (works while
    /// this one is stopped). Empty when the file does not exist.
    pub fn volume_file(&self, rel: &str) -> Result<String> {
        let volume =
            self.inspect(r#"{{range .Mounts}}{{if eq .Destination "/opt/data"}}{{.Name}}{{end}}{{end}}"#)?;
        let mount = format!("{volume}:/volume:ro");
        let path = format!("/volume/{rel}");
        let img = image();
        let out = docker(&[
            "run",
            "--rm",
            "--label",
            LABEL,
            "-v",
            &mount,
            "--entrypoint",
            "/bin/cat",
            &img,
            &path,
        ])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every process of the container, as root sees them in /proc.
    pub fn processes(&self) -> Result<Vec<Proc>> {
        let out = self.root_ok(PS_SCRIPT)?;
        let mut procs = Vec::new();
        for line in out.lines() {
            let f: Vec<&str> = line.splitn(5, '\t').collect();
            if f.len() < 5 {
                continue;
            }
            let (Ok(pid), Ok(ppid), Ok(uid)) = (f[0].parse(), f[1].parse(), f[3].parse()) else {
                continue;
            };
            procs.push(Proc {
                pid,
                ppid,
                state: f[2].chars().next().unwrap_or('?'),
                uid,
                cmdline: f[4].trim_end().to_string(),
            });
        }
        if procs.is_empty() {
            bail!("no process listed in {}", self.short());
        }
        Ok(procs)
    }

    /// Live (non-zombie) processes whose command line contains `needle`, excluding the listing
    /// itself.
    pub fn processes_matching(&self, needle: &str) -> Result<Vec<Proc>> {
        Ok(self
            .processes()?
            .into_iter()
            .filter(|p| p.state != 'Z' && p.cmdline.contains(needle) && !p.cmdline.contains("/proc/[0-9]"))
            .collect())
    }

    /// The environment of a process, one `KEY=value` per entry. Read as the process's own uid:
    /// root lacks CAP_SYS_PTRACE under Docker's default capabilities.
    pub fn environ(&self, p: &Proc) -> Result<Vec<String>> {
        let script = format!("tr '\\0' '\\n' < /proc/{}/environ", p.pid);
        let r = self.exec_as(&p.uid.to_string(), &script)?;
        if !r.ok() {
            bail!("cannot read the environment of {p:?}: {r}");
        }
        Ok(r.stdout.lines().map(str::to_string).collect())
    }

    /// TCP ports in LISTEN state (IPv4 and IPv6).
    pub fn listening_ports(&self) -> Result<Vec<u16>> {
        let out = self.root_ok("cat /proc/net/tcp /proc/net/tcp6 2>/dev/null || true")?;
        let mut ports = Vec::new();
        for line in out.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 3 && f[3] == "0A" {
                if let Some(port) = f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                {
                    ports.push(port);
                }
            }
        }
        Ok(ports)
    }

    /// `owner:group mode` of a path (`stat -c '%u:%g %a'`), not following symlinks.
    pub fn stat(&self, path: &str) -> Result<String> {
        self.root_ok(&format!("stat -c '%u:%g %a' '{path}'"))
    }

    /// `s6-svstat` of a service directory, as the runtime user.
    pub fn svstat(&self, dir: &str) -> Result<Finished> {
        self.hermes(&format!("/command/s6-svstat '{dir}'"))
    }

    /// `wantedup` / `wanteddown` of a service (`s6-svstat -o wantedup` → true/false).
    pub fn wants_up(&self, dir: &str) -> Result<bool> {
        let r = self.root(&format!("/command/s6-svstat -o wantedup '{dir}'"))?;
        Ok(r.ok() && r.stdout.trim() == "true")
    }
}

/// A named Docker volume, removed when dropped (after the containers using it).
pub struct Volume {
    pub name: String,
}

impl Volume {
    pub fn new() -> Result<Self> {
        let name = unique("hermes-suite-vol");
        docker_checked(&["volume", "create", "--label", LABEL, &name])?;
        Ok(Volume { name })
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = docker(&["volume", "rm", "-f", &self.name]);
    }
}

/// A host directory for bind mounts, removed recursively when dropped.
pub struct HostDir {
    pub path: PathBuf,
}

impl HostDir {
    pub fn new() -> Result<Self> {
        let path = std::env::temp_dir().join(unique("hermes-suite-dir"));
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(HostDir { path })
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    pub fn as_str(&self) -> &str {
        self.path.to_str().expect("temp paths are UTF-8")
    }
}

impl Drop for HostDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `(uid, gid)` of a host path, not following symlinks.
pub fn host_owner(path: &Path) -> Result<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    Ok((m.uid(), m.gid()))
}

/// Renders processes for assertion messages.
pub fn ps_table(procs: &[Proc]) -> String {
    let mut s = String::new();
    for p in procs {
        let _ = writeln!(
            s,
            "{:>6} {:>6} {} {:>6} {}",
            p.pid, p.ppid, p.state, p.uid, p.cmdline
        );
    }
    s
}

/// The pids of `pid` and its ancestors up to PID 1.
pub fn ancestry(procs: &[Proc], pid: u32) -> Vec<&Proc> {
    let mut chain = Vec::new();
    let mut cur = pid;
    while let Some(p) = procs.iter().find(|p| p.pid == cur) {
        chain.push(p);
        if p.ppid == 0 || p.pid == 1 || chain.len() > 64 {
            break;
        }
        cur = p.ppid;
    }
    chain
}

/// The repository's `docker/` directory (for checks of the files the image copies in).
pub fn docker_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docker")
}
