//! Section `lifecycle`: what a container start and stop cost on the real s6-overlay, the latency a
//! scale-to-zero deployment or `docker run --rm IMAGE <command>` used as a CLI feels.
//!
//! Three images: (a) the debootstrapped base image, the floor; (b) the base with the same s6-overlay
//! release as the project's image and nothing of the project, run once with s6-overlay's defaults and
//! once with the `S6_*` settings of the project's image (read from the image, so the two cannot drift);
//! (c) the project's image (real s6-overlay, real hermes-agent; the test image without its doubles).
//! Every figure is the wall time of the `docker` client, measured from this side, and the runs of
//! different images are interleaved so a slow moment of the engine spreads over all of them.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::measure::{self, median, ms, ratio};
use super::scratch::ScratchDir;
use super::Ctx;
use crate::docker;

/// The project's image as users get it: the test image's inputs without its test doubles.
const PROJECT: &str = "hermes-boot-bench:image";
const OVERLAY_ONLY: &str = "hermes-boot-bench:overlay-only";
/// The fewest runs per figure this section reports.
const MIN_RUNS: usize = 10;
const READY_LINE: &str = "hermes-bench-ready";
/// Goals from the project's issue list.
const TRUE_RATIO_GOAL: f64 = 1.5;
const FIRST_OUTPUT_GOAL: Duration = Duration::from_millis(100);
const STOP_GOAL: Duration = Duration::from_millis(1000);
/// The gateway's clean-stop line in `logs/gateway.log`, and s6-rc's line for the dashboard.
const GATEWAY_STOPPED: &str = "Gateway stopped (total teardown";
const DASHBOARD_STOPPED: &str = "s6-rc: info: service dashboard successfully stopped";
/// Profiles of the restart case, and how many of them run a gateway.
const PROFILES: usize = 10;
const RUNNING: usize = 5;
/// Longest wait for a container to reach the state a measurement starts from.
const SETTLE: Duration = Duration::from_secs(120);

struct Variant {
    label: &'static str,
    image: &'static str,
    env: Vec<String>,
}

impl Variant {
    fn run(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker");
        cmd.args(["run", "--rm"]);
        for e in &self.env {
            cmd.args(["-e", e]);
        }
        cmd.arg(self.image).args(args);
        cmd
    }
}

