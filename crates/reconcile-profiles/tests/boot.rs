//! Boot mode of `reconcile-profiles` against a temporary root (SPEC RP-01 … RP-17, CM-01, CM-11).

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use test_support::{run, Run, TempRoot, HERMES_GID, HERMES_UID};

const BIN: &str = env!("CARGO_BIN_EXE_reconcile-profiles");
const HG: (u32, u32) = (HERMES_UID, HERMES_GID);

/// A temp root with the scan directory, the data volume and a container started as `gateway`-less
/// `sleep` (no legacy migration unless a test fakes /proc).
fn setup() -> TempRoot {
    TempRoot::for_reconcile()
}

fn boot(r: &TempRoot) -> Run {
    run(&mut r.command(BIN))
}

fn profile(r: &TempRoot, name: &str, state: Option<&str>) {
    r.write(&format!("/opt/data/profiles/{name}/SOUL.md"), "soul\n");
    if let Some(s) = state {
        r.write(
            &format!("/opt/data/profiles/{name}/gateway_state.json"),
            format!("{{\"gateway_state\":\"{s}\"}}"),
        );
    }
}

fn lines_with<'a>(out: &'a str, needle: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn every_valid_profile_gets_a_slot_and_each_bad_one_one_warning() {
    let r = setup();
    r.write("/opt/data/gateway_state.json", r#"{"gateway_state":"running"}"#);
    profile(&r, "coder", Some("running"));
    profile(&r, "writer", Some("stopped"));
    profile(&r, "default", Some("running"));
    profile(&r, "Bad", None);
    profile(&r, "corrupt", None);
    r.write("/opt/data/profiles/corrupt/gateway_state.json", "{not json");
    profile(&r, "unreadable", None);
    nix::unistd::mkfifo(
        &r.path("/opt/data/profiles/unreadable/gateway_state.json"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    r.mkdir("/opt/data/profiles/nosoul");
    r.write("/opt/data/profiles/plainfile", "x");
    r.mkdir("/elsewhere/linked");
    r.write("/elsewhere/linked/SOUL.md", "x");
    r.symlink(r.path("/elsewhere/linked"), "/opt/data/profiles/linked");

    let out = boot(&r);
    out.assert_code(0);
    let report: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("reconcile: profile="))
        .collect();
    assert_eq!(
        report,
        [
            "reconcile: profile=default prior_state=running action=started",
            "reconcile: profile=coder prior_state=running action=started",
            "reconcile: profile=corrupt prior_state=None action=registered",
            "reconcile: profile=unreadable prior_state=None action=registered",
            "reconcile: profile=writer prior_state=stopped action=registered",
        ],
        "{}",
        out.stdout
    );
    for p in ["default", "coder", "corrupt", "unreadable", "writer"] {
        assert!(r.exists(&format!("/run/service/gateway-{p}/run")), "{p}");
    }
    for p in ["Bad", "nosoul", "linked", "plainfile"] {
        assert!(!r.exists(&format!("/run/service/gateway-{p}")), "{p}");
    }
    assert!(!r.exists("/run/service/gateway-default/down"));
    assert!(!r.exists("/run/service/gateway-coder/down"));
    assert!(r.exists("/run/service/gateway-writer/down"));
    assert!(r.exists("/run/service/gateway-corrupt/down"));

    let warnings: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("reconcile: WARNING:"))
        .collect();
    assert_eq!(warnings.len(), 5, "{}", out.stdout);
    assert_eq!(
        lines_with(
            &out.stdout,
            "skipping profile Bad: profile name must match [a-z0-9][a-z0-9_-]*, got 'Bad'"
        )
        .len(),
        1
    );
    assert_eq!(
        lines_with(
            &out.stdout,
            "ignoring /opt/data/profiles/default/: the name default is reserved for the root profile"
        )
        .len(),
        1
    );
    assert_eq!(
        lines_with(
            &out.stdout,
            "refusing profile through symlinked path /opt/data/profiles/linked"
        )
        .len(),
        1
    );
    assert_eq!(
        lines_with(
            &out.stdout,
            "could not read /opt/data/profiles/corrupt/gateway_state.json; treating as no prior state"
        )
        .len(),
        1
    );
    assert_eq!(
        lines_with(
            &out.stdout,
            "could not read /opt/data/profiles/unreadable/gateway_state.json; treating as no prior state"
        )
        .len(),
        1
    );
    // Nothing was created through the symlinked profile.
    assert!(!r.exists("/elsewhere/linked/logs"));
}

/// Owner and mode of every entry of a slot, checked against `(rel, owner, mode)` rows.
fn assert_table(r: &TempRoot, slot: &str, table: &[(&str, (u32, u32), u32)]) {
    for (rel, owner, mode) in table {
        let p = format!("{slot}{rel}");
        assert_eq!(r.owner(&p), *owner, "{p}");
        assert_eq!(r.mode(&p), *mode, "{p}: {:o}", r.mode(&p));
    }
}

const ROOT: (u32, u32) = (0, 0);
const ROOT_G: (u32, u32) = (0, HERMES_GID);

#[test]
fn slots_are_roots_by_default_and_the_runtime_group_gets_control_only() {
    let r = setup();
    profile(&r, "coder", Some("stopped"));
    let out = boot(&r);
    out.assert_code(0);
    assert_eq!(out.stdout.matches("WARNING").count(), 0, "{}", out.stdout);
    let slot = "/run/service/gateway-coder";
    assert_table(
        &r,
        slot,
        &[
            ("", ROOT, 0o755),
            ("/log", ROOT, 0o755),
            ("/type", ROOT, 0o644),
            ("/down", ROOT, 0o644),
            ("/run", ROOT, 0o755),
            ("/finish", ROOT, 0o755),
            ("/log/run", ROOT, 0o755),
            ("/supervise", ROOT_G, 0o710),
            ("/event", ROOT_G, 0o710),
            ("/supervise/event", ROOT_G, 0o710),
            ("/supervise/control", ROOT_G, 0o620),
            ("/log/supervise", ROOT_G, 0o710),
            ("/log/event", ROOT_G, 0o710),
            ("/log/supervise/event", ROOT_G, 0o710),
            ("/log/supervise/control", ROOT_G, 0o620),
            ("/../gateway-default/run", ROOT, 0o755),
            ("/../gateway-default/supervise/control", ROOT_G, 0o620),
        ],
    );
    // Root's scripts name the interpreter and the privilege drop by absolute path: the container PATH
    // has a directory the runtime user writes before /bin.
    let run_script = r.read(&format!("{slot}/run"));
    assert!(
        run_script.starts_with("#!/command/with-contenv /bin/sh\n"),
        "{run_script}"
    );
    assert!(
        run_script.ends_with("\nexec /command/s6-setuidgid hermes hermes -p coder gateway run --replace\n"),
        "{run_script}"
    );
    let log_run = r.read(&format!("{slot}/log/run"));
    assert!(
        log_run.ends_with("\nexec /command/s6-setuidgid hermes s6-log 1 n10 s1000000 T \"$dir\"\n"),
        "{log_run}"
    );
    assert!(r
        .read(&format!("{slot}/finish"))
        .starts_with("#!/command/with-contenv /bin/sh\n"));
    // RP-01's hand-over happens only with user-owned slots.
    assert_eq!(r.owner("/run/service"), ROOT);
    assert_eq!(r.mode("/run/service"), 0o755);
}

#[test]
fn user_owned_switch_restores_the_upstream_owner_table_and_warns_once() {
    let r = setup();
    profile(&r, "coder", Some("stopped"));
    let out = run(r.command(BIN).env("HERMES_GATEWAY_SLOTS", "user-owned"));
    out.assert_code(0);
    let warnings = lines_with(&out.stdout, "reconcile: WARNING:");
    assert_eq!(warnings.len(), 1, "{}", out.stdout);
    assert!(
        warnings[0].contains("HERMES_GATEWAY_SLOTS=user-owned")
            && warnings[0].contains("hermes can gain root"),
        "{}",
        warnings[0]
    );
    let slot = "/run/service/gateway-coder";
    assert_table(
        &r,
        slot,
        &[
            ("", HG, 0o755),
            ("/log", HG, 0o755),
            ("/type", HG, 0o644),
            ("/down", HG, 0o644),
            ("/run", HG, 0o755),
            ("/finish", HG, 0o755),
            ("/log/run", HG, 0o755),
            ("/supervise", HG, 0o755),
            ("/event", HG, 0o3730),
            ("/supervise/event", HG, 0o3730),
            ("/supervise/control", HG, 0o660),
            ("/log/supervise", HG, 0o755),
            ("/log/event", HG, 0o3730),
            ("/log/supervise/event", HG, 0o3730),
            ("/log/supervise/control", HG, 0o660),
            ("/../gateway-default/supervise/control", HG, 0o660),
        ],
    );
    let run_script = r.read(&format!("{slot}/run"));
    assert!(run_script.starts_with("#!/command/with-contenv sh\n"));
    // Owned by the runtime user, so `hermes` (the exec shim) is run directly.
    assert!(
        run_script.ends_with("\nexec hermes -p coder gateway run --replace\n"),
        "{run_script}"
    );
    assert!(r
        .read("/run/service/gateway-default/run")
        .ends_with("\nexec hermes gateway run --replace\n"));
    assert!(r
        .read(&format!("{slot}/log/run"))
        .contains("$HERMES_HOME/logs/gateways/coder"));
    assert_eq!(r.read(&format!("{slot}/type")), "longrun\n");
    // The scan directory is handed to the runtime user (RP-01).
    assert_eq!(r.owner("/run/service"), HG);
}

fn scandir_with_leftovers() -> TempRoot {
    let r = setup();
    r.mkdir("/run/service/.gateway-old.tmp/supervise/deep");
    r.write("/run/service/.gateway-old.tmp/supervise/deep/lock", "");
    r.mkdir("/run/service/.gateway-x.tmp.old/log");
    r.write("/run/service/.gateway-y.tmp.123", "");
    r.mkdir("/run/service/.other.tmp");
    r.mkdir("/run/service/.s6-svscan");
    r.write("/run/service/.s6-svscan/lock", "");
    nix::unistd::mkfifo(
        &r.path("/run/service/.s6-svscan/control"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    // A leftover that is a symlink is removed itself; its target survives.
    r.mkdir("/victim");
    r.write("/victim/keep", "k");
    r.symlink(r.path("/victim"), "/run/service/.gateway-link.tmp");
    r
}

fn assert_swept(r: &TempRoot) {
    for gone in [
        ".gateway-old.tmp",
        ".gateway-x.tmp.old",
        ".gateway-y.tmp.123",
        ".gateway-link.tmp",
    ] {
        assert!(!r.exists(&format!("/run/service/{gone}")), "{gone}");
    }
    assert!(r.exists("/run/service/.other.tmp"));
    assert_eq!(r.read("/victim/keep"), "k");
    let names: Vec<String> = std::fs::read_dir(r.path("/run/service"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".gateway-"))
        .collect();
    assert!(names.is_empty(), "no staging left: {names:?}");
}

#[test]
fn scandir_preparation_keeps_the_tree_roots_by_default() {
    let r = scandir_with_leftovers();
    // As a user-owned boot of an earlier container generation would have left it.
    r.chown("/run/service", HERMES_UID, HERMES_GID);
    r.chmod("/run/service", 0o777);
    r.chown("/run/service/.s6-svscan/control", HERMES_UID, HERMES_GID);
    boot(&r).assert_code(0);
    assert_swept(&r);
    assert_eq!(r.owner("/run/service"), (0, 0));
    assert_eq!(r.mode("/run/service"), 0o755, "no write for group or others");
    assert_eq!(r.owner("/run/service/.s6-svscan"), (0, 0));
    assert_eq!(r.owner("/run/service/.s6-svscan/control"), (0, 0));
    assert_eq!(r.owner("/run/service/.s6-svscan/lock"), (0, 0));
}

#[test]
fn scandir_preparation_sweeps_leftovers_and_hands_over_control() {
    let r = scandir_with_leftovers();
    run(r.command(BIN).env("HERMES_GATEWAY_SLOTS", "user-owned")).assert_code(0);
    assert_swept(&r);
    assert_eq!(r.owner("/run/service"), HG);
    assert_eq!(r.owner("/run/service/.s6-svscan/control"), HG);
    assert_eq!(r.owner("/run/service/.s6-svscan/lock"), HG);
    assert_eq!(
        r.owner("/run/service/.s6-svscan"),
        (0, 0),
        "the directory itself stays root's"
    );
}

#[test]
fn an_existing_slot_is_replaced_in_one_step() {
    let r = setup();
    r.write(
        "/opt/data/gateway_state.json",
        r#"{"desired_state":"stopped","gateway_state":"running"}"#,
    );
    r.mkdir("/run/service/gateway-default/supervise");
    r.write("/run/service/gateway-default/run", "#!/bin/sh\nold\n");
    r.write("/run/service/gateway-default/marker", "old slot");
    let before = std::fs::metadata(r.path("/run/service/gateway-default"))
        .unwrap()
        .ino();

    let out = boot(&r);
    out.assert_code(0);
    assert!(out
        .stdout
        .contains("reconcile: profile=default prior_state=stopped action=registered\n"));
    let after = std::fs::metadata(r.path("/run/service/gateway-default"))
        .unwrap()
        .ino();
    assert_ne!(before, after, "a new slot directory took the name");
    assert!(!r.exists("/run/service/gateway-default/marker"));
    assert!(r.exists("/run/service/gateway-default/down"));
    assert!(r
        .read("/run/service/gateway-default/run")
        .contains("gateway run --replace"));
    let leftovers: Vec<_> = std::fs::read_dir(r.path("/run/service"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.') && n != ".profile-registrar.lock")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(out.stdout.matches("WARNING").count(), 0, "{}", out.stdout);
}

#[test]
fn stale_runtime_files_are_removed_without_following_symlinks() {
    let r = setup();
    r.write("/opt/data/gateway.pid", "123");
    r.write("/opt/data/processes.json", "[]");
    profile(&r, "ghost", Some("stopped"));
    r.write("/opt/data/profiles/ghost/gateway.pid", "456");
    r.write("/victim", "keep");
    r.symlink(r.path("/victim"), "/opt/data/profiles/ghost/processes.json");
    let out = boot(&r);
    out.assert_code(0);
    for gone in [
        "/opt/data/gateway.pid",
        "/opt/data/processes.json",
        "/opt/data/profiles/ghost/gateway.pid",
        "/opt/data/profiles/ghost/processes.json",
    ] {
        assert!(!r.exists(gone), "{gone}");
    }
    assert_eq!(r.read("/victim"), "keep");
    assert!(r.exists("/run/service/gateway-ghost/down"));
}

fn fake_proc(r: &TempRoot, pid1: &[u8], others: &[(u32, &[u8])]) {
    r.write("/proc/1/cmdline", pid1);
    for (pid, cmdline) in others {
        r.write(&format!("/proc/{pid}/cmdline"), cmdline);
    }
}

#[test]
fn legacy_gateway_run_is_migrated_to_a_running_supervised_gateway() {
    let r = setup();
    fake_proc(
        &r,
        b"s6-svscan\0-d4\0--\0/run/service\0",
        &[
            (9, b"/bin/sh\0-c\0sleep 1\0"),
            (
                57,
                b"/bin/sh\0-e\0/run/s6/basedir/scripts/rc.init\0top\0/opt/hermes/docker/bin/main-wrapper\0gateway\0run\0",
            ),
            (120, b"/opt/hermes/docker/bin/main-wrapper\0dashboard\0"),
        ],
    );
    let out = boot(&r);
    out.assert_code(0);
    assert!(out
        .stdout
        .contains("reconcile: profile=default prior_state=running action=started\n"));
    assert!(!r.exists("/run/service/gateway-default/down"));
    let state = r.read("/opt/data/gateway_state.json");
    let v: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(v["gateway_state"], "running");
    assert_eq!(v["desired_state"], "running");
    assert_eq!(v["migrated_from"], "legacy-container-cmd");
    assert!(v["timestamp"].is_u64());
    assert!(state.ends_with("}\n"));
    assert_eq!(r.owner("/opt/data/gateway_state.json"), HG);
    assert_eq!(r.mode("/opt/data/gateway_state.json"), 0o644);
}

#[test]
fn legacy_migration_respects_no_supervise_and_existing_state() {
    // --no-supervise on the command line.
    let r = setup();
    fake_proc(
        &r,
        b"/init\0/opt/hermes/docker/bin/main-wrapper\0gateway\0run\0--no-supervise\0",
        &[],
    );
    let out = boot(&r);
    out.assert_code(0);
    assert!(out
        .stdout
        .contains("profile=default prior_state=None action=registered"));
    assert!(!r.exists("/opt/data/gateway_state.json"));
    assert!(r.exists("/run/service/gateway-default/down"));

    // HERMES_GATEWAY_NO_SUPERVISE (T2).
    let r = setup();
    fake_proc(
        &r,
        b"/init\0/opt/hermes/docker/bin/main-wrapper\0gateway\0run\0",
        &[],
    );
    let out = run(r.command(BIN).env("HERMES_GATEWAY_NO_SUPERVISE", "TRUE"));
    out.assert_code(0);
    assert!(!r.exists("/opt/data/gateway_state.json"));
    assert!(out.stdout.contains("action=registered"));

    // A dangling symlink counts as an existing state file: nothing is written through it.
    let r = setup();
    fake_proc(
        &r,
        b"/init\0/opt/hermes/docker/bin/main-wrapper\0gateway\0run\0",
        &[],
    );
    r.symlink(r.path("/nowhere/state.json"), "/opt/data/gateway_state.json");
    let out = boot(&r);
    out.assert_code(0);
    assert!(r.is_symlink("/opt/data/gateway_state.json"));
    assert!(!r.exists("/nowhere"));
    assert!(out
        .stdout
        .contains("refusing read through symlinked path /opt/data/gateway_state.json"));
    assert!(out
        .stdout
        .contains("profile=default prior_state=None action=registered"));
}

#[test]
fn dashboard_container_registers_nothing() {
    let r = setup();
    profile(&r, "coder", Some("running"));
    fake_proc(
        &r,
        b"s6-svscan\0/run/service\0",
        &[(33, b"/bin/sh\0-e\0/run/s6/basedir/scripts/rc.init\0top\0/opt/hermes/docker/bin/main-wrapper\0dashboard\0--host\0 0.0.0.0\0")],
    );
    let out = run(r.command(BIN).env("HERMES_SKIP_PROFILE_RECONCILE", "0"));
    out.assert_code(0);
    assert_eq!(
        out.stdout,
        "reconcile: skipping (dashboard container — does not need per-profile gateways)\n"
    );
    let slots: Vec<_> = std::fs::read_dir(r.path("/run/service")).unwrap().collect();
    assert!(slots.is_empty());
    assert!(!r.exists("/opt/data/logs"));

    // `gateway run -p dashboard` is not a dashboard container.
    let r = setup();
    fake_proc(&r, b"/init\0main-wrapper\0gateway\0run\0-p\0dashboard\0", &[]);
    let out = boot(&r);
    assert!(out.stdout.contains("profile=default"), "{}", out.stdout);
}

#[test]
fn multiplex_flag_keeps_named_gateways_down_but_not_the_default() {
    let r = setup();
    r.write("/opt/data/gateway_state.json", r#"{"gateway_state":"running"}"#);
    r.write("/opt/data/config.yaml", "gateway:\n  multiplex_profiles: true\n");
    profile(&r, "coder", Some("running"));
    let out = boot(&r);
    assert!(out
        .stdout
        .contains("profile=default prior_state=running action=started"));
    assert!(out
        .stdout
        .contains("profile=coder prior_state=running action=registered"));
    assert!(r.exists("/run/service/gateway-coder/down"));

    // The environment wins over the file.
    let out = run(r.command(BIN).env("GATEWAY_MULTIPLEX_PROFILES", " OFF "));
    assert!(
        out.stdout
            .contains("profile=coder prior_state=running action=started"),
        "{}",
        out.stdout
    );
    assert!(!r.exists("/run/service/gateway-coder/down"));
}

#[test]
fn boot_log_gets_one_line_per_action_and_rotates_at_256_kib() {
    let r = setup();
    profile(&r, "coder", Some("running"));
    r.write(
        "/opt/data/profiles/coder/state/gateway.lifecycle.json",
        r#"{"phase":"running"}"#,
    );
    r.write("/opt/data/state/gateway.lifecycle.json", r#"{"phase":"exited"}"#);
    boot(&r).assert_code(0);
    let log = r.read("/opt/data/logs/container-boot.log");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines[0].ends_with(" profile=default prior_state=None action=registered prior_exit=clean"),
        "{log}"
    );
    assert!(
        lines[1].ends_with(" profile=coder prior_state=running action=started prior_exit=unclean"),
        "{log}"
    );
    let ts0 = lines[0].split(' ').next().unwrap();
    assert_eq!(ts0, lines[1].split(' ').next().unwrap(), "one timestamp per run");
    assert_eq!(ts0.len(), 24, "{ts0}");
    assert_eq!(r.owner("/opt/data/logs"), HG);
    assert_eq!(r.mode("/opt/data/logs"), 0o755);
    assert_eq!(r.owner("/opt/data/logs/container-boot.log"), HG);
    assert_eq!(r.mode("/opt/data/logs/container-boot.log"), 0o644);

    // Just below the threshold: appended.
    r.write("/opt/data/logs/container-boot.log", vec![b'x'; 262_143]);
    boot(&r).assert_code(0);
    assert!(!r.exists("/opt/data/logs/container-boot.log.1"));
    let appended = std::fs::read(r.path("/opt/data/logs/container-boot.log")).unwrap();
    assert_eq!(&appended[..262_143], &vec![b'x'; 262_143][..]);
    let tail = String::from_utf8(appended[262_143..].to_vec()).unwrap();
    assert_eq!(tail.lines().count(), 2, "two lines appended: {tail}");

    // At the threshold: rotated first.
    r.write("/opt/data/logs/container-boot.log", vec![b'y'; 262_144]);
    boot(&r).assert_code(0);
    assert_eq!(
        std::fs::read(r.path("/opt/data/logs/container-boot.log.1")).unwrap(),
        vec![b'y'; 262_144]
    );
    assert_eq!(r.read("/opt/data/logs/container-boot.log").lines().count(), 2);
    assert_eq!(r.owner("/opt/data/logs/container-boot.log"), HG);
}

#[test]
fn symlinked_boot_log_is_refused() {
    let r = setup();
    r.mkdir("/opt/data/logs");
    r.write("/target.log", "keep");
    r.symlink(r.path("/target.log"), "/opt/data/logs/container-boot.log");
    let out = boot(&r);
    out.assert_code(0);
    assert!(out
        .stdout
        .contains("refusing write through symlinked path /opt/data/logs/container-boot.log"));
    assert_eq!(r.read("/target.log"), "keep");
}

/// Every path below the temp root with its type, owner, mode, size and content hash.
fn snapshot(r: &TempRoot) -> Vec<String> {
    fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let m = std::fs::symlink_metadata(&p).unwrap();
            let content = if m.is_file() {
                std::fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            out.push(format!(
                "{} {:o} {}:{} {} {:?} {}",
                p.strip_prefix(base).unwrap().display(),
                m.mode(),
                m.uid(),
                m.gid(),
                m.size(),
                content,
                m.ino()
            ));
            if m.is_dir() {
                walk(&p, base, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(r.root(), r.root(), &mut out);
    out
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let r = setup();
    fake_proc(&r, b"/init\0main-wrapper\0gateway\0run\0", &[]);
    profile(&r, "coder", Some("running"));
    r.write("/opt/data/gateway.pid", "1");
    r.mkdir("/run/service/.gateway-stale.tmp");
    r.mkdir("/run/service/gateway-coder");
    let before = snapshot(&r);
    let out = run(r.command(BIN).arg("--dry-run"));
    out.assert_code(0);
    assert_eq!(snapshot(&r), before, "{}", out.stdout);
    for expect in [
        "would remove /run/service/.gateway-stale.tmp",
        "would create /opt/data/gateway_state.json",
        "would remove /opt/data/gateway.pid",
        "would publish slot /run/service/gateway-default (up)",
        "would publish slot /run/service/gateway-coder (up, replacing the existing slot)",
        "reconcile: profile=default prior_state=running action=started",
        "reconcile: profile=coder prior_state=running action=started",
        "would create directory /opt/data/logs",
    ] {
        assert!(
            out.stdout.contains(expect),
            "missing {expect:?} in\n{}",
            out.stdout
        );
    }
}

#[test]
fn missing_runtime_user_is_fatal() {
    let r = setup();
    let out = run(r.command(BIN).args(["--runtime-user", "nosuch"]));
    out.assert_code(1);
    assert!(
        out.stderr
            .contains("runtime user nosuch not found in /etc/passwd"),
        "{}",
        out.stderr
    );
    assert!(!r.exists("/run/service/gateway-default"));
}

#[test]
fn runtime_user_option_and_env_choose_the_owner() {
    let r = setup();
    r.write(
        "/etc/passwd",
        "root:x:0:0::/root:/bin/sh\nhermes:x:10000:10000::/opt/data:/bin/sh\nagent:x:2000:2001::/opt/data:/bin/sh\n",
    );
    run(r.command(BIN).env("HERMES_BOOT_USER", "agent")).assert_code(0);
    assert_eq!(r.owner("/run/service/gateway-default/run"), (0, 0));
    assert_eq!(
        r.owner("/run/service/gateway-default/supervise/control"),
        (0, 2001)
    );
    assert!(r
        .read("/run/service/gateway-default/run")
        .ends_with("\nexec /command/s6-setuidgid agent hermes gateway run --replace\n"));
    run(r
        .command(BIN)
        .env("HERMES_BOOT_USER", "agent")
        .env("HERMES_GATEWAY_SLOTS", "user-owned"))
    .assert_code(0);
    assert_eq!(r.owner("/run/service/gateway-default/run"), (2000, 2001));
    let other = setup();
    other.write("/etc/passwd", r.read("/etc/passwd"));
    run(Command::new(BIN)
        .env_clear()
        .args([
            "--root",
            other.root().to_str().unwrap(),
            "--runtime-user",
            "agent",
        ])
        .env("HERMES_GATEWAY_SLOTS", "User-Owned"))
    .assert_code(0);
    assert_eq!(other.owner("/run/service/gateway-default/type"), (2000, 2001));
}

#[test]
fn command_line_contract() {
    let r = setup();
    let help = run(r.command(BIN).arg("--help"));
    help.assert_code(0);
    assert!(help.stdout.contains("register") && help.stdout.contains("--dry-run"));
    let version = run(r.command(BIN).arg("--version"));
    version.assert_code(0);
    assert_eq!(
        version.stdout,
        format!("reconcile-profiles {}\n", env!("CARGO_PKG_VERSION"))
    );
    let bad = run(r.command(BIN).arg("--bogus"));
    bad.assert_code(2);
    assert!(bad.stderr.contains("Usage"), "{}", bad.stderr);
    run(r.command(BIN).arg("stray")).assert_code(2);
    run(r.command(BIN).args(["register", "a", "b"])).assert_code(2);
}

#[test]
fn not_root_creates_with_the_callers_identity() {
    let r = setup();
    // As the runtime user, over a tree it owns (as after a root boot).
    for p in ["/run/service", "/opt/data"] {
        r.chown(p, HERMES_UID, HERMES_GID);
    }
    let out = test_support::run_as(&mut r.command(BIN), HERMES_UID, HERMES_GID);
    out.assert_code(0);
    assert_eq!(out.stdout.matches("WARNING").count(), 0, "{}", out.stdout);
    assert_eq!(r.owner("/run/service/gateway-default/supervise/control"), HG);
    assert!(r
        .read("/run/service/gateway-default/run")
        .ends_with("\nexec hermes gateway run --replace\n"));
}

#[test]
fn json_plan_of_a_dry_run_is_the_json_of_the_real_run() {
    let r = setup();
    fake_proc(&r, b"/init\0main-wrapper\0gateway\0run\0", &[]);
    profile(&r, "coder", Some("running"));
    profile(&r, "idle", Some("stopped"));
    r.write("/opt/data/gateway.pid", "1");
    r.mkdir("/run/service/.gateway-stale.tmp");
    r.mkdir("/run/service/gateway-coder");
    let plan = run(r.command(BIN).args(["--dry-run", "--json"]));
    plan.assert_code(0);
    let real = run(r.command(BIN).arg("--json"));
    real.assert_code(0);
    let planned = plan.json_changes();
    assert!(
        planned
            .iter()
            .any(|c| c["action"] == "publish slot" && c["path"] == "/run/service/gateway-coder"),
        "{}",
        plan.stdout
    );
    assert_eq!(
        planned,
        real.json_changes(),
        "dry-run plan and real run differ\nplan:\n{}\nreal:\n{}",
        plan.stdout,
        real.stdout
    );
    // stdout is JSON only; the reconcile lines go to stderr.
    assert!(real
        .stderr
        .contains("reconcile: profile=coder prior_state=running action=started"));
    assert_eq!(real.json_lines().last().unwrap()["changes"], planned.len());
}
