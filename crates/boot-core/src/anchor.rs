//! Resolving the absolute paths root starts from (`HERMES_HOME`, `HERMES_AUTH_HOME`, `XDG_RUNTIME_DIR`,
//! the scan directory, image directories): from `/`, one component at a time, with the rule of systemd's
//! `chase(CHASE_SAFE)`.
//!
//! A directory only root can change is trusted, and so is a symlink in it (root made it). Once a
//! directory belongs to another user, that user could have swapped anything below it: from there on
//! every directory must be the same user's, and no symlink is followed. A step from a user's directory to
//! one of root's (a root directory the user renamed into its tree) or of a third user, a symlink there,
//! or a directory others may change without the sticky bit, is refused with one line naming the
//! component. The last component is opened without following a symlink but is not held to the owner
//! rule: it is the directory the caller acts on, and the caller decides what its owner means.
//!
//! A process without root has no root to protect and can be made to do only what it could do anyway:
//! it accepts a directory others may change (Kubernetes' emptyDir `/run` is `2777` after `fsGroup`).
//! The owner rule still holds for it.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use rustix::fs::{Mode, OFlags};

use crate::error::{SysError, SysResult};
use crate::guarded::{Dir, Entry, Meta};
use crate::report::{Change, Report};
use crate::root::RootPrefix;

/// Symlinks followed in one resolution before it is refused (the kernel's own limit).
const MAX_SYMLINKS: usize = 40;

/// Who could have changed the directories resolved so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// Only root.
    Root,
    /// Root and this user (the first non-root owner met).
    User(u32),
}

/// Whether users other than the owner may rename or replace entries of this directory: world-writable,
/// or group-writable by a group other than root's, without the sticky bit.
fn others_may_replace(m: &Meta) -> bool {
    let sticky = m.perm & 0o1000 != 0;
    !sticky && (m.perm & 0o002 != 0 || (m.perm & 0o020 != 0 && m.gid != 0 && m.uid == 0))
}

/// The trust after stepping into a directory with `m`, or the reason the step is unsafe. `as_root`:
/// whether the resolving process is root, the only one the shared-directory rule protects.
fn step(trust: Trust, m: &Meta, as_root: bool) -> Result<Trust, String> {
    if as_root && others_may_replace(m) {
        return Err(format!(
            "a directory users other than its owner may change ({:04o} {}:{})",
            m.perm, m.uid, m.gid
        ));
    }
    match trust {
        Trust::Root if m.uid == 0 => Ok(Trust::Root),
        Trust::Root => Ok(Trust::User(m.uid)),
        Trust::User(u) if m.uid == u => Ok(trust),
        Trust::User(u) => Err(format!(
            "owned by uid {} inside a directory uid {u} controls, who could have put it there",
            m.uid
        )),
    }
}

impl Dir {
    /// Opens an anchor, an absolute path root starts from: resolved from `/` under the rule above, the
    /// last component opened with `O_DIRECTORY|O_NOFOLLOW`.
    pub fn open_anchor(root: &RootPrefix, path: &Path) -> SysResult<Entry<Dir>> {
        resolve(root, path, None).map(|(e, _)| e)
    }
}

