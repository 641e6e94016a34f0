//! `hermes-boot-doctor`: what an operator asks when a container misbehaves, answered from the running
//! container's own state. It only reads: every file under the data volume is opened through [`Dir`]
//! descriptors without following symlinks (the volume is the runtime user's), and the only programs it
//! starts are s6's `s6-svstat` on the slots.
//!
//! Each check produces [`Finding`]s; a finding that is a problem carries the command that fixes it. The
//! same findings are printed as lines for people or as JSON objects for scripts, so the two cannot
//! disagree.
//!
//! [`Dir`]: crate::guarded::Dir

mod boot;
mod gateways;
mod identity;
mod supervision;
mod volume;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::accounts::Account;
use crate::config::Config;
use crate::guarded::{Dir, Entry};
use crate::reconcile::Places;
use crate::root::RootPrefix;

/// What to examine.
#[derive(Debug, Clone)]
pub struct Options {
    /// The root prefix, the runtime user's name (`--runtime-user`, `HERMES_BOOT_USER`, `hermes`) and
    /// the environment.
    pub config: Config,
    /// Only the cheap checks (identity, secrets, gateways, services): no walk of the volume. What the
    /// image's `HEALTHCHECK` runs.
    pub quick: bool,
}

/// How a finding counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A fact about the container, nothing wrong.
    Ok,
    /// Something wrong: the exit status is 1 and `fix` says what to do.
    Problem,
    /// Worth reading, not wrong now as far as the doctor can tell: a line the last boot warned with.
    Warning,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Problem => "problem",
            Status::Warning => "warning",
        }
    }
}

/// One thing the doctor found.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The part of the container: `identity`, `volume`, `secrets`, `gateways`, `services`.
    pub area: &'static str,
    /// What was checked, stable for scripts (`runtime-user`, `ownership-drift`, `gateway-state`, …).
    pub check: &'static str,
    pub status: Status,
    /// The in-container path the finding is about, if any.
    pub path: Option<PathBuf>,
    /// One line for people.
    pub message: String,
    /// The command that fixes a problem.
    pub fix: Option<String>,
    /// Details for scripts (counts, owners, modes, states), documented per check in the README.
    pub details: Map<String, Value>,
}

impl Finding {
    fn ok(area: &'static str, check: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            area,
            check,
            status: Status::Ok,
            path: None,
            message: message.into(),
            fix: None,
            details: Map::new(),
        }
    }

    fn problem(
        area: &'static str,
        check: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            status: Status::Problem,
            fix: Some(fix.into()),
            ..Finding::ok(area, check, message)
        }
    }

    fn at(mut self, path: impl Into<PathBuf>) -> Finding {
        self.path = Some(path.into());
        self
    }

    fn with(mut self, key: &str, value: impl Into<Value>) -> Finding {
        self.details.insert(key.to_string(), value.into());
        self
    }

    /// The JSON object of this finding (one line of `--json`).
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("type".into(), json!("finding"));
        o.insert("area".into(), json!(self.area));
        o.insert("check".into(), json!(self.check));
        o.insert("status".into(), json!(self.status.label()));
        if let Some(p) = &self.path {
            o.insert("path".into(), json!(crate::display::display_path(p)));
        }
        o.insert("message".into(), json!(self.message));
        if let Some(f) = &self.fix {
            o.insert("fix".into(), json!(f));
        }
        if !self.details.is_empty() {
            o.insert("details".into(), Value::Object(self.details.clone()));
        }
        Value::Object(o)
    }
}

/// What the checks share: the prefix, the places from the environment, the runtime user as passwd
/// records it, and the data volume when it could be opened.
struct Context<'a> {
    root: &'a RootPrefix,
    places: Places,
    account: Option<Account>,
    /// PID 1 runs as root: the boot remaps and repairs (not with `--user`).
    started_as_root: bool,
    home: Option<Dir>,
}

/// Runs every check, in the order of the report: identity, volume, secrets, gateways, services, boot.
pub fn examine(opts: &Options) -> Vec<Finding> {
    let mut out = Vec::new();
    let places = Places::from_env(&opts.config.env);
    let (account, started_as_root) = identity::check(&opts.config, &mut out);
    let home = volume::open_home(&opts.config.root, &places.home, &mut out);
    let cx = Context {
        root: &opts.config.root,
        places,
        account,
        started_as_root,
        home,
    };
    volume::check(&cx, opts.quick, &mut out);
    volume::secrets(&cx, &mut out);
    gateways::check(&cx, &mut out);
    supervision::check(&cx, &mut out);
    boot::check(&cx, &mut out);
    out
}

