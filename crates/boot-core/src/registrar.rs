//! The profile registrar (`reconcile-profiles watch`): a root service that keeps the gateway slots in the
//! scan directory equal to the profiles on the volume, so the runtime user never needs to write the scan
//! directory — whose `run` scripts s6-supervise executes as root.
//!
//! Desired set: the root profile unless `H` holds an unregister request, plus every profile of
//! `H/profiles` that passes RP-09 and holds no request ([`UNREGISTER_MARKER`]). Every pass is a full,
//! level-triggered comparison with the `gateway-*` entries of the scan directory; inotify (on `H`,
//! `H/profiles` and each profile directory, watched through the descriptors the scan opened, never by a
//! name that could be swapped) only decides *when* a pass runs. A pass also runs every 30 s and after an
//! inotify queue overflow, because some bind mounts deliver no events. New slots are published down
//! (RP-11, RP-12, one atomic rename); removed ones go through RP-19. Every change is one `reconcile:` line.
//!
//! The runtime user's `register`/`unregister` become requests: they withdraw or record the unregister
//! marker in the profile directory (which the runtime user owns; root only tests for the entry's
//! existence, without following symlinks) and wait for the registrar to act.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

use crate::accounts::{lookup, Account};
use crate::display::display_path;
use crate::guarded::{euid, Dir, Entry};
use crate::profiles::{is_dashboard_container, read_container_argv, scan_profiles, Scanned, DEFAULT_PROFILE};
use crate::reconcile::{error_line, lock_scandir, open_scandir, ownership_for, rescan, retire_slots, Places};
use crate::report::Report;
use crate::requests::{unregister_requested, UNREGISTER_MARKER};
use crate::root::RootPrefix;
use crate::s6_slot::{
    current_slots, install_slot, is_leftover_name, Publish, SlotError, SlotOwnership, SlotSpec,
};

/// Full rescan period (bind mounts from some hosts deliver no inotify events).
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(30);
/// A pass runs once events have been quiet this long …
const DEBOUNCE_QUIET: Duration = Duration::from_millis(50);
/// … or this long after the first event of a burst, whichever comes first.
const DEBOUNCE_MAX: Duration = Duration::from_millis(300);

const SOUL: &[u8] = b"SOUL.md";
/// Directories of `H/profiles` watched beyond the slot cap while they are not profiles yet.
const CANDIDATE_WATCHES: usize = 16;

// ---------------------------------------------------------------------------------------------------
// The service

/// What a watched directory is, which decides the names whose events matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watched {
    Home,
    Profiles,
    Profile,
}

impl Watched {
    fn cares_about(self, name: Option<&[u8]>) -> bool {
        match (self, name) {
            (_, None) | (Watched::Profiles, _) => true,
            (Watched::Home, Some(n)) => n == b"profiles" || n == UNREGISTER_MARKER.as_bytes(),
            (Watched::Profile, Some(n)) => n == SOUL || n == UNREGISTER_MARKER.as_bytes(),
        }
    }
}

/// inotify watches, added through `/proc/self/fd/<n>` so the watch is on the very directory the scan
/// opened without following symlinks.
///
/// `H`, `H/profiles`, the directories of profiles that have a slot, and the first directories of
/// `H/profiles` up to the slot cap plus [`CANDIDATE_WATCHES`] are watched — never one per `mkdir` of the
/// runtime user, since root's watch budget is shared with the host. A directory beyond that becomes a
/// profile at the nudge of `register`, the event of the next `mkdir`, or the periodic rescan.
struct Watcher {
    fd: OwnedFd,
    kinds: HashMap<i32, Watched>,
    /// The watches added or renewed during the current pass; the others are removed at its end.
    renewed: HashSet<i32>,
}

impl Watcher {
    fn new() -> rustix::io::Result<Watcher> {
        Ok(Watcher {
            fd: inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?,
            kinds: HashMap::new(),
            renewed: HashSet::new(),
        })
    }

    /// Removes the watches no longer wanted: those not renewed since the last call.
    fn prune(&mut self) {
        let renewed = std::mem::take(&mut self.renewed);
        let stale: Vec<i32> = self
            .kinds
            .keys()
            .filter(|wd| !renewed.contains(wd))
            .copied()
            .collect();
        for wd in stale {
            let _ = inotify::remove_watch(&self.fd, wd);
            self.kinds.remove(&wd);
        }
    }

