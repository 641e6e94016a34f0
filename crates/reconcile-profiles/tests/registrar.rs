//! `reconcile-profiles watch`, the profile registrar, and the runtime user's `register`/`unregister`
//! requests it serves (root-owned slots, the default).

use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use test_support::s6::{install_commands, supervisor_running, tool_as, wait_until, Svscan};
use test_support::{run, run_as, Run, TempRoot, HERMES_GID, HERMES_UID};

const BIN: &str = env!("CARGO_BIN_EXE_reconcile-profiles");
const LIMIT: Duration = Duration::from_secs(20);

fn setup() -> TempRoot {
    let r = TempRoot::for_reconcile();
    r.mkdir("/run/service/.s6-svscan");
    r.mkdir("/opt/data/profiles");
    r.chown("/opt/data", HERMES_UID, HERMES_GID);
    r.chown("/opt/data/profiles", HERMES_UID, HERMES_GID);
    install_commands(&r);
    r
}

/// A running `reconcile-profiles watch`; SIGTERM when dropped.
struct Registrar {
    child: Option<Child>,
    log: PathBuf,
}

impl Registrar {
    fn start(r: &TempRoot, args: &[&str]) -> Registrar {
        Registrar::start_with(r, args, &[])
    }
    fn start_with(r: &TempRoot, args: &[&str], env: &[(&str, &str)]) -> Registrar {
        Registrar::spawn(r, args, env, None)
    }
    /// The registrar of a run without root (`--user`), as that user.
    fn start_as(r: &TempRoot, ids: (u32, u32)) -> Registrar {
        Registrar::spawn(r, &[], &[], Some(ids))
    }
    fn spawn(r: &TempRoot, args: &[&str], env: &[(&str, &str)], ids: Option<(u32, u32)>) -> Registrar {
        let log = r.path(&format!("/tmp/registrar.{}.log", std::process::id()));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = r.command(BIN);
        cmd.arg("watch")
            .args(args)
            .envs(env.iter().copied())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        if let Some((uid, gid)) = ids {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        let child = cmd.spawn().unwrap();
        let reg = Registrar {
            child: Some(child),
            log,
        };
        wait_until(LIMIT, || reg.output().contains("registrar watching"));
        reg
    }
    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }
    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    fn signal(&self, s: Signal) {
        kill(self.pid(), s).unwrap();
    }
    /// SIGTERM and the exit code.
    fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        child.wait().unwrap().code()
    }
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registrar {
    fn drop(&mut self) {
        self.stop();
    }
}

fn profile(r: &TempRoot, name: &str) {
    let dir = format!("/opt/data/profiles/{name}");
    r.mkdir(&dir);
    r.write(&format!("{dir}/SOUL.md"), "soul\n");
    r.chown(&dir, HERMES_UID, HERMES_GID);
}

fn as_hermes(r: &TempRoot, args: &[&str]) -> Run {
    let mut cmd = r.command(BIN);
    cmd.args(args);
    run_as(&mut cmd, HERMES_UID, HERMES_GID)
}

fn slot(_r: &TempRoot, p: &str) -> String {
    format!("/run/service/gateway-{p}")
}

#[test]
fn new_profiles_get_a_down_slot_and_removed_ones_lose_theirs() {
    let r = setup();
    let scandir = r.path("/run/service");
    let _svscan = Svscan::start(&scandir);
    let mut reg = Registrar::start(&r, &[]);
    // The root profile first, without any profile directory.
    wait_until(LIMIT, || r.exists("/run/service/gateway-default/run"));

    profile(&r, "coder");
    wait_until(LIMIT, || r.exists(&slot(&r, "coder")));
    assert!(r.exists("/run/service/gateway-coder/down"));
    assert_eq!(r.owner("/run/service/gateway-coder/run"), (0, 0));
    assert_eq!(
        r.owner("/run/service/gateway-coder/supervise/control"),
        (0, HERMES_GID)
    );
    // Supervised without a restart, and the runtime user controls it.
    let dir = r.path(&slot(&r, "coder"));
    // s6-supervise answers on its control FIFO (s6-svok) a moment before it first writes its status
    // file (s6-svstat): wait for both.
    wait_until(LIMIT, || {
        tool_as(HERMES_UID, HERMES_GID, "s6-svok", &[dir.as_os_str()]).0 == Some(0)
            && r.exists("/run/service/gateway-coder/supervise/status")
    });
    let (code, out) = tool_as(HERMES_UID, HERMES_GID, "s6-svstat", &[dir.as_os_str()]);
    assert_eq!(code, Some(0), "{out}");

    // A directory without SOUL.md is not a profile (yet).
    r.mkdir("/opt/data/profiles/draft");
    std::fs::remove_dir_all(r.path("/opt/data/profiles/coder")).unwrap();
    wait_until(LIMIT, || {
        reg.output().contains("reconcile: unregistered gateway-coder")
    });
    assert!(!r.exists(&slot(&r, "coder")));
    assert!(!supervisor_running(&scandir, "gateway-coder"));
    assert!(!r.exists("/run/service/.gateway-coder.tmp.old"));
    r.write("/opt/data/profiles/draft/SOUL.md", "x");
    wait_until(LIMIT, || r.exists(&slot(&r, "draft")));

    assert_eq!(reg.stop(), Some(0), "SIGTERM ends the registrar cleanly");
    let out = reg.output();
    let changes: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("registered gateway-"))
        .collect();
    assert_eq!(
        changes,
        [
            "reconcile: registered gateway-default (down)",
            "reconcile: registered gateway-coder (down)",
            "reconcile: unregistered gateway-coder",
            "reconcile: registered gateway-draft (down)",
        ],
        "{out}"
    );
    assert_eq!(out.matches("WARNING").count(), 0, "{out}");
}

