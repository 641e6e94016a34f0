//! Section `wrapper`: what `main-wrapper` adds to the start of the container's program (SPEC §5).
//!
//! Three commands, each started by the same spawn-and-wait loop, interleaved: a bare `/bin/true`;
//! `main-wrapper /bin/true` (linked statically, as the image has it) as root in the wrapper role on a temporary root prefix (`/proc/1/comm` is
//! `s6-svscan`, `/run/s6/basedir` exists, `HERMES_HOME` unset so the container environment directory is
//! read, a venv, the privilege drop to 10000:10000); and a POSIX sh chain doing the same work the way the
//! shell wrapper it replaces did ([`CHAIN`]: `s6-envdir` re-exec, `id -u`, `. bin/activate`,
//! `command -v`, `s6-setuidgid`).

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::measure::{self, median, ms3, percentile, ratio, Syscalls};
use super::scratch::{lay_out_root, write, ScratchDir};
use super::Ctx;
use crate::setup;

/// The shell chain, committed beside this file.
const CHAIN: &str = include_str!("wrapper_chain.sh");
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const U: u32 = 10000;
const OVERHEAD_TARGET: Duration = Duration::from_micros(500);
const CHAIN_RATIO_TARGET: f64 = 10.0;

/// What s6-overlay records of a typical container start in `/run/s6/container_environment`: the image's
/// `ENV` lines and the `-e` options, one file per variable, no trailing newline.
const CONTAINER_ENV: &[(&str, &str)] = &[
    (
        "PATH",
        "/opt/hermes/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/root"),
    ("HOSTNAME", "3f9c2a7d41be"),
    ("LANG", "C.UTF-8"),
    ("LC_ALL", "C.UTF-8"),
    ("TZ", "Europe/Berlin"),
    ("HERMES_HOME", "/opt/data"),
    ("HERMES_UID", "10000"),
    ("HERMES_GID", "10000"),
    ("PYTHONUNBUFFERED", "1"),
    ("PYTHONDONTWRITEBYTECODE", "1"),
    ("UV_PYTHON_DOWNLOADS", "never"),
    ("UV_COMPILE_BYTECODE", "1"),
    ("PLAYWRIGHT_BROWSERS_PATH", "/opt/hermes/ms-playwright"),
    ("AGENT_BROWSER_EXECUTABLE_PATH", "/usr/bin/chromium"),
    ("NODE_ENV", "production"),
    ("S6_BEHAVIOUR_IF_STAGE2_FAILS", "2"),
    ("S6_CMD_WAIT_FOR_SERVICES_MAXTIME", "0"),
    ("S6_KEEP_ENV", "0"),
    (
        "OPENROUTER_API_KEY",
        "sk-or-v1-0000000000000000000000000000000000000000000000000000000000000000",
    ),
    (
        "ANTHROPIC_API_KEY",
        "sk-ant-api03-00000000000000000000000000000000000000000000000000000000",
    ),
    (
        "TELEGRAM_BOT_TOKEN",
        "0000000000:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ),
    ("TELEGRAM_ALLOWED_USERS", "11111111,22222222"),
    ("GATEWAY_ALLOW_ALL_USERS", "false"),
];

/// Subcommands the image lists in `/etc/hermes/cli-subcommands` (MW-10).
const SUBCOMMANDS: &str = "# hermes subcommands that must not be shadowed by PATH programs\nchat\ngateway\n\
model\nsetup\nconfig\nmcp\nlogin\nlogout\nstatus\ntools\nskills\ncron\nsessions\nprofile\ndashboard\n\
doctor\nupdate\nversion\n";

struct WrapperRoot {
    root: ScratchDir,
}

impl WrapperRoot {
    fn new(ctx: &Ctx, python: &Path) -> Result<WrapperRoot> {
        let root = ScratchDir::new(&ctx.scratch, "hermes-bench-wrapper.")?;
        let r = root.path();
        lay_out_root(r)?;
        write(&r.join("proc/1/comm"), "s6-svscan\n")?;
        std::fs::create_dir_all(r.join("run/s6/basedir"))?;
        for (k, v) in CONTAINER_ENV {
            write(&r.join("run/s6/container_environment").join(k), v)?;
        }
        write(&r.join("etc/hermes/cli-subcommands"), SUBCOMMANDS)?;
        let h = r.join("opt/data");
        std::fs::create_dir_all(&h)?;
        std::os::unix::fs::chown(&h, Some(U), Some(U))?;
        let venv = r.join("opt/hermes/.venv");
        measure::output(
            Command::new(python)
                .args(["-m", "venv", "--without-pip"])
                .arg(&venv),
        )
        .context("creating the venv")?;
        // Installed as the image has it (the build directory may be out of the runtime user's reach).
        let bin = r.join("opt/hermes/docker/bin/main-wrapper");
        std::fs::create_dir_all(r.join("opt/hermes/docker/bin"))?;
        // The static build, as the image ships it.
        let built = crate::docker::build_static_main_wrapper()?;
        if std::fs::hard_link(&built, &bin).is_err() {
            std::fs::copy(&built, &bin).with_context(|| format!("copy {}", built.display()))?;
        }
        let chain = r.join("opt/hermes/docker/main-wrapper-chain.sh");
        write(&chain, CHAIN)?;
        std::fs::set_permissions(&chain, std::fs::Permissions::from_mode(0o755))?;
        Ok(WrapperRoot { root })
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    fn main_wrapper(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.path().join("opt/hermes/docker/bin/main-wrapper"));
        c.env_clear()
            .env("PATH", PATH)
            .env("HERMES_BOOT_ROOT", self.path())
            .args(args)
            .current_dir(self.path());
        c
    }

    fn chain(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.path().join("opt/hermes/docker/main-wrapper-chain.sh"));
        c.env_clear()
            .env("PATH", PATH)
            .env("ROOT", self.path())
            .args(args)
            .current_dir(self.path());
        c
    }

    /// A program started directly, with the same environment size and working directory as the others.
    fn bare(&self, args: &[&str]) -> Command {
        let mut c = Command::new(args[0]);
        c.env_clear()
            .env("PATH", PATH)
            .args(&args[1..])
            .current_dir(self.path());
        c
    }
}

