//! `hermes-boot-doctor` against a container tree under a root prefix, on the real kernel, with Debian's
//! s6 supervising the gateway slots where a test needs a running supervisor.

use std::path::Path;

use serde_json::Value;
use test_support::{require_root, run, s6, Run, TempRoot, HERMES_GID, HERMES_UID};

const BIN: &str = env!("CARGO_BIN_EXE_hermes-boot-doctor");
const U: u32 = HERMES_UID;
const G: u32 = HERMES_GID;

/// A volume as a finished boot leaves it: the runtime user's, private secrets, a profile.
fn healthy() -> TempRoot {
    require_root();
    let t = TempRoot::new();
    t.write(
        "/proc/1/status",
        "Name:\ts6-svscan\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n",
    );
    for d in [
        "/opt/data",
        "/opt/data/cron",
        "/opt/data/profiles",
        "/opt/data/profiles/work",
        "/opt/data/logs",
    ] {
        t.mkdir(d);
        t.chown(d, U, G);
    }
    for (f, mode) in [
        ("/opt/data/.env", 0o600),
        ("/opt/data/auth.json", 0o600),
        ("/opt/data/config.yaml", 0o640),
        ("/opt/data/cron/jobs.json", 0o644),
        ("/opt/data/profiles/work/SOUL.md", 0o644),
    ] {
        t.write(f, "x\n");
        t.chown(f, U, G);
        t.chmod(f, mode);
    }
    t
}

fn doctor(t: &TempRoot, args: &[&str]) -> Run {
    run(t.command(BIN).args(args))
}

fn problems(v: &[Value]) -> Vec<&Value> {
    v.iter().filter(|f| f["status"] == "problem").collect()
}

