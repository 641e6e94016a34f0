//! Edits of the account database — `/etc/passwd`, `/etc/group` and, when it exists, `/etc/gshadow` (SPEC
//! CM-09).
//!
//! Two layers:
//!
//! * **Pure edits over bytes** ([`set_uid`], [`set_primary_gid`], [`change_gid`], [`add_member`],
//!   [`append_group`], [`add_gshadow_member`], [`append_gshadow`]). Each takes a file's content and returns
//!   the new content, or `None` when nothing would change. Only the one field being edited changes; every
//!   other byte — comments, blank lines, malformed lines, NIS `+`/`-` lines, lines that are not UTF-8 — is
//!   kept as it was, and the result always ends with a newline. A line describes an account (and can be
//!   edited) only when [`crate::accounts`] would read it as one, so edits and look-ups agree on which line
//!   is the user's.
//! * **A locked update** ([`update`]): `lckpwdf` semantics on `/etc/.pwd.lock` (fcntl write lock, give up
//!   after [`LOCK_TIMEOUT`]), the current content saved as `passwd-`/`group-`/`gshadow-` with the same
//!   owner and mode, the new content written to a unique temporary in `/etc` with the original owner and
//!   mode, fsynced and renamed over the original; a bind-mounted file (EBUSY on rename) is rewritten in
//!   place under the lock. No other file is touched and no home directory is ever walked (B1).

use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags};

use crate::account_line;
use crate::atomic::{read_for_rewrite, NewFile};
use crate::error::{SysError, SysResult};
use crate::guarded::{Dir, Entry, Meta};
use crate::owner::Owner;
use crate::root::RootPrefix;

pub const PASSWD: &str = "/etc/passwd";
pub const GROUP: &str = "/etc/group";
pub const GSHADOW: &str = "/etc/gshadow";
pub const LOCK_FILE: &str = "/etc/.pwd.lock";
/// How long `lckpwdf` waits for the lock before giving up.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(15);

/// Account files are small; anything bigger is not a file this program should rewrite.
const READ_LIMIT: u64 = 64 << 20;

// ---------------------------------------------------------------------------------------------------------
// Pure edits
// ---------------------------------------------------------------------------------------------------------

/// Joins lines, each followed by a newline.
fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

fn owned_lines(text: &[u8]) -> Vec<Vec<u8>> {
    account_line::lines(text)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect()
}

/// Byte ranges of the `:`-separated fields of a line.
fn field_ranges(line: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in line.iter().enumerate() {
        if *b == b':' {
            out.push((start, i));
            start = i + 1;
        }
    }
    out.push((start, line.len()));
    out
}

/// `line` with field `index` replaced by `value`.
fn with_field(line: &[u8], index: usize, value: &[u8]) -> Vec<u8> {
    let (s, e) = field_ranges(line)[index];
    let mut out = Vec::with_capacity(line.len() + value.len());
    out.extend_from_slice(&line[..s]);
    out.extend_from_slice(value);
    out.extend_from_slice(&line[e..]);
    out
}

fn is_member(members: &str, user: &str) -> bool {
    account_line::members(members).any(|m| m == user)
}

/// A member list with `user` appended.
fn with_member(members: &str, user: &str) -> Vec<u8> {
    let mut v = members.as_bytes().to_vec();
    if !v.is_empty() && !v.ends_with(b",") {
        v.push(b',');
    }
    v.extend_from_slice(user.as_bytes());
    v
}

/// Sets the uid field of `user`'s passwd line (the first well-formed line with that name) to `new_uid`.
/// `None` when the user has no such line or already has that uid.
pub fn set_uid(passwd: &[u8], user: &str, new_uid: u32) -> Option<Vec<u8>> {
    let mut ls = owned_lines(passwd);
    let i = ls
        .iter()
        .position(|l| account_line::passwd(l).is_some_and(|p| p.name == user))?;
    let old = account_line::passwd(&ls[i])?.uid;
    if old == new_uid {
        return None;
    }
    ls[i] = with_field(&ls[i], account_line::PASSWD_UID, new_uid.to_string().as_bytes());
    Some(join(&ls))
}

/// Gives every account whose primary gid is `old` the primary gid `new` (groupmod semantics). Returns the
/// new content and the number of accounts changed; `None` when no account has primary gid `old` or
/// `old == new`.
pub fn set_primary_gid(passwd: &[u8], old: u32, new: u32) -> Option<(Vec<u8>, usize)> {
    if old == new {
        return None;
    }
    let mut ls = owned_lines(passwd);
    let mut changed = 0;
    for l in ls.iter_mut() {
        if account_line::passwd(l).is_some_and(|p| p.gid == old) {
            *l = with_field(l, account_line::PASSWD_GID, new.to_string().as_bytes());
            changed += 1;
        }
    }
    (changed > 0).then(|| (join(&ls), changed))
}

