//! Root without CAP_CHOWN (`docker run --cap-drop CHOWN`): every mode still publishes working slots and
//! the boot log, with one warning per run that says the runtime user cannot control the gateways (SPEC
//! §0: a failing step leaves the system usable).

use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use test_support::s6::{install_commands, wait_until, Svscan};
use test_support::{run, TempRoot, HERMES_GID, HERMES_UID};

const BIN: &str = env!("CARGO_BIN_EXE_reconcile-profiles");
const LIMIT: Duration = Duration::from_secs(20);
const ROOT: (u32, u32) = (0, 0);

fn setup() -> TempRoot {
    let r = TempRoot::for_reconcile();
    r.mkdir("/opt/data/profiles");
    r.chown("/opt/data", HERMES_UID, HERMES_GID);
    r.chown("/opt/data/profiles", HERMES_UID, HERMES_GID);
    r
}

fn profile(r: &TempRoot, name: &str) {
    let dir = format!("/opt/data/profiles/{name}");
    r.mkdir(&dir);
    r.write(&format!("{dir}/SOUL.md"), "soul\n");
    r.chown(&dir, HERMES_UID, HERMES_GID);
}

/// `reconcile-profiles <args>` in a child whose capability sets lack CAP_CHOWN (util-linux `setpriv`:
/// root's exec then gets no CAP_CHOWN, as in a container started with `--cap-drop CHOWN`).
fn without_chown(r: &TempRoot, args: &[&str]) -> Command {
    let mut cmd = r.command("setpriv");
    cmd.args(["--inh-caps=-chown", "--bounding-set=-chown", "--", BIN])
        .args(args);
    cmd
}

fn warnings(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.contains("WARNING")).collect()
}

/// The one warning: it names the refused call and its errno, and what that costs.
fn assert_one_chown_warning(out: &str) {
    let w = warnings(out);
    assert_eq!(w.len(), 1, "{out}");
    assert!(w[0].starts_with("reconcile: WARNING: chown /"), "{}", w[0]);
    assert!(w[0].contains("EPERM (Operation not permitted)"), "{}", w[0]);
    assert!(w[0].contains("hermes cannot control gateways"), "{}", w[0]);
    assert!(w[0].ends_with(" — continuing"), "{}", w[0]);
}

