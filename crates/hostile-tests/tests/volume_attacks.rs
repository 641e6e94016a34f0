//! Attacks the runtime user prepares on the data volume between two boots (it owns `H` and runs arbitrary
//! code): each test sets the trap the way `hermes` could, boots, and checks that root neither fell into it
//! nor let it stop the boot.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use hostile_tests::{image, program, RECONCILE, STAGE2};
use test_support::{run, TempRoot};

const HERMES: (u32, u32) = (10000, 10000);

/// A fresh volume owned by the runtime user, as after an earlier boot.
fn volume() -> TempRoot {
    let r = image();
    r.mkdir("/opt/data");
    std::os::unix::fs::chown(r.path("/opt/data"), Some(HERMES.0), Some(HERMES.1)).unwrap();
    r.write(
        "/proc/1/cmdline",
        "/init\0/opt/hermes/docker/bin/main-wrapper\0gateway\0run\0",
    );
    r
}

/// `prog` as PID 1 of a new PID namespace, so its PID — and anything named after it — is known in advance,
/// as it is in a container.
fn as_pid_1(r: &TempRoot, prog: &Path) -> Command {
    let inner = r.command(prog);
    let mut c = Command::new("unshare");
    c.env_clear();
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c.args(["--fork", "--pid", "--"]).arg(prog);
    c
}

#[test]
fn planted_temporary_names_do_not_block_seeding() {
    let r = volume();
    // Every name a writer that counts from its PID would try first, for the seeds of a first boot.
    let mut planted = 0;
    for name in [".env", "config.yaml", "SOUL.md"] {
        for pid in 1..=3 {
            for n in 0..32 {
                let p = r.path(&format!("/opt/data/.{name}.tmp.{pid}.{n}"));
                std::fs::create_dir(&p).unwrap();
                std::os::unix::fs::chown(&p, Some(HERMES.0), Some(HERMES.1)).unwrap();
                planted += 1;
            }
        }
    }
    let out = run(&mut as_pid_1(&r, &program(STAGE2)));
    assert_eq!(
        out.code,
        Some(0),
        "stage2-setup failed:\n{}{}",
        out.stdout,
        out.stderr
    );
    assert!(
        !format!("{}{}", out.stdout, out.stderr).contains("tmp."),
        "a planted temporary name got in the way:\n{}",
        out.stderr
    );
    for (seed, mode) in [(".env", 0o600), ("config.yaml", 0o640), ("SOUL.md", 0o644)] {
        let m = std::fs::symlink_metadata(r.path(&format!("/opt/data/{seed}")))
            .unwrap_or_else(|e| panic!("{seed} was not seeded ({e}):\n{}", out.stderr));
        assert!(m.is_file(), "{seed} is not a file");
        assert_eq!((m.uid(), m.gid()), HERMES, "{seed} owner");
        assert_eq!(m.mode() & 0o7777, mode, "{seed} mode");
    }
    let left = std::fs::read_dir(r.path("/opt/data"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp.")
        })
        .count();
    assert_eq!(
        left, planted,
        "the planted entries are the runtime user's and stay"
    );
}

/// A directory in the volume made by `hermes`.
fn user_dir(r: &TempRoot, p: &str) {
    r.mkdir(p);
    std::os::unix::fs::chown(r.path(p), Some(HERMES.0), Some(HERMES.1)).unwrap();
}