/// Moves the group whose gid is `old` (the first well-formed one) to gid `new`. Returns the new content and
/// the group's name; `None` when no group has gid `old` or `old == new`. Other groups already at `new` are
/// left alone (duplicate gids are allowed, like `groupmod -o`).
pub fn change_gid(group: &[u8], old: u32, new: u32) -> Option<(Vec<u8>, String)> {
    if old == new {
        return None;
    }
    let mut ls = owned_lines(group);
    let i = ls
        .iter()
        .position(|l| account_line::group(l).is_some_and(|g| g.gid == old))?;
    let name = account_line::group(&ls[i])?.name.to_string();
    ls[i] = with_field(&ls[i], account_line::GROUP_GID, new.to_string().as_bytes());
    Some((join(&ls), name))
}

/// Name of the first well-formed group with this gid.
pub fn group_name_of(group: &[u8], gid: u32) -> Option<String> {
    account_line::lines(group).into_iter().find_map(|l| {
        account_line::group(l)
            .filter(|g| g.gid == gid)
            .map(|g| g.name.to_string())
    })
}

/// Gid of the first well-formed group with this name.
pub fn gid_of_group(group: &[u8], name: &str) -> Option<u32> {
    account_line::lines(group)
        .into_iter()
        .find_map(|l| account_line::group(l).filter(|g| g.name == name).map(|g| g.gid))
}

/// Appends `user` to the member list of the first well-formed group with gid `gid`. Returns the new content
/// and the group's name; `None` when no group has that gid or the user is already listed there.
pub fn add_member(group: &[u8], gid: u32, user: &str) -> Option<(Vec<u8>, String)> {
    let mut ls = owned_lines(group);
    let i = ls
        .iter()
        .position(|l| account_line::group(l).is_some_and(|g| g.gid == gid))?;
    let account_line::GroupLine { name, members, .. } = account_line::group(&ls[i])?;
    if is_member(members, user) {
        return None;
    }
    let name = name.to_string();
    let new_members = with_member(members, user);
    ls[i] = with_field(&ls[i], account_line::MEMBERS, &new_members);
    Some((join(&ls), name))
}

/// Appends the group line `name:x:gid:member`.
pub fn append_group(group: &[u8], name: &str, gid: u32, member: &str) -> Vec<u8> {
    let mut ls = owned_lines(group);
    ls.push(format!("{name}:x:{gid}:{member}").into_bytes());
    join(&ls)
}

/// Whether gshadow has a well-formed entry for the group `name`.
pub fn has_gshadow_entry(gshadow: &[u8], name: &str) -> bool {
    account_line::lines(gshadow)
        .into_iter()
        .any(|l| account_line::gshadow(l).is_some_and(|g| g.name == name))
}

/// Appends `user` to the member list of the gshadow entry of group `name`. `None` when there is no such
/// entry or the user is already listed.
pub fn add_gshadow_member(gshadow: &[u8], name: &str, user: &str) -> Option<Vec<u8>> {
    let mut ls = owned_lines(gshadow);
    let i = ls
        .iter()
        .position(|l| account_line::gshadow(l).is_some_and(|g| g.name == name))?;
    let members = account_line::gshadow(&ls[i])?.members;
    if is_member(members, user) {
        return None;
    }
    let new_members = with_member(members, user);
    ls[i] = with_field(&ls[i], account_line::MEMBERS, &new_members);
    Some(join(&ls))
}

/// Appends the gshadow line `name:!::member` (no group password, no administrators).
pub fn append_gshadow(gshadow: &[u8], name: &str, member: &str) -> Vec<u8> {
    let mut ls = owned_lines(gshadow);
    ls.push(format!("{name}:!::{member}").into_bytes());
    join(&ls)
}

// ---------------------------------------------------------------------------------------------------------
// Locked update
// ---------------------------------------------------------------------------------------------------------

/// The account files as read (under the lock, for a real update).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub passwd: Vec<u8>,
    /// Empty when `/etc/group` does not exist.
    pub group: Vec<u8>,
    /// `None` when `/etc/gshadow` does not exist (it is then never created).
    pub gshadow: Option<Vec<u8>>,
}

/// New contents for the files that change; `None` leaves a file alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub passwd: Option<Vec<u8>>,
    pub group: Option<Vec<u8>>,
    pub gshadow: Option<Vec<u8>>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.passwd.is_none() && self.group.is_none() && self.gshadow.is_none()
    }

    /// The files that change, in the order they are written.
    pub fn files(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.passwd.is_some() {
            v.push(PASSWD);
        }
        if self.group.is_some() {
            v.push(GROUP);
        }
        if self.gshadow.is_some() {
            v.push(GSHADOW);
        }
        v
    }
}

/// What a plan function returns: the edits, plus whatever the caller wants back (its messages).
#[derive(Debug, Clone)]
pub struct Plan<T> {
    pub changes: Changes,
    pub value: T,
}

/// How [`update`] behaves.
#[derive(Debug, Clone, Copy)]
pub struct UpdateOptions {
    /// Read and plan only: no lock, no write (CM-11).
    pub dry_run: bool,
    pub lock_timeout: Duration,
}

impl UpdateOptions {
    pub fn new(dry_run: bool) -> Self {
        UpdateOptions {
            dry_run,
            lock_timeout: LOCK_TIMEOUT,
        }
    }
}

