//! The boot record: every warning and error line the boot programs printed since the container last
//! started, kept in `/run/hermes-boot/warnings` for `hermes-boot-doctor` (`docker logs` may have rotated
//! them away, and a script should not have to parse the log).
//!
//! `stage2-setup`, the first boot program, starts a new record (the previous boot's is replaced: `/run`
//! survives `docker restart`); `supervise-perms` and `reconcile-profiles` (the boot pass and the
//! registrar) add to it. A dry run records nothing. The record is written by whoever runs the boot (root,
//! or the `--user` of a container without root) into a directory only that user can write: a record the
//! runtime user could forge would make the doctor lie. Writing it is best effort: a boot never fails
//! because its record cannot be kept, and when it cannot be started there is simply none.

use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{SysError, SysResult};
use crate::guarded::{Dir, Entry};
use crate::root::RootPrefix;

/// The directory of the record (in-container path).
pub const DIR: &str = "/run/hermes-boot";
/// The record's file name in [`DIR`].
pub const FILE: &str = "warnings";
/// Lines past this size are not kept: a warning repeated in a loop (the registrar's) cannot fill `/run`.
pub const LIMIT: u64 = 64 * 1024;

/// An open record, shared by the threads of one program.
#[derive(Debug)]
pub struct BootRecord {
    file: std::fs::File,
    /// Bytes in the file, as far as this process knows (others append too: the limit is approximate).
    size: AtomicU64,
}

impl BootRecord {
    /// Starts the record of a new boot: the previous boot's lines are dropped. A record that is already
    /// empty is left as it is, so that a boot that changes nothing changes nothing here either. `None` in a
    /// tree without `/run` (a test's).
    pub fn start(root: &RootPrefix) -> SysResult<Option<BootRecord>> {
        let Some(dir) = record_dir(root, true)? else {
            return Ok(None);
        };
        let path = dir.child(FILE);
        if let Some((fd, size)) = open_own(&dir)? {
            if size > 0 {
                rustix::fs::ftruncate(&fd, 0).map_err(|e| SysError::new("truncate", &path, e))?;
            }
            return Ok(Some(BootRecord::from_fd(fd, 0)));
        }
        // Absent, or something else in its place (which only this user could have put there).
        match rustix::fs::unlinkat(dir.fd(), FILE, rustix::fs::AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(SysError::new("unlink", &path, e)),
        }
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::APPEND | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(dir.fd(), FILE, flags, Mode::from_raw_mode(0o644))
            .map_err(|e| SysError::new("create", &path, e))?;
        // The creation mode is cut by the umask; the doctor reads the record as the runtime user.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o644)).map_err(|e| SysError::new("chmod", &path, e))?;
        Ok(Some(BootRecord::from_fd(fd, 0)))
    }

    /// The record of the boot in progress, to add to; `None` when no boot started one.
    pub fn resume(root: &RootPrefix) -> SysResult<Option<BootRecord>> {
        let Some(dir) = record_dir(root, false)? else {
            return Ok(None);
        };
        match open_own(&dir)? {
            Some((fd, size)) => Ok(Some(BootRecord::from_fd(fd, size))),
            None => Ok(None),
        }
    }

    fn from_fd(fd: OwnedFd, size: u64) -> BootRecord {
        BootRecord {
            file: std::fs::File::from(fd),
            size: AtomicU64::new(size),
        }
    }

    /// Adds one printed line (without its newline), in one write so that concurrent writers do not
    /// interleave. A line that does not fit under [`LIMIT`] is dropped.
    pub fn add(&self, line: &str) {
        let len = line.len() as u64 + 1;
        if self.size.fetch_add(len, Ordering::Relaxed) + len > LIMIT {
            return;
        }
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        let _ = (&self.file).write_all(&buf);
    }
}

/// The record file for appending, with its size, when it is a regular file of this user with one link;
/// `None` otherwise (absent, a symlink, another type, someone else's).
fn open_own(dir: &Dir) -> SysResult<Option<(OwnedFd, u64)>> {
    let path = dir.child(FILE);
    let flags = OFlags::WRONLY | OFlags::APPEND | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir.fd(), FILE, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) | Err(Errno::LOOP) | Err(Errno::NXIO) | Err(Errno::ISDIR) => return Ok(None),
        Err(e) => return Err(SysError::new("open", &path, e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| SysError::new("stat", &path, e))?;
    let own = FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
        && st.st_uid == crate::guarded::euid()
        && crate::guarded::nlink_of(&st) == 1;
    Ok(own.then_some((fd, st.st_size as u64)))
}

/// The lines of the record, for the doctor: `None` when there is none. Read without following symlinks.
pub fn read(root: &RootPrefix) -> SysResult<Option<Vec<String>>> {
    let dir = match Dir::open_anchor(root, Path::new(DIR))? {
        Entry::Found(d) => d,
        _ => return Ok(None),
    };
    match dir.read_regular(FILE, LIMIT + 4096)? {
        Entry::Found(bytes) => Ok(Some(
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::to_string)
                .collect(),
        )),
        _ => Ok(None),
    }
}

/// [`DIR`], made when `create` (mode 0755, by whoever runs the boot) and refused when someone else owns it
/// or can write it; `None` when there is no `/run`, or (not `create`) no [`DIR`].
fn record_dir(root: &RootPrefix, create: bool) -> SysResult<Option<Dir>> {
    let Entry::Found(run) = Dir::open_anchor(root, Path::new("/run"))? else {
        return Ok(None);
    };
    let name = OsStr::new("hermes-boot");
    if create {
        run.mkdir(name, 0o755, None)?;
    }
    let dir = match run.subdir(name)? {
        Entry::Found(d) => d,
        Entry::Missing => return Ok(None),
        _ => return Err(SysError::new("open", DIR, Errno::NOTDIR)),
    };
    let meta = dir.meta()?;
    if meta.uid != crate::guarded::euid() || meta.perm & 0o022 != 0 {
        return Err(SysError::refused(
            "open",
            DIR,
            "another user owns it or can write it",
        ));
    }
    Ok(Some(dir))
}

