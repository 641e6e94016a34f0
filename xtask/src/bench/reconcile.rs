//! Section `reconcile`: `reconcile-profiles` boot mode (SPEC §4) on generated profile sets.
//!
//! The program runs as root with `--root` on a temporary root prefix laid out like the image; H =
//! `<root>/opt/data` holds the profiles, the scan directory is the default `<root>/run/service`. No
//! s6-svscan runs: boot mode only builds and publishes slots. `<root>/run` is a directory on tmpfs
//! (`/dev/shm`) when there is one, as `/run` is in the container.
//!
//! Two cases, measured interleaved: *fresh* (the scan directory emptied before the run, every slot is built
//! and renamed into place: a container start) and *replaced* (every slot already present from the previous
//! run: each is built and swapped in with `RENAME_EXCHANGE`, the old tree removed). The baseline is the
//! start-up of a bare Python interpreter importing `json` and `pathlib`: the least the interpreter-based
//! reconciler this program replaces could cost, before it reads a single profile.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::measure::{self, median, ms, percentile, ratio, Syscalls};
use super::scratch::{lay_out_root, write, ScratchDir};
use super::Ctx;

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const U: u32 = 10000;
/// 2026-01-01T00:00:00Z: the state files' timestamps.
const EPOCH: u64 = 1_767_225_600;
/// Targets from the project's issue list, for the sizes it names.
const TARGETS: [(usize, Duration); 2] = [(10, Duration::from_millis(5)), (500, Duration::from_millis(50))];

const SOUL: &str =
    "# Soul\n\nYou are a careful assistant for a small team. You answer briefly, cite the files you \
read, and ask before you change anything outside the workspace.\n\n## Tone\n\nPlain, friendly, direct. No \
filler.\n\n## Boundaries\n\n- Never share credentials.\n- Escalate billing questions to a human.\n";

/// A generated root prefix with `n` profiles.
struct ProfileRoot {
    /// A tmpfs mounted on `<root>/run`, as `/run` is in the container. Declared before `root`, so it is
    /// unmounted before the tree is removed.
    _run: Option<TmpfsMount>,
    root: ScratchDir,
    n: usize,
    /// Slots expected to start (`default` included).
    started: usize,
}

impl ProfileRoot {
    fn new(ctx: &Ctx, n: usize) -> Result<ProfileRoot> {
        let root = ScratchDir::new(&ctx.scratch, &format!("hermes-bench-profiles-{n}."))?;
        let r = root.path();
        lay_out_root(r)?;
        // A mount, not a symlink to /dev/shm: the programs resolve every path inside the root prefix,
        // and refuse to leave it.
        let run = TmpfsMount::new(&r.join("run")).ok();
        std::fs::create_dir_all(r.join("run/service"))?;
        // s6-overlay's /init runs main-wrapper with the container command.
        write(
            &r.join("proc/1/cmdline"),
            "/init\0/opt/hermes/docker/bin/main-wrapper\0gateway\0run\0",
        )?;
        let h = r.join("opt/data");
        write(&h.join("SOUL.md"), SOUL)?;
        write(
            &h.join("config.yaml"),
            "model:\n  default: anthropic/claude-sonnet-4\ngateway:\n  multiplex_profiles: false\n",
        )?;
        write(&h.join("gateway_state.json"), state_json(1))?;
        let mut started = 1;
        for i in 0..n {
            let p = h.join("profiles").join(profile_name(i));
            write(&p.join("SOUL.md"), SOUL)?;
            write(&p.join("config.yaml"), "model:\n  default: openai/gpt-4.1-mini\n")?;
            write(&p.join(".env"), "TELEGRAM_BOT_TOKEN=000000:placeholder\n")?;
            write(&p.join("gateway_state.json"), state_json(i))?;
            if i % 3 == 0 {
                let phase = if i % 2 == 0 { "exited" } else { "running" };
                write(
                    &p.join("state/gateway.lifecycle.json"),
                    format!(
                        "{{\"phase\":\"{phase}\",\"pid\":{},\"timestamp\":{EPOCH}}}\n",
                        4000 + i
                    ),
                )?;
            }
            std::fs::create_dir_all(p.join("sessions"))?;
            std::fs::create_dir_all(p.join("memories"))?;
            if starts(i) {
                started += 1;
            }
        }
        // Not profiles: skipped silently, as they are in real volumes.
        std::fs::create_dir_all(h.join("profiles/.trash"))?;
        write(&h.join("profiles/README.txt"), "profiles live here\n")?;
        measure::output(Command::new("chown").arg("-R").arg(format!("{U}:{U}")).arg(&h))?;
        let pr = ProfileRoot {
            root,
            _run: run,
            n,
            started,
        };
        pr.reset_volume()?;
        Ok(pr)
    }

