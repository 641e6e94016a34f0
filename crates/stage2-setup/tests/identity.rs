//! The runtime user's identity (SPEC S2-02, S2-03, S2-05 … S2-10, CM-09), exercised through the real
//! `stage2-setup` binary against a temporary root prefix. These tests run as root: they mount, mknod,
//! chown and drop credentials for real.

use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use test_support::{require_root, run, run_as, Run, TempRoot};

const BIN: &str = env!("CARGO_BIN_EXE_stage2-setup");

fn stage2(t: &TempRoot, env: &[(&str, &str)]) -> Command {
    let mut c = t.command(BIN);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn setup(env: &[(&str, &str)]) -> (TempRoot, Run) {
    require_root();
    let t = TempRoot::new();
    let r = run(&mut stage2(&t, env));
    (t, r)
}

fn lines_with<'a>(out: &'a str, needle: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.contains(needle)).collect()
}

/// A line of passwd or group by its first field.
fn entry(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find(|l| l.split(':').next() == Some(name))
        .map(str::to_string)
}

/// Undoes a mount when dropped (also when the test fails).
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

fn bind(src: &Path, dst: &Path, read_only: bool) -> Mounted {
    mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND, None::<&str>).expect("bind mount");
    let m = Mounted(dst.to_path_buf());
    if read_only {
        mount(
            None::<&str>,
            dst,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .expect("remount read-only");
    }
    m
}

fn mknod_char(path: &Path, major: u64, minor: u64, gid: u32) {
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o660),
        nix::sys::stat::makedev(major, minor),
    )
    .expect("mknod");
    std::os::unix::fs::lchown(path, Some(0), Some(gid)).expect("chown device");
}

// ---------------------------------------------------------------------------------------------------------
// S2-02, S2-03, S2-05
// ---------------------------------------------------------------------------------------------------------

#[test]
fn missing_runtime_user_is_fatal_and_changes_nothing() {
    require_root();
    let t = TempRoot::new();
    let before = t.read("/etc/passwd");
    let r = run(stage2(&t, &[("HERMES_UID", "1000")])
        .arg("--runtime-user")
        .arg("agent"));
    r.assert_code(1);
    assert_eq!(
        r.stderr.lines().next(),
        Some("[stage2] ERROR: runtime user agent not found in /etc/passwd")
    );
    assert_eq!(t.read("/etc/passwd"), before);
    assert!(!t.exists("/opt/data"), "nothing created before the fatal check");
}

#[test]
fn any_non_root_user_boots_without_root_work() {
    require_root();
    for (uid, gid) in [(1000, 1000), (1_000_170_000, 0), (1000, 10000)] {
        let t = TempRoot::new();
        t.mkdir("/opt/data");
        t.chown("/opt/data", uid, gid);
        t.chmod("/run", 0o3777); // as the image ships it
        let before = t.read("/etc/passwd");
        let r = run_as(&mut stage2(&t, &[]), uid, gid);
        r.assert_code(0);
        assert_eq!(
            lines_with(&r.stdout, "without root"),
            vec![format!(
                "[stage2] running as uid {uid} gid {gid} (groups {gid}) without root: skipping UID/GID remap, \
group setup and ownership repair, which only root can do"
            )],
            "{}",
            r.stderr
        );
        assert!(
            lines_with(&r.stdout, "ignoring").is_empty(),
            "no remap was asked: {}",
            r.stdout
        );
        assert!(r.stdout.contains("Setup complete"), "{}", r.stdout);
        assert_eq!(t.read("/etc/passwd"), before, "/etc stays the image's");
        assert_eq!(t.owner("/opt/data/.env"), (uid, gid), "files are the run's own");
        // The image knows none of these uids: the run's own entry, for getpwuid (NSS extrausers).
        if uid != 10000 {
            assert_eq!(
                t.read("/run/hermes-boot/nss/passwd"),
                format!("hermes:x:{uid}:{gid}:hermes:/opt/data:/bin/sh\n")
            );
            assert_eq!(t.owner("/run/hermes-boot/nss/passwd"), (uid, gid));
        }
    }
}