fn owner_mode(r: &TempRoot, p: &str) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(r.path(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

#[test]
fn a_home_below_a_symlinked_ancestor_is_refused_and_nothing_is_made_through_it() {
    let r = volume();
    r.write("/run/service/dashboard/run", "#!/bin/sh\nexec true\n");
    let before = owner_mode(&r, "/run/service");
    // `hermes` swaps `profiles` for a symlink to the scan directory, hoping root makes H inside it.
    std::os::unix::fs::symlink("/run/service", r.path("/opt/data/profiles")).unwrap();
    std::os::unix::fs::lchown(r.path("/opt/data/profiles"), Some(HERMES.0), Some(HERMES.1)).unwrap();
    let out = run(r
        .command(program(STAGE2))
        .env("HERMES_HOME", "/opt/data/profiles/coder"));
    assert_ne!(out.code, Some(0), "stage2-setup went on:\n{}", out.stderr);
    let text = format!("{}{}", out.stdout, out.stderr);
    let line = text
        .lines()
        .find(|l| l.contains("/opt/data/profiles"))
        .unwrap_or_else(|| panic!("no line names the symlink:\n{text}"));
    assert!(line.contains("symlink"), "the line gives no reason: {line}");
    assert!(
        !r.path("/run/service/coder").exists(),
        "root made H through the symlink"
    );
    assert_eq!(
        owner_mode(&r, "/run/service"),
        before,
        "the scan directory changed"
    );
}

#[test]
fn an_auth_home_below_a_root_directory_the_user_moved_in_is_not_handed_over() {
    let r = volume();
    // A root-only directory (with a secret) that `hermes` renamed into its tree as the auth home's parent.
    r.write("/opt/data/creds/auth/auth.json", "{\"root\":\"secret\"}");
    r.chmod("/opt/data/creds", 0o700);
    r.chmod("/opt/data/creds/auth", 0o700);
    r.chmod("/opt/data/creds/auth/auth.json", 0o600);
    let out = run(r
        .command(program(STAGE2))
        .env("HERMES_AUTH_HOME", "/opt/data/creds/auth"));
    for p in [
        "/opt/data/creds",
        "/opt/data/creds/auth",
        "/opt/data/creds/auth/auth.json",
    ] {
        assert_eq!(owner_mode(&r, p).0, 0, "{p} was handed over:\n{}", out.stderr);
    }
    let text = format!("{}{}", out.stdout, out.stderr);
    let line = text
        .lines()
        .find(|l| l.contains("/opt/data/creds"))
        .unwrap_or_else(|| panic!("no line names the unsafe directory:\n{text}"));
    assert!(line.contains("uid 10000"), "the line gives no reason: {line}");
}

#[test]
fn entries_made_as_the_runtime_user_never_use_roots_groups() {
    use std::os::unix::process::CommandExt;
    let r = volume();
    // H is `hermes`'s symlink to a group-4242 directory the runtime user may not write; root holds 4242.
    r.mkdir("/srv/shared");
    std::os::unix::fs::chown(r.path("/srv/shared"), Some(0), Some(4242)).unwrap();
    r.chmod("/srv/shared", 0o2775);
    std::fs::remove_dir(r.path("/opt/data")).unwrap();
    // Relative, so it stays inside the test root.
    std::os::unix::fs::symlink("../srv/shared", r.path("/opt/data")).unwrap();
    let mut c = r.command(program(STAGE2));
    // SAFETY: setgroups(2) only, between fork and exec.
    unsafe {
        c.pre_exec(|| {
            nix::unistd::setgroups(&[nix::unistd::Gid::from_raw(0), nix::unistd::Gid::from_raw(4242)])
                .map_err(std::io::Error::from)
        });
    }
    let out = run(&mut c);
    let made: Vec<String> = std::fs::read_dir(r.path("/srv/shared"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        made.is_empty(),
        "the boot made {made:?} where the runtime user may not write:\n{}{}",
        out.stdout,
        out.stderr
    );
}

fn gateway_slots(r: &TempRoot) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(r.path("/run/service"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("gateway-"))
        .collect();
    v.sort();
    v
}

/// `n` profiles `hermes` made with one `mkdir` and one `SOUL.md` each.
fn mass_profiles(r: &TempRoot, prefix: &str, n: usize, soul: bool) {
    user_dir(r, "/opt/data/profiles");
    for i in 0..n {
        let d = format!("/opt/data/profiles/{prefix}{i:04}");
        user_dir(r, &d);
        if soul {
            r.write(&format!("{d}/SOUL.md"), "x\n");
        }
    }
}

#[test]
fn a_thousand_mkdirs_get_no_more_slots_than_the_cap() {
    let r = volume();
    mass_profiles(&r, "p", 1000, true);
    let out = run(&mut r.command(program(RECONCILE)));
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let slots = gateway_slots(&r);
    assert_eq!(
        slots.len(),
        64,
        "the default cap is 64 slots, the root profile's included"
    );
    assert_eq!(slots[0], "gateway-default");
    assert_eq!(
        slots[63], "gateway-p0062",
        "the first profiles by name get the slots"
    );
    let refusals: Vec<&str> = out
        .stderr
        .lines()
        .chain(out.stdout.lines())
        .filter(|l| l.contains("no gateway slot for profile"))
        .collect();
    assert_eq!(refusals.len(), 1000 - 63, "one line per refused profile");
    assert!(refusals
        .iter()
        .any(|l| l.contains("p0999") && l.contains("HERMES_GATEWAY_LIMIT")));
    // The cap is the operator's to raise.
    let r = volume();
    mass_profiles(&r, "p", 100, true);
    let out = run(r.command(program(RECONCILE)).env("HERMES_GATEWAY_LIMIT", "101"));
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert_eq!(gateway_slots(&r).len(), 101);
    // Nonsense is refused with one line and the default applies.
    let r = volume();
    mass_profiles(&r, "p", 70, true);
    let out = run(r.command(program(RECONCILE)).env("HERMES_GATEWAY_LIMIT", "lots"));
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("HERMES_GATEWAY_LIMIT=lots is not a number"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(gateway_slots(&r).len(), 64);
    // `register` over the cap fails with the same line.
    user_dir(&r, "/opt/data/profiles/zz-late");
    r.write("/opt/data/profiles/zz-late/SOUL.md", "x\n");
    let out = run(r
        .command(program(RECONCILE))
        .args(["register", "zz-late", "--down"]));
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("no gateway slot for profile zz-late"),
        "{}",
        out.stderr
    );
    assert!(!r.exists("/run/service/gateway-zz-late"));
}

/// A child killed when dropped, also when the test fails.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The inotify watches a process holds, from `/proc/<pid>/fdinfo`.
fn inotify_watches(pid: u32) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        if let Ok(text) = std::fs::read_to_string(e.path()) {
            n += text.lines().filter(|l| l.starts_with("inotify wd:")).count();
        }
    }
    n
}

#[test]
fn the_registrar_holds_a_bounded_number_of_inotify_watches_and_slots() {
    let r = volume();
    test_support::s6::install_commands(&r);
    r.mkdir("/run/service/.s6-svscan");
    let _svscan = test_support::s6::Svscan::start(&r.path("/run/service"));
    // 3,000 directories that are no profiles, and 100 that are: the registrar watches and slots neither
    // by the thousand.
    mass_profiles(&r, "junk", 3000, false);
    mass_profiles(&r, "real", 100, true);
    let reg = Killed(
        r.command(program(RECONCILE))
            .arg("watch")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    test_support::s6::wait_until(std::time::Duration::from_secs(20), || {
        gateway_slots(&r).len() == 64
    });
    // Settled: no further slot appears, and the watches stay bounded by the cap.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let watches = inotify_watches(reg.0.id());
    let slots = gateway_slots(&r).len();
    drop(reg);
    assert_eq!(slots, 64, "the registrar kept to the cap");
    assert!(
        watches <= 2 * 64 + 18,
        "{watches} inotify watches for 3,100 directories: not bounded by the cap"
    );
}

/// A root-only entry `hermes` could rename but never open: as if moved from elsewhere in `H`.
fn root_secret(r: &TempRoot, p: &str) {
    r.write(p, "root secret\n");
    r.chmod(p, 0o600);
}

#[test]
fn root_entries_the_runtime_user_renamed_into_walked_names_are_not_handed_over() {
    let r = volume();
    user_dir(&r, "/opt/data/cron");
    root_secret(&r, "/opt/data/gateway.lock");
    root_secret(&r, "/opt/data/cron/jobs.json");
    // A root 0700 directory renamed to `profiles`, with a secret inside.
    r.mkdir("/opt/data/profiles");
    r.chmod("/opt/data/profiles", 0o700);
    root_secret(&r, "/opt/data/profiles/inner");
    let out = run(&mut r.command(program(STAGE2)));
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    for p in [
        "/opt/data/gateway.lock",
        "/opt/data/cron/jobs.json",
        "/opt/data/profiles",
        "/opt/data/profiles/inner",
    ] {
        assert_eq!(owner_mode(&r, p).0, 0, "{p} was handed over:\n{}", out.stdout);
    }
    let text = format!("{}{}", out.stdout, out.stderr);
    for p in [
        "/opt/data/gateway.lock",
        "/opt/data/cron/jobs.json",
        "/opt/data/profiles",
    ] {
        let line = text
            .lines()
            .find(|l| l.contains("with its owner") && l.contains(p))
            .unwrap_or_else(|| panic!("no warning names {p}:\n{text}"));
        assert!(
            line.contains("chown -R 10000:10000"),
            "no command that hands it over: {line}"
        );
    }
}

#[test]
fn a_puid_change_hands_over_the_previous_users_private_files_and_roots_readable_ones() {
    let r = volume();
    // The previous container ran as 1000: H and its files are 1000's, secrets 0600.
    for p in [
        "/opt/data/cron/jobs.json",
        "/opt/data/sessions/s1/t.jsonl",
        "/opt/data/.env",
        "/opt/data/auth.json",
    ] {
        r.write(p, "mine\n");
        r.chmod(p, 0o600);
    }
    r.mkdir("/opt/data/memories/private");
    r.chmod("/opt/data/memories/private", 0o700);
    for p in [
        "/opt/data",
        "/opt/data/cron",
        "/opt/data/cron/jobs.json",
        "/opt/data/sessions",
        "/opt/data/sessions/s1",
        "/opt/data/sessions/s1/t.jsonl",
        "/opt/data/.env",
        "/opt/data/auth.json",
        "/opt/data/memories",
        "/opt/data/memories/private",
    ] {
        std::os::unix::fs::chown(r.path(p), Some(1000), Some(1000)).unwrap();
    }
    // Root made this one for the user and it is readable: handed over too.
    r.write("/opt/data/skills/readme.md", "shared\n");
    r.chmod("/opt/data/skills/readme.md", 0o644);
    let out = run(&mut r.command(program(STAGE2)));
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    for p in [
        "/opt/data",
        "/opt/data/cron/jobs.json",
        "/opt/data/sessions/s1/t.jsonl",
        "/opt/data/.env",
        "/opt/data/auth.json",
        "/opt/data/memories/private",
        "/opt/data/skills/readme.md",
    ] {
        let (u, g, _) = owner_mode(&r, p);
        assert_eq!((u, g), HERMES, "{p} was not handed over:\n{}", out.stdout);
    }
    assert_eq!(owner_mode(&r, "/opt/data/auth.json").2, 0o600, "modes are kept");
    assert!(
        !format!("{}{}", out.stdout, out.stderr).contains("with its owner"),
        "nothing legitimate is left behind:\n{}",
        out.stdout
    );
}
