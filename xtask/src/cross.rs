//! `cargo xtask cross`: the MSRV and arm64 proof. In a Debian trixie container with Debian's own Rust
//! (1.85.1, the declared `rust-version`), the workspace is built for x86_64 and aarch64, linted for
//! aarch64, and its aarch64 tests run under qemu-user through the host's binfmt_misc (`docker/cross/`).
//!
//! Inside containers TLS to the registries may not verify, so the crates are vendored on the host
//! (`cargo vendor`, once per `Cargo.lock`) and the container builds offline.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::docker::{base, engine, run_checked};
use crate::setup;

const IMAGE: &str = "hermes-boot-cross:trixie";
const BINFMT: &str = "/proc/sys/fs/binfmt_misc";
/// Debian's qemu-user-static registration line (magic, mask, interpreter, flags `F`: the interpreter is
/// opened now, so it also serves inside containers).
const BINFMT_CONF: &str = "/usr/lib/binfmt.d/qemu-aarch64.conf";

pub const USAGE: &str = "usage: cargo xtask cross

In a trixie container with Debian's Rust 1.85.1: build the workspace for x86_64 and aarch64 (the MSRV
proof), clippy for aarch64, and run the aarch64 tests under qemu-user (registered with the host's
binfmt_misc while the run lasts). Needs root and the Docker engine; installs qemu-user-static.";