impl crate::report::Keeper for BootRecord {
    fn keep(&self, line: &str) {
        self.add(line);
    }
}

/// Starts (`new_boot`) or resumes the record for `report`'s warnings. Nothing for a dry run, a tree
/// without `/run` (a test's), or a boot that has not started one; a record that cannot be kept is said
/// in one line and the program goes on.
pub fn keep(root: &RootPrefix, report: &crate::report::Report, new_boot: bool) {
    if report.dry_run() {
        return;
    }
    let opened = match new_boot {
        true => BootRecord::start(root),
        false => BootRecord::resume(root),
    };
    match opened {
        Ok(Some(r)) => report.keep_record(r),
        Ok(None) => {}
        Err(e) => report.info(format_args!("not keeping the boot record: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn tree() -> (tempfile::TempDir, RootPrefix) {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("run")).unwrap();
        let root = RootPrefix::new(t.path());
        (t, root)
    }

    fn text(t: &tempfile::TempDir) -> String {
        std::fs::read_to_string(t.path().join("run/hermes-boot/warnings")).unwrap()
    }

    #[test]
    fn a_boot_starts_the_record_and_later_programs_add_to_it() {
        let (t, root) = tree();
        assert!(
            BootRecord::resume(&root).unwrap().is_none(),
            "no boot has started one"
        );
        let r = BootRecord::start(&root).unwrap().unwrap();
        r.add("[stage2] Warning: one");
        let more = BootRecord::resume(&root).unwrap().expect("the boot's record");
        more.add("reconcile: WARNING: two");
        r.add("[stage2] Warning: three");
        assert_eq!(
            text(&t),
            "[stage2] Warning: one\nreconcile: WARNING: two\n[stage2] Warning: three\n"
        );
        let dir = std::fs::metadata(t.path().join("run/hermes-boot")).unwrap();
        let file = std::fs::metadata(t.path().join("run/hermes-boot/warnings")).unwrap();
        assert_eq!(dir.permissions().mode() & 0o7777, 0o755);
        assert_eq!(file.permissions().mode() & 0o7777, 0o644);
        assert_eq!(read(&root).unwrap().unwrap().len(), 3);
        // The next boot drops them.
        drop((r, more));
        let next = BootRecord::start(&root).unwrap().unwrap();
        assert_eq!(text(&t), "");
        next.add("[stage2] Warning: four");
        assert_eq!(
            read(&root).unwrap().unwrap(),
            vec!["[stage2] Warning: four".to_string()]
        );
    }

    #[test]
    fn an_empty_record_is_left_untouched_by_the_next_boot() {
        let (t, root) = tree();
        drop(BootRecord::start(&root).unwrap().unwrap());
        let path = t.path().join("run/hermes-boot/warnings");
        let before = std::fs::metadata(&path).unwrap();
        drop(BootRecord::start(&root).unwrap().unwrap());
        let after = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (before.ino(), before.ctime(), before.ctime_nsec()),
            (after.ino(), after.ctime(), after.ctime_nsec())
        );
    }

    #[test]
    fn lines_past_the_limit_are_dropped() {
        let (t, root) = tree();
        let r = BootRecord::start(&root).unwrap().unwrap();
        let line = "x".repeat(1023);
        for _ in 0..(LIMIT / 1024 + 10) {
            r.add(&line);
        }
        let kept = text(&t);
        assert_eq!(kept.len() as u64, LIMIT);
        assert_eq!(kept.lines().count() as u64, LIMIT / 1024);
    }

    #[test]
    fn a_record_someone_else_could_write_is_refused() {
        let (t, root) = tree();
        let dir = t.path().join("run/hermes-boot");
        std::fs::create_dir(&dir).unwrap();
        // Another user's directory: its owner could forge the record.
        std::os::unix::fs::chown(&dir, Some(10000), Some(10000)).unwrap();
        let e = BootRecord::start(&root).unwrap_err().to_string();
        assert_eq!(e, "open /run/hermes-boot: another user owns it or can write it");
        assert!(BootRecord::resume(&root).is_err());
        // One anyone can write to.
        std::os::unix::fs::chown(&dir, Some(0), Some(0)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(BootRecord::start(&root).is_err());
        // A symlink in its place is not followed.
        std::fs::remove_dir(&dir).unwrap();
        let elsewhere = t.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &dir).unwrap();
        assert!(BootRecord::start(&root).is_err());
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    #[test]
    fn a_record_file_that_is_not_a_plain_file_of_this_user_is_replaced_not_written_through() {
        let (t, root) = tree();
        drop(BootRecord::start(&root).unwrap().unwrap());
        let path = t.path().join("run/hermes-boot/warnings");
        let target = t.path().join("target");
        std::fs::write(&target, "keep\n").unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(BootRecord::resume(&root).unwrap().is_none());
        let r = BootRecord::start(&root).unwrap().unwrap();
        r.add("line");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep\n");
        assert!(!std::fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
        assert_eq!(text(&t), "line\n");
        // A hard link to another file is not written through either.
        std::fs::remove_file(&path).unwrap();
        std::fs::hard_link(&target, &path).unwrap();
        drop(BootRecord::start(&root).unwrap().unwrap());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep\n");
    }
}
