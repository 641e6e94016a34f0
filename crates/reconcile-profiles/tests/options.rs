//! Numeric options: every out-of-range, negative, zero, NaN or overflowing value is a usage error (exit 2)
//! with one line naming it, never a panic and never silently the default.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_reconcile-profiles");

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("HERMES_BOOT_ROOT", "/nonexistent-reconcile-options-root")
        .output()
        .expect("run reconcile-profiles");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_numbers_are_usage_errors_not_panics() {
    let cases: &[&[&str]] = &[
        &["register", "p", "--timeout", "1e30"],
        &["register", "p", "--timeout", "1e19"],
        &["register", "p", "--timeout", "-1"],
        &["register", "p", "--timeout", "0"],
        &["register", "p", "--timeout", "NaN"],
        &["register", "p", "--timeout", "inf"],
        &["register", "p", "--timeout", "soon"],
        &["unregister", "p", "--timeout", "1e30"],
        &["unregister", "p", "--timeout", "-0.5"],
        &["watch", "--rescan-interval", "18446744073709551615"],
        &["watch", "--rescan-interval", "0"],
        &["watch", "--rescan-interval", "-3"],
    ];
    for args in cases {
        let (code, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        let value = args[args.len() - 1];
        assert!(stderr.contains(value), "{args:?} does not name {value}: {stderr}");
    }
}