#[test]
fn a_volume_the_run_cannot_write_stops_the_boot_with_one_line() {
    require_root();
    let t = TempRoot::new();
    t.mkdir("/opt/data");
    t.chown("/opt/data", 10000, 10000);
    t.chmod("/opt/data", 0o755);
    t.chmod("/run", 0o3777);
    let r = run_as(&mut stage2(&t, &[]), 1234, 5678);
    r.assert_code(1);
    assert_eq!(
        lines_with(&r.stderr, "ERROR"),
        vec!["[stage2] ERROR: HERMES_HOME /opt/data is not writable by uid 1234 gid 5678, which the container \
runs as (owner 10000:10000, mode 0755); give the volume to that uid or group, or start as root with \
-e HERMES_UID=1234 -e HERMES_GID=5678 — stopping"],
        "{}",
        r.stdout
    );
    assert!(!t.exists("/opt/data/.env"), "nothing seeded");
    // Writable through the group, as Kubernetes' fsGroup gives it: the boot goes on.
    t.chown("/opt/data", 10000, 5678);
    t.chmod("/opt/data", 0o2775);
    run_as(&mut stage2(&t, &[]), 1234, 5678).assert_code(0);
    assert_eq!(t.owner("/opt/data/.env"), (1234, 5678));
}

#[test]
fn remap_variables_without_root_are_named_and_ignored() {
    require_root();
    let t = TempRoot::new();
    t.mkdir("/opt/data");
    t.chown("/opt/data", 10000, 10000);
    let before = t.read("/etc/passwd");
    let r = run_as(
        &mut stage2(&t, &[("HERMES_UID", "1000"), ("PGID", "1000")]),
        10000,
        10000,
    );
    r.assert_code(0);
    assert_eq!(
        lines_with(&r.stdout, "ignoring"),
        vec!["[stage2] Warning: ignoring HERMES_UID, PGID: a remap needs the container to start as root (drop --user) — continuing"]
    );
    assert!(!r.stdout.contains("Changing hermes"), "{}", r.stdout);
    assert_eq!(t.read("/etc/passwd"), before);
}

// ---------------------------------------------------------------------------------------------------------
// S2-06 … S2-08
// ---------------------------------------------------------------------------------------------------------

#[test]
fn uid_and_gid_remap_edits_passwd_and_group_with_backups() {
    require_root();
    let t = TempRoot::new();
    t.chmod("/etc/passwd", 0o644);
    t.chown("/etc/group", 0, 42);
    t.chmod("/etc/group", 0o640);
    let (old_passwd, old_group) = (t.read("/etc/passwd"), t.read("/etc/group"));
    let r = run(&mut stage2(&t, &[("PUID", "1000"), ("PGID", "1000")]));
    r.assert_code(0);
    assert_eq!(
        lines_with(&r.stdout, "Changing hermes"),
        vec![
            "[stage2] Changing hermes UID to 1000",
            "[stage2] Changing hermes GID to 1000"
        ]
    );
    assert_eq!(
        entry(&t.read("/etc/passwd"), "hermes").as_deref(),
        Some("hermes:x:1000:1000::/opt/data:/bin/sh")
    );
    assert_eq!(
        entry(&t.read("/etc/group"), "hermes").as_deref(),
        Some("hermes:x:1000:")
    );
    // Backups hold the previous content with the same owner and mode; the new files keep theirs.
    assert_eq!(t.read("/etc/passwd-"), old_passwd);
    assert_eq!(t.read("/etc/group-"), old_group);
    assert_eq!((t.owner("/etc/passwd-"), t.mode("/etc/passwd-")), ((0, 0), 0o644));
    assert_eq!((t.owner("/etc/group-"), t.mode("/etc/group-")), ((0, 42), 0o640));
    assert_eq!((t.owner("/etc/group"), t.mode("/etc/group")), ((0, 42), 0o640));
    // The volume follows the new identity (S2-11 runs on what passwd now says).
    assert_eq!(t.owner("/opt/data/logs"), (1000, 1000));
}

