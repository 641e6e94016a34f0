//! Whole runs: `--dry-run` changes nothing (CM-11), a second run changes nothing (S2-01), and a run as the
//! runtime user does what it can (S2-05).

mod stage2_support;

use stage2_support::*;
use test_support::{run, run_as, TempRoot};

/// A volume with something for every step to do.
fn busy_volume() -> TempRoot {
    let r = image();
    r.mkdir("/opt/data/profiles/p");
    r.write("/opt/data/profiles/p/marker", "x");
    r.mkdir("/opt/data/cron");
    r.write("/opt/data/cron/job.json", "{}");
    r.write("/opt/data/auth.json", "{}");
    r.write("/opt/data/.env", "A=1\nAPI_SERVER_KEY=\n");
    r.chmod("/opt/data/.env", 0o644);
    r.write("/opt/data/.install_method", "docker\n");
    script(&r, "/opt/hermes/tools/c/chrome", "exit 0");
    r
}

const BUSY_ENV: &[(&str, &str)] = &[
    ("PUID", "1000"),
    ("PGID", "1000"),
    ("XDG_RUNTIME_DIR", "/run/user/1000"),
    ("HERMES_REAL_HOME", "/home/agent"),
    ("HERMES_GATEWAY_BOOTSTRAP_STATE", "running"),
    ("NOUS_PORTAL_BASE_URL", "https://portal"),
    ("HERMES_AUTH_HOME", "/auth"),
    ("HERMES_AUTH_JSON_BOOTSTRAP", "{\"k\":1}"),
    ("PLAYWRIGHT_BROWSERS_PATH", "/opt/hermes/tools"),
];

#[test]
fn dry_run_changes_nothing_and_prints_the_plan() {
    let r = busy_volume();
    let before = snapshot(r.root());
    let out = stage2_args(&r, &["--dry-run"], BUSY_ENV);
    out.assert_code(0);
    assert_eq!(snapshot(r.root()), before, "--dry-run changed the tree");
    let would: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("would ")).collect();
    for expected in [
        "would chown /opt/data/cron/job.json",
        "would chmod /opt/data/.env 0644 -> 0600",
        "would rewrite /opt/data/.env",
        "would remove /opt/data/.install_method",
        "would create /opt/data/gateway_state.json mode 0644",
        "would create directory /opt/data/sessions mode 0755",
        "would create directory /tmp/hermes-files mode 0700",
        "would create directory /run/user mode 0755",
        "would write /run/s6/container_environment/AGENT_BROWSER_EXECUTABLE_PATH",
    ] {
        assert!(
            would.iter().any(|l| l.starts_with(expected)),
            "missing {expected:?}\n{}",
            out.stdout
        );
    }
    // The plan targets the ids the remap would set, not the ones passwd still holds.
    assert!(
        would
            .iter()
            .any(|l| l.starts_with("would chown /opt/data/cron/job.json") && l.ends_with("-> 1000:1000")),
        "ownership plan does not follow the planned remap\n{}",
        out.stdout
    );
    let last = out.stdout.lines().last().unwrap();
    assert_eq!(
        last,
        match would.len() {
            1 => "[stage2] Dry run complete; 1 change planned".to_string(),
            n => format!("[stage2] Dry run complete; {n} changes planned"),
        }
    );
    for word in ["Seeded", "Generated", "Synced"] {
        assert!(
            !out.stdout.contains(&format!("[stage2] {word}")),
            "{word} in a dry run:\n{}",
            out.stdout
        );
    }
}

#[test]
fn dry_run_on_a_missing_home_creates_nothing() {
    let r = image();
    let before = snapshot(r.root());
    let out = stage2_args(&r, &["--dry-run"], &[]);
    out.assert_code(0);
    assert_eq!(snapshot(r.root()), before);
    assert!(
        out.stdout.contains("would create directory /opt/data mode 0755"),
        "{}",
        out.stdout
    );
    // Fatal conditions are still fatal.
    let out = stage2_args(&r, &["--dry-run", "--runtime-user", "ghost"], &[]);
    out.assert_code(1);
}

