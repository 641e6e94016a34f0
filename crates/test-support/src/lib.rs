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
        let dir = tempfile::Builder::new().prefix("hermes-boot-test.").tempdir_in(scratch_base()).expect("tempdir");
        // The runtime user must be able to reach the volume through the prefix.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod tempdir");
        let r = TempRoot { dir };
        r.write(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nhermes:x:10000:10000::/opt/data:/bin/sh\n",
        );
        r.write("/etc/group", "root:x:0:\nvideo:x:44:\nnogroup:x:65534:\nhermes:x:10000:\n");
        for d in ["/run", "/tmp", "/opt/hermes", "/proc/1"] {
            r.mkdir(d);
        }
        std::fs::set_permissions(r.path("/tmp"), std::fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
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
        String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))).into_owned()
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
        std::fs::symlink_metadata(self.path(p)).map(|m| m.file_type().is_symlink()).unwrap_or(false)
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
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HERMES_BOOT_ROOT", self.root())
            .stdin(Stdio::null());
        c
    }
}

/// Where temporary roots go: not under a tmpfs that may be mounted `nosuid`/`nodev` in odd ways, and
/// traversable by the runtime user.
fn scratch_base() -> PathBuf {
    std::env::var_os("HERMES_TEST_SCRATCH").map(PathBuf::from).unwrap_or_else(std::env::temp_dir)
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
        assert_eq!(self.code, Some(code), "unexpected exit status\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
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
