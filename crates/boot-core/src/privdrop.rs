//! Dropping root to the runtime user (SPEC MW-11) and running helpers as that user (CM-10).
//!
//! The drop is always the full sequence `setgroups` → `setresgid` → `setresuid`, followed by a check
//! that it took and cannot be undone. A failure anywhere is an error the caller must turn into a
//! non-zero exit: nothing here ever falls back to running as root.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::unistd::{Gid, Uid};

use crate::accounts::Account;
use crate::error::SysError;
use crate::root::RootPrefix;

/// The credentials a drop sets, computed before any change so the post-fork child only makes syscalls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// The supplementary set of MW-11: the primary gid plus every group listing the user.
    pub groups: Vec<u32>,
}

impl Credentials {
    pub fn of(account: &Account) -> Credentials {
        Credentials {
            uid: account.uid,
            gid: account.gid,
            groups: account.group_set(),
        }
    }

    /// Sets groups, then gids, then uids. Only async-signal-safe work (plain syscalls, no allocation), so
    /// it may run between `fork` and `exec`.
    fn apply(&self, groups: &[Gid]) -> Result<(), Errno> {
        nix::unistd::setgroups(groups)?;
        let g = Gid::from_raw(self.gid);
        nix::unistd::setresgid(g, g, g)?;
        let u = Uid::from_raw(self.uid);
        nix::unistd::setresuid(u, u, u)?;
        Ok(())
    }

    /// Confirms real, effective and saved ids are the target and, for a non-root target, that root
    /// cannot be regained.
    fn verify(&self) -> Result<(), Errno> {
        let r = nix::unistd::getresuid()?;
        let g = nix::unistd::getresgid()?;
        let u = self.uid;
        if [r.real, r.effective, r.saved].iter().any(|x| x.as_raw() != u)
            || [g.real, g.effective, g.saved]
                .iter()
                .any(|x| x.as_raw() != self.gid)
        {
            return Err(Errno::EPERM);
        }
        if u != 0 && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
            return Err(Errno::EPERM);
        }
        Ok(())
    }

    fn gid_list(&self) -> Vec<Gid> {
        self.groups.iter().map(|g| Gid::from_raw(*g)).collect()
    }
}

/// Drops this process to the runtime user (MW-11): `setgroups` to the MW-11 set, real/effective/saved
/// gid, then uid, then verifies. The caller exits non-zero on error.
pub fn drop_privileges(account: &Account) -> Result<(), SysError> {
    let creds = Credentials::of(account);
    let groups = creds.gid_list();
    let who = Path::new(&account.name);
    creds
        .apply(&groups)
        .map_err(|e| SysError::new("drop privileges to", who, e))?;
    creds
        .verify()
        .map_err(|e| SysError::new("drop privileges to", who, e))
}

/// How a helper run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStatus {
    Exited(i32),
    Signaled(i32),
    FailedToStart(SysError),
}

impl RunStatus {
    pub fn success(&self) -> bool {
        matches!(self, RunStatus::Exited(0))
    }

    /// The conventional shell status: the exit code, or 128 + signal.
    pub fn code(&self) -> i32 {
        match self {
            RunStatus::Exited(c) => *c,
            RunStatus::Signaled(s) => 128 + s,
            RunStatus::FailedToStart(_) => 127,
        }
    }

    fn from_std(st: std::process::ExitStatus) -> RunStatus {
        match (st.code(), st.signal()) {
            (Some(c), _) => RunStatus::Exited(c),
            (None, Some(s)) => RunStatus::Signaled(s),
            (None, None) => RunStatus::Exited(-1),
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunStatus::Exited(c) => write!(f, "exit status {c}"),
            RunStatus::Signaled(s) => write!(f, "killed by signal {s}"),
            RunStatus::FailedToStart(e) => write!(f, "could not start: {e}"),
        }
    }
}

/// Runs `program` (an in-container path, resolved under the root prefix) as the runtime user and waits
/// for it (CM-10): stdin `/dev/null`, stdout and stderr inherited, working directory `/`, environment
/// inherited with `HOME` set to the user's home. When not root, runs with the current identity.
pub fn run_as_user(root: &RootPrefix, account: &Account, program: &Path, args: &[OsString]) -> RunStatus {
    let mut cmd = command_as_user(root, account, program, args);
    match cmd.status() {
        Ok(st) => RunStatus::from_std(st),
        Err(e) => RunStatus::FailedToStart(SysError::new("run", program, e)),
    }
}

/// The `Command` behind [`run_as_user`], for callers that need to redirect its output.
pub fn command_as_user(root: &RootPrefix, account: &Account, program: &Path, args: &[OsString]) -> Command {
    let mut cmd = Command::new(root.path(program));
    cmd.args(args)
        .stdin(Stdio::null())
        .current_dir(root.path("/"))
        .env("HOME", &account.home);
    root.export_to(&mut cmd);
    if nix::unistd::geteuid().is_root() && account.uid != 0 {
        let creds = Credentials::of(account);
        let groups = creds.gid_list();
        // SAFETY: the closure runs in the forked child before exec. It only calls setgroups, setresgid,
        // setresuid, getresuid, getresgid and setuid — plain syscalls that are async-signal-safe — on data
        // prepared before the fork; it allocates nothing and takes no locks.
        unsafe {
            cmd.pre_exec(move || {
                creds
                    .apply(&groups)
                    .and_then(|()| creds.verify())
                    .map_err(|e| std::io::Error::from_raw_os_error(e as i32))
            });
        }
    }
    cmd
}