/// Resolves every component of `path` as a directory under the rule above and returns the last,
/// opened `O_NOFOLLOW`. With `create`, missing components are made (root 0755, like `mkdir -p`), and a
/// dry run reports the first one and returns `Missing`. The path alongside names the component the
/// result is about (the missing, symlinked or non-directory one).
pub fn resolve(root: &RootPrefix, path: &Path, create: Option<&Report>) -> SysResult<(Entry<Dir>, PathBuf)> {
    let top_fd = rustix::fs::open(
        root.path(Path::new("/")),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SysError::new("open", "/", e))?;
    // The chain of directories resolved so far, each with the trust reached there; `..` pops.
    let mut chain: Vec<(Dir, Trust)> = vec![(Dir::from_fd(top_fd, Path::new("/")), Trust::Root)];
    let mut todo: VecDeque<OsString> = components(path)?;
    let mut followed = 0;
    let as_root = rustix::process::geteuid().is_root();
    while let Some(name) = todo.pop_front() {
        let last = todo.is_empty();
        let (cur, trust) = chain.last().expect("the chain always holds /");
        let trust = *trust;
        if name == ".." {
            if chain.len() > 1 {
                chain.pop();
            }
            continue;
        }
        let at = cur.child(&name);
        match cur.subdir(&name)? {
            Entry::Found(d) => {
                if last {
                    return Ok((Entry::Found(d), at));
                }
                let next =
                    step(trust, &d.meta()?, as_root).map_err(|why| SysError::refused("resolve", &at, why))?;
                chain.push((d, next));
            }
            Entry::Missing => {
                let Some(report) = create else {
                    return Ok((Entry::Missing, at));
                };
                // In a dry run the directory stays missing, and so does everything below it.
                if !report.apply(Change::made("create directory", &at, 0o755), false, || {
                    cur.mkdir(&name, 0o755, None).map(|_| true)
                })? {
                    report.plan_below(&at, todo.iter(), 0o755, None);
                    return Ok((Entry::Missing, at));
                }
                // Pushed back: the new directory is opened (and checked) like any other.
                todo.push_front(name);
            }
            Entry::Symlink => {
                // The last component is the caller's to judge; a symlink deeper is followed only where
                // no one but root could have made it.
                if last {
                    return Ok((Entry::Symlink, at));
                }
                let link = cur
                    .stat(&name)?
                    .ok_or_else(|| SysError::new("resolve", &at, Errno::ENOENT))?;
                if trust != Trust::Root || link.uid != 0 {
                    return Err(SysError::refused(
                        "resolve",
                        &at,
                        "a symlink the runtime user could have made",
                    ));
                }
                followed += 1;
                if followed > MAX_SYMLINKS {
                    return Err(SysError::new("resolve", &at, Errno::ELOOP));
                }
                let target = rustix::fs::readlinkat(cur.fd(), name.as_os_str(), Vec::new())
                    .map_err(|e| SysError::new("readlink", &at, e))?;
                let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                if target.is_absolute() {
                    chain.truncate(1);
                }
                for c in components(&target)?.into_iter().rev() {
                    todo.push_front(c);
                }
            }
            Entry::Other(k) => return Ok((Entry::Other(k), at)),
        }
    }
    // `/` itself (or a path of only `..`): the start of the chain.
    let (d, _) = chain.pop().expect("the chain always holds /");
    let p = d.path().to_path_buf();
    Ok((Entry::Found(d), p))
}