/// Why an update did not happen (or happened only in part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateError {
    /// EROFS, EACCES or EPERM while locking or replacing: `/etc` (or this bind-mounted file) cannot be
    /// written. `SysError::path` names the account file that could not be replaced and `op` is `update`.
    NotWritable(SysError),
    /// Another process held `/etc/.pwd.lock` for the whole timeout.
    LockTimeout(Duration),
    /// Anything else (unreadable passwd, ENOSPC, …).
    Failed(SysError),
}

impl UpdateError {
    /// The warning text (CM-04 form, with the `— continuing` tail).
    pub fn warning(&self) -> String {
        match self {
            UpdateError::NotWritable(e) | UpdateError::Failed(e) => format!("{e} — continuing"),
            UpdateError::LockTimeout(d) => format!(
                "lock {LOCK_FILE}: still held by another process after {} s; account files left unchanged — continuing",
                d.as_secs()
            ),
        }
    }
}

fn is_not_writable(e: Errno) -> bool {
    matches!(e, Errno::EROFS | Errno::EACCES | Errno::EPERM)
}

/// Classifies an error met while changing `file`.
fn classify(err: SysError, file: &str) -> UpdateError {
    if is_not_writable(err.errno) {
        UpdateError::NotWritable(SysError::new("update", file, err.errno))
    } else {
        UpdateError::Failed(err)
    }
}

/// One account file as read, with the metadata its replacement must keep.
struct Current {
    content: Vec<u8>,
    meta: Option<Meta>,
}

fn base_name(path: &str) -> &OsStr {
    Path::new(path).file_name().unwrap_or(OsStr::new(path))
}

fn read_file(etc: &Dir, path: &str, missing_ok: bool) -> SysResult<Option<Current>> {
    match read_for_rewrite(etc, base_name(path), READ_LIMIT)? {
        Entry::Found((content, meta)) => Ok(Some(Current {
            content,
            meta: Some(meta),
        })),
        Entry::Missing if missing_ok => Ok(None),
        Entry::Missing => Err(SysError::new("read", path, Errno::ENOENT)),
        Entry::Symlink => Err(SysError::new("read", path, Errno::ELOOP)),
        Entry::Other(_) => Err(SysError::new("read", path, Errno::EINVAL)),
    }
}

struct Files {
    passwd: Current,
    group: Current,
    gshadow: Option<Current>,
}

impl Files {
    fn read(etc: &Dir) -> SysResult<Files> {
        let passwd =
            read_file(etc, PASSWD, false)?.ok_or_else(|| SysError::new("read", PASSWD, Errno::ENOENT))?;
        let group = read_file(etc, GROUP, true)?.unwrap_or(Current {
            content: Vec::new(),
            meta: None,
        });
        let gshadow = read_file(etc, GSHADOW, true)?;
        Ok(Files {
            passwd,
            group,
            gshadow,
        })
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            passwd: self.passwd.content.clone(),
            group: self.group.content.clone(),
            gshadow: self.gshadow.as_ref().map(|g| g.content.clone()),
        }
    }
}

/// Opens `/etc` of the root prefix.
fn open_etc(root: &RootPrefix) -> SysResult<Dir> {
    match Dir::open_anchor(root, Path::new("/etc"))? {
        Entry::Found(d) => Ok(d),
        Entry::Missing => Err(SysError::new("open", "/etc", Errno::ENOENT)),
        Entry::Symlink => Err(SysError::new("open", "/etc", Errno::ELOOP)),
        Entry::Other(_) => Err(SysError::new("open", "/etc", Errno::ENOTDIR)),
    }
}

/// The held `/etc/.pwd.lock`; dropping it closes the descriptor, which releases the lock.
#[derive(Debug)]
pub struct PwdLock {
    _fd: OwnedFd,
}

/// Takes the `lckpwdf` lock: opens (creating 0600) `/etc/.pwd.lock` and takes a whole-file fcntl write
/// lock, polling until `timeout` has passed. The lock is process-associated like glibc's, so it excludes
/// shadow-utils and any other `lckpwdf` user.
pub fn lock(etc: &Dir, timeout: Duration) -> Result<PwdLock, LockError> {
    let fd = rustix::fs::openat(
        etc.fd(),
        base_name(LOCK_FILE),
        OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| LockError::Sys(SysError::new("open", LOCK_FILE, e)))?;
    let deadline = Instant::now() + timeout;
    loop {
        match rustix::fs::fcntl_lock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(PwdLock { _fd: fd }),
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::ACCESS) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(LockError::Timeout(timeout));
                }
                std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(LockError::Sys(SysError::new("lock", LOCK_FILE, e))),
        }
    }
}

/// Why [`lock`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockError {
    Timeout(Duration),
    Sys(SysError),
}