#[test]
fn gid_only_remap_changes_group_and_primary_gid() {
    let (t, r) = setup(&[("HERMES_GID", "2000")]);
    r.assert_code(0);
    assert_eq!(
        lines_with(&r.stdout, "Changing hermes"),
        vec!["[stage2] Changing hermes GID to 2000"]
    );
    assert_eq!(
        entry(&t.read("/etc/passwd"), "hermes").as_deref(),
        Some("hermes:x:10000:2000::/opt/data:/bin/sh")
    );
    assert_eq!(
        entry(&t.read("/etc/group"), "hermes").as_deref(),
        Some("hermes:x:2000:")
    );
    assert_eq!(t.owner("/opt/data/logs"), (10000, 2000));
}

#[test]
fn uid_already_used_by_another_account_is_shared() {
    require_root();
    let t = TempRoot::new();
    let mut passwd = t.read("/etc/passwd");
    passwd.push_str("alice:x:1000:1000::/home/alice:/bin/sh\n");
    t.write("/etc/passwd", &passwd);
    let r = run(&mut stage2(&t, &[("HERMES_UID", "1000")]));
    r.assert_code(0);
    assert_eq!(
        lines_with(&r.stdout, "already used"),
        vec!["[stage2] Warning: UID 1000 is already used by account alice; sharing it — continuing"]
    );
    let p = t.read("/etc/passwd");
    assert_eq!(
        entry(&p, "hermes").as_deref(),
        Some("hermes:x:1000:10000::/opt/data:/bin/sh")
    );
    assert_eq!(
        entry(&p, "alice").as_deref(),
        Some("alice:x:1000:1000::/home/alice:/bin/sh")
    );
}

#[test]
fn invalid_values_warn_and_do_not_fall_back_to_the_alias() {
    let forty = "1".repeat(40);
    let (t, r) = setup(&[("HERMES_UID", "abc"), ("PUID", "1000"), ("HERMES_GID", &forty)]);
    r.assert_code(0);
    assert!(
        r.stdout.contains("[stage2] HERMES_UID overrides PUID\n"),
        "{}",
        r.stdout
    );
    assert!(r
        .stdout
        .contains("[stage2] Warning: ignoring HERMES_UID='abc': must be a decimal number from 1 to 65534 — continuing\n"));
    assert!(r.stdout.contains(&format!(
        "[stage2] Warning: ignoring HERMES_GID='{forty}': must be a decimal number from 1 to 65534 — continuing\n"
    )));
    assert!(!r.stdout.contains("Changing hermes"));
    assert_eq!(
        entry(&t.read("/etc/passwd"), "hermes").as_deref(),
        Some("hermes:x:10000:10000::/opt/data:/bin/sh")
    );
}

#[test]
fn leading_zeros_compare_numerically_so_nothing_changes() {
    let (t, r) = setup(&[
        ("HERMES_UID", "0010000"),
        ("PUID", "10000"),
        ("PGID", "000010000"),
    ]);
    r.assert_code(0);
    assert!(!r.stdout.contains("overrides"), "{}", r.stdout);
    assert!(!r.stdout.contains("Changing"), "{}", r.stdout);
    assert!(!r.stdout.contains("Warning: ignoring"), "{}", r.stdout);
    assert!(
        !t.exists("/etc/passwd-") && !t.exists("/etc/.pwd.lock"),
        "no edit, no lock"
    );
}

