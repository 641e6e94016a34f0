//! Guarded, descriptor-relative path operations (SPEC CM-05).
//!
//! Inside a directory the runtime user can write, root never acts on a path: it opens the anchor directory
//! with `O_DIRECTORY|O_NOFOLLOW`, descends one component at a time relative to the parent's descriptor
//! without following symlinks, and acts on the final entry with `*at` calls or on the entry's own
//! descriptor after checking it with `fstat`. A name swapped for a symlink between two calls therefore
//! cannot redirect root outside the tree.
//!
//! [`Dir`] is such an open directory together with the in-container path it stands for (used only for log
//! lines). Mutating methods take the [`Report`] so that a dry run prints `would …` instead of acting
//! (SPEC CM-11): every effect is written once and both executors share it.

use std::ffi::{CStr, OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use nix::errno::Errno;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags, CWD};

use crate::error::{SysError, SysResult};
use crate::owner::Owner;
use crate::report::{Change, Report};
use crate::root::RootPrefix;

/// A temporary name next to `name`: dot-prefixed (s6-svscan and most tools ignore it), with 64 bits from
/// the kernel's CSPRNG, so the runtime user cannot plant it in advance.
pub fn temp_name(name: &OsStr) -> SysResult<OsString> {
    let mut r = [0u8; 8];
    let mut filled = 0;
    while filled < r.len() {
        filled += rustix::rand::getrandom(&mut r[filled..], rustix::rand::GetRandomFlags::empty())
            .map_err(|e| SysError::new("getrandom", "temporary name", e))?;
    }
    let mut b = b".".to_vec();
    // Keep the result within NAME_MAX even for long names.
    b.extend_from_slice(&name.as_bytes()[..name.len().min(200)]);
    b.extend_from_slice(format!(".tmp.{:016x}", u64::from_ne_bytes(r)).as_bytes());
    Ok(OsString::from_vec(b))
}

/// How many planted names a temporary skips before giving up (each try is a fresh 64-bit name,
/// so only a directory full of them gets that far).
pub const TEMP_TRIES: usize = 16;

/// Gives `take` fresh names from `next_name` until one works. A name that exists (planted by the runtime
/// user, who can write the directory) is skipped, up to [`TEMP_TRIES`] of them; any other error, or
/// EEXIST on the last try, is returned through `fail` with the name tried.
pub fn on_fresh_temp<T>(
    mut next_name: impl FnMut() -> SysResult<OsString>,
    mut take: impl FnMut(&OsStr) -> rustix::io::Result<T>,
    fail: impl Fn(&OsStr, rustix::io::Errno) -> SysError,
) -> SysResult<(T, OsString)> {
    let mut tried = 0;
    loop {
        let tmp = next_name()?;
        tried += 1;
        match take(&tmp) {
            Ok(v) => return Ok((v, tmp)),
            Err(rustix::io::Errno::EXIST) if tried < TEMP_TRIES => {}
            Err(e) => return Err(fail(&tmp, e)),
        }
    }
}

/// `st_nlink` as `u64`: the kernel's `stat` has it 64-bit on x86_64 but 32-bit on aarch64.
#[allow(clippy::useless_conversion)]
pub fn nlink_of(st: &rustix::fs::Stat) -> u64 {
    u64::from(st.st_nlink)
}

/// The result of looking an entry up without following symlinks.
#[derive(Debug)]
pub enum Entry<T> {
    Found(T),
    Missing,
    /// A symlink stood where a file or directory was expected.
    Symlink,
    /// Something of another type stood there.
    Other(FileType),
}

impl<T> Entry<T> {
    pub fn found(self) -> Option<T> {
        match self {
            Entry::Found(t) => Some(t),
            _ => None,
        }
    }
}

/// What `fstatat(…, AT_SYMLINK_NOFOLLOW)` says about an entry, reduced to what the boot needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub dev: u64,
    pub ino: u64,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub perm: u32,
    pub nlink: u64,
    pub kind: FileType,
    pub size: u64,
}

impl Meta {
    pub fn from_stat(st: &rustix::fs::Stat) -> Meta {
        Meta {
            dev: st.st_dev,
            ino: st.st_ino,
            uid: st.st_uid,
            gid: st.st_gid,
            perm: st.st_mode & 0o7777,
            nlink: nlink_of(st),
            kind: FileType::from_raw_mode(st.st_mode),
            size: st.st_size as u64,
        }
    }
    pub fn is_dir(&self) -> bool {
        self.kind == FileType::Directory
    }
    pub fn is_symlink(&self) -> bool {
        self.kind == FileType::Symlink
    }
    pub fn is_file(&self) -> bool {
        self.kind == FileType::RegularFile
    }
}

// 0 = not probed yet, 1 = openat2 usable, 2 = fall back to openat+O_NOFOLLOW.
static OPENAT2_STATE: AtomicU8 = AtomicU8::new(0);

/// Whether this process uses `openat2`. Docker's default seccomp profile may answer it with EPERM, old
/// kernels with ENOSYS; the choice is made once per process (CM-05).
pub fn uses_openat2() -> bool {
    OPENAT2_STATE.load(Ordering::Relaxed) != 2
}

/// Opens the directory `name` (one component) below `parent` without following a symlink.
/// `no_xdev` additionally refuses to cross a mount point (EXDEV) when `openat2` is available.
pub fn open_dir_at(parent: BorrowedFd<'_>, name: &OsStr, no_xdev: bool) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if OPENAT2_STATE.load(Ordering::Relaxed) != 2 {
        let mut resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
        if no_xdev {
            resolve |= ResolveFlags::NO_XDEV;
        }
        match rustix::fs::openat2(parent, name, flags, Mode::empty(), resolve) {
            Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::PERM) => {
                OPENAT2_STATE.store(2, Ordering::Relaxed);
            }
            other => {
                OPENAT2_STATE.store(1, Ordering::Relaxed);
                return other;
            }
        }
    }
    rustix::fs::openat(parent, name, flags, Mode::empty())
}

fn check_name(name: &OsStr, at: &Path) -> SysResult<()> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(SysError::new("resolve", at.join(name), Errno::EINVAL));
    }
    Ok(())
}

