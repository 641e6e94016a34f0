//! `reconcile-profiles` (SPEC section 4): at boot, one gateway slot per profile in the s6 scan directory,
//! started when the profile's gateway was running before the container stopped; and the slot steps that
//! the run-time commands ([`crate::registration`]) and the registrar share.
//!
//! Each step reads as its requirement, in SPEC order. System effects go through [`Dir`] and
//! [`crate::s6_slot`], which are dry-run aware, so `--dry-run` follows the same path and only prints.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{FileType, Mode, OFlags};

use crate::accounts::{lookup, Account};
use crate::atomic::{create_exclusive, Created};
use crate::boot_log::Action;
use crate::chown_refusal::{note_chown_refusal, owner_for};
use crate::display::display_path;
use crate::error::SysError;
use crate::gateway_state::{
    display_prior, is_running, read_prior_exit, read_prior_state, PriorExit, PriorState, STATE_FILE,
};
use crate::guarded::{euid, Dir, Entry};
use crate::owner::Owner;
use crate::profiles::{
    is_dashboard_container, is_legacy_gateway_run, list_profiles, multiplex_flag, read_container_argv,
    truthy_t2, DEFAULT_PROFILE,
};
use crate::report::Report;
use crate::requests::{unregister_requested, UNREGISTER_MARKER};
use crate::root::RootPrefix;
use crate::s6_command::run_tool;
use crate::s6_slot::{
    install_slot, is_leftover_name, old_name, slot_name, Publish, SlotError, SlotOwnership, SlotSpec,
};

pub const ENV_SCANDIR: &str = "S6_PROFILE_GATEWAY_SCANDIR";
pub const DEFAULT_SCANDIR: &str = "/run/service";
pub const ENV_MULTIPLEX: &str = "GATEWAY_MULTIPLEX_PROFILES";
pub const ENV_NO_SUPERVISE: &str = "HERMES_GATEWAY_NO_SUPERVISE";
/// `HERMES_GATEWAY_SLOTS`: `user-owned` restores RP-01/RP-11 ownership (B15); anything else is root-owned.
pub const ENV_SLOTS: &str = "HERMES_GATEWAY_SLOTS";
/// `HERMES_GATEWAY_LIMIT`: the most gateway slots (the root profile's included) the container keeps. Every
/// slot costs root about 48 KiB of `/run` and two supervisors, and the runtime user makes a profile with
/// one `mkdir`; the cap keeps that from becoming root's problem.
pub const ENV_SLOT_LIMIT: &str = "HERMES_GATEWAY_LIMIT";
/// The cap when `HERMES_GATEWAY_LIMIT` is unset.
pub const DEFAULT_SLOT_LIMIT: usize = 64;
const MAX_SLOT_LIMIT: usize = 10_000;
/// Serialises everything that changes slots (boot, the registrar, root's register/unregister): a slot is
/// built under a fixed staging name, so two builders must never overlap. s6-svscan ignores dot-names.
pub const LOCK_NAME: &str = ".profile-registrar.lock";

/// Runtime files a previous container left behind (RP-08).
const STALE_FILES: [&str; 2] = ["gateway.pid", "processes.json"];

/// Who owns the scan directory and the gateway slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotMode {
    /// The default: the scan directory and every slot are root's; the runtime user controls its gateways
    /// through the slots' supervise skeleton and registers them through the registrar.
    RootOwned,
    /// `HERMES_GATEWAY_SLOTS=user-owned`: RP-01 and RP-11 as upstream; the runtime user can gain root.
    UserOwned,
}

impl SlotMode {
    /// The value of `HERMES_GATEWAY_SLOTS` (trimmed, case-insensitive).
    pub fn from_value(v: Option<&OsStr>) -> SlotMode {
        match v.and_then(|v| v.to_str()).map(|v| v.trim().to_ascii_lowercase()) {
            Some(v) if v == "user-owned" => SlotMode::UserOwned,
            _ => SlotMode::RootOwned,
        }
    }
}

