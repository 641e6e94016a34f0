//! Per-profile gateway slots in the s6 scan directory (SPEC RP-11 … RP-15): rendering the scripts,
//! building a complete slot under a dot-prefixed staging name (which s6-svscan ignores), and publishing it
//! with one atomic rename so a scan never sees a half-built slot.
//!
//! Everything is done through the scan directory's descriptor, so no path below it is ever resolved by
//! name from outside (with `HERMES_GATEWAY_SLOTS=user-owned` the directory is writable by the runtime
//! user). Who owns a slot is [`SlotOwnership`]: root by default — s6-supervise runs the slot's scripts as
//! root, so nothing in a slot may be writable by the runtime user — or the runtime user (RP-11 as
//! upstream, B15).

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};

use crate::chown_refusal::{chown_refused, note_chown_refusal};
use crate::display::display_path;
use crate::error::{SysError, SysResult};
use crate::guarded::{chmod_pinned, euid, gid, uid, Dir, Entry};
use crate::owner::Owner;
use crate::profiles::{validate_profile_name, DEFAULT_PROFILE};
use crate::report::{Change, Report};

/// `gateway-<p>`: the slot s6-svscan supervises.
pub fn slot_name(profile: &str) -> OsString {
    format!("gateway-{profile}").into()
}
/// `.gateway-<p>.tmp`: where a slot is built.
pub fn staging_name(profile: &str) -> OsString {
    format!(".gateway-{profile}.tmp").into()
}
/// `.gateway-<p>.tmp.old`: where a replaced or unregistered slot waits for removal.
pub fn old_name(profile: &str) -> OsString {
    format!(".gateway-{profile}.tmp.old").into()
}

/// Whether a depth-1 scandir entry is a leftover of an interrupted build (`.gateway-*.tmp*`, RP-01).
pub fn is_leftover_name(name: &[u8]) -> bool {
    name.starts_with(b".gateway-") && name[b".gateway-".len()..].windows(4).any(|w| w == b".tmp")
}

