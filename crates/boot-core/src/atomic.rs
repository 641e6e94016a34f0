//! Creating and rewriting files without ever exposing a partial or over-permissive file (SPEC CM-06,
//! CM-07).
//!
//! A new file is first an unnamed `O_TMPFILE` in the target directory (or, where the filesystem has no
//! `O_TMPFILE`, a temporary with an unpredictable name), given its final owner and mode before the first
//! byte is written, fsynced, and only then linked or renamed to its name: a crash, ENOSPC or a kill at any
//! instant leaves either the old file or the new one, never a truncated secret or a root-owned name. The
//! runtime user can write most of the directories involved, so a temporary's name is 64 random bits and a
//! name it planted first is skipped, never waited on.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, OwnedFd};

use std::path::PathBuf;

use nix::errno::Errno;
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, CWD};

use crate::error::{SysError, SysResult};
use crate::guarded::{euid, gid, on_fresh_temp, temp_name, uid, Dir, Entry, Meta};
use crate::owner::Owner;
use crate::report::{Change, Report};

/// What [`create_exclusive`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Created,
    /// An entry of that name existed (or appeared meanwhile); it was left alone.
    Existed,
}

/// Whether `/proc/self/fd` is there to link an `O_TMPFILE` by (`AT_EMPTY_PATH` would need
/// CAP_DAC_READ_SEARCH, which Docker does not grant).
fn proc_fd_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| rustix::fs::access("/proc/self/fd", rustix::fs::Access::EXISTS).is_ok())
}

/// A file being made in `dir`: its owner and mode are final from the start, it has no name others can see
/// (`O_TMPFILE`) or a random temporary one, and it is removed unless published.
pub struct NewFile<'d> {
    dir: &'d Dir,
    fd: OwnedFd,
    /// The temporary's name; `None` for an unnamed `O_TMPFILE`, or once published.
    temp: Option<OsString>,
    /// The target's path, for messages.
    shown: PathBuf,
}

impl<'d> NewFile<'d> {
    /// A new empty file for `dir/name` with `mode`, owned by `owner` when running as root.
    pub fn create(dir: &'d Dir, name: &OsStr, mode: u32, owner: Option<Owner>) -> SysResult<Self> {
        let shown = dir.child(name);
        let initial = creation_mode(mode);
        let unnamed = if proc_fd_available() {
            match rustix::fs::openat(
                dir.fd(),
                ".",
                OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
                initial,
            ) {
                Ok(fd) => Some(fd),
                // No O_TMPFILE on this filesystem (overlay on old kernels, FUSE, NFS).
                Err(rustix::io::Errno::OPNOTSUPP)
                | Err(rustix::io::Errno::ISDIR)
                | Err(rustix::io::Errno::INVAL) => None,
                Err(e) => return Err(SysError::new("create", &shown, e)),
            }
        } else {
            None
        };
        let (fd, temp) = match unnamed {
            Some(fd) => (fd, None),
            None => {
                let (fd, t) = open_named_temp(dir, || temp_name(name), initial, &shown)?;
                (fd, Some(t))
            }
        };
        let new = NewFile { dir, fd, temp, shown };
        // The exact mode (independent of umask), then the owner, both before the first byte: no instant
        // exists at which another user could read what is written next. The mode goes first while root
        // still owns the file, so a root without CAP_FOWNER (`--cap-drop ALL --cap-add CHOWN,…`) can set it.
        rustix::fs::fchmod(&new.fd, Mode::from_raw_mode(mode))
            .map_err(|e| SysError::new("chmod", &new.shown, e))?;
        if let Some(Owner { uid: u, gid: g }) = owner {
            if euid() == 0 {
                rustix::fs::fchown(&new.fd, Some(uid(u)), Some(gid(g)))
                    .map_err(|e| SysError::new("chown", &new.shown, e))?;
            }
        }
        Ok(new)
    }

    /// Writes all of `content` and fsyncs it.
    pub fn write_synced(&mut self, mut content: &[u8]) -> SysResult<()> {
        while !content.is_empty() {
            match rustix::io::write(&self.fd, content) {
                Ok(0) => return Err(SysError::new("write", &self.shown, Errno::ENOSPC)),
                Ok(n) => content = &content[n..],
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(SysError::new("write", &self.shown, e)),
            }
        }
        rustix::fs::fsync(&self.fd).map_err(|e| SysError::new("fsync", &self.shown, e))
    }

