//! The ownership walk (SPEC CM-08): make every entry of a tree owned by the runtime user.
//!
//! One pass, no pre-scan. Each entry is stat'ed once and changed only when its uid or gid differs, so a warm
//! boot on a volume that is already right writes nothing (no ctime change, no overlayfs copy-up).
//!
//! The tree is hostile while we run as root: directories are opened relative to their parent without
//! following symlinks or crossing mounts, symlinks are changed themselves and never followed, and an entry
//! whose name may have been swapped is either changed by name with `AT_SYMLINK_NOFOLLOW` (when the kernel's
//! `protected_hardlinks` makes a swap harmless) or pinned with `O_PATH` and checked before it is changed.
//!
//! The walk is iterative with an explicit stack and holds at most [`MAX_DIR_FDS`] directory descriptors:
//! deeper levels release the outermost ancestors and re-acquire them on the way back up through `..`,
//! checking device and inode, so a hostile user cannot make root run out of descriptors or stack with a
//! deep chain, nor redirect the walk by moving directories around while it runs.
//!
//! The hot loop allocates nothing per entry: directory entries come from `getdents64` into one reused
//! buffer and their names go straight to the `*at` calls as C strings; subdirectory names wait in per-level
//! byte arenas that are recycled. Paths are only assembled for log lines.

use std::ffi::{CStr, OsStr};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, StatxFlags};
use rustix::io::Errno;

use crate::display::display_bytes;
use crate::error::SysError;
use crate::guarded::{self, Dir};
use crate::handover::{Handover, Verdict};
use crate::owner::Owner;
use crate::report::{Change, Report};
use share::{Share, Task};

/// Directory descriptors the walk holds at most (SPEC CM-08).
pub const MAX_DIR_FDS: usize = 64;

/// How often a long walk says it is still working.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// What one [`repair`] did. In a dry run `changed` counts the planned changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairStats {
    /// Entries stat'ed (the target included).
    pub checked: u64,
    /// Entries whose owner was (or, in a dry run, would be) changed.
    pub changed: u64,
    /// The file system refused a chown outright (EPERM, EROFS, EINVAL, EOPNOTSUPP): the walk stopped
    /// there, and so should every further one on this volume.
    pub refused: bool,
}

/// Walks `parent/name` and makes every entry owned `owner` (uid, gid).
///
/// Prints its own lines through `report`: `refusing recursive chown through symlinked path <path>` when the
/// target is a symlink, `Skipping mount point <path> (different filesystem)` for nested mounts, per-entry
/// warnings, one warning ending `(rootless container or read-only volume?) — continuing` when a chown is
/// refused with EPERM/EROFS (the walk of this target ends there), a progress line every 30 s, and when
/// something changed `Ownership of <target>: <n> entries checked, <m> changed`.
///
/// What is changed is [`Handover`]'s to say: entries the runtime user could not read and that were not
/// its own keep their owner (and are not descended into), reported in one warning naming the command that
/// hands them over. An absent target gives zero stats. A dry run prints `would chown …` lines instead.
pub fn repair(report: &Report, parent: &Dir, name: &OsStr, handover: &Handover) -> RepairStats {
    repair_with(report, parent, name, handover, Options::default()).0
}

/// [`repair`] with `helpers` threads besides the caller's sharing the walk (0: the caller's alone), for
/// measuring what the sharing gains.
pub fn repair_with_helpers(
    report: &Report,
    parent: &Dir,
    name: &OsStr,
    handover: &Handover,
    helpers: usize,
) -> RepairStats {
    let opts = Options {
        helpers: Some(helpers),
        ..Options::default()
    };
    repair_with(report, parent, name, handover, opts).0
}

/// Knobs the tests use to reach code paths this kernel would not take on its own.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// Open directories with `openat(O_NOFOLLOW)` as when `openat2` is unavailable.
    pub force_openat: bool,
    /// Override of `/proc/sys/fs/protected_hardlinks`.
    pub protected_hardlinks: Option<bool>,
    pub progress_every: Duration,
    /// Threads besides the caller's that share the walk; `None`: one per further CPU, at most three.
    pub helpers: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            force_openat: false,
            protected_hardlinks: None,
            progress_every: PROGRESS_EVERY,
            helpers: None,
        }
    }
}

