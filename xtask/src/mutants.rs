//! `cargo xtask mutants`: mutation testing of `boot-core` with cargo-mutants (installed from crates.io
//! when missing), each module against the tests of every crate whose binaries run it.
//!
//! boot-core's own tests see only part of what a change breaks: the ownership walk is judged by
//! `stage2-setup`'s boots, the slots by `reconcile-profiles` and `supervise-perms`. Running every
//! crate's tests for every mutant would cost the whole suite per mutant, so the modules are grouped by
//! the crates that exercise them ([`GROUPS`]). Each group runs in two passes: first against boot-core's
//! own tests, which fail within seconds for most mutants; then the mutants those missed against the tests
//! of every crate of the group, which cost a rebuild of every program and test binary per mutant. Before
//! either, the group's tests run once on the unmutated tree: a test that fails without any mutation
//! would otherwise count every mutant as caught.
//!
//! Mutants that cannot be caught because the mutated code behaves the same (equivalent mutants) are
//! excluded in `.cargo/mutants.toml`, each with the reason; what survives otherwise is a missing test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::setup::workspace_root;

const CARGO_MUTANTS_VERSION: &str = "27.1.0";

/// Mutants an in-diff pass tests at most; a larger diff is sampled (every k-th mutant, `--shard 1/k`)
/// so that the pass stays a few minutes of the CI budget.
const IN_DIFF_CAP: usize = 30;

/// Floor of the per-mutant test timeout. cargo-mutants derives the timeout from a baseline that runs
/// only the mutated package's tests (about 6 s here), while a surviving mutant runs every test package of
/// its group (30–40 s here): without the floor, survivors would be reported as timeouts.
const MIN_TEST_TIMEOUT_SECS: &str = "240";

/// One cargo-mutants run: the boot-core files it mutates and the packages whose tests judge them.
struct Group {
    name: &'static str,
    files: &'static [&'static str],
    tests: &'static [&'static str],
}

/// Every boot-core source file is in exactly one group (checked by [`check_groups_cover`]); paths are
/// relative to [`SRC`]. `hostile-tests` runs all four programs, and nextest builds a package's binaries only
/// when the package is selected, so a group with `hostile-tests` selects every program's package.
const ALL_PROGRAMS: &[&str] = &[
    "boot-core",
    "stage2-setup",
    "hostile-tests",
    "main-wrapper",
    "reconcile-profiles",
    "supervise-perms",
];

const GROUPS: &[Group] = &[
    Group {
        name: "ownership",
        files: &["ownership.rs", "ownership/share.rs", "handover.rs"],
        tests: ALL_PROGRAMS,
    },
    Group {
        name: "files",
        files: &[
            "guarded.rs",
            "atomic.rs",
            "anchor.rs",
            "root.rs",
            "error.rs",
            "display.rs",
            "owner.rs",
            "config.rs",
            // Stage 2's private directories ask it too, not only the slot code.
            "chown_refusal.rs",
        ],
        tests: ALL_PROGRAMS,
    },
    Group {
        name: "accounts",
        files: &[
            "account_db.rs",
            "account_line.rs",
            "accounts.rs",
            "ids.rs",
            "nss_entry.rs",
        ],
        tests: &["boot-core", "stage2-setup"],
    },
    Group {
        name: "stage2",
        files: &[
            "dotenv.rs",
            "container_env.rs",
            "data_home.rs",
            "capabilities.rs",
            "report.rs",
            "boot_record.rs",
            "stage2/mod.rs",
            "stage2/app_helpers.rs",
            "stage2/browser.rs",
            "stage2/credentials.rs",
            "stage2/fly_socket.rs",
            "stage2/home.rs",
            "stage2/identity.rs",
            "stage2/runtime_dirs.rs",
            "stage2/seeds.rs",
            "stage2/volume.rs",
        ],
        tests: &["boot-core", "stage2-setup"],
    },
    Group {
        name: "slots",
        files: &[
            "s6_slot.rs",
            "s6_perms.rs",
            "s6_command.rs",
            "registrar.rs",
            "registration.rs",
            "requests.rs",
            "reconcile.rs",
            "boot_log.rs",
            "profiles.rs",
        ],
        tests: &["boot-core", "reconcile-profiles", "supervise-perms"],
    },
    Group {
        name: "doctor",
        files: &[
            "doctor/mod.rs",
            "doctor/identity.rs",
            "doctor/volume.rs",
            "doctor/gateways.rs",
            "doctor/supervision.rs",
            "doctor/boot.rs",
        ],
        tests: &["boot-core", "hermes-boot-doctor"],
    },
    Group {
        name: "wrapper",
        files: &[
            "gateway_state.rs",
            "wrapper.rs",
            "routing.rs",
            "privdrop.rs",
            "cmd_stdin.rs",
        ],
        tests: &["boot-core", "main-wrapper"],
    },
];

