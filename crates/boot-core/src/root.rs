//! The root prefix of SPEC CM-02: `--root DIR`, else `HERMES_BOOT_ROOT`.
//!
//! It is not a chroot: identities and syscalls are real; only the absolute paths the programs use are
//! re-anchored below DIR so that tests can run the real binaries against a temporary tree.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Environment variable naming the prefix; inherited by child programs.
pub const ENV_ROOT: &str = "HERMES_BOOT_ROOT";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootPrefix {
    dir: Option<PathBuf>,
}

impl RootPrefix {
    /// No prefix: paths are used as given.
    pub fn none() -> Self {
        RootPrefix { dir: None }
    }

    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir: PathBuf = dir.into();
        if dir.as_os_str().is_empty() {
            RootPrefix::none()
        } else {
            RootPrefix { dir: Some(dir) }
        }
    }

    /// `--root` wins; otherwise `HERMES_BOOT_ROOT` (empty means no prefix).
    pub fn from_arg_or(arg: Option<PathBuf>, env_value: Option<&std::ffi::OsStr>) -> Self {
        match arg {
            Some(d) => RootPrefix::new(d),
            None => RootPrefix::new(env_value.unwrap_or_default()),
        }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The host path of an in-container absolute path. Kernel interfaces that must stay the real
    /// kernel's (`/proc/self/…`, `/proc/sys/…`, `/dev/null`) are exempt. A relative path is returned
    /// unchanged (callers reject relative paths where the spec asks them to).
    pub fn path(&self, container_path: impl AsRef<Path>) -> PathBuf {
        let p = container_path.as_ref();
        let Some(dir) = &self.dir else {
            return p.to_path_buf();
        };
        if !p.is_absolute() || is_exempt(p) {
            return p.to_path_buf();
        }
        let mut out: OsString = dir.as_os_str().to_os_string();
        let mut bytes = out.into_vec();
        while bytes.len() > 1 && bytes.ends_with(b"/") {
            bytes.pop();
        }
        bytes.extend_from_slice(p.as_os_str().as_bytes());
        out = OsString::from_vec(bytes);
        PathBuf::from(out)
    }

    /// Sets `HERMES_BOOT_ROOT` for child programs to the prefix in use (so `--root` reaches them too).
    pub fn export_to(&self, cmd: &mut std::process::Command) {
        match &self.dir {
            Some(d) => cmd.env(ENV_ROOT, d),
            None => cmd.env_remove(ENV_ROOT),
        };
    }
}

fn is_exempt(p: &Path) -> bool {
    p == Path::new("/dev/null") || p.starts_with("/proc/self") || p.starts_with("/proc/sys")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_prefix_leaves_paths_alone() {
        assert_eq!(
            RootPrefix::none().path("/etc/passwd"),
            PathBuf::from("/etc/passwd")
        );
        assert_eq!(
            RootPrefix::new("").path("/etc/passwd"),
            PathBuf::from("/etc/passwd")
        );
    }

    #[test]
    fn prefix_is_prepended_to_absolute_paths() {
        let r = RootPrefix::new("/tmp/r/");
        assert_eq!(r.path("/etc/passwd"), PathBuf::from("/tmp/r/etc/passwd"));
        assert_eq!(r.path("/proc/1/status"), PathBuf::from("/tmp/r/proc/1/status"));
        assert_eq!(r.path("/run/service"), PathBuf::from("/tmp/r/run/service"));
    }

    #[test]
    fn kernel_paths_are_exempt() {
        let r = RootPrefix::new("/tmp/r");
        assert_eq!(r.path("/proc/self/fd/3"), PathBuf::from("/proc/self/fd/3"));
        assert_eq!(
            r.path("/proc/sys/fs/protected_hardlinks"),
            PathBuf::from("/proc/sys/fs/protected_hardlinks")
        );
        assert_eq!(r.path("/dev/null"), PathBuf::from("/dev/null"));
        assert_eq!(r.path("/procx/1"), PathBuf::from("/tmp/r/procx/1"));
    }
}