/// Where things are, from the environment (in-container paths), and who owns the slots.
#[derive(Debug, Clone)]
pub struct Places {
    pub scandir: PathBuf,
    pub home: PathBuf,
    pub slot_mode: SlotMode,
    /// The most gateway slots ([`ENV_SLOT_LIMIT`]).
    pub slot_limit: usize,
    /// Why `HERMES_GATEWAY_LIMIT` was not used, for one warning by the long-running programs.
    pub slot_limit_error: Option<String>,
    /// [`ENV_MULTIPLEX`] as given.
    pub multiplex: Option<OsString>,
    /// [`ENV_NO_SUPERVISE`] as given.
    pub no_supervise: Option<OsString>,
}

impl Places {
    pub fn from_env(env: &crate::config::Env) -> Places {
        let pick = |var: &str, default: &str| {
            env.non_empty(var)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(default))
        };
        let (slot_limit, slot_limit_error) = match parse_slot_limit(env.get(ENV_SLOT_LIMIT)) {
            Ok(n) => (n, None),
            Err(why) => (DEFAULT_SLOT_LIMIT, Some(why)),
        };
        Places {
            scandir: pick(ENV_SCANDIR, DEFAULT_SCANDIR),
            home: crate::data_home::of(env),
            slot_mode: SlotMode::from_value(env.get(ENV_SLOTS)),
            slot_limit,
            slot_limit_error,
            multiplex: env.get(ENV_MULTIPLEX).map(OsStr::to_os_string),
            no_supervise: env.get(ENV_NO_SUPERVISE).map(OsStr::to_os_string),
        }
    }

    /// Warns once that `HERMES_GATEWAY_LIMIT` was not usable.
    pub fn warn_about_limit(&self, report: &Report) {
        if let Some(why) = &self.slot_limit_error {
            report.warn(format_args!("{why}; using {DEFAULT_SLOT_LIMIT} — continuing"));
        }
    }

    /// The refusal for `profile` when `count` slots exist and it has none: one line naming the cap.
    pub fn over_limit(&self, profile: &str, count: usize) -> Option<String> {
        (count >= self.slot_limit).then(|| {
            format!(
                "no gateway slot for profile {profile}: the container has {count} of at most {} \
                 ({ENV_SLOT_LIMIT}; raise it to run more profile gateways)",
                self.slot_limit
            )
        })
    }
}

/// `HERMES_GATEWAY_LIMIT`: unset or empty is the default; otherwise a whole number from 1 to 10000.
pub fn parse_slot_limit(v: Option<&OsStr>) -> Result<usize, String> {
    let Some(v) = v.filter(|v| !v.is_empty()) else {
        return Ok(DEFAULT_SLOT_LIMIT);
    };
    let text = v.to_str().map(str::trim).unwrap_or("");
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_SLOT_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!(
            "{ENV_SLOT_LIMIT}={} is not a number from 1 to {MAX_SLOT_LIMIT}",
            crate::display::display_bytes(v.as_bytes())
        )),
    }
}