/// A complete slot whose every entry is root's; the skeleton keeps the root-owned layout's modes.
fn assert_root_slot(r: &TempRoot, profile: &str) {
    let slot = format!("/run/service/gateway-{profile}");
    for (rel, mode) in [
        ("", 0o755),
        ("/type", 0o644),
        ("/run", 0o755),
        ("/finish", 0o755),
        ("/log/run", 0o755),
        ("/supervise", 0o710),
        ("/event", 0o710),
        ("/supervise/event", 0o710),
        ("/supervise/control", 0o620),
        ("/log/supervise/control", 0o620),
    ] {
        let p = format!("{slot}{rel}");
        assert!(r.exists(&p), "{p} missing");
        assert_eq!(r.owner(&p), ROOT, "{p}");
        assert_eq!(r.mode(&p), mode, "{p}: {:o}", r.mode(&p));
    }
    assert!(
        std::fs::symlink_metadata(r.path(&format!("{slot}/supervise/control")))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    // Root's scripts: the gateway still runs as the runtime user.
    assert!(r
        .read(&format!("{slot}/run"))
        .contains("exec /command/s6-setuidgid hermes hermes "));
    assert!(!r.exists(&format!("/run/service/.gateway-{profile}.tmp")));
}

#[test]
fn boot_publishes_root_slots_and_writes_the_boot_log() {
    let r = setup();
    profile(&r, "coder");
    profile(&r, "writer");
    // A legacy `gateway run` container: the migrated state file is written too.
    r.write(
        "/proc/1/cmdline",
        b"/init\0/opt/hermes/docker/bin/main-wrapper\0gateway\0run\0",
    );
    let out = run(&mut without_chown(&r, &[]));
    out.assert_code(0);
    assert_one_chown_warning(&out.stdout);
    for p in ["default", "coder", "writer"] {
        assert_root_slot(&r, p);
    }
    assert!(
        !r.exists("/run/service/gateway-default/down"),
        "migrated: started"
    );
    assert!(r.exists("/run/service/gateway-coder/down"));
    for line in [
        "reconcile: profile=default prior_state=running action=started",
        "reconcile: profile=coder prior_state=None action=registered",
        "reconcile: profile=writer prior_state=None action=registered",
    ] {
        assert!(out.stdout.contains(line), "{line}\n{}", out.stdout);
    }
    // RP-16: written, with the modes of the SPEC; root's, since it could not be given away.
    let log = r.read("/opt/data/logs/container-boot.log");
    assert_eq!(log.lines().count(), 3, "{log}");
    assert!(
        log.contains(" profile=default prior_state=running action=started "),
        "{log}"
    );
    assert_eq!(r.mode("/opt/data/logs"), 0o755);
    assert_eq!(r.mode("/opt/data/logs/container-boot.log"), 0o644);
    assert_eq!(r.owner("/opt/data/logs/container-boot.log"), ROOT);
    assert!(r
        .read("/opt/data/gateway_state.json")
        .contains("\"migrated_from\":\"legacy-container-cmd\""));
    assert_eq!(r.mode("/opt/data/gateway_state.json"), 0o644);

    // The next boot replaces the slots and appends to the existing log: still one warning.
    r.write(
        "/proc/1/cmdline",
        b"/init\0/opt/hermes/docker/bin/main-wrapper\0sleep\0infinity\0",
    );
    let again = run(&mut without_chown(&r, &[]));
    again.assert_code(0);
    assert_one_chown_warning(&again.stdout);
    assert_root_slot(&r, "coder");
    assert_eq!(r.read("/opt/data/logs/container-boot.log").lines().count(), 6);
}

#[test]
fn user_owned_slots_fall_back_to_root_slots() {
    let r = setup();
    profile(&r, "coder");
    let mut cmd = without_chown(&r, &[]);
    cmd.env("HERMES_GATEWAY_SLOTS", "user-owned");
    let out = run(&mut cmd);
    out.assert_code(0);
    let w = warnings(&out.stdout);
    // The switch's own warning, then the chown refusal's (the scan directory is the first chown).
    assert_eq!(w.len(), 2, "{}", out.stdout);
    assert!(w[0].contains("HERMES_GATEWAY_SLOTS=user-owned"), "{}", w[0]);
    assert!(
        w[1].contains("EPERM") && w[1].contains("hermes cannot control gateways"),
        "{}",
        w[1]
    );
    assert_root_slot(&r, "default");
    assert_root_slot(&r, "coder");
    assert!(r
        .read("/opt/data/logs/container-boot.log")
        .contains(" profile=coder "));
}

#[test]
fn root_register_publishes_a_root_slot() {
    let r = setup();
    install_commands(&r);
    let _svscan = Svscan::start(&r.path("/run/service"));
    let out = run(&mut without_chown(&r, &["register", "solo", "--down"]));
    out.assert_code(0);
    assert_one_chown_warning(&out.stdout);
    assert!(
        out.stdout
            .ends_with("reconcile: registered gateway-solo (down)\n"),
        "{}",
        out.stdout
    );
    assert_root_slot(&r, "solo");
}

/// `reconcile-profiles watch` without CAP_CHOWN; SIGTERM when dropped.
struct Watch {
    child: Option<Child>,
    log: PathBuf,
}

impl Watch {
    fn start(r: &TempRoot) -> Watch {
        let log = r.path("/tmp/registrar.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = without_chown(r, &["watch"])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Watch {
            child: Some(child),
            log,
        }
    }
    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        child.wait().unwrap().code()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn registrar_publishes_root_slots_with_one_warning() {
    let r = setup();
    install_commands(&r);
    let _svscan = Svscan::start(&r.path("/run/service"));
    let mut reg = Watch::start(&r);
    wait_until(LIMIT, || r.exists("/run/service/gateway-default/run"));
    profile(&r, "coder");
    wait_until(LIMIT, || r.exists("/run/service/gateway-coder"));
    profile(&r, "writer");
    wait_until(LIMIT, || r.exists("/run/service/gateway-writer"));
    wait_until(LIMIT, || {
        reg.output().contains("registered gateway-writer (down)")
    });
    for p in ["default", "coder", "writer"] {
        assert_root_slot(&r, p);
    }
    assert_eq!(reg.stop(), Some(0));
    assert_one_chown_warning(&reg.output());
}
