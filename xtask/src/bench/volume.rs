//! Section `volume`: the ownership walk on generated data volumes.
//!
//! Warm boot (nothing to change): `stage2-setup` against upstream's pre-scan
//! `find H ( ! -user U -o ! -group G ) -print -quit`. Cold boot (UID and GID remapped, every entry
//! changes): `stage2-setup` with `HERMES_UID`/`HERMES_GID` against upstream's `chown -R`. Both programs run
//! against a temporary root prefix (`--root`) laid out like the image, H = `<root>/opt/data`. The CM-08
//! walk alone over all of H (`boot-core`'s `repair` example) is measured beside them, so that the walk
//! and the program's fixed costs can be told apart.

use std::fmt::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::measure::{self, median, ms, Syscalls};
use super::scratch::ScratchDir;
use super::tree::{self, Volume};
use super::Ctx;

const U: u32 = 10000;
const REMAP: u32 = 20000;
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The directories a warm `stage2-setup` walks every boot (S2-11).
const EVERY_BOOT: [&str; 3] = ["profiles", "cron", "pairing"];

struct Root {
    dir: ScratchDir,
}

impl Root {
    fn new(scratch: &Path, n: usize) -> Result<(Root, Volume)> {
        let dir = ScratchDir::new(scratch, &format!("hermes-bench-{n}."))?;
        let r = Root { dir };
        for d in ["etc", "run", "tmp", "opt/hermes", "proc/1"] {
            std::fs::create_dir_all(r.path().join(d))?;
        }
        std::fs::set_permissions(r.path().join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
        std::fs::set_permissions(r.path(), std::fs::Permissions::from_mode(0o755))?;
        r.write_accounts()?;
        let vol = tree::generate(&r.h(), n)?;
        Ok((r, vol))
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn h(&self) -> PathBuf {
        self.path().join("opt/data")
    }
    /// `hermes` at 10000:10000 again (a cold `stage2-setup` run remaps it).
    fn write_accounts(&self) -> Result<()> {
        std::fs::write(
            self.path().join("etc/passwd"),
            format!("root:x:0:0:root:/root:/bin/sh\nhermes:x:{U}:{U}::/opt/data:/bin/sh\n"),
        )?;
        std::fs::write(
            self.path().join("etc/group"),
            format!("root:x:0:\nhermes:x:{U}:\n"),
        )?;
        Ok(())
    }
}

/// One measured program in one scenario.
struct Row {
    case: &'static str,
    program: String,
    median: Duration,
    /// Index of the row this one is compared with (upstream), if any.
    baseline: Option<usize>,
    syscalls: Option<Syscalls>,
    /// Entries the program looks at (the denominator of the per-entry columns).
    entries: usize,
}

pub fn run(ctx: &Ctx) -> Result<String> {
    let mut out = String::new();
    writeln!(out, "## Data volume: ownership walk (SPEC CM-08, S2-11)\n")?;
    writeln!(
        out,
        "Medians of {} runs on the same generated trees. *Warm*: nothing to change. *Cold*: UID and GID \
         remapped (10000 → 20000), every entry changes. Programs run with `--root` on a temporary root; \
         H = `<root>/opt/data`. Syscalls from one run under `strace -f -c`; the floor is 1 stat per entry \
         and 1 chown per changed entry. *dir reads* = `openat`/`openat2`, `getdents64`, `close`.\n",
        ctx.runs
    )?;
    let mut verdicts = Vec::new();
    for &n in &ctx.sizes {
        eprintln!("xtask bench: generating a volume of {n} entries");
        let (root, vol) = Root::new(&ctx.scratch, n)?;
        set_owner(ctx, &root.h(), U)?;
        let rows = measure_volume(ctx, &root, &vol)?;
        write_table(&mut out, &vol, &rows)?;
        verdicts.extend(check_targets(&vol, &rows));
    }
    writeln!(out, "Targets:\n")?;
    for v in verdicts {
        writeln!(out, "- {v}")?;
    }
    writeln!(out)?;
    Ok(out)
}

/// A row label and how to build the command it measures.
type Program<'a> = (&'static str, Box<dyn Fn() -> Command + 'a>);

fn measure_volume(ctx: &Ctx, root: &Root, vol: &Volume) -> Result<Vec<Row>> {
    let h = root.h();
    let stage2 = |remap: bool| {
        let mut c = Command::new(ctx.bin("stage2-setup"));
        c.env_clear().env("PATH", PATH).arg("--root").arg(root.path());
        if remap {
            c.env("HERMES_UID", REMAP.to_string())
                .env("HERMES_GID", REMAP.to_string());
        }
        c
    };
    let find = || {
        let mut c = Command::new("find");
        c.env_clear().env("PATH", PATH).arg(&h).args([
            "(",
            "!",
            "-user",
            &U.to_string(),
            "-o",
            "!",
            "-group",
            &U.to_string(),
            ")",
            "-print",
            "-quit",
        ]);
        c
    };
    let chown_r = || {
        let mut c = Command::new("chown");
        c.env_clear()
            .env("PATH", PATH)
            .arg("-R")
            .arg(format!("{REMAP}:{REMAP}"))
            .arg(&h);
        c
    };
    let walk = |uid: u32| {
        let mut c = Command::new(ctx.example("repair"));
        c.env_clear()
            .env("PATH", PATH)
            .arg(&h)
            .arg(format!("{uid}:{uid}"));
        c
    };
    // The same walk without the threads that share it: what the sharing gains.
    let walk_alone = |uid: u32| {
        let mut c = walk(uid);
        c.args(["--helpers", "0"]);
        c
    };

    // Warm: one untimed run first, so one-time seeds (.env, seed directories) are out of the way and the
    // caches are equally hot for everyone.
    eprintln!("xtask bench: warm runs");
    measure::time_once(&mut stage2(false))?;
    let leftover = measure::output(&mut find())?;
    if !leftover.is_empty() {
        bail!("after a stage2-setup run the volume still has entries not owned {U}:{U}: {leftover}");
    }
    let warm_cmds: [Program; 3] = [
        ("`find` pre-scan (upstream)", Box::new(find)),
        ("`stage2-setup`", Box::new(move || stage2(false))),
        (
            "CM-08 walk of all of H (`repair` example)",
            Box::new(move || walk(U)),
        ),
    ];
    let mut times = vec![Vec::new(); warm_cmds.len()];
    measure::time_once(&mut find())?;
    measure::time_once(&mut walk(U))?;
    for _ in 0..ctx.runs {
        for (i, (_, cmd)) in warm_cmds.iter().enumerate() {
            times[i].push(measure::time_once(&mut cmd())?);
        }
    }
    let every_boot = vol.under(&EVERY_BOOT) + 1;
    let warm_entries = [vol.entries, every_boot, vol.entries];
    let mut rows = Vec::new();
    for (i, (name, cmd)) in warm_cmds.iter().enumerate() {
        let syscalls = match ctx.strace {
            true => Some(measure::strace(&cmd(), &ctx.scratch)?),
            false => None,
        };
        let program = if i == 1 {
            format!("{name} (walks {}: {every_boot} entries)", EVERY_BOOT.join(", "))
        } else {
            name.to_string()
        };
        rows.push(Row {
            case: "warm",
            program,
            median: median(&times[i]),
            baseline: (i > 0).then_some(0),
            syscalls,
            entries: warm_entries[i],
        });
    }

    // Cold: before every run (untimed) the accounts and the tree go back to 10000:10000.
    eprintln!("xtask bench: cold runs");
    let reset = || -> Result<()> {
        root.write_accounts()?;
        set_owner(ctx, &h, U)?;
        sync();
        Ok(())
    };
    let check = || -> Result<()> {
        let m = std::fs::metadata(root.h().join("profiles/p0/sessions"))?;
        if (m.uid(), m.gid()) != (REMAP, REMAP) {
            bail!("a cold run left the volume owned {}:{}", m.uid(), m.gid());
        }
        Ok(())
    };
    let cold_cmds: [Program; 4] = [
        ("`chown -R` (upstream)", Box::new(chown_r)),
        (
            "`stage2-setup` with HERMES_UID/HERMES_GID",
            Box::new(move || stage2(true)),
        ),
        (
            "CM-08 walk of all of H (`repair` example)",
            Box::new(move || walk(REMAP)),
        ),
        (
            "CM-08 walk of all of H on one thread (`repair --helpers 0`)",
            Box::new(move || walk_alone(REMAP)),
        ),
    ];
    let mut times = vec![Vec::new(); cold_cmds.len()];
    for _ in 0..ctx.runs {
        for (i, (_, cmd)) in cold_cmds.iter().enumerate() {
            reset()?;
            times[i].push(measure::time_once(&mut cmd())?);
            check()?;
        }
    }
    let base = rows.len();
    for (i, (name, cmd)) in cold_cmds.iter().enumerate() {
        let syscalls = match ctx.strace {
            true => {
                reset()?;
                Some(measure::strace(&cmd(), &ctx.scratch)?)
            }
            false => None,
        };
        rows.push(Row {
            case: "cold",
            program: name.to_string(),
            median: median(&times[i]),
            baseline: (i > 0).then_some(base),
            syscalls,
            entries: vol.entries,
        });
    }
    Ok(rows)
}

fn set_owner(ctx: &Ctx, h: &Path, uid: u32) -> Result<()> {
    let mut c = Command::new(ctx.example("repair"));
    c.arg(h).arg(format!("{uid}:{uid}"));
    measure::output(&mut c)
        .map(|_| ())
        .context("resetting the volume's owner")
}

fn sync() {
    let _ = Command::new("sync").status();
}

fn per(n: u64, entries: usize) -> String {
    format!("{:.2}", n as f64 / entries.max(1) as f64)
}

fn write_table(out: &mut String, vol: &Volume, rows: &[Row]) -> Result<()> {
    writeln!(out, "### {} entries\n", group_digits(vol.entries))?;
    writeln!(
        out,
        "| case | program | median | vs upstream | stat/entry | chown+chmod/entry | getdents/entry | \
         syscalls/entry besides dir reads |"
    )?;
    writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|")?;
    for r in rows {
        let ratio = match r.baseline {
            Some(b) => format!("{:.2}×", r.median.as_secs_f64() / rows[b].median.as_secs_f64()),
            None => "1.00×".to_string(),
        };
        let (stat, chown, dents, other) = match &r.syscalls {
            Some(s) => {
                let reads = s.getdents()
                    + ["openat", "openat2", "open", "close"]
                        .iter()
                        .map(|n| s.calls.get(*n).copied().unwrap_or(0))
                        .sum::<u64>();
                (
                    per(s.stat(), r.entries),
                    per(s.chown() + s.chmod(), r.entries),
                    per(s.getdents(), r.entries),
                    per(s.total() - reads, r.entries),
                )
            }
            None => Default::default(),
        };
        writeln!(
            out,
            "| {} | {} | {} | {ratio} | {stat} | {chown} | {dents} | {other} |",
            r.case,
            r.program,
            ms(r.median)
        )?;
    }
    writeln!(out)?;
    Ok(())
}

fn check_targets(vol: &Volume, rows: &[Row]) -> Vec<String> {
    let mut v = Vec::new();
    let n = group_digits(vol.entries);
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let ratio = |i: usize| {
        rows[i]
            .baseline
            .map(|b| rows[i].median.as_secs_f64() / rows[b].median.as_secs_f64())
            .unwrap_or(1.0)
    };
    // Row order: warm find, warm stage2, warm walk, cold chown -R, cold stage2, cold walk, cold walk on
    // one thread.
    let w = ratio(1);
    v.push(format!(
        "{n} entries, warm `stage2-setup` ≤ 0.6× `find`: {w:.2}× — {}",
        verdict(w <= 0.6)
    ));
    if let Some(s) = &rows[1].syscalls {
        let c = s.chown() + s.chmod();
        v.push(format!(
            "{n} entries, warm `stage2-setup` chown/chmod syscalls on a right tree: {c} — {}",
            verdict(c == 0)
        ));
    }
    let c = ratio(4);
    v.push(format!(
        "{n} entries, cold `stage2-setup` ≤ 0.6× `chown -R`: {c:.2}× — {}",
        verdict(c <= 0.6)
    ));
    if let Some(s) = &rows[5].syscalls {
        let reads = s.getdents()
            + ["openat", "openat2", "open", "close"]
                .iter()
                .map(|k| s.calls.get(*k).copied().unwrap_or(0))
                .sum::<u64>();
        let per_entry = (s.total() - reads) as f64 / vol.entries as f64;
        v.push(format!(
            "{n} entries, cold walk ≤ 2 syscalls per entry besides directory reads: {per_entry:.2} — {}",
            verdict(per_entry <= 2.0)
        ));
    }
    v
}

fn group_digits(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn digits_are_grouped() {
        assert_eq!(super::group_digits(100000), "100,000");
        assert_eq!(super::group_digits(9999), "9,999");
        assert_eq!(super::group_digits(12), "12");
    }
}