    fn watch(&mut self, dir: &Dir, kind: Watched) -> rustix::io::Result<()> {
        let flags = WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::DELETE_SELF
            | WatchFlags::MOVE_SELF
            | WatchFlags::ONLYDIR;
        let path = format!("/proc/self/fd/{}", dir.fd().as_raw_fd());
        let wd = inotify::add_watch(&self.fd, path, flags)?;
        self.kinds.insert(wd, kind);
        self.renewed.insert(wd);
        Ok(())
    }

    /// Reads every queued event. Returns (a pass is due, the queue overflowed).
    fn drain(&mut self, buf: &mut [std::mem::MaybeUninit<u8>]) -> (bool, bool) {
        let (mut due, mut overflow) = (false, false);
        let mut reader = inotify::Reader::new(&self.fd, buf);
        loop {
            let ev = match reader.next() {
                Ok(ev) => ev,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
            };
            let flags = ev.events();
            if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                overflow = true;
                continue;
            }
            if flags.contains(ReadFlags::IGNORED) {
                self.kinds.remove(&ev.wd());
                continue;
            }
            let kind = self.kinds.get(&ev.wd()).copied().unwrap_or(Watched::Profiles);
            if flags.intersects(ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF)
                || kind.cares_about(ev.file_name().map(|n| n.to_bytes()))
            {
                due = true;
            }
        }
        (due || overflow, overflow)
    }
}

/// Warns once per distinct problem while it persists (a malformed entry is reported when it appears, not
/// on every rescan).
#[derive(Default)]
struct Once {
    seen: HashSet<String>,
}

impl Once {
    /// Starts a pass: problems not seen again during it are forgotten, so they warn if they come back.
    fn pass(&mut self) -> HashSet<String> {
        std::mem::take(&mut self.seen)
    }
    fn warn(&mut self, previous: &HashSet<String>, key: String, emit: impl FnOnce()) {
        if !previous.contains(&key) && !self.seen.contains(&key) {
            emit();
        }
        self.seen.insert(key);
    }
}

struct Registrar<'a> {
    root: &'a RootPrefix,
    report: &'a Report,
    places: &'a Places,
    account: Account,
    ownership: SlotOwnership,
    watcher: Option<Watcher>,
    once: Once,
}

