//! `cargo xtask <task>`: the project's chores as a plain Rust binary (no extra tooling to install).
//!
//! Tasks:
//! - `test`: everything CI runs — installs missing Debian packages (as root), checks formatting and lints,
//!   runs the unit, temp-root, real-s6 and adversarial tests, a short fuzz run, then the container suite.
//! - `docker-test`: build the test image and run the container suite.
//! - `run`: build the test image and boot it.
//! - `bench`: the side-by-side benchmarks.
//! - `cross`: the MSRV build for x86_64 and aarch64 and the aarch64 tests under emulation.
//! - `mutants`: mutation testing of boot-core (cargo-mutants), each module against the crates that run it.

mod bench;
mod cross;
mod docker;
mod fuzz;
mod mutants;
mod setup;

use std::process::Command;

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: cargo xtask <task> [args]

tasks:
  test          install what the tests need (as root), check fmt + clippy, run all tests, the mutants of
                the lines the last commit changed, a 60 s run of each fuzz target, the container suite,
                then `cross` (--no-mutants, --no-fuzz, --no-docker, --no-cross: leave those out)
  docker-test   build the test image and run the container suite
  run           build the test image and boot a container from it
  bench         run the side-by-side benchmarks and print the table
  cross         build with Debian's Rust 1.85 for x86_64 and aarch64, run the aarch64 tests under qemu
  app-lock      pin a hermes-agent release and its dependencies for the image (docker/app/requirements.txt)
  mutants       mutation testing of boot-core, printing the survivors [--group NAME] [--in-diff REV]
  fuzz          run the fuzz targets (nightly, cargo-fuzz) [--seconds N per target, default 60] [TARGET…]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(task) = args.first() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let rest = &args[1..];
    let result = match task.as_str() {
        "test" => test(rest),
        "docker-test" => docker::docker_test(rest),
        "run" => docker::run_image(rest),
        "bench" => bench::run(rest),
        "cross" => cross::run(rest),
        "fuzz" => fuzz::run(rest),
        "mutants" => mutants::run(rest),
        "app-lock" => docker::app_lock(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("xtask: unknown task '{other}'\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("xtask {task}: error: {e:#}");
        std::process::exit(1);
    }
}

/// The project's test command (the README's, and CI's through `.ci/run`).
fn test(args: &[String]) -> Result<()> {
    for a in args {
        if !["--no-docker", "--no-fuzz", "--no-cross", "--no-mutants"].contains(&a.as_str()) {
            bail!("unknown test option '{a}' (--no-docker, --no-fuzz, --no-cross, --no-mutants)");
        }
    }
    let with_docker = !args.iter().any(|a| a == "--no-docker");
    let with_cross = !args.iter().any(|a| a == "--no-cross");
    let with_fuzz = !args.iter().any(|a| a == "--no-fuzz");
    let with_mutants = !args.iter().any(|a| a == "--no-mutants");
    setup::ensure_packages(&setup::TEST_PACKAGES)?;
    cargo(&["fmt", "--all", "--", "--check"]).context("formatting differs: run `cargo fmt --all`")?;
    cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    if setup::has_nextest() {
        cargo(&[
            "nextest",
            "run",
            "--workspace",
            "--exclude",
            "container-suite",
            "--no-fail-fast",
        ])?;
    } else {
        cargo(&[
            "test",
            "--workspace",
            "--exclude",
            "container-suite",
            "--no-fail-fast",
        ])?;
    }
    if with_mutants {
        mutants::in_diff_pass()?;
    }
    if with_fuzz {
        // The short form of the fuzz campaign; `cargo xtask fuzz --seconds 3600` is the long one.
        fuzz::run(&["--seconds".to_string(), "60".to_string()])?;
    }
    if with_docker {
        docker::docker_test(&[])?;
    }
    if with_cross {
        cross::run(&[])?;
    }
    Ok(())
}

/// Runs `cargo <args>` in the workspace root, failing on a non-zero exit.
pub fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    let st = Command::new(cargo)
        .args(args)
        .current_dir(setup::workspace_root())
        .status()
        .context("cannot start cargo")?;
    if !st.success() {
        bail!("cargo {} failed ({st})", args.join(" "));
    }
    Ok(())
}
