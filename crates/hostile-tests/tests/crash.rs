//! Crash injection: `stage2-setup` and `reconcile-profiles` die of SIGKILL at random instants (the machine
//! losing power mid-write), then boot normally. After every kill no secret is partial or readable by
//! others and no half-built slot is visible to s6-svscan; after the normal boot the tree equals a clean
//! boot's (owners, modes, contents — generated key, timestamps and boot-log lines masked — and slots).
//!
//! CI form: 2 × 60 rounds of 2 kills (240 kills). Longer: `HERMES_CRASH_ROUNDS=500` (per test);
//! `HERMES_ATTACK_SEED` replays a run.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hostile_tests::{
    crashed, diff, env_count, file_name_bytes, image, is_writer_temp, populate_volume, program, seed,
    snapshot, walk, Rng, RECONCILE, STAGE2,
};
use test_support::{run, TempRoot};

const AUTH_BOOTSTRAP: &str = "{\"providers\":{\"nous\":{\"token\":\"bootstrap-secret\"}}}";

/// The environment of every run: a GID remap (passwd/group edits and the targeted walk), a routing
/// override (a `.env` rewrite in every profile), a credential residence with a bootstrap (a secret
/// created from nothing) and a state seed.
fn command(r: &TempRoot, prog: &Path) -> Command {
    let mut c = r.command(prog);
    c.env("HERMES_GID", "10001")
        .env("NOUS_PORTAL_BASE_URL", "https://portal.example")
        .env("HERMES_AUTH_HOME", "/opt/auth")
        .env("HERMES_AUTH_JSON_BOOTSTRAP", AUTH_BOOTSTRAP)
        .env("XDG_RUNTIME_DIR", "/run/user/10000");
    c
}

fn fresh() -> TempRoot {
    let r = image();
    populate_volume(&r);
    r.write(
        "/proc/1/cmdline",
        "/init\0/opt/hermes/docker/bin/main-wrapper\0gateway\0run\0",
    );
    r.mkdir("/run/user");
    r
}

/// The end state, with what legitimately differs between two boots masked and the writers' temporaries
/// (unique per process) left out; they are checked by [`check_invariants`] instead.
fn end_state(r: &TempRoot) -> BTreeMap<String, String> {
    let mask = |rel: &str, content: &[u8]| -> Option<String> {
        let text = String::from_utf8_lossy(content);
        // The boot log and the boot record tell what the last boot did and warned about: a boot that
        // finishes a killed one's work says less than a clean boot.
        if rel.ends_with("/container-boot.log") {
            return Some("<boot log>".into());
        }
        if rel.ends_with("run/hermes-boot/warnings") {
            return Some("<boot record>".into());
        }
        if rel.ends_with("/.env") || rel.ends_with("gateway_state.json") {
            let masked: Vec<String> = text
                .lines()
                .map(|l| {
                    if l.starts_with("API_SERVER_KEY=") && l.len() == 15 + 64 {
                        "API_SERVER_KEY=<key>".to_string()
                    } else {
                        l.chars()
                            .map(|c| if c.is_ascii_digit() { '9' } else { c })
                            .collect()
                    }
                })
                .collect();
            return Some(masked.join("\n"));
        }
        None
    };
    snapshot(r.root(), &mask)
        .into_iter()
        .filter(|(k, _)| !k.split('/').any(|c| is_writer_temp(c.as_bytes())))
        .collect()
}

/// What must hold at every instant, even right after a kill.
fn check_invariants(r: &TempRoot, after: &str) -> Vec<String> {
    let mut bad = Vec::new();
    for p in walk(r.root()) {
        let name = file_name_bytes(&p);
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let secret = [&b".env"[..], b"auth.json"]
            .iter()
            .any(|s| name == *s || (is_writer_temp(name) && name[1..].starts_with(s)));
        if secret && m.is_file() && m.mode() & 0o077 != 0 && !p.starts_with(r.path("/opt/hermes")) {
            bad.push(format!(
                "{after}: {} is readable by others ({:o})",
                p.display(),
                m.mode() & 0o7777
            ));
        }
    }
    // Secrets at their final names are whole.
    if let Ok(env) = std::fs::read_to_string(r.path("/opt/data/.env")) {
        let key_ok = env.lines().filter(|l| l.starts_with("API_SERVER_KEY=")).all(|l| {
            let k = &l["API_SERVER_KEY=".len()..];
            k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit())
        });
        if !env.ends_with('\n') || !env.starts_with("# example\nOPENAI_API_KEY=\n") || !key_ok {
            bad.push(format!("{after}: /opt/data/.env is partial: {env:?}"));
        }
    }
    for rf in ["/opt/auth/auth.json", "/opt/data/auth.json"] {
        if let Ok(a) = std::fs::read_to_string(r.path(rf)) {
            if a != AUTH_BOOTSTRAP && a != "{\"providers\":{}}" {
                bad.push(format!("{after}: {rf} is partial: {a:?}"));
            }
        }
    }
    // Every name s6-svscan would supervise is a complete slot.
    if let Ok(rd) = std::fs::read_dir(r.path("/run/service")) {
        for e in rd.filter_map(|e| e.ok()) {
            if file_name_bytes(&e.path()).starts_with(b".") {
                continue;
            }
            if let Some(missing) = incomplete_slot(&e.path()) {
                bad.push(format!(
                    "{after}: {} visible to s6 but incomplete: {missing}",
                    e.path().display()
                ));
            }
        }
    }
    bad
}

