//! `reconcile-profiles register` and `unregister` (SPEC RP-18, RP-19): one profile's slot added or removed
//! while s6-svscan runs. Root, or a runtime user that owns the scan directory (user-owned slots), changes
//! the slot itself through [`crate::reconcile`]'s slot steps; any other caller asks the profile registrar
//! ([`crate::registrar`]) and waits for its answer.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::accounts::lookup;
use crate::chown_refusal::{note_chown_refusal, owner_for};
use crate::display::display_path;
use crate::error::SysError;
use crate::guarded::{euid, Dir};
use crate::profiles::{validate_profile_name, DEFAULT_PROFILE};
use crate::reconcile::{
    error_line, host, lock_for_change, open_profile_dir, open_scandir, ownership_for, rescan, resolve_user,
    retire_slots, Places, EXIT_TIMEOUT,
};
use crate::report::{Change, Report};
use crate::requests::{
    clear_unregister_request, nudge, record_unregister_request, slot_exists, wait_for, UNREGISTER_MARKER,
};
use crate::root::RootPrefix;
use crate::s6_command::run_tool;
use crate::s6_slot::{current_slots, install_slot, old_name, slot_name, Publish, SlotError, SlotSpec};

/// Validates a profile name given on the command line; prints the error and returns `None` when invalid.
fn validated(profile: &OsStr) -> Option<String> {
    match validate_profile_name(profile.as_bytes()) {
        Ok(()) => Some(String::from_utf8_lossy(profile.as_bytes()).into_owned()),
        Err(msg) => {
            error_line(msg);
            None
        }
    }
}

/// Whether this process changes slots itself: root does; the runtime user does only where it can write
/// the scan directory (user-owned slots). Otherwise `register`/`unregister` are requests to the registrar.
fn acts_directly(scandir: &Dir) -> bool {
    euid() == 0
        || rustix::fs::accessat(
            scandir.fd(),
            ".",
            rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
            rustix::fs::AtFlags::EACCESS,
        )
        .is_ok()
}