pub fn run(ctx: &Ctx) -> Result<String> {
    docker::build_bench_image(PROJECT)?;
    docker::build_overlay_only_image(OVERLAY_ONLY)?;
    let runs = ctx.runs.max(MIN_RUNS);
    let image_s6 = image_s6_settings(PROJECT)?;
    let variants = [
        Variant {
            label: "(a) base image",
            image: docker::base::BASE_TAG,
            env: Vec::new(),
        },
        Variant {
            label: "(b) base + s6-overlay, its defaults",
            image: OVERLAY_ONLY,
            env: Vec::new(),
        },
        Variant {
            label: "(b′) base + s6-overlay, the image's `S6_*` settings",
            image: OVERLAY_ONLY,
            env: image_s6.clone(),
        },
        Variant {
            label: "(c) the project's image",
            image: PROJECT,
            env: Vec::new(),
        },
    ];
    let scratch = ScratchDir::new(&ctx.scratch, "hermes-bench-lifecycle.")?;

    eprintln!("xtask bench: lifecycle: docker run --rm IMAGE true / echo, {runs} runs each");
    for v in &variants {
        // Not timed: the first start of an image pays for its layers' first mount.
        measure::time_once(&mut v.run(&["true"]))?;
    }
    let mut whole = vec![Vec::new(); variants.len()];
    let mut first = vec![Vec::new(); variants.len()];
    for _ in 0..runs {
        for (i, v) in variants.iter().enumerate() {
            whole[i].push(measure::time_once(&mut v.run(&["true"]))?);
            first[i].push(time_to_ready_line(&mut v.run(&["echo", READY_LINE]))?);
        }
    }

    eprintln!("xtask bench: lifecycle: docker stop, {runs} runs each");
    let mut stops = Vec::new();
    let mut floor_stops = Vec::new();
    for _ in 0..runs {
        stops.push(stop_with_services(&scratch)?);
        floor_stops.push(stop_overlay_only(&image_s6)?);
    }

    eprintln!("xtask bench: lifecycle: docker restart with {PROFILES} profiles, {RUNNING} running");
    let restarts = restart_with_profiles(runs)?;

    let mut out = String::from("## Container lifecycle on the real s6-overlay\n\n");
    let _ = writeln!(
        out,
        "Wall time of the `docker` client, median of {runs} interleaved runs. (b′) runs the s6-overlay-only \
         image with the project's settings: `{}`.\n",
        image_s6.join(" ")
    );
    out.push_str("| image | `docker run --rm IMAGE true` | ÷ (a) | to the output of `echo` | − (b′) |\n");
    out.push_str("|---|---:|---:|---:|---:|\n");
    let floor = median(&whole[0]);
    let overlay_first = median(&first[2]);
    for (i, v) in variants.iter().enumerate() {
        let w = median(&whole[i]);
        let f = median(&first[i]);
        let delta = f.as_secs_f64() * 1000.0 - overlay_first.as_secs_f64() * 1000.0;
        let _ = writeln!(
            out,
            "| {} | {} | {:.2}× | {} | {:+.0} ms |",
            v.label,
            ms(w),
            ratio(w, floor),
            ms(f),
            delta
        );
    }
    let project_ratio = ratio(median(&whole[3]), floor);
    let first_delta = median(&first[3]).saturating_sub(overlay_first);
    let _ = writeln!(
        out,
        "\nGoals: (c) ≤ {TRUE_RATIO_GOAL}× (a) for `true`: {:.2}×, {}; (c)'s first output within {} ms of \
         (b′): {} ms, {}.\n",
        project_ratio,
        met(project_ratio <= TRUE_RATIO_GOAL),
        FIRST_OUTPUT_GOAL.as_millis(),
        first_delta.as_millis(),
        met(first_delta <= FIRST_OUTPUT_GOAL)
    );

    let stop_times: Vec<Duration> = stops.iter().map(|s| s.took).collect();
    let floor_times: Vec<Duration> = floor_stops.to_vec();
    let clean_gw = stops.iter().filter(|s| s.gateway_clean).count();
    let clean_db = stops.iter().filter(|s| s.dashboard_clean).count();
    let kept = stops.iter().filter(|s| s.exit_code == 143).count();
    let stop = median(&stop_times);
    let _ = writeln!(
        out,
        "`docker stop` of (c) running a supervised gateway (`HERMES_GATEWAY_BOOTSTRAP_STATE=running`, \
         connected) and the dashboard (`HERMES_DASHBOARD=1`), command `sleep infinity`: median {} (range {}–{}); \
         the gateway's `{GATEWAY_STOPPED}` in `logs/gateway.log` in {clean_gw} of {runs} stops, the dashboard \
         stopped by s6-rc in {clean_db} of {runs}, exit status 143 kept in {kept} of {runs}. \
         The s6-overlay-only image (b′) running `sleep infinity` stops in {}. Goal ≤ {} with every clean stop \
         logged: {}.\n",
        ms(stop),
        ms(*stop_times.iter().min().unwrap_or(&Duration::ZERO)),
        ms(*stop_times.iter().max().unwrap_or(&Duration::ZERO)),
        ms(median(&floor_times)),
        ms(STOP_GOAL),
        met(stop <= STOP_GOAL && clean_gw == runs && clean_db == runs)
    );

    let _ = writeln!(
        out,
        "`docker restart` of (c) with {PROFILES} profiles, {RUNNING} of them with a running gateway: the \
         `docker restart` command takes a median {}; all {RUNNING} gateway slots are up a median {} after it \
         was started, and every one of those gateway processes has recorded itself as running in its \
         `gateway_state.json` {} after it.\n",
        ms(median(&restarts.command)),
        ms(median(&restarts.slots_up)),
        ms(median(&restarts.running))
    );
    Ok(out)
}