const SRC: &str = "crates/boot-core/src";

const USAGE: &str = "usage: cargo xtask mutants [--group NAME]… [--file FILE]… [--in-diff REV] [--sample K] [--jobs N] [-- CARGO-MUTANTS-ARGS…]

Mutates boot-core and runs, for each group of modules, the tests of the crates that exercise them;
prints caught / missed / timeout / unviable per file and every survivor. Fails when a mutant survives.

  --group NAME   only this group (ownership, files, accounts, stage2, slots, doctor, wrapper);
                 repeatable
  --file FILE    only this boot-core file (e.g. dotenv.rs, stage2/seeds.rs), with its group's tests;
                 repeatable
  --in-diff REV  only mutants on lines changed since REV (git diff REV); sampled to at most 30
  --sample K     test every K-th mutant (--shard 1/K): an estimate of a file too large for one sitting;
                 the figures say it is a sample
  --jobs N       cargo-mutants build/test jobs in parallel (default 1: the tests use every core)";

pub fn run(args: &[String]) -> Result<()> {
    let mut groups: Vec<&Group> = Vec::new();
    let mut only_files: Vec<String> = Vec::new();
    let mut in_diff: Option<String> = None;
    let mut jobs = "1".to_string();
    let mut sample: Option<usize> = None;
    let mut extra: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--group" => {
                let name = it.next().context("--group needs a name")?;
                let g = GROUPS
                    .iter()
                    .find(|g| g.name == name)
                    .with_context(|| format!("no group '{name}'\n\n{USAGE}"))?;
                groups.push(g);
            }
            "--file" => {
                let f = it.next().context("--file needs a file")?;
                let f = f.strip_prefix(&format!("{SRC}/")).unwrap_or(f);
                let g = GROUPS
                    .iter()
                    .find(|g| g.files.contains(&f))
                    .with_context(|| format!("{SRC}/{f} is in no group\n\n{USAGE}"))?;
                if !groups.iter().any(|x| x.name == g.name) {
                    groups.push(g);
                }
                only_files.push(f.to_string());
            }
            "--in-diff" => in_diff = Some(it.next().context("--in-diff needs a revision")?.clone()),
            "--sample" => {
                let k = it.next().context("--sample needs a number")?;
                sample = Some(
                    k.parse()
                        .ok()
                        .filter(|k| *k > 0)
                        .with_context(|| format!("--sample needs a positive number, not '{k}'"))?,
                );
            }
            "--jobs" => jobs = it.next().context("--jobs needs a number")?.clone(),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            "--" => extra.extend(it.by_ref().cloned()),
            other => bail!("unknown mutants argument '{other}'\n\n{USAGE}"),
        }
    }
    if groups.is_empty() {
        groups = GROUPS.iter().collect();
    }
    let root = workspace_root();
    let out_root = root.join("target/mutants");
    std::fs::create_dir_all(&out_root).with_context(|| format!("cannot create {}", out_root.display()))?;
    let diff = match &in_diff {
        Some(rev) => match write_diff(&root, rev, &out_root)? {
            Some(p) => Some(p),
            None => {
                eprintln!("xtask: mutants: boot-core has no change since {rev}: nothing to mutate");
                return Ok(());
            }
        },
        None => None,
    };
    // After the diff: a change that leaves boot-core alone needs no cargo-mutants at all.
    ensure_cargo_mutants()?;
    // The tools the tests run (Debian's s6, …), as for `cargo xtask test`.
    crate::setup::ensure_packages(&crate::setup::TEST_PACKAGES)?;
    check_groups_cover(&root)?;
    let started = Instant::now();
    let mut total = Tally::default();
    let mut survivors: Vec<String> = Vec::new();
    let mut rows: Vec<(String, Tally)> = Vec::new();
    for g in groups {
        // Runs of single files of one group keep their results apart, so several can be compared.
        let out = if only_files.is_empty() {
            out_root.join(g.name)
        } else {
            let mut tag = g.name.to_string();
            for f in g.files.iter().filter(|f| only_files.iter().any(|o| o == *f)) {
                tag.push('.');
                tag.push_str(&f.trim_end_matches(".rs").replace('/', "-"));
            }
            out_root.join(tag)
        };
        let mut base = vec!["mutants".to_string(), "--package".into(), "boot-core".into()];
        let files: Vec<&&str> = g
            .files
            .iter()
            .filter(|f| only_files.is_empty() || only_files.iter().any(|o| o == *f))
            .collect();
        if files.is_empty() {
            // A `--group` given beside `--file`s of other groups: without a --file cargo-mutants would
            // mutate the whole package.
            continue;
        }
        for f in files {
            base.extend(["--file".to_string(), format!("{SRC}/{f}")]);
        }
        if let Some(d) = &diff {
            base.extend(["--in-diff".to_string(), d.display().to_string()]);
        }
        let listed = count_mutants(&root, &base)?;
        if listed == 0 {
            eprintln!("xtask: mutants: {}: no mutants", g.name);
            continue;
        }
        check_tests_pass_unmutated(&root, g)?;
        let mut first = base.clone();
        if diff.is_some() && listed > IN_DIFF_CAP {
            let k = listed.div_ceil(IN_DIFF_CAP);
            eprintln!(
                "xtask: mutants: {}: {listed} mutants on the changed lines; testing 1 in {k} (--shard 1/{k}) to stay inside the time budget",
                g.name
            );
            first.extend(["--shard".to_string(), format!("1/{k}")]);
        } else if let Some(k) = sample.filter(|k| *k > 1) {
            eprintln!(
                "xtask: mutants: {}: {listed} mutants; a sample: testing 1 in {k} (--shard 1/{k})",
                g.name
            );
            first.extend(["--shard".to_string(), format!("1/{k}")]);
        }
        let group_started = Instant::now();
        // Pass 1, boot-core's own tests: most mutants fail one of them within a second, and a mutant
        // judged by the whole group costs a rebuild of every program and test binary (about a minute).
        eprintln!(
            "xtask: mutants: {} ({listed} mutants), pass 1: boot-core's tests",
            g.name
        );
        let mut results = cargo_mutants(&root, &first, &["boot-core"], &jobs, &extra, &out.join("pass1"))?;
        // Pass 2, the whole group's tests, for the mutants boot-core's tests missed.
        let missed: Vec<String> = results
            .iter()
            .filter(|(o, _)| *o == Outcome::Missed)
            .map(|(_, l)| l.clone())
            .collect();
        if !missed.is_empty() && g.tests.len() > 1 {
            eprintln!(
                "xtask: mutants: {}, pass 2: the {} mutant(s) boot-core's tests missed, against the tests of {}",
                g.name,
                missed.len(),
                g.tests.join(", ")
            );
            let mut second = base.clone();
            for m in &missed {
                second.extend(["--re".to_string(), format!("^{}$", regex_escape(m))]);
            }
            let mut again = cargo_mutants(&root, &second, g.tests, &jobs, &extra, &out.join("pass2"))?;
            // cargo-mutants 27.1 applies no --re to its field-deletion mutants: those pass 2 tests beyond
            // the selection were judged in pass 1 already.
            let tested = again.len();
            again.retain(|(_, l)| missed.contains(l));
            if again.len() != missed.len() {
                bail!(
                    "pass 2 of {} found {} of the {} mutants pass 1 missed: the mutants' names did not select them",
                    g.name,
                    again.len(),
                    missed.len()
                );
            }
            if tested > again.len() {
                eprintln!(
                    "xtask: mutants: {}, pass 2: {} field-deletion mutant(s) outside the selection ignored (judged in pass 1)",
                    g.name,
                    tested - again.len()
                );
            }
            results.retain(|(o, _)| *o != Outcome::Missed);
            results.extend(again);
        }
        for (file, t) in per_file(&results) {
            total.add(&t);
            rows.push((file, t));
        }
        survivors.extend(
            results
                .iter()
                .filter(|(o, _)| *o == Outcome::Missed)
                .map(|(_, l)| l.clone()),
        );
        eprintln!(
            "xtask: mutants: {} took {} s",
            g.name,
            group_started.elapsed().as_secs()
        );
    }
    let secs = started.elapsed().as_secs();
    if rows.is_empty() {
        println!("mutants: none in the selected code (took {secs} s)");
        return Ok(());
    }
    print_table(&rows, &total);
    if let Some(k) = sample.filter(|k| *k > 1) {
        println!("mutants: a sample of 1 mutant in {k} (--sample {k}), not the whole of each file");
    }
    println!(
        "mutants: {} tested, {} caught, {} missed, {} timed out, {} unviable, in {secs} s",
        total.tested(),
        total.caught,
        total.missed,
        total.timeout,
        total.unviable
    );
    if !survivors.is_empty() {
        println!("survivors (a test should fail on each; an equivalent one goes in .cargo/mutants.toml with the reason):");
        for s in &survivors {
            println!("  {s}");
        }
        bail!("{} mutant(s) survived", survivors.len());
    }
    Ok(())
}