#[test]
fn unrelated_and_malformed_lines_are_kept_byte_for_byte() {
    require_root();
    let t = TempRoot::new();
    let passwd: &[u8] = b"root:x:0:0:root:/root:/bin/sh\n\
# local accounts\n\
\n\
+@netgroup::::::\n\
-baduser::::::\n\
not:enough:fields\n\
caf\xc3\xa9:x:5:5::/x:/bin/sh\n\
weird\xff:x:6:6::/x:/bin/sh\n\
hermes:x:10000:10000:Hermes Agent,,,:/opt/data:/bin/sh";
    t.write("/etc/passwd", passwd);
    let group: &[u8] = b"root:x:0:\n+:::\nhermes:x:10000:\nbroken\nvideo:x:44:";
    t.write("/etc/group", group);
    let r = run(&mut stage2(&t, &[("PUID", "1234"), ("PGID", "4321")]));
    r.assert_code(0);
    let want_passwd = [
        &passwd[..passwd.len() - "hermes:x:10000:10000:Hermes Agent,,,:/opt/data:/bin/sh".len()],
        b"hermes:x:1234:4321:Hermes Agent,,,:/opt/data:/bin/sh\n",
    ]
    .concat();
    assert_eq!(std::fs::read(t.path("/etc/passwd")).unwrap(), want_passwd);
    assert_eq!(
        std::fs::read(t.path("/etc/group")).unwrap(),
        b"root:x:0:\n+:::\nhermes:x:4321:\nbroken\nvideo:x:44:\n".to_vec()
    );
    assert_eq!(std::fs::read(t.path("/etc/passwd-")).unwrap(), passwd);
}

// ---------------------------------------------------------------------------------------------------------
// S2-09 and CM-09 file handling
// ---------------------------------------------------------------------------------------------------------

#[test]
fn read_only_etc_warns_once_and_keeps_the_accounts() {
    require_root();
    let t = TempRoot::new();
    t.mknod_dri();
    let before = (t.read("/etc/passwd"), t.read("/etc/group"));
    let etc = t.path("/etc");
    let r = {
        let _ro = bind(&etc, &etc, true);
        run(&mut stage2(&t, &[("HERMES_UID", "1000"), ("HERMES_GID", "1000")]))
    };
    r.assert_code(0);
    let etc_warnings = lines_with(&r.stdout, "/etc/");
    assert_eq!(
        etc_warnings,
        vec!["[stage2] Warning: update /etc/passwd: EROFS (Read-only file system) — continuing"],
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("Added hermes"), "S2-10 is skipped too");
    assert_eq!((t.read("/etc/passwd"), t.read("/etc/group")), before);
    // The run continues with the identity passwd still holds.
    assert_eq!(t.owner("/opt/data/logs"), (10000, 10000));
}

#[test]
fn bind_mounted_passwd_is_rewritten_in_place() {
    require_root();
    let t = TempRoot::new();
    t.write("/host-passwd", t.read("/etc/passwd"));
    t.chmod("/host-passwd", 0o644);
    let r = {
        let _m = bind(&t.path("/host-passwd"), &t.path("/etc/passwd"), false);
        let r = run(&mut stage2(&t, &[("PUID", "1500")]));
        assert!(t.read("/etc/passwd").contains("hermes:x:1500:10000:"));
        r
    };
    r.assert_code(0);
    assert!(
        r.stdout.contains("[stage2] Changing hermes UID to 1500\n"),
        "{}",
        r.stdout
    );
    // The write went through the mount into the host's file.
    assert!(t.read("/host-passwd").contains("hermes:x:1500:10000:"));
    assert_eq!(t.mode("/host-passwd"), 0o644);
}

#[test]
fn edit_waits_for_a_held_account_lock() {
    require_root();
    let t = TempRoot::new();
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(t.path("/etc/.pwd.lock"))
        .unwrap();
    rustix::fs::fcntl_lock(lock.as_fd(), rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        drop(lock);
    });
    let start = Instant::now();
    let r = run(&mut stage2(&t, &[("PUID", "1000")]));
    let waited = start.elapsed();
    releaser.join().unwrap();
    r.assert_code(0);
    assert!(waited >= Duration::from_millis(1500), "finished after {waited:?}");
    assert!(t.read("/etc/passwd").contains("hermes:x:1000:"));
}