/// The profiles that have a `gateway-<p>` entry in the scan directory (other names are not ours).
pub fn current_slots(scandir: &Dir) -> SysResult<std::collections::BTreeSet<String>> {
    Ok(scandir
        .list()?
        .into_iter()
        .filter_map(|(name, _)| {
            let p = name.as_bytes().strip_prefix(b"gateway-")?;
            (p == DEFAULT_PROFILE.as_bytes() || validate_profile_name(p).is_ok())
                .then(|| String::from_utf8_lossy(p).into_owned())
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------------
// RP-13 … RP-15 scripts

const SHEBANG: &str = "#!/command/with-contenv sh\n";
/// Scripts that start as root name their interpreter and the privilege drop by absolute path: the
/// container environment's `PATH` lists `/opt/data/.local/bin`, which the runtime user writes, before
/// `/bin`, so a bare `sh` or `s6-setuidgid` would run the runtime user's program as root.
const ROOT_SHEBANG: &str = "#!/command/with-contenv /bin/sh\n";
const SETUIDGID: &str = "/command/s6-setuidgid";

fn shebang(as_root: bool) -> &'static str {
    if as_root {
        ROOT_SHEBANG
    } else {
        SHEBANG
    }
}

/// The gateway command of a profile; the root profile never gets `-p default`.
fn gateway_command(profile: &str) -> String {
    if profile == DEFAULT_PROFILE {
        "hermes gateway run --replace".to_string()
    } else {
        format!("hermes -p {profile} gateway run --replace")
    }
}

/// RP-13. `as_root`: the scripts are owned by uid 0 and run as root, so the command drops to the runtime
/// user explicitly with `/command/s6-setuidgid`. Scripts owned by the runtime user exec `hermes` directly,
/// as upstream: `hermes` is the exec shim, which drops root itself (MW-12).
pub fn render_run(profile: &str, as_root: bool, runtime_user: &str) -> String {
    let cmd = gateway_command(profile);
    let exec = if as_root {
        format!("exec {SETUIDGID} {runtime_user} {cmd}\n")
    } else {
        format!("exec {cmd}\n")
    };
    let mut s = String::from(shebang(as_root));
    s.push_str("set -e\n");
    s.push_str("export HOME=/opt/data\n");
    s.push_str("cd /opt/data\n");
    s.push_str("export HERMES_S6_SUPERVISED_CHILD=1\n");
    s.push_str("export HERMES_SUPERVISED_CHILD=1\n");
    s.push_str(&exec);
    s
}

/// RP-14, as hermes-agent 0.19.0's own finish script: exit 125 (s6: do not restart) after a fatal
/// configuration error (78) only. SPEC's rule also parks a gateway that exits 0, but 0.19.0 exits 0 when
/// `hermes gateway restart` stops it early in its start, expecting to be started again; a stop the user
/// wants is `s6-svc -d`, which needs no finish rule.
pub fn render_finish(as_root: bool) -> String {
    let mut s = String::from(shebang(as_root));
    s.push_str("# $1: exit code of run (256 when killed by a signal).\n");
    s.push_str("# 78 is a fatal configuration error: restarting only repeats it. 125 tells s6-supervise\n");
    s.push_str("# not to restart. Any other status (0 included: `gateway restart`) restarts.\n");
    s.push_str("case \"$1\" in\n");
    s.push_str("  78) exit 125 ;;\n");
    s.push_str("esac\n");
    s.push_str("exit 0\n");
    s
}

/// RP-15: s6-log into `$HERMES_HOME/logs/gateways/<p>` (resolved when the script runs).
pub fn render_log_run(profile: &str, as_root: bool, runtime_user: &str) -> String {
    let drop = if as_root {
        format!("{SETUIDGID} {runtime_user} ")
    } else {
        String::new()
    };
    let mut s = String::from(shebang(as_root));
    s.push_str("set -e\n");
    s.push_str("HERMES_HOME=\"${HERMES_HOME:-/opt/data}\"\n");
    s.push_str(&format!("dir=\"$HERMES_HOME/logs/gateways/{profile}\"\n"));
    s.push_str(&format!("{drop}mkdir -p \"$dir\"\n"));
    s.push_str(&format!("{drop}rm -f \"$dir/lock\"\n"));
    s.push_str(&format!("exec {drop}s6-log 1 n10 s1000000 T \"$dir\"\n"));
    s
}

// ---------------------------------------------------------------------------------------------------
// RP-11 build

/// Root-owned slots: `supervise/` — the runtime group may enter it (to reach `control`, `status`, `lock`)
/// but neither list nor create anything (s6-svperms' layout).
pub const ROOT_SUPERVISE_MODE: u32 = 0o710;
/// Root-owned slots: `supervise/control` — the runtime group may write commands (`s6-svc`).
pub const ROOT_CONTROL_MODE: u32 = 0o620;
/// Root-owned slots: `event/` and `supervise/event/`. Not writable by the runtime group, unlike
/// `s6-svperms -E`: s6-supervise notifies subscribers by opening every `ftrig1*` entry of these
/// directories for writing, as root and following symlinks, so a group member could plant a symlink there
/// and have root write an event byte over the first byte of any file (the container environment's `PATH`,
/// for one, which turns into a root shell). The price: `s6-svwait` and `s6-svc -w…` need root;
/// `s6-svstat` polling does the same job for the runtime user.
pub const ROOT_EVENT_MODE: u32 = 0o710;
/// Runtime-user slots (RP-11 as upstream) and the legacy user-owned mode: `event/`, `supervise/event/`.
/// The group may create its own FIFOs; setgid keeps them in the group, sticky stops members removing
/// each other's.
pub const USER_EVENT_MODE: u32 = 0o3730;

/// Who owns a slot's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotOwnership {
    /// Directories and files root:root, nothing writable by the runtime user; the supervise skeleton
    /// `root:<group>` with the `ROOT_*` modes, so the runtime group can run `s6-svc`, `s6-svstat` and
    /// `s6-svok`. The default.
    Root { group: u32 },
    /// Every entry `u:g` (`Some`) or the caller's (`None`, not running as root): RP-11 as upstream, which
    /// lets the runtime user gain root (B15). `HERMES_GATEWAY_SLOTS=user-owned`.
    User(Option<Owner>),
    /// Root may not give owners away (no CAP_CHOWN, see [`chown_refused`]): the `Root` layout and modes,
    /// every entry left as created — root:root — so the runtime user cannot control these gateways.
    Creator,
}

impl SlotOwnership {
    /// Owner of the slot's directories and files.
    fn files(self) -> Option<Owner> {
        match self {
            SlotOwnership::Root { .. } => Some(Owner::ROOT),
            SlotOwnership::User(o) => o,
            SlotOwnership::Creator => None,
        }
    }

    /// Whether building under this ownership changes any owner.
    fn chowns(self) -> bool {
        !matches!(self, SlotOwnership::User(None) | SlotOwnership::Creator)
    }

    /// Whether a published slot's top directory has the owner this layout gives it (a slot built under
    /// the other layout is replaced by the registrar).
    pub fn matches(self, slot: &crate::guarded::Meta) -> bool {
        match self.files() {
            Some(Owner { uid: u, gid: g }) => slot.uid == u && slot.gid == g,
            None => true,
        }
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct SlotSpec<'a> {
    /// A validated profile name (RP-10) or `default`.
    pub profile: &'a str,
    /// Without `down`, s6-supervise starts the service as soon as it supervises the slot.
    pub start: bool,
    /// Owner of every entry.
    pub ownership: SlotOwnership,
    /// Name given to `s6-setuidgid` when the scripts are root's.
    pub runtime_user: &'a str,
    /// The process umask ([`process_umask`], read once by the caller for all the slots of a run);
    /// `None`: unknown, and every mode is set explicitly.
    pub umask: Option<u32>,
}

impl SlotSpec<'_> {
    /// Whether the scripts will be owned by uid 0 (RP-13's `exec` rule).
    pub fn scripts_are_roots(&self) -> bool {
        match self.ownership.files() {
            Some(Owner { uid: u, .. }) => u == 0,
            None => euid() == 0,
        }
    }
}

/// Makes the entries of one staging tree. Nobody else writes there: the staging name is in a scan
/// directory only root may write or, with user-owned slots, in a tree handed whole to the user who may
/// write it (B15). So each entry is created with its final mode and given only the owner and mode the
/// kernel did not already give it: with hundreds of profiles these calls were a fifth of the boot step's
/// system calls.
struct Builder {
    euid: u32,
    egid: u32,
    /// Only root may write anywhere in the tree (root-owned slots): a leaf is then given its owner and
    /// mode by name, without opening it, since nobody can put anything else under that name.
    private: bool,
    /// The process umask, from `/proc/self/status`; `None` where the kernel does not say, and then every
    /// mode is set explicitly.
    umask: Option<u32>,
}

impl Builder {
    fn new(ownership: SlotOwnership, scandir: &crate::guarded::Meta, umask: Option<u32>) -> Builder {
        let euid = euid();
        Builder {
            euid,
            egid: crate::guarded::egid(),
            private: euid == 0
                && scandir.uid == 0
                && scandir.perm & 0o022 == 0
                && matches!(ownership, SlotOwnership::Root { .. } | SlotOwnership::Creator),
            umask,
        }
    }

    /// Whether a new entry asked for with `mode` may come out different: the umask cut bits, the kernel
    /// ignores the special bits at creation, or a setgid parent passes its bit on to a directory.
    fn needs_chmod(&self, mode: u32, dir_in_setgid_parent: bool) -> bool {
        match self.umask {
            Some(umask) => mode & 0o7000 != 0 || mode & 0o777 & umask != 0 || dir_in_setgid_parent,
            None => true,
        }
    }

    /// The owner to set on a new entry, if it did not get `owner` at creation: the creator's ids, or the
    /// group of a setgid parent (`setgid_gid`).
    fn chown_to(&self, owner: Option<Owner>, setgid_gid: Option<u32>) -> Option<Owner> {
        let given = Owner::new(self.euid, setgid_gid.unwrap_or(self.egid));
        owner.filter(|o| *o != given)
    }

    /// `dir/name`, a new file (never through a symlink) with `content`, `mode` and `owner`. Its parent was
    /// made by this builder and is not setgid.
    fn file(&self, dir: &Dir, name: &str, content: &[u8], mode: u32, owner: Option<Owner>) -> SysResult<()> {
        let path = dir.child(name);
        let fd = rustix::fs::openat(
            dir.fd(),
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode & 0o777),
        )
        .map_err(|e| SysError::new("create", &path, e))?;
        // Mode first, while root owns the entry (a root without CAP_FOWNER can set it), then the owner.
        if self.needs_chmod(mode, false) {
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
                .map_err(|e| SysError::new("chmod", &path, e))?;
        }
        if let Some(Owner { uid: u, gid: g }) = self.chown_to(owner, None) {
            rustix::fs::fchown(&fd, Some(uid(u)), Some(gid(g)))
                .map_err(|e| SysError::new("chown", &path, e))?;
        }
        std::fs::File::from(fd)
            .write_all(content)
            .map_err(|e| SysError::new("write", &path, e))
    }

    /// `dir/name`, a new directory, opened. `setgid_gid`: the group of `dir` when `dir` is setgid.
    fn mkdir(
        &self,
        dir: &Dir,
        setgid_gid: Option<u32>,
        name: &str,
        mode: u32,
        owner: Option<Owner>,
    ) -> SysResult<Dir> {
        let path = dir.child(name);
        rustix::fs::mkdirat(dir.fd(), name, Mode::from_raw_mode(mode & 0o777))
            .map_err(|e| SysError::new("mkdir", &path, e))?;
        let made = match dir.subdir(name)? {
            Entry::Found(d) => d,
            _ => return Err(SysError::new("open", path, Errno::ELOOP)),
        };
        // Mode, then owner (see `write_new`); chown keeps a directory's setgid bit.
        if self.needs_chmod(mode, setgid_gid.is_some()) {
            rustix::fs::fchmod(made.fd(), Mode::from_raw_mode(mode))
                .map_err(|e| SysError::new("chmod", &path, e))?;
        }
        if let Some(Owner { uid: u, gid: g }) = self.chown_to(owner, setgid_gid) {
            rustix::fs::fchown(made.fd(), Some(uid(u)), Some(gid(g)))
                .map_err(|e| SysError::new("chown", &path, e))?;
        }
        Ok(made)
    }

    /// `dir/name`, a new directory that stays empty here. Its parent was made by this builder and is
    /// not setgid.
    fn leaf_dir(&self, dir: &Dir, name: &str, mode: u32, owner: Option<Owner>) -> SysResult<()> {
        if !self.private {
            return self.mkdir(dir, None, name, mode, owner).map(drop);
        }
        let path = dir.child(name);
        rustix::fs::mkdirat(dir.fd(), name, Mode::from_raw_mode(mode & 0o777))
            .map_err(|e| SysError::new("mkdir", &path, e))?;
        self.set_by_name(dir, name, mode, owner)
    }

    /// Mode, then owner, of an entry of a private tree, by name (`fchmodat` follows a symlink, but
    /// nobody but root can have put one there).
    fn set_by_name(&self, dir: &Dir, name: &str, mode: u32, owner: Option<Owner>) -> SysResult<()> {
        if self.needs_chmod(mode, false) {
            rustix::fs::chmodat(dir.fd(), name, Mode::from_raw_mode(mode), AtFlags::empty())
                .map_err(|e| SysError::new("chmod", dir.child(name), e))?;
        }
        if let Some(Owner { uid: u, gid: g }) = self.chown_to(owner, None) {
            rustix::fs::chownat(
                dir.fd(),
                name,
                Some(uid(u)),
                Some(gid(g)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| SysError::new("chown", dir.child(name), e))?;
        }
        Ok(())
    }

    /// A FIFO with an exact mode and owner. Outside a private tree they are set on the pinned inode (a
    /// FIFO cannot be opened without a reader, and its name could be swapped meanwhile). Its parent was
    /// made by this builder and is not setgid.
    fn fifo(&self, dir: &Dir, name: &str, mode: u32, owner: Option<Owner>) -> SysResult<()> {
        let path = dir.child(name);
        rustix::fs::mknodat(
            dir.fd(),
            name,
            FileType::Fifo,
            Mode::from_raw_mode(mode & 0o777),
            0,
        )
        .map_err(|e| SysError::new("mkfifo", &path, e))?;
        let chown = self.chown_to(owner, None);
        let chmod = self.needs_chmod(mode, false);
        if chown.is_none() && !chmod {
            return Ok(());
        }
        if self.private {
            return self.set_by_name(dir, name, mode, owner);
        }
        let fd = rustix::fs::openat(
            dir.fd(),
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SysError::new("open", &path, e))?;
        // The name may have been swapped since the mknod: change nothing but the FIFO made here.
        let st = rustix::fs::fstat(&fd).map_err(|e| SysError::new("stat", &path, e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Fifo {
            return Err(SysError::new("mkfifo", &path, Errno::EEXIST));
        }
        if chmod {
            chmod_pinned(&fd, mode).map_err(|e| SysError::new("chmod", &path, e))?;
        }
        if let Some(Owner { uid: u, gid: g }) = chown {
            rustix::fs::chownat(&fd, c"", Some(uid(u)), Some(gid(g)), AtFlags::EMPTY_PATH)
                .map_err(|e| SysError::new("chown", &path, e))?;
        }
        Ok(())
    }

    /// The supervise skeleton of RP-11: made before s6-supervise runs (s6-supervise reuses what it finds),
    /// so the runtime user can control the service from the first moment the slot is published.
    fn skeleton(&self, dir: &Dir, ownership: SlotOwnership) -> SysResult<()> {
        let (owner, event, supervise, control) = match ownership {
            SlotOwnership::Root { group } => (
                Some(Owner::new(0, group)),
                ROOT_EVENT_MODE,
                ROOT_SUPERVISE_MODE,
                ROOT_CONTROL_MODE,
            ),
            SlotOwnership::Creator => (None, ROOT_EVENT_MODE, ROOT_SUPERVISE_MODE, ROOT_CONTROL_MODE),
            SlotOwnership::User(owner) => (owner, USER_EVENT_MODE, 0o755, 0o660),
        };
        self.leaf_dir(dir, "event", event, owner)?;
        let sup = self.mkdir(dir, None, "supervise", supervise, owner)?;
        self.leaf_dir(&sup, "event", event, owner)?;
        self.fifo(&sup, "control", control, owner)
    }
}

/// The umask, which `/proc/self/status` reports (Linux 4.7 and later) without changing it: `umask(2)`
/// can only be read by setting it, and another thread could create a file in between.
/// Callers read it once per run and hand it to every [`SlotSpec`] of that run.
pub fn process_umask() -> Option<u32> {
    let fd = rustix::fs::open(
        c"/proc/self/status",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut buf = [0u8; 4096];
    let n = rustix::io::read(&fd, &mut buf).ok()?;
    let status = std::str::from_utf8(&buf[..n]).ok()?;
    let value = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(value.trim(), 8).ok()
}

/// Builds the complete slot under its staging name (RP-11). The caller publishes it; on error the
/// partial staging directory is left for the caller to remove.
fn build_staging(scandir: &Dir, spec: &SlotSpec) -> SysResult<()> {
    let staging = staging_name(spec.profile);
    scandir.delete_tree_if_present(&staging)?;
    let scan = scandir.meta()?;
    let b = Builder::new(spec.ownership, &scan, spec.umask);
    let owner = spec.ownership.files();
    let as_root = spec.scripts_are_roots();
    let setgid_gid = (scan.perm & 0o2000 != 0).then_some(scan.gid);
    let slot = b.mkdir(
        scandir,
        setgid_gid,
        staging.to_str().unwrap_or_default(),
        0o755,
        owner,
    )?;
    b.file(&slot, "type", b"longrun\n", 0o644, owner)?;
    b.file(
        &slot,
        "run",
        render_run(spec.profile, as_root, spec.runtime_user).as_bytes(),
        0o755,
        owner,
    )?;
    b.file(&slot, "finish", render_finish(as_root).as_bytes(), 0o755, owner)?;
    if !spec.start {
        b.file(&slot, "down", b"", 0o644, owner)?;
    }
    b.skeleton(&slot, spec.ownership)?;
    let log = b.mkdir(&slot, None, "log", 0o755, owner)?;
    b.file(
        &log,
        "run",
        render_log_run(spec.profile, as_root, spec.runtime_user).as_bytes(),
        0o755,
        owner,
    )?;
    b.skeleton(&log, spec.ownership)
}

// ---------------------------------------------------------------------------------------------------
// RP-12 publish

/// How a slot of the same name is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// Boot mode: an existing slot is swapped out atomically (`RENAME_EXCHANGE`) and removed.
    Replace,
    /// Runtime registration: an existing slot is an error.
    NoReplace,
}

/// What publishing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    New,
    Replaced,
}

#[derive(Debug)]
pub enum SlotError {
    /// `Publish::NoReplace` and the slot exists.
    Exists,
    Sys(SysError),
}

impl From<SysError> for SlotError {
    fn from(e: SysError) -> Self {
        SlotError::Sys(e)
    }
}

impl std::fmt::Display for SlotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SlotError::Exists => f.write_str("slot exists"),
            SlotError::Sys(e) => e.fmt(f),
        }
    }
}