/// What the started program sees: its uid, groups, HOME, VIRTUAL_ENV and one rehydrated variable.
const PROBE: &str = "id -u; id -G; echo \"$HOME\"; echo \"$VIRTUAL_ENV\"; echo \"$TELEGRAM_BOT_TOKEN\"";

/// Both wrappers must hand the program the same things, or the comparison is meaningless.
fn verify(wr: &WrapperRoot) -> Result<()> {
    let token = CONTAINER_ENV
        .iter()
        .find(|(k, _)| *k == "TELEGRAM_BOT_TOKEN")
        .map(|(_, v)| *v)
        .unwrap_or_default();
    for (name, mut cmd) in [
        ("main-wrapper", wr.main_wrapper(&["/bin/sh", "-c", PROBE])),
        ("sh chain", wr.chain(&["/bin/sh", "-c", PROBE])),
    ] {
        let out = measure::output(&mut cmd)?;
        let l: Vec<&str> = out.lines().collect();
        let ok = l.len() == 5
            && l[0] == "10000"
            && l[1] == "10000"
            && l[2] == "/opt/data"
            && l[3].ends_with("/opt/hermes/.venv")
            && l[4] == token;
        if !ok {
            bail!(
                "{name} did not start the program as 10000:10000 with the container environment and the \
                 venv; it saw:\n{out}"
            );
        }
    }
    Ok(())
}

struct Row {
    program: &'static str,
    times: Vec<Duration>,
    syscalls: Option<Syscalls>,
}

