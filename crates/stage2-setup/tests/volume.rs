//! The data volume after a root boot: SPEC §7.3 owners and modes, S2-11 ownership repair, S2-12 top-level
//! allowlist, S2-13 seeded tree, S2-16 scratch directory, S2-17 install stamp.

mod stage2_support;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use stage2_support::*;

const SEEDED: [&str; 15] = [
    "backups",
    "cron",
    "sessions",
    "logs",
    "logs/gateways",
    "hooks",
    "memories",
    "skills",
    "skins",
    "plans",
    "workspace",
    "home",
    "pairing",
    "platforms",
    "platforms/pairing",
];

#[test]
fn fresh_volume_gets_the_reference_owners_and_modes() {
    let r = image();
    let out = stage2(&r, &[]);
    out.assert_code(0);
    assert_eq!((r.owner("/opt"), r.mode("/opt")), ((0, 0), 0o755));
    assert_eq!((r.owner("/opt/data"), r.mode("/opt/data")), (U, 0o755));
    for d in SEEDED {
        let p = format!("/opt/data/{d}");
        assert_eq!((r.owner(&p), r.mode(&p)), (U, 0o755), "{p}");
    }
    assert_eq!((r.owner("/opt/data/.env"), r.mode("/opt/data/.env")), (U, 0o600));
    assert_eq!(
        (r.owner("/opt/data/config.yaml"), r.mode("/opt/data/config.yaml")),
        (U, 0o640)
    );
    assert_eq!(
        (r.owner("/opt/data/SOUL.md"), r.mode("/opt/data/SOUL.md")),
        (U, 0o644)
    );
    assert_eq!(r.read("/opt/data/config.yaml"), "model: default\n");
    assert_eq!(r.read("/opt/data/SOUL.md"), "You are Hermes.\n");
    assert!(r
        .read("/opt/data/.env")
        .starts_with("# example\nOPENAI_API_KEY=\n"));
    assert_eq!(
        (r.owner("/tmp/hermes-files"), r.mode("/tmp/hermes-files")),
        (U, 0o700)
    );
    for line in [
        "[stage2] Fixing ownership of /opt/data (targeted) to hermes (10000:10000)",
        "[stage2] Seeded /opt/data/.env",
        "[stage2] Seeded /opt/data/config.yaml",
        "[stage2] Seeded /opt/data/SOUL.md",
        "[stage2] Generated API_SERVER_KEY for the loopback gateway api_server",
    ] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "missing {line:?}\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout.ends_with("; starting user services\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn every_boot_trees_are_repaired_and_others_only_when_home_owner_differs() {
    let r = image();
    for d in [
        "profiles/p",
        "cron",
        "pairing",
        "platforms/pairing",
        "sessions",
        "logs/gateways/default",
    ] {
        r.mkdir(&format!("/opt/data/{d}"));
    }
    for f in [
        "profiles/p/marker",
        "cron/root_owned.json",
        "pairing/x",
        "platforms/pairing/y",
        "sessions/s.json",
        "logs/gateways/default/current",
    ] {
        r.write(&format!("/opt/data/{f}"), "x");
    }
    // H already belongs to the user: only the every-boot trees are walked.
    r.chown("/opt/data", HERMES_UID, HERMES_GID);
    let out = stage2(&r, &[]);
    out.assert_code(0);
    assert!(!out.stdout.contains("(targeted)"), "{}", out.stdout);
    for p in [
        "profiles",
        "profiles/p",
        "profiles/p/marker",
        "cron/root_owned.json",
        "pairing/x",
        "platforms/pairing/y",
    ] {
        assert_eq!(r.owner(&format!("/opt/data/{p}")), U, "{p}");
    }
    assert!(
        out.stdout.contains("[stage2] Ownership of /opt/data/cron: "),
        "{}",
        out.stdout
    );
    // logs/gateways itself, non-recursively; sessions not at all.
    assert_eq!(r.owner("/opt/data/logs/gateways"), U);
    assert_eq!(r.owner("/opt/data/logs/gateways/default/current"), (0, 0));
    assert_eq!(r.owner("/opt/data/sessions/s.json"), (0, 0));
    assert_eq!(
        r.owner("/opt/data/platforms"),
        (0, 0),
        "only platforms/pairing is a tree"
    );

    // A GID-only difference triggers the targeted repair too (B3).
    r.chown("/opt/data", HERMES_UID, 0);
    let out = stage2(&r, &[]);
    out.assert_code(0);
    assert!(out.stdout.contains("(targeted)"), "{}", out.stdout);
    assert_eq!(r.owner("/opt/data/sessions/s.json"), U);
    assert_eq!(r.owner("/opt/data/logs/gateways/default/current"), U);
    assert_eq!(r.owner("/opt/data"), U);
}

#[test]
fn allowlisted_top_level_files_are_repaired_and_nothing_else() {
    let r = image();
    r.mkdir("/opt/data");
    for f in [
        "auth.json",
        "state.db",
        "gateway.lock",
        "gateway_state.json",
        "SOUL.md",
        "config.yaml",
        ".env",
    ] {
        r.write(&format!("/opt/data/{f}"), "x\n");
        r.chmod(&format!("/opt/data/{f}"), 0o444);
    }
    r.write("/opt/data/host_secret.json", "secret");
    r.chmod("/opt/data/host_secret.json", 0o600);
    r.mkdir("/opt/data/backups/old");
    r.write("/opt/data/backups/old/f", "x");
    stage2(&r, &[]).assert_code(0);
    for f in ["auth.json", "state.db", "gateway.lock", "gateway_state.json"] {
        let p = format!("/opt/data/{f}");
        assert_eq!((r.owner(&p), r.mode(&p)), (U, 0o444), "{f}: mode is kept");
    }
    assert_eq!(r.mode("/opt/data/.env"), 0o600);
    assert_eq!(r.mode("/opt/data/config.yaml"), 0o640);
    assert_eq!(r.mode("/opt/data/SOUL.md"), 0o644, "SOUL.md gains u+rw");
    assert_eq!(
        (
            r.owner("/opt/data/host_secret.json"),
            r.mode("/opt/data/host_secret.json")
        ),
        ((0, 0), 0o600)
    );
    assert_eq!(
        r.owner("/opt/data/backups/old/f"),
        (0, 0),
        "backups is not a repaired tree"
    );
}

#[test]
fn hard_link_to_a_root_file_outside_the_volume_is_untouched() {
    let r = image();
    let victim = victim_file(&r);
    r.mkdir("/opt/data/cron");
    std::fs::hard_link(r.path(victim), r.path("/opt/data/auth.json")).unwrap();
    std::fs::hard_link(r.path(victim), r.path("/opt/data/.env")).unwrap();
    std::fs::hard_link(r.path(victim), r.path("/opt/data/cron/job.json")).unwrap();
    let out = stage2(&r, &[]);
    out.assert_code(0);
    assert_eq!((r.owner(victim), r.mode(victim)), ((0, 0), 0o600));
    assert_eq!(r.read(victim), "TOP SECRET\n");
    assert!(
        out.stdout
            .contains("refusing chown of hard-linked file /opt/data/auth.json (4 links)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("refusing chown of hard-linked file /opt/data/cron/job.json"),
        "{}",
        out.stdout
    );
}

#[test]
fn special_files_and_non_utf8_names_are_handled_without_blocking() {
    let r = image();
    r.mkdir("/opt/data/cron");
    r.chown("/opt/data", HERMES_UID, HERMES_GID);
    let cron = r.path("/opt/data/cron");
    nix::unistd::mkfifo(
        &cron.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(cron.join("sock")).unwrap();
    nix::sys::stat::mknod(
        &cron.join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let odd = cron.join(OsStr::from_bytes(b"caf\xe9-\xff"));
    std::fs::create_dir(&odd).unwrap();
    std::fs::write(odd.join(OsStr::from_bytes(b"\x80.json")), "x").unwrap();
    let out = stage2(&r, &[]);
    out.assert_code(0);
    for name in ["fifo", "sock", "null"] {
        assert_eq!(test_support::owner(&cron.join(name)), U, "{name}");
    }
    assert_eq!(test_support::owner(&odd), U);
    assert_eq!(test_support::owner(&odd.join(OsStr::from_bytes(b"\x80.json"))), U);
    // The device node is still the same device.
    assert_eq!(
        std::fs::symlink_metadata(cron.join("null")).unwrap().rdev(),
        nix::sys::stat::makedev(1, 3)
    );
}

#[test]
fn special_files_where_seeds_and_allowlisted_files_are_expected_do_not_block() {
    let r = image();
    r.mkdir("/opt/data");
    let home = r.path("/opt/data");
    nix::unistd::mkfifo(
        &home.join(".env"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    nix::unistd::mkfifo(
        &home.join("config.yaml"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(home.join("auth.json")).unwrap();
    let out = stage2(&r, &[("NOUS_PORTAL_BASE_URL", "https://p")]);
    out.assert_code(0);
    assert!(
        out.stdout
            .contains("/opt/data/.env is not a regular file; not editing it"),
        "{}",
        out.stdout
    );
    // Owners are repaired, modes of non-regular files are not.
    assert_eq!((r.owner("/opt/data/.env"), r.mode("/opt/data/.env")), (U, 0o644));
    assert_eq!(
        (r.owner("/opt/data/config.yaml"), r.mode("/opt/data/config.yaml")),
        (U, 0o644)
    );
    assert_eq!(r.owner("/opt/data/auth.json"), U);
}

#[test]
fn ten_thousand_levels_deep_in_a_targeted_tree() {
    use rustix::fs::{Mode, OFlags};
    let r = image();
    r.mkdir("/opt/data/sessions");
    let mut fd = rustix::fs::open(
        r.path("/opt/data/sessions"),
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    for _ in 0..10_000 {
        rustix::fs::mkdirat(&fd, "d", Mode::from_raw_mode(0o755)).unwrap();
        fd = rustix::fs::openat(&fd, "d", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
    }
    std::fs::write(
        format!("/proc/self/fd/{}/bottom", std::os::fd::AsRawFd::as_raw_fd(&fd)),
        "x",
    )
    .unwrap();
    let out = stage2(&r, &[]);
    out.assert_code(0);
    let st = rustix::fs::statat(&fd, "bottom", rustix::fs::AtFlags::SYMLINK_NOFOLLOW).unwrap();
    assert_eq!((st.st_uid, st.st_gid), U, "{}", out.stdout);
    let st = rustix::fs::fstat(&fd).unwrap();
    assert_eq!((st.st_uid, st.st_gid), U);
    assert!(
        out.stdout
            .contains("[stage2] Ownership of /opt/data/sessions: 10002 entries checked, 10002 changed"),
        "{}",
        out.stdout
    );
}

#[test]
fn existing_entries_of_the_seeded_tree_are_left_alone() {
    let r = image();
    r.mkdir("/opt/data");
    r.write("/opt/data/skills", "a file where a directory is seeded");
    r.symlink("/nonexistent", "/opt/data/workspace");
    r.mkdir("/opt/data/platforms");
    r.chmod("/opt/data/platforms", 0o700);
    let out = stage2(&r, &[]);
    out.assert_code(0);
    assert_eq!(r.read("/opt/data/skills"), "a file where a directory is seeded");
    assert!(r.is_symlink("/opt/data/workspace"));
    // The only mention is the ownership repair's refusal (S2-11); the seed step is silent.
    let mentions: Vec<&str> = out.stdout.lines().filter(|l| l.contains("workspace")).collect();
    assert_eq!(
        mentions,
        ["[stage2] Warning: refusing recursive chown through symlinked path /opt/data/workspace — continuing"]
    );
    assert_eq!(
        (r.owner("/opt/data/platforms"), r.mode("/opt/data/platforms")),
        ((0, 0), 0o700)
    );
}

#[test]
fn seeded_directories_are_created_as_the_user() {
    let r = image();
    r.mkdir("/opt/data");
    // A root-owned, user-unwritable `platforms/` makes the seed of platforms/pairing fail as U: a
    // warning, and the rest of the boot goes on.
    r.mkdir("/opt/data/platforms");
    r.chown("/opt/data", HERMES_UID, HERMES_GID);
    let out = stage2(&r, &[]);
    out.assert_code(0);
    assert!(!r.exists("/opt/data/platforms/pairing"));
    assert!(
        out.stdout.contains(
            "[stage2] Warning: mkdir /opt/data/platforms/pairing: EACCES (Permission denied) — continuing"
        ),
        "{}",
        out.stdout
    );
    assert_eq!(r.owner("/opt/data/sessions"), U);
    assert!(out.stdout.contains("Setup complete with"), "{}", out.stdout);
}

#[test]
fn scratch_directory_is_adopted_or_refused_by_owner() {
    let r = image();
    r.mkdir("/tmp/hermes-files");
    r.chmod("/tmp/hermes-files", 0o777);
    stage2(&r, &[]).assert_code(0);
    assert_eq!(
        (r.owner("/tmp/hermes-files"), r.mode("/tmp/hermes-files")),
        (U, 0o700)
    );

    let r = image();
    r.mkdir("/tmp/hermes-files");
    r.chown("/tmp/hermes-files", 4242, 4242);
    r.chmod("/tmp/hermes-files", 0o755);
    let out = stage2(&r, &[]);
    out.assert_code(0);
    assert!(out
        .stdout
        .contains("/tmp/hermes-files is owned by uid 4242 (not root or hermes) — refusing to adopt it"));
    assert_eq!(
        (r.owner("/tmp/hermes-files"), r.mode("/tmp/hermes-files")),
        ((4242, 4242), 0o755)
    );
}

#[test]
fn install_method_stamp_is_removed_only_when_it_says_docker() {
    let r = image();
    r.write("/opt/data/.install_method", "  docker\n");
    stage2(&r, &[]).assert_code(0);
    assert!(!r.exists("/opt/data/.install_method"));
    r.write("/opt/data/.install_method", "pip\n");
    stage2(&r, &[]).assert_code(0);
    assert_eq!(r.read("/opt/data/.install_method"), "pip\n");
    std::fs::remove_file(r.path("/opt/data/.install_method")).unwrap();
    r.mkdir("/opt/data/.install_method");
    stage2(&r, &[]).assert_code(0);
    assert!(Path::new(&r.path("/opt/data/.install_method")).is_dir());
}