/// `reconcile: error: <msg>` on stderr (the runtime commands' fatal lines).
pub(crate) fn error_line(msg: impl std::fmt::Display) {
    let line = format!("reconcile: error: {msg}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

pub(crate) fn resolve_user(root: &RootPrefix, user: &str) -> Option<Account> {
    match lookup(root, user) {
        Ok(Some(a)) => Some(a),
        Ok(None) => {
            error_line(format_args!("runtime user {user} not found in /etc/passwd"));
            None
        }
        Err(e) => {
            error_line(&e);
            None
        }
    }
}

/// Warns about `e`, except that a refused chown is folded into the one warning per process that says
/// the runtime user cannot control gateways ([`note_chown_refusal`]).
fn warn_sys(report: &Report, e: &SysError, user: &str) {
    if !note_chown_refusal(report, e, user) {
        report.warn_err(e);
    }
}

/// The owners of the slots this process builds.
pub fn ownership_for(account: &Account, mode: SlotMode) -> SlotOwnership {
    if euid() != 0 {
        return SlotOwnership::User(None);
    }
    match mode {
        SlotMode::RootOwned => SlotOwnership::Root { group: account.gid },
        SlotMode::UserOwned => SlotOwnership::User(Some(Owner::new(account.uid, account.gid))),
    }
}

/// The slot lock for a run that changes slots; a dry run changes nothing and locks nothing (CM-11).
pub(crate) fn lock_for_change(
    report: &Report,
    scandir: &Dir,
) -> Result<Option<rustix::fd::OwnedFd>, SysError> {
    if report.dry_run() {
        return Ok(None);
    }
    lock_scandir(scandir).map(Some)
}

/// Takes the slot lock of [`LOCK_NAME`] (blocking); released when the descriptor is dropped, also when
/// the process dies.
pub fn lock_scandir(scandir: &Dir) -> Result<rustix::fd::OwnedFd, SysError> {
    let path = scandir.child(LOCK_NAME);
    let fd = rustix::fs::openat(
        scandir.fd(),
        LOCK_NAME,
        // Read-only: flock needs no more, and with user-owned slots the runtime user opens the file root
        // created.
        OFlags::RDONLY
            | OFlags::CREATE
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | OFlags::NONBLOCK
            | OFlags::NOCTTY,
        Mode::from_raw_mode(0o644),
    )
    .map_err(|e| SysError::new("open", &path, e))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| SysError::new("stat", &path, e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(SysError::new("lock", &path, nix::errno::Errno::EINVAL));
    }
    rustix::fs::flock(&fd, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| SysError::new("lock", &path, e))?;
    Ok(fd)
}

/// The profile directory of `profile` (H for the root profile), opened without following symlinks.
/// `Ok(None)`: absent, or not a directory.
pub fn open_profile_dir(root: &RootPrefix, home: &Path, profile: &str) -> Result<Option<Dir>, SysError> {
    let h = match Dir::open_anchor(root, home)? {
        Entry::Found(d) => d,
        Entry::Symlink => {
            return Err(SysError::new("open", home, nix::errno::Errno::ELOOP));
        }
        _ => return Ok(None),
    };
    if profile == DEFAULT_PROFILE {
        return Ok(Some(h));
    }
    let profiles = match h.subdir("profiles")? {
        Entry::Found(d) => d,
        Entry::Symlink => {
            return Err(SysError::new(
                "open",
                h.child("profiles"),
                nix::errno::Errno::ELOOP,
            ))
        }
        _ => return Ok(None),
    };
    match profiles.subdir(profile)? {
        Entry::Found(d) => Ok(Some(d)),
        Entry::Symlink => Err(SysError::new(
            "open",
            profiles.child(profile),
            nix::errno::Errno::ELOOP,
        )),
        _ => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------------------
// Boot mode

/// Boot mode (RP-01 … RP-17); returns the exit code.
pub fn run_boot(root: &RootPrefix, report: &Report, user: &str, places: &Places) -> u8 {
    let Some(account) = resolve_user(root, user) else {
        return 1;
    };
    let owner = owner_for(&account);
    if places.slot_mode == SlotMode::UserOwned {
        report.warn(format_args!(
            "{ENV_SLOTS}=user-owned: the scan directory and the gateway slots are writable by {}, and \
             s6-supervise runs their scripts as root, so {} can gain root — continuing",
            account.name, account.name
        ));
    }
    let ownership = ownership_for(&account, places.slot_mode);
    let scandir = prepare_scandir(
        root,
        report,
        &places.scandir,
        places.slot_mode,
        owner,
        &account.name,
    );

    let argv = read_container_argv(root);
    if is_dashboard_container(&argv) {
        report.info("skipping (dashboard container — does not need per-profile gateways)");
        return 0;
    }
    let _lock = match scandir.as_ref().map(|s| lock_for_change(report, s)) {
        Some(Ok(fd)) => fd,
        Some(Err(e)) => {
            report.warn_err(&e);
            None
        }
        None => None,
    };

    let home = open_home(root, report, &places.home);
    let multiplex = multiplex_flag(places.multiplex.as_deref(), home.as_ref(), report);
    let migrated = home.as_ref().is_some_and(|h| {
        migrate_legacy_gateway_run(h, report, &argv, places.no_supervise.as_deref(), &account)
    });

    let mut actions = Vec::new();
    // RP-08: the root profile, always.
    let prior = if migrated {
        Some(PriorState::Text("running".to_string()))
    } else {
        home.as_ref().and_then(|h| read_prior_state(h, report))
    };
    let prior_exit = home.as_ref().map(read_prior_exit).unwrap_or(PriorExit::Unknown);
    if let Some(h) = &home {
        remove_stale_runtime_files(h, report);
    }
    let started = is_running(&prior);
    let default = Action {
        profile: DEFAULT_PROFILE.to_string(),
        prior,
        started,
        prior_exit,
    };
    let default_unregistered = home
        .as_ref()
        .is_some_and(|h| unregistered(h, report, DEFAULT_PROFILE));
    let how = SlotContext {
        ownership,
        user: &account.name,
        umask: crate::s6_slot::process_umask(),
    };
    if !default_unregistered && publish(scandir.as_ref(), report, &default, &how) {
        actions.push(default);
    }

    // RP-09: named profiles, in name order, up to the slot cap.
    places.warn_about_limit(report);
    if let Some(h) = &home {
        let mut named = Vec::new();
        for p in list_profiles(h, report) {
            if unregistered(&p.dir, report, &p.name) {
                continue;
            }
            if let Some(why) = places.over_limit(&p.name, actions.len() + named.len()) {
                report.warn(format_args!("{why} — continuing"));
                continue;
            }
            let prior = read_prior_state(&p.dir, report);
            let action = Action {
                started: !multiplex && is_running(&prior),
                prior,
                prior_exit: read_prior_exit(&p.dir),
                profile: p.name,
            };
            remove_stale_runtime_files(&p.dir, report);
            named.push(action);
        }
        let published = publish_all(scandir.as_ref(), report, &named, &how);
        actions.extend(
            named
                .into_iter()
                .zip(published)
                .filter_map(|(a, ok)| ok.then_some(a)),
        );
        crate::boot_log::append(h, report, &actions, &account);
    }
    0
}

/// Fewer slots than this are built on this thread alone: starting a worker costs more than it saves.
const PARALLEL_FROM: usize = 4;

/// Builds and publishes the slots of `actions` (RP-11, RP-12), on as many threads as there are CPUs (at
/// most four): slots are independent of each other and their cost is system calls, so a container start
/// with hundreds of profiles keeps every core busy. Report lines come out in `actions`' order; whether
/// each slot was published is returned in the same order.
fn publish_all(scandir: Option<&Dir>, report: &Report, actions: &[Action], how: &SlotContext) -> Vec<bool> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get().min(4))
        .unwrap_or(1);
    let Some(scandir) = scandir else {
        return vec![false; actions.len()];
    };
    // A dry run's plan lines would interleave.
    if workers < 2 || actions.len() < PARALLEL_FROM || report.dry_run() {
        return actions
            .iter()
            .map(|a| publish(Some(scandir), report, a, how))
            .collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::OnceLock<Result<(), ()>>> =
        (0..actions.len()).map(|_| std::sync::OnceLock::new()).collect();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(a) = actions.get(i) else { break };
                let _ = results[i].set(install(scandir, report, a, how));
            });
        }
    });
    actions
        .iter()
        .zip(results)
        .map(|(a, r)| {
            let ok = r.get().is_some_and(|r| r.is_ok());
            if ok {
                report_published(report, a);
            }
            ok
        })
        .collect()
}

