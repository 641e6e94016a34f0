//! The runtime user against the supervision tree, under a real `s6-svscan` run as root (Debian's s6).
//!
//! Each attack is what an agent process running as the runtime user could try in order to have root's
//! s6-supervise run its code or write for it. With root-owned slots (the default) every attempt fails and
//! no canary appears; with `HERMES_GATEWAY_SLOTS=user-owned` the same attempts succeed and root writes the
//! canaries — the exposure the switch's warning talks about, and proof that these tests bite.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use test_support::s6::{install_commands, tool, tool_as, wait_until, Svscan};
use test_support::{require_root, run, run_as, TempRoot, HERMES_GID, HERMES_UID};

const BIN: &str = env!("CARGO_BIN_EXE_reconcile-profiles");
const LIMIT: Duration = Duration::from_secs(15);
/// One profile per attack that needs a slot of its own.
const PROFILES: [&str; 6] = ["a1", "a2", "a3", "a4", "a5", "a6"];
/// An `ftrig1` name as s6's fifodir subscribers create them (`ftrig1:@` and 31 more characters).
const FTRIG: &str = "ftrig1:@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

struct Lab {
    r: TempRoot,
    svscan: Option<Svscan>,
}

impl Lab {
    fn s(&self) -> PathBuf {
        self.r.path("/run/service")
    }
    fn canary(&self, name: &str) -> PathBuf {
        self.r.path(&format!("/tmp/canary.{name}"))
    }
    /// A script that records who ran it.
    fn evil(&self, name: &str) -> String {
        format!(
            "#!/bin/sh\nid -u > {}\nexec sleep 600\n",
            self.canary(name).display()
        )
    }
    /// Runs a shell script as the runtime user; true when it exited 0.
    fn attempt(&self, script: &str) -> bool {
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", script]).env_clear().env("PATH", "/usr/bin:/bin");
        run_as(&mut cmd, HERMES_UID, HERMES_GID).code == Some(0)
    }
    /// `s6-svscanctl -a` as root: s6-svscan looks at the scan directory again now.
    fn rescan(&self) {
        let st = std::process::Command::new(tool("s6-svscanctl"))
            .arg("-a")
            .arg(self.s())
            .status()
            .unwrap();
        assert!(st.success());
    }
}

fn lab(user_owned: bool) -> Lab {
    require_root();
    let r = TempRoot::new();
    r.mkdir("/run/service/.s6-svscan");
    r.mkdir("/opt/data");
    r.write(
        "/proc/1/cmdline",
        b"/init\0/opt/hermes/docker/bin/main-wrapper\0sleep\0infinity\0",
    );
    install_commands(&r);
    for p in PROFILES {
        r.write(&format!("/opt/data/profiles/{p}/SOUL.md"), "soul\n");
    }
    r.write("/tmp/victim", "ABCDEF");
    r.chmod("/tmp/victim", 0o644);
    // As in the container: s6-svscan runs before the boot step.
    let svscan = Svscan::start(&r.path("/run/service"));
    let mut cmd = r.command(BIN);
    if user_owned {
        cmd.env("HERMES_GATEWAY_SLOTS", "user-owned");
    }
    run(&mut cmd).assert_code(0);
    // The rendered scripts exec /command/with-contenv, which only the image has: stand-ins that run
    // under s6 here (owner and mode kept, so the tree is exactly what the boot made).
    for p in PROFILES {
        for (rel, body) in [
            ("run", "#!/bin/sh\nexec sleep 600\n"),
            ("finish", "#!/bin/sh\nexit 0\n"),
            ("log/run", "#!/bin/sh\nexec cat >/dev/null\n"),
        ] {
            let path = format!("/run/service/gateway-{p}/{rel}");
            let (owner, mode) = (r.owner(&path), r.mode(&path));
            r.write(&path, body);
            r.chown(&path, owner.0, owner.1);
            r.chmod(&path, mode);
        }
    }
    let l = Lab {
        r,
        svscan: Some(svscan),
    };
    l.rescan();
    for p in PROFILES {
        let status = l.s().join(format!("gateway-{p}/log/supervise/status"));
        wait_until(LIMIT, || status.exists());
    }
    l
}

