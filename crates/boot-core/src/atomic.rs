//! Creating and rewriting files without ever exposing a partial or over-permissive file (SPEC CM-06,
//! CM-07).
//!
//! Both go through a temporary in the same directory, created `O_CREAT|O_EXCL|O_NOFOLLOW` with its final
//! mode and owner before the first byte is written, fsynced, then renamed into place: a crash, ENOSPC or
//! a kill at any instant leaves either the old file or the new one, never a truncated secret.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::errno::Errno;
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};

use crate::error::{SysError, SysResult};
use crate::guarded::{euid, gid, uid, Dir, Entry, Meta};
use crate::report::Report;

/// What [`create_exclusive`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Created,
    /// An entry of that name existed (or appeared meanwhile); it was left alone.
    Existed,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A temporary name next to `name`: dot-prefixed (s6-svscan and most tools ignore it) and unique per
/// process and call.
pub fn temp_name(name: &OsStr) -> OsString {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut b = b".".to_vec();
    // Keep the result within NAME_MAX even for long names.
    b.extend_from_slice(&name.as_bytes()[..name.len().min(200)]);
    b.extend_from_slice(format!(".tmp.{}.{}", std::process::id(), n).as_bytes());
    OsString::from_vec(b)
}

/// Writes `content` to a fresh temporary in `dir` with `mode` and `owner`, fsynced. The caller publishes
/// it. On failure the temporary is removed.
fn write_temp(
    dir: &Dir,
    name: &OsStr,
    content: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> SysResult<OsString> {
    let tmp = temp_name(name);
    let fd: OwnedFd = rustix::fs::openat(
        dir.fd(),
        tmp.as_os_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode & 0o600),
    )
    .map_err(|e| SysError::new("create", dir.child(name), e))?;
    let result = (|| {
        // Owner first, then the exact mode (independent of umask), then content: no instant exists at which
        // another user could read the bytes.
        if let Some((u, g)) = owner {
            if euid() == 0 {
                rustix::fs::fchown(&fd, Some(uid(u)), Some(gid(g)))
                    .map_err(|e| SysError::new("chown", dir.child(name), e))?;
            }
        }
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
            .map_err(|e| SysError::new("chmod", dir.child(name), e))?;
        let mut f = std::fs::File::from(fd);
        f.write_all(content)
            .map_err(|e| SysError::new("write", dir.child(name), e))?;
        f.sync_all()
            .map_err(|e| SysError::new("fsync", dir.child(name), e))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = rustix::fs::unlinkat(dir.fd(), tmp.as_os_str(), AtFlags::empty());
        return Err(e);
    }
    Ok(tmp)
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
    owner: Option<(u32, u32)>,
) -> SysResult<Created> {
    if dir.stat(name)?.is_some() {
        return Ok(Created::Existed);
    }
    if report.dry_run() {
        report.would("create", &dir.child(name), format_args!("mode {mode:04o}"));
        return Ok(Created::Created);
    }
    let tmp = write_temp(dir, name, content, mode, owner)?;
    let published =
        match rustix::fs::renameat_with(dir.fd(), tmp.as_os_str(), dir.fd(), name, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(Created::Created),
            Err(rustix::io::Errno::EXIST) => Ok(Created::Existed),
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
                // The filesystem cannot RENAME_NOREPLACE: a hard link is just as exclusive.
                match rustix::fs::linkat(dir.fd(), tmp.as_os_str(), dir.fd(), name, AtFlags::empty()) {
                    Ok(()) => Ok(Created::Created),
                    Err(rustix::io::Errno::EXIST) => Ok(Created::Existed),
                    Err(e) => Err(SysError::new("create", dir.child(name), e)),
                }
            }
            Err(e) => Err(SysError::new("create", dir.child(name), e)),
        };
    // After a successful rename the temporary no longer exists; otherwise it must go.
    let _ = rustix::fs::unlinkat(dir.fd(), tmp.as_os_str(), AtFlags::empty());
    if matches!(published, Ok(Created::Created)) {
        sync_dir(dir);
    }
    published
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
    if report.dry_run() {
        report.would("rewrite", &dir.child(name), "");
        return Ok(());
    }
    let owner = if euid() == 0 {
        Some((original.uid, original.gid))
    } else {
        None
    };
    let tmp = write_temp(dir, name, content, original.perm, owner)?;
    if let Err(e) = rustix::fs::renameat(dir.fd(), tmp.as_os_str(), dir.fd(), name) {
        let _ = rustix::fs::unlinkat(dir.fd(), tmp.as_os_str(), AtFlags::empty());
        return Err(SysError::new("rename", dir.child(name), e));
    }
    sync_dir(dir);
    Ok(())
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
    owner: Option<(u32, u32)>,
) -> SysResult<()> {
    if report.dry_run() {
        report.would("write", &dir.child(name), format_args!("mode {mode:04o}"));
        return Ok(());
    }
    let tmp = write_temp(dir, name, content, mode, owner)?;
    if let Err(e) = rustix::fs::renameat(dir.fd(), tmp.as_os_str(), dir.fd(), name) {
        let _ = rustix::fs::unlinkat(dir.fd(), tmp.as_os_str(), AtFlags::empty());
        return Err(SysError::new("rename", dir.child(name), e));
    }
    sync_dir(dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::RootPrefix;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn anchor(t: &tempfile::TempDir) -> Dir {
        Dir::open_anchor(&RootPrefix::none(), t.path())
            .unwrap()
            .found()
            .unwrap()
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
        symlink("/nonexistent/target", t.path().join("dangling")).unwrap();
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
        assert!(!std::path::Path::new("/nonexistent/target").exists());
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
        assert_eq!(r.planned(), 1);
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
