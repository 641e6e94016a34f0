//! What the test image is built from besides the repository: the real s6-overlay release tarballs and the
//! application's wheels. Both are placed in the build context, because the classic builder's `RUN` cannot
//! reach GitHub and `pip` inside `docker build` cannot verify TLS to the package index on these machines.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::run_checked;

/// The variable naming the directory with the s6-overlay release files (`SHA256SUMS` and the tarballs).
pub const S6_OVERLAY_DIR_ENV: &str = "HERMES_S6_OVERLAY_DIR";
/// Used when the variable is unset: the default version beside the checkout (`../shared/s6-overlay/`).
const DEFAULT_S6_OVERLAY_VERSION: &str = "3.2.3.2";
/// Build-context paths (the first is listed in `.dockerignore`'s exceptions, the second in `.gitignore`).
pub const S6_CONTEXT_DIR: &str = "target/docker-s6-overlay";
pub const WHEELS_DIR: &str = "docker/app/wheels";
const LOCK_FILE: &str = "docker/app/requirements.txt";
/// Records the hash of the lock file the wheel directory was filled for.
const WHEELS_STAMP: &str = ".requirements.sha256";

/// The interpreter the image's venv uses (Debian trixie's), for which wheels are chosen.
const TARGET_PYTHON: &str = "3.13";
const PLATFORMS: [&str; 9] = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux_2_5_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
    "any",
];

/// The s6-overlay release directory: `HERMES_S6_OVERLAY_DIR`, else `../shared/s6-overlay/3.2.3.2`.
pub fn s6_overlay_source(root: &Path) -> Result<PathBuf> {
    let dir = match std::env::var_os(S6_OVERLAY_DIR_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => root
            .join("..")
            .join("shared")
            .join("s6-overlay")
            .join(DEFAULT_S6_OVERLAY_VERSION),
    };
    if !dir.join("SHA256SUMS").is_file() {
        bail!(
            "{}: no s6-overlay release here (SHA256SUMS missing); set {S6_OVERLAY_DIR_ENV} to a directory \
             with s6-overlay-noarch.tar.xz, s6-overlay-x86_64.tar.xz and SHA256SUMS",
            dir.display()
        );
    }
    Ok(dir)
}

/// Copies the release files into the build context (the Dockerfile checks them against `SHA256SUMS`).
pub fn stage_s6_overlay(root: &Path, source: &Path) -> Result<()> {
    let dest = root.join(S6_CONTEXT_DIR);
    if dest.exists() {
        fs::remove_dir_all(&dest).with_context(|| format!("cannot remove {}", dest.display()))?;
    }
    fs::create_dir_all(&dest).with_context(|| format!("cannot create {}", dest.display()))?;
    for entry in fs::read_dir(source).with_context(|| format!("cannot read {}", source.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let n = name.to_string_lossy();
        if n == "SHA256SUMS" || n.ends_with(".tar.xz") {
            let from = entry.path();
            fs::copy(&from, dest.join(&name)).with_context(|| format!("cannot copy {}", from.display()))?;
        }
    }
    Ok(())
}

/// The s6-overlay version a release directory holds, from its noarch tarball's `package/admin/` entry.
pub fn s6_overlay_version(source: &Path) -> Result<String> {
    let tarball = source.join("s6-overlay-noarch.tar.xz");
    let out = Command::new("tar")
        .arg("-tJf")
        .arg(&tarball)
        .output()
        .with_context(|| format!("cannot run tar on {}", tarball.display()))?;
    if !out.status.success() {
        bail!("{}: tar -t failed", tarball.display());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let rest = l
                .trim_start_matches("./")
                .strip_prefix("package/admin/s6-overlay-")?;
            let v = rest.split('/').next()?;
            v.starts_with(|c: char| c.is_ascii_digit()).then(|| v.to_string())
        })
        .with_context(|| format!("{}: no package/admin/s6-overlay-<version>/", tarball.display()))
}