/// Reads the account files, asks `plan` for the edits and applies them under the lock.
///
/// `plan` is first run on an unlocked read: when it changes nothing, nothing is locked or written (a rerun
/// touches no file). Otherwise the lock is taken, the files are read again and `plan` runs again on what is
/// now current; its second answer is applied and its value returned. In a dry run only the unlocked
/// plan's value is returned.
///
/// Writing: for each changed file (passwd, group, gshadow), the backup and the new content are first
/// written to temporaries (nothing has changed if that fails); then per file the backup is renamed to
/// `<name>-` and the new content over `<name>`. A failure part-way through leaves the earlier files
/// replaced; callers re-read the accounts afterwards.
pub fn update<T>(
    root: &RootPrefix,
    opts: UpdateOptions,
    plan: impl Fn(&Snapshot) -> Plan<T>,
) -> Result<T, UpdateError> {
    let etc = open_etc(root).map_err(UpdateError::Failed)?;
    let first = Files::read(&etc).map_err(UpdateError::Failed)?;
    let unlocked = plan(&first.snapshot());
    if opts.dry_run || unlocked.changes.is_empty() {
        return Ok(unlocked.value);
    }
    let first_file = unlocked.changes.files()[0];
    let _lock = lock(&etc, opts.lock_timeout).map_err(|e| match e {
        LockError::Timeout(d) => UpdateError::LockTimeout(d),
        LockError::Sys(s) => classify(s, first_file),
    })?;
    let files = Files::read(&etc).map_err(UpdateError::Failed)?;
    let locked = plan(&files.snapshot());
    commit(&etc, &files, &locked.changes)?;
    Ok(locked.value)
}

/// A file to publish: its temporaries and where they go.
struct Pending<'a> {
    path: &'static str,
    backup_tmp: std::ffi::OsString,
    new_tmp: std::ffi::OsString,
    content: &'a [u8],
    original: &'a Current,
}

fn commit(etc: &Dir, files: &Files, changes: &Changes) -> Result<(), UpdateError> {
    // Published in this order so that a kill between two renames leaves a state the next boot finishes:
    // passwd (which says what the user's ids are) goes last. Were passwd first, a kill after it would leave
    // the user already "at" the new gid with /etc/group still at the old one, and no later boot would see a
    // difference to repair.
    let mut todo: Vec<(&'static str, &[u8], &Current)> = Vec::new();
    if let (Some(c), Some(cur)) = (&changes.gshadow, &files.gshadow) {
        todo.push((GSHADOW, c, cur));
    }
    if let Some(c) = &changes.group {
        todo.push((GROUP, c, &files.group));
    }
    if let Some(c) = &changes.passwd {
        todo.push((PASSWD, c, &files.passwd));
    }

    // Stage every temporary first, so a read-only /etc or a full disk changes nothing at all.
    let mut pending: Vec<Pending> = Vec::new();
    let staged = (|| -> Result<(), UpdateError> {
        for (path, content, original) in &todo {
            let (mode, owner) = keep_of(original.meta.as_ref());
            let name = base_name(path);
            let backup_tmp = if original.meta.is_some() {
                write_temp(etc, name, &original.content, mode, owner).map_err(|e| classify(e, path))?
            } else {
                Default::default()
            };
            let new_tmp = match write_temp(etc, name, content, mode, owner) {
                Ok(t) => t,
                Err(e) => {
                    remove_temp(etc, &backup_tmp);
                    return Err(classify(e, path));
                }
            };
            pending.push(Pending {
                path,
                backup_tmp,
                new_tmp,
                content,
                original,
            });
        }
        Ok(())
    })();
    if let Err(e) = staged {
        for p in &pending {
            remove_temp(etc, &p.backup_tmp);
            remove_temp(etc, &p.new_tmp);
        }
        return Err(e);
    }

    let mut result = Ok(());
    for p in &pending {
        if result.is_ok() {
            result = publish(etc, p).map_err(|e| classify(e, p.path));
        }
        // After a successful rename the temporary is gone; otherwise it must go.
        remove_temp(etc, &p.backup_tmp);
        remove_temp(etc, &p.new_tmp);
    }
    // A failed directory fsync loses nothing already renamed.
    let _ = rustix::fs::fsync(etc.fd());
    result
}

fn publish(etc: &Dir, p: &Pending) -> SysResult<()> {
    let name = base_name(p.path);
    if p.original.meta.is_some() {
        let mut backup = name.to_os_string();
        backup.push("-");
        put(etc, &p.backup_tmp, &backup, &p.original.content)?;
    }
    put(etc, &p.new_tmp, name, p.content)
}

/// Renames `tmp` over `name`; a bind-mounted target (EBUSY) is rewritten in place instead.
fn put(etc: &Dir, tmp: &OsStr, name: &OsStr, content: &[u8]) -> SysResult<()> {
    match rustix::fs::renameat(etc.fd(), tmp, etc.fd(), name) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => rewrite_in_place(etc, name, content),
        Err(e) => Err(SysError::new("rename", etc.child(name), e)),
    }
}

/// Overwrites a file that cannot be renamed over (a bind mount) through its own descriptor: write, then
/// truncate to the new length, then fsync. Only done under the lock, so no `lckpwdf` user sees it torn.
fn rewrite_in_place(etc: &Dir, name: &OsStr, content: &[u8]) -> SysResult<()> {
    let shown = etc.child(name);
    let fd = rustix::fs::openat(
        etc.fd(),
        name,
        OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SysError::new("open", &shown, e))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(content)
        .map_err(|e| SysError::new("write", &shown, e))?;
    f.set_len(content.len() as u64)
        .map_err(|e| SysError::new("truncate", &shown, e))?;
    f.sync_all().map_err(|e| SysError::new("fsync", &shown, e))
}