    /// Gives the file the name `name` unless an entry of that name exists (of any type, symlinks
    /// included), which is left alone.
    pub fn publish_new(&mut self, name: &OsStr) -> SysResult<Created> {
        let dir = self.dir;
        let published = match &self.temp {
            None => {
                let via = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
                rustix::fs::linkat(CWD, via.as_str(), dir.fd(), name, AtFlags::SYMLINK_FOLLOW)
            }
            Some(tmp) => match rustix::fs::renameat_with(
                dir.fd(),
                tmp.as_os_str(),
                dir.fd(),
                name,
                RenameFlags::NOREPLACE,
            ) {
                // The filesystem cannot RENAME_NOREPLACE: a hard link is just as exclusive.
                Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
                    rustix::fs::linkat(dir.fd(), tmp.as_os_str(), dir.fd(), name, AtFlags::empty())
                }
                other => {
                    if other.is_ok() {
                        self.temp = None;
                    }
                    other
                }
            },
        };
        match published {
            Ok(()) => {
                sync_dir(dir);
                Ok(Created::Created)
            }
            Err(rustix::io::Errno::EXIST) => Ok(Created::Existed),
            Err(e) => Err(SysError::new("create", &self.shown, e)),
        }
    }

    /// Puts the file in place of `dir/name`, whatever stood there.
    pub fn publish_over(mut self, name: &OsStr) -> SysResult<()> {
        let tmp = self.named_temp(name)?;
        rustix::fs::renameat(self.dir.fd(), tmp.as_os_str(), self.dir.fd(), name)
            .map_err(|e| SysError::new("rename", &self.shown, e))?;
        self.temp = None;
        sync_dir(self.dir);
        Ok(())
    }

    /// Keeps the file under its random temporary name (linking an unnamed one first) and returns that
    /// name; the caller renames it later and removes it on failure.
    pub fn keep_as_temp(mut self, name: &OsStr) -> SysResult<OsString> {
        let tmp = self.named_temp(name)?;
        self.temp = None;
        Ok(tmp)
    }

    /// The file's temporary name; an unnamed file is first linked under a fresh one (rename(2) needs a
    /// name to move).
    fn named_temp(&mut self, name: &OsStr) -> SysResult<OsString> {
        if let Some(t) = &self.temp {
            return Ok(t.clone());
        }
        let via = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
        let dir = self.dir;
        let ((), tmp) = on_fresh_temp(
            || temp_name(name),
            |tmp| rustix::fs::linkat(CWD, via.as_str(), dir.fd(), tmp, AtFlags::SYMLINK_FOLLOW),
            |tmp, e| SysError::new("create", dir.child(tmp), e),
        )?;
        self.temp = Some(tmp.clone());
        Ok(tmp)
    }
}

impl Drop for NewFile<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.temp.take() {
            let _ = rustix::fs::unlinkat(self.dir.fd(), t.as_os_str(), AtFlags::empty());
        }
    }
}

/// The mode a new file is created with, before its final mode and owner are set: never more than the
/// owner's read and write, so that until the `fchown` no one else can open it.
fn creation_mode(mode: u32) -> Mode {
    Mode::from_raw_mode(mode & 0o600)
}

/// Opens a new temporary under a name from `next_name` (unpredictable ones: [`temp_name`]), skipping
/// names that exist: whatever the runtime user planted there (a file, a symlink to a secret) is never
/// opened.
fn open_named_temp(
    dir: &Dir,
    next_name: impl FnMut() -> SysResult<OsString>,
    mode: Mode,
    shown: &std::path::Path,
) -> SysResult<(OwnedFd, OsString)> {
    on_fresh_temp(
        next_name,
        |tmp| {
            rustix::fs::openat(
                dir.fd(),
                tmp,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                mode,
            )
        },
        |_, e| SysError::new("create", shown, e),
    )
}

fn sync_dir(dir: &Dir) {
    // A failed directory fsync loses nothing already published; the rename itself is atomic.
    let _ = rustix::fs::fsync(dir.fd());
}

/// Creates `dir/name` with `content`, `mode` and `owner` (when running as root) unless an entry of that
/// name exists — of any type, symlinks included (CM-06). Never replaces anything.
pub fn create_exclusive(
    dir: &Dir,
    report: &Report,
    name: &OsStr,
    content: &[u8],
    mode: u32,
    owner: Option<Owner>,
) -> SysResult<Created> {
    if dir.stat(name)?.is_some() {
        return Ok(Created::Existed);
    }
    let change = Change::made("create", dir.child(name), mode).owned_by(owner);
    let made = report.apply_if(change, || {
        let mut new = NewFile::create(dir, name, mode, owner)?;
        new.write_synced(content)?;
        Ok(new.publish_new(name)? == Created::Created)
    })?;
    Ok(match made {
        true => Created::Created,
        false => Created::Existed,
    })
}