#[test]
fn second_run_changes_nothing() {
    let r = busy_volume();
    let first = stage2(&r, BUSY_ENV);
    first.assert_code(0);
    assert!(
        first.stdout.contains("Changing hermes UID to 1000"),
        "{}",
        first.stdout
    );
    let before = ctimes(r.root());
    let tree = snapshot(r.root());
    let second = stage2(&r, BUSY_ENV);
    second.assert_code(0);
    for word in [
        "Changing",
        "Added",
        "Seeded",
        "Generated",
        "Synced",
        "Removed",
        "Fixing ownership",
        "Ownership of",
    ] {
        assert!(
            !second.stdout.contains(word),
            "{word} on the second run:\n{}",
            second.stdout
        );
    }
    assert_eq!(snapshot(r.root()), tree);
    let after = ctimes(r.root());
    let moved: Vec<_> = before
        .iter()
        .filter(|(p, t)| after.get(*p) != Some(t))
        .map(|(p, _)| p)
        .collect();
    assert!(moved.is_empty(), "ctime moved on {moved:?}");
    assert_eq!(r.owner("/opt/data/cron/job.json"), (1000, 1000));
    assert_eq!(r.owner("/auth/auth.json"), (1000, 1000));
}

#[test]
fn run_as_the_runtime_user_skips_root_work_and_does_the_rest() {
    let r = image();
    r.mkdir("/opt/data");
    r.chown("/opt/data", HERMES_UID, HERMES_GID);
    r.mkdir("/opt/data/cron");
    r.write("/opt/data/cron/root.json", "{}");
    let mut c = r.command(bin());
    c.env("HERMES_GATEWAY_BOOTSTRAP_STATE", "running");
    let out = run_as(&mut c, HERMES_UID, HERMES_GID);
    out.assert_code(0);
    assert!(out.stdout.contains(
        "[stage2] running as uid 10000 gid 10000 (groups 10000) without root: skipping UID/GID remap, group \
setup and ownership repair, which only root can do"
    ));
    assert_eq!((r.owner("/opt/data/.env"), r.mode("/opt/data/.env")), (U, 0o600));
    assert_eq!(api_key(&r.read("/opt/data/.env")).len(), 1);
    assert_eq!(
        (r.owner("/opt/data/config.yaml"), r.mode("/opt/data/config.yaml")),
        (U, 0o640)
    );
    assert_eq!(
        (r.owner("/opt/data/sessions"), r.mode("/opt/data/sessions")),
        (U, 0o755)
    );
    assert_eq!(r.owner("/opt/data/gateway_state.json"), U);
    assert_eq!(
        (r.owner("/tmp/hermes-files"), r.mode("/tmp/hermes-files")),
        (U, 0o700)
    );
    assert_eq!(
        r.owner("/opt/data/cron/root.json"),
        (0, 0),
        "no chown when not root"
    );
    assert!(out.stdout.contains("Setup complete with"), "{}", out.stdout);

    // Any other identity that cannot create H gets one line naming it, and nothing else is made.
    let r2 = image();
    let mut c = r2.command(bin());
    let out = run_as(&mut c, HERMES_UID, 0);
    out.assert_code(1);
    assert_eq!(
        out.stderr,
        "[stage2] ERROR: cannot create HERMES_HOME /opt/data: EACCES (Permission denied)\n"
    );
    assert!(!r2.exists("/opt/data"));
}