/// Runs `f` with the runtime user's full credentials — uid, gid and the user's own supplementary groups
/// (MW-11's set), never root's — so what it creates is the user's and every permission check is the
/// user's, as on a root-squashed NFS volume. When root, `f` runs on a thread of its own whose credentials
/// alone change (the raw per-thread syscalls, not libc's process-wide ones); the thread ends with `f`, so
/// nothing has to be restored. Not root: `f` runs here, as the current user.
pub fn as_runtime_user<T: Send>(account: &Account, f: impl FnOnce() -> T + Send) -> Result<T, SysError> {
    if !rustix::process::geteuid().is_root() {
        return Ok(f());
    }
    let creds = Credentials::of(account);
    let who = Path::new(&account.name);
    std::thread::scope(|s| {
        s.spawn(|| {
            let groups: Vec<rustix::process::Gid> = creds
                .groups
                .iter()
                .map(|g| rustix::process::Gid::from_raw(*g))
                .collect();
            let g = rustix::process::Gid::from_raw(creds.gid);
            let u = rustix::process::Uid::from_raw(creds.uid);
            rustix::thread::set_thread_groups(&groups)
                .and_then(|()| rustix::thread::set_thread_res_gid(g, g, g))
                .and_then(|()| rustix::thread::set_thread_res_uid(u, u, u))
                .map_err(|e| SysError::new("take the credentials of", who, e))?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn hermes() -> Account {
        Account {
            name: "hermes".into(),
            uid: 10000,
            gid: 10000,
            home: PathBuf::from("/opt/data"),
            member_of: vec![44, 10000],
        }
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn credentials_use_primary_then_member_groups() {
        assert_eq!(Credentials::of(&hermes()).groups, vec![10000, 44]);
    }

    #[test]
    fn status_texts_and_codes() {
        assert_eq!(RunStatus::Exited(3).to_string(), "exit status 3");
        assert_eq!(RunStatus::Signaled(9).code(), 137);
        assert!(RunStatus::Exited(0).success());
        assert!(!RunStatus::Signaled(15).success());
    }

    #[test]
    fn helper_runs_as_runtime_user_with_home_and_groups() {
        assert!(
            is_root(),
            "this test needs root (it drops credentials for real); run the suite as root, as CI does"
        );
        let out = command_as_user(
            &RootPrefix::none(),
            &hermes(),
            Path::new("/bin/sh"),
            &[
                "-c".into(),
                "echo $(id -u):$(id -g):$(id -G):$HOME:$(pwd); grep -E '^Cap(Eff|Prm)' /proc/self/status"
                    .into(),
            ],
        )
        .output()
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let first = text.lines().next().unwrap();
        assert_eq!(first, "10000:10000:10000 44:/opt/data:/", "{text}");
        for line in text.lines().skip(1) {
            assert!(
                line.ends_with("0000000000000000"),
                "capabilities left after the drop: {line}"
            );
        }
    }

    #[test]
    fn helper_exit_and_signal_statuses() {
        let st = run_as_user(
            &RootPrefix::none(),
            &hermes(),
            Path::new("/bin/sh"),
            &["-c".into(), "exit 7".into()],
        );
        assert_eq!(st, RunStatus::Exited(7));
        let st = run_as_user(
            &RootPrefix::none(),
            &hermes(),
            Path::new("/bin/sh"),
            &["-c".into(), "kill -9 $$".into()],
        );
        assert_eq!(st, RunStatus::Signaled(9));
        let st = run_as_user(
            &RootPrefix::none(),
            &hermes(),
            Path::new("/nonexistent/helper"),
            &[],
        );
        assert!(
            matches!(st, RunStatus::FailedToStart(ref e) if e.errno == Errno::ENOENT),
            "{st}"
        );
    }

    #[test]
    fn runtime_user_credentials_create_as_the_user_with_only_its_own_groups() {
        assert!(
            is_root(),
            "this test needs root; run the suite as root, as CI does"
        );
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let t = tempfile::tempdir().unwrap();
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        // Group 4242's directory: root (which holds 4242 here) may write it, the runtime user may not.
        let staff = t.path().join("staff");
        std::fs::create_dir(&staff).unwrap();
        std::os::unix::fs::chown(&staff, Some(0), Some(4242)).unwrap();
        std::fs::set_permissions(&staff, std::fs::Permissions::from_mode(0o2775)).unwrap();
        let account = hermes();
        let (made, refused) = std::thread::scope(|s| {
            s.spawn(|| {
                rustix::thread::set_thread_groups(&[
                    rustix::process::Gid::from_raw(0),
                    rustix::process::Gid::from_raw(4242),
                ])
                .unwrap();
                let made = as_runtime_user(&account, || std::fs::create_dir(open.join("made"))).unwrap();
                let refused = as_runtime_user(&account, || std::fs::create_dir(staff.join("x"))).unwrap();
                (made, refused)
            })
            .join()
            .unwrap()
        });
        made.unwrap();
        let m = std::fs::metadata(open.join("made")).unwrap();
        assert_eq!((m.uid(), m.gid()), (10000, 10000));
        assert_eq!(
            refused.map_err(|e| e.raw_os_error()),
            Err(Some(Errno::EACCES as i32)),
            "root's supplementary group leaked into the runtime user's credentials"
        );
        // This thread is still root.
        let q = t.path().join("after");
        std::fs::create_dir(&q).unwrap();
        assert_eq!(std::fs::metadata(&q).unwrap().uid(), 0);
    }
}