/// Reads the regular file `dir/name` for a later [`rewrite`]. `Entry::Symlink` for a symlink, `Missing`
/// when absent, `Other` for any other type.
pub fn read_for_rewrite(dir: &Dir, name: &OsStr, limit: u64) -> SysResult<Entry<(Vec<u8>, Meta)>> {
    use std::io::Read;
    let mut f = match dir.open_regular(name)? {
        Entry::Found(f) => f,
        Entry::Missing => return Ok(Entry::Missing),
        Entry::Symlink => return Ok(Entry::Symlink),
        Entry::Other(k) => return Ok(Entry::Other(k)),
    };
    let st = rustix::fs::fstat(&f).map_err(|e| SysError::new("stat", dir.child(name), e))?;
    let meta = Meta::from_stat(&st);
    let mut buf = Vec::new();
    (&mut f)
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| SysError::new("read", dir.child(name), e))?;
    if buf.len() as u64 > limit {
        return Err(SysError::new("read", dir.child(name), Errno::EFBIG));
    }
    Ok(Entry::Found((buf, meta)))
}

/// Replaces the content of `dir/name`, keeping the owner and mode recorded in `original` (CM-07):
/// temporary with the same owner and mode, fsync, rename over the original, fsync of the directory.
pub fn rewrite(dir: &Dir, report: &Report, name: &OsStr, original: &Meta, content: &[u8]) -> SysResult<()> {
    report.apply(Change::new("rewrite", dir.child(name)), (), || {
        let owner = if euid() == 0 {
            Some(Owner::new(original.uid, original.gid))
        } else {
            None
        };
        let mut new = NewFile::create(dir, name, original.perm, owner)?;
        new.write_synced(content)?;
        new.publish_over(name)
    })
}