/// The in-diff pass of `cargo xtask test`: mutants on boot-core lines the last commit changed.
pub fn in_diff_pass() -> Result<()> {
    let root = workspace_root();
    let parent = Command::new("git")
        .args(["rev-parse", "--verify", "-q", "HEAD~1"])
        .current_dir(&root)
        .output()
        .context("cannot start git")?;
    if !parent.status.success() {
        eprintln!("xtask: mutants: not run: HEAD has no parent commit in this clone, so there is no change to mutate");
        return Ok(());
    }
    let started = Instant::now();
    let result = run(&["--in-diff".to_string(), "HEAD~1".to_string()]);
    eprintln!(
        "xtask: in-diff mutants pass took {} s",
        started.elapsed().as_secs()
    );
    result
}

/// One cargo-mutants run of the mutants `base` selects, judged by the tests of `tests`; its outcomes.
fn cargo_mutants(
    root: &Path,
    base: &[String],
    tests: &[&str],
    jobs: &str,
    extra: &[String],
    out: &Path,
) -> Result<Vec<(Outcome, String)>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut cmd = base.to_vec();
    cmd.extend(["--test-package".to_string(), tests.join(",")]);
    cmd.extend(["--jobs".to_string(), jobs.to_string()]);
    cmd.extend([
        "--minimum-test-timeout".to_string(),
        MIN_TEST_TIMEOUT_SECS.to_string(),
    ]);
    cmd.extend(["--output".to_string(), out.display().to_string()]);
    cmd.extend(extra.iter().cloned());
    let st = Command::new("cargo")
        .args(&cmd)
        .current_dir(root)
        .status()
        .context("cannot start cargo mutants")?;
    // 0: all caught; 2: some missed; 3: some timed out. Anything else is not a result.
    if !matches!(st.code(), Some(0 | 2 | 3)) {
        bail!(
            "cargo {} failed ({st}); its log is in {}",
            cmd.join(" "),
            out.join("mutants.out").display()
        );
    }
    read_outcomes(&out.join("mutants.out"))
}