fn met(yes: bool) -> &'static str {
    if yes {
        "met"
    } else {
        "**not met**"
    }
}

/// The image's own `S6_*` variables, as `-e` values.
fn image_s6_settings(image: &str) -> Result<Vec<String>> {
    let env = measure::output(Command::new("docker").args([
        "image",
        "inspect",
        "-f",
        "{{range .Config.Env}}{{println .}}{{end}}",
        image,
    ]))?;
    Ok(env
        .lines()
        .filter(|l| l.starts_with("S6_"))
        .map(str::to_string)
        .collect())
}

/// From spawning the client to the line [`READY_LINE`] on the container's standard output (s6-overlay
/// writes its own messages there too); the run must succeed.
fn time_to_ready_line(cmd: &mut Command) -> Result<Duration> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("cannot start {cmd:?}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut took = None;
    for line in BufReader::new(stdout).lines() {
        if took.is_none() && line.context("reading the container's output")? == READY_LINE {
            took = Some(start.elapsed());
        }
    }
    let status = child.wait().context("waiting for docker run")?;
    match took {
        Some(t) if status.success() => Ok(t),
        _ => bail!("{cmd:?} did not print {READY_LINE} or failed ({status})"),
    }
}

struct Stop {
    took: Duration,
    gateway_clean: bool,
    dashboard_clean: bool,
    exit_code: i32,
}

/// A container that removes itself from the engine when dropped.
struct Container(String);

impl Container {
    fn start(args: &[&str]) -> Result<Container> {
        let id = measure::output(Command::new("docker").args(["run", "-d"]).args(args))?;
        Ok(Container(id.trim().to_string()))
    }

    fn exec_ok(&self, user: &str, script: &str) -> bool {
        docker::docker_ok(&["exec", "-u", user, &self.0, "sh", "-c", script])
    }

    fn exec(&self, user: &str, script: &str) -> Result<String> {
        measure::output(Command::new("docker").args(["exec", "-u", user, &self.0, "sh", "-c", script]))
    }

