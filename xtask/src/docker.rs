//! `cargo xtask docker-test` and `cargo xtask run`: a Docker engine, the debootstrapped base image,
//! the test image built from the project's `Dockerfile` (prebuilt release binaries, the real s6-overlay
//! from `HERMES_S6_OVERLAY_DIR`, the real hermes-agent from wheels downloaded on the host), then the
//! container suite or one booted container.

pub(crate) mod base;
mod compat;
pub(crate) mod engine;
mod inputs;

pub use inputs::app_lock;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::setup;

/// Tag of the image the suite runs against.
const TEST_IMAGE: &str = "hermes-boot:test";
/// The variable the container suite reads the image from.
const IMAGE_ENV: &str = "HERMES_TEST_IMAGE";
const PROGRAMS: [&str; 5] = [
    "stage2-setup",
    "supervise-perms",
    "reconcile-profiles",
    "main-wrapper",
    "hermes-boot-doctor",
];
/// Build-context path of the prebuilt binaries (also listed in `.dockerignore`).
const PREBUILT_DIR: &str = "target/docker-bin";
/// Containers mostly wait on boots and polls, so a few more threads than the 2 cores pay off; more
/// than this made boots slow enough to blur the suite's own timeouts.
const DEFAULT_TEST_THREADS: usize = 4;

const DOCKER_TEST_USAGE: &str = "usage: cargo xtask docker-test [options] [-- test-filter...]

  --no-build          reuse the existing test image (skip cargo build and docker build)
  --rebuild-base      rebuild the debootstrapped base image even when its tag exists
  --image TAG         test image tag (default hermes-boot:test)
  --test-threads N    parallel container tests (default 4)
  --no-compat         leave out the s6-overlay 3.2.3.0 compatibility boot (it runs only
                      with the whole suite; release files from HERMES_S6_OVERLAY_COMPAT_DIR,
                      default ../shared/s6-overlay/3.2.3.0)";

const RUN_USAGE: &str = "usage: cargo xtask run [options] [--] [command...]

Builds the test image, boots a container (default command: gateway run), shows the boot
output and the s6 service states, then stops and removes it.

  --no-build          reuse the existing test image
  --keep              leave the container running and print how to reach it
  -e, --env K=V       container environment (repeatable)
  --image TAG         image tag (default hermes-boot:test)";

struct Timings(Vec<(&'static str, Duration)>);

impl Timings {
    fn time<T>(&mut self, phase: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let started = Instant::now();
        let out = f();
        self.0.push((phase, started.elapsed()));
        out
    }

    fn print(&self) {
        for (phase, took) in &self.0 {
            eprintln!("  {phase:<28} {:>7.1}s", took.as_secs_f64());
        }
    }
}

pub fn docker_test(args: &[String]) -> Result<()> {
    let mut no_build = false;
    let mut rebuild_base = false;
    let mut compat = true;
    let mut image = TEST_IMAGE.to_string();
    let mut threads = DEFAULT_TEST_THREADS;
    let mut filters: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--no-build" => no_build = true,
            "--rebuild-base" => rebuild_base = true,
            "--no-compat" => compat = false,
            "--image" => image = it.next().context("--image needs a tag")?.clone(),
            "--test-threads" => {
                let n = it.next().context("--test-threads needs a number")?;
                threads = n
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("bad --test-threads {n}"))?;
            }
            "-h" | "--help" => {
                println!("{DOCKER_TEST_USAGE}");
                return Ok(());
            }
            "--" => filters.extend(it.by_ref().cloned()),
            other if other.starts_with('-') => bail!("unknown option {other}\n\n{DOCKER_TEST_USAGE}"),
            other => filters.push(other.to_string()),
        }
    }

    let total = Instant::now();
    let mut timings = Timings(Vec::new());
    prepare_image(&mut timings, &image, no_build, rebuild_base)?;
    let outcome = timings.time("container suite", || run_suite(&image, threads, &filters))?;
    let compat_result = if compat && filters.is_empty() && !no_build {
        Some(timings.time("s6-overlay 3.2.3.0 boot", compat::check))
    } else {
        None
    };

    eprintln!("\n== docker-test summary ==");
    timings.print();
    eprintln!("  {:<28} {:>7.1}s", "total", total.elapsed().as_secs_f64());
    eprintln!(
        "  image {image}; tests: {} passed, {} failed, {} ignored ({} test threads)",
        outcome.passed, outcome.failed, outcome.ignored, threads
    );
    for name in &outcome.failed_names {
        eprintln!("  FAILED {name}");
    }
    if let Some(Err(e)) = &compat_result {
        eprintln!("  FAILED s6-overlay 3.2.3.0 compatibility: {e:#}");
    }
    // The suite's closing line, alone on its line, in the form CI readers look for.
    println!(
        "container-suite: {} passed, {} failed",
        outcome.passed, outcome.failed
    );
    if !outcome.success {
        bail!("container suite failed");
    }
    if outcome.passed == 0 {
        bail!("container suite ran no test (filter matched nothing?)");
    }
    if let Some(r) = compat_result {
        r.context("s6-overlay 3.2.3.0 compatibility boot failed")?;
    }
    Ok(())
}