    fn path(&self) -> &Path {
        self.root.path()
    }
    fn h(&self) -> PathBuf {
        self.path().join("opt/data")
    }
    fn scandir(&self) -> PathBuf {
        self.path().join("run/service")
    }

    fn command(&self, ctx: &Ctx) -> Command {
        let mut c = Command::new(ctx.bin("reconcile-profiles"));
        // Every profile gets its slot: the default cap (64) would leave most of the large set out.
        c.env_clear()
            .env("PATH", PATH)
            .env("HERMES_GATEWAY_LIMIT", (self.n + 1).to_string())
            .arg("--root")
            .arg(self.path());
        c
    }

    /// What a previous container leaves behind for every run to find again: stale pid files (every fifth
    /// profile) and no boot log (so no run pays for a rotation another did not).
    fn reset_volume(&self) -> Result<()> {
        let h = self.h();
        for f in ["logs/container-boot.log", "logs/container-boot.log.1"] {
            match std::fs::remove_file(h.join(f)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        let mut stale = vec![h.join("gateway.pid")];
        stale.extend(
            (0..self.n)
                .step_by(5)
                .map(|i| h.join("profiles").join(profile_name(i)).join("gateway.pid")),
        );
        for p in stale {
            std::fs::write(&p, "4242\n").with_context(|| format!("write {}", p.display()))?;
            std::os::unix::fs::lchown(&p, Some(U), Some(U))?;
        }
        Ok(())
    }

    /// Everything in the scan directory goes (a new container's `/run` is empty).
    fn clear_scandir(&self) -> Result<()> {
        let s = self.scandir();
        for e in std::fs::read_dir(&s).with_context(|| format!("read {}", s.display()))? {
            let p = e?.path();
            if p.symlink_metadata()?.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            }
            .with_context(|| format!("remove {}", p.display()))?;
        }
        Ok(())
    }

    /// One untimed run from a fresh scan directory, checked: one line and one slot per profile, `down`
    /// exactly in the slots that must not start.
    fn verify(&self, ctx: &Ctx) -> Result<()> {
        self.clear_scandir()?;
        let out = measure::output(&mut self.command(ctx))?;
        let lines = out
            .lines()
            .filter(|l| l.starts_with("reconcile: profile="))
            .count();
        let (mut slots, mut down) = (0, 0);
        for e in std::fs::read_dir(self.scandir())? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with("gateway-") {
                slots += 1;
                if e.path().join("down").exists() {
                    down += 1;
                }
            }
        }
        let want = self.n + 1;
        if lines != want || slots != want || down != want - self.started {
            bail!(
                "reconcile-profiles with {} profiles: {lines} report lines, {slots} slots, {down} with \
                 `down` (expected {want}, {want}, {}):\n{out}",
                self.n,
                want - self.started
            );
        }
        self.reset_volume()
    }
}

fn profile_name(i: usize) -> String {
    format!("agent-{i:03}")
}

/// The state file of profile `i`: a mix of running and stopped gateways, some asked to stop, some older
/// files without `desired_state`.
fn state_json(i: usize) -> String {
    let (state, desired) = match i % 4 {
        0 => ("running", Some("stopped")),
        1 => ("running", Some("running")),
        2 => ("stopped", Some("stopped")),
        _ => ("running", None),
    };
    let desired = desired
        .map(|d| format!(",\"desired_state\":\"{d}\""))
        .unwrap_or_default();
    format!(
        "{{\"gateway_state\":\"{state}\"{desired},\"timestamp\":{},\"pid\":{},\"platforms\":{{\"telegram\":\
         {{\"state\":\"connected\"}}}}}}\n",
        EPOCH + i as u64,
        4000 + i
    )
}