    fn wait_for(&self, what: &str, script: &str) -> Result<()> {
        let started = Instant::now();
        while !self.exec_ok("root", script) {
            if started.elapsed() > SETTLE {
                bail!("container {}: no {what} after {}s", &self.0, SETTLE.as_secs());
            }
            sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn logs(&self) -> Result<String> {
        let out = Command::new("docker")
            .args(["logs", &self.0])
            .output()
            .context("docker logs")?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `docker stop` of the project's image with a connected supervised gateway and the dashboard listening.
fn stop_with_services(scratch: &ScratchDir) -> Result<Stop> {
    let c = Container::start(&[
        "-e",
        "HERMES_DASHBOARD=1",
        "-e",
        "HERMES_GATEWAY_BOOTSTRAP_STATE=running",
        PROJECT,
        "sleep",
        "infinity",
    ])?;
    // Until its platforms are connected the gateway has not installed its signal handlers yet.
    c.wait_for(
        "connected gateway",
        "grep -q '\"state\":\"connected\"' /opt/data/gateway_state.json",
    )?;
    // 9119 = 0x239F, state 0A = LISTEN.
    c.wait_for(
        "listening dashboard",
        "grep -q ':239F 00000000:0000 0A' /proc/net/tcp",
    )?;
    let took = measure::time_once(Command::new("docker").args(["stop", &c.0]))?;
    let code = measure::output(Command::new("docker").args(["inspect", "-f", "{{.State.ExitCode}}", &c.0]))?;
    let copy = scratch.path().join("gateway.log");
    let _ = std::fs::remove_file(&copy);
    measure::output(
        Command::new("docker")
            .arg("cp")
            .arg(format!("{}:/opt/data/logs/gateway.log", c.0))
            .arg(&copy),
    )?;
    let gateway_log = std::fs::read_to_string(&copy).unwrap_or_default();
    let logs = c.logs()?;
    Ok(Stop {
        took,
        gateway_clean: gateway_log.contains(GATEWAY_STOPPED),
        dashboard_clean: logs.contains(DASHBOARD_STOPPED),
        exit_code: code.trim().parse().unwrap_or(-1),
    })
}

/// `docker stop` of the s6-overlay-only image with the project's settings: what s6-overlay itself costs.
fn stop_overlay_only(image_s6: &[String]) -> Result<Duration> {
    let mut args = Vec::new();
    for e in image_s6 {
        args.extend(["-e", e.as_str()]);
    }
    args.extend([OVERLAY_ONLY, "sleep", "infinity"]);
    let c = Container::start(&args)?;
    c.wait_for("the command", COMMAND_RUNNING)?;
    measure::time_once(Command::new("docker").args(["stop", &c.0]))
}

/// `sleep infinity`, the container command, has started (the minimal base has no `ps`).
const COMMAND_RUNNING: &str =
    "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done 2>/dev/null | grep -q '^sleep infinity'";

struct Restarts {
    command: Vec<Duration>,
    slots_up: Vec<Duration>,
    running: Vec<Duration>,
}

fn profile(i: usize) -> String {
    format!("bench{i}")
}

/// One container, [`PROFILES`] profiles, the first [`RUNNING`] gateways started by their user; then
/// `runs` restarts, each timed until every one of those gateways is back.
fn restart_with_profiles(runs: usize) -> Result<Restarts> {
    let c = Container::start(&[PROJECT, "sleep", "infinity"])?;
    c.wait_for(
        "boot log",
        "grep -q profile=default /opt/data/logs/container-boot.log",
    )?;
    for i in 0..PROFILES {
        c.exec("hermes", &format!("hermes profile create {}", profile(i)))?;
    }
    for i in 0..RUNNING {
        c.exec("hermes", &format!("hermes -p {} gateway start", profile(i)))?;
    }
    let running: Vec<String> = (0..RUNNING).map(profile).collect();
    c.wait_for("running profile gateways", &gateways_running_check(&running))?;
    let mut r = Restarts {
        command: Vec::new(),
        slots_up: Vec::new(),
        running: Vec::new(),
    };
    for _ in 0..runs {
        let started = Instant::now();
        measure::output(Command::new("docker").args(["restart", &c.0]))?;
        r.command.push(started.elapsed());
        // One exec that reports each milestone as it is reached, so the client's start-up is paid once.
        let script = format!(
            "until {}; do sleep 0.02; done; echo up; until {}; do sleep 0.02; done; echo running",
            slots_up_check(&running),
            gateways_running_check(&running)
        );
        let mut child = Command::new("docker")
            .args(["exec", &c.0, "sh", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("docker exec")?;
        let lines = BufReader::new(child.stdout.take().context("no stdout")?);
        for line in lines.lines() {
            match line.context("reading docker exec")?.as_str() {
                "up" => r.slots_up.push(started.elapsed()),
                "running" => r.running.push(started.elapsed()),
                _ => {}
            }
        }
        child.wait().context("docker exec")?;
        if r.running.len() != r.command.len() {
            bail!(
                "container {}: the profile gateways did not come back after a restart",
                c.0
            );
        }
    }
    Ok(r)
}

fn slots_up_check(profiles: &[String]) -> String {
    profiles
        .iter()
        .map(|p| format!("/command/s6-svstat /run/service/gateway-{p} | grep -q '^up '"))
        .collect::<Vec<_>>()
        .join(" && ")
}

/// Every profile's gateway process has recorded itself as running: its state file names the pid its
/// supervisor reports (a restart's stop rewrites the file too, with the old pid).
fn gateways_running_check(profiles: &[String]) -> String {
    profiles
        .iter()
        .map(|p| {
            let f = format!("/opt/data/profiles/{p}/gateway_state.json");
            format!(
                "{{ p=$(/command/s6-svstat -p /run/service/gateway-{p}) && [ \"$p\" -gt 0 ] && \
                 grep -q \"\\\"pid\\\":$p,\" {f} && grep -q '\"gateway_state\":\"running\"' {f}; }}"
            )
        })
        .collect::<Vec<_>>()
        .join(" && ")
}