pub fn run_image(args: &[String]) -> Result<()> {
    let mut no_build = false;
    let mut keep = false;
    let mut image = TEST_IMAGE.to_string();
    let mut envs: Vec<String> = Vec::new();
    let mut command: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--no-build" => no_build = true,
            "--keep" => keep = true,
            "--image" => image = it.next().context("--image needs a tag")?.clone(),
            "-e" | "--env" => envs.push(it.next().context("--env needs K=V")?.clone()),
            "-h" | "--help" => {
                println!("{RUN_USAGE}");
                return Ok(());
            }
            "--" => command.extend(it.by_ref().cloned()),
            other if command.is_empty() && other.starts_with('-') => {
                bail!("unknown option {other}\n\n{RUN_USAGE}")
            }
            other => {
                command.push(other.to_string());
                command.extend(it.by_ref().cloned());
            }
        }
    }
    if command.is_empty() {
        command = vec!["gateway".into(), "run".into()];
    }

    let mut timings = Timings(Vec::new());
    prepare_image(&mut timings, &image, no_build, false)?;

    let mut run = Command::new("docker");
    run.args(["run", "-d"]);
    for e in &envs {
        run.args(["-e", e]);
    }
    run.arg(&image).args(&command);
    let id = capture(&mut run, "docker run")?.trim().to_string();
    eprintln!("xtask: container {} started: {}", short(&id), command.join(" "));

    let booted = Instant::now();
    let ready = wait_boot_log(&id, Duration::from_secs(30));
    // Give the services a moment to start after cont-init before showing their state.
    sleep(Duration::from_secs(1));
    eprintln!("\n== docker logs ==");
    let _ = Command::new("docker").args(["logs", &id]).status();
    eprintln!("\n== s6 services ==");
    let _ = Command::new("docker")
        .args([
            "exec",
            &id,
            "sh",
            "-c",
            "for s in /run/service/*; do printf '%-28s ' \"${s##*/}\"; /command/s6-svstat \"$s\"; done",
        ])
        .status();
    match ready {
        true => eprintln!(
            "\nboot log reached profile=default after {:.1}s",
            booted.elapsed().as_secs_f64()
        ),
        false => eprintln!("\nboot log has no profile=default line after 30s"),
    }
    if keep {
        eprintln!("container kept running:\n  docker exec -it {id} sh\n  docker rm -f -v {id}");
        return Ok(());
    }
    let _ = Command::new("docker")
        .args(["stop", &id])
        .stdout(Stdio::null())
        .status();
    let code = capture(
        Command::new("docker").args(["inspect", "-f", "{{.State.ExitCode}}", &id]),
        "inspect",
    )
    .unwrap_or_default();
    let _ = Command::new("docker")
        .args(["rm", "-f", "-v", &id])
        .stdout(Stdio::null())
        .status();
    eprintln!("container stopped (exit code {}) and removed", code.trim());
    Ok(())
}

