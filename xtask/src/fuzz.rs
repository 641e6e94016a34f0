//! `cargo xtask fuzz [--seconds N] [TARGET…]`: runs every fuzz target of `fuzz/` (or the named ones) for
//! N seconds each (default 60) with cargo-fuzz on the nightly toolchain, installing cargo-fuzz from
//! crates.io when it is missing. A crash fails the task; libFuzzer leaves the input under
//! `fuzz/artifacts/<target>/`.
//!
//! Long run: `cargo xtask fuzz --seconds 3600` (an hour per target); the corpora in `fuzz/corpus/` grow
//! between runs.

use std::io::Read;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::setup::workspace_root;

/// The targets in `fuzz/Cargo.toml`.
pub const TARGETS: [&str; 5] = [
    "gateway_state",
    "accounts",
    "account_db",
    "dotenv",
    "container_env",
];

pub fn run(args: &[String]) -> Result<()> {
    let mut seconds: u64 = 60;
    let mut targets: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().context("--seconds needs a number")?;
                seconds = v
                    .parse()
                    .with_context(|| format!("--seconds {v}: not a number"))?;
            }
            t if TARGETS.contains(&t) => targets.push(t.to_string()),
            other => bail!(
                "unknown fuzz argument '{other}' (targets: {})",
                TARGETS.join(", ")
            ),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| t.to_string()).collect();
    }
    ensure_cargo_fuzz()?;
    let dir = workspace_root().join("fuzz");
    for t in &targets {
        eprintln!("xtask: fuzzing {t} for {seconds} s");
        let mut st = Command::new("cargo")
            .args([
                "+nightly",
                "fuzz",
                "run",
                t,
                "--",
                &format!("-max_total_time={seconds}"),
            ])
            .args([
                "-max_len=65536",
                "-timeout=10",
                "-rss_limit_mb=2048",
                "-print_final_stats=1",
            ])
            .current_dir(&dir)
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start cargo +nightly fuzz")?;
        // libFuzzer reports every new input on stderr (thousands of lines a minute): keep the whole log in
        // a file, show the final statistics, and the end of the log when the target failed.
        let log_path = dir.join(format!("fuzz-{t}.log"));
        let mut text = String::new();
        if let Some(mut err) = st.stderr.take() {
            let _ = err.read_to_string(&mut text);
        }
        let st = st.wait().context("cannot wait for cargo +nightly fuzz")?;
        let _ = std::fs::write(&log_path, &text);
        for line in text
            .lines()
            .filter(|l| l.starts_with("stat::") || l.starts_with("Done "))
        {
            eprintln!("  {line}");
        }
        if !st.success() {
            let lines: Vec<&str> = text.lines().collect();
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("  {line}");
            }
            bail!(
                "fuzz target {t} failed (input saved under fuzz/artifacts/{t}/, log {})",
                log_path.display()
            );
        }
    }
    Ok(())
}

fn ensure_cargo_fuzz() -> Result<()> {
    let have = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if have {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz");
    let st = Command::new("cargo")
        .args(["install", "--locked", "cargo-fuzz"])
        .status()
        .context("cannot start cargo install")?;
    if !st.success() {
        bail!("cargo install cargo-fuzz failed");
    }
    Ok(())
}
