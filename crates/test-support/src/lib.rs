//! Fixtures shared by the programs' temp-root tests: a throw-away root prefix with account files, and
//! helpers to run the real binaries against it and inspect owners and modes.
//!
//! Tests that need root call [`require_root`], which fails (never silently passes) when not root.

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const HERMES_UID: u32 = 10000;
pub const HERMES_GID: u32 = 10000;

/// Fails the test unless running as root: these tests exercise chown, setuid and mounts for real.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!("this test needs root (it changes owners and credentials for real); run the suite as root, as CI does");
    }
}

/// A temporary root prefix (`--root` / `HERMES_BOOT_ROOT`) laid out like the image.
pub struct TempRoot {
    pub dir: tempfile::TempDir,
}

impl Default for TempRoot {
    fn default() -> Self {
        Self::new()
    }
}

impl TempRoot {
    /// `etc/passwd` and `etc/group` with root and hermes (10000:10000, home /opt/data), plus empty
    /// `run/`, `tmp/` and `opt/hermes/`. The volume `opt/data` is not created.
    pub fn new() -> TempRoot {
        let dir = tempfile::Builder::new()
            .prefix("hermes-boot-test.")
            .tempdir_in(scratch_base())
            .expect("tempdir");
        // The runtime user must be able to reach the volume through the prefix.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod tempdir");
        let r = TempRoot { dir };
        r.write(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nhermes:x:10000:10000::/opt/data:/bin/sh\n",
        );
        r.write(
            "/etc/group",
            "root:x:0:\nvideo:x:44:\nnogroup:x:65534:\nhermes:x:10000:\n",
        );
        for d in ["/run", "/tmp", "/opt/hermes", "/proc/1"] {
            r.mkdir(d);
        }
        std::fs::set_permissions(r.path("/tmp"), std::fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
        r
    }

    /// A root for `reconcile-profiles`: the scan directory `/run/service`, the volume `/opt/data`, and a
    /// container argv (`/proc/1/cmdline`) that is neither a dashboard nor a legacy `gateway run`. Needs root.
    pub fn for_reconcile() -> TempRoot {
        require_root();
        let r = TempRoot::new();
        r.mkdir("/run/service");
        r.mkdir("/opt/data");
        r.write(
            "/proc/1/cmdline",
            b"/init\0/opt/hermes/docker/bin/main-wrapper\0sleep\0infinity\0",
        );
        r
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The host path of an in-container path.
    pub fn path(&self, p: &str) -> PathBuf {
        let rel = p.strip_prefix('/').unwrap_or(p);
        self.dir.path().join(rel)
    }

    pub fn write(&self, p: &str, content: impl AsRef<[u8]>) {
        let path = self.path(p);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    pub fn read(&self, p: &str) -> String {
        let path = self.path(p);
        String::from_utf8_lossy(
            &std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())),
        )
        .into_owned()
    }

    pub fn mkdir(&self, p: &str) {
        std::fs::create_dir_all(self.path(p)).expect("mkdir");
    }

    pub fn symlink(&self, target: impl AsRef<Path>, p: &str) {
        std::os::unix::fs::symlink(target, self.path(p)).expect("symlink");
    }

    pub fn exists(&self, p: &str) -> bool {
        std::fs::symlink_metadata(self.path(p)).is_ok()
    }

    pub fn is_symlink(&self, p: &str) -> bool {
        std::fs::symlink_metadata(self.path(p))
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
    }

    /// (uid, gid) of an entry, not following symlinks.
    pub fn owner(&self, p: &str) -> (u32, u32) {
        owner(&self.path(p))
    }

    /// Permission bits (`& 0o7777`) of an entry, not following symlinks.
    pub fn mode(&self, p: &str) -> u32 {
        mode(&self.path(p))
    }

    pub fn chown(&self, p: &str, uid: u32, gid: u32) {
        std::os::unix::fs::lchown(self.path(p), Some(uid), Some(gid)).expect("lchown");
    }

    pub fn chmod(&self, p: &str, mode: u32) {
        std::fs::set_permissions(self.path(p), std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// A command for one of the programs with this root prefix and a minimal, predictable environment.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HERMES_BOOT_ROOT", self.root())
            .stdin(Stdio::null());
        c
    }
}

/// Where temporary roots go: not under a tmpfs that may be mounted `nosuid`/`nodev` in odd ways, and
/// traversable by the runtime user.
fn scratch_base() -> PathBuf {
    std::env::var_os("HERMES_TEST_SCRATCH")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

pub fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
    (m.uid(), m.gid())
}

pub fn mode(p: &Path) -> u32 {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
    m.mode() & 0o7777
}

/// ctime of an entry in nanoseconds, for "nothing was touched" assertions.
pub fn ctime_ns(p: &Path) -> i128 {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
    m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128
}

/// The result of running a program, with text output.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
    /// Both streams, for "the log contains …" assertions.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit status\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// The `--json` lines of stdout: every one an object, the last the summary.
    #[track_caller]
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        let v: Vec<serde_json::Value> = self
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        assert_eq!(
            v.last().map(|e| &e["type"]),
            Some(&serde_json::json!("summary")),
            "{}",
            self.stdout
        );
        v
    }