#[test]
fn edit_gives_up_after_the_lock_timeout() {
    require_root();
    let t = TempRoot::new();
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(t.path("/etc/.pwd.lock"))
        .unwrap();
    rustix::fs::fcntl_lock(lock.as_fd(), rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    let start = Instant::now();
    let r = run(&mut stage2(&t, &[("PUID", "1000")]));
    let waited = start.elapsed();
    drop(lock);
    r.assert_code(0);
    assert!(waited >= Duration::from_secs(15), "gave up after {waited:?}");
    assert_eq!(
        lines_with(&r.stdout, ".pwd.lock"),
        vec!["[stage2] Warning: lock /etc/.pwd.lock: still held by another process after 15 s; account files left unchanged — continuing"]
    );
    assert!(t.read("/etc/passwd").contains("hermes:x:10000:10000:"));
}

#[test]
fn dry_run_plans_the_edits_and_writes_nothing() {
    require_root();
    let t = TempRoot::new();
    t.mknod_dri();
    let r = run(stage2(&t, &[("PUID", "1000"), ("PGID", "1000")]).arg("--dry-run"));
    r.assert_code(0);
    for line in [
        "would update /etc/passwd uid of hermes from 10000 to 1000",
        "would update /etc/group gid of group hermes from 10000 to 1000",
        "would update /etc/passwd primary gid of 1 account from 10000 to 1000",
        "would update /etc/group add hermes to group video (GID 44)",
        "would update /etc/group append group hostgid64000 (GID 64000) with member hermes",
    ] {
        assert!(
            r.stdout.lines().any(|l| l == line),
            "missing {line:?} in\n{}",
            r.stdout
        );
    }
    assert!(!r.stdout.contains("Changing hermes") && !r.stdout.contains("Added hermes"));
    assert!(t.read("/etc/passwd").contains("hermes:x:10000:10000:"));
    assert!(!t.read("/etc/group").contains("hostgid"));
    assert!(!t.exists("/etc/.pwd.lock"), "a dry run locks nothing");
}

// ---------------------------------------------------------------------------------------------------------
// S2-10
// ---------------------------------------------------------------------------------------------------------

trait DeviceFixtures {
    fn mknod_dri(&self);
}

impl DeviceFixtures for TempRoot {
    /// `/dev/dri/card0` in group video (44) and `/dev/dri/renderD128` with the unnamed gid 64000.
    fn mknod_dri(&self) {
        self.mkdir("/dev/dri");
        mknod_char(&self.path("/dev/dri/renderD128"), 226, 128, 64000);
        mknod_char(&self.path("/dev/dri/card0"), 226, 0, 44);
        // Not a character device: ignored.
        self.mkdir("/dev/dri/by-path");
    }
}

fn group_ids_of(group: &str, user: &str) -> Vec<u32> {
    group
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4 && f[3].split(',').any(|m| m == user)).then(|| f[2].parse().ok())?
        })
        .collect()
}

#[test]
fn devices_sockets_and_pid1_groups_are_granted_except_root() {
    require_root();
    let t = TempRoot::new();
    t.mknod_dri();
    t.mkdir("/var/run");
    let _root_sock = UnixListener::bind(t.path("/run/docker.sock")).unwrap();
    let _sock = UnixListener::bind(t.path("/var/run/docker.sock")).unwrap();
    std::os::unix::fs::lchown(t.path("/var/run/docker.sock"), Some(0), Some(998)).unwrap();
    t.write("/proc/1/status", "Name:\tinit\nGroups:\t0 44 555 \nNgid:\t0\n");
    t.write("/etc/gshadow", "root:*::\nvideo:!::\nhermes:!::\n");
    t.chown("/etc/gshadow", 0, 42);
    t.chmod("/etc/gshadow", 0o640);

    let r = run(&mut stage2(&t, &[]));
    r.assert_code(0);
    let group_lines: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.contains("group") && !l.contains("Fixing") && !l.contains("runtime user"))
        .collect();
    // The per-boot identity line names every group the grants gave, with the names /etc/group has.
    assert!(
        r.stdout.lines().any(|l| l
            == "[stage2] runtime user hermes: uid 10000, gid 10000(hermes), groups 44(video),998(hostgid998),64000(hostgid64000),555(hostgid555)"),
        "{}",
        r.stdout
    );
    assert_eq!(
        group_lines,
        vec![
            "[stage2] Created group hostgid998 (GID 998) for /var/run/docker.sock",
            "[stage2] Added hermes to group hostgid998 (GID 998) for /var/run/docker.sock",
            "[stage2] Warning: /run/docker.sock is owned by GID 0; not adding hermes to the root group — continuing",
            "[stage2] Added hermes to group video (GID 44) for /dev/dri/card0",
            "[stage2] Created group hostgid64000 (GID 64000) for /dev/dri/renderD128",
            "[stage2] Added hermes to group hostgid64000 (GID 64000) for /dev/dri/renderD128",
            "[stage2] Created group hostgid555 (GID 555) for supplementary group of PID 1",
            "[stage2] Added hermes to group hostgid555 (GID 555) for supplementary group of PID 1",
        ],
        "{}",
        r.stdout
    );
    let group = t.read("/etc/group");
    assert_eq!(group_ids_of(&group, "hermes"), vec![44, 998, 64000, 555]);
    assert_eq!(
        group
            .lines()
            .filter(|l| l.split(':').nth(2) == Some("44"))
            .count(),
        1,
        "the existing video group is reused, not duplicated"
    );
    assert_eq!(entry(&group, "root").as_deref(), Some("root:x:0:"));
    assert_eq!(
        t.read("/etc/gshadow"),
        "root:*::\nvideo:!::hermes\nhermes:!::\nhostgid998:!::hermes\nhostgid64000:!::hermes\nhostgid555:!::hermes\n"
    );
    assert_eq!(
        (t.owner("/etc/gshadow"), t.mode("/etc/gshadow")),
        ((0, 42), 0o640)
    );
    assert_eq!(t.read("/etc/gshadow-"), "root:*::\nvideo:!::\nhermes:!::\n");
}