/// Whether profile `i`'s slot starts (RP-06: `desired_state` wins, else `gateway_state`).
fn starts(i: usize) -> bool {
    matches!(i % 4, 1 | 3)
}

/// A tmpfs mounted on a directory for as long as the value lives.
struct TmpfsMount(PathBuf);

impl TmpfsMount {
    fn new(dir: &Path) -> Result<TmpfsMount> {
        measure::output(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", "mode=0755,size=256m", "tmpfs"])
                .arg(dir),
        )?;
        Ok(TmpfsMount(dir.to_path_buf()))
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The interpreter for the baseline: Debian's, not a version manager's shim on PATH.
pub fn python() -> Result<PathBuf> {
    for p in ["/usr/bin/python3", "/usr/local/bin/python3"] {
        if Path::new(p).exists() {
            return Ok(PathBuf::from(p));
        }
    }
    bail!("no python3 in /usr/bin or /usr/local/bin for the baseline (apt-get install python3-minimal)")
}

struct Row {
    program: String,
    times: Vec<Duration>,
    syscalls: Option<Syscalls>,
}

pub fn run(ctx: &Ctx) -> Result<String> {
    let python = python()?;
    let py = || {
        let mut c = Command::new(&python);
        c.env_clear()
            .env("PATH", PATH)
            .args(["-c", "import json, pathlib"]);
        c
    };
    // Whether every generated root had its tmpfs `/run`; the description is written after the runs.
    let mut on_tmpfs = true;
    let mut out = String::new();
    writeln!(
        out,
        "| profiles | program | runs | median | p90 | vs Python start | syscalls | syscalls/profile |"
    )?;
    writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|")?;
    let mut verdicts = Vec::new();
    let mut fresh_totals: Vec<(usize, Syscalls)> = Vec::new();
    for &n in &ctx.profiles {
        eprintln!("xtask bench: generating {n} profiles");
        let pr = ProfileRoot::new(ctx, n)?;
        on_tmpfs &= pr._run.is_some();
        pr.verify(ctx)?;
        let runs = if n <= 50 {
            ctx.fast_runs
        } else {
            ctx.runs.max(ctx.fast_runs / 4)
        };
        eprintln!("xtask bench: {runs} runs with {n} profiles");
        let mut rows = [
            Row {
                program: "Python start (baseline)".into(),
                times: Vec::new(),
                syscalls: None,
            },
            Row {
                program: "`reconcile-profiles`, fresh".into(),
                times: Vec::new(),
                syscalls: None,
            },
            Row {
                program: "`reconcile-profiles`, replaced".into(),
                times: Vec::new(),
                syscalls: None,
            },
        ];
        // Warm the caches for all three.
        measure::time_spawn(&mut py())?;
        pr.clear_scandir()?;
        for _ in 0..runs {
            rows[0].times.push(measure::time_spawn(&mut py())?);
            pr.clear_scandir()?;
            pr.reset_volume()?;
            rows[1].times.push(measure::time_spawn(&mut pr.command(ctx))?);
            pr.reset_volume()?;
            rows[2].times.push(measure::time_spawn(&mut pr.command(ctx))?);
        }
        if ctx.strace {
            rows[0].syscalls = Some(measure::strace(&py(), &ctx.scratch)?);
            pr.clear_scandir()?;
            pr.reset_volume()?;
            rows[1].syscalls = Some(measure::strace(&pr.command(ctx), &ctx.scratch)?);
            pr.reset_volume()?;
            rows[2].syscalls = Some(measure::strace(&pr.command(ctx), &ctx.scratch)?);
        }
        if let Some(s) = &rows[1].syscalls {
            fresh_totals.push((n, s.clone()));
        }
        let base = median(&rows[0].times);
        for (i, r) in rows.iter().enumerate() {
            let m = median(&r.times);
            let (total, per) = match (&r.syscalls, i) {
                (Some(s), 0) => (s.total().to_string(), String::new()),
                (Some(s), _) => (
                    s.total().to_string(),
                    format!("{:.1}", s.total() as f64 / (n + 1) as f64),
                ),
                (None, _) => Default::default(),
            };
            writeln!(
                out,
                "| {n} | {} | {} | {} | {} | {:.2}× | {total} | {per} |",
                r.program,
                r.times.len(),
                measure::ms3(m),
                measure::ms3(percentile(&r.times, 90.0)),
                ratio(m, base),
            )?;
        }
        if let Some((_, target)) = TARGETS.iter().find(|(k, _)| *k == n) {
            for r in &rows[1..] {
                let m = median(&r.times);
                verdicts.push(format!(
                    "{n} profiles, {} ≤ {}: {} — {}",
                    r.program,
                    ms(*target),
                    measure::ms3(m),
                    if m <= *target { "met" } else { "NOT met" }
                ));
            }
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "syscalls/profile divides by the slots published (profiles + `default`).\n"
    )?;
    if let (Some((n0, s0)), Some((n1, s1))) = (fresh_totals.first(), fresh_totals.last()) {
        if n1 > n0 {
            writeln!(
                out,
                "Syscalls per additional profile (fresh, {n0} → {n1} profiles): {:.1}: {}.\n",
                (s1.total() as f64 - s0.total() as f64) / (n1 - n0) as f64,
                marginal(s0, s1, n1 - n0)
            )?;
        }
    }
    if !verdicts.is_empty() {
        writeln!(out, "Targets:\n")?;
        for v in verdicts {
            writeln!(out, "- {v}")?;
        }
        writeln!(out)?;
    }
    let run = if on_tmpfs {
        "on tmpfs, as `/run` in the container"
    } else {
        "on the scratch file system: no tmpfs could be mounted"
    };
    Ok(format!(
        "## reconcile-profiles boot mode (SPEC §4)\n\n{}{out}",
        description(&python, run)
    ))
}

/// The paragraph above the table; `run` says where the scan directory was.
fn description(python: &Path, run: &str) -> String {
    format!(
        "As root with `--root` on a temporary root prefix; H = `<root>/opt/data` (on the scratch file system), \
         scan directory `<root>/run/service` ({}), `HERMES_GATEWAY_SLOTS` unset (root-owned slots), `HERMES_GATEWAY_LIMIT` one above the profile count. Each profile has `SOUL.md`, `config.yaml`, `.env`, \
         `gateway_state.json` (a quarter each: running asked to stop, running, stopped, running without \
         `desired_state`), a third of them `state/gateway.lifecycle.json`, every fifth a stale \
         `gateway.pid`. *fresh*: the scan directory is emptied before each run, so every slot is built and \
         published. *replaced*: every slot is already there (from the fresh run just before) and is \
         exchanged. The three commands run interleaved; the boot log is removed and the stale pid files \
         recreated (untimed) before each run. Baseline: `{} -c 'import json, pathlib'`. Syscalls from one \
         run under `strace -f -c`.\n",
        run,
        python.display()
    )
}

/// The syscalls that grow with the profile count, per additional profile, largest first.
fn marginal(small: &Syscalls, big: &Syscalls, extra: usize) -> String {
    let mut per: Vec<(f64, &str)> = big
        .calls
        .iter()
        .map(|(name, &calls)| {
            let d = calls as f64 - small.get(name) as f64;
            (d / extra as f64, name.as_str())
        })
        .filter(|(d, _)| *d >= 0.5)
        .collect();
    per.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    per.iter()
        .map(|(d, name)| format!("{name} {d:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_files_are_json_objects_with_the_expected_prior_state() {
        for i in 0..8 {
            let s = state_json(i);
            assert!(
                s.starts_with("{\"gateway_state\":\"") && s.ends_with("}}}\n"),
                "{s}"
            );
            let running = s.contains("\"desired_state\":\"running\"")
                || (s.contains("\"gateway_state\":\"running\"") && !s.contains("desired_state"));
            assert_eq!(running, starts(i), "{s}");
        }
    }

    #[test]
    fn marginal_syscalls_are_per_extra_profile_largest_first() {
        let mk = |v: &[(&str, u64)]| Syscalls {
            calls: v.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            ..Default::default()
        };
        let small = mk(&[("openat", 100), ("mkdirat", 10), ("execve", 1)]);
        let big = mk(&[("openat", 300), ("mkdirat", 410), ("execve", 1)]);
        assert_eq!(marginal(&small, &big, 100), "mkdirat 4.0, openat 2.0");
    }
}