/// `s` as a regular expression matching exactly `s` (cargo-mutants' `--re` takes regexes).
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Runs the group's tests once on the unmutated tree, as the mutants will run them.
///
/// cargo-mutants' own baseline runs only the mutated package's tests: a test of another package that fails
/// with no mutation at all (a program it runs was not built, a missing tool) would fail on every mutant
/// too, and every mutant would count as caught.
fn check_tests_pass_unmutated(root: &Path, g: &Group) -> Result<()> {
    let mut args: Vec<String> = [
        "nextest",
        "run",
        "--cargo-profile",
        "mutants",
        "--profile",
        "mutants",
    ]
    .map(String::from)
    .to_vec();
    for p in g.tests {
        args.extend(["--package".to_string(), p.to_string()]);
    }
    eprintln!(
        "xtask: mutants: {}: the tests of {} on the unmutated tree",
        g.name,
        g.tests.join(", ")
    );
    let st = Command::new("cargo")
        .args(&args)
        .current_dir(root)
        .status()
        .context("cannot start cargo nextest")?;
    if !st.success() {
        bail!(
            "cargo {} fails without any mutation ({st}): every mutant would count as caught; fix that first",
            args.join(" ")
        );
    }
    Ok(())
}

/// Writes `git diff REV -- crates/boot-core` to a file; `None` when it is empty.
fn write_diff(root: &Path, rev: &str, out_root: &Path) -> Result<Option<PathBuf>> {
    let out = Command::new("git")
        .args(["diff", rev, "--", "crates/boot-core"])
        .current_dir(root)
        .output()
        .context("cannot start git")?;
    if !out.status.success() {
        bail!("git diff {rev}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    if out.stdout.is_empty() {
        return Ok(None);
    }
    let path = out_root.join("in-diff.patch");
    std::fs::write(&path, &out.stdout).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Some(path))
}