/// Threads besides the caller's for a walk: one per further CPU, at most three (more only queue on the
/// file system's locks).
fn default_helpers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1).min(3))
        .unwrap_or(0)
}

/// Facts about a walk that are not part of the public result (for tests and benchmarks).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WalkDiag {
    /// The most directory descriptors held at once (by any one thread).
    pub max_fds_held: usize,
    /// Subdirectories handed to another thread.
    pub shared: u64,
    /// Entries changed through an `O_PATH` descriptor checked against their stat (the path taken
    /// without `fs.protected_hardlinks`).
    pub pinned: u64,
    /// Released ancestors opened again (by `..`) on the way back up: the price of the descriptor budget.
    pub reacquired: u64,
}

impl WalkDiag {
    /// Adds what another thread of the same walk saw.
    fn merge(&mut self, other: &WalkDiag) {
        self.max_fds_held = self.max_fds_held.max(other.max_fds_held);
        self.shared += other.shared;
        self.pinned += other.pinned;
        self.reacquired += other.reacquired;
    }
}

pub(crate) fn repair_with(
    report: &Report,
    parent: &Dir,
    name: &OsStr,
    handover: &Handover,
    opts: Options,
) -> (RepairStats, WalkDiag) {
    // A dry run's plan lines stay in walk order.
    let helpers = match report.dry_run() {
        true => 0,
        false => opts.helpers.unwrap_or_else(default_helpers),
    };
    let share = &Share::new();
    let mut walk = Walk::new(report, parent, name, handover, opts);
    if helpers > 0 {
        walk.share = Some(share);
    }
    std::thread::scope(|s| {
        let others: Vec<_> = (0..helpers)
            .map(|_| {
                // Only the caller's thread prints the progress line.
                let quiet = Options {
                    progress_every: Duration::MAX,
                    ..opts
                };
                let mut helper = Walk::new(report, parent, name, handover, quiet);
                helper.share = Some(share);
                s.spawn(move || {
                    let _guard = share.abandon_on_panic();
                    helper.take_tasks(false);
                    helper
                })
            })
            .collect();
        let _guard = share.abandon_on_panic();
        walk.run(parent.fd(), name);
        if helpers > 0 {
            walk.take_tasks(true);
        }
        for h in others {
            // A helper that panicked has already printed why; what it did is lost from the counts only.
            if let Ok(h) = h.join() {
                walk.absorb(&h);
            }
        }
    });
    walk.report_left();
    let stats = walk.stats;
    if stats.changed > 0 {
        report.info_made(format_args!(
            "Ownership of {}: {} entries checked, {} changed",
            display_bytes(&walk.target),
            stats.checked,
            stats.changed
        ));
    }
    (stats, walk.diag)
}

/// A chown error that says the file system will refuse every chown, not just this one: root squashed
/// (EPERM), read-only (EROFS), an id the volume or user namespace cannot store (EINVAL: CIFS, unmapped
/// ids), no ownership at all (EOPNOTSUPP).
pub fn volume_refuses_chown(e: Errno) -> bool {
    matches!(e, Errno::PERM | Errno::ROFS | Errno::INVAL | Errno::OPNOTSUPP)
}

/// `fs.protected_hardlinks`, read once per process (a kernel setting: never under the root prefix).
fn kernel_protects_hardlinks() -> bool {
    static VALUE: OnceLock<bool> = OnceLock::new();
    *VALUE.get_or_init(|| {
        std::fs::read("/proc/sys/fs/protected_hardlinks")
            .map(|v| v.trim_ascii() == b"1")
            .unwrap_or(false)
    })
}

/// Identity of an open directory: where it lives and who owns it.
#[derive(Debug, Clone, Copy)]
struct DirId {
    dev: u64,
    ino: u64,
    /// Mount id, when it was asked for (the `openat` fallback cannot refuse to cross mounts by itself).
    mnt_id: Option<u64>,
    uid: u32,
    gid: u32,
    /// `st_mode & 0o7777`.
    perm: u32,
}

impl DirId {
    /// From a `stat` (no mount id).
    fn from_stat(st: &rustix::fs::Stat) -> DirId {
        DirId {
            dev: st.st_dev,
            ino: st.st_ino,
            mnt_id: None,
            uid: st.st_uid,
            gid: st.st_gid,
            perm: st.st_mode & 0o7777,
        }
    }
}