impl Registrar<'_> {
    /// One full comparison of profiles and slots; changes what differs. `rescan_anyway`: have s6-svscan
    /// look at the scan directory even when nothing was published (the first pass: the boot's slots).
    fn pass(&mut self, rescan_anyway: bool) {
        let previous = self.once.pass();
        let report = self.report;
        let scandir = match open_scandir(self.root, &self.places.scandir) {
            Ok(Some(d)) => d,
            Ok(None) => {
                let path = display_path(&self.places.scandir);
                self.once.warn(&previous, format!("no scandir {path}"), || {
                    report.warn(format_args!("scan directory {path} does not exist — continuing"))
                });
                return;
            }
            Err(msg) => {
                self.once.warn(&previous, msg.clone(), || {
                    report.warn(format_args!("{msg} — continuing"))
                });
                return;
            }
        };
        let _lock = match lock_scandir(&scandir) {
            Ok(fd) => fd,
            Err(e) => {
                self.once.warn(&previous, e.to_string(), || report.warn_err(&e));
                return;
            }
        };
        let Some(desired) = self.desired(&previous) else {
            return;
        };
        let current = match current_slots(&scandir) {
            Ok(c) => c,
            Err(e) => {
                self.once.warn(&previous, e.to_string(), || report.warn_err(&e));
                return;
            }
        };

        let extra: Vec<String> = current
            .iter()
            .filter(|p| {
                !desired.profiles.contains_key(*p) && (desired.default_known || *p != DEFAULT_PROFILE)
            })
            .cloned()
            .collect();
        let mut slotted: BTreeSet<String> = current.iter().filter(|p| !extra.contains(p)).cloned().collect();
        if !extra.is_empty() {
            for (p, result) in retire_slots(self.root, report, &scandir, &self.places.scandir, &extra) {
                match result {
                    Ok(()) => report.info(format_args!("unregistered gateway-{p}")),
                    Err(e) => {
                        slotted.insert(p.clone());
                        self.once.warn(&previous, e.to_string(), || report.warn_err(&e))
                    }
                }
            }
        }
        let mut published = false;
        let umask = crate::s6_slot::process_umask();
        for p in desired.profiles.keys().filter(|p| !current.contains(*p)) {
            if let Some(why) = self.places.over_limit(p, slotted.len()) {
                self.once.warn(&previous, format!("limit {p}"), || {
                    report.warn(format_args!("{why} — continuing"))
                });
                continue;
            }
            let spec = SlotSpec {
                profile: p,
                start: false,
                ownership: self.ownership,
                runtime_user: &self.account.name,
                umask,
            };
            match install_slot(&scandir, report, &spec, Publish::NoReplace) {
                Ok(_) => {
                    published = true;
                    slotted.insert(p.clone());
                    report.info(format_args!("registered gateway-{p} (down)"));
                }
                Err(SlotError::Exists) => {
                    slotted.insert(p.clone());
                }
                Err(SlotError::Sys(e)) => self.once.warn(&previous, e.to_string(), || report.warn_err(&e)),
            }
        }
        self.watch_slotted(&desired, &slotted, &previous);
        if published || rescan_anyway {
            let r = rescan(self.root, &self.places.scandir);
            if !r.success() {
                let what = format!(
                    "s6-svscanctl -a {} failed: {}",
                    display_path(&self.places.scandir),
                    r.describe()
                );
                self.once.warn(&previous, what.clone(), || {
                    report.warn(format_args!("{what} — continuing"))
                });
            }
        }
    }

    /// The profiles that should have a slot; `None` when `H` cannot be looked at (then nothing is removed:
    /// a volume that is briefly unreadable must not cost every gateway its slot).
    fn desired(&mut self, previous: &HashSet<String>) -> Option<Desired> {
        let report = self.report;
        let home = match Dir::open_anchor(self.root, &self.places.home) {
            Ok(Entry::Found(h)) => h,
            Ok(Entry::Symlink) => {
                let path = self.places.home.clone();
                self.once
                    .warn(previous, format!("symlink {}", display_path(&path)), || {
                        report.warn_refusing("profile", &path)
                    });
                return None;
            }
            Ok(_) => return None,
            Err(e) => {
                self.once.warn(previous, e.to_string(), || report.warn_err(&e));
                return None;
            }
        };
        let mut out = Desired {
            profiles: BTreeMap::new(),
            default_known: true,
        };
        self.watch(&home, Watched::Home);
        match unregister_requested(&home) {
            Ok(false) => {
                out.profiles.insert(DEFAULT_PROFILE.to_string(), None);
            }
            Ok(true) => {}
            Err(e) => {
                out.default_known = false;
                self.once.warn(previous, e.to_string(), || report.warn_err(&e));
            }
        }
        let profiles_path = home.child("profiles");
        let mut watcher = self.watcher.take();
        let mut watch_failed = None;
        // Directories that may become profiles (their `SOUL.md` is awaited) are watched up to a budget;
        // profiles with a slot are watched whatever their number (`watch_slotted`).
        let mut budget = self.places.slot_limit + CANDIDATE_WATCHES;
        let scanned = scan_profiles(&home, |d| {
            let kind = if d.path() == profiles_path {
                Watched::Profiles
            } else if budget > 0 {
                budget -= 1;
                Watched::Profile
            } else {
                return;
            };
            if let Some(w) = watcher.as_mut() {
                if let Err(e) = w.watch(d, kind) {
                    watch_failed.get_or_insert(crate::error::SysError::new("inotify_add_watch", d.path(), e));
                }
            }
        });
        self.watcher = watcher;
        if let Some(e) = watch_failed {
            self.warn_watch_failed(previous, &e);
        }
        for s in scanned {
            match s {
                Scanned::Profile(p) => match unregister_requested(&p.dir) {
                    Ok(false) => {
                        out.profiles.insert(p.name, Some(p.dir));
                    }
                    Ok(true) => {}
                    Err(e) => self.once.warn(previous, e.to_string(), || report.warn_err(&e)),
                },
                Scanned::Problem(problem) => {
                    self.once.warn(previous, problem.key(), || problem.emit(report));
                }
            }
        }
        Some(out)
    }

    fn watch(&mut self, dir: &Dir, kind: Watched) {
        if let Some(w) = self.watcher.as_mut() {
            // A failure is reported by the watches of `profiles` and of the profiles.
            let _ = w.watch(dir, kind);
        }
    }

    /// Watches the directories of the profiles that have a slot (their `unregister` marker and `SOUL.md`
    /// matter) and drops every other watch: at most the slot cap plus two.
    fn watch_slotted(&mut self, desired: &Desired, slotted: &BTreeSet<String>, previous: &HashSet<String>) {
        let Some(mut w) = self.watcher.take() else {
            return;
        };
        let mut failed = None;
        for (p, dir) in &desired.profiles {
            if let (true, Some(dir)) = (slotted.contains(p), dir) {
                if let Err(e) = w.watch(dir, Watched::Profile) {
                    failed.get_or_insert(crate::error::SysError::new("inotify_add_watch", dir.path(), e));
                }
            }
        }
        w.prune();
        self.watcher = Some(w);
        if let Some(e) = failed {
            self.warn_watch_failed(previous, &e);
        }
    }

    fn warn_watch_failed(&mut self, previous: &HashSet<String>, e: &crate::error::SysError) {
        let report = self.report;
        self.once.warn(previous, "inotify_add_watch".to_string(), || {
            report.warn(format_args!(
                "{e}; profile changes may take up to {} s to be seen — continuing",
                RESCAN_INTERVAL.as_secs()
            ))
        });
    }
}