#[test]
fn runtime_user_requests_are_served_by_the_registrar() {
    let r = setup();
    let scandir = r.path("/run/service");
    let _svscan = Svscan::start(&scandir);
    profile(&r, "coder");
    run(&mut r.command(BIN)).assert_code(0);
    let _reg = Registrar::start(&r, &[]);

    // The runtime user cannot touch the scan directory; register is a request.
    let out = as_hermes(&r, &["register", "coder"]);
    out.assert_code(0);
    assert_eq!(out.stdout, "reconcile: registered gateway-coder (up)\n");
    let dir = r.path(&slot(&r, "coder"));
    let (_, st) = tool_as(HERMES_UID, HERMES_GID, "s6-svstat", &[dir.as_os_str()]);
    assert!(
        st.contains("want up") || st.starts_with("up") || st.starts_with("down"),
        "{st}"
    );

    // unregister while the directory exists: recorded in it, honoured by the registrar and the boot.
    let out = as_hermes(&r, &["unregister", "coder"]);
    out.assert_code(0);
    assert_eq!(out.stdout, "reconcile: unregistered gateway-coder\n");
    assert!(!r.exists(&slot(&r, "coder")));
    assert!(r.exists("/opt/data/profiles/coder/.gateway-unregistered"));
    assert_eq!(
        r.owner("/opt/data/profiles/coder/.gateway-unregistered"),
        (HERMES_UID, HERMES_GID)
    );
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        !r.exists(&slot(&r, "coder")),
        "the registrar keeps it unregistered"
    );
    let boot = run(&mut r.command(BIN));
    boot.assert_code(0);
    assert!(
        boot.stdout
            .contains("reconcile: skipping profile coder: unregistered on request"),
        "{}",
        boot.stdout
    );
    assert!(!r.exists(&slot(&r, "coder")));

    // register withdraws the request.
    let out = as_hermes(&r, &["register", "coder", "--down"]);
    out.assert_code(0);
    assert_eq!(out.stdout, "reconcile: registered gateway-coder (down)\n");
    assert!(!r.exists("/opt/data/profiles/coder/.gateway-unregistered"));

    // No such profile.
    let out = as_hermes(&r, &["register", "ghost"]);
    out.assert_code(1);
    assert!(
        out.stderr
            .starts_with("reconcile: error: profile 'ghost' does not exist"),
        "{}",
        out.stderr
    );
    // Directory gone first (`profile delete`): the removal is the request.
    std::fs::remove_dir_all(r.path("/opt/data/profiles/coder")).unwrap();
    let out = as_hermes(&r, &["unregister", "coder"]);
    out.assert_code(0);
    assert!(!r.exists(&slot(&r, "coder")));
    let out = as_hermes(&r, &["unregister", "coder"]);
    out.assert_code(0);
    assert_eq!(out.stdout, "reconcile: gateway-coder is not registered\n");
}

#[test]
fn requests_time_out_with_exit_4_when_no_registrar_runs() {
    let r = setup();
    profile(&r, "coder");
    let out = as_hermes(&r, &["register", "coder", "--timeout", "0.3"]);
    out.assert_code(4);
    assert!(
        out.stderr
            .contains("timed out after 0.3 s waiting for the registrar"),
        "{}",
        out.stderr
    );
    assert!(!r.exists(&slot(&r, "coder")));
    // As root, register acts directly (and fails only because no s6-svscan runs here).
    let root = run(r.command(BIN).args(["register", "coder", "--dry-run"]));
    root.assert_code(0);
    assert!(root
        .stdout
        .contains("would publish slot /run/service/gateway-coder (up)"));
    let help = run(r.command(BIN).arg("--help"));
    assert!(
        help.stdout.contains("4  register/unregister as the runtime user"),
        "{}",
        help.stdout
    );
    assert!(help.stdout.contains("HERMES_GATEWAY_SLOTS"), "{}", help.stdout);
}