fn incomplete_slot(slot: &Path) -> Option<String> {
    let files = ["type", "run", "finish", "log/run"];
    for f in files {
        if !slot.join(f).is_file() {
            return Some(format!("no {f}"));
        }
    }
    for fifo in ["supervise/control", "log/supervise/control"] {
        match std::fs::symlink_metadata(slot.join(fifo)) {
            Ok(m) if m.file_type().is_fifo() => {}
            _ => return Some(format!("no {fifo} FIFO")),
        }
    }
    for d in ["event", "supervise/event", "log/event"] {
        if !slot.join(d).is_dir() {
            return Some(format!("no {d}/"));
        }
    }
    None
}

/// Runs a program to the end; returns its wall time.
fn clean_run(r: &TempRoot, prog: &Path) -> Duration {
    let t = Instant::now();
    let out = run(&mut command(r, prog));
    assert!(
        !crashed(out.code, &out.stderr),
        "{} crashed: {}",
        prog.display(),
        out.stderr
    );
    assert_eq!(
        out.code,
        Some(0),
        "{} failed:\n{}{}",
        prog.display(),
        out.stdout,
        out.stderr
    );
    t.elapsed()
}

/// Starts a program and SIGKILLs it after `delay` (it may have finished by then).
fn killed_run(r: &TempRoot, prog: &Path, delay: Duration) -> bool {
    let mut child = command(r, prog)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(delay);
    let killed = matches!(child.try_wait(), Ok(None));
    let _ = child.kill();
    let _ = child.wait();
    killed
}

fn crash_rounds(name: &str, first: &str) {
    let rounds = env_count("HERMES_CRASH_ROUNDS", 60);
    let seed = seed();
    eprintln!("{name}: seed {seed} (HERMES_ATTACK_SEED replays it), {rounds} rounds of 2 kills");
    let mut rng = Rng::new(seed);
    let stage2 = program(STAGE2);
    let reconcile = program(RECONCILE);
    let progs: [(&str, &PathBuf); 2] = [(STAGE2, &stage2), (RECONCILE, &reconcile)];

    // The clean boot, and how long each program takes, so kills land inside the runs.
    let reference = fresh();
    let d_stage2 = clean_run(&reference, &stage2);
    let d_reconcile = clean_run(&reference, &reconcile);
    let want = end_state(&reference);
    let bad = check_invariants(&reference, "clean boot");
    assert!(
        bad.is_empty(),
        "a clean boot breaks the invariants:\n{}",
        bad.join("\n")
    );
    let window = |p: &str| if p == STAGE2 { d_stage2 } else { d_reconcile }.mul_f64(1.3);

    let mut kills_in_flight = 0u64;
    let mut failures = Vec::new();
    for round in 0..rounds {
        let r = fresh();
        // First kill: the given program; second: either.
        let order = [
            if first == STAGE2 { progs[0] } else { progs[1] },
            *rng.pick(&progs),
        ];
        for (i, (pname, prog)) in order.iter().enumerate() {
            let delay = Duration::from_nanos(rng.below(window(pname).as_nanos() as u64 + 1));
            if killed_run(&r, prog, delay) {
                kills_in_flight += 1;
            }
            failures.extend(check_invariants(
                &r,
                &format!("round {round} kill {i} of {pname} at {delay:?}"),
            ));
        }
        clean_run(&r, &stage2);
        clean_run(&r, &reconcile);
        failures.extend(check_invariants(&r, &format!("round {round} reboot")));
        let got = end_state(&r);
        let d = diff(&want, &got);
        if !d.is_empty() {
            failures.push(format!(
                "round {round}: end state differs from a clean boot:\n  {}",
                d.join("\n  ")
            ));
        }
    }
    eprintln!(
        "{name}: {} kills ({kills_in_flight} while running), {} failures",
        rounds * 2,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "crash injection (seed {seed}):\n{}",
        failures.join("\n")
    );
    // Kills that all land after the exit would prove nothing.
    assert!(
        kills_in_flight >= rounds / 2,
        "only {kills_in_flight} kills hit a running program"
    );
}

#[test]
fn killed_stage2_setup_recovers_to_a_clean_boot() {
    crash_rounds("stage2", STAGE2);
}

#[test]
fn killed_reconcile_profiles_recovers_to_a_clean_boot() {
    crash_rounds("reconcile", RECONCILE);
}

/// The calls that change the filesystem, at each of which a kill is injected in turn.
const MUTATING_CALLS: &str =
    "fchown,fchownat,fchmod,fchmodat,linkat,renameat,renameat2,mkdirat,mknodat,unlinkat,symlinkat,write,fsync";

