//! The request protocol between the runtime user's `register`/`unregister` and the profile registrar
//! (`reconcile-profiles watch`, root): the runtime user never writes the scan directory, it leaves requests
//! in the profile directories it owns and waits for the registrar to act on them.
//!
//! - the unregister marker ([`UNREGISTER_MARKER`]): recorded by `unregister`, withdrawn by `register`; root
//!   only tests for the entry's existence, without following symlinks, and never reads it;
//! - the nudge: an entry created and removed in `H/profiles` so the registrar looks now;
//! - the wait: for the slot to appear (and run) or to go, within the caller's timeout.

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use crate::display::display_path;
use crate::error::{SysError, SysResult};
use crate::guarded::{Dir, Entry};
use crate::owner::Owner;
use crate::profiles::DEFAULT_PROFILE;
use crate::reconcile::{error_line, host, open_profile_dir, Places, EXIT_TIMEOUT};
use crate::report::{Change, Report};
use crate::root::RootPrefix;
use crate::s6_command::run_tool;
use crate::s6_slot::{current_slots, slot_name};

/// How long `register` waits for the registrar by default.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `unregister` waits by default (the registrar stops the gateway first: RP-19 allows 10 s).
pub const UNREGISTER_TIMEOUT: Duration = Duration::from_secs(20);
const REQUEST_POLL: Duration = Duration::from_millis(20);

/// A request to keep a profile's gateway unregistered while its directory exists: an entry of this name
/// in the profile directory (`H` for the root profile).
pub const UNREGISTER_MARKER: &str = ".gateway-unregistered";

/// Whether the profile directory holds an [`UNREGISTER_MARKER`] (an entry of any type counts).
pub fn unregister_requested(dir: &Dir) -> SysResult<bool> {
    Ok(dir.stat(UNREGISTER_MARKER)?.is_some())
}

/// Records `unregister`'s request in the profile directory ([`UNREGISTER_MARKER`]), so neither the
/// registrar nor the next boot gives the profile a slot while its directory exists.
pub fn record_unregister_request(dir: &Dir, report: &Report, owner: Option<Owner>) -> Result<(), SysError> {
    crate::atomic::create_exclusive(dir, report, OsStr::new(UNREGISTER_MARKER), b"", 0o644, owner).map(|_| ())
}

/// Withdraws an `unregister` request (`register`).
pub fn clear_unregister_request(dir: &Dir, report: &Report) -> Result<(), SysError> {
    dir.unlink(report, UNREGISTER_MARKER).map(|_| ())
}

/// Waits until `done` holds, polling every 20 ms; false on timeout.
fn wait_for(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(REQUEST_POLL);
    }
}

fn slot_exists(scandir: &Dir, profile: &str) -> bool {
    matches!(scandir.stat(slot_name(profile)), Ok(Some(_)))
}