static FALLBACK_WARNED: AtomicBool = AtomicBool::new(false);

type Exchange<'a> = &'a dyn Fn(&Dir, &OsStr, &OsStr) -> rustix::io::Result<()>;

fn exchange(dir: &Dir, a: &OsStr, b: &OsStr) -> rustix::io::Result<()> {
    rustix::fs::renameat_with(dir.fd(), a, dir.fd(), b, RenameFlags::EXCHANGE)
}

fn rename_noreplace(dir: &Dir, from: &OsStr, to: &OsStr) -> Result<(), SlotError> {
    match rustix::fs::renameat_with(dir.fd(), from, dir.fd(), to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) => Err(SlotError::Exists),
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
            // No RENAME_NOREPLACE here: a plain rename does not replace a non-empty directory (ENOTEMPTY)
            // and a fresh check narrows the window for anything else.
            if dir.stat(to)?.is_some() {
                return Err(SlotError::Exists);
            }
            rustix::fs::renameat(dir.fd(), from, dir.fd(), to).map_err(|e| match e {
                rustix::io::Errno::NOTEMPTY | rustix::io::Errno::EXIST => SlotError::Exists,
                e => SlotError::Sys(SysError::new("rename", dir.child(to), e)),
            })
        }
        Err(e) => Err(SlotError::Sys(SysError::new("rename", dir.child(to), e))),
    }
}