/// Whether `unregister` asked to keep this profile without a slot; says so once when it did.
fn unregistered(dir: &Dir, report: &Report, profile: &str) -> bool {
    match unregister_requested(dir) {
        Ok(false) => false,
        Ok(true) => {
            report.info(format_args!(
                "skipping profile {profile}: unregistered on request ({} exists; `register {profile}` \
                 withdraws it)",
                display_path(&dir.child(UNREGISTER_MARKER))
            ));
            true
        }
        Err(e) => {
            report.warn_err(&e);
            false
        }
    }
}

/// RP-01: sweep leftovers of interrupted builds. With user-owned slots, hand the scan directory and
/// s6-svscan's control FIFO and lock to the runtime user (B15: it registers slots itself). With root-owned
/// slots, make sure none of them is the runtime user's or writable by it.
fn prepare_scandir(
    root: &RootPrefix,
    report: &Report,
    path: &Path,
    mode: SlotMode,
    owner: Option<Owner>,
    user: &str,
) -> Option<Dir> {
    let scandir = match Dir::open_anchor(root, path) {
        Ok(Entry::Found(d)) => d,
        Ok(Entry::Symlink) => {
            report.warn_refusing("prepare", path);
            return None;
        }
        Ok(Entry::Missing) => {
            report.warn_err(&SysError::new("open", path, nix::errno::Errno::ENOENT));
            return None;
        }
        Ok(Entry::Other(_)) => {
            report.warn_err(&SysError::new("open", path, nix::errno::Errno::ENOTDIR));
            return None;
        }
        Err(e) => {
            report.warn_err(&e);
            return None;
        }
    };
    match scandir.list() {
        Ok(entries) => {
            for (name, _) in entries {
                if is_leftover_name(name.as_bytes()) {
                    if let Err(e) = scandir.remove_tree(report, &name) {
                        report.warn_err(&e);
                    }
                }
            }
        }
        Err(e) => report.warn_err(&e),
    }
    let Some(user_owner) = owner else {
        return Some(scandir);
    };
    let owner = match mode {
        SlotMode::UserOwned => user_owner,
        SlotMode::RootOwned => Owner::ROOT,
    };
    if let Err(e) = scandir.chown_self(report, owner) {
        warn_sys(report, &e, user);
    }
    if mode == SlotMode::RootOwned {
        let result = scandir.meta().and_then(|m| {
            if m.perm & 0o022 != 0 {
                scandir.chmod_self(report, m.perm & !0o022).map(|_| ())
            } else {
                Ok(())
            }
        });
        if let Err(e) = result {
            report.warn_err(&e);
        }
    }
    match scandir.subdir(".s6-svscan") {
        Ok(Entry::Found(ctl)) => {
            if mode == SlotMode::RootOwned {
                if let Err(e) = ctl.chown_self(report, owner) {
                    warn_sys(report, &e, user);
                }
            }
            for name in ["control", "lock"] {
                let result = ctl.stat(name).and_then(|m| match m {
                    Some(m) if !m.is_symlink() => {
                        ctl.chown_entry(report, OsStr::new(name), &m, owner, user_owner.uid)
                    }
                    Some(_) => {
                        report.warn_refusing("chown", &ctl.child(name));
                        Ok(false)
                    }
                    None => Ok(false),
                });
                if let Err(e) = result {
                    warn_sys(report, &e, user);
                }
            }
        }
        Ok(Entry::Symlink) => report.warn_refusing("chown", &scandir.child(".s6-svscan")),
        Ok(_) => {}
        Err(e) => report.warn_err(&e),
    }
    Some(scandir)
}

