//! Per profile: what its state file asks for, whether its slot exists and is up, whether the next boot
//! would start it, its last boot-log line, and pid files of processes that are gone.

use std::path::Path;

use crate::gateway_state::{self, STATE_FILE, STATE_LIMIT};
use crate::guarded::{Dir, Entry};
use crate::profiles::{self, Scanned, DEFAULT_PROFILE};
use crate::report::{Report, Sink, WarnStyle};
use crate::s6_slot::slot_name;

use super::{read_volume_file, shown, Context, Finding};

const AREA: &str = "gateways";
/// The part of the boot log that is read for the last lines (it rotates at 256 KiB).
const BOOT_LOG_LIMIT: u64 = 1 << 20;

/// What `s6-svstat` said about a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Run {
    Up(String),
    Down(String),
    /// No supervisor for the slot (not yet picked up by s6-svscan, or the scan directory is not
    /// supervised at all, as with `--no-supervise`).
    Unsupervised(String),
}

pub(super) fn check(cx: &Context, out: &mut Vec<Finding>) {
    let Some(home) = &cx.home else { return };
    let scandir = match Dir::open_anchor(cx.root, &cx.places.scandir) {
        Ok(Entry::Found(d)) => Some(d),
        _ => None,
    };
    if scandir.is_none() {
        out.push(Finding::ok(
            AREA,
            "scandir",
            format!(
                "{} does not exist: gateways are not supervised in this container",
                shown(&cx.places.scandir)
            ),
        ));
    }
    // Warnings of the shared readers (an unparsable config.yaml) go to stderr, apart from the report.
    let quiet = Report::new("hermes-boot-doctor:", WarnStyle::Bracketed, Sink::Stderr, false);
    let multiplex = profiles::multiplex_flag(cx.places.multiplex.as_deref(), Some(home), &quiet);
    let log = boot_log(home);
    profile(
        cx,
        scandir.as_ref(),
        DEFAULT_PROFILE,
        home,
        true,
        multiplex,
        &log,
        out,
    );
    for s in profiles::scan_profiles(home, |_| {}) {
        match s {
            Scanned::Profile(p) => {
                profile(cx, scandir.as_ref(), &p.name, &p.dir, false, multiplex, &log, out)
            }
            Scanned::Problem(problem) => out.push(Finding::problem(
                AREA,
                "profile",
                format!("not a usable profile: {}", problem.key()),
                "rename or remove it: profile names are letters, digits, '-' and '_'",
            )),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn profile(
    cx: &Context,
    scandir: Option<&Dir>,
    name: &str,
    dir: &Dir,
    is_default: bool,
    multiplex: bool,
    log: &str,
    out: &mut Vec<Finding>,
) {
    let state_path = dir.child(STATE_FILE);
    let (desired, reported, prior) =
        match read_volume_file(dir, STATE_FILE, STATE_LIMIT).map(|b| gateway_state::parse_object(&b)) {
            Some(Ok(obj)) => {
                let show = |k: &str| obj.get(k).filter(|v| !v.is_null()).map(|v| v.to_string());
                (
                    show("desired_state"),
                    show("gateway_state"),
                    gateway_state::prior_from_object(&obj),
                )
            }
            Some(Err(_)) => {
                out.push(
                    Finding::problem(
                        AREA,
                        "gateway-state",
                        format!(
                            "{} is not a JSON object: the boot treats it as no state",
                            shown(&state_path)
                        ),
                        format!("docker exec <container> rm {}", shown(&state_path)),
                    )
                    .at(&state_path),
                );
                (None, None, None)
            }
            None => (None, None, None),
        };
    let wants_running = gateway_state::is_running(&prior);
    let unregistered = crate::requests::unregister_requested(dir).unwrap_or(false);
    let autostart = wants_running && !unregistered && (is_default || !multiplex);
    let slot = slot_name(name);
    let slot_path = cx.places.scandir.join(&slot);
    let present = scandir.is_some_and(|s| matches!(s.stat(&slot), Ok(Some(m)) if m.is_dir()));
    let run = present.then(|| run_state(cx, &slot_path));
    let last = last_log_line(log, name);

    let mut message = format!(
        "{name}: desired_state {}, gateway_state {}, slot {}{}",
        desired.as_deref().unwrap_or("none"),
        reported.as_deref().unwrap_or("none"),
        match &run {
            None => "absent".to_string(),
            Some(Run::Up(s)) | Some(Run::Down(s)) | Some(Run::Unsupervised(s)) => s.clone(),
        },
        if autostart { ", starts at boot" } else { "" }
    );
    if unregistered {
        message.push_str(", unregistered");
    }
    let details = |f: Finding| {
        f.with("profile", name)
            .with("desired_state", desired.clone().unwrap_or_default())
            .with("gateway_state", reported.clone().unwrap_or_default())
            .with("slot_present", present)
            .with(
                "slot_state",
                match &run {
                    None => "absent",
                    Some(Run::Up(_)) => "up",
                    Some(Run::Down(_)) => "down",
                    Some(Run::Unsupervised(_)) => "unsupervised",
                },
            )
            .with("autostart", autostart)
            .with("last_boot_log", last.clone().unwrap_or_default())
    };
    match &run {
        Some(Run::Down(_)) if wants_running && !unregistered => out.push(details(Finding::problem(
            AREA,
            "gateway-down",
            format!("{message}: its state says running but the gateway is down"),
            format!("docker exec <container> s6-svc -u {}", shown(&slot_path)),
        ))),
        Some(Run::Unsupervised(_)) if wants_running && !unregistered => out.push(details(Finding::problem(
            AREA,
            "gateway-unsupervised",
            format!("{message}: its state says running but s6 does not supervise its slot"),
            format!(
                "docker exec <container> s6-svscanctl -a {}",
                shown(&cx.places.scandir)
            ),
        ))),
        None if wants_running && !unregistered && scandir.is_some() => out.push(details(Finding::problem(
            AREA,
            "gateway-slot",
            format!("{message}: its state says running but it has no slot"),
            if is_default {
                "docker restart <container>".to_string()
            } else {
                format!("docker exec <container> reconcile-profiles register {name}")
            },
        ))),
        _ => out.push(details(Finding::ok(AREA, "gateway", message))),
    }
    if let Some(line) = last {
        out.push(Finding::ok(
            AREA,
            "boot-log",
            format!("{name}: last boot: {line}"),
        ));
    }
    stale_pid(cx, dir, out);
}

fn run_state(cx: &Context, slot_path: &Path) -> Run {
    match super::svstat(cx.root, slot_path) {
        None => Run::Unsupervised("not supervised".to_string()),
        Some(text) if text.starts_with("up") => Run::Up(text),
        Some(text) => Run::Down(text),
    }
}

/// `gateway.pid` naming a process that does not exist (in the container's pid namespace): a gateway
/// that died without cleaning up, which the app's own "already running" check may trust.
fn stale_pid(cx: &Context, dir: &Dir, out: &mut Vec<Finding>) {
    let Some(bytes) = read_volume_file(dir, "gateway.pid", 4096) else {
        return;
    };
    let text = String::from_utf8_lossy(&bytes);
    let pid = text.trim().parse::<u32>().ok().or_else(|| {
        gateway_state::parse_object(&bytes)
            .ok()
            .and_then(|o| o.get("pid").and_then(|p| p.as_u64()))
            .and_then(|p| u32::try_from(p).ok())
    });
    let path = dir.child("gateway.pid");
    let Some(pid) = pid.filter(|p| *p > 0) else {
        return;
    };
    if !cx.root.path(format!("/proc/{pid}")).exists() {
        out.push(
            Finding::problem(
                AREA,
                "stale-pid",
                format!("{} names pid {pid}, which is not running", shown(&path)),
                format!("docker exec <container> rm {}", shown(&path)),
            )
            .at(&path)
            .with("pid", pid),
        );
    }
}

/// The boot log of the volume (`logs/container-boot.log`), empty when there is none.
fn boot_log(home: &Dir) -> String {
    let Ok(Entry::Found(logs)) = home.subdir("logs") else {
        return String::new();
    };
    read_volume_file(&logs, crate::boot_log::BOOT_LOG, BOOT_LOG_LIMIT)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last boot-log line about `profile` (`… profile=<name> prior_state=…`).
fn last_log_line(log: &str, profile: &str) -> Option<String> {
    let key = format!(" profile={profile} ");
    log.lines()
        .rev()
        .find(|l| l.contains(&key))
        .map(|l| crate::display::display_bytes(l.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_of_the_profile_is_found_and_not_a_prefix_match() {
        let log = "t1 profile=default prior_state=None action=skipped prior_exit=unknown\n\
                   t1 profile=work prior_state=running action=started prior_exit=clean\n\
                   t2 profile=workshop prior_state=None action=skipped prior_exit=unknown\n";
        assert_eq!(
            last_log_line(log, "work").as_deref(),
            Some("t1 profile=work prior_state=running action=started prior_exit=clean")
        );
        assert_eq!(last_log_line(log, "other"), None);
    }
}