/// Engine, base image, binaries and test image, each phase timed.
fn prepare_image(timings: &mut Timings, image: &str, no_build: bool, rebuild_base: bool) -> Result<()> {
    let root = setup::workspace_root();
    timings.time("docker engine", engine::ensure_engine)?;
    if no_build {
        if !docker_ok(&["image", "inspect", image]) {
            bail!("--no-build: image {image} does not exist");
        }
        return Ok(());
    }
    let work = target_dir(&root).join("docker-work");
    timings.time("base image (debootstrap)", || {
        base::ensure_base_image(rebuild_base, &work)
    })?;
    timings.time("release binaries", || build_binaries(&root))?;
    let s6 = inputs::s6_overlay_source(&root)?;
    timings.time("application wheels", || inputs::ensure_wheels(&root))?;
    timings.time("test image", || build_test_image(&root, image, &s6))
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn build_binaries(root: &Path) -> Result<()> {
    let mut args = vec!["build", "--release"];
    for p in PROGRAMS.iter().filter(|p| **p != "main-wrapper") {
        args.extend(["-p", p]);
    }
    crate::cargo(&args)?;
    let wrapper = build_static_main_wrapper()?;
    let release = target_dir(root).join("release");
    let dest = root.join(PREBUILT_DIR);
    fs::create_dir_all(&dest).with_context(|| format!("cannot create {}", dest.display()))?;
    for p in PROGRAMS {
        let from = if p == "main-wrapper" {
            wrapper.clone()
        } else {
            release.join(p)
        };
        fs::copy(&from, dest.join(p)).with_context(|| format!("cannot copy {}", from.display()))?;
    }
    Ok(())
}

/// `main-wrapper` as the image ships it, linked statically (the Dockerfile's build stage does the same):
/// it starts before every container command and `docker exec`, and a static program skips the dynamic
/// loader's dozen file opens and mappings. Built for the host's target triple given explicitly, so the
/// flag reaches this program and not the build scripts and proc macros. Returns the binary's path.
pub(crate) fn build_static_main_wrapper() -> Result<PathBuf> {
    let host = host_triple()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo build --release -p main-wrapper --target {host} (static)");
    run_checked(
        Command::new(cargo)
            .current_dir(setup::workspace_root())
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .args(["build", "--release", "-p", "main-wrapper", "--target", &host]),
        "cargo build of the static main-wrapper",
    )?;
    Ok(target_dir(&setup::workspace_root())
        .join(host)
        .join("release")
        .join("main-wrapper"))
}

fn host_triple() -> Result<String> {
    let out = capture(Command::new("rustc").arg("-vV"), "rustc -vV")?;
    out.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_string)
        .context("rustc -vV printed no host triple")
}

pub(crate) fn build_test_image(root: &Path, image: &str, s6_source: &Path) -> Result<()> {
    inputs::stage_s6_overlay(root, s6_source)?;
    let s6_version = inputs::s6_overlay_version(s6_source)?;
    eprintln!(
        "xtask: docker build -t {image} (prebuilt binaries, s6-overlay {s6_version} from {}, hermes-agent from {})",
        s6_source.display(),
        inputs::WHEELS_DIR
    );
    build_checked(test_image_build(root, image, None, true))
}

/// The test image's `docker build` (of the Dockerfile's stage `target`, or the whole image), with the
/// build arguments that select the offline inputs; `fixtures`: with the container suite's doubles.
fn test_image_build(root: &Path, image: &str, target: Option<&str>, fixtures: bool) -> Command {
    let mut cmd = Command::new("docker");
    // The classic builder is what the Dockerfile is written for; host networking lets RUN reach
    // the apt mirror even when the daemon runs without a bridge.
    cmd.env("DOCKER_BUILDKIT", "0")
        .current_dir(root)
        .args(["build", "--network", "host", "-t", image]);
    for (k, v) in [
        ("BASE_IMAGE", base::BASE_TAG),
        ("RUST_BUILDER_IMAGE", base::BASE_TAG),
        ("BINARIES", "prebuilt"),
        ("PREBUILT_DIR", PREBUILT_DIR),
        ("S6_OVERLAY_SOURCE", "local"),
        ("S6_OVERLAY_LOCAL_DIR", inputs::S6_CONTEXT_DIR),
        ("HERMES_APP", "wheels"),
        ("HERMES_TEST_FIXTURES", if fixtures { "1" } else { "0" }),
    ] {
        cmd.arg("--build-arg").arg(format!("{k}={v}"));
    }
    if let Some(t) = target {
        cmd.args(["--target", t]);
    }
    cmd.arg(".");
    cmd
}

/// The image as users get it, from the test image's offline inputs but without the container suite's
/// doubles (whose migration-helper double alone adds a Python start to every boot), for the benchmarks.
/// Prepares the engine, the base image, the binaries and the wheels first.
pub(crate) fn build_bench_image(image: &str) -> Result<()> {
    prepare_image(&mut Timings(Vec::new()), TEST_IMAGE, false, false)?;
    eprintln!("xtask: docker build -t {image} (as the test image, without its test doubles)");
    build_checked(test_image_build(&setup::workspace_root(), image, None, false))
}