/// Every attack; returns the names of those that succeeded.
fn attacks(l: &Lab) -> Vec<&'static str> {
    let s = l.s().display().to_string();
    let q = |name: &str| l.canary(name).display().to_string();
    let mut succeeded = Vec::new();
    let mut note = |name: &'static str, ok: bool| {
        if ok {
            succeeded.push(name);
        }
    };

    // A new slot with a run script.
    note(
        "new slot",
        l.attempt(&format!(
            "mkdir {s}/gateway-evil && printf '%s' '{}' > {s}/gateway-evil/run && chmod 755 {s}/gateway-evil/run",
            l.evil("new")
        )),
    );
    // Edit an existing slot's run (then start it: the runtime user may).
    note(
        "edit run",
        l.attempt(&format!("printf '%s' '{}' > {s}/gateway-a1/run", l.evil("run"))),
    );
    // Replace an existing slot's run by a new file.
    note(
        "replace run",
        l.attempt(&format!(
            "rm -f {s}/gateway-a2/run && printf '%s' '{}' > {s}/gateway-a2/run && chmod 755 {s}/gateway-a2/run",
            l.evil("replace")
        )),
    );
    // finish runs as root after run exits.
    note(
        "edit finish",
        l.attempt(&format!(
            "printf '#!/bin/sh\\nid -u > {}\\nexit 125\\n' > {s}/gateway-a3/finish && printf '#!/bin/sh\\nexit 0\\n' > {s}/gateway-a3/run",
            q("finish")
        )),
    );
    // log/run is restarted by its s6-supervise when it exits, which the runtime user may ask for.
    note(
        "edit log/run",
        l.attempt(&format!(
            "printf '%s' '{}' > {s}/gateway-a4/log/run",
            l.evil("log")
        )),
    );
    tool_as(
        HERMES_UID,
        HERMES_GID,
        "s6-svc",
        &[OsStr::new("-t"), l.s().join("gateway-a4/log").as_os_str()],
    );
    // Rename a slot away and put another in its place.
    note(
        "swap slot",
        l.attempt(&format!(
            "mv {s}/gateway-a5 {s}/.a5-away && mkdir {s}/gateway-a5 && printf '%s' '{}' > {s}/gateway-a5/run && chmod 755 {s}/gateway-a5/run",
            l.evil("swap")
        )),
    );
    // Plant entries inside supervise/ and event/ (s6-supervise writes there as root).
    note(
        "symlink in supervise/",
        l.attempt(&format!("ln -s /tmp/victim {s}/gateway-a6/supervise/planted")),
    );
    note(
        "fifo in supervise/",
        l.attempt(&format!("mkfifo {s}/gateway-a6/supervise/planted-fifo")),
    );
    note(
        "symlink in event/",
        l.attempt(&format!(
            "ln -s {v} {s}/gateway-a6/event/{FTRIG} && ln -s {v} {s}/gateway-a6/supervise/event/{FTRIG}",
            v = l.r.path("/tmp/victim").display()
        )),
    );
    note(
        "fifo in event/",
        l.attempt(&format!("mkfifo {s}/gateway-a6/event/planted-fifo")),
    );
    // Command s6-svscan itself ('a' only rescans; 'q' would stop the container).
    note(
        "write .s6-svscan/control",
        l.attempt(&format!("printf a > {s}/.s6-svscan/control")),
    );
    // Remove `down`, so the slot starts at the next supervisor start.
    note("remove down", l.attempt(&format!("rm {s}/gateway-a6/down")));

    // Whatever changed: have the root supervisors look at it.
    l.rescan();
    for p in ["a1", "a2", "a3", "a6"] {
        let slot = l.s().join(format!("gateway-{p}"));
        tool_as(
            HERMES_UID,
            HERMES_GID,
            "s6-svc",
            &[OsStr::new("-u"), slot.as_os_str()],
        );
    }
    succeeded
}

const CANARIES: [&str; 6] = ["new", "run", "replace", "finish", "log", "swap"];

#[test]
fn root_owned_tree_refuses_every_attack_and_root_runs_nothing_of_the_runtime_users() {
    let mut l = lab(false);
    let succeeded = attacks(&l);
    assert!(succeeded.is_empty(), "attacks that succeeded: {succeeded:?}");
    // Long enough for s6-svscan's rescan, the supervisors' start and a log/run restart (1 s).
    std::thread::sleep(Duration::from_millis(2500));
    for c in CANARIES {
        assert!(!l.canary(c).exists(), "canary {c} appeared");
    }
    assert_eq!(
        l.r.read("/tmp/victim"),
        "ABCDEF",
        "nothing was written through event/"
    );
    assert!(!l.r.exists("/run/service/gateway-evil"));
    // The runtime user still controls its gateways.
    let slot = l.s().join("gateway-a6");
    wait_until(LIMIT, || {
        tool_as(HERMES_UID, HERMES_GID, "s6-svstat", &[slot.as_os_str()])
            .1
            .starts_with("up ")
    });
    drop(l.svscan.take());
}

#[test]
fn user_owned_switch_shows_the_old_exposure() {
    let mut l = lab(true);
    let succeeded = attacks(&l);
    for expected in [
        "new slot",
        "edit run",
        "replace run",
        "edit finish",
        "edit log/run",
        "swap slot",
        "symlink in supervise/",
        "fifo in supervise/",
        "symlink in event/",
        "fifo in event/",
        "write .s6-svscan/control",
        "remove down",
    ] {
        assert!(succeeded.contains(&expected), "{expected} failed: {succeeded:?}");
    }
    for c in CANARIES {
        let path = l.canary(c);
        wait_until(LIMIT, || {
            path.exists() && !std::fs::read(&path).unwrap_or_default().is_empty()
        });
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            "0",
            "canary {c} was written by root"
        );
    }
    // s6-supervise follows a symlink planted among its event subscribers and writes, as root, over the
    // first byte of the target.
    wait_until(LIMIT, || l.r.read("/tmp/victim") != "ABCDEF");
    assert!(l.r.read("/tmp/victim").ends_with("BCDEF"));
    drop(l.svscan.take());
}