/// An open directory, reached without following symlinks below its anchor.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Wraps an already opened directory descriptor.
    pub fn from_fd(fd: OwnedFd, path: impl Into<PathBuf>) -> Dir {
        Dir {
            fd,
            path: path.into(),
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
    /// The in-container path of this directory (for log lines).
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The in-container path of an entry of this directory.
    pub fn child(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.path.join(name.as_ref())
    }

    pub fn meta(&self) -> SysResult<Meta> {
        rustix::fs::fstat(&self.fd)
            .map(|s| Meta::from_stat(&s))
            .map_err(|e| SysError::new("stat", &self.path, e))
    }

    /// `fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)`; `None` when the entry does not exist.
    pub fn stat(&self, name: impl AsRef<OsStr>) -> SysResult<Option<Meta>> {
        let name = name.as_ref();
        check_name(name, &self.path)?;
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Meta::from_stat(&st))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(SysError::new("stat", self.child(name), e)),
        }
    }

    fn classify_failure(&self, name: &OsStr, err: rustix::io::Errno, op: &str) -> SysResult<Entry<Dir>> {
        match err {
            rustix::io::Errno::NOENT => Ok(Entry::Missing),
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR | rustix::io::Errno::XDEV => {
                match self.stat(name)? {
                    None => Ok(Entry::Missing),
                    Some(m) if m.is_symlink() => Ok(Entry::Symlink),
                    Some(m) if !m.is_dir() => Ok(Entry::Other(m.kind)),
                    Some(_) => Err(SysError::new(op, self.child(name), err)),
                }
            }
            e => Err(SysError::new(op, self.child(name), e)),
        }
    }

    /// Opens the subdirectory `name` without following a symlink (CM-05).
    pub fn subdir(&self, name: impl AsRef<OsStr>) -> SysResult<Entry<Dir>> {
        self.subdir_plain(name.as_ref())
    }

    fn subdir_plain(&self, name: &OsStr) -> SysResult<Entry<Dir>> {
        check_name(name, &self.path)?;
        match open_dir_at(self.fd(), name, false) {
            Ok(fd) => Ok(Entry::Found(Dir::from_fd(fd, self.child(name)))),
            Err(e) => self.classify_failure(name, e, "open"),
        }
    }

    /// Opens a relative multi-component directory path one component at a time. On a symlink or a
    /// non-directory the path of the offending component is returned alongside.
    pub fn open_path(&self, rel: &Path) -> SysResult<(Entry<Dir>, PathBuf)> {
        let mut cur = Dir::from_fd(
            self.fd
                .try_clone()
                .map_err(|e| SysError::new("dup", &self.path, e))?,
            self.path.clone(),
        );
        for comp in rel.components() {
            let name = match comp {
                Component::Normal(n) => n,
                Component::CurDir => continue,
                _ => return Err(SysError::new("resolve", self.path.join(rel), Errno::EINVAL)),
            };
            let at = cur.child(name);
            match cur.subdir(name)? {
                Entry::Found(d) => cur = d,
                Entry::Missing => return Ok((Entry::Missing, at)),
                Entry::Symlink => return Ok((Entry::Symlink, at)),
                Entry::Other(k) => return Ok((Entry::Other(k), at)),
            }
        }
        let p = cur.path.clone();
        Ok((Entry::Found(cur), p))
    }

    /// Creates missing directories of `rel` below this one (like `mkdir -p`), never following a symlink.
    /// New directories get `mode` and, when `owner` is given, that owner (set on the new directory's own
    /// descriptor before anything can be put in it by someone else). Returns the innermost directory.
    pub fn make_path(
        &self,
        report: &Report,
        rel: &Path,
        mode: u32,
        owner: Option<Owner>,
    ) -> SysResult<(Entry<Dir>, PathBuf)> {
        let mut cur = Dir::from_fd(
            self.fd
                .try_clone()
                .map_err(|e| SysError::new("dup", &self.path, e))?,
            self.path.clone(),
        );
        let comps: Vec<&OsStr> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        for (i, name) in comps.iter().enumerate() {
            let at = cur.child(name);
            match cur.subdir(name)? {
                Entry::Found(d) => cur = d,
                Entry::Missing => {
                    let change = Change::made("create directory", &at, mode).owned_by(owner);
                    match report.apply(change, Entry::Missing, || {
                        cur.mkdir(name, mode, owner)?;
                        cur.subdir(name)
                    })? {
                        Entry::Found(d) => cur = d,
                        Entry::Missing => {
                            // A dry run: nothing deeper can exist below a directory that is not there
                            // yet, and all of it is planned.
                            report.plan_below(&at, comps[i + 1..].iter(), mode, owner);
                            return Ok((Entry::Missing, at));
                        }
                        other => return Ok((other, at)),
                    }
                }
                Entry::Symlink => return Ok((Entry::Symlink, at)),
                Entry::Other(k) => return Ok((Entry::Other(k), at)),
            }
        }
        let p = cur.path.clone();
        Ok((Entry::Found(cur), p))
    }

    /// [`Dir::mkdir`] as a change of its own, reported (CM-11); `mkdir` alone is for what a larger change
    /// builds and reports itself.
    pub fn make_dir(
        &self,
        report: &Report,
        name: impl AsRef<OsStr>,
        mode: u32,
        owner: Option<Owner>,
    ) -> SysResult<bool> {
        let name = name.as_ref();
        let change = Change::made("create directory", self.child(name), mode).owned_by(owner);
        report.apply_if(change, || self.mkdir(name, mode, owner))
    }

    /// `mkdirat` with an explicit mode (umask-independent: a `fchmod` follows) and optional owner.
    /// `Ok(false)` when the name already exists.
    pub fn mkdir(&self, name: impl AsRef<OsStr>, mode: u32, owner: Option<Owner>) -> SysResult<bool> {
        let name = name.as_ref();
        check_name(name, &self.path)?;
        if let (Some(owner), 0) = (owner, euid()) {
            return self.mkdir_for(name, mode, owner);
        }
        // Created with the final bits minus group/other write (and minus setgid/sticky, which mkdir may
        // drop anyway): a kill before the fchmod below leaves a usable directory that was never more open
        // than asked for. The fchmod then makes the mode exact, whatever the umask.
        match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(mode & 0o755)) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => return Ok(false),
            Err(e) => return Err(SysError::new("mkdir", self.child(name), e)),
        }
        // Fix the mode through the new directory's descriptor: the name could already have been swapped by
        // the time we look at it again, the descriptor cannot.
        let d = match self.subdir(name)? {
            Entry::Found(d) => d,
            _ => return Err(SysError::new("mkdir", self.child(name), Errno::ELOOP)),
        };
        rustix::fs::fchmod(d.fd(), Mode::from_raw_mode(mode))
            .map_err(|e| SysError::new("chmod", d.path(), e))?;
        Ok(true)
    }

    /// Root making a directory for another owner: made under a random temporary name, given its owner
    /// and mode, then renamed into place. A root-owned directory never stands at `name`, so a kill
    /// cannot leave one that the ownership repair would have to tell from one the runtime user moved
    /// there ([`crate::handover`]).
    fn mkdir_for(&self, name: &OsStr, mode: u32, Owner { uid: u, gid: g }: Owner) -> SysResult<bool> {
        let shown = self.child(name);
        let ((), tmp) = on_fresh_temp(
            || temp_name(name),
            |tmp| rustix::fs::mkdirat(&self.fd, tmp, Mode::from_raw_mode(mode & 0o700)),
            |_, e| SysError::new("mkdir", &shown, e),
        )?;
        let made = (|| {
            let d = match self.subdir(&tmp)? {
                Entry::Found(d) => d,
                _ => return Err(SysError::new("mkdir", &shown, Errno::ELOOP)),
            };
            // Mode while root still owns it (no CAP_FOWNER needed), then the owner.
            rustix::fs::fchmod(d.fd(), Mode::from_raw_mode(mode))
                .map_err(|e| SysError::new("chmod", &shown, e))?;
            rustix::fs::fchown(d.fd(), Some(uid(u)), Some(gid(g)))
                .map_err(|e| SysError::new("chown", &shown, e))?;
            match rustix::fs::renameat_with(&self.fd, tmp.as_os_str(), &self.fd, name, RenameFlags::NOREPLACE)
            {
                Ok(()) => Ok(true),
                Err(rustix::io::Errno::EXIST) => Ok(false),
                // No RENAME_NOREPLACE here: a plain rename would replace an empty directory, so look first.
                Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => match self.stat(name)? {
                    Some(_) => Ok(false),
                    None => rustix::fs::renameat(&self.fd, tmp.as_os_str(), &self.fd, name)
                        .map(|()| true)
                        .map_err(|e| SysError::new("rename", &shown, e)),
                },
                Err(e) => Err(SysError::new("rename", &shown, e)),
            }
        })();
        if !matches!(made, Ok(true)) {
            let _ = rustix::fs::unlinkat(&self.fd, tmp.as_os_str(), AtFlags::REMOVEDIR);
        }
        made
    }

    /// Opens a regular file for reading without following a symlink. FIFOs and devices are never opened
    /// for real (`O_NONBLOCK` plus a type check on the descriptor).
    pub fn open_regular(&self, name: impl AsRef<OsStr>) -> SysResult<Entry<std::fs::File>> {
        let name = name.as_ref();
        check_name(name, &self.path)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
        match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => {
                let st = rustix::fs::fstat(&fd).map_err(|e| SysError::new("stat", self.child(name), e))?;
                let kind = FileType::from_raw_mode(st.st_mode);
                if kind != FileType::RegularFile {
                    return Ok(Entry::Other(kind));
                }
                Ok(Entry::Found(std::fs::File::from(fd)))
            }
            Err(rustix::io::Errno::NOENT) => Ok(Entry::Missing),
            Err(rustix::io::Errno::LOOP) => Ok(Entry::Symlink),
            Err(rustix::io::Errno::NXIO) => Ok(Entry::Other(FileType::Socket)),
            Err(e) => Err(SysError::new("open", self.child(name), e)),
        }
    }

    /// Reads a whole regular file (at most `limit` bytes; a larger file is EFBIG).
    pub fn read_regular(&self, name: impl AsRef<OsStr>, limit: u64) -> SysResult<Entry<Vec<u8>>> {
        use std::io::Read;
        let name = name.as_ref();
        let mut f = match self.open_regular(name)? {
            Entry::Found(f) => f,
            Entry::Missing => return Ok(Entry::Missing),
            Entry::Symlink => return Ok(Entry::Symlink),
            Entry::Other(k) => return Ok(Entry::Other(k)),
        };
        let mut buf = Vec::new();
        (&mut f)
            .take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| SysError::new("read", self.child(name), e))?;
        if buf.len() as u64 > limit {
            return Err(SysError::new("read", self.child(name), Errno::EFBIG));
        }
        Ok(Entry::Found(buf))
    }

    /// [`Dir::read_regular`] for an entry that a listing of this directory reported as a regular file, in
    /// a directory nobody but its owner writes: the listing's type stands in for the `fstat`, and one
    /// read that comes back short is the end of the file. Three system calls instead of five, which
    /// matters where every variable of the container environment is a file read before each command.
    pub fn read_listed_file(&self, name: impl AsRef<OsStr>, limit: u64) -> SysResult<Entry<Vec<u8>>> {
        use std::io::Read;
        const FIRST: usize = 4096;
        let name = name.as_ref();
        check_name(name, &self.path)?;
        // O_NONBLOCK: should the entry have become a FIFO since the listing, the read does not wait.
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
        let fd = match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(Entry::Missing),
            Err(rustix::io::Errno::LOOP) => return Ok(Entry::Symlink),
            Err(e) => return Err(SysError::new("open", self.child(name), e)),
        };
        let mut f = std::fs::File::from(fd);
        let mut buf = vec![0u8; FIRST];
        let n = f
            .read(&mut buf)
            .map_err(|e| SysError::new("read", self.child(name), e))?;
        buf.truncate(n);
        if n == FIRST {
            (&mut f)
                .take((limit + 1).saturating_sub(FIRST as u64))
                .read_to_end(&mut buf)
                .map_err(|e| SysError::new("read", self.child(name), e))?;
        }
        if buf.len() as u64 > limit {
            return Err(SysError::new("read", self.child(name), Errno::EFBIG));
        }
        Ok(Entry::Found(buf))
    }

    /// Pins an entry with `O_PATH|O_NOFOLLOW` and checks it is still the entry `expect` describes
    /// (same device and inode). Acting on the pinned descriptor cannot be redirected.
    pub fn pin(&self, name: &OsStr, expect: &Meta) -> SysResult<Option<OwnedFd>> {
        let fd = match rustix::fs::openat(
            &self.fd,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) | Err(rustix::io::Errno::LOOP) => {
                return Ok(None)
            }
            Err(e) => return Err(SysError::new("open", self.child(name), e)),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| SysError::new("stat", self.child(name), e))?;
        let m = Meta::from_stat(&st);
        if m.dev != expect.dev || m.ino != expect.ino {
            return Ok(None);
        }
        Ok(Some(fd))
    }

    /// Changes the owner of the entry `name` (whose current state is `m`) when it differs, without
    /// following a symlink (a symlink's own owner is changed). Non-directories with more than one hard
    /// link are refused unless owned by `hardlink_ok_uid` (CM-05). Returns whether something changed.
    pub fn chown_entry(
        &self,
        report: &Report,
        name: &OsStr,
        m: &Meta,
        owner: Owner,
        hardlink_ok_uid: u32,
    ) -> SysResult<bool> {
        if m.uid == owner.uid && m.gid == owner.gid {
            return Ok(false);
        }
        let path = self.child(name);
        if !m.is_dir() && !m.is_symlink() && m.nlink > 1 && m.uid != hardlink_ok_uid {
            report.warn(format_args!(
                "refusing chown of hard-linked file {} ({} links) — continuing",
                crate::display::display_path(&path),
                m.nlink
            ));
            return Ok(false);
        }
        let change = Change::chown(&path, Owner::new(m.uid, m.gid), owner);
        report.apply_if(change, || {
            if m.is_symlink() {
                return match rustix::fs::chownat(
                    &self.fd,
                    name,
                    Some(uid(owner.uid)),
                    Some(gid(owner.gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                ) {
                    Ok(()) => Ok(true),
                    Err(e) => Err(SysError::new("chown", &path, e)),
                };
            }
            // Pin the entry so a swap between the stat and the chown cannot redirect us.
            let Some(fd) = self.pin(name, m)? else {
                return Ok(false);
            };
            rustix::fs::chownat(
                &fd,
                c"",
                Some(uid(owner.uid)),
                Some(gid(owner.gid)),
                AtFlags::EMPTY_PATH,
            )
            .map_err(|e| SysError::new("chown", &path, e))?;
            Ok(true)
        })
    }

    /// Sets the permission bits of the entry `name` (state `m`) when they differ. Symlinks are never
    /// changed; hard-linked non-directories follow the same rule as [`Dir::chown_entry`].
    pub fn chmod_entry(
        &self,
        report: &Report,
        name: &OsStr,
        m: &Meta,
        mode: u32,
        hardlink_ok_uid: u32,
    ) -> SysResult<bool> {
        if m.perm == mode || m.is_symlink() {
            return Ok(false);
        }
        let path = self.child(name);
        if !m.is_dir() && m.nlink > 1 && m.uid != hardlink_ok_uid {
            report.warn(format_args!(
                "refusing chmod of hard-linked file {} ({} links) — continuing",
                crate::display::display_path(&path),
                m.nlink
            ));
            return Ok(false);
        }
        report.apply_if(Change::chmod(&path, m.perm, mode), || {
            let Some(fd) = self.pin(name, m)? else {
                return Ok(false);
            };
            chmod_pinned(&fd, mode).map_err(|e| SysError::new("chmod", &path, e))?;
            Ok(true)
        })
    }

    /// Owner and mode of this directory itself, through its descriptor.
    pub fn chown_self(&self, report: &Report, owner: Owner) -> SysResult<bool> {
        let m = self.meta()?;
        if m.uid == owner.uid && m.gid == owner.gid {
            return Ok(false);
        }
        let change = Change::chown(&self.path, Owner::new(m.uid, m.gid), owner);
        report.apply(change, true, || {
            rustix::fs::fchown(&self.fd, Some(uid(owner.uid)), Some(gid(owner.gid)))
                .map_err(|e| SysError::new("chown", &self.path, e))?;
            Ok(true)
        })
    }

    pub fn chmod_self(&self, report: &Report, mode: u32) -> SysResult<bool> {
        let m = self.meta()?;
        if m.perm == mode {
            return Ok(false);
        }
        report.apply(Change::chmod(&self.path, m.perm, mode), true, || {
            rustix::fs::fchmod(&self.fd, Mode::from_raw_mode(mode))
                .map_err(|e| SysError::new("chmod", &self.path, e))?;
            Ok(true)
        })
    }

    /// Removes the entry `name` (not a directory). ENOENT is fine.
    pub fn unlink(&self, report: &Report, name: impl AsRef<OsStr>) -> SysResult<bool> {
        let name = name.as_ref();
        check_name(name, &self.path)?;
        if self.stat(name)?.is_none() {
            return Ok(false);
        }
        report.apply_if(
            Change::new("remove", self.child(name)),
            || match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
                Ok(()) => Ok(true),
                Err(rustix::io::Errno::NOENT) => Ok(false),
                Err(e) => Err(SysError::new("remove", self.child(name), e)),
            },
        )
    }

    /// Removes `name` and everything below it, never following a symlink and never leaving the
    /// filesystem it starts on. ENOENT is fine.
    pub fn remove_tree(&self, report: &Report, name: impl AsRef<OsStr>) -> SysResult<bool> {
        let name = name.as_ref();
        check_name(name, &self.path)?;
        let Some(m) = self.stat(name)? else {
            return Ok(false);
        };
        report.apply(Change::new("remove", self.child(name)), true, || {
            self.delete_tree(name, &m)
        })
    }

    /// [`Dir::remove_tree`] of an entry whose state `m` is known, unreported: for what a larger change
    /// made and takes away again (staging directories, a slot moved aside), which that change reports.
    pub(crate) fn delete_tree(&self, name: &OsStr, m: &Meta) -> SysResult<bool> {
        let flags = match m.is_dir() {
            true => {
                if let Entry::Found(d) = self.subdir(name)? {
                    d.empty_out()?;
                }
                AtFlags::REMOVEDIR
            }
            false => AtFlags::empty(),
        };
        match rustix::fs::unlinkat(&self.fd, name, flags) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(true),
            Err(e) => Err(SysError::new("remove", self.child(name), e)),
        }
    }

    /// [`Dir::delete_tree`] of `name` if it exists.
    pub(crate) fn delete_tree_if_present(&self, name: impl AsRef<OsStr>) -> SysResult<bool> {
        let name = name.as_ref();
        check_name(name, &self.path)?;
        match self.stat(name)? {
            Some(m) => self.delete_tree(name, &m),
            None => Ok(false),
        }
    }

    /// Removes everything inside this directory, iteratively and with a bounded number of open
    /// descriptors: a hostile tree may be deeper than the descriptor limit. Ancestors released on the way
    /// down are re-acquired through `..` and checked by device and inode on the way up. Never crosses
    /// into another filesystem (a mount point inside is an EXDEV error, nothing below it is touched).
    fn empty_out(self) -> SysResult<()> {
        const HELD: usize = 32;
        struct Level {
            dir: Option<Dir>,
            dev: u64,
            ino: u64,
            path: PathBuf,
        }
        let m = self.meta()?;
        let mut stack = vec![Level {
            dev: m.dev,
            ino: m.ino,
            path: self.path.clone(),
            dir: Some(self),
        }];
        loop {
            let top = stack.last().expect("stack is not empty");
            let dir = top.dir.as_ref().expect("the top level is always held");
            let mut descended = None;
            for (name, kind) in dir.list()? {
                let is_dir = kind == FileType::Directory
                    || (kind == FileType::Unknown && dir.stat(&name)?.is_some_and(|m| m.is_dir()));
                if !is_dir {
                    match rustix::fs::unlinkat(dir.fd(), name.as_os_str(), AtFlags::empty()) {
                        Ok(()) | Err(rustix::io::Errno::NOENT) => continue,
                        Err(e) => return Err(SysError::new("remove", dir.child(&name), e)),
                    }
                }
                match rustix::fs::unlinkat(dir.fd(), name.as_os_str(), AtFlags::REMOVEDIR) {
                    Ok(()) | Err(rustix::io::Errno::NOENT) => continue,
                    Err(rustix::io::Errno::NOTEMPTY) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(SysError::new("remove", dir.child(&name), e)),
                }
                let fd = match open_dir_at(dir.fd(), &name, true) {
                    Ok(fd) => fd,
                    Err(rustix::io::Errno::NOENT) => continue,
                    Err(e) => return Err(SysError::new("open", dir.child(&name), e)),
                };
                let child = Dir::from_fd(fd, dir.child(&name));
                let cm = child.meta()?;
                if cm.dev != top.dev {
                    return Err(SysError::new("remove", child.path(), Errno::EXDEV));
                }
                descended = Some((child, cm));
                break;
            }
            match descended {
                Some((child, cm)) => {
                    if stack.len() >= HELD {
                        let idx = stack.len() - HELD;
                        stack[idx].dir = None;
                    }
                    stack.push(Level {
                        dev: cm.dev,
                        ino: cm.ino,
                        path: child.path.clone(),
                        dir: Some(child),
                    });
                }
                None => {
                    let done = stack.pop().expect("stack is not empty");
                    let Some(parent) = stack.last_mut() else {
                        return Ok(());
                    };
                    if parent.dir.is_none() {
                        let child = done.dir.as_ref().expect("the top level is always held");
                        let fd = rustix::fs::openat(
                            child.fd(),
                            c"..",
                            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                            Mode::empty(),
                        )
                        .map_err(|e| SysError::new("open", &parent.path, e))?;
                        let back = Dir::from_fd(fd, parent.path.clone());
                        let bm = back.meta()?;
                        if bm.dev != parent.dev || bm.ino != parent.ino {
                            // The tree was moved under us: stop rather than delete somewhere else.
                            return Err(SysError::new("remove", &parent.path, Errno::ESTALE));
                        }
                        parent.dir = Some(back);
                    }
                    let pdir = parent.dir.as_ref().expect("re-acquired above");
                    let name = done
                        .path
                        .file_name()
                        .map(|n| n.to_os_string())
                        .unwrap_or_default();
                    match rustix::fs::unlinkat(pdir.fd(), name.as_os_str(), AtFlags::REMOVEDIR) {
                        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                        Err(e) => return Err(SysError::new("remove", &done.path, e)),
                    }
                }
            }
        }
    }

    /// The names in this directory (without `.` and `..`), with the type the kernel reported, in byte
    /// order of the names.
    pub fn list(&self) -> SysResult<Vec<(OsString, FileType)>> {
        let fd = rustix::fs::openat(
            &self.fd,
            c".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SysError::new("open", &self.path, e))?;
        let mut dir = rustix::fs::Dir::new(fd).map_err(|e| SysError::new("read directory", &self.path, e))?;
        let mut out = Vec::new();
        while let Some(ent) = dir.read() {
            let ent = ent.map_err(|e| SysError::new("read directory", &self.path, e))?;
            let n: &CStr = ent.file_name();
            let b = n.to_bytes();
            if b == b"." || b == b".." {
                continue;
            }
            out.push((OsString::from_vec(b.to_vec()), ent.file_type()));
        }
        out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        Ok(out)
    }
}

