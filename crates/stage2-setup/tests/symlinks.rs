//! CM-05: a symlink planted where stage2-setup expects a file or directory is refused with a `refusing …`
//! warning naming it, and the root-owned target outside the volume is unchanged.

mod stage2_support;

use stage2_support::*;
use test_support::TempRoot;

/// Owner, mode and content of the victim before and after must be identical.
fn assert_victim_intact(
    r: &TempRoot,
    victim: &str,
    before: &std::collections::BTreeMap<std::path::PathBuf, String>,
) {
    let after = snapshot(&r.path(victim));
    assert_eq!(&after, before, "target of the planted symlink changed");
}

#[test]
fn symlinked_seed_and_allowlisted_files_are_refused() {
    let r = image();
    let victim = victim_file(&r);
    let before = snapshot(&r.path(victim));
    r.mkdir("/opt/data");
    for name in [
        ".env",
        "config.yaml",
        "SOUL.md",
        "auth.json",
        "gateway_state.json",
        "state.db",
    ] {
        r.symlink(r.path(victim), &format!("/opt/data/{name}"));
    }
    let out = stage2(
        &r,
        &[
            ("HERMES_GATEWAY_BOOTSTRAP_STATE", "running"),
            ("NOUS_PORTAL_BASE_URL", "https://p"),
        ],
    );
    out.assert_code(0);
    assert_victim_intact(&r, victim, &before);
    for name in [
        ".env",
        "config.yaml",
        "SOUL.md",
        "auth.json",
        "gateway_state.json",
        "state.db",
    ] {
        let p = format!("/opt/data/{name}");
        assert!(r.is_symlink(&p), "{name} must stay a symlink");
        assert!(
            out.stdout
                .contains(&format!("refusing chown through symlinked path {p} — continuing")),
            "{name}: {}",
            out.stdout
        );
    }
    for (action, name) in [
        ("seed", ".env"),
        ("seed", "config.yaml"),
        ("seed", "SOUL.md"),
        ("append", ".env"),
        ("sync", ".env"),
        ("seed", "gateway_state.json"),
    ] {
        let line = format!("refusing {action} through symlinked path /opt/data/{name} — continuing");
        assert!(out.stdout.contains(&line), "missing {line:?}\n{}", out.stdout);
    }
}

#[test]
fn dangling_gateway_state_symlink_is_not_written_through() {
    let r = image();
    r.mkdir("/opt/data");
    r.symlink("/tmp/planted-state.json", "/opt/data/gateway_state.json");
    let out = stage2(&r, &[("HERMES_GATEWAY_BOOTSTRAP_STATE", "running")]);
    out.assert_code(0);
    assert!(!r.exists("/tmp/planted-state.json"));
    assert!(r.is_symlink("/opt/data/gateway_state.json"));
    assert!(out
        .stdout
        .contains("refusing seed through symlinked path /opt/data/gateway_state.json"));
}

#[test]
fn symlinked_subdirectories_are_not_walked_or_chowned() {
    let r = image();
    let victim = victim_dir(&r);
    let before = snapshot(&r.path(victim));
    r.mkdir("/opt/data/logs");
    r.mkdir("/opt/data/platforms");
    r.symlink(r.path(victim), "/opt/data/sessions");
    r.symlink(r.path(victim), "/opt/data/cron");
    r.symlink(r.path(victim), "/opt/data/logs/gateways");
    r.symlink(r.path(victim), "/opt/data/platforms/pairing");
    r.symlink(r.path(victim), "/opt/data/profiles");
    let out = stage2(&r, &[("NOUS_PORTAL_BASE_URL", "https://p")]);
    out.assert_code(0);
    assert_victim_intact(&r, victim, &before);
    for p in ["sessions", "cron", "platforms/pairing", "profiles"] {
        let line = format!("refusing recursive chown through symlinked path /opt/data/{p} — continuing");
        assert!(out.stdout.contains(&line), "missing {line:?}\n{}", out.stdout);
    }
    assert!(
        out.stdout
            .contains("refusing sync through symlinked path /opt/data/profiles"),
        "{}",
        out.stdout
    );
    // `logs` is walked, and the symlink inside it is changed itself, never followed.
    assert!(r.is_symlink("/opt/data/logs/gateways"));
    assert_eq!(r.owner("/opt/data/logs/gateways"), U);
}

#[test]
fn symlinked_profile_directory_is_refused_for_sync() {
    let r = image();
    let victim = victim_dir(&r);
    let before = snapshot(&r.path(victim));
    r.mkdir("/opt/data/profiles/good");
    r.symlink(r.path(victim), "/opt/data/profiles/evil");
    let out = stage2(&r, &[("NOUS_PORTAL_BASE_URL", "https://p")]);
    out.assert_code(0);
    assert_victim_intact(&r, victim, &before);
    assert!(
        out.stdout
            .contains("refusing sync through symlinked path /opt/data/profiles/evil"),
        "{}",
        out.stdout
    );
    assert!(r
        .read("/opt/data/profiles/good/.env")
        .contains("NOUS_PORTAL_BASE_URL=https://p # stage2-managed"));
}