/// Creates and removes an entry in `H/profiles` (`H` for the root profile): an inotify event that makes
/// the registrar look at the profiles now, even when nothing else changed. Not in the profile directory:
/// the registrar watches that only once the profile has a slot.
fn nudge(root: &RootPrefix, places: &Places, profile: &str) {
    let Ok(Entry::Found(home)) = Dir::open_anchor(root, &places.home) else {
        return;
    };
    let dir = if profile == DEFAULT_PROFILE {
        home
    } else {
        match home.subdir("profiles") {
            Ok(Entry::Found(d)) => d,
            _ => return,
        }
    };
    let name = format!(".gateway-register-request.{}", std::process::id());
    if rustix::fs::mknodat(
        dir.fd(),
        name.as_str(),
        rustix::fs::FileType::RegularFile,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .is_ok()
    {
        let _ = rustix::fs::unlinkat(dir.fd(), name.as_str(), rustix::fs::AtFlags::empty());
    }
}

/// `register <p> [--down]` as the runtime user: the profile must exist (`SOUL.md`); an earlier
/// `unregister` request is withdrawn; then wait until the registrar has published the slot and, without
/// `--down`, until s6-supervise runs on it, and start it (`s6-svc -u`). Exit 0, 1 (no such profile, I/O or
/// s6 failure) or 4 (timeout).
pub fn request_register(
    root: &RootPrefix,
    report: &Report,
    places: &Places,
    scandir: &Dir,
    profile: &str,
    down: bool,
    timeout: Duration,
) -> u8 {
    let dir = match open_profile_dir(root, &places.home, profile) {
        Ok(Some(d)) => d,
        Ok(None) => {
            error_line(format_args!(
                "profile '{profile}' does not exist (no directory {})",
                display_path(&profile_path(places, profile))
            ));
            return 1;
        }
        Err(e) => {
            error_line(e);
            return 1;
        }
    };
    if profile != DEFAULT_PROFILE {
        match dir.stat("SOUL.md") {
            Ok(Some(_)) => {}
            Ok(None) => {
                // A directory without SOUL.md is not a profile (RP-09): the registrar would never give it
                // a slot, so waiting for one could only time out.
                error_line(format_args!(
                    "profile '{profile}' does not exist (no {})",
                    display_path(&dir.child("SOUL.md"))
                ));
                return 1;
            }
            Err(e) => {
                error_line(e);
                return 1;
            }
        }
    }
    let state = if down { "down" } else { "up" };
    if report.dry_run() {
        report.plan_only(Change::new("remove", dir.child(UNREGISTER_MARKER)));
        report.plan_only(
            Change::new("wait", scandir.child(slot_name(profile))).detail("(for the profile registrar)"),
        );
        if !down {
            let slot = scandir.child(slot_name(profile));
            report.plan_only(
                Change::new("run", "/command/s6-svc").detail(format_args!("-u {}", display_path(&slot))),
            );
        }
        return 0;
    }
    if let Err(e) = clear_unregister_request(&dir, report) {
        error_line(e);
        return 1;
    }
    if !slot_exists(scandir, profile) {
        match current_slots(scandir) {
            Ok(slots) => {
                if let Some(why) = places.over_limit(profile, slots.len()) {
                    error_line(why);
                    return 1;
                }
            }
            Err(e) => {
                error_line(e);
                return 1;
            }
        }
        nudge(root, places, profile);
    }
    let deadline = Instant::now() + timeout;
    let timed_out = |what: &str| {
        error_line(format_args!(
            "timed out after {} s waiting for {what} (is the profile-registrar service running?)",
            timeout.as_secs_f64()
        ));
        EXIT_TIMEOUT
    };
    if !wait_for(deadline, || slot_exists(scandir, profile)) {
        return timed_out(&format!("the registrar to publish gateway-{profile}"));
    }
    if !down {
        let slot = host(root, &scandir.child(slot_name(profile)));
        if !wait_for(deadline, || {
            run_tool(root, "s6-svok", &[&slot], Duration::from_secs(5)).success()
        }) {
            return timed_out(&format!("s6-supervise on gateway-{profile}"));
        }
        let r = run_tool(root, "s6-svc", &[OsStr::new("-u"), &slot], Duration::from_secs(5));
        if !r.success() {
            error_line(format_args!("s6-svc -u failed: {}", r.describe()));
            return 1;
        }
    }
    report.info(format_args!("registered gateway-{profile} ({state})"));
    0
}

/// `unregister <p>` as the runtime user: while the profile directory exists the request is recorded in it
/// ([`UNREGISTER_MARKER`]); a removed directory is the request itself. Then wait until the registrar has
/// removed the slot. Exit 0, 1 or 4 (timeout).
pub fn request_unregister(
    root: &RootPrefix,
    report: &Report,
    places: &Places,
    scandir: &Dir,
    profile: &str,
    timeout: Duration,
) -> u8 {
    let dir = match open_profile_dir(root, &places.home, profile) {
        Ok(d) => d,
        Err(e) => {
            error_line(e);
            return 1;
        }
    };
    if !slot_exists(scandir, profile) {
        if let (Some(dir), false) = (&dir, report.dry_run()) {
            // Keep it that way: without the request the registrar would give the profile a slot.
            if let Err(e) = record_unregister_request(dir, report, None) {
                error_line(e);
                return 1;
            }
        }
        report.info(format_args!("gateway-{profile} is not registered"));
        return 0;
    }
    if report.dry_run() {
        if let Some(dir) = &dir {
            report.plan_only(Change::new("create", dir.child(UNREGISTER_MARKER)));
        }
        report.plan_only(
            Change::new("wait", scandir.child(slot_name(profile)))
                .detail("(until the profile registrar removed it)"),
        );
        return 0;
    }
    if let Some(dir) = &dir {
        if let Err(e) = record_unregister_request(dir, report, None) {
            error_line(e);
            return 1;
        }
    }
    if !wait_for(Instant::now() + timeout, || !slot_exists(scandir, profile)) {
        error_line(format_args!(
            "timed out after {} s waiting for the registrar to remove gateway-{profile} (is the \
             profile-registrar service running?)",
            timeout.as_secs_f64()
        ));
        return EXIT_TIMEOUT;
    }
    report.info(format_args!("unregistered gateway-{profile}"));
    0
}

fn profile_path(places: &Places, profile: &str) -> std::path::PathBuf {
    if profile == DEFAULT_PROFILE {
        places.home.clone()
    } else {
        places.home.join("profiles").join(profile)
    }
}