/// One directory on the walk's stack.
struct Frame {
    /// `None` while released to stay within [`MAX_DIR_FDS`].
    fd: Option<OwnedFd>,
    id: DirId,
    /// Length of `Walk::path` when it names this directory.
    path_len: usize,
    /// NUL-terminated names of subdirectories still to visit.
    subdirs: Vec<u8>,
    cursor: usize,
}

enum Flow {
    Continue,
    /// Stop walking this target (EPERM/EROFS, or the tree moved under us).
    Abandon,
}

struct Walk<'r> {
    report: &'r Report,
    owner: Owner,
    handover: &'r Handover,
    /// Entries left with their owner because the runtime user could not read them ([`Verdict::Unreadable`]).
    left: u64,
    /// The first of them: path, uid, gid and mode, for the warning.
    first_left: Option<(Vec<u8>, u32, u32, u32)>,
    protected_hardlinks: bool,
    force_openat: bool,
    stats: RepairStats,
    diag: WalkDiag,
    /// In-container path of the target (for log lines).
    target: Vec<u8>,
    /// In-container path of the directory being worked on (for log lines).
    path: Vec<u8>,
    frames: Vec<Frame>,
    /// Recycled subdirectory arenas.
    spare: Vec<Vec<u8>>,
    dirbuf: Vec<MaybeUninit<u8>>,
    /// Scratch copy of the subdirectory name being entered.
    name_buf: Vec<u8>,
    held: usize,
    /// Frames below this index have released their descriptor.
    lowest_held: usize,
    progress_every: Duration,
    next_progress: Instant,
    until_clock_check: u32,
    /// The threads sharing this target's walk, when there are others.
    share: Option<&'r Share>,
    /// Of `stats.checked`, the entries of handed-over subdirectories this thread walked.
    checked_in_tasks: u64,
}