fn count_mutants(root: &Path, base: &[String]) -> Result<usize> {
    let out = Command::new("cargo")
        .args(base)
        .arg("--list")
        .current_dir(root)
        .output()
        .context("cannot start cargo mutants --list")?;
    if !out.status.success() {
        bail!(
            "cargo {} --list: {}",
            base.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Caught,
    Missed,
    Timeout,
    Unviable,
}

/// cargo-mutants' per-outcome lists (`caught.txt`, …), one `file:line:col: description` a line.
fn read_outcomes(dir: &Path) -> Result<Vec<(Outcome, String)>> {
    let mut all = Vec::new();
    for (name, o) in [
        ("caught.txt", Outcome::Caught),
        ("missed.txt", Outcome::Missed),
        ("timeout.txt", Outcome::Timeout),
        ("unviable.txt", Outcome::Unviable),
    ] {
        let p = dir.join(name);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", p.display())),
        };
        all.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| (o, l.to_string())),
        );
    }
    Ok(all)
}

#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    caught: usize,
    missed: usize,
    timeout: usize,
    unviable: usize,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.caught += o.caught;
        self.missed += o.missed;
        self.timeout += o.timeout;
        self.unviable += o.unviable;
    }

    /// Viable mutants: those that built and ran.
    fn tested(&self) -> usize {
        self.caught + self.missed + self.timeout
    }

    /// Share of viable mutants the tests caught (a hang counts: the tests did not pass).
    fn caught_percent(&self) -> f64 {
        match self.tested() {
            0 => 100.0,
            n => 100.0 * (self.caught + self.timeout) as f64 / n as f64,
        }
    }
}