/// Largest image file the programs read whole (account files, lists, seed sources).
pub const IMAGE_FILE_LIMIT: u64 = 16 << 20;

/// Reads a whole image file (an absolute in-container path under the root prefix, resolved normally:
/// its directories are root's). Only a regular file is read — it is opened `O_NONBLOCK`, so a FIFO or
/// device planted there can neither block the boot nor be opened for real — and at most `limit` bytes.
/// `Ok(None)` when the path does not exist.
pub fn read_image_file(root: &RootPrefix, path: &str, limit: u64) -> SysResult<Option<Vec<u8>>> {
    use std::io::Read;
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    let fd = match rustix::fs::open(root.path(path), flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(SysError::new("read", path, e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| SysError::new("read", path, e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(SysError::new("read", path, Errno::EINVAL));
    }
    let mut buf = Vec::new();
    std::fs::File::from(fd)
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| SysError::new("read", path, e))?;
    if buf.len() as u64 > limit {
        return Err(SysError::new("read", path, Errno::EFBIG));
    }
    Ok(Some(buf))
}

/// chmod of an `O_PATH` descriptor: Linux has no `fchmod` for those, but the descriptor's magic link in
/// `/proc/self/fd` names exactly the pinned inode.
pub fn chmod_pinned(fd: &OwnedFd, mode: u32) -> rustix::io::Result<()> {
    use std::os::fd::AsRawFd;
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    rustix::fs::chmodat(CWD, link.as_str(), Mode::from_raw_mode(mode), AtFlags::empty())
}

pub fn uid(u: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u)
}
pub fn gid(g: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(g)
}

/// The effective uid of this process.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}
pub fn egid() -> u32 {
    rustix::process::getegid().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn report() -> Report {
        Report::stage2(false)
    }

    /// Opens `dir/tmp` as the named-temporary path does, so that planted names are real entries.
    fn open_excl(t: &tempfile::TempDir, tmp: &OsStr) -> rustix::io::Result<OwnedFd> {
        rustix::fs::openat(
            CWD,
            t.path().join(tmp).as_path(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
    }

    /// A name source that counts its calls, giving `.f.tmp.1`, `.f.tmp.2`, … in turn.
    fn numbered(calls: &std::cell::Cell<usize>) -> impl FnMut() -> SysResult<OsString> + '_ {
        move || {
            calls.set(calls.get() + 1);
            Ok(OsString::from(format!(".f.tmp.{}", calls.get())))
        }
    }

    /// Makes a temporary in `t` after `planted` of the names it will try were made by someone else;
    /// returns the name it took and how many it tried.
    fn temp_after_planted(t: &tempfile::TempDir, planted: usize) -> (SysResult<OsString>, usize) {
        for i in 1..=planted {
            std::fs::write(t.path().join(format!(".f.tmp.{i}")), b"planted").unwrap();
        }
        let calls = std::cell::Cell::new(0);
        let got = on_fresh_temp(
            numbered(&calls),
            |n| open_excl(t, n),
            |n, e| SysError::new("create", t.path().join(n), e),
        );
        (got.map(|(_fd, name)| name), calls.get())
    }

    #[test]
    fn a_temporary_skips_names_planted_before_it() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(temp_after_planted(&t, 3), (Ok(".f.tmp.4".into()), 4));
        // The planted files are left as they were.
        for i in 1..=3 {
            assert_eq!(
                std::fs::read(t.path().join(format!(".f.tmp.{i}"))).unwrap(),
                b"planted"
            );
        }
    }

    #[test]
    fn a_temporary_takes_the_last_of_its_tries() {
        let t = tempfile::tempdir().unwrap();
        let last = OsString::from(format!(".f.tmp.{TEMP_TRIES}"));
        assert_eq!(temp_after_planted(&t, TEMP_TRIES - 1), (Ok(last), TEMP_TRIES));
    }

    #[test]
    fn a_directory_full_of_planted_names_is_refused_after_the_last_try() {
        let t = tempfile::tempdir().unwrap();
        let (got, tried) = temp_after_planted(&t, TEMP_TRIES + 4);
        assert_eq!(tried, TEMP_TRIES, "tries no more names than TEMP_TRIES");
        let shown = got.unwrap_err().to_string();
        assert!(
            shown.contains(&format!(".f.tmp.{TEMP_TRIES}")) && shown.contains("exists"),
            "{shown}"
        );
    }

    #[test]
    fn any_other_error_ends_the_tries_at_once() {
        let calls = std::cell::Cell::new(0);
        let err = on_fresh_temp(
            numbered(&calls),
            |_| -> rustix::io::Result<()> { Err(rustix::io::Errno::NOSPC) },
            |n, e| SysError::new("create", std::path::Path::new(n), e),
        )
        .unwrap_err();
        assert_eq!(calls.get(), 1);
        assert!(err.to_string().contains(".f.tmp.1"), "{err}");
    }

    fn anchor(t: &tempfile::TempDir) -> Dir {
        Dir::open_anchor(&RootPrefix::none(), t.path())
            .unwrap()
            .found()
            .unwrap()
    }

    #[test]
    fn subdir_refuses_symlinks_and_reports_types() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("real")).unwrap();
        symlink("/etc", t.path().join("link")).unwrap();
        std::fs::write(t.path().join("file"), b"x").unwrap();
        let d = anchor(&t);
        assert!(matches!(d.subdir("real").unwrap(), Entry::Found(_)));
        assert!(matches!(d.subdir("link").unwrap(), Entry::Symlink));
        assert!(matches!(
            d.subdir("file").unwrap(),
            Entry::Other(FileType::RegularFile)
        ));
        assert!(matches!(d.subdir("none").unwrap(), Entry::Missing));
        assert!(d.subdir("../x").is_err());
    }

    #[test]
    fn only_single_plain_names_are_accepted() {
        let at = Path::new("/opt/data");
        for bad in [&b""[..], b".", b"..", b"a/b", b"/a", b"a\0b"] {
            let e = check_name(OsStr::from_bytes(bad), at).unwrap_err();
            assert_eq!(e.errno, Errno::EINVAL, "{:?}", String::from_utf8_lossy(bad));
        }
        for good in [&b"a"[..], b".env", b"...", b"a.b", b"\xff"] {
            assert!(check_name(OsStr::from_bytes(good), at).is_ok(), "{:?}", good);
        }
    }

    #[test]
    fn open_path_skips_dot_components_and_refuses_dot_dot() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        let d = anchor(&t);
        let (e, at) = d.open_path(Path::new("./a/./b")).unwrap();
        assert!(matches!(e, Entry::Found(_)));
        assert_eq!(at, t.path().join("a/b"));
        assert!(d.open_path(Path::new("a/../a")).is_err());
    }

    #[test]
    fn root_making_a_directory_that_exists_leaves_no_temporary() {
        crate::guarded::tests::require_root();
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("taken")).unwrap();
        let d = anchor(&t);
        assert!(!d.mkdir("taken", 0o755, Some(Owner::new(10000, 10000))).unwrap());
        assert!(d.mkdir("new", 0o750, Some(Owner::new(10000, 10000))).unwrap());
        let mut names: Vec<String> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["new", "taken"], "a temporary was left behind");
        let m = std::fs::metadata(t.path().join("new")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (10000, 10000, 0o750));
    }

    fn require_root() {
        assert!(
            euid() == 0,
            "this test changes owners for real: run it as root, as CI does"
        );
    }

    #[test]
    fn a_file_of_exactly_the_limit_is_read_and_one_byte_more_is_refused() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), vec![b'x'; 10]).unwrap();
        let d = anchor(&t);
        assert_eq!(d.read_regular("f", 10).unwrap().found().unwrap().len(), 10);
        assert_eq!(d.read_regular("f", 9).unwrap_err().errno, Errno::EFBIG);
        assert_eq!(d.read_listed_file("f", 10).unwrap().found().unwrap().len(), 10);
        assert_eq!(d.read_listed_file("f", 9).unwrap_err().errno, Errno::EFBIG);
        // Longer than the listed reader's first read: the rest is read, up to the limit.
        let big: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(t.path().join("big"), &big).unwrap();
        assert_eq!(d.read_listed_file("big", 10_000).unwrap().found().unwrap(), big);
        assert_eq!(d.read_listed_file("big", 9_999).unwrap_err().errno, Errno::EFBIG);
        assert_eq!(d.read_regular("big", 10_000).unwrap().found().unwrap(), big);
    }

    #[test]
    fn a_listed_file_is_never_read_through_a_symlink_or_waited_for() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("target"), b"secret").unwrap();
        symlink("target", t.path().join("link")).unwrap();
        nix::unistd::mkfifo(
            &t.path().join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let d = anchor(&t);
        assert!(matches!(d.read_listed_file("link", 100).unwrap(), Entry::Symlink));
        // A FIFO without a writer: O_NONBLOCK makes the open and the read return at once, empty.
        assert_eq!(d.read_listed_file("fifo", 100).unwrap().found().unwrap(), b"");
        assert!(matches!(
            d.read_regular("fifo", 100).unwrap(),
            Entry::Other(FileType::Fifo)
        ));
        assert!(matches!(d.read_regular("link", 100).unwrap(), Entry::Symlink));
    }

    #[test]
    fn pin_holds_the_entry_itself_whatever_its_kind() {
        let t = tempfile::tempdir().unwrap();
        symlink("/etc/passwd", t.path().join("link")).unwrap();
        nix::unistd::mkfifo(
            &t.path().join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        std::fs::write(t.path().join("f"), b"x").unwrap();
        let d = anchor(&t);
        for name in ["link", "fifo", "f"] {
            let m = d.stat(name).unwrap().unwrap();
            // A FIFO without a writer would block a real open; a symlink must not be followed.
            assert!(d.pin(OsStr::new(name), &m).unwrap().is_some(), "{name}");
        }
        let other = d.stat("f").unwrap().unwrap();
        assert!(
            d.pin(OsStr::new("link"), &other).unwrap().is_none(),
            "another inode was pinned"
        );
        assert!(d.pin(OsStr::new("missing"), &other).unwrap().is_none());
    }

    #[test]
    fn chown_entry_changes_what_differs_and_keeps_the_hard_link_rule() {
        require_root();
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let p = |n: &str| t.path().join(n);
        let own = |n: &str, u: u32, g: u32| std::os::unix::fs::lchown(p(n), Some(u), Some(g)).unwrap();
        let owner = |n: &str| {
            let m = std::fs::symlink_metadata(p(n)).unwrap();
            (m.uid(), m.gid())
        };
        std::fs::write(p("gid-only"), b"").unwrap();
        own("gid-only", 10000, 0);
        std::fs::write(p("linked"), b"").unwrap();
        std::fs::hard_link(p("linked"), p("linked2")).unwrap();
        own("linked", 1234, 1234);
        std::fs::write(p("linked-ok"), b"").unwrap();
        std::fs::hard_link(p("linked-ok"), p("linked-ok2")).unwrap();
        own("linked-ok", 5678, 5678);
        std::fs::create_dir_all(p("dir/sub")).unwrap();
        own("dir", 1234, 1234);
        symlink("/etc/passwd", p("link")).unwrap();
        own("link", 1234, 1234);
        let d = anchor(&t);
        let r = report();
        let chown = |n: &str| {
            let m = d.stat(n).unwrap().unwrap();
            d.chown_entry(&r, OsStr::new(n), &m, Owner::new(10000, 10000), 5678)
                .unwrap()
        };
        assert!(chown("gid-only"), "only the group differed");
        assert_eq!(owner("gid-only"), (10000, 10000));
        assert!(!chown("gid-only"), "already right");
        assert!(!chown("linked"), "a hard-linked file of another uid");
        assert_eq!(owner("linked"), (1234, 1234));
        assert_eq!(r.warnings(), 1);
        assert!(chown("linked-ok"), "hard-linked but owned by the uid it may be");
        assert!(
            chown("dir"),
            "directories have several links and are not hard links"
        );
        assert!(chown("link"), "a symlink's own owner");
        assert_eq!(owner("link"), (10000, 10000));
        assert_eq!(owner("dir"), (10000, 10000));
        assert_eq!(
            std::fs::metadata("/etc/passwd").unwrap().uid(),
            0,
            "followed the symlink"
        );
        assert_eq!(r.warnings(), 1);
    }

    #[test]
    fn chmod_entry_changes_what_differs_and_keeps_the_hard_link_rule() {
        require_root();
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let p = |n: &str| t.path().join(n);
        let own = |n: &str, u: u32| std::os::unix::fs::lchown(p(n), Some(u), Some(u)).unwrap();
        let mode = |n: &str| std::fs::symlink_metadata(p(n)).unwrap().mode() & 0o7777;
        let set = |n: &str, m: u32| {
            std::fs::set_permissions(p(n), std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap()
        };
        for n in ["single", "linked", "linked-ok"] {
            std::fs::write(p(n), b"").unwrap();
        }
        std::fs::hard_link(p("linked"), p("linked2")).unwrap();
        std::fs::hard_link(p("linked-ok"), p("linked-ok2")).unwrap();
        std::fs::create_dir_all(p("dir/sub")).unwrap();
        for n in ["single", "linked", "linked-ok", "dir"] {
            set(n, 0o666);
        }
        own("single", 1234);
        own("linked", 1234);
        own("linked-ok", 5678);
        own("dir", 1234);
        let d = anchor(&t);
        let r = report();
        let chmod = |n: &str, to: u32| {
            let m = d.stat(n).unwrap().unwrap();
            d.chmod_entry(&r, OsStr::new(n), &m, to, 5678).unwrap()
        };
        assert!(chmod("single", 0o640), "one link, another uid");
        assert_eq!(mode("single"), 0o640);
        assert!(!chmod("single", 0o640), "already right");
        assert!(!chmod("linked", 0o600), "a hard-linked file of another uid");
        assert_eq!(mode("linked"), 0o666);
        assert_eq!(r.warnings(), 1);
        assert!(
            chmod("linked-ok", 0o600),
            "hard-linked but owned by the uid it may be"
        );
        assert_eq!(mode("linked-ok"), 0o600);
        assert!(
            chmod("dir", 0o750),
            "directories have several links and are not hard links"
        );
        assert_eq!(mode("dir"), 0o750);
        assert_eq!(r.warnings(), 1);
    }

    #[test]
    fn chown_self_and_chmod_self_change_only_what_differs() {
        require_root();
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        std::os::unix::fs::lchown(t.path(), Some(10000), Some(0)).unwrap();
        let d = anchor(&t);
        assert!(d.chown_self(&report(), Owner::new(10000, 10000)).unwrap());
        let m = std::fs::metadata(t.path()).unwrap();
        assert_eq!((m.uid(), m.gid()), (10000, 10000));
        assert!(
            !d.chown_self(&report(), Owner::new(10000, 10000)).unwrap(),
            "already right"
        );
        assert!(d.chmod_self(&report(), 0o700).unwrap());
        assert_eq!(std::fs::metadata(t.path()).unwrap().mode() & 0o7777, 0o700);
        assert!(!d.chmod_self(&report(), 0o700).unwrap(), "already right");
    }

    #[test]
    fn meta_tells_the_three_kinds_apart() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"x").unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        symlink("f", t.path().join("l")).unwrap();
        let d = anchor(&t);
        let kinds = |n: &str| {
            let m = d.stat(n).unwrap().unwrap();
            (m.is_file(), m.is_dir(), m.is_symlink())
        };
        assert_eq!(kinds("f"), (true, false, false));
        assert_eq!(kinds("d"), (false, true, false));
        assert_eq!(kinds("l"), (false, false, true));
    }

    /// The variable that makes a run of this test binary the child of
    /// [`the_openat_fallback_never_follows_a_symlink_either`]: the fallback is chosen once per process, so
    /// it is tried in a process of its own.
    const FALLBACK_CHILD: &str = "HERMES_GUARDED_FALLBACK_CHILD";

    #[test]
    fn the_openat_fallback_never_follows_a_symlink_either() {
        let check = |dir: &Path| {
            let d = Dir::open_anchor(&RootPrefix::none(), dir)
                .unwrap()
                .found()
                .unwrap();
            assert!(matches!(d.subdir("real").unwrap(), Entry::Found(_)));
            assert!(matches!(d.subdir("link").unwrap(), Entry::Symlink));
            let raw = open_dir_at(d.fd(), OsStr::new("link"), false);
            assert!(raw.is_err(), "open_dir_at followed a symlink");
        };
        if let Some(dir) = std::env::var_os(FALLBACK_CHILD) {
            OPENAT2_STATE.store(2, Ordering::Relaxed);
            assert!(!uses_openat2());
            check(Path::new(&dir));
            return;
        }
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("real")).unwrap();
        symlink("real", t.path().join("link")).unwrap();
        check(t.path());
        // The probe's outcome is what uses_openat2 reports (qemu-user, old kernels: the fallback).
        assert_eq!(uses_openat2(), OPENAT2_STATE.load(Ordering::Relaxed) == 1);
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "guarded::tests::the_openat_fallback_never_follows_a_symlink_either",
                "--exact",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env(FALLBACK_CHILD, t.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fallback child failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "the child ran no test"
        );
    }

    #[test]
    fn anchor_that_is_a_symlink_is_refused() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("real")).unwrap();
        symlink(t.path().join("real"), t.path().join("link")).unwrap();
        assert!(matches!(
            Dir::open_anchor(&RootPrefix::none(), &t.path().join("link")).unwrap(),
            Entry::Symlink
        ));
        let root = RootPrefix::new(t.path());
        assert!(matches!(
            Dir::open_anchor(&root, Path::new("/real")).unwrap(),
            Entry::Found(_)
        ));
        assert!(matches!(
            Dir::open_anchor(&root, Path::new("/nope/x")).unwrap(),
            Entry::Missing
        ));
    }

    #[test]
    fn open_path_names_the_symlinked_component() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        symlink("/tmp", t.path().join("a/b/c")).unwrap();
        let d = anchor(&t);
        let (e, at) = d.open_path(Path::new("a/b/c/d")).unwrap();
        assert!(matches!(e, Entry::Symlink));
        assert_eq!(at, t.path().join("a/b/c"));
        let (e, at) = d.open_path(Path::new("a/b")).unwrap();
        assert!(matches!(e, Entry::Found(_)));
        assert_eq!(at, t.path().join("a/b"));
    }

    #[test]
    fn make_path_creates_with_exact_mode_and_stops_at_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let d = anchor(&t);
        let (e, _) = d.make_path(&report(), Path::new("x/y/z"), 0o700, None).unwrap();
        assert!(matches!(e, Entry::Found(_)));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(t.path().join("x/y"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o700);
        symlink("/etc", t.path().join("x/l")).unwrap();
        let (e, at) = d.make_path(&report(), Path::new("x/l/q"), 0o755, None).unwrap();
        assert!(matches!(e, Entry::Symlink));
        assert_eq!(at, t.path().join("x/l"));
        assert!(!Path::new("/etc/q").exists());
    }

    #[test]
    fn dry_run_make_path_creates_nothing() {
        let t = tempfile::tempdir().unwrap();
        let d = anchor(&t);
        let r = Report::stage2(true);
        let (e, _) = d.make_path(&r, Path::new("x/y"), 0o755, None).unwrap();
        assert!(matches!(e, Entry::Missing));
        assert!(!t.path().join("x").exists());
        // x and x/y, as a real run makes them.
        assert_eq!(r.changes(), 2);
    }

    #[test]
    fn read_regular_refuses_symlinks_and_fifos() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"hello").unwrap();
        symlink(t.path().join("f"), t.path().join("l")).unwrap();
        nix::unistd::mkfifo(
            &t.path().join("p"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let d = anchor(&t);
        assert_eq!(d.read_regular("f", 100).unwrap().found().unwrap(), b"hello");
        assert!(matches!(d.read_regular("l", 100).unwrap(), Entry::Symlink));
        assert!(matches!(
            d.read_regular("p", 100).unwrap(),
            Entry::Other(FileType::Fifo)
        ));
        assert!(d.read_regular("f", 3).is_err());
    }

    #[test]
    fn remove_tree_handles_trees_deeper_than_the_descriptor_budget() {
        let t = tempfile::tempdir().unwrap();
        let mut p = t.path().join("deep");
        std::fs::create_dir(&p).unwrap();
        // Built relative to the previous level so no path exceeds PATH_MAX.
        let mut cur = std::fs::File::open(&p).unwrap();
        for _ in 0..3000 {
            rustix::fs::mkdirat(&cur, "d", Mode::from_raw_mode(0o755)).unwrap();
            std::fs::write(
                format!("/proc/self/fd/{}/f", std::os::fd::AsRawFd::as_raw_fd(&cur)),
                b"x",
            )
            .unwrap();
            let fd =
                rustix::fs::openat(&cur, "d", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
            cur = std::fs::File::from(fd);
        }
        drop(cur);
        p.pop();
        let d = anchor(&t);
        assert!(d.remove_tree(&report(), "deep").unwrap());
        assert!(!t.path().join("deep").exists());
    }

    /// Set in a test's own child process (see [`in_child`]) to the test's name.
    const CHILD_TEST: &str = "HERMES_GUARDED_TEST_CHILD";

    /// Runs test `name` of this binary again in a fresh process, which sees `in_child(name)` true: for
    /// a test that changes what a whole process has (its descriptor limit, its mount namespace) while
    /// other tests run beside it in the same process under `cargo test`. Returns the child's output.
    fn run_in_child(name: &str) -> String {
        let out = std::process::Command::new(std::env::current_exe().expect("current_exe"))
            .args([
                format!("guarded::tests::{name}").as_str(),
                "--exact",
                "--nocapture",
            ])
            .args(["--test-threads=1", "-q"])
            .env(CHILD_TEST, name)
            .output()
            .expect("spawn the test's child");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "child of {name} failed ({}):\n{said}",
            out.status
        );
        said
    }

    fn in_child(name: &str) -> bool {
        std::env::var(CHILD_TEST).is_ok_and(|v| v == name)
    }

    /// A chain of `depth` directories `d/d/…` below `top`, each also holding a file; built relative to
    /// the previous level so no path exceeds PATH_MAX.
    fn deep_chain(top: &Path, depth: usize) {
        std::fs::create_dir(top).unwrap();
        let mut cur = std::fs::File::open(top).unwrap();
        for _ in 0..depth {
            rustix::fs::mkdirat(&cur, "d", Mode::from_raw_mode(0o755)).unwrap();
            let f = rustix::fs::openat(
                &cur,
                "f",
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .unwrap();
            drop(f);
            let fd =
                rustix::fs::openat(&cur, "d", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
            cur = std::fs::File::from(fd);
        }
    }

    #[test]
    fn remove_tree_of_a_chain_deeper_than_the_descriptor_limit_succeeds() {
        const NAME: &str = "remove_tree_of_a_chain_deeper_than_the_descriptor_limit_succeeds";
        // 100 descriptors in all, 400 levels: a walk that kept one descriptor per level would run out
        // (EMFILE) long before the bottom.
        if in_child(NAME) {
            let t = tempfile::tempdir().unwrap();
            deep_chain(&t.path().join("deep"), 400);
            let d = anchor(&t);
            let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
            let low = rustix::process::Rlimit {
                current: Some(100),
                maximum: hard,
            };
            rustix::process::setrlimit(rustix::process::Resource::Nofile, low).unwrap();
            let removed = d.remove_tree(&report(), "deep");
            assert!(removed.as_ref().is_ok_and(|r| *r), "{removed:?}");
            assert!(!t.path().join("deep").exists());
            return;
        }
        run_in_child(NAME);
    }

    #[test]
    fn remove_tree_on_a_filesystem_that_reports_no_entry_types() {
        const NAME: &str = "remove_tree_on_a_filesystem_that_reports_no_entry_types";
        // ext4 made without `filetype` returns DT_UNKNOWN for every entry (as do some network and FUSE
        // filesystems): directories are then told from files by a stat of each entry.
        if !in_child(NAME) {
            let said = run_in_child(NAME);
            if let Some(why) = said.lines().find(|l| l.starts_with("SKIPPED")) {
                eprintln!("{why}");
            }
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let image = t.path().join("fs.img");
        let mnt = t.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::File::create(&image).unwrap().set_len(8 << 20).unwrap();
        let mkfs = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-O", "^filetype,^has_journal"])
            .arg(&image)
            .output();
        if !mkfs.as_ref().is_ok_and(|o| o.status.success()) {
            println!("SKIPPED: mkfs.ext4 is not usable here ({mkfs:?}): the DT_UNKNOWN case is not run");
            return;
        }
        crate::ownership::tests::private_mount_namespace();
        let mount = std::process::Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mnt)
            .output()
            .unwrap();
        if !mount.status.success() {
            println!(
                "SKIPPED: no loop device here ({}): the DT_UNKNOWN case is not run",
                String::from_utf8_lossy(&mount.stderr).trim()
            );
            return;
        }
        std::fs::create_dir_all(mnt.join("tree/a/b")).unwrap();
        std::fs::write(mnt.join("tree/a/f"), b"x").unwrap();
        std::fs::write(mnt.join("tree/a/b/g"), b"y").unwrap();
        let top = Dir::open_anchor(&RootPrefix::none(), &mnt)
            .unwrap()
            .found()
            .unwrap();
        let types: Vec<FileType> = top.list().unwrap().into_iter().map(|(_, k)| k).collect();
        assert!(types.iter().all(|k| *k == FileType::Unknown), "{types:?}");
        assert!(top.remove_tree(&report(), "tree").unwrap());
        assert!(!mnt.join("tree").exists());
    }

    #[test]
    fn euid_and_egid_are_the_effective_ids_not_the_real_ones() {
        const NAME: &str = "euid_and_egid_are_the_effective_ids_not_the_real_ones";
        if !in_child(NAME) {
            run_in_child(NAME);
            return;
        }
        // As a program started as root that switched its effective ids (the real ones stay root's).
        use nix::unistd::{setresgid, setresuid, Gid, Uid};
        setresgid(Gid::from_raw(0), Gid::from_raw(10001), Gid::from_raw(0)).unwrap();
        setresuid(Uid::from_raw(0), Uid::from_raw(10000), Uid::from_raw(0)).unwrap();
        assert_eq!((euid(), egid()), (10000, 10001));
        assert_eq!(rustix::process::getuid().as_raw(), 0);
    }

    #[test]
    fn an_image_file_of_exactly_the_limit_is_read_and_one_byte_more_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let root = RootPrefix::new(t.path());
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/list"), b"abcd").unwrap();
        assert_eq!(
            read_image_file(&root, "/etc/list", 4).unwrap(),
            Some(b"abcd".to_vec())
        );
        let e = read_image_file(&root, "/etc/list", 3).unwrap_err();
        assert_eq!(e.errno, Errno::EFBIG, "{e}");
    }

    #[test]
    fn image_files_are_read_only_when_regular() {
        let t = tempfile::tempdir().unwrap();
        let root = RootPrefix::new(t.path());
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/list"), b"a\n").unwrap();
        nix::unistd::mkfifo(
            &t.path().join("etc/fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        assert_eq!(read_image_file(&root, "/etc/list", 100).unwrap().unwrap(), b"a\n");
        assert_eq!(read_image_file(&root, "/etc/none", 100).unwrap(), None);
        // A FIFO neither blocks nor is read.
        assert_eq!(
            read_image_file(&root, "/etc/fifo", 100).unwrap_err().errno,
            Errno::EINVAL
        );
        assert_eq!(
            read_image_file(&root, "/etc/list", 1).unwrap_err().errno,
            Errno::EFBIG
        );
    }

    #[test]
    fn remove_tree_does_not_follow_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let victim = tempfile::tempdir().unwrap();
        std::fs::write(victim.path().join("keep"), b"k").unwrap();
        std::fs::create_dir_all(t.path().join("tree/a/b")).unwrap();
        std::fs::write(t.path().join("tree/a/b/f"), b"x").unwrap();
        symlink(victim.path(), t.path().join("tree/a/link")).unwrap();
        let d = anchor(&t);
        assert!(d.remove_tree(&report(), "tree").unwrap());
        assert!(!t.path().join("tree").exists());
        assert!(victim.path().join("keep").exists());
    }

    #[test]
    fn chmod_and_chown_only_when_different() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"x").unwrap();
        let d = anchor(&t);
        let m = d.stat("f").unwrap().unwrap();
        let r = report();
        assert!(!d
            .chown_entry(&r, OsStr::new("f"), &m, Owner::new(m.uid, m.gid), m.uid)
            .unwrap());
        assert!(d.chmod_entry(&r, OsStr::new("f"), &m, 0o600, m.uid).unwrap());
        let m2 = d.stat("f").unwrap().unwrap();
        assert_eq!(m2.perm, 0o600);
        assert!(!d.chmod_entry(&r, OsStr::new("f"), &m2, 0o600, m.uid).unwrap());
    }
}