impl<'r> Walk<'r> {
    fn new(
        report: &'r Report,
        parent: &Dir,
        name: &OsStr,
        handover: &'r Handover,
        opts: Options,
    ) -> Walk<'r> {
        let target = parent.child(name).into_os_string().into_vec();
        Walk {
            report,
            owner: handover.owner,
            handover,
            left: 0,
            first_left: None,
            protected_hardlinks: opts.protected_hardlinks.unwrap_or_else(kernel_protects_hardlinks),
            force_openat: opts.force_openat,
            stats: RepairStats::default(),
            diag: WalkDiag::default(),
            target,
            path: parent.path().as_os_str().as_bytes().to_vec(),
            frames: Vec::new(),
            spare: Vec::new(),
            dirbuf: vec![MaybeUninit::uninit(); 32 * 1024],
            name_buf: Vec::with_capacity(256),
            held: 0,
            lowest_held: 0,
            progress_every: opts.progress_every,
            next_progress: Instant::now()
                .checked_add(opts.progress_every)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365)),
            until_clock_check: 0,
            share: None,
            checked_in_tasks: 0,
        }
    }

    /// Walks subdirectories other threads handed over until there are none left. `was_busy`: this
    /// thread has just finished its own part of the walk.
    fn take_tasks(&mut self, was_busy: bool) {
        let Some(share) = self.share else { return };
        let mut busy = was_busy;
        while let Some(task) = share.next(busy) {
            busy = true;
            let before = self.stats.checked;
            self.walk_task(task);
            let n = self.stats.checked - before;
            share.add_checked(n);
            self.checked_in_tasks += n;
        }
    }

    /// One handed-over subdirectory: opened and checked (and counted) by the walk that found it.
    fn walk_task(&mut self, task: Task) {
        // A stack of its own: whatever an abandoned task left open is closed here (though after an
        // abandon no thread is given another task).
        self.frames.clear();
        self.lowest_held = 0;
        self.held = 1;
        self.diag.max_fds_held = self.diag.max_fds_held.max(self.held);
        self.path = task.path;
        self.push_frame(task.fd, task.id);
        match self.list_top() {
            Flow::Abandon => self.abandon(),
            Flow::Continue => self.descend(),
        }
    }

    /// What a helper thread did, added to this walk's counts and its one warning about entries left.
    fn absorb(&mut self, helper: &Walk<'_>) {
        self.stats.checked += helper.stats.checked;
        self.stats.changed += helper.stats.changed;
        self.stats.refused |= helper.stats.refused;
        self.left += helper.left;
        if self.first_left.is_none() {
            self.first_left.clone_from(&helper.first_left);
        }
        self.diag.merge(&helper.diag);
    }

    /// Stops this walk, and every thread sharing it.
    fn abandon(&self) {
        if let Some(share) = self.share {
            share.abandon();
        }
    }

    fn run(&mut self, parent: BorrowedFd<'_>, name: &OsStr) {
        let Some(cname) = c_name(name) else {
            self.report.warn_err(&SysError::new(
                "open",
                Path::new(OsStr::from_bytes(&self.target)),
                Errno::INVAL,
            ));
            return;
        };
        let fd = match self.open_dir(parent, &cname, false) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return,
            Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                // Not a directory (or a symlink): find out which, without following it.
                match rustix::fs::statat(parent, &*cname, AtFlags::SYMLINK_NOFOLLOW) {
                    Err(Errno::NOENT) => {}
                    Err(e) => self
                        .report
                        .warn_err(&SysError::new("stat", self.target_path(), e)),
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                        self.report.warn_refusing("recursive chown", self.target_path());
                    }
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                        // Swapped between the two calls; the next boot will see it settled.
                        self.report
                            .warn_err(&SysError::new("open", self.target_path(), Errno::LOOP));
                    }
                    Ok(st) => {
                        // A single non-directory entry: handled like any entry of a directory.
                        let _ = self.entry_with_stat(parent, &cname, &st);
                    }
                }
                return;
            }
            Err(e) => {
                self.report
                    .warn_err(&SysError::new("open", self.target_path(), e));
                return;
            }
        };
        self.held += 1;
        self.diag.max_fds_held = self.diag.max_fds_held.max(self.held);
        let id = match self.dir_id(&fd) {
            Ok(id) => id,
            Err(e) => {
                self.report
                    .warn_err(&SysError::new("stat", self.target_path(), e));
                return;
            }
        };
        self.stats.checked += 1;
        if self.judge_dir(&id) == Verdict::Unreadable {
            self.note_left(self.target.clone(), &id);
            return;
        }
        self.path.clear();
        self.path.extend_from_slice(&self.target);
        self.push_frame(fd, id);
        if let Flow::Abandon = self.list_top() {
            self.abandon();
            return;
        }
        self.descend();
    }

    /// The main loop: visit pending subdirectories depth-first; finish a directory when it has none left.
    fn descend(&mut self) {
        while let Some(top) = self.frames.last_mut() {
            let flow = match next_name(top, &mut self.name_buf) {
                true => self.enter_subdir(),
                false => self.finish_top(),
            };
            if let Flow::Abandon = flow {
                self.abandon();
                return;
            }
            if self.share.is_some_and(Share::abandoned) {
                return;
            }
        }
    }

    fn push_frame(&mut self, fd: OwnedFd, id: DirId) {
        let mut subdirs = self.spare.pop().unwrap_or_default();
        subdirs.clear();
        self.frames.push(Frame {
            fd: Some(fd),
            id,
            path_len: self.path.len(),
            subdirs,
            cursor: 0,
        });
    }

    /// Opens the subdirectory named in `name_buf` below the top frame and, unless it is a mount point,
    /// pushes and lists it.
    fn enter_subdir(&mut self) -> Flow {
        if self.held >= MAX_DIR_FDS {
            self.release_outermost();
        }
        let name_buf = std::mem::take(&mut self.name_buf);
        let flow = self.enter_named(&name_buf);
        self.name_buf = name_buf;
        flow
    }

    fn enter_named(&mut self, name_nul: &[u8]) -> Flow {
        let Ok(name) = CStr::from_bytes_with_nul(name_nul) else {
            return Flow::Continue;
        };
        let top = self.frames.len() - 1;
        let parent_id = self.frames[top].id;
        let opened = match self.frames[top].fd.as_ref() {
            Some(pfd) => self.open_dir(pfd.as_fd(), name, true),
            None => Err(Errno::BADF),
        };
        let fd = match opened {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => return Flow::Continue,
            Err(Errno::XDEV) => {
                self.stats.checked += 1;
                self.skip_mount(name);
                return Flow::Continue;
            }
            Err(e) => {
                self.report
                    .warn_err(&SysError::new("open", self.entry_path(name), e));
                return Flow::Continue;
            }
        };
        let id = match self.dir_id(&fd) {
            Ok(id) => id,
            Err(e) => {
                self.report
                    .warn_err(&SysError::new("stat", self.entry_path(name), e));
                return Flow::Continue;
            }
        };
        self.stats.checked += 1;
        let other_mount = match (id.mnt_id, parent_id.mnt_id) {
            (Some(a), Some(b)) => a != b,
            _ => false,
        };
        if id.dev != parent_id.dev || other_mount {
            self.skip_mount(name);
            return Flow::Continue;
        }
        if self.judge_dir(&id) == Verdict::Unreadable {
            // Neither it nor anything below it: what is inside was out of the runtime user's reach.
            self.note_left(self.entry_path_bytes(name), &id);
            return Flow::Continue;
        }
        let fd = match self.share.filter(|s| s.wants_work()) {
            Some(share) => {
                let task = Task {
                    fd,
                    id,
                    path: self.entry_path_bytes(name),
                };
                match share.offer(task) {
                    Ok(()) => {
                        self.diag.shared += 1;
                        return Flow::Continue;
                    }
                    Err(task) => task.fd,
                }
            }
            None => fd,
        };
        self.held += 1;
        self.diag.max_fds_held = self.diag.max_fds_held.max(self.held);
        self.path.push(b'/');
        self.path.extend_from_slice(name.to_bytes());
        self.push_frame(fd, id);
        self.tick();
        self.list_top()
    }

    fn skip_mount(&self, name: &CStr) {
        self.report.info(format_args!(
            "Skipping mount point {} (different filesystem)",
            display_bytes(&self.entry_path_bytes(name))
        ));
    }

    /// Lets go of the outermost descriptor still held (never the top one).
    fn release_outermost(&mut self) {
        let top = self.frames.len().saturating_sub(1);
        if self.lowest_held < top {
            if self.frames[self.lowest_held].fd.take().is_some() {
                self.held -= 1;
            }
            self.lowest_held += 1;
        }
    }

    /// Reads the top directory: non-directories are handled at once, subdirectories queued.
    fn list_top(&mut self) -> Flow {
        let top = self.frames.len() - 1;
        let Some(fd) = self.frames[top].fd.take() else {
            return Flow::Continue;
        };
        let mut subdirs = std::mem::take(&mut self.frames[top].subdirs);
        let mut buf = std::mem::take(&mut self.dirbuf);
        let mut flow = Flow::Continue;
        let mut dir = rustix::fs::RawDir::new(fd.as_fd(), &mut buf);
        while let Some(ent) = dir.next() {
            let ent = match ent {
                Ok(ent) => ent,
                // The directory was removed while we read it.
                Err(Errno::NOENT) => break,
                Err(e) => {
                    let path = Path::new(OsStr::from_bytes(&self.path)).to_path_buf();
                    self.report.warn_err(&SysError::new("read directory", path, e));
                    break;
                }
            };
            let name = ent.file_name();
            let b = name.to_bytes();
            if b == b"." || b == b".." {
                continue;
            }
            if ent.file_type() == FileType::Directory {
                subdirs.extend_from_slice(name.to_bytes_with_nul());
                continue;
            }
            match self.entry(fd.as_fd(), name, &mut subdirs) {
                Flow::Continue => {}
                Flow::Abandon => {
                    flow = Flow::Abandon;
                    break;
                }
            }
        }
        self.dirbuf = buf;
        let frame = &mut self.frames[top];
        frame.fd = Some(fd);
        frame.subdirs = subdirs;
        flow
    }

    /// One non-directory entry (or one of unknown type) of the directory `dfd`.
    fn entry(&mut self, dfd: BorrowedFd<'_>, name: &CStr, subdirs: &mut Vec<u8>) -> Flow {
        let st = match rustix::fs::statat(dfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => return Flow::Continue,
            Err(e) => {
                self.report
                    .warn_err(&SysError::new("stat", self.entry_path(name), e));
                return Flow::Continue;
            }
        };
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            // The file system did not report types (or the name was just replaced): walk it as a
            // directory; it is counted when opened.
            subdirs.extend_from_slice(name.to_bytes_with_nul());
            return Flow::Continue;
        }
        self.entry_with_stat(dfd, name, &st)
    }

    fn entry_with_stat(&mut self, dfd: BorrowedFd<'_>, name: &CStr, st: &rustix::fs::Stat) -> Flow {
        self.stats.checked += 1;
        self.tick();
        match self.judge_entry(st) {
            Verdict::Right => return Flow::Continue,
            Verdict::Change => {}
            Verdict::HardLinked => {
                self.refuse_hardlink(name, guarded::nlink_of(st));
                return Flow::Continue;
            }
            Verdict::Unreadable => {
                self.note_left(self.entry_path_bytes(name), &DirId::from_stat(st));
                return Flow::Continue;
            }
        }
        let (u, g) = (guarded::uid(self.owner.uid), guarded::gid(self.owner.gid));
        let kind = FileType::from_raw_mode(st.st_mode);
        let mut pinned = false;
        let change = || self.chown_change(self.entry_path(name), st.st_uid, st.st_gid);
        let result = self.report.apply_if(change, || {
            if kind == FileType::Symlink || self.protected_hardlinks {
                // With protected_hardlinks a name swapped since the stat can only be a symlink (changed
                // itself) or a file the runtime user could already link: one it owns or can write.
                return rustix::fs::chownat(dfd, name, Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW)
                    .map(|()| true);
            }
            match self.pin(dfd, name, st)? {
                Some(fd) => {
                    pinned = true;
                    rustix::fs::chownat(&fd, c"", Some(u), Some(g), AtFlags::EMPTY_PATH).map(|()| true)
                }
                None => Ok(false),
            }
        });
        self.diag.pinned += u64::from(pinned);
        self.chown_result(result, name)
    }

    /// `O_PATH|O_NOFOLLOW` descriptor of `name`, if it is still the inode `st` describes and the hard-link
    /// rule still allows changing it.
    fn pin(&self, dfd: BorrowedFd<'_>, name: &CStr, st: &rustix::fs::Stat) -> Result<Option<OwnedFd>, Errno> {
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(dfd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => return Ok(None),
            Err(e) => return Err(e),
        };
        let now = rustix::fs::fstat(&fd)?;
        if now.st_dev != st.st_dev || now.st_ino != st.st_ino {
            return Ok(None);
        }
        match self.judge_entry(&now) {
            Verdict::Change => Ok(Some(fd)),
            Verdict::HardLinked => {
                self.refuse_hardlink(name, guarded::nlink_of(&now));
                Ok(None)
            }
            // Changed meanwhile; the next boot judges it anew.
            Verdict::Right | Verdict::Unreadable => Ok(None),
        }
    }

    fn judge_entry(&self, st: &rustix::fs::Stat) -> Verdict {
        let kind = FileType::from_raw_mode(st.st_mode);
        self.handover.judge(
            st.st_uid,
            st.st_gid,
            st.st_mode & 0o7777,
            guarded::nlink_of(st),
            kind == FileType::Directory,
            kind == FileType::Symlink,
        )
    }

    fn judge_dir(&self, id: &DirId) -> Verdict {
        self.handover.judge(id.uid, id.gid, id.perm, 2, true, false)
    }

    fn note_left(&mut self, path: Vec<u8>, id: &DirId) {
        self.left += 1;
        if self.first_left.is_none() {
            self.first_left = Some((path, id.uid, id.gid, id.perm));
        }
    }

    /// The one warning about entries left with their owner, with the command that hands them over.
    fn report_left(&self) {
        let Some((path, uid, gid, perm)) = &self.first_left else {
            return;
        };
        let Owner { uid: u, gid: g } = self.owner;
        let fix = if self.left == 1 {
            format!("chown -R {u}:{g} {}", display_bytes(path))
        } else {
            format!(
                "find {} -xdev \\( ! -user {u} -o ! -group {g} \\) -exec chown -h {u}:{g} {{}} +",
                display_bytes(&self.target)
            )
        };
        self.report.warn(format_args!(
            "left {} entr{} the runtime user could not read with {} owner (first: {} {uid}:{gid} {perm:04o}); \
             they were not its own, so the boot does not hand them over — if they should be, run: {fix} — continuing",
            self.left,
            if self.left == 1 { "y" } else { "ies" },
            if self.left == 1 { "its" } else { "their" },
            display_bytes(path),
        ));
    }

    fn refuse_hardlink(&self, name: &CStr, nlink: u64) {
        self.report.warn(format_args!(
            "refusing chown of hard-linked file {} ({} links) — continuing",
            display_bytes(&self.entry_path_bytes(name)),
            nlink
        ));
    }

    fn chown_result(&mut self, result: Result<bool, Errno>, name: &CStr) -> Flow {
        match result {
            Ok(changed) => {
                self.stats.changed += u64::from(changed);
                Flow::Continue
            }
            Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => Flow::Continue,
            Err(e) if volume_refuses_chown(e) => {
                self.stats.refused = true;
                self.give_up_on_chown(SysError::new("chown", self.entry_path(name), e));
                Flow::Abandon
            }
            Err(e) => {
                self.report
                    .warn_err(&SysError::new("chown", self.entry_path(name), e));
                Flow::Continue
            }
        }
    }

    fn give_up_on_chown(&self, err: SysError) {
        if self.share.is_some_and(|s| !s.first_refusal()) {
            return;
        }
        self.report.warn(format_args!(
            "{err}: this volume refuses chown (NFS root-squash, CIFS/SMB or ACL share, rootless container or \
read-only volume?); ownership repair stops for this boot — continuing"
        ));
    }

    fn chown_change(&self, path: PathBuf, uid: u32, gid: u32) -> Change {
        Change::chown(path, Owner::new(uid, gid), self.owner)
    }

    /// Changes the top directory's own owner (after its contents) and pops it, re-acquiring the parent's
    /// descriptor through `..` when it was released.
    fn finish_top(&mut self) -> Flow {
        let Some(mut frame) = self.frames.pop() else {
            return Flow::Continue;
        };
        let dir_path = || Path::new(OsStr::from_bytes(&self.path[..frame.path_len])).to_path_buf();
        let mut flow = Flow::Continue;
        if frame.id.uid != self.owner.uid || frame.id.gid != self.owner.gid {
            let change = || self.chown_change(dir_path(), frame.id.uid, frame.id.gid);
            let (u, g) = (guarded::uid(self.owner.uid), guarded::gid(self.owner.gid));
            let result = self.report.apply_if(change, || match frame.fd.as_ref() {
                Some(fd) => rustix::fs::fchown(fd, Some(u), Some(g)).map(|()| true),
                None => Ok(false),
            });
            match result {
                Ok(changed) => self.stats.changed += u64::from(changed),
                Err(e) if volume_refuses_chown(e) => {
                    self.stats.refused = true;
                    self.give_up_on_chown(SysError::new("chown", dir_path(), e));
                    flow = Flow::Abandon;
                }
                Err(e) => self.report.warn_err(&SysError::new("chown", dir_path(), e)),
            }
        }
        if let Flow::Continue = flow {
            if let Some(parent) = self.frames.last() {
                if parent.fd.is_none() {
                    flow = self.reacquire_parent(&frame);
                }
            }
        }
        if frame.fd.take().is_some() {
            self.held -= 1;
        }
        self.spare.push(std::mem::take(&mut frame.subdirs));
        if let Some(parent) = self.frames.last() {
            self.path.truncate(parent.path_len);
        }
        flow
    }

    fn reacquire_parent(&mut self, child: &Frame) -> Flow {
        let parent_idx = self.frames.len() - 1;
        let expect = self.frames[parent_idx].id;
        let parent_path =
            || Path::new(OsStr::from_bytes(&self.path[..self.frames[parent_idx].path_len])).to_path_buf();
        let Some(cfd) = child.fd.as_ref() else {
            return Flow::Abandon;
        };
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(cfd, c"..", flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) => {
                self.report.warn(format_args!(
                    "{} — abandoning ownership repair of {} — continuing",
                    SysError::new("open", parent_path(), e),
                    display_bytes(&self.target)
                ));
                return Flow::Abandon;
            }
        };
        let st = match rustix::fs::fstat(&fd) {
            Ok(st) => st,
            Err(e) => {
                self.report.warn_err(&SysError::new("stat", parent_path(), e));
                return Flow::Abandon;
            }
        };
        if st.st_dev != expect.dev || st.st_ino != expect.ino {
            self.report.warn(format_args!(
                "{} was moved during the ownership walk; abandoning ownership repair of {} — continuing",
                display_bytes(&self.path[..child.path_len]),
                display_bytes(&self.target)
            ));
            return Flow::Abandon;
        }
        self.frames[parent_idx].fd = Some(fd);
        self.diag.reacquired += 1;
        self.held += 1;
        self.diag.max_fds_held = self.diag.max_fds_held.max(self.held);
        self.lowest_held = parent_idx;
        Flow::Continue
    }

    /// Opens a directory one component below `parent` without following symlinks (CM-05); below the
    /// target also without crossing mounts.
    fn open_dir(&self, parent: BorrowedFd<'_>, name: &CStr, below_target: bool) -> Result<OwnedFd, Errno> {
        if self.force_openat {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            return rustix::fs::openat(parent, name, flags, Mode::empty());
        }
        guarded::open_dir_at(parent, OsStr::from_bytes(name.to_bytes()), below_target)
    }

    /// Stats an open directory. Without `openat2`'s `RESOLVE_NO_XDEV` the mount id is fetched too, so that
    /// a bind mount of the same file system is still recognised as a mount point.
    fn dir_id(&self, fd: &OwnedFd) -> Result<DirId, Errno> {
        if self.force_openat || !guarded::uses_openat2() {
            let want = StatxFlags::BASIC_STATS | StatxFlags::MNT_ID;
            match rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, want) {
                Ok(sx) => {
                    let mnt_id = sx.stx_mask & StatxFlags::MNT_ID.bits() != 0;
                    return Ok(DirId {
                        dev: rustix::fs::makedev(sx.stx_dev_major, sx.stx_dev_minor),
                        ino: sx.stx_ino,
                        mnt_id: mnt_id.then_some(sx.stx_mnt_id),
                        uid: sx.stx_uid,
                        gid: sx.stx_gid,
                        perm: u32::from(sx.stx_mode) & 0o7777,
                    });
                }
                // Old kernels and seccomp profiles without statx: the device number must do.
                Err(Errno::NOSYS) | Err(Errno::PERM) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(DirId::from_stat(&rustix::fs::fstat(fd)?))
    }

    /// Prints a progress line every `progress_every` on long walks (the clock is read every 256 entries).
    fn tick(&mut self) {
        if self.until_clock_check > 0 {
            self.until_clock_check -= 1;
            return;
        }
        self.until_clock_check = 255;
        let now = Instant::now();
        if now >= self.next_progress {
            self.next_progress = now + self.progress_every;
            self.report.info(format_args!(
                "Ownership of {}: {} entries checked, {} changed so far; still working",
                display_bytes(&self.target),
                // Tasks are counted once, in the share, whichever thread walked them.
                self.stats.checked - self.checked_in_tasks + self.share.map_or(0, Share::checked_by_tasks),
                self.stats.changed
            ));
        }
    }

    fn target_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.target))
    }

    fn entry_path_bytes(&self, name: &CStr) -> Vec<u8> {
        let mut p = self.path.clone();
        p.push(b'/');
        p.extend_from_slice(name.to_bytes());
        p
    }

    fn entry_path(&self, name: &CStr) -> std::path::PathBuf {
        std::path::PathBuf::from(std::ffi::OsString::from_vec(self.entry_path_bytes(name)))
    }
}

/// Copies the next queued subdirectory name (with its NUL) of `frame` into `out`.
fn next_name(frame: &mut Frame, out: &mut Vec<u8>) -> bool {
    let rest = &frame.subdirs[frame.cursor..];
    let Some(end) = rest.iter().position(|&b| b == 0) else {
        return false;
    };
    out.clear();
    out.extend_from_slice(&rest[..=end]);
    frame.cursor += end + 1;
    true
}

fn c_name(name: &OsStr) -> Option<std::ffi::CString> {
    let b = name.as_bytes();
    if b.is_empty() || b.contains(&b'/') || b == b"." || b == b".." {
        return None;
    }
    std::ffi::CString::new(b).ok()
}

mod share;
#[cfg(test)]
pub(crate) mod tests;