#[test]
fn a_healthy_container_exits_0_and_says_so() {
    let t = healthy();
    let r = doctor(&t, &[]);
    r.assert_code(0);
    assert!(r.stdout.ends_with("healthy: no problems found\n"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("  ok       runtime user hermes: uid 10000, gid 10000(hermes), groups none\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("/opt/data/.env is 10000:10000 0600"),
        "{}",
        r.stdout
    );
    let v = doctor(&t, &["--json"]).json_lines();
    assert!(problems(&v).is_empty(), "{v:?}");
    assert_eq!(v.last().unwrap()["exit"], 0);
}

#[test]
fn ownership_drift_is_counted_with_the_first_paths_and_the_fix() {
    let t = healthy();
    // Readable by the runtime user, so the repair would hand it over: drift.
    t.write("/opt/data/profiles/work/memory.md", "m\n");
    t.chown("/opt/data/profiles/work/memory.md", 0, 0);
    t.chmod("/opt/data/profiles/work/memory.md", 0o644);
    // A host file the runtime user cannot read: left alone, not a problem.
    t.write("/opt/data/cron/host-secret", "s\n");
    t.chown("/opt/data/cron/host-secret", 0, 0);
    t.chmod("/opt/data/cron/host-secret", 0o600);
    // A tree the boot walks only when the volume's owner changed: the fix is a chown.
    t.mkdir("/opt/data/sessions");
    t.chown("/opt/data/sessions", U, G);
    t.write("/opt/data/sessions/s1.json", "{}");
    t.chown("/opt/data/sessions/s1.json", 1000, 1000);
    t.chmod("/opt/data/sessions/s1.json", 0o644);

    let r = doctor(&t, &[]);
    r.assert_code(1);
    assert!(
        r.stdout.contains(
            "  PROBLEM  in /opt/data/profiles, 1 entry is not 10000:10000: /opt/data/profiles/work/memory.md 0:0 0644\n\
             \x20          fix: docker restart <container> (the boot repairs this tree on every start)\n"
        ),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("fix: docker exec <container> chown -Rh 10000:10000 /opt/data/sessions\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("the repair leaves alone 1 unreadable to the runtime user"),
        "{}",
        r.stdout
    );
    let v = doctor(&t, &["--json"]).json_lines();
    let drift: Vec<&Value> = problems(&v)
        .into_iter()
        .filter(|f| f["check"] == "ownership-drift")
        .collect();
    assert_eq!(drift.len(), 2, "{v:?}");
    let profiles = drift.iter().find(|f| f["path"] == "/opt/data/profiles").unwrap();
    assert_eq!(profiles["details"]["count"], 1);
    assert_eq!(
        profiles["details"]["first"][0],
        "/opt/data/profiles/work/memory.md 0:0 0644"
    );
    // --quick does not walk: no drift findings.
    let q = doctor(&t, &["--json", "--quick"]).json_lines();
    assert!(!q.iter().any(|f| f["check"] == "ownership-drift"), "{q:?}");
}

#[test]
fn a_root_owned_env_is_a_problem_with_the_chown_that_fixes_it() {
    let t = healthy();
    t.chown("/opt/data/.env", 0, 0);
    let r = doctor(&t, &["--json"]);
    r.assert_code(1);
    let v = r.json_lines();
    let p = problems(&v);
    assert_eq!(p.len(), 1, "{v:?}");
    assert_eq!(p[0]["check"], "secret-owner");
    assert_eq!(p[0]["path"], "/opt/data/.env");
    assert_eq!(p[0]["details"]["uid"], 0);
    assert_eq!(p[0]["details"]["mode"], "0600");
    assert_eq!(
        p[0]["fix"],
        "docker exec <container> chown 10000:10000 /opt/data/.env && docker exec <container> chmod 600 /opt/data/.env"
    );
    // A readable one is the other problem.
    t.chown("/opt/data/.env", U, G);
    t.chmod("/opt/data/.env", 0o644);
    let v = doctor(&t, &["--json"]).json_lines();
    assert_eq!(problems(&v)[0]["check"], "secret-mode");
    // The secret's content never appears.
    t.write("/opt/data/.env", "OPENAI_API_KEY=sk-very-secret\n");
    let r = doctor(&t, &["--json"]);
    assert!(!r.stdout.contains("sk-very-secret"), "{}", r.stdout);
}

#[test]
fn a_stopped_gateway_whose_state_says_running_is_a_problem() {
    let t = healthy();
    s6::install_commands(&t);
    t.mkdir("/run/service");
    let slot = "/run/service/gateway-work";
    t.mkdir(slot);
    t.write(&format!("{slot}/type"), "longrun\n");
    t.write(&format!("{slot}/run"), "#!/bin/sh\nexec sleep 1000\n");
    t.chmod(&format!("{slot}/run"), 0o755);
    // `down`: s6-supervise does not start it, as after `s6-svc -d`.
    t.write(&format!("{slot}/down"), "");
    t.write(
        "/opt/data/profiles/work/gateway_state.json",
        r#"{"gateway_state": "running"}"#,
    );
    t.chown("/opt/data/profiles/work/gateway_state.json", U, G);
    let _svscan = s6::Svscan::start(&t.path("/run/service"));
    s6::wait_until(std::time::Duration::from_secs(10), || {
        t.path(&format!("{slot}/supervise/status")).exists()
    });

    let r = doctor(&t, &["--json"]);
    r.assert_code(1);
    let v = r.json_lines();
    let p = problems(&v);
    assert_eq!(p.len(), 1, "{v:?}");
    assert_eq!(p[0]["check"], "gateway-down");
    assert_eq!(p[0]["details"]["profile"], "work");
    assert_eq!(p[0]["details"]["slot_state"], "down");
    assert_eq!(p[0]["details"]["autostart"], true);
    assert_eq!(
        p[0]["fix"],
        "docker exec <container> s6-svc -u /run/service/gateway-work"
    );

    // Started, it is healthy; the state file says running and the slot is up.
    let up = std::process::Command::new(s6::tool("s6-svc"))
        .arg("-u")
        .arg(t.path(slot))
        .status()
        .unwrap();
    assert!(up.success());
    s6::wait_until(std::time::Duration::from_secs(10), || {
        doctor(&t, &[]).code == Some(0)
    });
    let v = doctor(&t, &["--json"]).json_lines();
    let work = v.iter().find(|f| f["details"]["profile"] == "work").unwrap();
    assert_eq!(work["details"]["slot_state"], "up");
}

#[test]
fn a_pid_file_of_a_process_that_is_gone_is_stale() {
    let t = healthy();
    t.write("/opt/data/gateway.pid", "4000000\n");
    t.chown("/opt/data/gateway.pid", U, G);
    let v = doctor(&t, &["--json"]).json_lines();
    let p = problems(&v);
    assert_eq!(p.len(), 1, "{v:?}");
    assert_eq!(p[0]["check"], "stale-pid");
    assert_eq!(p[0]["fix"], "docker exec <container> rm /opt/data/gateway.pid");
    // A live one (the prefix's /proc/<pid> exists) is not.
    t.mkdir("/proc/4000000");
    let r = doctor(&t, &[]);
    r.assert_code(0);
}

#[test]
fn a_requested_remap_that_is_not_in_effect_is_pending() {
    let t = healthy();
    let r = run(t.command(BIN).env("PUID", "1000"));
    r.assert_code(1);
    assert!(
        r.stdout
            .contains("  PROBLEM  PUID=1000 is not in effect: /etc/passwd has uid 10000\n"),
        "{}",
        r.stdout
    );
}

#[test]
fn the_doctor_changes_nothing() {
    let t = healthy();
    t.chown("/opt/data/.env", 0, 0);
    t.write("/opt/data/profiles/work/memory.md", "m\n");
    t.chown("/opt/data/profiles/work/memory.md", 0, 0);
    let before = snapshot(&t.path("/opt/data"));
    doctor(&t, &[]).assert_code(1);
    assert_eq!(snapshot(&t.path("/opt/data")), before);
}

/// Every entry with owner, mode and ctime: what any change would show in.
fn snapshot(dir: &Path) -> Vec<(String, (u32, u32), u32, i128)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push((
                p.display().to_string(),
                test_support::owner(&p),
                test_support::mode(&p),
                test_support::ctime_ns(&p),
            ));
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn help_lists_the_environment_and_the_exit_codes() {
    let t = TempRoot::new();
    let r = doctor(&t, &["--help"]);
    r.assert_code(0);
    for text in [
        "--json",
        "--quick",
        "HERMES_HOME",
        "PUID",
        "Exit status:\n  0  healthy",
    ] {
        assert!(r.stdout.contains(text), "{text:?} missing\n{}", r.stdout);
    }
}

#[test]
fn a_container_started_with_user_reports_pid_1s_ids() {
    let t = healthy();
    t.write(
        "/proc/1/status",
        "Name:\tinit\nUid:\t1000\t1000\t1000\t1000\nGid:\t0\t0\t0\t0\nGroups:\t0 44 \n",
    );
    let r = doctor(&t, &[]);
    assert!(
        r.stdout
            .contains("  ok       runtime user hermes: uid 1000, gid 0(root), groups 44(video)\n"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("started as uid 1000 (--user)"), "{}", r.stdout);
    // Nothing is repaired without root, so a volume of another uid is no drift.
    assert!(
        r.stdout
            .contains("no ownership check: the container runs without root"),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains("ownership-drift") && !r.stdout.contains("not 1000:0"),
        "{}",
        r.stdout
    );
}

/// s6-overlay's services as s6-svstat sees them: one up, one that keeps failing (the profile registrar,
/// which the default slot mode needs), one that no supervisor answers for.
#[test]
fn services_are_reported_by_their_supervisor_and_a_failing_registrar_is_a_problem() {
    let t = healthy();
    s6::install_commands(&t);
    t.mkdir("/package/admin/s6-overlay-3.2.3.2");
    std::os::unix::fs::symlink("s6-overlay-3.2.3.2", t.path("/package/admin/s6-overlay")).unwrap();
    let servicedirs = "/run/s6-rc/servicedirs";
    t.mkdir("/run/s6-rc");
    t.mkdir(servicedirs);
    t.mkdir("/run/service");
    for (name, run, supervised) in [
        ("web", "exec sleep 1000", true),
        ("profile-registrar", "exit 1", true),
        ("cron", "exec sleep 1000", false),
    ] {
        let dir = format!("{servicedirs}/{name}");
        t.mkdir(&dir);
        t.write(&format!("{dir}/type"), "longrun\n");
        t.write(&format!("{dir}/run"), format!("#!/bin/sh\n{run}\n"));
        t.chmod(&format!("{dir}/run"), 0o755);
        if supervised {
            std::os::unix::fs::symlink(t.path(&dir), t.path(&format!("/run/service/{name}"))).unwrap();
        }
    }
    let _svscan = s6::Svscan::start(&t.path("/run/service"));
    let svstat = |name: &str| {
        std::process::Command::new(s6::tool("s6-svstat"))
            .arg(t.path(&format!("{servicedirs}/{name}")))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    s6::wait_until(std::time::Duration::from_secs(10), || {
        svstat("web").starts_with("up") && svstat("profile-registrar").contains("want up")
    });

    let r = doctor(&t, &["--json"]);
    r.assert_code(1);
    let v = r.json_lines();
    let area = |check: &str| -> Vec<&Value> {
        v.iter()
            .filter(|f| f["area"] == "services" && f["check"] == check)
            .collect()
    };
    let top = area("supervision");
    assert_eq!(top.len(), 1, "{v:?}");
    assert_eq!(top[0]["details"]["s6_overlay"], "3.2.3.2");
    let service = |name: &str| {
        *area("service")
            .iter()
            .find(|f| f["details"]["service"] == name)
            .unwrap_or_else(|| panic!("no finding for {name}: {v:?}"))
    };
    assert_eq!(service("web")["status"], "ok");
    assert_eq!(service("web")["details"]["up"], true);
    assert!(
        service("web")["details"]["state"]
            .as_str()
            .unwrap()
            .starts_with("up (pid "),
        "{v:?}"
    );
    assert_eq!(service("cron")["status"], "ok");
    assert_eq!(service("cron")["details"]["state"], "not supervised");
    assert_eq!(service("profile-registrar")["status"], "problem");
    assert_eq!(service("profile-registrar")["details"]["up"], false);
    let registrar = area("registrar");
    assert_eq!(registrar.len(), 1, "{v:?}");
    assert_eq!(registrar[0]["status"], "problem");
    assert_eq!(problems(&v).len(), 2, "{v:?}");
}

/// The last boot's warning lines, from the boot record: shown as warnings (worth reading, not a
/// problem: the exit status stays 0), counted in the summary.
#[test]
fn the_last_boots_warnings_are_listed_without_failing_the_check() {
    let t = healthy();
    let r = doctor(&t, &["--json"]);
    r.assert_code(0);
    let v = r.json_lines();
    let last = v.iter().find(|f| f["check"] == "last-boot").unwrap();
    assert_eq!(last["details"]["recorded"], false, "{v:?}");

    t.mkdir("/run/hermes-boot");
    let lines = [
        "[stage2] Warning: ignoring HERMES_UID='abc': must be a decimal number from 1 to 65534 — continuing",
        "reconcile: WARNING: profile \"x\": not a valid profile name; skipping",
    ];
    t.write("/run/hermes-boot/warnings", lines.join("\n") + "\n");
    let r = doctor(&t, &["--json"]);
    r.assert_code(0);
    let v = r.json_lines();
    let last = v.iter().find(|f| f["check"] == "last-boot").unwrap();
    assert_eq!(
        (&last["details"]["recorded"], &last["details"]["lines"]),
        (&Value::from(true), &Value::from(2)),
        "{v:?}"
    );
    let shown: Vec<&str> = v
        .iter()
        .filter(|f| f["check"] == "boot-warning")
        .map(|f| {
            assert_eq!(f["status"], "warning");
            assert_eq!(f["area"], "boot");
            f["details"]["line"].as_str().unwrap()
        })
        .collect();
    assert_eq!(shown, lines);
    assert_eq!(v.last().unwrap()["warnings"], 2);
    assert_eq!(v.last().unwrap()["problems"], 0);

    let text = doctor(&t, &[]);
    text.assert_code(0);
    assert!(
        text.stdout.contains(&format!("boot:\n  ok       the last boot printed 2 warning or error lines (also in docker logs <container>)\n  warning  {}\n", lines[0])),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.ends_with("healthy: no problems found\n"),
        "{}",
        text.stdout
    );
}