/// Moves the staging slot into place (RP-12). The staging directory is gone afterwards, whatever happened.
fn publish_staging(
    scandir: &Dir,
    report: &Report,
    profile: &str,
    mode: Publish,
    swap: Exchange,
) -> Result<Published, SlotError> {
    let staging = staging_name(profile);
    let target = slot_name(profile);
    let result = (|| {
        // Two rounds at most: the target may appear or vanish between the two renames.
        for _ in 0..2 {
            match rename_noreplace(scandir, &staging, &target) {
                Err(SlotError::Exists) if mode == Publish::Replace => {}
                other => return other.map(|()| Published::New),
            }
            match swap(scandir, &staging, &target) {
                Ok(()) => {
                    // The old slot now sits under the staging name.
                    if let Err(e) = scandir.delete_tree_if_present(&staging) {
                        report.warn_err(&e);
                    }
                    return Ok(Published::Replaced);
                }
                Err(rustix::io::Errno::NOENT) => continue,
                Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
                    return replace_by_moving_aside(scandir, report, profile).map(|()| Published::Replaced);
                }
                Err(e) => return Err(SlotError::Sys(SysError::new("rename", scandir.child(&target), e))),
            }
        }
        Err(SlotError::Sys(SysError::new(
            "rename",
            scandir.child(&target),
            Errno::EAGAIN,
        )))
    })();
    if result.is_err() {
        let _ = scandir.delete_tree_if_present(&staging);
    }
    result
}

