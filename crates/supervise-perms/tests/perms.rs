//! `supervise-perms` against a temporary root (SPEC SP-01 … SP-04, CM-01) and against servicedirs whose
//! `supervise/` a real s6-supervise created.

use std::ffi::OsStr;
use std::time::Duration;

use test_support::s6::{tool_as, wait_until, Svscan};
use test_support::{ctime_ns, require_root, run, run_as, TempRoot, HERMES_GID, HERMES_UID};

const BIN: &str = env!("CARGO_BIN_EXE_supervise-perms");
const SD: &str = "/run/s6-rc/servicedirs";
const SUMMARY: &str = "[supervise-perms] granted group hermes control of static s6-rc services\n";

fn setup() -> TempRoot {
    require_root();
    TempRoot::new()
}

/// A servicedir as s6-supervise leaves it: supervise/ root 0700 with control (FIFO 0600), lock, status,
/// death_tally (0644), and event/ 03730 root:root.
fn fake_service(r: &TempRoot, name: &str) {
    let d = format!("{SD}/{name}");
    r.mkdir(&format!("{d}/supervise"));
    r.chmod(&format!("{d}/supervise"), 0o700);
    nix::unistd::mkfifo(
        &r.path(&format!("{d}/supervise/control")),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    for f in ["lock", "status", "death_tally"] {
        r.write(&format!("{d}/supervise/{f}"), "");
        r.chmod(&format!("{d}/supervise/{f}"), 0o644);
    }
    for e in ["event", "supervise/event"] {
        r.mkdir(&format!("{d}/{e}"));
        r.chmod(&format!("{d}/{e}"), 0o3730);
    }
}

/// Default `event/` mode: the group may enter but not create (no event subscription, see s6_perms).
const EVENT: u32 = 0o710;
/// `event/` in the legacy `HERMES_GATEWAY_SLOTS=user-owned` mode.
const LEGACY_EVENT: u32 = 0o3730;

fn assert_granted(r: &TempRoot, name: &str) {
    assert_granted_with(r, name, EVENT)
}

fn assert_granted_with(r: &TempRoot, name: &str, event: u32) {
    let d = format!("{SD}/{name}");
    let g = HERMES_GID;
    for (rel, mode) in [
        ("supervise", 0o710),
        ("supervise/control", 0o620),
        ("event", event),
        ("supervise/event", event),
    ] {
        let p = format!("{d}/{rel}");
        assert_eq!(r.owner(&p), (0, g), "{p}");
        assert_eq!(r.mode(&p), mode, "{p}: {:o}", r.mode(&p));
    }
    for f in ["lock", "status", "death_tally"] {
        let p = format!("{d}/supervise/{f}");
        assert_eq!(r.owner(&p), (0, 0), "{p}");
        assert_eq!(r.mode(&p), 0o644, "{p}");
    }
}

#[test]
fn grants_the_runtime_group_control_and_keeps_root_the_owner() {
    let r = setup();
    for s in [
        "dashboard",
        "main-hermes",
        "s6rc-oneshot-runner",
        "s6-linux-init-shutdownd",
        ".hidden",
    ] {
        fake_service(&r, s);
    }
    let out = run(&mut r.command(BIN));
    out.assert_code(0);
    assert_eq!(out.stdout, SUMMARY);
    assert_granted(&r, "dashboard");
    assert_granted(&r, "main-hermes");
    for skipped in ["s6rc-oneshot-runner", "s6-linux-init-shutdownd", ".hidden"] {
        let p = format!("{SD}/{skipped}/supervise");
        assert_eq!(r.owner(&p), (0, 0), "{p}");
        assert_eq!(r.mode(&p), 0o700, "{p}");
    }

    // Idempotent: a second run changes nothing (ctime unmoved) and says the same.
    let before = ctime_ns(&r.path(&format!("{SD}/dashboard/supervise/control")));
    let again = run(&mut r.command(BIN));
    again.assert_code(0);
    assert_eq!(again.stdout, SUMMARY);
    assert_eq!(
        ctime_ns(&r.path(&format!("{SD}/dashboard/supervise/control"))),
        before
    );
}

#[test]
fn absent_entries_are_skipped_silently_and_symlinks_refused() {
    let r = setup();
    // Only an event directory, no supervise/ yet (the service was never started).
    r.mkdir(&format!("{SD}/fresh/event"));
    // supervise/ is a symlink to somewhere root-owned.
    r.mkdir("/elsewhere/supervise");
    r.chmod("/elsewhere/supervise", 0o700);
    r.mkdir(&format!("{SD}/planted"));
    r.symlink(r.path("/elsewhere/supervise"), &format!("{SD}/planted/supervise"));
    // A service directory that is itself a symlink.
    r.mkdir("/elsewhere/svc/supervise");
    r.symlink(r.path("/elsewhere/svc"), &format!("{SD}/linked"));
    r.write(&format!("{SD}/README"), "not a service");

    let out = run(&mut r.command(BIN));
    out.assert_code(0);
    assert_eq!(r.owner(&format!("{SD}/fresh/event")), (0, HERMES_GID));
    assert_eq!(r.mode(&format!("{SD}/fresh/event")), EVENT);
    assert!(out.stdout.contains(&format!(
        "refusing chgrp/chmod through symlinked path {SD}/planted/supervise"
    )));
    assert!(out.stdout.contains(&format!(
        "refusing chgrp/chmod through symlinked path {SD}/linked"
    )));
    assert_eq!(r.owner("/elsewhere/supervise"), (0, 0));
    assert_eq!(r.mode("/elsewhere/supervise"), 0o700);
    assert_eq!(r.owner("/elsewhere/svc/supervise"), (0, 0));
    assert_eq!(
        out.stdout.lines().filter(|l| l.contains("Warning:")).count(),
        2,
        "{}",
        out.stdout
    );
    assert!(out.stdout.ends_with(SUMMARY));
}

#[test]
fn invocation_edge_cases() {
    let r = setup();
    // Not root.
    let out = run_as(&mut r.command(BIN), HERMES_UID, HERMES_GID);
    out.assert_code(0);
    assert_eq!(out.stdout, "[supervise-perms] not running as root; skipping\n");
    // No servicedirs tree.
    let out = run(&mut r.command(BIN));
    out.assert_code(0);
    assert_eq!(
        out.stdout,
        "[supervise-perms] /run/s6-rc/servicedirs not present; skipping\n"
    );
    // Unknown runtime user.
    let out = run(r.command(BIN).args(["--runtime-user", "nosuch"]));
    out.assert_code(1);
    assert_eq!(
        out.stderr,
        "[supervise-perms] ERROR: runtime user nosuch not found in /etc/passwd\n"
    );
    let out = run(r.command(BIN).env("HERMES_BOOT_USER", "ghost"));
    out.assert_code(1);
    assert!(out.stderr.contains("runtime user ghost not found"));
    // CM-01
    let help = run(r.command(BIN).arg("--help"));
    help.assert_code(0);
    for text in ["HERMES_GATEWAY_SLOTS", "HERMES_BOOT_USER", "Exit status:\n  0  "] {
        assert!(
            help.stdout.contains(text),
            "{text:?} missing from help\n{}",
            help.stdout
        );
    }
    let v = run(r.command(BIN).arg("--version"));
    v.assert_code(0);
    assert_eq!(
        v.stdout,
        format!("supervise-perms {}\n", env!("CARGO_PKG_VERSION"))
    );
    let bad = run(r.command(BIN).arg("--nope"));
    bad.assert_code(2);
    assert!(bad.stderr.contains("Usage"));
    run(r.command(BIN).arg("stray")).assert_code(2);
}

#[test]
fn group_is_read_at_run_time_after_a_remap() {
    let r = setup();
    fake_service(&r, "main-hermes");
    r.write(
        "/etc/passwd",
        "root:x:0:0::/root:/bin/sh\nhermes:x:1000:1234::/opt/data:/bin/sh\n",
    );
    r.write("/etc/group", "root:x:0:\nhermes:x:1234:\n");
    let out = run(&mut r.command(BIN));
    out.assert_code(0);
    assert_eq!(r.owner(&format!("{SD}/main-hermes/supervise")), (0, 1234));
    // A gid without a name is reported by number.
    r.write("/etc/group", "root:x:0:\n");
    let out = run(&mut r.command(BIN));
    assert_eq!(
        out.stdout,
        "[supervise-perms] granted group 1234 control of static s6-rc services\n"
    );
}

#[test]
fn dry_run_changes_nothing() {
    let r = setup();
    fake_service(&r, "dashboard");
    let out = run(r.command(BIN).arg("--dry-run"));
    out.assert_code(0);
    assert!(
        out.stdout.contains(&format!(
            "would chown {SD}/dashboard/supervise 0:0 -> 0:{HERMES_GID}"
        )),
        "{}",
        out.stdout
    );
    assert!(out
        .stdout
        .contains(&format!("would chmod {SD}/dashboard/supervise 0700 -> 0710")));
    assert!(
        out.stdout
            .ends_with("[supervise-perms] Dry run complete; 8 changes planned\n"),
        "{}",
        out.stdout
    );
    assert_eq!(r.owner(&format!("{SD}/dashboard/supervise")), (0, 0));
    assert_eq!(r.mode(&format!("{SD}/dashboard/supervise")), 0o700);
    assert_eq!(r.mode(&format!("{SD}/dashboard/supervise/control")), 0o600);
}

#[test]
fn runtime_user_can_control_services_a_real_s6_supervise_created() {
    let r = setup();
    for s in ["dashboard", "main-hermes"] {
        r.write(&format!("{SD}/{s}/run"), "#!/bin/sh\nexec sleep 600\n");
        r.chmod(&format!("{SD}/{s}/run"), 0o755);
        r.write(&format!("{SD}/{s}/down"), "");
    }
    // s6-svscan on the servicedirs themselves: its s6-supervise processes create supervise/ (root 0700).
    let sd = r.path(SD);
    let _svscan = Svscan::start(&sd);
    for s in ["dashboard", "main-hermes"] {
        wait_until(Duration::from_secs(15), || {
            r.exists(&format!("{SD}/{s}/supervise/status"))
        });
    }
    let main = r.path(&format!("{SD}/main-hermes"));
    let dash = r.path(&format!("{SD}/dashboard"));
    let hermes = |tool: &str, args: &[&OsStr]| tool_as(HERMES_UID, HERMES_GID, tool, args);
    let (code, out) = hermes("s6-svstat", &[main.as_os_str()]);
    assert_ne!(code, Some(0), "locked out before: {out}");
    assert!(out.contains("Permission denied"), "{out}");

    let out = run(&mut r.command(BIN));
    out.assert_code(0);
    assert_eq!(out.stdout, SUMMARY);

    for svc in [&main, &dash] {
        let (code, out) = hermes("s6-svstat", &[svc.as_os_str()]);
        assert_eq!(code, Some(0), "{out}");
        assert!(out.starts_with("down"), "{out}");
        let (code, out) = hermes("s6-svok", &[svc.as_os_str()]);
        assert_eq!(code, Some(0), "{out}");
    }
    let (code, out) = hermes("s6-svc", &[OsStr::new("-u"), main.as_os_str()]);
    assert_eq!(code, Some(0), "{out}");
    wait_until(Duration::from_secs(10), || {
        hermes("s6-svstat", &[main.as_os_str()]).1.starts_with("up ")
    });
    let (code, out) = hermes("s6-svc", &[OsStr::new("-d"), main.as_os_str()]);
    assert_eq!(code, Some(0), "{out}");
    wait_until(Duration::from_secs(10), || {
        hermes("s6-svstat", &[main.as_os_str()]).1.starts_with("down")
    });
    // Event subscription is not granted: the group cannot put a FIFO into event/, where root's
    // s6-supervise would write through it (or through a symlink planted in its place).
    let (code, _) = hermes(
        "s6-svwait",
        &[
            OsStr::new("-u"),
            OsStr::new("-t"),
            OsStr::new("1000"),
            main.as_os_str(),
        ],
    );
    assert_ne!(code, Some(0), "s6-svwait must not be able to subscribe");
    let planted = r.path(&format!("{SD}/main-hermes/event/ftrig1:@planted"));
    let (code, _) = tool_as(
        HERMES_UID,
        HERMES_GID,
        "ln",
        &[OsStr::new("-s"), OsStr::new("/etc/passwd"), planted.as_os_str()],
    );
    assert_ne!(code, Some(0));
    assert!(
        std::fs::symlink_metadata(&planted).is_err(),
        "the group planted an event entry"
    );

    for s in ["dashboard", "main-hermes"] {
        for f in ["lock", "status"] {
            let p = format!("{SD}/{s}/supervise/{f}");
            assert_eq!(r.owner(&p), (0, 0), "{p}");
            assert_eq!(r.mode(&p), 0o644, "{p}");
        }
        assert_eq!(r.owner(&format!("{SD}/{s}/supervise")), (0, HERMES_GID));
        assert_eq!(r.mode(&format!("{SD}/{s}/supervise")), 0o710);
    }
    // The group may not create entries in supervise/ (only root's s6-supervise writes there).
    let (code, _) = tool_as(
        HERMES_UID,
        HERMES_GID,
        "s6-mkfifodir",
        &[r.path(&format!("{SD}/main-hermes/supervise/x")).as_os_str()],
    );
    assert_ne!(code, Some(0));
    assert!(!r.exists(&format!("{SD}/main-hermes/supervise/x")));
}

#[test]
fn legacy_mode_also_grants_event_subscription() {
    let r = setup();
    fake_service(&r, "dashboard");
    let mut cmd = r.command(BIN);
    cmd.env("HERMES_GATEWAY_SLOTS", "user-owned");
    let out = run(&mut cmd);
    out.assert_code(0);
    assert_granted_with(&r, "dashboard", LEGACY_EVENT);
}

#[test]
fn json_plan_of_a_dry_run_is_the_json_of_the_real_run() {
    let r = setup();
    fake_service(&r, "dashboard");
    fake_service(&r, "main-hermes");
    let plan = run(r.command(BIN).args(["--dry-run", "--json"]));
    plan.assert_code(0);
    let real = run(r.command(BIN).arg("--json"));
    real.assert_code(0);
    let planned = plan.json_changes();
    assert_eq!(planned.len(), 16, "{}", plan.stdout);
    assert_eq!(
        planned,
        real.json_changes(),
        "plan:\n{}\nreal:\n{}",
        plan.stdout,
        real.stdout
    );
    let chmod = planned
        .iter()
        .find(|c| c["action"] == "chmod" && c["path"] == format!("{SD}/dashboard/supervise"))
        .expect("supervise/ chmod");
    assert_eq!(
        (&chmod["old_mode"], &chmod["new_mode"]),
        (&"0700".into(), &"0710".into())
    );
    assert_eq!(real.stderr, SUMMARY, "the human lines go to stderr");
    let summary = real.json_lines().pop().unwrap();
    assert_eq!(
        (summary["exit"].as_u64(), summary["dry_run"].as_bool()),
        (Some(0), Some(false))
    );
    // Nothing left to change: the second run's JSON says so.
    let again = run(r.command(BIN).arg("--json"));
    assert!(again.json_changes().is_empty(), "{}", again.stdout);
}