#[test]
fn symlinked_home_skips_root_side_steps() {
    let r = image();
    let victim = victim_dir(&r);
    let before = snapshot(&r.path(victim));
    r.mkdir("/opt");
    r.symlink(r.path(victim), "/opt/data");
    let out = stage2(&r, &[("HERMES_GATEWAY_BOOTSTRAP_STATE", "running")]);
    out.assert_code(0);
    assert!(out
        .stdout
        .contains("[stage2] Warning: refusing setup through symlinked path /opt/data — continuing"));
    assert_victim_intact(&r, victim, &before);
}

#[test]
fn xdg_runtime_dir_components_are_never_followed() {
    let r = image();
    let victim = victim_dir(&r);
    let before = snapshot(&r.path(victim));
    r.symlink(r.path(victim), "/run/user");
    let out = stage2(&r, &[("XDG_RUNTIME_DIR", "/run/user/10000")]);
    out.assert_code(0);
    assert!(
        out.stdout
            .contains("refusing create through symlinked path /run/user — continuing"),
        "{}",
        out.stdout
    );
    assert_victim_intact(&r, victim, &before);

    // The last component a symlink: refused the same way.
    let r = image();
    let victim = victim_dir(&r);
    let before = snapshot(&r.path(victim));
    r.mkdir("/run/user");
    r.symlink(r.path(victim), "/run/user/10000");
    let out = stage2(&r, &[("XDG_RUNTIME_DIR", "/run/user/10000")]);
    out.assert_code(0);
    assert!(
        out.stdout
            .contains("refusing create through symlinked path /run/user/10000"),
        "{}",
        out.stdout
    );
    assert_victim_intact(&r, victim, &before);
}

#[test]
fn xdg_runtime_dir_is_created_private_and_foreign_owners_are_refused() {
    let r = image();
    stage2(&r, &[("XDG_RUNTIME_DIR", "/run/user/10000")]).assert_code(0);
    assert_eq!((r.owner("/run/user"), r.mode("/run/user")), ((0, 0), 0o755));
    assert_eq!(
        (r.owner("/run/user/10000"), r.mode("/run/user/10000")),
        (U, 0o700)
    );

    let r = image();
    r.mkdir("/run/user/10000");
    r.chown("/run/user/10000", 555, 555);
    let out = stage2(&r, &[("XDG_RUNTIME_DIR", "/run/user/10000")]);
    assert!(out
        .stdout
        .contains("/run/user/10000 is owned by uid 555 (not root or hermes) — refusing to adopt it"));
    assert_eq!(r.owner("/run/user/10000"), (555, 555));

    let out = stage2(&r, &[("XDG_RUNTIME_DIR", "run/user")]);
    assert!(
        out.stdout.contains("Warning: ignoring relative XDG_RUNTIME_DIR"),
        "{}",
        out.stdout
    );
}

#[test]
fn real_home_is_created_and_handed_over() {
    let r = image();
    stage2(&r, &[("HERMES_REAL_HOME", "/home/agent")]).assert_code(0);
    assert_eq!((r.owner("/home"), r.mode("/home")), ((0, 0), 0o755));
    assert_eq!((r.owner("/home/agent"), r.mode("/home/agent")), (U, 0o755));
}

#[test]
fn symlinked_scratch_directory_is_refused() {
    let r = image();
    let victim = victim_dir(&r);
    let before = snapshot(&r.path(victim));
    r.symlink(r.path(victim), "/tmp/hermes-files");
    let out = stage2(&r, &[]);
    out.assert_code(0);
    assert!(out
        .stdout
        .contains("refusing create through symlinked path /tmp/hermes-files — continuing"));
    assert!(r.is_symlink("/tmp/hermes-files"));
    assert_victim_intact(&r, victim, &before);
}

#[test]
fn symlinks_in_the_credential_residence_are_refused() {
    let r = image();
    let victim = victim_file(&r);
    let before = snapshot(&r.path(victim));
    r.mkdir("/auth/shared");
    r.symlink(r.path(victim), "/auth/auth.json");
    r.symlink(r.path(victim), "/auth/shared/nous_auth.json");
    let out = stage2(
        &r,
        &[
            ("HERMES_AUTH_HOME", "/auth"),
            ("HERMES_AUTH_JSON_BOOTSTRAP", "{}"),
        ],
    );
    out.assert_code(0);
    assert_victim_intact(&r, victim, &before);
    assert!(
        out.stdout
            .contains("refusing chown through symlinked path /auth/auth.json"),
        "{}",
        out.stdout
    );
    assert!(out
        .stdout
        .contains("refusing chown through symlinked path /auth/shared/nous_auth.json"));
    assert!(out
        .stdout
        .contains("refusing seed through symlinked path /auth/auth.json"));

    // A symlink on the way down to a named profile's residence: nothing is created through it.
    let r = image();
    let victim = victim_dir(&r);
    let before = snapshot(&r.path(victim));
    r.mkdir("/auth");
    r.symlink(r.path(victim), "/auth/profiles");
    let out = stage2(
        &r,
        &[
            ("HERMES_HOME", "/opt/data/profiles/work"),
            ("HERMES_AUTH_HOME", "/auth"),
            ("HERMES_AUTH_JSON_BOOTSTRAP", "{}"),
        ],
    );
    out.assert_code(0);
    assert!(
        out.stdout
            .contains("refusing credential residence creation through symlinked path /auth/profiles"),
        "{}",
        out.stdout
    );
    assert_victim_intact(&r, victim, &before);
}