/// RP-12's fallback where the filesystem cannot exchange: the old slot is moved aside first, so the window
/// without a slot is one rename long.
fn replace_by_moving_aside(scandir: &Dir, report: &Report, profile: &str) -> Result<(), SlotError> {
    if !FALLBACK_WARNED.swap(true, Ordering::Relaxed) {
        report.warn(format_args!(
            "RENAME_EXCHANGE is not supported in {}; replacing slots by moving the old one aside — continuing",
            display_path(scandir.path())
        ));
    }
    let old = old_name(profile);
    let target = slot_name(profile);
    scandir.delete_tree_if_present(&old)?;
    rustix::fs::renameat(scandir.fd(), &target, scandir.fd(), &old)
        .map_err(|e| SysError::new("rename", scandir.child(&target), e))?;
    rename_noreplace(scandir, &staging_name(profile), &target)?;
    if let Err(e) = scandir.delete_tree_if_present(&old) {
        report.warn_err(&e);
    }
    Ok(())
}

/// Builds and publishes the slot of `spec` (RP-11, RP-12). In a dry run nothing is created; the plan is
/// one `would publish slot …` line.
pub fn install_slot(
    scandir: &Dir,
    report: &Report,
    spec: &SlotSpec,
    mode: Publish,
) -> Result<Published, SlotError> {
    install_slot_with(scandir, report, spec, mode, &exchange)
}

fn install_slot_with(
    scandir: &Dir,
    report: &Report,
    spec: &SlotSpec,
    mode: Publish,
    swap: Exchange,
) -> Result<Published, SlotError> {
    let target = slot_name(spec.profile);
    let exists = scandir.stat(&target)?.is_some();
    if exists && mode == Publish::NoReplace {
        return Err(SlotError::Exists);
    }
    let state = if spec.start { "up" } else { "down" };
    let (detail, planned) = match exists {
        true => (
            format!("({state}, replacing the existing slot)"),
            Published::Replaced,
        ),
        false => (format!("({state})"), Published::New),
    };
    let change = Change::new("publish slot", scandir.child(&target)).detail(detail);
    report.apply(change, planned, || {
        build_and_publish(scandir, report, spec, mode, swap)
    })
}