fn open_home(root: &RootPrefix, report: &Report, path: &Path) -> Option<Dir> {
    match Dir::open_anchor(root, path) {
        Ok(Entry::Found(d)) => Some(d),
        Ok(Entry::Symlink) => {
            report.warn_refusing("reconcile", path);
            None
        }
        Ok(Entry::Missing) => {
            report.warn_err(&SysError::new("open", path, nix::errno::Errno::ENOENT));
            None
        }
        Ok(Entry::Other(_)) => {
            report.warn_err(&SysError::new("open", path, nix::errno::Errno::ENOTDIR));
            None
        }
        Err(e) => {
            report.warn_err(&e);
            None
        }
    }
}

/// RP-05: a container started with the legacy `gateway run` command wants its gateway supervised and
/// running. Returns whether the migration applies (the default slot then starts).
fn migrate_legacy_gateway_run(
    home: &Dir,
    report: &Report,
    argv: &[Vec<u8>],
    no_supervise: Option<&OsStr>,
    account: &Account,
) -> bool {
    if truthy_t2(no_supervise) || !is_legacy_gateway_run(argv) {
        return false;
    }
    match home.stat(STATE_FILE) {
        Ok(None) => {}
        Ok(Some(_)) => return false,
        Err(e) => {
            report.warn_err(&e);
            return false;
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let content = format!(
        "{{\"gateway_state\":\"running\",\"desired_state\":\"running\",\"timestamp\":{now},\"migrated_from\":\"legacy-container-cmd\"}}\n"
    );
    let create = |owner| {
        create_exclusive(
            home,
            report,
            OsStr::new(STATE_FILE),
            content.as_bytes(),
            0o644,
            owner,
        )
    };
    let mut result = create(owner_for(account));
    if let Err(e) = &result {
        if note_chown_refusal(report, e, &account.name) {
            result = create(None);
        }
    }
    match result {
        Ok(Created::Created) => true,
        // Written meanwhile by someone else: that file is the truth.
        Ok(Created::Existed) => false,
        Err(e) => {
            report.warn_err(&e);
            true
        }
    }
}

/// RP-08: `gateway.pid` and `processes.json` of a previous container describe processes that are gone.
fn remove_stale_runtime_files(dir: &Dir, report: &Report) {
    for name in STALE_FILES {
        if let Err(e) = dir.unlink(report, name) {
            report.warn_err(&e);
        }
    }
}

/// Publishes one boot-mode slot and prints its RP-17 line; false when it could not be published.
/// What every slot of one boot run shares; the umask is read once for all of them.
struct SlotContext<'a> {
    ownership: SlotOwnership,
    user: &'a str,
    umask: Option<u32>,
}

fn publish(scandir: Option<&Dir>, report: &Report, action: &Action, how: &SlotContext) -> bool {
    let Some(scandir) = scandir else {
        return false;
    };
    let ok = install(scandir, report, action, how).is_ok();
    if ok {
        report_published(report, action);
    }
    ok
}

/// Builds and publishes one slot; a failure is reported here, success by the caller.
fn install(scandir: &Dir, report: &Report, action: &Action, how: &SlotContext) -> Result<(), ()> {
    let spec = SlotSpec {
        profile: &action.profile,
        start: action.started,
        ownership: how.ownership,
        runtime_user: how.user,
        umask: how.umask,
    };
    match install_slot(scandir, report, &spec, Publish::Replace) {
        Ok(_) => Ok(()),
        Err(SlotError::Exists) => Err(()),
        Err(SlotError::Sys(e)) => {
            report.warn_err(&e);
            Err(())
        }
    }
}

fn report_published(report: &Report, action: &Action) {
    report.info(format_args!(
        "profile={} prior_state={} action={}",
        action.profile,
        display_prior(&action.prior),
        action.verb()
    ));
}

// ---------------------------------------------------------------------------------------------------
// Runtime registration (RP-18, RP-19)

const SVSCANCTL_LIMIT: Duration = Duration::from_secs(5);
const SVC_LIMIT: Duration = Duration::from_secs(5);
const SVWAIT_LIMIT: Duration = Duration::from_secs(15);
const SVOK_POLL: Duration = Duration::from_millis(50);
const SVOK_LIMIT: Duration = Duration::from_secs(5);

/// `register`/`unregister` gave up waiting for the registrar.
pub const EXIT_TIMEOUT: u8 = 4;

pub(crate) fn open_scandir(root: &RootPrefix, path: &Path) -> Result<Option<Dir>, String> {
    match Dir::open_anchor(root, path) {
        Ok(Entry::Found(d)) => Ok(Some(d)),
        Ok(Entry::Missing) => Ok(None),
        Ok(Entry::Symlink) => Err(format!(
            "refusing to use symlinked scan directory {}",
            display_path(path)
        )),
        Ok(Entry::Other(_)) => Err(SysError::new("open", path, nix::errno::Errno::ENOTDIR).to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The host path of a scandir entry, for the s6 tools (which run on the real filesystem).
pub(crate) fn host(root: &RootPrefix, p: &Path) -> OsString {
    root.path(p).into_os_string()
}

/// `s6-svscanctl -a <S>`: have s6-svscan look for new slots now.
pub(crate) fn rescan(root: &RootPrefix, scan: &Path) -> crate::s6_command::ToolResult {
    let scan = host(root, scan);
    run_tool(root, "s6-svscanctl", &[OsStr::new("-a"), &scan], SVSCANCTL_LIMIT)
}

pub(crate) fn warn_tool(report: &Report, what: &str, r: &crate::s6_command::ToolResult) {
    report.warn(format_args!("{what} failed: {} — continuing", r.describe()));
}

/// The RP-19 sequence for a set of slots at once: stop them, wait until they are down, move them out of
/// the scan's sight, have s6-svscan drop their supervisors, wait until those are gone, remove the trees.
/// Each failed s6 step warns and the sequence continues. Returns, per slot that existed, whether it was
/// removed.
pub(crate) fn retire_slots(
    root: &RootPrefix,
    report: &Report,
    scandir: &Dir,
    scan_path: &Path,
    profiles: &[String],
) -> Vec<(String, Result<(), SysError>)> {
    let mut out = Vec::new();
    // (profile, supervised directory?) of each slot present.
    let mut present = Vec::new();
    for p in profiles {
        match scandir.stat(slot_name(p)) {
            Ok(Some(m)) => present.push((p.clone(), m.is_dir())),
            Ok(None) => {}
            Err(e) => out.push((p.clone(), Err(e))),
        }
    }
    // The s6 tools resolve paths by name: only a real directory is handed to them, never a symlink
    // planted in the scan directory.
    let supervised: Vec<(String, OsString)> = present
        .iter()
        .filter(|(_, dir)| *dir)
        .map(|(p, _)| (p.clone(), host(root, &scandir.child(slot_name(p)))))
        .collect();
    for (p, slot) in &supervised {
        let r = run_tool(root, "s6-svc", &[OsStr::new("-d"), slot], SVC_LIMIT);
        if !r.success() {
            warn_tool(
                report,
                &format!("s6-svc -d {}", display_path(&scandir.child(slot_name(p)))),
                &r,
            );
        }
    }
    if !supervised.is_empty() {
        let mut args: Vec<&OsStr> = vec![OsStr::new("-D"), OsStr::new("-t"), OsStr::new("10000")];
        args.extend(supervised.iter().map(|(_, s)| s.as_os_str()));
        let r = run_tool(root, "s6-svwait", &args, SVWAIT_LIMIT);
        if !r.success() {
            let first = display_path(&scandir.child(slot_name(&supervised[0].0)));
            let what = if supervised.len() == 1 {
                format!("s6-svwait -D {first}")
            } else {
                format!("s6-svwait -D {first} (and {} more)", supervised.len() - 1)
            };
            warn_tool(report, &what, &r);
        }
    }
    // Out of the scan's sight before anything is removed, so no rescan can supervise a partial slot.
    let mut moved = Vec::new();
    for (p, was_dir) in &present {
        let (name, old) = (slot_name(p), old_name(p));
        let result = scandir.remove_tree(report, &old).map(|_| ()).and_then(|()| {
            rustix::fs::renameat(scandir.fd(), &name, scandir.fd(), &old)
                .map_err(|e| SysError::new("rename", scandir.child(&name), e))
        });
        match result {
            Ok(()) => moved.push((p.clone(), *was_dir)),
            Err(e) => out.push((p.clone(), Err(e))),
        }
    }
    if moved.is_empty() {
        return out;
    }
    let scan = host(root, scan_path);
    let r = run_tool(root, "s6-svscanctl", &[OsStr::new("-an"), &scan], SVSCANCTL_LIMIT);
    if !r.success() {
        warn_tool(
            report,
            &format!("s6-svscanctl -an {}", display_path(scan_path)),
            &r,
        );
    }
    let deadline = std::time::Instant::now() + SVOK_LIMIT;
    let mut waiting: Vec<&String> = moved.iter().filter(|(_, d)| *d).map(|(p, _)| p).collect();
    while !waiting.is_empty() {
        // s6-svok: 0 supervised, 1 not supervised, anything else an error.
        waiting.retain(|p| {
            let old_host = host(root, &scandir.child(old_name(p)));
            run_tool(root, "s6-svok", &[&old_host], SVOK_LIMIT).code() != Some(1)
        });
        if waiting.is_empty() {
            break;
        }
        if std::time::Instant::now() >= deadline {
            for p in &waiting {
                report.warn(format_args!(
                    "s6-supervise of {} did not exit within 5 s — continuing",
                    display_path(&scandir.child(old_name(p)))
                ));
            }
            break;
        }
        std::thread::sleep(SVOK_POLL);
    }
    for (p, _) in moved {
        let result = scandir.remove_tree(report, old_name(&p)).map(|_| ());
        out.push((p, result));
    }
    out
}
