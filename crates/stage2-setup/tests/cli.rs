//! CM-01 command line and the fatal conditions of S2-04.

mod stage2_support;

use stage2_support::*;
use test_support::{run, TempRoot};

#[test]
fn help_and_version_go_to_stdout_with_status_0() {
    let r = TempRoot::new();
    let out = stage2_args(&r, &["--help"], &[]);
    out.assert_code(0);
    assert!(out.stdout.contains("Usage: stage2-setup"), "{}", out.stdout);
    for opt in ["--root", "--runtime-user", "--dry-run", "--version"] {
        assert!(out.stdout.contains(opt), "{opt} missing from help");
    }
    // The question an operator has: which variables count, and what the exit code means.
    for var in [
        "HERMES_UID",
        "PUID",
        "HERMES_GID",
        "PGID",
        "HERMES_HOME",
        "HERMES_GATEWAY_SLOTS",
    ] {
        assert!(
            out.stdout.contains(var),
            "{var} missing from help\n{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("Exit status:\n  0  "), "{}", out.stdout);
    let out = stage2_args(&r, &["--version"], &[]);
    out.assert_code(0);
    assert_eq!(
        out.stdout.trim(),
        format!("stage2-setup {}", env!("CARGO_PKG_VERSION"))
    );
    assert!(!r.exists("/opt/data"), "--help/--version must not run the setup");
}

#[test]
fn unknown_option_or_stray_argument_is_a_usage_error() {
    let r = TempRoot::new();
    for args in [&["--bogus"][..], &["extra"], &["--dry-run", "x"]] {
        let out = stage2_args(&r, args, &[]);
        out.assert_code(2);
        assert!(
            out.stderr.contains("Usage: stage2-setup"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
    assert!(!r.exists("/opt/data"));
}

#[test]
fn root_option_wins_over_environment() {
    let r = image();
    let other = TempRoot::new();
    let mut c = other.command(bin());
    c.arg("--root").arg(r.root());
    run(&mut c).assert_code(0);
    assert!(r.exists("/opt/data/.env"));
    assert!(!other.exists("/opt/data"));
}

#[test]
fn runtime_user_option_names_the_user_in_messages() {
    let r = image();
    let passwd = r.read("/etc/passwd");
    r.write(
        "/etc/passwd",
        format!("{passwd}agent:x:10001:10001::/opt/data:/bin/sh\n"),
    );
    let out = stage2_args(&r, &["--runtime-user", "agent"], &[]);
    out.assert_code(0);
    assert!(out.stdout.contains("to agent (10001:10001)"), "{}", out.stdout);
    assert_eq!(r.owner("/opt/data/.env"), (10001, 10001));
}

#[test]
fn missing_runtime_user_is_fatal_and_changes_nothing() {
    let r = image();
    let out = stage2_args(&r, &["--runtime-user", "ghost"], &[]);
    out.assert_code(1);
    assert!(out
        .stderr
        .contains("[stage2] ERROR: runtime user ghost not found in /etc/passwd"));
    assert!(!r.exists("/opt/data"));
}

#[test]
fn relative_or_uncreatable_home_is_fatal() {
    let r = image();
    let out = stage2(&r, &[("HERMES_HOME", "relative/data")]);
    out.assert_code(1);
    assert!(
        out.stderr
            .contains("[stage2] ERROR: cannot create HERMES_HOME relative/data: EINVAL"),
        "{}",
        out.stderr
    );
    r.write("/opt/file", "x");
    let out = stage2(&r, &[("HERMES_HOME", "/opt/file/data")]);
    out.assert_code(1);
    assert!(
        out.stderr
            .contains("[stage2] ERROR: cannot create HERMES_HOME /opt/file/data: ENOTDIR"),
        "{}",
        out.stderr
    );
}

#[test]
fn home_and_missing_parents_are_created_root_0755() {
    let r = image();
    let out = stage2(&r, &[("HERMES_HOME", "/srv/a/b/data")]);
    out.assert_code(0);
    for p in ["/srv", "/srv/a", "/srv/a/b"] {
        assert_eq!((r.owner(p), r.mode(p)), ((0, 0), 0o755), "{p}");
    }
    // H itself was root-owned, so the targeted repair handed it over.
    assert_eq!(r.owner("/srv/a/b/data"), U);
    assert_eq!(r.mode("/srv/a/b/data"), 0o755);
}
