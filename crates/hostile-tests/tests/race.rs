//! Race adversary: `stage2-setup` and `reconcile-profiles` boot again and again as root while a process
//! running as the runtime user swaps everything they touch with symlinks, hard links and decoy
//! directories pointing at root-owned victims outside the volume. No victim may change: owner, mode,
//! content, and no new entry in a victim directory.
//!
//! CI form: 2 × 160 boots. Longer: `HERMES_ATTACK_BOOTS=5000 cargo nextest run -p hostile-tests race`
//! (the count is per test). `HERMES_ATTACK_SEED` replays a run.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use hostile_tests::{
    crashed, env_count, image, populate_volume, program, seed, Rng, Victims, HERMES_GID, HERMES_UID,
    RECONCILE, STAGE2,
};
use test_support::{run, TempRoot};

/// The adversary process, stopped through its stop file.
struct Swapper {
    child: Option<Child>,
    stop: PathBuf,
}

impl Swapper {
    fn start(r: &TempRoot, victims: &Victims, targets: &[&str], seed: u64) -> Swapper {
        use std::os::unix::process::CommandExt;
        let stop = r.path("/stop-swapper");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hostile-swapper"));
        cmd.arg("--stop").arg(&stop).arg("--seed").arg(seed.to_string());
        for v in victims.files.iter().chain(&victims.dirs) {
            cmd.arg("--victim").arg(v);
        }
        cmd.arg("--linkable").arg(&victims.linkable);
        for t in targets {
            cmd.arg("--target").arg(r.path(t));
        }
        cmd.uid(HERMES_UID)
            .gid(HERMES_GID)
            .stdout(Stdio::piped())
            .stdin(Stdio::null());
        let child = cmd.spawn().expect("start hostile-swapper");
        Swapper {
            child: Some(child),
            stop,
        }
    }