#[test]
fn symlinked_and_malformed_profiles_are_refused_with_one_warning_each() {
    let r = setup();
    profile(&r, "good");
    r.mkdir("/elsewhere/linked");
    r.write("/elsewhere/linked/SOUL.md", "x");
    r.symlink(r.path("/elsewhere/linked"), "/opt/data/profiles/linked");
    profile(&r, "Bad");
    profile(&r, "swapped");
    let reg = Registrar::start(&r, &["--rescan-interval", "1"]);
    wait_until(LIMIT, || r.exists(&slot(&r, "swapped")));
    // A profile directory swapped for a symlink: refused, its slot removed.
    std::fs::rename(r.path("/opt/data/profiles/swapped"), r.path("/elsewhere/swapped")).unwrap();
    r.symlink(r.path("/elsewhere/swapped"), "/opt/data/profiles/swapped");
    wait_until(LIMIT, || !r.exists(&slot(&r, "swapped")));
    // Several full rescans.
    std::thread::sleep(Duration::from_millis(2500));
    let out = reg.output();
    for (needle, n) in [
        (
            "refusing profile through symlinked path /opt/data/profiles/linked",
            1,
        ),
        (
            "refusing profile through symlinked path /opt/data/profiles/swapped",
            1,
        ),
        ("skipping profile Bad: profile name must match", 1),
        ("s6-svscanctl -a /run/service failed", 1),
    ] {
        assert_eq!(out.matches(needle).count(), n, "{needle}\n{out}");
    }
    assert!(r.exists(&slot(&r, "good")));
    for p in ["linked", "Bad"] {
        assert!(!r.exists(&slot(&r, p)), "{p}");
    }
    assert!(!r.exists("/elsewhere/linked/supervise"));
}

/// Non-dot entries of the scan directory that lack `run` or `type` (what s6-svscan would supervise
/// half-built).
fn half_built(scandir: &std::path::Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(scandir) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .filter(|n| {
            let d = scandir.join(n);
            // Vanished meanwhile (moved aside for removal) is fine.
            d.exists() && !(d.join("run").exists() && d.join("type").exists())
        })
        .collect()
}

fn gateway_count(r: &TempRoot) -> usize {
    std::fs::read_dir(r.path("/run/service"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("gateway-")
        })
        .count()
}

#[test]
fn a_burst_of_1000_profiles_converges_through_a_kill_and_restart_without_half_built_slots() {
    let r = setup();
    let scandir = r.path("/run/service");
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (stop, scandir) = (stop.clone(), scandir.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                seen.extend(half_built(&scandir));
            }
            seen
        })
    };
    let many = [("HERMES_GATEWAY_LIMIT", "1001")];
    let mut reg = Registrar::start_with(&r, &[], &many);
    for i in 0..1000 {
        profile(&r, &format!("p{i:04}"));
    }
    // Kill it in the middle of publishing.
    wait_until(LIMIT, || gateway_count(&r) > 50);
    reg.kill9();
    let restarted = Registrar::start_with(&r, &[], &many);
    wait_until(Duration::from_secs(60), || gateway_count(&r) == 1001);
    stop.store(true, Ordering::Relaxed);
    let seen = poller.join().unwrap();
    assert!(seen.is_empty(), "half-built slots were visible: {seen:?}");
    for i in [0, 499, 999] {
        assert!(r.exists(&format!("/run/service/gateway-p{i:04}/log/supervise/control")));
    }
    // Converged and settled: no staging left, nothing more to do.
    std::thread::sleep(Duration::from_millis(500));
    let leftovers: Vec<_> = std::fs::read_dir(&scandir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".gateway-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let out = restarted.output();
    assert_eq!(
        out.matches("reconcile: registered gateway-p0999 (down)").count(),
        1,
        "published once"
    );
}

/// Sets a kernel setting for the registrar's inotify instance (read when the instance is created) and
/// restores it when dropped.
struct Sysctl {
    path: &'static str,
    old: String,
}

impl Sysctl {
    fn set(path: &'static str, value: &str) -> Sysctl {
        let old = std::fs::read_to_string(path).unwrap();
        std::fs::write(path, value).unwrap();
        Sysctl { path, old }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path, self.old.trim());
    }
}

#[test]
fn an_inotify_queue_overflow_triggers_a_full_rescan() {
    let r = setup();
    let reg = {
        let _small = Sysctl::set("/proc/sys/fs/inotify/max_queued_events", "16");
        Registrar::start_with(&r, &[], &[("HERMES_GATEWAY_LIMIT", "201")])
    };
    wait_until(LIMIT, || r.exists(&slot(&r, "default")));
    // Paused, it cannot read its queue while 200 profiles appear.
    reg.signal(Signal::SIGSTOP);
    for i in 0..200 {
        profile(&r, &format!("q{i:03}"));
    }
    reg.signal(Signal::SIGCONT);
    wait_until(LIMIT, || gateway_count(&r) == 201);
    assert!(
        reg.output()
            .contains("inotify queue overflowed; rescanning every profile"),
        "{}",
        reg.output()
    );
}