/// An image of the base with the same s6-overlay release as the test image and nothing of the project:
/// the Dockerfile's `s6-overlay` stage laid over the base, `/init` as the entrypoint. Call after
/// [`build_bench_image`], which stages the release files.
pub(crate) fn build_overlay_only_image(image: &str) -> Result<()> {
    let root = setup::workspace_root();
    let stage = format!("{image}-stage");
    // The classic builder still builds the stages before the target; both are cached from the test image.
    build_checked(test_image_build(&root, &stage, Some("s6-overlay"), false))?;
    let dir = target_dir(&root).join("overlay-only-image");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dockerfile = format!(
        "FROM {stage} AS overlay\nFROM {base}\nCOPY --from=overlay /out/ /\n\
         RUN rm -f /.s6-overlay-version\nENTRYPOINT [\"/init\"]\n",
        base = base::BASE_TAG
    );
    let path = dir.join("Dockerfile");
    fs::write(&path, dockerfile).with_context(|| format!("cannot write {}", path.display()))?;
    let mut cmd = Command::new("docker");
    cmd.env("DOCKER_BUILDKIT", "0")
        .current_dir(&dir)
        .args(["build", "-t", image, "."]);
    build_checked(cmd)
}

fn build_checked(mut cmd: Command) -> Result<()> {
    let out = cmd.output().context("cannot start docker build")?;
    if !out.status.success() {
        eprintln!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        bail!("docker build failed ({})", out.status);
    }
    Ok(())
}

#[derive(Default)]
struct SuiteOutcome {
    success: bool,
    passed: usize,
    failed: usize,
    ignored: usize,
    failed_names: Vec<String>,
}

fn run_suite(image: &str, threads: usize, filters: &[String]) -> Result<SuiteOutcome> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(setup::workspace_root())
        .env(IMAGE_ENV, image)
        .args(["test", "-p", "container-suite", "--tests", "--no-fail-fast", "--"])
        .arg(format!("--test-threads={threads}"))
        .args(filters)
        .stdout(Stdio::piped());
    eprintln!("xtask: {IMAGE_ENV}={image} cargo test -p container-suite -- --test-threads={threads}");
    let mut child = cmd.spawn().context("cannot start cargo test")?;
    let stdout = child.stdout.take().context("cargo test has no stdout")?;
    let mut outcome = SuiteOutcome::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("cannot read cargo test output")?;
        println!("{line}");
        parse_test_line(&line, &mut outcome);
    }
    outcome.success = child.wait().context("cannot wait for cargo test")?.success();
    Ok(outcome)
}

fn parse_test_line(line: &str, outcome: &mut SuiteOutcome) {
    if let Some(rest) = line.strip_prefix("test result: ") {
        // "ok. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s"
        for part in rest.split(';') {
            let mut words = part.split_whitespace().skip_while(|w| w.ends_with('.'));
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<usize>() else { continue };
            match what {
                "passed" => outcome.passed += n,
                "failed" => outcome.failed += n,
                "ignored" => outcome.ignored += n,
                _ => {}
            }
        }
    } else if let Some(name) = line
        .strip_prefix("test ")
        .and_then(|l| l.strip_suffix(" ... FAILED"))
    {
        outcome.failed_names.push(name.to_string());
    }
}

fn wait_boot_log(id: &str, timeout: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        let found = docker_ok(&[
            "exec",
            id,
            "sh",
            "-c",
            "grep -q profile=default \"${HERMES_HOME:-/opt/data}/logs/container-boot.log\"",
        ]);
        if found {
            return true;
        }
        if !docker_ok(&["exec", id, "true"]) {
            return false;
        }
        sleep(Duration::from_millis(300));
    }
    false
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// `docker <args>` succeeded (output discarded).
pub(crate) fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs a command with inherited output, failing on a non-zero exit.
pub(crate) fn run_checked(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("cannot start {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn capture(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("cannot start {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("{what} printed non-UTF-8 output"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_libtest_results_and_failures() {
        let mut o = SuiteOutcome::default();
        for line in [
            "test stage2::puid_remap ... FAILED",
            "test result: FAILED. 3 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out; finished in 4.2s",
            "test result: ok. 5 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.0s",
        ] {
            parse_test_line(line, &mut o);
        }
        assert_eq!((o.passed, o.failed, o.ignored), (8, 1, 2));
        assert_eq!(o.failed_names, ["stage2::puid_remap"]);
    }
}