    /// The `change` events of [`Run::json_lines`], in a fixed order: parallel work reports them in
    /// the order it finishes.
    #[track_caller]
    pub fn json_changes(&self) -> Vec<serde_json::Value> {
        let mut v: Vec<serde_json::Value> = self
            .json_lines()
            .into_iter()
            .filter(|e| e["type"] == "change")
            .collect();
        v.sort_by_key(|e| e.to_string());
        v
    }
}

pub fn run(cmd: &mut Command) -> Run {
    Run::from_output(cmd.output().expect("spawn program under test"))
}

/// Runs `cmd` as `uid:gid` with no supplementary groups (std drops them when root sets a uid).
pub fn run_as(cmd: &mut Command, uid: u32, gid: u32) -> Run {
    use std::os::unix::process::CommandExt;
    cmd.uid(uid).gid(gid);
    run(cmd)
}

/// Real s6 for supervision tests: Debian's `s6` package. Tests that need it fail (never skip) when it is
/// missing.
pub mod s6 {
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use super::TempRoot;

    /// Where Debian installs the s6 tools.
    pub const S6_BIN: &str = "/usr/bin";

    /// The path of one s6 tool; panics when the `s6` package is not installed.
    pub fn tool(name: &str) -> PathBuf {
        let p = Path::new(S6_BIN).join(name);
        assert!(
            p.exists(),
            "{} is missing: install Debian's s6 package (apt-get install -y s6)",
            p.display()
        );
        p
    }

    /// Provides `/command/s6-*` under the temp root as symlinks to the real tools (s6-overlay's layout,
    /// which the programs use through the root prefix).
    pub fn install_commands(root: &TempRoot) {
        root.mkdir("/command");
        for name in [
            "s6-svscanctl",
            "s6-svc",
            "s6-svwait",
            "s6-svok",
            "s6-svstat",
            "s6-setuidgid",
            "s6-log",
        ] {
            let target = tool(name);
            let link = root.path(&format!("/command/{name}"));
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(target, link).expect("symlink s6 tool");
            }
        }
    }

    /// A running `s6-svscan`, stopped (with its supervisors and services) when dropped.
    pub struct Svscan {
        child: Child,
        pub scandir: PathBuf,
    }

    impl Svscan {
        /// Starts `s6-svscan <scandir>` as the current user (root in these tests) and waits until it
        /// listens on its control FIFO.
        pub fn start(scandir: &Path) -> Svscan {
            Svscan::spawn(scandir, None)
        }

        /// The supervision tree of a run without root (`--user`): `s6-svscan` as that user.
        pub fn start_as(scandir: &Path, uid: u32, gid: u32) -> Svscan {
            Svscan::spawn(scandir, Some((uid, gid)))
        }

        fn spawn(scandir: &Path, ids: Option<(u32, u32)>) -> Svscan {
            let mut cmd = Command::new(tool("s6-svscan"));
            cmd.arg(scandir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Some((uid, gid)) = ids {
                use std::os::unix::process::CommandExt;
                cmd.uid(uid).gid(gid);
            }
            let child = cmd.spawn().expect("start s6-svscan");
            let s = Svscan {
                child,
                scandir: scandir.to_path_buf(),
            };
            let ctl = scandir.join(".s6-svscan/control");
            wait_until(Duration::from_secs(10), || {
                Command::new(tool("s6-svscanctl"))
                    .arg("-a")
                    .arg(scandir)
                    .stderr(Stdio::null())
                    .status()
                    .map(|st| st.success())
                    .unwrap_or(false)
                    && ctl.exists()
            });
            s
        }
    }

    impl Drop for Svscan {
        fn drop(&mut self) {
            // SIGTERM makes s6-svscan stop every supervisor (and so every service) before exiting.
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Polls `cond` every 20 ms; panics after `limit`.
    #[track_caller]
    pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !cond() {
            assert!(Instant::now() < deadline, "condition not met within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs an s6 tool as `uid:gid` (no supplementary groups) and returns (exit code, stdout+stderr).
    pub fn tool_as(uid: u32, gid: u32, name: &str, args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
        let mut cmd = Command::new(tool(name));
        cmd.args(args).stdin(Stdio::null()).env_clear();
        let r = super::run_as(&mut cmd, uid, gid);
        (r.code, r.all())
    }

    /// Whether an s6-supervise process started by the s6-svscan of `scandir` for the service `name` is
    /// still running (matched by its argument and by its working directory lying in `scandir`).
    pub fn supervisor_running(scandir: &Path, name: &str) -> bool {
        let Ok(base) = std::fs::canonicalize(scandir) else {
            return false;
        };
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return false;
        };
        rd.filter_map(|e| e.ok()).any(|e| {
            let p = e.path();
            let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
            if comm.trim() != "s6-supervise" {
                return false;
            }
            let cmdline = std::fs::read(p.join("cmdline")).unwrap_or_default();
            let named = cmdline.split(|b| *b == 0).nth(1) == Some(name.as_bytes());
            named
                && std::fs::read_link(p.join("cwd"))
                    .map(|c| c.starts_with(&base))
                    .unwrap_or(false)
        })
    }
}