fn per_file(results: &[(Outcome, String)]) -> Vec<(String, Tally)> {
    let mut files: Vec<(String, Tally)> = Vec::new();
    for (o, line) in results {
        let file = line.split(':').next().unwrap_or(line).to_string();
        let idx = match files.iter().position(|(f, _)| *f == file) {
            Some(i) => i,
            None => {
                files.push((file, Tally::default()));
                files.len() - 1
            }
        };
        let t = &mut files[idx].1;
        match o {
            Outcome::Caught => t.caught += 1,
            Outcome::Missed => t.missed += 1,
            Outcome::Timeout => t.timeout += 1,
            Outcome::Unviable => t.unviable += 1,
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

fn print_table(rows: &[(String, Tally)], total: &Tally) {
    println!(
        "{:<44} {:>7} {:>7} {:>7} {:>8} {:>9}",
        "file", "caught", "missed", "timeout", "unviable", "caught %"
    );
    for (file, t) in rows.iter().chain([&("total".to_string(), *total)]) {
        let file = file.strip_prefix("crates/boot-core/src/").unwrap_or(file);
        println!(
            "{:<44} {:>7} {:>7} {:>7} {:>8} {:>8.1}%",
            file,
            t.caught,
            t.missed,
            t.timeout,
            t.unviable,
            t.caught_percent()
        );
    }
}

/// A boot-core file left out of every group would never be mutated; one in two would be run twice.
/// The files are cargo-mutants' own list, so test-only modules do not count.
fn check_groups_cover(root: &Path) -> Result<()> {
    let out = Command::new("cargo")
        .args(["mutants", "--list-files", "--package", "boot-core"])
        .current_dir(root)
        .output()
        .context("cannot start cargo mutants --list-files")?;
    if !out.status.success() {
        bail!(
            "cargo mutants --list-files: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(f) = line.trim().strip_prefix(&format!("{SRC}/")) else {
            continue;
        };
        let n = GROUPS.iter().filter(|g| g.files.contains(&f)).count();
        if f != "lib.rs" && n != 1 {
            bail!("{SRC}/{f} is in {n} mutants groups (each file belongs to exactly one: edit GROUPS in xtask/src/mutants.rs)");
        }
    }
    Ok(())
}

fn ensure_cargo_mutants() -> Result<()> {
    let have = Command::new("cargo")
        .args(["mutants", "--version"])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(CARGO_MUTANTS_VERSION))
        .unwrap_or(false);
    if have {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-mutants {CARGO_MUTANTS_VERSION}");
    let st = Command::new("cargo")
        .args([
            "install",
            "--locked",
            "cargo-mutants",
            "--version",
            CARGO_MUTANTS_VERSION,
        ])
        .status()
        .context("cannot start cargo install")?;
    if !st.success() {
        bail!("cargo install cargo-mutants {CARGO_MUTANTS_VERSION} failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `check_groups_cover` asks cargo-mutants at run time, checked on every test run: a new module
    /// left out of GROUPS would otherwise stop the in-diff pass of the first change that touches it.
    #[test]
    fn every_boot_core_module_is_in_exactly_one_group() {
        fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                let r = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path(), &r, out);
                } else if name.ends_with(".rs") {
                    out.push(r);
                }
            }
        }
        let mut files = Vec::new();
        walk(&workspace_root().join(SRC), "", &mut files);
        // lib.rs only declares modules; tests.rs files are `#[cfg(test)]` modules, never mutated.
        files.retain(|f| f != "lib.rs" && !f.ends_with("tests.rs"));
        assert!(files.len() > 30, "{files:?}");
        for f in &files {
            let n = GROUPS.iter().filter(|g| g.files.contains(&f.as_str())).count();
            assert_eq!(n, 1, "{SRC}/{f} is in {n} groups of GROUPS");
        }
        for g in GROUPS {
            for f in g.files {
                assert!(
                    files.iter().any(|x| x == f),
                    "GROUPS names {f}, which is not in {SRC}"
                );
            }
        }
    }
}