pub fn run(ctx: &Ctx) -> Result<String> {
    setup::ensure_packages(&["s6"])?;
    let python = super::reconcile::python()?;
    let wr = WrapperRoot::new(ctx, &python)?;
    verify(&wr)?;
    // Row order matters below: bare, main-wrapper, sh chain, then the extra-exec reference.
    let make: [Box<dyn Fn() -> Command>; 4] = [
        Box::new(|| wr.bare(&["/bin/true"])),
        Box::new(|| wr.main_wrapper(&["/bin/true"])),
        Box::new(|| wr.chain(&["/bin/true"])),
        Box::new(|| wr.bare(&["/usr/bin/env", "/bin/true"])),
    ];
    let mut rows = [
        ("bare exec of `/bin/true`", Vec::new()),
        ("`main-wrapper /bin/true`", Vec::new()),
        (
            "sh chain (`s6-envdir`, `id -u`, venv, `s6-setuidgid`)",
            Vec::new(),
        ),
        (
            "reference: `env /bin/true` (one more exec of a dynamic binary, no work)",
            Vec::new(),
        ),
    ]
    .map(|(program, times)| Row {
        program,
        times,
        syscalls: None,
    });
    eprintln!("xtask bench: {} runs of each exec", ctx.fast_runs);
    for f in &make {
        for _ in 0..10 {
            measure::time_spawn(&mut f())?;
        }
    }
    // The order rotates, so that no command always runs right after the same other one.
    for i in 0..ctx.fast_runs {
        for k in 0..make.len() {
            let j = (i + k) % make.len();
            rows[j].times.push(measure::time_spawn(&mut make[j]())?);
        }
    }
    if ctx.strace {
        for (r, f) in rows.iter_mut().zip(&make) {
            r.syscalls = Some(measure::strace(&f(), &ctx.scratch)?);
        }
    }

    let mut out = String::new();
    writeln!(out, "## main-wrapper: start-up overhead (SPEC §5)\n")?;
    writeln!(
        out,
        "{} runs of each, interleaved, every one timed from spawn to exit by the same Rust loop \
         (`std::process::Command`, all output to `/dev/null`). As root on a temporary root prefix \
         (`HERMES_BOOT_ROOT`) in the wrapper role: {} variables in the container environment directory, \
         `HERMES_HOME` unset, a venv made by `python3 -m venv`, drop to 10000:10000, then exec `/bin/true`. \
         The sh chain is `xtask/src/bench/wrapper_chain.sh`. *execs* (successful `execve`, the first \
         included) and *syscalls* from one run under `strace -f -c`.\n",
        ctx.fast_runs,
        CONTAINER_ENV.len()
    )?;
    writeln!(
        out,
        "| program | median | p90 | − bare (median) | execs | syscalls |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|")?;
    let med: Vec<Duration> = rows.iter().map(|r| median(&r.times)).collect();
    for (i, r) in rows.iter().enumerate() {
        let (execs, total) = match &r.syscalls {
            Some(s) => (s.succeeded("execve").to_string(), s.total().to_string()),
            None => Default::default(),
        };
        let over = if i == 0 {
            String::new()
        } else {
            ms3(med[i].saturating_sub(med[0]))
        };
        writeln!(
            out,
            "| {} | {} | {} | {over} | {execs} | {total} |",
            r.program,
            ms3(med[i]),
            ms3(percentile(&r.times, 90.0)),
        )?;
    }
    let overhead = med[1].saturating_sub(med[0]);
    let p90_over = percentile(&rows[1].times, 90.0).saturating_sub(percentile(&rows[0].times, 90.0));
    let chain_ratio = ratio(med[2], med[1]);
    let chain_over = med[2].saturating_sub(med[0]);
    writeln!(out)?;
    writeln!(
        out,
        "main-wrapper overhead above a bare exec: {} (median), {} (p90 − p90). sh chain / main-wrapper: \
         {chain_ratio:.1}× in total time, {:.1}× in overhead above a bare exec.\n",
        ms3(overhead),
        ms3(p90_over),
        ratio(chain_over, overhead)
    )?;
    writeln!(out, "Targets:\n")?;
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    writeln!(
        out,
        "- main-wrapper overhead ≤ {} above a bare exec: {} — {}",
        ms3(OVERHEAD_TARGET),
        ms3(overhead),
        verdict(overhead <= OVERHEAD_TARGET)
    )?;
    writeln!(
        out,
        "- sh chain ≥ {CHAIN_RATIO_TARGET:.0}× main-wrapper: {chain_ratio:.1}× — {}\n",
        verdict(chain_ratio >= CHAIN_RATIO_TARGET)
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_is_posix_sh_that_parses() {
        let dir = std::env::temp_dir().join(format!("xtask-chain-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("chain.sh");
        std::fs::write(&p, CHAIN).unwrap();
        let st = Command::new("sh").arg("-n").arg(&p).status().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(st.success(), "sh -n rejected the chain");
        assert!(CHAIN.starts_with("#!/bin/sh\n"));
    }
}
