//! Slots made by `reconcile-profiles` under a real `s6-svscan` (Debian's s6): the runtime user controls
//! them, and `register`/`unregister` change supervision without a restart (SPEC RP-11, RP-18, RP-19).

use std::ffi::OsStr;
use std::time::Duration;

use test_support::s6::{install_commands, supervisor_running, tool_as, wait_until, Svscan};
use test_support::{run, run_as, Run, TempRoot, HERMES_GID, HERMES_UID};

const BIN: &str = env!("CARGO_BIN_EXE_reconcile-profiles");
const LIMIT: Duration = Duration::from_secs(15);

fn setup() -> TempRoot {
    let r = TempRoot::for_reconcile();
    install_commands(&r);
    r
}

fn as_hermes(name: &str, args: &[&OsStr]) -> (Option<i32>, String) {
    tool_as(HERMES_UID, HERMES_GID, name, args)
}

/// Replaces a slot's scripts by harmless ones (the rendered ones exec `/command/with-contenv` and
/// `hermes`, which only exist in the image), keeping owner and mode.
fn harmless_scripts(r: &TempRoot, slot: &str) {
    for (rel, body) in [
        ("run", "#!/bin/sh\nexec sleep 600\n"),
        ("log/run", "#!/bin/sh\nexec cat >/dev/null\n"),
    ] {
        let p = format!("{slot}/{rel}");
        let (owner, mode) = (r.owner(&p), r.mode(&p));
        r.write(&p, body);
        r.chown(&p, owner.0, owner.1);
        r.chmod(&p, mode);
    }
}

fn status_file(r: &TempRoot, slot: &str) -> std::path::PathBuf {
    r.path(&format!("{slot}/supervise/status"))
}

/// Polls `s6-svstat` as the runtime user until its output starts with `prefix` (what `s6-svwait` does,
/// which needs event subscription the runtime user does not have on root-owned slots).
fn wait_status(slot: &std::path::Path, prefix: &str) {
    wait_until(LIMIT, || {
        as_hermes("s6-svstat", &[slot.as_os_str()]).1.starts_with(prefix)
    });
}

