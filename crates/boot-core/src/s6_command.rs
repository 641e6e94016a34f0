//! Running s6's control tools (`/command/s6-svscanctl`, `s6-svc`, `s6-svwait`, `s6-svok`) with a time
//! bound (SPEC RP-18, RP-19). A tool that outlives its bound is killed, so a wedged supervisor cannot hang
//! registration.

use std::ffi::OsStr;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::root::RootPrefix;

/// How one tool run ended.
#[derive(Debug)]
pub enum ToolResult {
    Exited {
        status: ExitStatus,
        stdout: String,
        stderr: String,
    },
    TimedOut(Duration),
    NotStarted(String),
}

impl ToolResult {
    pub fn success(&self) -> bool {
        matches!(self, ToolResult::Exited { status, .. } if status.success())
    }

    /// The exit code, when the tool exited normally.
    pub fn code(&self) -> Option<i32> {
        match self {
            ToolResult::Exited { status, .. } => status.code(),
            _ => None,
        }
    }

    /// Why it failed, for an error line: the tool's stderr, else its stdout, else its status.
    pub fn describe(&self) -> String {
        match self {
            ToolResult::Exited {
                status,
                stdout,
                stderr,
            } => {
                let (e, o) = (stderr.trim(), stdout.trim());
                if !e.is_empty() {
                    e.to_string()
                } else if !o.is_empty() {
                    o.to_string()
                } else if let Some(c) = status.code() {
                    format!("exit status {c}")
                } else {
                    format!("{status}")
                }
            }
            ToolResult::TimedOut(d) => format!("timed out after {} s (killed)", d.as_secs_f64()),
            ToolResult::NotStarted(why) => why.clone(),
        }
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `/command/<tool> <args…>` (under the root prefix) with stdin from /dev/null and a time bound.
pub fn run_tool(root: &RootPrefix, tool: &str, args: &[&OsStr], limit: Duration) -> ToolResult {
    let program = root.path(format!("/command/{tool}"));
    let mut cmd = Command::new(&program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Its own process group, so a timeout also ends helpers it started (s6-svwait's s6-ftrigrd), which
    // would otherwise keep the output pipes open.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    root.export_to(&mut cmd);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return ToolResult::NotStarted(format!("cannot run /command/{tool}: {e}")),
    };
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    let status = wait_bounded(&mut child, limit);
    if status.is_none() {
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ =
                nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
    match status {
        Some(status) => ToolResult::Exited {
            status,
            stdout,
            stderr,
        },
        None => ToolResult::TimedOut(limit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tool(root: &std::path::Path, name: &str, body: &str) {
        std::fs::create_dir_all(root.join("command")).unwrap();
        let p = root.join("command").join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn reports_status_and_output() {
        let t = tempfile::tempdir().unwrap();
        tool(t.path(), "ok", "echo fine; exit 0");
        tool(t.path(), "bad", "echo out; echo 'it broke' >&2; exit 3");
        tool(t.path(), "quiet", "exit 4");
        let root = RootPrefix::new(t.path());
        let ok = run_tool(&root, "ok", &[], Duration::from_secs(5));
        assert!(ok.success());
        let bad = run_tool(&root, "bad", &[], Duration::from_secs(5));
        assert!(!bad.success());
        assert_eq!(bad.code(), Some(3));
        assert_eq!(bad.describe(), "it broke");
        assert_eq!(
            run_tool(&root, "quiet", &[], Duration::from_secs(5)).describe(),
            "exit status 4"
        );
        let missing = run_tool(&root, "absent", &[], Duration::from_secs(5));
        assert!(
            missing.describe().starts_with("cannot run /command/absent"),
            "{}",
            missing.describe()
        );
    }

    #[test]
    fn a_tool_past_its_bound_is_killed() {
        let t = tempfile::tempdir().unwrap();
        tool(t.path(), "hang", "exec sleep 30");
        let root = RootPrefix::new(t.path());
        let started = Instant::now();
        let r = run_tool(&root, "hang", &[], Duration::from_millis(300));
        assert!(matches!(r, ToolResult::TimedOut(_)), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(r.describe().contains("timed out"));
    }
}