/// The boot record the doctor reads: a boot's warning lines exactly as printed; the next boot starts
/// afresh; a dry run leaves it alone.
#[test]
fn a_boot_keeps_its_warnings_in_the_boot_record() {
    let r = image();
    script(&r, "/opt/hermes/tools/c/chrome", "exit 0");
    let browsers = ("PLAYWRIGHT_BROWSERS_PATH", "/opt/hermes/tools");
    let warned = stage2(&r, &[("HERMES_UID", "abc"), browsers]);
    warned.assert_code(0);
    let printed: Vec<&str> = warned.stdout.lines().filter(|l| l.contains("Warning:")).collect();
    assert_eq!(printed.len(), 1, "{}", warned.stdout);
    assert!(
        printed[0].contains("ignoring HERMES_UID='abc'"),
        "{}",
        warned.stdout
    );
    let record = "/run/hermes-boot/warnings";
    let kept = printed.join("\n") + "\n";
    assert_eq!(r.read(record), kept);
    assert_eq!(r.mode(record), 0o644);

    let dry = stage2_args(&r, &["--dry-run"], &[browsers]);
    dry.assert_code(0);
    assert_eq!(r.read(record), kept);

    let clean = stage2(&r, &[browsers]);
    clean.assert_code(0);
    assert!(!clean.stdout.contains("Warning:"), "{}", clean.stdout);
    assert_eq!(r.read(record), "");
}

/// `--json` (the plan of a dry run and the changes of a real run) on the busy volume.
fn json_run(r: &TempRoot, dry_run: bool) -> test_support::Run {
    let args: &[&str] = match dry_run {
        true => &["--json", "--dry-run"],
        false => &["--json"],
    };
    let out = stage2_args(r, args, BUSY_ENV);
    out.assert_code(0);
    out
}

#[test]
fn json_plan_of_a_dry_run_is_the_json_of_the_real_run() {
    let r = busy_volume();
    let plan = json_run(&r, true);
    let real = json_run(&r, false);
    let (planned, made) = (plan.json_changes(), real.json_changes());
    assert!(
        planned.len() > 10,
        "too small a plan to prove anything:\n{}",
        plan.stdout
    );
    assert_eq!(
        planned, made,
        "dry-run plan and real run differ\nplan:\n{}\nreal:\n{}",
        plan.stdout, real.stdout
    );
    // The human lines are still printed, on stderr: the plan's `would` lines and the real run's summary.
    assert!(
        plan.stderr.contains("would chmod /opt/data/.env 0644 -> 0600"),
        "{}",
        plan.stderr
    );
    assert!(real.stderr.contains("[stage2] Setup complete"), "{}", real.stderr);
    let summary = |run: &test_support::Run| run.json_lines().last().cloned().unwrap();
    assert_eq!(summary(&plan)["dry_run"], true);
    assert_eq!(summary(&real)["dry_run"], false);
    assert_eq!(summary(&plan)["changes"], planned.len());
    assert_eq!(summary(&real)["exit"], 0);
    // A second real run has nothing left to do (S2-01), and says so in JSON too.
    let again = json_run(&r, false);
    let left: Vec<_> = again
        .json_changes()
        .into_iter()
        .filter(|c| c["action"] != "run")
        .collect();
    assert_eq!(left, Vec::<serde_json::Value>::new(), "{}", again.stdout);
}

#[test]
fn json_change_fields_name_the_old_and_new_owner_and_mode() {
    let r = busy_volume();
    let real = json_run(&r, false);
    let changes = real.json_changes();
    let find = |action: &str, path: &str| {
        changes
            .iter()
            .find(|c| c["action"] == action && c["path"] == path)
            .unwrap_or_else(|| panic!("no {action} of {path} in\n{}", real.stdout))
            .clone()
    };
    let chown = find("chown", "/opt/data/cron/job.json");
    assert_eq!(chown["old_owner"], serde_json::json!({ "uid": 0, "gid": 0 }));
    assert_eq!(
        chown["new_owner"],
        serde_json::json!({ "uid": 1000, "gid": 1000 })
    );
    let chmod = find("chmod", "/opt/data/.env");
    assert_eq!(
        (&chmod["old_mode"], &chmod["new_mode"]),
        (&"0644".into(), &"0600".into())
    );
    let seeded = find("create", "/opt/data/gateway_state.json");
    assert_eq!(seeded["new_mode"], "0644");
    assert_eq!(
        seeded["new_owner"],
        serde_json::json!({ "uid": 1000, "gid": 1000 })
    );
}