struct Desired {
    /// Each wanted profile with its directory (`None` for the root profile, whose directory is `H`).
    profiles: BTreeMap<String, Option<Dir>>,
    /// Whether the root profile's request marker could be read (else its slot is left alone).
    default_known: bool,
}

fn sweep_leftovers(scandir: &Dir, report: &Report) {
    if let Ok(entries) = scandir.list() {
        for (name, _) in entries {
            if is_leftover_name(name.as_bytes()) {
                if let Err(e) = scandir.remove_tree(report, &name) {
                    report.warn_err(&e);
                }
            }
        }
    }
}

/// Blocks SIGTERM, SIGINT and SIGHUP and returns a descriptor that reports them (children get a clean
/// mask: std resets it when spawning).
fn stop_signals() -> nix::Result<nix::sys::signalfd::SignalFd> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    mask.thread_block()?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}

/// Waits for SIGTERM, SIGINT or SIGHUP (blocked and reported by `signals`) and says which came.
fn wait_for_stop(signals: &nix::sys::signalfd::SignalFd, report: &Report) {
    loop {
        let mut fds = [PollFd::new(signals, PollFlags::IN)];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                report.warn(format_args!("poll: {e} — continuing"));
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if let Ok(Some(info)) = signals.read_signal() {
            report.info(format_args!("registrar stopping (signal {})", info.ssi_signo));
            return;
        }
    }
}