fn components(path: &Path) -> SysResult<VecDeque<OsString>> {
    let mut out = VecDeque::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => out.push_back(OsString::from("..")),
            Component::Normal(n) => out.push_back(n.to_os_string()),
            Component::Prefix(_) => return Err(SysError::new("resolve", path, Errno::EINVAL)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{chown, symlink, PermissionsExt};

    fn prefix() -> (tempfile::TempDir, RootPrefix) {
        let t = tempfile::tempdir().unwrap();
        let r = RootPrefix::new(t.path());
        (t, r)
    }

    fn mkdir(t: &tempfile::TempDir, rel: &str, mode: u32, owner: u32) {
        let p = t.path().join(rel);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        chown(&p, Some(owner), Some(owner)).unwrap();
    }

    fn refusal(r: &RootPrefix, p: &str) -> String {
        match resolve(r, Path::new(p), None) {
            Err(e) if e.refusal.is_some() => e.to_string(),
            other => panic!("{p} was not refused: {other:?}"),
        }
    }

    fn found(r: &RootPrefix, p: &str) -> PathBuf {
        match resolve(r, Path::new(p), None) {
            Ok((Entry::Found(d), _)) => d.path().to_path_buf(),
            other => panic!("{p} was not found: {other:?}"),
        }
    }

    #[test]
    fn a_users_own_chain_resolves() {
        let (t, r) = prefix();
        mkdir(&t, "opt", 0o755, 0);
        mkdir(&t, "opt/data/profiles/coder", 0o755, 10000);
        mkdir(&t, "opt/data", 0o755, 10000);
        mkdir(&t, "opt/data/profiles", 0o755, 10000);
        assert_eq!(
            found(&r, "/opt/data/profiles/coder"),
            Path::new("/opt/data/profiles/coder")
        );
    }

    #[test]
    fn a_root_directory_inside_a_users_tree_is_refused() {
        let (t, r) = prefix();
        mkdir(&t, "opt", 0o755, 0);
        mkdir(&t, "opt/data", 0o755, 10000);
        mkdir(&t, "opt/data/creds/auth", 0o700, 0);
        mkdir(&t, "opt/data/creds", 0o700, 0);
        let msg = refusal(&r, "/opt/data/creds/auth");
        assert!(
            msg.contains("/opt/data/creds") && msg.contains("uid 10000"),
            "{msg}"
        );
    }

    #[test]
    fn a_symlink_in_a_users_tree_is_refused_and_roots_own_are_followed() {
        let (t, r) = prefix();
        mkdir(&t, "opt", 0o755, 0);
        mkdir(&t, "opt/data", 0o755, 10000);
        mkdir(&t, "run/service", 0o755, 0);
        symlink("/run/service", t.path().join("opt/data/profiles")).unwrap();
        std::os::unix::fs::lchown(t.path().join("opt/data/profiles"), Some(10000), Some(10000)).unwrap();
        let msg = refusal(&r, "/opt/data/profiles/coder");
        assert!(
            msg.contains("/opt/data/profiles") && msg.contains("symlink"),
            "{msg}"
        );
        // The image's own symlinks (`/var/run` → `/run`) are root's, in root's directories.
        mkdir(&t, "var", 0o755, 0);
        symlink("../run", t.path().join("var/run")).unwrap();
        assert_eq!(found(&r, "/var/run/service"), Path::new("/run/service"));
    }

    #[test]
    fn directories_others_may_change_are_refused_unless_sticky() {
        let (t, r) = prefix();
        mkdir(&t, "shared/x", 0o755, 0);
        mkdir(&t, "shared", 0o777, 0);
        assert!(refusal(&r, "/shared/x").contains("0777"));
        mkdir(&t, "tmp/xdg", 0o700, 10000);
        mkdir(&t, "tmp", 0o1777, 0);
        assert_eq!(found(&r, "/tmp/xdg"), Path::new("/tmp/xdg"));
        mkdir(&t, "staff/y", 0o755, 0);
        mkdir(&t, "staff", 0o775, 0);
        chown(t.path().join("staff"), Some(0), Some(50)).unwrap();
        refusal(&r, "/staff/y");
    }

    #[test]
    fn without_root_a_shared_directory_is_accepted_and_the_owner_rule_still_holds() {
        let meta = |uid, gid, perm| Meta {
            dev: 1,
            ino: 2,
            uid,
            gid,
            perm,
            nlink: 2,
            kind: rustix::fs::FileType::Directory,
            size: 0,
        };
        // Kubernetes' emptyDir /run after fsGroup 2000.
        let run = meta(0, 2000, 0o2777);
        assert!(step(Trust::Root, &run, true).is_err());
        assert_eq!(step(Trust::Root, &run, false), Ok(Trust::Root));
        let theirs = meta(20000, 20000, 0o755);
        assert!(step(Trust::User(10000), &theirs, false).is_err());
    }

    #[test]
    fn the_last_component_is_not_held_to_the_owner_rule_but_never_followed() {
        let (t, r) = prefix();
        mkdir(&t, "opt", 0o755, 0);
        mkdir(&t, "opt/data", 0o755, 10000);
        mkdir(&t, "opt/data/old", 0o700, 20000);
        assert_eq!(found(&r, "/opt/data/old"), Path::new("/opt/data/old"));
        symlink("/etc", t.path().join("opt/data/l")).unwrap();
        assert!(matches!(
            resolve(&r, Path::new("/opt/data/l"), None),
            Ok((Entry::Symlink, _))
        ));
    }

    #[test]
    fn create_makes_missing_components_as_root() {
        let (t, r) = prefix();
        let report = Report::stage2(false);
        match resolve(&r, Path::new("/a/b/c"), Some(&report)).unwrap() {
            (Entry::Found(d), _) => assert_eq!(d.path(), Path::new("/a/b/c")),
            other => panic!("{other:?}"),
        }
        let m = std::fs::metadata(t.path().join("a/b")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o755);
    }
}