/// The real run of [`install_slot`]: the staging tree, then the publishing rename.
fn build_and_publish(
    scandir: &Dir,
    report: &Report,
    spec: &SlotSpec,
    mode: Publish,
    swap: Exchange,
) -> Result<Published, SlotError> {
    let mut spec = spec.clone();
    if chown_refused() && spec.ownership.chowns() {
        spec.ownership = SlotOwnership::Creator;
    }
    let mut built = build_staging(scandir, &spec);
    if let Err(e) = &built {
        // Without the right to give entries away a slot owned by root alone is still a working slot (SPEC
        // §0: the boot goes on); only controlling it as the runtime user is lost, which the warning says.
        if spec.ownership.chowns() && note_chown_refusal(report, e, spec.runtime_user) {
            let _ = scandir.delete_tree_if_present(staging_name(spec.profile));
            spec.ownership = SlotOwnership::Creator;
            built = build_staging(scandir, &spec);
        }
    }
    if let Err(e) = built {
        let _ = scandir.delete_tree_if_present(staging_name(spec.profile));
        return Err(SlotError::Sys(e));
    }
    publish_staging(scandir, report, spec.profile, mode, swap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::root::RootPrefix;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::path::Path;

    fn meta(uid: u32, gid: u32) -> crate::guarded::Meta {
        crate::guarded::Meta {
            dev: 0,
            ino: 0,
            uid,
            gid,
            perm: 0o755,
            nlink: 2,
            kind: rustix::fs::FileType::Directory,
            size: 0,
        }
    }

    #[test]
    fn each_ownership_gives_its_owner_and_recognises_its_slots() {
        let root = SlotOwnership::Root { group: 10000 };
        let user = SlotOwnership::User(Some(Owner::new(10000, 10001)));
        assert_eq!(root.files(), Some(Owner::new(0, 0)));
        assert_eq!(user.files(), Some(Owner::new(10000, 10001)));
        assert_eq!(SlotOwnership::User(None).files(), None);
        assert_eq!(SlotOwnership::Creator.files(), None);
        assert!(root.chowns() && user.chowns());
        assert!(!SlotOwnership::User(None).chowns() && !SlotOwnership::Creator.chowns());
        assert!(root.matches(&meta(0, 0)));
        assert!(
            !root.matches(&meta(10000, 10001)),
            "a user-owned slot under the root layout"
        );
        assert!(!root.matches(&meta(0, 10001)) && !root.matches(&meta(10000, 0)));
        assert!(user.matches(&meta(10000, 10001)));
        assert!(!user.matches(&meta(10000, 0)) && !user.matches(&meta(0, 10001)));
        assert!(SlotOwnership::Creator.matches(&meta(123, 456)));
    }

    #[test]
    fn scripts_are_roots_when_root_owns_the_files() {
        let spec = |ownership| SlotSpec {
            profile: "work",
            start: false,
            ownership,
            runtime_user: "hermes",
            umask: Some(0o022),
        };
        assert!(spec(SlotOwnership::Root { group: 1 }).scripts_are_roots());
        assert!(!spec(SlotOwnership::User(Some(Owner::new(10000, 10000)))).scripts_are_roots());
        assert!(spec(SlotOwnership::User(Some(Owner::new(0, 10000)))).scripts_are_roots());
        assert_eq!(spec(SlotOwnership::Creator).scripts_are_roots(), euid() == 0);
    }

    #[test]
    fn the_builder_changes_only_what_creation_did_not_give() {
        let b = Builder {
            euid: 0,
            egid: 0,
            private: true,
            umask: Some(0o022),
        };
        assert!(!b.needs_chmod(0o755, false), "0755 survives umask 022");
        assert!(b.needs_chmod(0o775, false), "umask 022 cuts group write");
        assert!(
            b.needs_chmod(0o3730, false),
            "special bits are dropped at creation"
        );
        assert!(b.needs_chmod(0o755, true), "a setgid parent passes its bit on");
        let unknown = Builder { umask: None, ..b };
        assert!(unknown.needs_chmod(0o755, false));
        assert_eq!(
            b.chown_to(Some(Owner::new(0, 0)), None),
            None,
            "created root:root already"
        );
        assert_eq!(
            b.chown_to(Some(Owner::new(0, 10000)), None),
            Some(Owner::new(0, 10000))
        );
        assert_eq!(
            b.chown_to(Some(Owner::new(0, 10000)), Some(10000)),
            None,
            "the setgid parent gave the group"
        );
        assert_eq!(
            b.chown_to(Some(Owner::new(0, 0)), Some(10000)),
            Some(Owner::new(0, 0))
        );
        assert_eq!(b.chown_to(None, None), None);
    }

    #[test]
    fn a_slot_file_is_created_new_never_through_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open_anchor(&RootPrefix::none(), t.path())
            .unwrap()
            .found()
            .unwrap();
        let b = Builder {
            euid: euid(),
            egid: crate::guarded::egid(),
            private: false,
            umask: None,
        };
        b.file(&d, "run", b"#!/bin/sh\n", 0o755, None).unwrap();
        assert_eq!(std::fs::read(t.path().join("run")).unwrap(), b"#!/bin/sh\n");
        assert_eq!(mode(&t.path().join("run")), 0o755);
        let e = b.file(&d, "run", b"again", 0o755, None).unwrap_err();
        assert_eq!(e.errno, Errno::EEXIST, "{e}");
        let outside = t.path().join("outside");
        std::os::unix::fs::symlink(&outside, t.path().join("type")).unwrap();
        assert!(b.file(&d, "type", b"longrun\n", 0o644, None).is_err());
        assert!(!outside.exists(), "followed a symlink");
    }

    #[test]
    fn current_slots_are_the_gateway_entries_with_profile_names() {
        let t = tempfile::tempdir().unwrap();
        for name in [
            "gateway-default",
            "gateway-work",
            "gateway-Bad Name",
            "gateway-",
            "dashboard",
        ] {
            std::fs::create_dir(t.path().join(name)).unwrap();
        }
        std::fs::create_dir(t.path().join(".gateway-work.tmp.1")).unwrap();
        let d = Dir::open_anchor(&RootPrefix::none(), t.path())
            .unwrap()
            .found()
            .unwrap();
        let got: Vec<String> = current_slots(&d).unwrap().into_iter().collect();
        assert_eq!(got, vec!["default".to_string(), "work".to_string()]);
    }

    #[test]
    fn run_script_for_default_and_named_profiles() {
        assert_eq!(
            render_run("default", false, "hermes"),
            "#!/command/with-contenv sh\nset -e\nexport HOME=/opt/data\ncd /opt/data\n\
             export HERMES_S6_SUPERVISED_CHILD=1\nexport HERMES_SUPERVISED_CHILD=1\n\
             exec hermes gateway run --replace\n"
        );
        let named = render_run("coder", false, "hermes");
        assert!(
            named.ends_with("\nexec hermes -p coder gateway run --replace\n"),
            "{named}"
        );
        let rooted = render_run("coder", true, "agent");
        assert!(
            rooted.ends_with("\nexec /command/s6-setuidgid agent hermes -p coder gateway run --replace\n"),
            "{rooted}"
        );
        assert!(!render_run("default", true, "hermes").contains("-p default"));
        assert!(render_run("default", true, "hermes")
            .ends_with("\nexec /command/s6-setuidgid hermes hermes gateway run --replace\n"));
        assert!(
            rooted.starts_with("#!/command/with-contenv /bin/sh\nset -e\n"),
            "{rooted}"
        );
    }

    #[test]
    fn scripts_are_lf_only_without_bom() {
        for as_root in [false, true] {
            for s in [
                render_run("coder", as_root, "hermes"),
                render_finish(as_root),
                render_log_run("coder", as_root, "hermes"),
            ] {
                assert!(!s.contains('\r'));
                assert!(!s.starts_with('\u{feff}'));
                let shebang = if as_root {
                    "#!/command/with-contenv /bin/sh\n"
                } else {
                    "#!/command/with-contenv sh\n"
                };
                assert!(s.starts_with(shebang), "{s}");
                assert!(s.ends_with('\n'));
            }
        }
    }

    #[test]
    fn log_run_resolves_hermes_home_at_run_time() {
        let user = render_log_run("coder", false, "hermes");
        assert_eq!(
            user,
            "#!/command/with-contenv sh\nset -e\nHERMES_HOME=\"${HERMES_HOME:-/opt/data}\"\n\
             dir=\"$HERMES_HOME/logs/gateways/coder\"\nmkdir -p \"$dir\"\nrm -f \"$dir/lock\"\n\
             exec s6-log 1 n10 s1000000 T \"$dir\"\n"
        );
        assert!(!user.contains("/opt/data/logs"));
        let root = render_log_run("default", true, "hermes");
        assert!(
            root.contains("\n/command/s6-setuidgid hermes mkdir -p \"$dir\"\n"),
            "{root}"
        );
        assert!(
            root.contains("\n/command/s6-setuidgid hermes rm -f \"$dir/lock\"\n"),
            "{root}"
        );
        assert!(root.ends_with("\nexec /command/s6-setuidgid hermes s6-log 1 n10 s1000000 T \"$dir\"\n"));
        assert!(root.contains("$HERMES_HOME/logs/gateways/default"));
        assert!(!root.contains("chown"));
    }

    /// Runs a rendered script with `sh` (the shebang's interpreter) and returns its exit code.
    fn sh_exit(script: &str, arg: &str) -> i32 {
        let body = script
            .trim_start_matches(SHEBANG)
            .trim_start_matches(ROOT_SHEBANG);
        std::process::Command::new("sh")
            .args(["-c", body, "finish", arg])
            .status()
            .unwrap()
            .code()
            .unwrap()
    }

    #[test]
    fn finish_stops_restarts_after_fatal_config_only() {
        let f = render_finish(false);
        assert_eq!(sh_exit(&render_finish(true), "78"), 125);
        // 0 is what hermes-agent exits with when `gateway restart` stops it early: it must come back.
        assert_eq!(sh_exit(&render_finish(true), "0"), 0);
        assert_eq!(sh_exit(&f, "0"), 0);
        assert_eq!(sh_exit(&f, "78"), 125);
        assert_eq!(sh_exit(&f, "1"), 0);
        assert_eq!(sh_exit(&f, "256"), 0);
        assert_eq!(sh_exit(&f, "780"), 0);
    }

    #[test]
    fn leftover_names() {
        assert!(is_leftover_name(b".gateway-x.tmp"));
        assert!(is_leftover_name(b".gateway-x.tmp.old"));
        assert!(is_leftover_name(b".gateway-.tmp"));
        assert!(!is_leftover_name(b"gateway-x"));
        assert!(!is_leftover_name(b".gateway-x"));
        assert!(!is_leftover_name(b".s6-svscan"));
        assert!(!is_leftover_name(b".other-x.tmp"));
    }

    fn scandir(t: &tempfile::TempDir) -> Dir {
        Dir::open_anchor(&RootPrefix::none(), t.path())
            .unwrap()
            .found()
            .unwrap()
    }
    fn spec(profile: &str, start: bool) -> SlotSpec<'_> {
        SlotSpec {
            profile,
            start,
            ownership: SlotOwnership::User(None),
            runtime_user: "hermes",
            umask: process_umask(),
        }
    }
    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn slot_layout_and_modes_are_exact_whatever_the_umask() {
        let t = tempfile::tempdir().unwrap();
        let s = scandir(&t);
        let r = Report::reconcile(false);
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
        let res = install_slot(&s, &r, &spec("coder", false), Publish::Replace);
        nix::sys::stat::umask(old);
        assert_eq!(res.unwrap(), Published::New);
        let slot = t.path().join("gateway-coder");
        let expect: [(&str, u32); 13] = [
            ("", 0o755),
            ("type", 0o644),
            ("run", 0o755),
            ("finish", 0o755),
            ("down", 0o644),
            ("event", 0o3730),
            ("supervise", 0o755),
            ("supervise/event", 0o3730),
            ("supervise/control", 0o660),
            ("log", 0o755),
            ("log/run", 0o755),
            ("log/event", 0o3730),
            ("log/supervise/control", 0o660),
        ];
        for (rel, m) in expect {
            assert_eq!(mode(&slot.join(rel)), m, "{rel}");
        }
        assert!(std::fs::symlink_metadata(slot.join("supervise/control"))
            .unwrap()
            .file_type()
            .is_fifo());
        assert_eq!(std::fs::read(slot.join("type")).unwrap(), b"longrun\n");
        assert_eq!(std::fs::read(slot.join("down")).unwrap(), b"");
        assert!(!slot.join("log/down").exists());
        let mut log_entries: Vec<_> = std::fs::read_dir(slot.join("log"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        log_entries.sort();
        assert_eq!(log_entries, ["event", "run", "supervise"]);
        let names: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [OsString::from("gateway-coder")], "no staging left behind");
    }

    #[test]
    fn started_slot_has_no_down_file() {
        let t = tempfile::tempdir().unwrap();
        let s = scandir(&t);
        install_slot(
            &s,
            &Report::reconcile(false),
            &spec("default", true),
            Publish::Replace,
        )
        .unwrap();
        assert!(!t.path().join("gateway-default/down").exists());
        // Without an explicit owner the scripts are the caller's: root's scripts drop explicitly.
        let expect = if euid() == 0 {
            "\nexec /command/s6-setuidgid hermes hermes gateway run --replace\n"
        } else {
            "\nexec hermes gateway run --replace\n"
        };
        let run = std::fs::read_to_string(t.path().join("gateway-default/run")).unwrap();
        assert!(run.ends_with(expect), "{run}");
    }

    #[test]
    fn existing_slot_is_exchanged_and_old_tree_removed() {
        let t = tempfile::tempdir().unwrap();
        let s = scandir(&t);
        let r = Report::reconcile(false);
        install_slot(&s, &r, &spec("coder", true), Publish::Replace).unwrap();
        std::fs::write(t.path().join("gateway-coder/marker"), b"old").unwrap();
        let ino_before = std::fs::metadata(t.path().join("gateway-coder")).unwrap().ino();
        assert_eq!(
            install_slot(&s, &r, &spec("coder", false), Publish::Replace).unwrap(),
            Published::Replaced
        );
        assert!(t.path().join("gateway-coder/down").exists());
        assert!(!t.path().join("gateway-coder/marker").exists());
        assert_ne!(
            std::fs::metadata(t.path().join("gateway-coder")).unwrap().ino(),
            ino_before
        );
        assert_eq!(
            std::fs::read_dir(t.path()).unwrap().count(),
            1,
            "old tree removed"
        );
        assert_eq!(r.warnings(), 0);
    }

    #[test]
    fn exchange_fallback_moves_the_old_slot_aside_and_warns_once() {
        let t = tempfile::tempdir().unwrap();
        let s = scandir(&t);
        let r = Report::reconcile(false);
        let unsupported = |_: &Dir, _: &OsStr, _: &OsStr| Err(rustix::io::Errno::INVAL);
        install_slot(&s, &r, &spec("a", true), Publish::Replace).unwrap();
        install_slot(&s, &r, &spec("b", true), Publish::Replace).unwrap();
        std::fs::write(t.path().join("gateway-a/marker"), b"old").unwrap();
        FALLBACK_WARNED.store(false, Ordering::Relaxed);
        for p in ["a", "b"] {
            assert_eq!(
                install_slot_with(&s, &r, &spec(p, false), Publish::Replace, &unsupported).unwrap(),
                Published::Replaced
            );
            assert_eq!(r.warnings(), 1, "announced at its first use, and only then");
        }
        assert!(t.path().join("gateway-a/down").exists());
        assert!(!t.path().join("gateway-a/marker").exists());
        assert!(t.path().join("gateway-b/down").exists());
        assert_eq!(
            std::fs::read_dir(t.path()).unwrap().count(),
            2,
            "no .old or staging left"
        );
        assert_eq!(r.warnings(), 1, "the fallback is announced once");
    }

    #[test]
    fn publishing_without_replace_never_replaces_what_appeared_meanwhile() {
        // The target appears after install_slot's check: the publishing rename itself must refuse.
        let t = tempfile::tempdir().unwrap();
        let s = scandir(&t);
        let r = Report::reconcile(false);
        std::fs::create_dir(t.path().join(".gateway-x.tmp")).unwrap();
        std::fs::create_dir(t.path().join("gateway-x")).unwrap();
        std::fs::write(t.path().join("gateway-x/marker"), b"theirs").unwrap();
        assert!(matches!(
            publish_staging(&s, &r, "x", Publish::NoReplace, &exchange),
            Err(SlotError::Exists)
        ));
        assert_eq!(
            std::fs::read(t.path().join("gateway-x/marker")).unwrap(),
            b"theirs"
        );
        assert!(!t.path().join(".gateway-x.tmp").exists(), "staging left behind");
        assert_eq!(SlotError::Exists.to_string(), "slot exists");
    }

    #[test]
    fn a_slot_in_a_setgid_scan_directory_gets_exactly_its_modes() {
        let t = tempfile::tempdir().unwrap();
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o2755)).unwrap();
        let s = scandir(&t);
        let r = Report::reconcile(false);
        install_slot(&s, &r, &spec("x", false), Publish::Replace).unwrap();
        // The kernel passes the setgid bit on to new directories; the slot must not keep it.
        assert_eq!(mode(&t.path().join("gateway-x")), 0o755);
        assert_eq!(mode(&t.path().join("gateway-x/log")), 0o755);
    }

    #[test]
    fn the_umask_is_read_without_changing_it() {
        let u = process_umask().expect("Linux 4.7+ reports Umask: in /proc/self/status");
        assert!(u <= 0o777, "{u:o}");
        assert_eq!(process_umask(), Some(u));
    }

    #[test]
    fn a_fifo_the_umask_leaves_alone_gets_its_mode_at_creation() {
        let t = tempfile::tempdir().unwrap();
        let d = scandir(&t);
        let umask = process_umask().unwrap();
        let b = Builder {
            euid: euid(),
            egid: crate::guarded::egid(),
            private: false,
            umask: Some(umask),
        };
        // A mode with no bit the umask cuts: nothing is changed after mknod.
        let m = 0o666 & !umask;
        b.fifo(&d, "control", m, None).unwrap();
        let p = t.path().join("control");
        assert!(std::fs::symlink_metadata(&p).unwrap().file_type().is_fifo());
        assert_eq!(mode(&p), m);
    }

    #[test]
    fn no_replace_refuses_any_existing_entry() {
        let t = tempfile::tempdir().unwrap();
        let s = scandir(&t);
        let r = Report::reconcile(false);
        std::os::unix::fs::symlink("/nonexistent", t.path().join("gateway-x")).unwrap();
        assert!(matches!(
            install_slot(&s, &r, &spec("x", true), Publish::NoReplace),
            Err(SlotError::Exists)
        ));
        assert!(t.path().join("gateway-x").is_symlink());
        assert!(!t.path().join(".gateway-x.tmp").exists());
    }

    #[test]
    fn stale_staging_is_replaced_and_failures_clean_up() {
        let t = tempfile::tempdir().unwrap();
        let s = scandir(&t);
        let r = Report::reconcile(false);
        std::fs::create_dir_all(t.path().join(".gateway-x.tmp/junk/deeper")).unwrap();
        install_slot(&s, &r, &spec("x", true), Publish::NoReplace).unwrap();
        assert!(!t.path().join("gateway-x/junk").exists());
        assert!(!t.path().join(".gateway-x.tmp").exists());
    }

    #[test]
    fn dry_run_creates_nothing() {
        let t = tempfile::tempdir().unwrap();
        let s = scandir(&t);
        let r = Report::reconcile(true);
        assert_eq!(
            install_slot(&s, &r, &spec("x", true), Publish::Replace).unwrap(),
            Published::New
        );
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
        assert_eq!(r.changes(), 1);
    }
}