/// `reconcile-profiles watch`; returns the exit code (0 after SIGTERM/SIGINT/SIGHUP, 1 when it cannot
/// start). In a dashboard container (RP-02, RP-03, decided once at start like the boot pass) it registers
/// nothing and idles until stopped: s6 restarts a longrun that exits.
pub fn run_watch(root: &RootPrefix, report: &Report, user: &str, places: &Places, interval: Duration) -> u8 {
    // Without root (`--user`) the supervision tree is the runtime user's own and the registrar keeps it
    // as that user, with the process's ids.
    let account = match lookup(root, user) {
        Ok(Some(a)) if euid() != 0 => crate::accounts::unprivileged(a),
        Ok(Some(a)) => a,
        Ok(None) => {
            error_line(format_args!("runtime user {user} not found in /etc/passwd"));
            return 1;
        }
        Err(e) => {
            error_line(e);
            return 1;
        }
    };
    let signals = match stop_signals() {
        Ok(s) => s,
        Err(e) => {
            error_line(format_args!("cannot block stop signals: {e}"));
            return 1;
        }
    };
    if is_dashboard_container(&read_container_argv(root)) {
        report.info("skipping (dashboard container — does not need per-profile gateways)");
        wait_for_stop(&signals, report);
        return 0;
    }
    let watcher = match Watcher::new() {
        Ok(w) => Some(w),
        Err(e) => {
            report.warn(format_args!(
                "inotify_init: {e}; profiles are rescanned every {} s only — continuing",
                interval.as_secs()
            ));
            None
        }
    };
    let ownership = ownership_for(&account, places.slot_mode);
    let mode = match ownership {
        SlotOwnership::Root { .. } | SlotOwnership::Creator => "root-owned slots".to_string(),
        SlotOwnership::User(Some(_)) => "user-owned slots".to_string(),
        SlotOwnership::User(None) => format!("slots of uid {}: no root in this container", account.uid),
    };
    report.info(format_args!(
        "registrar watching {}/profiles for {} ({mode})",
        display_path(&places.home),
        display_path(&places.scandir)
    ));
    places.warn_about_limit(report);
    let mut reg = Registrar {
        root,
        report,
        places,
        ownership,
        account,
        watcher,
        once: Once::default(),
    };
    if let Ok(Some(scandir)) = open_scandir(root, &places.scandir) {
        if let Ok(_lock) = lock_scandir(&scandir) {
            sweep_leftovers(&scandir, report);
        }
    }
    reg.pass(true);
    let mut next_rescan = Instant::now() + interval;
    // (first event of the burst, last event)
    let mut burst: Option<(Instant, Instant)> = None;
    let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 64 * 1024];
    loop {
        let now = Instant::now();
        let wake = match burst {
            Some((first, last)) => (last + DEBOUNCE_QUIET).min(first + DEBOUNCE_MAX).min(next_rescan),
            None => next_rescan,
        };
        let timeout = wake.saturating_duration_since(now);
        let ts = rustix::fs::Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let (sig_ready, ino_ready) = {
            let mut fds = vec![PollFd::new(&signals, PollFlags::IN)];
            if let Some(w) = reg.watcher.as_ref() {
                fds.push(PollFd::new(&w.fd, PollFlags::IN));
            }
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    report.warn(format_args!("poll: {e} — continuing"));
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            (
                !fds[0].revents().is_empty(),
                fds.get(1).is_some_and(|f| !f.revents().is_empty()),
            )
        };
        if sig_ready {
            if let Ok(Some(info)) = signals.read_signal() {
                report.info(format_args!("registrar stopping (signal {})", info.ssi_signo));
            }
            return 0;
        }
        let now = Instant::now();
        if ino_ready {
            if let Some(w) = reg.watcher.as_mut() {
                let (due, overflow) = w.drain(&mut buf);
                if overflow {
                    report.info("inotify queue overflowed; rescanning every profile");
                    // Nothing to wait for: the events that were lost are unknown anyway.
                    burst = Some((now - DEBOUNCE_MAX, now - DEBOUNCE_QUIET));
                } else if due {
                    burst = Some(match burst {
                        Some((first, _)) => (first, now),
                        None => (now, now),
                    });
                }
            }
        }
        let burst_done =
            burst.is_some_and(|(first, last)| now >= last + DEBOUNCE_QUIET || now >= first + DEBOUNCE_MAX);
        if burst_done || now >= next_rescan {
            burst = None;
            reg.pass(false);
            next_rescan = Instant::now() + interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_that_matter() {
        assert!(Watched::Profile.cares_about(Some(b"SOUL.md")));
        assert!(Watched::Profile.cares_about(Some(UNREGISTER_MARKER.as_bytes())));
        assert!(!Watched::Profile.cares_about(Some(b"gateway_state.json")));
        assert!(Watched::Home.cares_about(Some(b"profiles")));
        assert!(!Watched::Home.cares_about(Some(b"config.yaml")));
        assert!(Watched::Profiles.cares_about(Some(b"anything")));
        assert!(Watched::Profile.cares_about(None));
    }

    #[test]
    fn a_problem_warns_once_while_it_lasts_and_again_when_it_returns() {
        let mut once = Once::default();
        let mut printed = 0;
        for _ in 0..3 {
            let prev = once.pass();
            once.warn(&prev, "bad".into(), || printed += 1);
        }
        assert_eq!(printed, 1);
        let _ = once.pass(); // a pass without the problem
        let prev = once.pass();
        once.warn(&prev, "bad".into(), || printed += 1);
        assert_eq!(printed, 2);
    }
}