/// `prog` under strace, with `extra` strace options.
fn traced(r: &TempRoot, prog: &Path, extra: &[String]) -> Command {
    let inner = command(r, prog);
    let mut c = Command::new("strace");
    c.env_clear();
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c.args(["-f", "-qq"]).args(extra).arg("--").arg(prog);
    c.stdin(Stdio::null());
    c
}

/// How often each mutating call is made by one process of a normal run, at most: a kill is then
/// injected at every one of them.
fn mutating_call_counts(prog: &Path) -> BTreeMap<String, usize> {
    let r = fresh();
    let log = r.path("/strace.log");
    let out = run(&mut traced(
        &r,
        prog,
        &[
            "-o".into(),
            log.display().to_string(),
            "-e".into(),
            format!("trace={MUTATING_CALLS}"),
        ],
    ));
    assert_eq!(out.code, Some(0), "traced run failed: {}", out.stderr);
    let text = std::fs::read_to_string(&log).expect("strace log");
    let mut per: BTreeMap<(String, String), usize> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.contains("resumed>")) {
        let mut words = line.splitn(2, ' ');
        let (Some(pid), Some(rest)) = (words.next(), words.next()) else {
            continue;
        };
        let call = rest.trim_start().split('(').next().unwrap_or("").to_string();
        if MUTATING_CALLS.split(',').any(|c| c == call) {
            *per.entry((call, pid.to_string())).or_default() += 1;
        }
    }
    let mut most = BTreeMap::new();
    for ((call, _), n) in per {
        let e = most.entry(call).or_insert(0);
        *e = (*e).max(n);
    }
    most
}

/// One crash point: `prog` killed on entry to its `when`-th `call`, then a normal boot. Returns whether
/// the kill took effect and how the result differs from `want`.
fn crash_at(
    first: &str,
    prog: &Path,
    stage2: &Path,
    reconcile: &Path,
    want: &BTreeMap<String, String>,
    call: &str,
    when: usize,
) -> (bool, Vec<String>) {
    let r = fresh();
    if first == RECONCILE {
        clean_run(&r, stage2);
    }
    let out = run(&mut traced(
        &r,
        prog,
        &[
            "-o".into(),
            "/dev/null".into(),
            "-e".into(),
            format!("trace={call}"),
            "-e".into(),
            format!("inject={call}:signal=KILL:when={when}"),
        ],
    ));
    let at = format!("{first} killed at {call} #{when}");
    let mut failures = check_invariants(&r, &at);
    clean_run(&r, stage2);
    clean_run(&r, reconcile);
    let d = diff(want, &end_state(&r));
    if !d.is_empty() {
        failures.push(format!(
            "{at}: end state differs from a clean boot:\n  {}",
            d.join("\n  ")
        ));
    }
    (out.code != Some(0), failures)
}

/// Deterministic crash injection: a SIGKILL delivered on entry to the n-th call of each kind that changes
/// the filesystem, for every n a normal run reaches, then a normal boot. Every state between two changes
/// is thereby a crash point once; random kills reach each only by chance.
fn kill_at_every_change(first: &str) {
    let stage2 = program(STAGE2);
    let reconcile = program(RECONCILE);
    let prog = if first == STAGE2 { &stage2 } else { &reconcile };
    let reference = fresh();
    if first == RECONCILE {
        clean_run(&reference, &stage2);
    }
    clean_run(&reference, if first == STAGE2 { &stage2 } else { &reconcile });
    if first == STAGE2 {
        clean_run(&reference, &reconcile);
    } else {
        clean_run(&reference, &stage2);
        clean_run(&reference, &reconcile);
    }
    let want = end_state(&reference);
    let counts = mutating_call_counts(prog);
    assert!(
        counts.values().sum::<usize>() > 10,
        "a normal run of {first} makes almost no changes: {counts:?}"
    );
    // Every crash point starts from a fresh tree of its own, so they run side by side, one per CPU.
    let points: Vec<(&String, usize)> = counts
        .iter()
        .flat_map(|(call, n)| (1..=*n).map(move |when| (call, when)))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let results: Vec<(usize, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let (mut killed, mut failures) = (0, Vec::new());
                    while let Some(&(call, when)) =
                        points.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        let (k, f) = crash_at(first, prog, &stage2, &reconcile, &want, call, when);
                        killed += usize::from(k);
                        failures.extend(f);
                    }
                    (killed, failures)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("crash worker"))
            .collect()
    });
    let killed: usize = results.iter().map(|(k, _)| k).sum();
    let failures: Vec<String> = results.into_iter().flat_map(|(_, f)| f).collect();
    eprintln!(
        "{first}: {} crash points ({killed} killed) over {counts:?}, {} failures",
        counts.values().sum::<usize>(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(killed > 0, "no injected kill took effect");
}

#[test]
fn stage2_setup_killed_at_every_change_recovers_to_a_clean_boot() {
    kill_at_every_change(STAGE2);
}

#[test]
fn reconcile_profiles_killed_at_every_change_recovers_to_a_clean_boot() {
    kill_at_every_change(RECONCILE);
}