/// Mode and owner a replacement keeps: the original's, or root 0644 for a file that did not exist.
fn keep_of(meta: Option<&Meta>) -> (u32, Option<Owner>) {
    match meta {
        Some(m) => (m.perm, Some(Owner::new(m.uid, m.gid))),
        None => (0o644, Some(Owner::ROOT)),
    }
}

fn remove_temp(etc: &Dir, tmp: &OsStr) {
    if !tmp.is_empty() {
        let _ = rustix::fs::unlinkat(etc.fd(), tmp, AtFlags::empty());
    }
}

/// Writes `content` to a fresh temporary next to `name`, owned and moded like the original before the
/// first byte is written, fsynced; returns the temporary's name.
fn write_temp(
    etc: &Dir,
    name: &OsStr,
    content: &[u8],
    mode: u32,
    owner: Option<Owner>,
) -> SysResult<std::ffi::OsString> {
    let mut new = NewFile::create(etc, name, mode, owner)?;
    new.write_synced(content)?;
    new.keep_as_temp(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account_line::lines;

    const PASSWD_TXT: &[u8] = b"root:x:0:0:root:/root:/bin/bash\n\
# a comment line\n\
+nisuser::::::\n\
-baduser::::::\n\
broken line without fields\n\
\n\
caf\xc3\xa9:x:5:5::/x:/bin/sh\n\
bin:x:2:2:bin:/bin:/usr/sbin/nologin\n\
raw\xff:x:7:7::/r:/bin/sh\n\
hermes:x:10000:10000:Hermes Agent,,,:/opt/data:/bin/sh\n\
other:x:1000:10000::/home/other:/bin/sh\n";

    const GROUP_TXT: &[u8] = b"root:x:0:\n\
+:::\n\
video:x:44:alice\n\
not a group\n\
hermes:x:10000:\n\
render:x:109:\n\
video2:x:44:\n\
empty::\n";

    /// Every line of `before` except the edited ones must appear unchanged in `after`, in order.
    fn assert_only_lines_changed(before: &[u8], after: &[u8], changed: &[usize]) {
        let b = lines(before);
        let a = lines(after);
        for (i, line) in b.iter().enumerate() {
            if !changed.contains(&i) {
                assert_eq!(a[i], *line, "line {i} changed");
            }
        }
        assert!(after.ends_with(b"\n"));
    }

    #[test]
    fn set_uid_edits_only_the_uid_field() {
        let out = set_uid(PASSWD_TXT, "hermes", 1000).unwrap();
        let l = lines(&out);
        assert_eq!(l[9], b"hermes:x:1000:10000:Hermes Agent,,,:/opt/data:/bin/sh");
        assert_eq!(l.len(), lines(PASSWD_TXT).len());
        assert_only_lines_changed(PASSWD_TXT, &out, &[9]);
    }

    #[test]
    fn set_uid_without_change_or_user_is_none() {
        assert_eq!(set_uid(PASSWD_TXT, "hermes", 10000), None);
        assert_eq!(set_uid(PASSWD_TXT, "nobody", 10), None);
        // NIS lines and malformed lines never count as the user.
        assert_eq!(set_uid(PASSWD_TXT, "+nisuser", 10), None);
        assert_eq!(set_uid(PASSWD_TXT, "broken line without fields", 10), None);
    }

    #[test]
    fn input_without_trailing_newline_gets_one() {
        let input = b"root:x:0:0::/root:/bin/sh\nhermes:x:10000:10000::/opt/data:/bin/sh";
        let out = set_uid(input, "hermes", 99).unwrap();
        assert_eq!(
            out,
            b"root:x:0:0::/root:/bin/sh\nhermes:x:99:10000::/opt/data:/bin/sh\n".to_vec()
        );
        let g = append_group(b"root:x:0:", "hostgid5", 5, "hermes");
        assert_eq!(g, b"root:x:0:\nhostgid5:x:5:hermes\n".to_vec());
    }

    #[test]
    fn edits_of_empty_files() {
        assert_eq!(append_group(b"", "g", 3, "u"), b"g:x:3:u\n".to_vec());
        assert_eq!(append_gshadow(b"", "g", "u"), b"g:!::u\n".to_vec());
        assert_eq!(set_uid(b"", "u", 1), None);
    }

    #[test]
    fn non_utf8_and_crlf_lines_survive_byte_for_byte() {
        let input = b"x\xfe\xff:::\r\nhermes:x:10000:10000::/opt/data:/bin/sh\n\xc0garbage\n";
        let out = set_uid(input, "hermes", 42).unwrap();
        assert_eq!(
            out,
            b"x\xfe\xff:::\r\nhermes:x:42:10000::/opt/data:/bin/sh\n\xc0garbage\n".to_vec()
        );
    }

    #[test]
    fn uid_field_with_leading_zeros_is_rewritten_canonically() {
        let input = b"hermes:x:010000:10000::/opt/data:/bin/sh\n";
        assert_eq!(set_uid(input, "hermes", 10000), None, "0010000 is 10000");
        assert_eq!(
            set_uid(input, "hermes", 7).unwrap(),
            b"hermes:x:7:10000::/opt/data:/bin/sh\n".to_vec()
        );
    }

    #[test]
    fn primary_gid_moves_for_every_account_with_it() {
        let (out, n) = set_primary_gid(PASSWD_TXT, 10000, 1000).unwrap();
        assert_eq!(n, 2);
        let l = lines(&out);
        assert_eq!(l[9], b"hermes:x:10000:1000:Hermes Agent,,,:/opt/data:/bin/sh");
        assert_eq!(l[10], b"other:x:1000:1000::/home/other:/bin/sh");
        assert_only_lines_changed(PASSWD_TXT, &out, &[9, 10]);
        assert_eq!(set_primary_gid(PASSWD_TXT, 4242, 1), None);
        assert_eq!(set_primary_gid(PASSWD_TXT, 10000, 10000), None);
    }

    #[test]
    fn change_gid_moves_the_first_group_only() {
        let (out, name) = change_gid(GROUP_TXT, 10000, 1000).unwrap();
        assert_eq!(name, "hermes");
        assert_eq!(lines(&out)[4], b"hermes:x:1000:");
        assert_only_lines_changed(GROUP_TXT, &out, &[4]);
        let (out, name) = change_gid(GROUP_TXT, 44, 45).unwrap();
        assert_eq!(name, "video");
        assert_eq!(
            lines(&out)[6],
            b"video2:x:44:",
            "duplicate gid keeps the second group"
        );
        assert_eq!(change_gid(GROUP_TXT, 5555, 1), None);
    }

    #[test]
    fn change_gid_to_a_gid_already_in_use_keeps_both_groups() {
        let (out, _) = change_gid(GROUP_TXT, 10000, 44).unwrap();
        let dup: Vec<_> = crate::accounts::parse_group(&out)
            .into_iter()
            .filter(|g| g.gid == 44)
            .map(|g| g.name)
            .collect();
        assert_eq!(dup, vec!["video", "hermes", "video2"]);
    }

    #[test]
    fn add_member_appends_to_the_first_group_with_the_gid() {
        let (out, name) = add_member(GROUP_TXT, 44, "hermes").unwrap();
        assert_eq!(name, "video");
        assert_eq!(lines(&out)[2], b"video:x:44:alice,hermes");
        assert_only_lines_changed(GROUP_TXT, &out, &[2]);
        // Already a member: nothing to do.
        assert_eq!(add_member(&out, 44, "hermes"), None);
        let (out, _) = add_member(GROUP_TXT, 109, "hermes").unwrap();
        assert_eq!(lines(&out)[5], b"render:x:109:hermes");
        assert_eq!(add_member(GROUP_TXT, 64000, "hermes"), None);
        let (out, _) = add_member(b"g:x:5:a,\n", 5, "b").unwrap();
        assert_eq!(out, b"g:x:5:a,b\n".to_vec());
    }

    #[test]
    fn member_names_match_whole_words_only() {
        let g = b"video:x:44:hermes2,xhermes\n";
        let (out, _) = add_member(g, 44, "hermes").unwrap();
        assert_eq!(out, b"video:x:44:hermes2,xhermes,hermes\n".to_vec());
    }

    #[test]
    fn group_lookups() {
        assert_eq!(group_name_of(GROUP_TXT, 44).as_deref(), Some("video"));
        assert_eq!(group_name_of(GROUP_TXT, 4), None);
        assert_eq!(gid_of_group(GROUP_TXT, "render"), Some(109));
        assert_eq!(gid_of_group(GROUP_TXT, "+"), None);
    }

    #[test]
    fn gshadow_edits() {
        let gs = b"root:*::\nvideo:!::alice\n+::: \nhermes:!::\n";
        let out = add_gshadow_member(gs, "video", "hermes").unwrap();
        assert_eq!(
            out,
            b"root:*::\nvideo:!::alice,hermes\n+::: \nhermes:!::\n".to_vec()
        );
        assert_eq!(add_gshadow_member(&out, "video", "hermes"), None);
        assert_eq!(add_gshadow_member(gs, "missing", "hermes"), None);
        assert!(has_gshadow_entry(gs, "hermes"));
        assert!(!has_gshadow_entry(gs, "hostgid1"));
        let out = append_gshadow(gs, "hostgid64000", "hermes");
        assert!(out.ends_with(b"hermes:!::\nhostgid64000:!::hermes\n"));
    }

    #[test]
    fn edits_agree_with_the_account_reader() {
        let out = set_uid(PASSWD_TXT, "hermes", 1234).unwrap();
        let (out, _) = set_primary_gid(&out, 10000, 4321).unwrap();
        let (group, _) = change_gid(GROUP_TXT, 10000, 4321).unwrap();
        let (group, _) = add_member(&group, 109, "hermes").unwrap();
        let a = crate::accounts::account_from(&out, &group, "hermes").unwrap();
        assert_eq!((a.uid, a.gid), (1234, 4321));
        assert_eq!(a.member_of, vec![109]);
        // The non-UTF-8 account line is invisible to both.
        assert_eq!(set_uid(PASSWD_TXT, "raw\u{fffd}", 1), None);
    }

    // ---- the locked update, against a temporary /etc (run as root, like CI) ----

    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn temp_etc() -> (tempfile::TempDir, RootPrefix) {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nhermes:x:10000:10000::/opt/data:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(t.path().join("etc/group"), "root:x:0:\nhermes:x:10000:\n").unwrap();
        let root = RootPrefix::new(t.path());
        (t, root)
    }

    fn uid_plan(n: u32) -> impl Fn(&Snapshot) -> Plan<u32> {
        move |s: &Snapshot| Plan {
            changes: Changes {
                passwd: set_uid(&s.passwd, "hermes", n),
                ..Changes::default()
            },
            value: n,
        }
    }

    fn etc_names(t: &tempfile::TempDir) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(t.path().join("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn update_replaces_keeps_owner_and_mode_and_backs_up() {
        let (t, root) = temp_etc();
        let passwd = t.path().join("etc/passwd");
        std::os::unix::fs::chown(&passwd, Some(0), Some(42)).unwrap();
        std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o640)).unwrap();
        let before = std::fs::read(&passwd).unwrap();
        update(&root, UpdateOptions::new(false), uid_plan(1000)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&passwd).unwrap(),
            "root:x:0:0::/root:/bin/sh\nhermes:x:1000:10000::/opt/data:/bin/sh\n"
        );
        let backup = t.path().join("etc/passwd-");
        assert_eq!(std::fs::read(&backup).unwrap(), before);
        for p in [&passwd, &backup] {
            let m = std::fs::metadata(p).unwrap();
            assert_eq!(
                (m.uid(), m.gid(), m.mode() & 0o7777),
                (0, 42, 0o640),
                "{}",
                p.display()
            );
        }
        let lock = std::fs::metadata(t.path().join("etc/.pwd.lock")).unwrap();
        assert_eq!(lock.mode() & 0o7777, 0o600);
        assert_eq!(
            etc_names(&t),
            vec![".pwd.lock", "group", "passwd", "passwd-"],
            "no temporaries left"
        );
    }

    #[test]
    fn update_without_changes_locks_and_writes_nothing() {
        let (t, root) = temp_etc();
        update(&root, UpdateOptions::new(false), uid_plan(10000)).unwrap();
        assert_eq!(etc_names(&t), vec!["group", "passwd"]);
    }

    #[test]
    fn dry_run_update_locks_and_writes_nothing() {
        let (t, root) = temp_etc();
        assert_eq!(update(&root, UpdateOptions::new(true), uid_plan(5)).unwrap(), 5);
        assert_eq!(etc_names(&t), vec!["group", "passwd"]);
        assert!(std::fs::read_to_string(t.path().join("etc/passwd"))
            .unwrap()
            .contains(":10000:10000:"));
    }

    #[test]
    fn gshadow_is_updated_only_when_present() {
        let (t, root) = temp_etc();
        let plan = |s: &Snapshot| Plan {
            changes: Changes {
                group: Some(append_group(&s.group, "hostgid7", 7, "hermes")),
                gshadow: s
                    .gshadow
                    .as_deref()
                    .map(|g| append_gshadow(g, "hostgid7", "hermes")),
                ..Changes::default()
            },
            value: (),
        };
        update(&root, UpdateOptions::new(false), plan).unwrap();
        assert!(!t.path().join("etc/gshadow").exists());
        std::fs::write(t.path().join("etc/gshadow"), "root:*::\n").unwrap();
        std::fs::set_permissions(
            t.path().join("etc/gshadow"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        update(&root, UpdateOptions::new(false), plan).unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("etc/gshadow")).unwrap(),
            "root:*::\nhostgid7:!::hermes\n"
        );
        assert_eq!(
            std::fs::read_to_string(t.path().join("etc/gshadow-")).unwrap(),
            "root:*::\n"
        );
        let m = std::fs::metadata(t.path().join("etc/gshadow-")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o640);
    }

    /// Holds an open-file-description lock on the lock file: it conflicts with the process-associated
    /// lock `update` takes even inside this one test process.
    fn hold_ofd_lock(path: &Path) -> std::fs::File {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap();
        let fl = nix::libc::flock {
            l_type: nix::libc::F_WRLCK as i16,
            l_whence: nix::libc::SEEK_SET as i16,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_OFD_SETLK(&fl)).unwrap();
        f
    }

    #[test]
    fn update_gives_up_when_the_lock_stays_held() {
        let (t, root) = temp_etc();
        let _held = hold_ofd_lock(&t.path().join("etc/.pwd.lock"));
        let start = Instant::now();
        let opts = UpdateOptions {
            dry_run: false,
            lock_timeout: Duration::from_millis(300),
        };
        let err = update(&root, opts, uid_plan(1000)).unwrap_err();
        assert_eq!(err, UpdateError::LockTimeout(Duration::from_millis(300)));
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert!(std::fs::read_to_string(t.path().join("etc/passwd"))
            .unwrap()
            .contains(":10000:10000:"));
        assert!(!t.path().join("etc/passwd-").exists());
    }

    #[test]
    fn update_waits_for_the_lock_holder() {
        let (t, root) = temp_etc();
        let held = hold_ofd_lock(&t.path().join("etc/.pwd.lock"));
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            drop(held);
        });
        let start = Instant::now();
        update(&root, UpdateOptions::new(false), uid_plan(1000)).unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(400),
            "the edit waited for the lock"
        );
        releaser.join().unwrap();
        assert!(std::fs::read_to_string(t.path().join("etc/passwd"))
            .unwrap()
            .contains("hermes:x:1000:"));
    }

    #[test]
    fn update_error_texts() {
        let e = UpdateError::NotWritable(SysError::new("update", PASSWD, Errno::EROFS));
        assert_eq!(
            e.warning(),
            "update /etc/passwd: EROFS (Read-only file system) — continuing"
        );
        let t = UpdateError::LockTimeout(Duration::from_secs(15));
        assert!(
            t.warning().starts_with("lock /etc/.pwd.lock: still held"),
            "{}",
            t.warning()
        );
        assert!(t.warning().contains("15 s"));
    }

    #[test]
    fn only_write_access_errors_mean_not_writable() {
        for e in [Errno::EROFS, Errno::EACCES, Errno::EPERM] {
            assert!(
                matches!(
                    classify(SysError::new("x", "/etc/passwd", e), PASSWD),
                    UpdateError::NotWritable(_)
                ),
                "{e}"
            );
        }
        for e in [Errno::ENOSPC, Errno::EIO, Errno::ENOENT] {
            assert!(
                matches!(
                    classify(SysError::new("x", "/etc/passwd", e), PASSWD),
                    UpdateError::Failed(_)
                ),
                "{e}"
            );
        }
    }

    #[test]
    fn a_missing_passwd_is_an_error_while_a_missing_gshadow_is_not() {
        let (t, root) = temp_etc();
        update(&root, UpdateOptions::new(false), uid_plan(1000)).unwrap();
        std::fs::remove_file(t.path().join("etc/passwd")).unwrap();
        match update(&root, UpdateOptions::new(false), uid_plan(2000)) {
            Err(UpdateError::Failed(e)) => assert_eq!(e.errno, Errno::ENOENT, "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_lock_file_is_never_followed_and_never_inherited() {
        let (t, root) = temp_etc();
        let outside = t.path().join("outside");
        std::os::unix::fs::symlink(&outside, t.path().join("etc/.pwd.lock")).unwrap();
        let etc = open_etc(&root).unwrap();
        match lock(&etc, Duration::from_millis(10)) {
            Err(LockError::Sys(e)) => assert_eq!(e.errno, Errno::ELOOP, "{e}"),
            other => panic!("a symlinked lock file was used: {:?}", other.is_ok()),
        }
        assert!(!outside.exists(), "the lock's symlink was followed");
        std::fs::remove_file(t.path().join("etc/.pwd.lock")).unwrap();
        let held = lock(&etc, Duration::from_millis(10)).unwrap();
        let flags = rustix::io::fcntl_getfd(&held._fd).unwrap();
        assert!(
            flags.contains(rustix::io::FdFlags::CLOEXEC),
            "the lock would leak into helpers"
        );
    }

    #[test]
    fn rewrite_in_place_never_follows_a_symlink() {
        let (t, root) = temp_etc();
        let outside = t.path().join("outside");
        std::fs::write(&outside, b"keep").unwrap();
        std::os::unix::fs::symlink(&outside, t.path().join("etc/linked")).unwrap();
        let etc = open_etc(&root).unwrap();
        let e = rewrite_in_place(&etc, OsStr::new("linked"), b"new").unwrap_err();
        assert_eq!(e.errno, Errno::ELOOP, "{e}");
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
        rewrite_in_place(&etc, OsStr::new("group"), b"g:x:1:\n").unwrap();
        assert_eq!(std::fs::read(t.path().join("etc/group")).unwrap(), b"g:x:1:\n");
    }

    #[test]
    fn a_failed_publish_leaves_no_temporaries() {
        let (t, root) = temp_etc();
        // The backup's name is taken by a directory with something in it: renaming over it fails.
        std::fs::create_dir(t.path().join("etc/passwd-")).unwrap();
        std::fs::write(t.path().join("etc/passwd-/x"), b"").unwrap();
        let before = std::fs::read(t.path().join("etc/passwd")).unwrap();
        assert!(matches!(
            update(&root, UpdateOptions::new(false), uid_plan(1000)),
            Err(UpdateError::Failed(_))
        ));
        assert_eq!(std::fs::read(t.path().join("etc/passwd")).unwrap(), before);
        assert_eq!(etc_names(&t), vec![".pwd.lock", "group", "passwd", "passwd-"]);
    }
}