/// Writes `dir/name` whether or not it exists, atomically (temporary + rename), with `mode` and owner.
/// Used for root-owned image state such as envdir values (S2-29), never for files in a user's tree
/// where the existing owner must be kept.
pub fn replace(
    dir: &Dir,
    report: &Report,
    name: &OsStr,
    content: &[u8],
    mode: u32,
    owner: Option<Owner>,
) -> SysResult<()> {
    let change = Change::made("write", dir.child(name), mode).owned_by(owner);
    report.apply(change, (), || {
        let mut new = NewFile::create(dir, name, mode, owner)?;
        new.write_synced(content)?;
        new.publish_over(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::RootPrefix;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn anchor(t: &tempfile::TempDir) -> Dir {
        Dir::open_anchor(&RootPrefix::none(), t.path())
            .unwrap()
            .found()
            .unwrap()
    }

    fn names(t: &tempfile::TempDir) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_file_read_for_rewrite_may_be_exactly_the_limit() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), vec![b'x'; 100]).unwrap();
        let d = anchor(&t);
        let (bytes, _) = read_for_rewrite(&d, OsStr::new("f"), 100)
            .unwrap()
            .found()
            .unwrap();
        assert_eq!(bytes.len(), 100);
        assert_eq!(
            read_for_rewrite(&d, OsStr::new("f"), 99).unwrap_err().errno,
            Errno::EFBIG
        );
    }

    #[test]
    fn a_file_that_cannot_be_put_in_place_leaves_no_temporary() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("taken")).unwrap();
        std::fs::write(t.path().join("taken/inside"), b"").unwrap();
        let d = anchor(&t);
        let mut f = NewFile::create(&d, OsStr::new("taken"), 0o644, None).unwrap();
        f.write_synced(b"new").unwrap();
        // Renaming a file over a non-empty directory fails; the named temporary must go with the file.
        assert!(f.publish_over(OsStr::new("taken")).is_err());
        assert_eq!(names(&t), vec!["taken"]);
        assert!(t.path().join("taken/inside").exists());
    }

    /// The variable that makes a run of this test binary the child of
    /// [`without_proc_fd_files_are_made_under_named_temporaries`].
    const NAMED_CHILD: &str = "HERMES_ATOMIC_NAMED_CHILD";

    /// Without `/proc/self/fd` (an empty `/proc` in a mount namespace of the child's own) an `O_TMPFILE`
    /// cannot be linked, so every file is made under a random temporary name: the same results, and
    /// nothing left behind.
    #[test]
    fn without_proc_fd_files_are_made_under_named_temporaries() {
        assert_eq!(
            euid(),
            0,
            "this test makes a mount namespace: run it as root, as CI does"
        );
        if let Some(dir) = std::env::var_os(NAMED_CHILD) {
            use nix::mount::{mount, MsFlags};
            crate::ownership::tests::private_mount_namespace();
            mount(
                Some("tmpfs"),
                "/proc",
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            )
            .expect("empty /proc");
            assert!(!proc_fd_available());
            let d = Dir::open_anchor(&RootPrefix::none(), std::path::Path::new(&dir))
                .unwrap()
                .found()
                .unwrap();
            let r = Report::stage2(false);
            assert_eq!(
                create_exclusive(&d, &r, OsStr::new("new"), b"one", 0o640, None).unwrap(),
                Created::Created
            );
            assert_eq!(
                create_exclusive(&d, &r, OsStr::new("new"), b"two", 0o640, None).unwrap(),
                Created::Existed
            );
            let (_, meta) = read_for_rewrite(&d, OsStr::new("new"), 1 << 20)
                .unwrap()
                .found()
                .unwrap();
            rewrite(&d, &r, OsStr::new("new"), &meta, b"three").unwrap();
            let kept = NewFile::create(&d, OsStr::new("kept"), 0o600, None)
                .unwrap()
                .keep_as_temp(OsStr::new("kept"))
                .unwrap();
            println!("KEPT {}", kept.to_string_lossy());
            return;
        }
        assert!(proc_fd_available(), "this machine has /proc/self/fd");
        let t = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "atomic::tests::without_proc_fd_files_are_made_under_named_temporaries",
                "--exact",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env(NAMED_CHILD, t.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read(t.path().join("new")).unwrap(), b"three");
        assert_eq!(
            std::fs::metadata(t.path().join("new"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o640
        );
        let kept = stdout
            .lines()
            .find_map(|l| l.strip_prefix("KEPT "))
            .expect("kept name");
        assert!(kept.starts_with(".kept.tmp."), "{kept}");
        // Only the file and the temporary the caller asked to keep.
        assert_eq!(names(&t), vec![kept.to_string(), "new".to_string()]);
    }

    #[test]
    fn a_new_file_is_born_readable_by_its_owner_at_most() {
        // Whatever the final mode, nobody but the creating user can open the file before its chmod/chown.
        for (mode, born) in [
            (0o644, 0o600),
            (0o640, 0o600),
            (0o600, 0o600),
            (0o400, 0o400),
            (0o755, 0o600),
            (0o4755, 0o600),
            (0o077, 0o000),
        ] {
            assert_eq!(creation_mode(mode), Mode::from_raw_mode(born), "{mode:o}");
        }
    }

    #[test]
    fn a_named_temporary_never_opens_what_was_planted_at_its_name() {
        let t = tempfile::tempdir().unwrap();
        let d = anchor(&t);
        std::fs::write(t.path().join("victim"), b"root's secret").unwrap();
        symlink(t.path().join("victim"), t.path().join(".f.tmp.1")).unwrap();
        std::fs::write(t.path().join(".f.tmp.2"), b"planted").unwrap();
        let mut n = 0;
        let names = || {
            n += 1;
            Ok(OsString::from(format!(".f.tmp.{n}")))
        };
        let (fd, tmp) = open_named_temp(&d, names, Mode::from_raw_mode(0o600), &t.path().join("f")).unwrap();
        assert_eq!(tmp, ".f.tmp.3");
        rustix::io::write(&fd, b"new").unwrap();
        assert_eq!(std::fs::read(t.path().join("victim")).unwrap(), b"root's secret");
        assert_eq!(std::fs::read(t.path().join(".f.tmp.2")).unwrap(), b"planted");
        assert_eq!(std::fs::read(t.path().join(".f.tmp.3")).unwrap(), b"new");
    }

    #[test]
    fn a_file_being_written_has_no_name_until_published() {
        let t = tempfile::tempdir().unwrap();
        let d = anchor(&t);
        let probe = rustix::fs::openat(
            CWD,
            t.path(),
            OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        );
        if probe.is_err() || !proc_fd_available() {
            eprintln!(
                "skipped: {} has no O_TMPFILE or /proc/self/fd ({probe:?}): files there are named temporaries",
                t.path().display()
            );
            return;
        }
        let mut f = NewFile::create(&d, OsStr::new("secret"), 0o600, None).unwrap();
        f.write_synced(b"half of a secret").unwrap();
        // Nothing another process could open by name, not even a temporary.
        assert_eq!(names(&t), Vec::<String>::new());
        assert_eq!(f.publish_new(OsStr::new("secret")).unwrap(), Created::Created);
        assert_eq!(names(&t), vec!["secret".to_string()]);
        assert_eq!(
            std::fs::read(t.path().join("secret")).unwrap(),
            b"half of a secret"
        );
    }

    #[test]
    fn temporary_names_are_unpredictable() {
        let a = temp_name(OsStr::new(".env")).unwrap();
        let b = temp_name(OsStr::new(".env")).unwrap();
        assert_ne!(a, b);
        let suffix = a.as_bytes().strip_prefix(b"..env.tmp.").expect("prefix");
        assert_eq!(suffix.len(), 16);
        assert!(suffix.iter().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn replace_leaves_no_temporary_and_keeps_the_new_owner_and_mode() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("v"), b"old").unwrap();
        let d = anchor(&t);
        let r = Report::stage2(false);
        replace(&d, &r, OsStr::new("v"), b"new", 0o640, None).unwrap();
        assert_eq!(std::fs::read(t.path().join("v")).unwrap(), b"new");
        let md = std::fs::metadata(t.path().join("v")).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, 0o640);
        assert_eq!(
            std::fs::read_dir(t.path()).unwrap().count(),
            1,
            "no temporary left behind"
        );
    }

    #[test]
    fn create_exclusive_makes_file_with_exact_mode() {
        let t = tempfile::tempdir().unwrap();
        let d = anchor(&t);
        let r = Report::stage2(false);
        assert_eq!(
            create_exclusive(&d, &r, OsStr::new(".env"), b"A=1\n", 0o600, None).unwrap(),
            Created::Created
        );
        let md = std::fs::metadata(t.path().join(".env")).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, 0o600);
        assert_eq!(std::fs::read(t.path().join(".env")).unwrap(), b"A=1\n");
        assert_eq!(
            std::fs::read_dir(t.path()).unwrap().count(),
            1,
            "no temporary left behind"
        );
    }

    #[test]
    fn create_exclusive_never_replaces_anything() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"old").unwrap();
        // A dangling symlink whose target is inside the test's own directory, so that following it
        // would be seen.
        let target = t.path().join("target");
        symlink(&target, t.path().join("dangling")).unwrap();
        let d = anchor(&t);
        let r = Report::stage2(false);
        assert_eq!(
            create_exclusive(&d, &r, OsStr::new("f"), b"new", 0o644, None).unwrap(),
            Created::Existed
        );
        assert_eq!(
            create_exclusive(&d, &r, OsStr::new("dangling"), b"new", 0o644, None).unwrap(),
            Created::Existed
        );
        assert_eq!(std::fs::read(t.path().join("f")).unwrap(), b"old");
        assert!(!target.exists(), "create_exclusive followed the dangling symlink");
    }

    #[test]
    fn rewrite_keeps_mode_and_replaces_content() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"old").unwrap();
        std::fs::set_permissions(t.path().join("f"), std::fs::Permissions::from_mode(0o640)).unwrap();
        let d = anchor(&t);
        let r = Report::stage2(false);
        let (old, meta) = read_for_rewrite(&d, OsStr::new("f"), 1 << 20)
            .unwrap()
            .found()
            .unwrap();
        assert_eq!(old, b"old");
        rewrite(&d, &r, OsStr::new("f"), &meta, b"new content").unwrap();
        assert_eq!(std::fs::read(t.path().join("f")).unwrap(), b"new content");
        assert_eq!(
            std::fs::metadata(t.path().join("f"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o640
        );
    }

    #[test]
    fn dry_run_writes_nothing() {
        let t = tempfile::tempdir().unwrap();
        let d = anchor(&t);
        let r = Report::stage2(true);
        assert_eq!(
            create_exclusive(&d, &r, OsStr::new("x"), b"1", 0o600, None).unwrap(),
            Created::Created
        );
        assert!(!t.path().join("x").exists());
        assert_eq!(r.changes(), 1);
    }

    #[test]
    fn read_for_rewrite_refuses_symlink() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("real"), b"x").unwrap();
        symlink(t.path().join("real"), t.path().join("l")).unwrap();
        let d = anchor(&t);
        assert!(matches!(
            read_for_rewrite(&d, OsStr::new("l"), 10).unwrap(),
            Entry::Symlink
        ));
    }
}