#[test]
fn rerun_is_idempotent() {
    require_root();
    let t = TempRoot::new();
    t.mknod_dri();
    t.write("/proc/1/status", "Groups:\t777\n");
    let env = [("PUID", "1000"), ("PGID", "1000")];
    run(&mut stage2(&t, &env)).assert_code(0);
    let (passwd, group) = (t.read("/etc/passwd"), t.read("/etc/group"));
    let ctime = test_support::ctime_ns(&t.path("/etc/passwd"));
    let backup_ctime = test_support::ctime_ns(&t.path("/etc/group-"));

    let r = run(&mut stage2(&t, &env));
    r.assert_code(0);
    for word in ["Changing", "Added", "Created", "would"] {
        assert!(!r.stdout.contains(word), "rerun printed {word}:\n{}", r.stdout);
    }
    assert!(r
        .stdout
        .contains("[stage2] hermes already in group 64000 for /dev/dri/renderD128\n"));
    assert_eq!((t.read("/etc/passwd"), t.read("/etc/group")), (passwd, group));
    assert_eq!(
        test_support::ctime_ns(&t.path("/etc/passwd")),
        ctime,
        "passwd not rewritten"
    );
    assert_eq!(
        test_support::ctime_ns(&t.path("/etc/group-")),
        backup_ctime,
        "backup not rewritten"
    );
}

#[test]
fn configured_user_name_is_used_in_messages() {
    require_root();
    let t = TempRoot::new();
    let mut passwd = t.read("/etc/passwd");
    passwd.push_str("agent:x:2000:2000::/opt/data:/bin/sh\n");
    t.write("/etc/passwd", &passwd);
    let mut group = t.read("/etc/group");
    group.push_str("agent:x:2000:\n");
    t.write("/etc/group", &group);
    t.mknod_dri();

    let r = run(stage2(&t, &[("PUID", "3000")]).arg("--runtime-user").arg("agent"));
    r.assert_code(0);
    assert!(
        r.stdout.contains("[stage2] Changing agent UID to 3000\n"),
        "{}",
        r.stdout
    );
    assert!(r
        .stdout
        .contains("[stage2] Added agent to group video (GID 44) for /dev/dri/card0\n"));
    assert_eq!(
        entry(&t.read("/etc/passwd"), "agent").as_deref(),
        Some("agent:x:3000:2000::/opt/data:/bin/sh")
    );
    assert_eq!(
        entry(&t.read("/etc/passwd"), "hermes").as_deref(),
        Some("hermes:x:10000:10000::/opt/data:/bin/sh")
    );
}