/// Fills `docker/app/wheels/` with every distribution the lock file pins, for CPython 3.13 on x86_64, by
/// `pip download` on this machine. Skipped when the directory was filled for the same lock file.
pub fn ensure_wheels(root: &Path) -> Result<()> {
    let lock = root.join(LOCK_FILE);
    let text = fs::read(&lock).with_context(|| format!("cannot read {}", lock.display()))?;
    let hash = sha256_hex(&lock)?;
    let dir = root.join(WHEELS_DIR);
    let stamp = dir.join(WHEELS_STAMP);
    if fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == hash) {
        return Ok(());
    }
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let has_pip = Command::new(python())
        .args(["-m", "pip", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_pip {
        crate::setup::ensure_packages(&["python3-pip"])?;
    }
    let pins = String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| l.contains("==") && !l.starts_with('#'))
        .count();
    eprintln!(
        "xtask: pip download of {pins} pinned distributions into {WHEELS_DIR} (CPython {TARGET_PYTHON})"
    );
    let mut cmd = Command::new(python());
    cmd.args(["-m", "pip", "download", "--quiet", "--disable-pip-version-check"])
        .args(["--no-deps", "--only-binary=:all:", "--implementation", "cp"])
        .args(["--python-version", TARGET_PYTHON])
        .args(["--abi", "cp313", "--abi", "abi3", "--abi", "none"]);
    for p in PLATFORMS {
        cmd.args(["--platform", p]);
    }
    cmd.arg("--dest").arg(&dir).arg("--requirement").arg(&lock);
    run_checked(&mut cmd, "pip download of the application's wheels")?;
    fs::write(&stamp, format!("{hash}\n")).with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(())
}

fn python() -> String {
    std::env::var("HERMES_BOOT_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn sha256_hex(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .with_context(|| format!("cannot run sha256sum on {}", path.display()))?;
    if !out.status.success() {
        bail!("sha256sum {} failed", path.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

const APP_LOCK_USAGE: &str = "usage: cargo xtask app-lock [VERSION] [--extras LIST]

Pins hermes-agent VERSION (default: the version docker/app/requirements.txt pins now) and every
dependency, with hashes, for CPython 3.13, into docker/app/requirements.txt. The image build refuses
a HERMES_AGENT_VERSION the lock file does not pin. Uses uv from PyPI in target/uv-venv.

  --extras LIST   the application's extras (default all,messaging,anthropic)";

const DEFAULT_EXTRAS: &str = "all,messaging,anthropic";

/// `cargo xtask app-lock`: regenerates the lock file with uv (resolving for every platform, wheels only).
pub fn app_lock(args: &[String]) -> Result<()> {
    let root = crate::setup::workspace_root();
    let lock = root.join(LOCK_FILE);
    let mut version = None;
    let mut extras = DEFAULT_EXTRAS.to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--extras" => extras = it.next().context("--extras needs a list")?.clone(),
            "-h" | "--help" => {
                println!("{APP_LOCK_USAGE}");
                return Ok(());
            }
            v if !v.starts_with('-') && version.is_none() => version = Some(v.to_string()),
            other => bail!("unexpected argument '{other}'\n\n{APP_LOCK_USAGE}"),
        }
    }
    let version = match version {
        Some(v) => v,
        None => pinned_version(&lock)?,
    };
    let venv = root.join("target/uv-venv");
    let uv = venv.join("bin/uv");
    if !uv.exists() {
        run_checked(
            Command::new(python()).args(["-m", "venv"]).arg(&venv),
            "python3 -m venv target/uv-venv",
        )?;
        run_checked(
            Command::new(venv.join("bin/pip")).args(["install", "--quiet", "uv"]),
            "pip install uv",
        )?;
    }
    let input = root.join("target/app-lock.in");
    fs::write(&input, format!("hermes-agent[{extras}]=={version}\n"))
        .with_context(|| format!("cannot write {}", input.display()))?;
    let out = Command::new(&uv)
        .args([
            "pip",
            "compile",
            "--quiet",
            "--universal",
            "--python-version",
            TARGET_PYTHON,
        ])
        .args([
            "--only-binary",
            ":all:",
            "--generate-hashes",
            "--no-header",
            "--no-annotate",
        ])
        .arg(&input)
        .output()
        .context("cannot run uv pip compile")?;
    if !out.status.success() {
        bail!(
            "uv pip compile failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let body = String::from_utf8(out.stdout).context("uv printed non-UTF-8")?;
    let text = format!(
        "# hermes-agent[{extras}]=={version} and every dependency, pinned with hashes, for CPython {TARGET_PYTHON}.\n\
         # Generated by `cargo xtask app-lock`; do not edit by hand.\n{body}"
    );
    fs::write(&lock, text).with_context(|| format!("cannot write {}", lock.display()))?;
    eprintln!(
        "xtask: {} now pins hermes-agent {version} ({} distributions); build with --build-arg HERMES_AGENT_VERSION={version}",
        LOCK_FILE,
        body.lines().filter(|l| l.contains("==")).count()
    );
    Ok(())
}

/// The hermes-agent version a lock file pins.
fn pinned_version(lock: &Path) -> Result<String> {
    let text = fs::read_to_string(lock).with_context(|| format!("cannot read {}", lock.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("hermes-agent=="))
        .and_then(|rest| rest.split([' ', ';', '\\']).next())
        .map(str::to_string)
        .with_context(|| format!("{} pins no hermes-agent", lock.display()))
}