    /// Stops the adversary and returns its counts line.
    fn finish(mut self) -> String {
        std::fs::write(&self.stop, "").expect("write stop file");
        let child = self.child.take().expect("adversary running");
        let out = child.wait_with_output().expect("wait for hostile-swapper");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every entry of the volume, the scandir and the runtime-user directories the two programs touch.
const VOLUME_TARGETS: [&str; 30] = [
    "/opt/data/sessions",
    "/opt/data/sessions/s1",
    "/opt/data/cron",
    "/opt/data/cron/jobs.json",
    "/opt/data/memories",
    "/opt/data/logs",
    "/opt/data/logs/gateways",
    "/opt/data/logs/container-boot.log",
    "/opt/data/profiles",
    "/opt/data/profiles/coder",
    "/opt/data/profiles/coder/.env",
    "/opt/data/profiles/coder/gateway_state.json",
    "/opt/data/profiles/coder/state",
    "/opt/data/profiles/coder/SOUL.md",
    "/opt/data/profiles/writer",
    "/opt/data/profiles/writer/gateway.pid",
    "/opt/data/platforms",
    "/opt/data/platforms/pairing",
    "/opt/data/pairing",
    "/opt/data/.env",
    "/opt/data/auth.json",
    "/opt/data/config.yaml",
    "/opt/data/SOUL.md",
    "/opt/data/gateway_state.json",
    "/opt/data/state.db",
    "/opt/data/.install_method",
    "/opt/data/gateway.pid",
    "/opt/data/processes.json",
    "/opt/data/workspace",
    "/opt/data/home",
];

const SCANDIR_TARGETS: [&str; 10] = [
    "/run/service/.gateway-default.tmp",
    "/run/service/.gateway-coder.tmp",
    "/run/service/.gateway-coder.tmp/log",
    "/run/service/.gateway-coder.tmp/supervise",
    "/run/service/.gateway-coder.tmp/run",
    "/run/service/.gateway-writer.tmp",
    "/run/service/gateway-default",
    "/run/service/gateway-coder",
    "/run/service/gateway-coder/log",
    "/run/service/.gateway-coder.tmp.old",
];

const TMP_TARGETS: [&str; 6] = [
    "/tmp/hermes-files",
    "/tmp/xdg",
    "/tmp/realhome",
    "/tmp/authhome",
    "/tmp/authhome/auth.json",
    "/tmp/authhome/shared",
];

/// One test's attack: `boots` boots against one temp root with one adversary.
fn attack(name: &str, targets: &[&str], default_boots: u64) {
    let boots = env_count("HERMES_ATTACK_BOOTS", default_boots);
    let seed = seed();
    eprintln!("{name}: seed {seed} (HERMES_ATTACK_SEED replays it), {boots} boots");
    let mut rng = Rng::new(seed);
    let r = image();
    let victims = Victims::plant(&r);
    populate_volume(&r);
    r.write(
        "/proc/1/cmdline",
        "/init\0/opt/hermes/docker/bin/main-wrapper\0gateway\0run\0",
    );
    let stage2 = program(STAGE2);
    let reconcile = program(RECONCILE);

    let boot = |rng: &mut Rng, n: u64| -> Vec<String> {
        let mut problems = Vec::new();
        let mut c = r.command(&stage2);
        // GID remaps in both directions make every boot walk the targeted trees (S2-11).
        c.env("HERMES_GID", if n % 2 == 0 { "10000" } else { "10001" })
            .env("XDG_RUNTIME_DIR", "/tmp/xdg")
            .env("HERMES_REAL_HOME", "/tmp/realhome")
            .env("HERMES_GATEWAY_BOOTSTRAP_STATE", "running");
        if rng.chance(50) {
            c.env("HERMES_AUTH_HOME", "/tmp/authhome")
                .env("HERMES_AUTH_JSON_BOOTSTRAP", "{\"seeded\":true}");
        }
        // A routing override that comes and goes rewrites every .env on every boot (S2-20).
        if rng.chance(50) {
            c.env(
                "NOUS_PORTAL_BASE_URL",
                format!("https://portal{}.example", rng.below(3)),
            );
        }
        let s = run(&mut c);
        if crashed(s.code, &s.stderr) || s.code != Some(0) {
            problems.push(format!(
                "boot {n}: stage2-setup exited {:?}\n{}{}",
                s.code, s.stdout, s.stderr
            ));
        }
        let mut c = r.command(&reconcile);
        if rng.chance(30) {
            c.env("GATEWAY_MULTIPLEX_PROFILES", "true");
        }
        let p = run(&mut c);
        if crashed(p.code, &p.stderr) || p.code != Some(0) {
            problems.push(format!(
                "boot {n}: reconcile-profiles exited {:?}\n{}{}",
                p.code, p.stdout, p.stderr
            ));
        }
        problems
    };

    // First boot without the adversary: the volume becomes the runtime user's, as in a real container.
    let first = boot(&mut rng, 0);
    assert!(first.is_empty(), "first boot failed: {first:?}");
    assert_eq!(r.owner("/opt/data"), (HERMES_UID, HERMES_GID));
    // The scandir is the runtime user's after RP-01 (B15); when it is not, the scandir attacks fail with
    // EACCES and the volume attacks still run.

    let swapper = Swapper::start(&r, &victims, targets, seed.rotate_left(17));
    let started = Instant::now();
    let mut problems = Vec::new();
    // Each changed victim once, with the first boot that changed it.
    let mut changed: Vec<String> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for n in 1..=boots {
        problems.extend(boot(&mut rng, n));
        for c in victims.changes() {
            let key = c.split(':').next().unwrap_or_default().to_string();
            if seen.insert(key) {
                changed.push(format!("after boot {n}: {c}"));
            }
        }
    }
    let counts = swapper.finish();
    eprintln!(
        "{name}: {boots} boots in {:.1}s, adversary {counts}, victims changed: {}",
        started.elapsed().as_secs_f64(),
        changed.len()
    );
    assert!(
        changed.is_empty(),
        "victims changed under attack (seed {seed}):\n{}",
        changed.join("\n")
    );
    assert!(
        problems.is_empty(),
        "boots failed under attack (seed {seed}):\n{}",
        problems.join("\n")
    );
    // Once the adversary stops, one boot puts the default slot back and the volume is the runtime user's.
    let last = boot(&mut rng, boots + 1);
    assert!(last.is_empty(), "boot after the attack failed: {last:?}");
    let slot = r.path("/run/service/gateway-default");
    let m = std::fs::symlink_metadata(&slot).unwrap_or_else(|e| panic!("{}: {e}", slot.display()));
    assert!(m.is_dir(), "gateway-default is not a directory after the attack");
    assert!(
        slot.join("run").is_file() && slot.join("log/run").is_file(),
        "gateway-default incomplete after the attack"
    );
    assert_eq!(r.owner("/opt/data").0, HERMES_UID);
    // The attack must have happened, or the test proves nothing.
    let flips: u64 = counts
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("flips="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        flips >= boots,
        "the adversary barely ran ({counts}); the test proves nothing"
    );
}

#[test]
fn victims_survive_a_hostile_volume() {
    let targets: Vec<&str> = VOLUME_TARGETS.iter().chain(TMP_TARGETS.iter()).copied().collect();
    attack("volume", &targets, 160);
}

#[test]
fn victims_survive_a_hostile_scandir() {
    let targets: Vec<&str> = SCANDIR_TARGETS
        .iter()
        .chain(VOLUME_TARGETS[8..16].iter())
        .chain(VOLUME_TARGETS[19..25].iter())
        .copied()
        .collect();
    attack("scandir", &targets, 160);
}