#[test]
fn json_refusals_name_the_path_and_reason() {
    let r = busy_volume();
    // A profile directory the walk cannot read from: root reads anything, so make the entry vanish
    // into a symlink instead, which the repair refuses to follow.
    r.symlink("/srv", "/opt/data/logs");
    let real = json_run(&r, false);
    let events = real.json_lines();
    let refusal = events
        .iter()
        .find(|e| e["type"] == "refusal")
        .unwrap_or_else(|| panic!("no refusal in\n{}", real.stdout));
    assert_eq!(refusal["reason"], "symlinked path", "{refusal}");
    assert!(
        refusal["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/opt/data/logs")),
        "{refusal}"
    );
    assert!(
        refusal["message"]
            .as_str()
            .is_some_and(|m| m.contains("refusing")),
        "{refusal}"
    );
    assert!(events.last().unwrap()["warnings"].as_u64() >= Some(1));
}

/// Root without CAP_CHOWN (`docker run --cap-drop CHOWN`; util-linux `setpriv` gives root's exec no
/// CAP_CHOWN): the directories made for the runtime user outside the volume still exist, root's and private
/// (S2-16), each refused chown is said once, and the boot goes on.
#[test]
fn without_cap_chown_the_private_directories_are_made_roots_and_the_boot_goes_on() {
    let r = image();
    let mut c = r.command("setpriv");
    c.args(["--inh-caps=-chown", "--bounding-set=-chown", "--", bin()])
        .env("XDG_RUNTIME_DIR", "/run/user/10000");
    let out = run(&mut c);
    out.assert_code(0);
    for dir in ["/tmp/hermes-files", "/run/user/10000"] {
        assert_eq!((r.owner(dir), r.mode(dir)), ((0, 0), 0o700), "{dir}");
        let refused: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.contains(&format!("chown {dir}:")))
            .collect();
        assert_eq!(refused.len(), 1, "{dir}: {}", out.stdout);
        assert!(refused[0].contains("EPERM"), "{}", refused[0]);
    }
    // No temporary left beside them.
    let left: Vec<_> = std::fs::read_dir(r.path("/tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains(".tmp."))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(out.stdout.contains("Setup complete with"), "{}", out.stdout);
}

/// Clears the immutable attribute it set, even when the test fails, so the temp root can be removed.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(path: std::path::PathBuf) -> Result<Immutable, String> {
        let out = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&path)
            .output()
            .map_err(|e| format!("chattr: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Immutable(path))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

/// A directory root cannot make at all (here its parent is immutable; a read-only /run would do the
/// same) is one warning naming it and the errno, nothing is made in its place, and the boot goes on.
#[test]
fn a_runtime_directory_that_cannot_be_made_is_one_warning() {
    let r = image();
    r.mkdir("/run/user");
    let _frozen = match Immutable::set(r.path("/run/user")) {
        Ok(f) => f,
        Err(why) => {
            eprintln!(
                "skipped: cannot make {} immutable here ({why})",
                r.path("/run/user").display()
            );
            return;
        }
    };
    let out = stage2(&r, &[("XDG_RUNTIME_DIR", "/run/user/10000")]);
    out.assert_code(0);
    let said: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("/run/user/10000"))
        .collect();
    assert_eq!(said.len(), 1, "{}", out.stdout);
    assert!(
        said[0].starts_with("[stage2] Warning: mkdir /run/user/10000: EPERM"),
        "{}",
        said[0]
    );
    assert!(!r.exists("/run/user/10000"));
    assert!(out.stdout.contains("Setup complete with"), "{}", out.stdout);
}