#[test]
fn runtime_user_controls_root_owned_slots_but_cannot_subscribe_to_events() {
    let r = setup();
    run(&mut r.command(BIN)).assert_code(0);
    harmless_scripts(&r, "/run/service/gateway-default");
    let _svscan = Svscan::start(&r.path("/run/service"));
    let slot = r.path("/run/service/gateway-default");
    wait_until(LIMIT, || status_file(&r, "/run/service/gateway-default").exists());
    let (code, out) = as_hermes("s6-svstat", &[slot.as_os_str()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("down"), "{out}");
    let (code, out) = as_hermes("s6-svok", &[slot.as_os_str()]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = as_hermes("s6-svc", &[OsStr::new("-u"), slot.as_os_str()]);
    assert_eq!(code, Some(0), "{out}");
    wait_status(&slot, "up ");
    let (code, out) = as_hermes("s6-svc", &[OsStr::new("-d"), slot.as_os_str()]);
    assert_eq!(code, Some(0), "{out}");
    wait_status(&slot, "down");
    // event/ is closed to the group: s6-supervise writes through whatever it finds there, as root.
    let (code, out) = as_hermes(
        "s6-svwait",
        &[
            OsStr::new("-u"),
            OsStr::new("-t"),
            OsStr::new("100"),
            slot.as_os_str(),
        ],
    );
    assert_eq!(code, Some(111), "{out}");
    assert!(out.contains("Permission denied"), "{out}");
    // The skeleton stays as built once s6-supervise runs on it.
    assert_eq!(r.owner("/run/service/gateway-default/supervise"), (0, HERMES_GID));
    assert_eq!(r.mode("/run/service/gateway-default/supervise"), 0o710);
    assert_eq!(r.mode("/run/service/gateway-default/supervise/control"), 0o620);
    assert_eq!(r.mode("/run/service/gateway-default/event"), 0o710);
    assert_eq!(r.owner("/run/service/gateway-default/supervise/status"), (0, 0));
}

#[test]
fn runtime_user_controls_boot_slots_and_the_skeleton_is_what_allows_it() {
    let r = setup();
    run(r.command(BIN).env("HERMES_GATEWAY_SLOTS", "user-owned")).assert_code(0);
    harmless_scripts(&r, "/run/service/gateway-default");
    // The same service without the skeleton: s6-supervise then creates supervise/ root-only.
    r.mkdir("/run/service/bare");
    r.write("/run/service/bare/run", "#!/bin/sh\nexec sleep 600\n");
    r.chmod("/run/service/bare/run", 0o755);
    r.write("/run/service/bare/down", "");

    let _svscan = Svscan::start(&r.path("/run/service"));
    let slot = r.path("/run/service/gateway-default");
    let bare = r.path("/run/service/bare");
    wait_until(LIMIT, || status_file(&r, "/run/service/gateway-default").exists());
    wait_until(LIMIT, || status_file(&r, "/run/service/bare").exists());

    let (code, out) = as_hermes("s6-svstat", &[slot.as_os_str()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with("down"),
        "prior state None: the slot has a down file: {out}"
    );

    let (code, out) = as_hermes("s6-svc", &[OsStr::new("-u"), slot.as_os_str()]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = as_hermes(
        "s6-svwait",
        &[
            OsStr::new("-u"),
            OsStr::new("-t"),
            OsStr::new("10000"),
            slot.as_os_str(),
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    let (_, out) = as_hermes("s6-svstat", &[slot.as_os_str()]);
    assert!(out.starts_with("up "), "{out}");
    let (code, out) = as_hermes("s6-svok", &[slot.as_os_str()]);
    assert_eq!(code, Some(0), "{out}");

    let (code, out) = as_hermes("s6-svc", &[OsStr::new("-d"), slot.as_os_str()]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = as_hermes(
        "s6-svwait",
        &[
            OsStr::new("-d"),
            OsStr::new("-t"),
            OsStr::new("10000"),
            slot.as_os_str(),
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    let (_, out) = as_hermes("s6-svstat", &[slot.as_os_str()]);
    assert!(out.starts_with("down"), "{out}");

    // Without the skeleton the runtime user is locked out.
    let (code, out) = as_hermes("s6-svstat", &[bare.as_os_str()]);
    assert_ne!(code, Some(0));
    assert!(out.contains("Permission denied"), "{out}");
    let (code, out) = as_hermes("s6-svc", &[OsStr::new("-u"), bare.as_os_str()]);
    assert_ne!(code, Some(0));
    assert!(out.contains("Permission denied"), "{out}");
}

fn register_as_hermes(r: &TempRoot, args: &[&str]) -> Run {
    let mut cmd = r.command(BIN);
    cmd.arg("register").args(args);
    run_as(&mut cmd, HERMES_UID, HERMES_GID)
}

#[test]
fn register_and_unregister_while_svscan_runs() {
    let r = setup();
    let scandir = r.path("/run/service");
    // As in s6-overlay, whose image ships the scan directory's `.s6-svscan/` (root, 0755); s6-svscan
    // creates its control FIFO and lock in it (a missing one it would create 0700).
    r.mkdir("/run/service/.s6-svscan");
    r.chmod("/run/service/.s6-svscan", 0o755);
    let _svscan = Svscan::start(&scandir);
    // With user-owned slots the boot step hands the scan directory and s6-svscan's control FIFO to the
    // runtime user, who then registers slots itself (RP-18/RP-19 as upstream).
    run(r.command(BIN).env("HERMES_GATEWAY_SLOTS", "user-owned")).assert_code(0);

    let out = register_as_hermes(&r, &["phase3test"]);
    out.assert_code(0);
    assert_eq!(out.stdout, "reconcile: registered gateway-phase3test (up)\n");
    let slot = r.path("/run/service/gateway-phase3test");
    assert!(r.exists("/run/service/gateway-phase3test/run"));
    assert!(r.exists("/run/service/gateway-phase3test/log/run"));
    assert!(!r.exists("/run/service/gateway-phase3test/down"));
    assert_eq!(
        r.owner("/run/service/gateway-phase3test/run"),
        (HERMES_UID, HERMES_GID)
    );
    // Supervised without restarting s6-svscan.
    wait_until(LIMIT, || as_hermes("s6-svok", &[slot.as_os_str()]).0 == Some(0));
    let (code, out) = as_hermes("s6-svstat", &[slot.as_os_str()]);
    assert_eq!(code, Some(0), "{out}");

    // A second registration of the same profile.
    let again = register_as_hermes(&r, &["phase3test"]);
    again.assert_code(3);
    assert!(again
        .stderr
        .contains("reconcile: error: profile gateway 'phase3test' already registered at /run/service/gateway-phase3test"));

    // --down
    let out = register_as_hermes(&r, &["quiet", "--down"]);
    out.assert_code(0);
    assert_eq!(out.stdout, "reconcile: registered gateway-quiet (down)\n");
    assert!(r.exists("/run/service/gateway-quiet/down"));

    let mut cmd = r.command(BIN);
    cmd.args(["unregister", "phase3test"]);
    let out = run_as(&mut cmd, HERMES_UID, HERMES_GID);
    out.assert_code(0);
    assert!(!r.exists("/run/service/gateway-phase3test"));
    assert!(!r.exists("/run/service/.gateway-phase3test.tmp.old"));
    assert!(
        !supervisor_running(&scandir, "gateway-phase3test"),
        "its s6-supervise is gone"
    );
    assert_eq!(out.stdout.matches("WARNING").count(), 0, "{}", out.stdout);
    // The other slot is still supervised.
    assert!(supervisor_running(&scandir, "gateway-quiet"));

    let mut cmd = r.command(BIN);
    cmd.args(["unregister", "phase3test"]);
    let out = run_as(&mut cmd, HERMES_UID, HERMES_GID);
    out.assert_code(0);
    assert_eq!(out.stdout, "reconcile: gateway-phase3test is not registered\n");
}

#[test]
fn the_longest_accepted_name_registers_and_unregisters_completely() {
    let r = setup();
    let scandir = r.path("/run/service");
    r.mkdir("/run/service/.s6-svscan");
    r.chmod("/run/service/.s6-svscan", 0o755);
    let _svscan = Svscan::start(&scandir);
    run(&mut r.command(BIN)).assert_code(0);
    // 238 bytes: `.gateway-<p>.tmp.old`, the longest name derived from it, is exactly NAME_MAX.
    let name = "l".repeat(238);
    r.write(&format!("/opt/data/profiles/{name}/SOUL.md"), "# long\n");
    let out = run(r.command(BIN).args(["register", &name, "--down"]));
    out.assert_code(0);
    assert!(r.exists(&format!("/run/service/gateway-{name}/run")));
    let out = run(r.command(BIN).args(["unregister", &name]));
    out.assert_code(0);
    let left: Vec<String> = std::fs::read_dir(&scandir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("gateway-l"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn register_rolls_back_when_s6_svscanctl_fails() {
    // No s6-svscan runs on this scan directory: s6-svscanctl cannot reach it.
    let r = setup();
    let out = run(r.command(BIN).args(["register", "lonely"]));
    out.assert_code(1);
    assert!(
        out.stderr.starts_with("reconcile: error: s6-svscanctl failed: "),
        "{}",
        out.stderr
    );
    assert!(!r.exists("/run/service/gateway-lonely"));
    assert!(!r.exists("/run/service/.gateway-lonely.tmp"));
    // The plan of a successful registration.
    let dry = run(r.command(BIN).args(["register", "lonely", "--dry-run"]));
    dry.assert_code(0);
    assert!(
        dry.stdout
            .contains("would publish slot /run/service/gateway-lonely (up)"),
        "{}",
        dry.stdout
    );
    assert!(dry
        .stdout
        .contains("would run /command/s6-svscanctl -a /run/service"));
    assert!(!r.exists("/run/service/gateway-lonely"));
}

#[test]
fn register_and_unregister_validate_names() {
    let r = setup();
    for (cmd, name) in [
        ("register", "Bad"),
        ("register", ""),
        ("unregister", "../escape"),
        ("register", "default.x"),
    ] {
        let out = run(r.command(BIN).args([cmd, name]));
        out.assert_code(2);
        assert!(
            out.stderr.starts_with("reconcile: error: profile name"),
            "{}",
            out.stderr
        );
    }
    for n in [239, 243, 251, 252] {
        let long = "a".repeat(n);
        let out = run(r.command(BIN).args(["register", &long]));
        out.assert_code(2);
        assert_eq!(
            out.stderr,
            format!("reconcile: error: profile name too long ({n} > 238)\n")
        );
    }
    let slots: Vec<_> = std::fs::read_dir(r.path("/run/service")).unwrap().collect();
    assert!(slots.is_empty());
}

#[test]
fn register_refuses_any_existing_entry_and_unregister_removes_a_planted_symlink() {
    let r = setup();
    r.write("/victim/keep", "k");
    r.symlink(r.path("/victim"), "/run/service/gateway-planted");
    let out = run(r.command(BIN).args(["register", "planted"]));
    out.assert_code(3);
    assert!(r.is_symlink("/run/service/gateway-planted"));
    // Unregister removes the entry itself (no s6 tool is pointed through it) and never its target.
    let out = run(r.command(BIN).args(["unregister", "planted"]));
    out.assert_code(0);
    assert!(!r.exists("/run/service/gateway-planted"));
    assert_eq!(r.read("/victim/keep"), "k");
}

#[test]
fn unregister_of_an_unsupervised_slot_warns_per_failed_s6_step_and_still_removes_it() {
    let r = setup();
    run(&mut r.command(BIN)).assert_code(0);
    let out = run(r.command(BIN).args(["unregister", "default"]));
    out.assert_code(0);
    let warnings: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("reconcile: WARNING: "))
        .collect();
    assert_eq!(warnings.len(), 3, "{}", out.stdout);
    assert!(warnings[0].contains("s6-svc -d /run/service/gateway-default failed: "));
    assert!(warnings[1].contains("s6-svwait -D /run/service/gateway-default failed: "));
    assert!(warnings[2].contains("s6-svscanctl -an /run/service failed: "));
    assert!(out.stdout.ends_with("reconcile: unregistered gateway-default\n"));
    assert!(!r.exists("/run/service/gateway-default"));
    assert!(!r.exists("/run/service/.gateway-default.tmp.old"));
}