/// The exit status: 0 when nothing is wrong, 1 when a problem was found.
pub fn exit_code(findings: &[Finding]) -> u8 {
    u8::from(findings.iter().any(|f| f.status == Status::Problem))
}

/// The closing JSON object of `--json`.
pub fn summary_json(findings: &[Finding]) -> Value {
    let count = |s: Status| findings.iter().filter(|f| f.status == s).count();
    json!({
        "type": "summary",
        "checks": findings.len(),
        "problems": count(Status::Problem),
        "warnings": count(Status::Warning),
        "exit": exit_code(findings),
    })
}

/// The report for people: one section per area, problems marked, each followed by its fix.
pub fn render_text(findings: &[Finding]) -> String {
    let mut s = String::new();
    let mut area = "";
    for f in findings {
        if f.area != area {
            area = f.area;
            let _ = writeln!(s, "{area}:");
        }
        let mark = match f.status {
            Status::Ok => "  ok       ",
            Status::Problem => "  PROBLEM  ",
            Status::Warning => "  warning  ",
        };
        let _ = writeln!(s, "{mark}{}", f.message);
        if let Some(fix) = &f.fix {
            let _ = writeln!(s, "           fix: {fix}");
        }
    }
    let problems = findings.iter().filter(|f| f.status == Status::Problem).count();
    match problems {
        0 => s.push_str("healthy: no problems found\n"),
        n => {
            let _ = writeln!(s, "{} found", crate::report::plural(n as u32, "problem"));
        }
    }
    s
}

/// `s6-svstat` of an in-container service directory: its one-line state (`up (pid …) 5 seconds`,
/// `down (exitcode 0) …`), or `None` when no supervisor answers for it.
fn svstat(root: &RootPrefix, service: &Path) -> Option<String> {
    let host = root.path(service);
    let r = crate::s6_command::run_tool(
        root,
        "s6-svstat",
        &[host.as_os_str()],
        std::time::Duration::from_secs(5),
    );
    match &r {
        crate::s6_command::ToolResult::Exited { stdout, .. } if r.success() => {
            Some(stdout.trim().to_string())
        }
        _ => None,
    }
}

/// `path` under the prefix, read as a small text file by path. Only for files the runtime user cannot
/// write (`/proc`, the image's own files).
fn read_system_file(root: &RootPrefix, path: &str) -> Option<String> {
    std::fs::read_to_string(root.path(path)).ok()
}

/// A regular file of the volume, read without following symlinks; `None` when it is not one.
fn read_volume_file(dir: &Dir, name: &str, limit: u64) -> Option<Vec<u8>> {
    match dir.read_regular(name, limit) {
        Ok(Entry::Found(b)) => Some(b),
        _ => None,
    }
}

/// `uid:gid` and the permission bits, as `ls -ln` and `stat -c %a` show them.
fn owner_mode(uid: u32, gid: u32, perm: u32) -> String {
    format!("{uid}:{gid} {perm:04o}")
}

/// The in-container path for messages.
fn shown(p: &Path) -> String {
    crate::display::display_path(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_makes_the_exit_status_1_and_carries_its_fix() {
        let ok = Finding::ok("identity", "runtime-user", "runtime user hermes");
        assert_eq!(exit_code(std::slice::from_ref(&ok)), 0);
        let bad = Finding::problem(
            "secrets",
            "secret-owner",
            ".env is root's",
            "chown hermes /opt/data/.env",
        )
        .at("/opt/data/.env")
        .with("uid", 0);
        let all = [ok, bad];
        assert_eq!(exit_code(&all), 1);
        let text = render_text(&all);
        assert!(
            text.contains("identity:\n  ok       runtime user hermes\n"),
            "{text}"
        );
        assert!(
            text.contains("  PROBLEM  .env is root's\n           fix: chown hermes /opt/data/.env\n"),
            "{text}"
        );
        assert!(text.ends_with("1 problem found\n"), "{text}");
        let j = all[1].to_json();
        assert_eq!(j["status"], "problem");
        assert_eq!(j["path"], "/opt/data/.env");
        assert_eq!(j["details"]["uid"], 0);
        assert_eq!(summary_json(&all)["problems"], 1);
        assert_eq!(summary_json(&all)["exit"], 1);
    }

    #[test]
    fn paths_in_json_are_escaped_like_log_lines() {
        let raw: std::ffi::OsString =
            std::os::unix::ffi::OsStringExt::from_vec(b"/opt/data/\x1b[2Jbad\xff".to_vec());
        let f = Finding::ok("volume", "x", "m").at(PathBuf::from(raw));
        assert_eq!(f.to_json()["path"], "/opt/data/\\x1b[2Jbad\\xff");
    }
}