pub fn run(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        if a == "-h" || a == "--help" {
            println!("{USAGE}");
            return Ok(());
        }
        bail!("unknown option {a}\n\n{USAGE}");
    }
    let root = setup::workspace_root();
    let out = root.join("target").join("cross");
    fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let started = Instant::now();
    setup::ensure_packages(&["qemu-user-static"])?;
    engine::ensure_engine()?;
    base::ensure_base_image(false, &root.join("target").join("docker-work"))?;
    run_checked(
        Command::new("docker")
            .args(["build", "-q", "-t", IMAGE])
            .arg(root.join("docker").join("cross")),
        "building the cross toolchain image",
    )?;
    vendor(&root, &out)?;
    write_cargo_config(&out)?;
    let _binfmt = Binfmt::register()?;
    eprintln!(
        "xtask cross: set-up took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let mut c = Command::new("docker");
    c.args(["run", "--rm"])
        // Mounts, PID namespaces and ptrace for the temp-root and adversarial tests, as on the host.
        .args(["--cap-add", "SYS_ADMIN", "--cap-add", "SYS_PTRACE"])
        .args([
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
        ])
        .arg("-v")
        .arg(format!("{}:/src:ro", root.display()))
        .arg("-v")
        .arg(format!("{}:/out", out.display()))
        .args([
            "-e",
            "CARGO_HOME=/out/cargo-home",
            "-e",
            "CARGO_TARGET_DIR=/out/target",
        ])
        .args(["-w", "/src", IMAGE, "sh", "/src/docker/cross/run.sh"]);
    let run = Instant::now();
    run_checked(&mut c, "the cross build and the emulated tests")?;
    check_prebuilt_architecture(&root, &out)?;
    eprintln!(
        "xtask cross: container {:.0} s, {:.0} s in all",
        run.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `cargo vendor` into `out/vendor`, skipped while `Cargo.lock` is the one it was made from.
fn vendor(root: &Path, out: &Path) -> Result<()> {
    let lock = fs::read(root.join("Cargo.lock")).context("cannot read Cargo.lock")?;
    let stamp = out.join("vendor.lock");
    if fs::read(&stamp).ok().as_deref() == Some(&lock[..]) && out.join("vendor").is_dir() {
        return Ok(());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args(["vendor", "--locked", "--quiet"])
        .arg(out.join("vendor"))
        .current_dir(root)
        .stdout(std::process::Stdio::null())
        .status()
        .context("cannot start cargo vendor")?;
    if !st.success() {
        bail!("cargo vendor failed ({st})");
    }
    fs::write(&stamp, &lock).with_context(|| format!("cannot write {}", stamp.display()))
}

fn write_cargo_config(out: &Path) -> Result<()> {
    let home = out.join("cargo-home");
    fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    let config = "\
[source.crates-io]
replace-with = \"vendored-sources\"

[source.vendored-sources]
directory = \"/out/vendor\"

[target.aarch64-unknown-linux-gnu]
linker = \"aarch64-linux-gnu-gcc\"
";
    let path = home.join("config.toml");
    fs::write(&path, config).with_context(|| format!("cannot write {}", path.display()))
}

/// The qemu-aarch64 binfmt_misc entry; removed on drop when this run added it.
struct Binfmt {
    added: Option<PathBuf>,
}

impl Binfmt {
    fn register() -> Result<Binfmt> {
        let entry = Path::new(BINFMT).join("qemu-aarch64");
        if entry.exists() {
            return Ok(Binfmt { added: None });
        }
        if !Path::new(BINFMT).join("register").exists() {
            let st = Command::new("mount")
                .args(["-t", "binfmt_misc", "binfmt_misc", BINFMT])
                .status()
                .context("cannot start mount")?;
            if !st.success() {
                bail!("cannot mount binfmt_misc at {BINFMT} ({st}): aarch64 test binaries cannot run");
            }
        }
        let line = fs::read_to_string(BINFMT_CONF).with_context(|| format!("cannot read {BINFMT_CONF}"))?;
        fs::write(Path::new(BINFMT).join("register"), line.trim())
            .with_context(|| format!("cannot register qemu-aarch64 with {BINFMT}/register"))?;
        Ok(Binfmt { added: Some(entry) })
    }
}

impl Drop for Binfmt {
    fn drop(&mut self) {
        if let Some(entry) = &self.added {
            let _ = fs::write(entry, "-1");
        }
    }
}

/// The Dockerfile's prebuilt-binaries stage takes the aarch64 programs for arm64 and refuses them, naming
/// the architecture, for amd64.
fn check_prebuilt_architecture(root: &Path, out: &Path) -> Result<()> {
    const PROGRAMS: [&str; 5] = [
        "stage2-setup",
        "supervise-perms",
        "reconcile-profiles",
        "main-wrapper",
        "hermes-boot-doctor",
    ];
    let staged = root.join("target").join("docker-bin-aarch64");
    fs::create_dir_all(&staged).with_context(|| format!("cannot create {}", staged.display()))?;
    for p in PROGRAMS {
        let from = out.join("target/aarch64-unknown-linux-gnu/debug").join(p);
        fs::copy(&from, staged.join(p)).with_context(|| format!("cannot copy {}", from.display()))?;
    }
    let build = |arch: &str| {
        Command::new("docker")
            .env("DOCKER_BUILDKIT", "0")
            .current_dir(root)
            .args(["build", "-q", "--target", "programs"])
            .args(["--build-arg", &format!("RUST_BUILDER_IMAGE={}", base::BASE_TAG)])
            .args(["--build-arg", "BINARIES=prebuilt"])
            .args(["--build-arg", "PREBUILT_DIR=target/docker-bin-aarch64"])
            .args(["--build-arg", &format!("TARGETARCH={arch}")])
            .arg(".")
            .output()
            .context("cannot start docker build")
    };
    let arm = build("arm64")?;
    if !arm.status.success() {
        bail!(
            "the programs stage refused aarch64 binaries for arm64:\n{}",
            String::from_utf8_lossy(&arm.stderr)
        );
    }
    let amd = build("amd64")?;
    let said = String::from_utf8_lossy(&amd.stdout).into_owned() + &String::from_utf8_lossy(&amd.stderr);
    let want = "target/docker-bin-aarch64/stage2-setup is not an x86_64 program";
    if amd.status.success() || !said.contains(want) {
        bail!("the programs stage did not refuse aarch64 binaries for amd64 with \"{want}\":\n{said}");
    }
    eprintln!("xtask cross: BINARIES=prebuilt takes aarch64 programs for arm64 and refuses them for amd64");
    Ok(())
}