#[test]
fn watch_without_root_serves_the_users_own_scan_directory() {
    let r = setup();
    // A run with --user: s6-overlay's preinit makes the scan directory the user's own.
    r.chown("/run/service", HERMES_UID, HERMES_GID);
    r.chown("/run/service/.s6-svscan", HERMES_UID, HERMES_GID);
    let _svscan = Svscan::start_as(&r.path("/run/service"), HERMES_UID, HERMES_GID);
    profile(&r, "coder");
    let reg = Registrar::start_as(&r, (HERMES_UID, HERMES_GID));
    // Its first scan gives the profile a slot, made as the user.
    wait_until(LIMIT, || r.exists(&slot(&r, "coder")));
    assert_eq!(
        r.owner(&slot(&r, "coder")),
        (HERMES_UID, HERMES_GID),
        "{}",
        reg.output()
    );
    let out = as_hermes(&r, &["unregister", "coder", "--timeout", "5"]);
    out.assert_code(0);
    assert!(!r.exists(&slot(&r, "coder")));
    let out = as_hermes(&r, &["register", "coder", "--timeout", "5"]);
    out.assert_code(0);
    assert!(
        out.stdout.starts_with("reconcile: registered gateway-coder"),
        "{}",
        out.stdout
    );
    assert_eq!(
        r.owner(&slot(&r, "coder")),
        (HERMES_UID, HERMES_GID),
        "{}",
        reg.output()
    );
    assert!(!reg.output().contains("error"), "{}", reg.output());
}

#[test]
fn watch_needs_a_runtime_user() {
    let r = setup();
    let out = run(r.command(BIN).args(["watch", "--runtime-user", "nosuch"]));
    out.assert_code(1);
    assert!(
        out.stderr.contains("runtime user nosuch not found"),
        "{}",
        out.stderr
    );
}

#[test]
fn register_as_the_runtime_user_needs_soul_md() {
    let r = setup();
    // A directory without SOUL.md is no profile (RP-09): the registrar would never give it a slot.
    r.mkdir("/opt/data/profiles/draft");
    r.chown("/opt/data/profiles/draft", HERMES_UID, HERMES_GID);
    let out = as_hermes(&r, &["register", "draft", "--timeout", "0.2"]);
    out.assert_code(1);
    assert_eq!(
        out.stderr,
        "reconcile: error: profile 'draft' does not exist (no /opt/data/profiles/draft/SOUL.md)\n"
    );
    assert!(!r.exists(&slot(&r, "draft")));
    // Documented, with its exit code.
    let help = run(r.command(BIN).args(["register", "--help"]));
    help.assert_code(0);
    assert!(
        help.stdout
            .contains("profile '<PROFILE>' does not exist\" and exit 1"),
        "{}",
        help.stdout
    );
    let help = run(r.command(BIN).arg("--help"));
    assert!(
        help.stdout
            .contains("register as the runtime user: no such profile"),
        "{}",
        help.stdout
    );
}

#[test]
fn dashboard_container_registrar_registers_nothing_and_idles_until_sigterm() {
    let r = setup();
    let _svscan = Svscan::start(&r.path("/run/service"));
    profile(&r, "coder");
    // s6-svscan is PID 1; the main program is found by its argv (RP-02).
    r.write("/proc/1/cmdline", b"s6-svscan\0/run/service\0");
    r.write(
        "/proc/57/cmdline",
        b"/bin/sh\0-e\0/run/s6/basedir/scripts/rc.init\0top\0/opt/hermes/docker/bin/main-wrapper\0dashboard\0--host\0localhost\0",
    );
    let log = r.path("/tmp/registrar-dashboard.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = r
        .command(BIN)
        .args(["watch", "--rescan-interval", "1"])
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let output = || std::fs::read_to_string(&log).unwrap_or_default();
    let skip = "reconcile: skipping (dashboard container — does not need per-profile gateways)\n";
    wait_until(LIMIT, || output().contains(skip));
    // Long enough for a pass and a timed rescan, and for a new profile to have been noticed.
    profile(&r, "writer");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the registrar exited (s6 would restart it)"
    );
    let names: Vec<_> = std::fs::read_dir(r.path("/run/service"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("gateway-") || n.starts_with(".gateway-"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let all = output();
    assert!(all.starts_with(skip), "{all}");
    assert_eq!(all.matches("skipping").count(), 1, "{all}");
    assert!(!all.contains("registered"), "{all}");
}
