//! `cargo xtask bench`: the project's programs side by side with what they replace, on the same generated
//! data, in one run (DESIGN §4). Prints a markdown report on stdout; progress goes to stderr.
//!
//! The report is a list of sections. A section gets the shared [`Ctx`] (release binaries, run count,
//! scratch directory) and returns its markdown; add one by writing a module with a `run(&Ctx)` function
//! and listing it in [`SECTIONS`].

mod lifecycle;
mod measure;
mod reconcile;
mod scratch;
mod tree;
mod volume;
mod wrapper;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::setup;

const USAGE: &str = "usage: cargo xtask bench [--runs N] [--fast-runs N] [--sizes N,N…] [--profiles N,N…]
                         [--only SECTION] [--dir DIR]

  --runs N          timed runs per slow measurement; the median is reported (default 5, at least 5 for
                    the README)
  --fast-runs N     timed runs per measurement of a few milliseconds or less (default 200); median and
                    p90 are reported
  --sizes N,…       data volume sizes in entries (default 10000,100000)
  --profiles N,…    profile counts for reconcile-profiles (default 10,500)
  --only NAME       run one section (volume, reconcile, wrapper, lifecycle: the container's
                    start, stop and restart on the Docker engine, at least 10 runs each)
  --dir DIR         where the generated trees go (default: the system temp directory)";

/// What every section may use.
pub struct Ctx {
    /// Directory of the release binaries (`stage2-setup`, …) and `examples/`.
    pub bin_dir: PathBuf,
    pub runs: usize,
    /// Runs for the measurements of a few milliseconds or less.
    pub fast_runs: usize,
    pub sizes: Vec<usize>,
    /// Profile counts for the `reconcile` section.
    pub profiles: Vec<usize>,
    pub scratch: PathBuf,
    /// Whether `strace` is available for syscall counts.
    pub strace: bool,
}

impl Ctx {
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
    pub fn example(&self, name: &str) -> PathBuf {
        self.bin_dir.join("examples").join(name)
    }
}

struct Section {
    name: &'static str,
    run: fn(&Ctx) -> Result<String>,
}

const SECTIONS: &[Section] = &[
    Section {
        name: "volume",
        run: volume::run,
    },
    Section {
        name: "reconcile",
        run: reconcile::run,
    },
    Section {
        name: "wrapper",
        run: wrapper::run,
    },
    Section {
        name: "lifecycle",
        run: lifecycle::run,
    },
];

fn list(v: &str, what: &str) -> Result<Vec<usize>> {
    v.split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .with_context(|| what.to_string())
}

pub fn run(args: &[String]) -> Result<()> {
    let mut runs = 5;
    let mut fast_runs = 200;
    let mut sizes = vec![10_000, 100_000];
    let mut profiles = vec![10, 500];
    let mut only: Option<String> = None;
    let mut dir = std::env::temp_dir();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value\n\n{USAGE}"));
        match a.as_str() {
            "--runs" => runs = value()?.parse().context("--runs")?,
            "--fast-runs" => fast_runs = value()?.parse().context("--fast-runs")?,
            "--sizes" => sizes = list(value()?, "--sizes")?,
            "--profiles" => profiles = list(value()?, "--profiles")?,
            "--only" => only = Some(value()?.clone()),
            "--dir" => dir = PathBuf::from(value()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other}\n\n{USAGE}"),
        }
    }
    if runs == 0 || fast_runs == 0 || sizes.is_empty() || sizes.iter().any(|&n| n < 100) {
        bail!("--runs and --fast-runs must be positive and every size at least 100\n\n{USAGE}");
    }
    if profiles.is_empty() {
        bail!("--profiles needs at least one count\n\n{USAGE}");
    }
    if let Some(o) = &only {
        if !SECTIONS.iter().any(|s| s.name == o) {
            bail!("unknown section {o}\n\n{USAGE}");
        }
    }
    if !is_root() {
        bail!("the benchmarks change owners of generated trees to other uids: run as root");
    }
    let strace = match setup::ensure_packages(&["strace"]) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("xtask bench: no strace ({e:#}); syscall counts are left out");
            false
        }
    };
    crate::cargo(&[
        "build",
        "--release",
        "-p",
        "stage2-setup",
        "-p",
        "reconcile-profiles",
        "-p",
        "main-wrapper",
        "-p",
        "boot-core",
        "--example",
        "repair",
    ])?;
    let ctx = Ctx {
        bin_dir: target_dir().join("release"),
        runs,
        fast_runs,
        sizes,
        profiles,
        scratch: dir,
        strace,
    };
    let mut out = String::from("# hermes-boot benchmarks\n\n");
    out.push_str(&machine_line());
    for s in SECTIONS {
        if only.as_deref().is_some_and(|o| o != s.name) {
            continue;
        }
        eprintln!("xtask bench: section {}", s.name);
        let before = load_average();
        out.push_str(&(s.run)(&ctx).with_context(|| format!("section {}", s.name))?);
        // Other work on the machine skews the figures: say how busy it was.
        out.push_str(&format!(
            "Load average (1, 5, 15 min) at the start and end of this section: {before} → {}.\n\n",
            load_average()
        ));
    }
    print!("{out}");
    Ok(())
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
        Some(d) => setup::workspace_root().join(d),
        None => setup::workspace_root().join("target"),
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// One line naming the machine, so figures from different hosts are not compared by accident.
fn machine_line() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("Machine: {cpus} CPUs, Linux {}.\n\n", kernel.trim())
}