/// RP-18 `register <profile> [--down]`; returns the exit code (0, 1, 2, 3 or 4). As root (or where the
/// runtime user owns the scan directory) the slot is built here; otherwise the request goes to the
/// registrar ([`request_register`]).
pub fn run_register(
    root: &RootPrefix,
    report: &Report,
    user: &str,
    places: &Places,
    profile: &OsStr,
    down: bool,
    timeout: Duration,
) -> u8 {
    let Some(profile) = validated(profile) else {
        return 2;
    };
    let Some(account) = resolve_user(root, user) else {
        return 1;
    };
    let scandir = match open_scandir(root, &places.scandir) {
        Ok(Some(d)) => d,
        Ok(None) => {
            error_line(SysError::new("open", &places.scandir, nix::errno::Errno::ENOENT));
            return 1;
        }
        Err(msg) => {
            error_line(msg);
            return 1;
        }
    };
    if !acts_directly(&scandir) {
        return request_register(root, report, places, &scandir, &profile, down, timeout);
    }
    let _lock = match lock_for_change(report, &scandir) {
        Ok(lock) => lock,
        Err(e) => {
            error_line(e);
            return 1;
        }
    };
    match open_profile_dir(root, &places.home, &profile) {
        Ok(Some(dir)) => {
            if let Err(e) = clear_unregister_request(&dir, report) {
                report.warn_err(&e);
            }
        }
        Ok(None) => {}
        Err(e) => report.warn_err(&e),
    }
    let slot = scandir.child(slot_name(&profile));
    match current_slots(&scandir) {
        Ok(slots) if !slots.contains(&profile) => {
            if let Some(why) = places.over_limit(&profile, slots.len()) {
                error_line(why);
                return 1;
            }
        }
        Ok(_) => {}
        Err(e) => {
            error_line(e);
            return 1;
        }
    }
    let already = || {
        error_line(format_args!(
            "profile gateway '{profile}' already registered at {}",
            display_path(&slot)
        ))
    };
    let spec = SlotSpec {
        profile: &profile,
        start: !down,
        ownership: ownership_for(&account, places.slot_mode),
        runtime_user: &account.name,
        umask: crate::s6_slot::process_umask(),
    };
    match install_slot(&scandir, report, &spec, Publish::NoReplace) {
        Ok(_) => {}
        Err(SlotError::Exists) => {
            already();
            return 3;
        }
        Err(SlotError::Sys(e)) => {
            error_line(e);
            return 1;
        }
    }
    let state = if down { "down" } else { "up" };
    if report.dry_run() {
        report.plan_only(
            Change::new("run", Path::new("/command/s6-svscanctl"))
                .detail(format_args!("-a {}", display_path(&places.scandir))),
        );
        return 0;
    }
    let r = rescan(root, &places.scandir);
    if !r.success() {
        let _ = scandir.remove_tree(report, slot_name(&profile));
        error_line(format_args!("s6-svscanctl failed: {}", r.describe()));
        return 1;
    }
    report.info(format_args!("registered gateway-{profile} ({state})"));
    0
}
/// RP-19 `unregister <profile>`; returns the exit code (0, 1, 2 or 4). As root (or where the runtime user
/// owns the scan directory) the slot is removed here; otherwise the request goes to the registrar
/// ([`request_unregister`]). While the profile directory exists, the request is recorded
/// in it, so the registrar and the next boot leave the profile without a slot.
pub fn run_unregister(
    root: &RootPrefix,
    report: &Report,
    user: &str,
    places: &Places,
    profile: &OsStr,
    timeout: Duration,
) -> u8 {
    let Some(profile) = validated(profile) else {
        return 2;
    };
    let scandir = match open_scandir(root, &places.scandir) {
        Ok(Some(d)) => d,
        Ok(None) => {
            report.info(format_args!("gateway-{profile} is not registered"));
            return 0;
        }
        Err(msg) => {
            error_line(msg);
            return 1;
        }
    };
    if !acts_directly(&scandir) {
        return request_unregister(root, report, places, &scandir, &profile, timeout);
    }
    let _lock = match lock_for_change(report, &scandir) {
        Ok(lock) => lock,
        Err(e) => {
            error_line(e);
            return 1;
        }
    };
    // The marker is the runtime user's, like the directory it lies in.
    let owner = lookup(root, user).ok().flatten().and_then(|a| owner_for(&a));
    match open_profile_dir(root, &places.home, &profile) {
        Ok(Some(dir)) => {
            let mut recorded = record_unregister_request(&dir, report, owner);
            if let Err(e) = &recorded {
                if note_chown_refusal(report, e, user) {
                    recorded = record_unregister_request(&dir, report, None);
                }
            }
            if let Err(e) = recorded {
                report.warn_err(&e);
            }
        }
        Ok(None) => {}
        Err(e) => report.warn_err(&e),
    }
    let name = slot_name(&profile);
    let slot_path = scandir.child(&name);
    let old_path = scandir.child(old_name(&profile));
    let meta = match scandir.stat(&name) {
        Ok(Some(m)) => m,
        Ok(None) => {
            report.info(format_args!("gateway-{profile} is not registered"));
            return 0;
        }
        Err(e) => {
            error_line(e);
            return 1;
        }
    };
    if report.dry_run() {
        if meta.is_dir() {
            report.plan_only(
                Change::new("run", Path::new("/command/s6-svc"))
                    .detail(format_args!("-d {}", display_path(&slot_path))),
            );
            report.plan_only(
                Change::new("run", Path::new("/command/s6-svwait"))
                    .detail(format_args!("-D -t 10000 {}", display_path(&slot_path))),
            );
        }
        report.plan_only(
            Change::new("rename", slot_path).detail(format_args!("to {}", display_path(&old_path))),
        );
        report.plan_only(
            Change::new("run", Path::new("/command/s6-svscanctl"))
                .detail(format_args!("-an {}", display_path(&places.scandir))),
        );
        report.plan_only(Change::new("remove", old_path));
        return 0;
    }
    match retire_slots(
        root,
        report,
        &scandir,
        &places.scandir,
        std::slice::from_ref(&profile),
    )
    .into_iter()
    .next()
    {
        Some((_, Err(e))) => {
            error_line(e);
            1
        }
        _ => {
            report.info(format_args!("unregistered gateway-{profile}"));
            0
        }
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
        nudge(root, &places.home, profile);
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
