//! Output lines of SPEC CM-04, the dry-run plan of CM-11, and the `--json` event stream.
//!
//! Every program owns one [`Report`]. It prints information and warnings with the program's prefix and
//! counts them for the closing summary. Every change a program makes to the system goes through
//! [`Report::apply`], which is the only place that decides between making it and, in a dry run, printing
//! the `would …` line that stands in for it; so the plan of a dry run and the changes of a real run are
//! the same list, and `--json` prints that list either way. Warning and error lines also go to the boot
//! record when the program keeps one ([`crate::boot_record`]). It is `Sync` so a parallel walk can share it.
//!
//! With `--json`, stdout carries only JSON objects, one per line ([`Event`]); the human lines move to
//! stderr, which s6 sends to the same log.

use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use crate::display::display_path;
use crate::error::SysError;
use crate::owner::Owner;

/// How a program's warnings are spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarnStyle {
    /// `[stage2] Warning: …`
    Bracketed,
    /// `reconcile: WARNING: …`
    Shouted,
}

/// Where information and warnings go: the cont-init programs use stdout, main-wrapper stderr only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    Stderr,
}

#[derive(Debug)]
pub struct Report {
    prefix: &'static str,
    style: WarnStyle,
    sink: Sink,
    dry_run: bool,
    /// `--json`: events on stdout, human lines on stderr.
    json: bool,
    /// Under `--json`, the program's stdout, kept for the events alone ([`Report::with_json`]).
    events: Option<std::fs::File>,
    warnings: AtomicU32,
    /// Changes made, or in a dry run planned.
    changes: AtomicU32,
    /// Where warnings and errors are also kept for the doctor, once the program has opened it.
    record: OnceLock<Box<dyn Keeper>>,
}

impl Report {
    pub fn new(prefix: &'static str, style: WarnStyle, sink: Sink, dry_run: bool) -> Self {
        Report {
            prefix,
            style,
            sink,
            dry_run,
            json: false,
            events: None,
            warnings: AtomicU32::new(0),
            changes: AtomicU32::new(0),
            record: OnceLock::new(),
        }
    }

    /// The same report, printing the `--json` event stream on stdout when `json` is set. The helpers
    /// and s6 tools a program runs inherit its stdout, and their output must not end up among the
    /// events: the events get a descriptor of their own for stdout, and descriptor 1 becomes a copy of
    /// stderr for the rest of the process and its children.
    pub fn with_json(mut self, json: bool) -> Self {
        self.json = json;
        if json {
            use std::os::fd::AsFd;
            if let Ok(out) = std::io::stdout().as_fd().try_clone_to_owned() {
                if rustix::stdio::dup2_stdout(std::io::stderr()).is_ok() {
                    self.events = Some(std::fs::File::from(out));
                }
            }
        }
        self
    }

    pub fn stage2(dry_run: bool) -> Self {
        Report::new("[stage2]", WarnStyle::Bracketed, Sink::Stdout, dry_run)
    }
    pub fn supervise_perms(dry_run: bool) -> Self {
        Report::new("[supervise-perms]", WarnStyle::Bracketed, Sink::Stdout, dry_run)
    }
    pub fn reconcile(dry_run: bool) -> Self {
        Report::new("reconcile:", WarnStyle::Shouted, Sink::Stdout, dry_run)
    }
    pub fn main_wrapper() -> Self {
        Report::new("[hermes]", WarnStyle::Bracketed, Sink::Stderr, false)
    }

    pub fn prefix(&self) -> &'static str {
        self.prefix
    }
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }
    /// Warning lines printed so far (helper output is not counted).
    pub fn warnings(&self) -> u32 {
        self.warnings.load(Ordering::Relaxed)
    }
    /// Changes made so far, or in a dry run planned (`would …` lines printed).
    pub fn changes(&self) -> u32 {
        self.changes.load(Ordering::Relaxed)
    }

    /// From now on, warning and error lines are also added to `record`.
    pub fn keep_record(&self, record: impl Keeper + 'static) {
        let _ = self.record.set(Box::new(record));
    }

    /// `<prefix> <msg>`
    pub fn info(&self, msg: impl Display) {
        self.line(self.sink, &format!("{} {}", self.prefix, msg));
    }

    /// `<prefix> <msg>` about a change a real run made; a dry run's `would …` line already says it.
    pub fn info_made(&self, msg: impl Display) {
        if !self.dry_run {
            self.info(msg);
        }
    }

    /// The closing line (CM-11): `Dry run complete; N changes planned` in a dry run, else `done`.
    pub fn closing(&self, done: impl Display) {
        match self.dry_run {
            true => self.info(format_args!(
                "Dry run complete; {} planned",
                plural(self.changes(), "change")
            )),
            false => self.info(done),
        }
    }

    /// `<prefix> Warning: <msg>` — counted. The caller supplies the tail (`— continuing` or `; continuing`)
    /// because the spec's messages differ there.
    pub fn warn(&self, msg: impl Display) {
        let text = msg.to_string();
        self.warning(&text, json!({ "type": "warning", "message": text }));
    }

    /// `<prefix> Warning: <op> <path>: <ERRNO> (<description>) — continuing`
    pub fn warn_err(&self, err: &SysError) {
        let text = format!("{err} — continuing");
        self.warning(&text, warning_event(&text, err));
    }

    /// `<prefix> Warning: refusing <action> through symlinked path <path> — continuing` (CM-05).
    pub fn warn_refusing(&self, action: &str, path: &Path) {
        let text = format!(
            "refusing {action} through symlinked path {} — continuing",
            display_path(path)
        );
        self.warning(
            &text,
            json!({
                "type": "refusal",
                "message": text,
                "action": action,
                "path": display_path(path),
                "reason": "symlinked path",
            }),
        );
    }

    /// `<prefix> ERROR: <msg>` on stderr (fatal conditions).
    pub fn error(&self, msg: impl Display) {
        let text = msg.to_string();
        self.recorded_line(Sink::Stderr, &format!("{} ERROR: {}", self.prefix, text));
        self.event(&json!({ "type": "error", "message": text }));
    }

    /// Makes one change to the system — or, in a dry run, prints the `would …` line that stands in for
    /// it and returns `planned` — and counts it; `--json` prints it either way. The one place where a
    /// program decides between acting and planning (CM-11). A change whose `act` fails is not counted:
    /// the caller reports the error.
    pub fn apply<T, E>(
        &self,
        change: impl Describe,
        planned: T,
        act: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        self.act_or_plan(change, planned, act, |_| true)
    }

    /// [`Report::apply`] for an `act` that may find nothing to change (`Ok(false)`): only a change made
    /// is counted; a dry run plans it and returns `true`.
    pub fn apply_if<E>(
        &self,
        change: impl Describe,
        act: impl FnOnce() -> Result<bool, E>,
    ) -> Result<bool, E> {
        self.act_or_plan(change, true, act, |made| *made)
    }

    fn act_or_plan<T, E>(
        &self,
        change: impl Describe,
        planned: T,
        act: impl FnOnce() -> Result<T, E>,
        made: impl FnOnce(&T) -> bool,
    ) -> Result<T, E> {
        if self.dry_run {
            self.changed(change);
            return Ok(planned);
        }
        let out = act()?;
        if made(&out) {
            self.changed(change);
        }
        Ok(out)
    }

    /// [`Report::plan_only`] of the directories `below` a directory a dry run only planned, one per
    /// component: what `mkdir -p` would make there.
    pub fn plan_below<S: AsRef<std::ffi::OsStr>>(
        &self,
        planned: &Path,
        below: impl Iterator<Item = S>,
        mode: u32,
        owner: Option<Owner>,
    ) {
        let mut at = planned.to_path_buf();
        for name in below {
            at.push(name.as_ref());
            self.plan_only(Change::made("create directory", &at, mode).owned_by(owner));
        }
    }

    /// A change already made by a transaction that commits several at once (the account files), or in a
    /// dry run planned by it.
    pub fn record(&self, change: Change) {
        self.changed(change);
    }

    /// A step a dry run plans without reaching the primitive that makes it: a change inside a directory
    /// the dry run only planned, or a step of an exchange with another process (a wait, a request). A
    /// real run reports it where it is made; here it changes nothing.
    pub fn plan_only(&self, change: Change) {
        if self.dry_run {
            self.changed(change);
        }
    }

    /// The closing `--json` object: the exit status and the counts of the human summary line. Returns
    /// `code`, so a program can end with `report.finish(code)`.
    pub fn finish(&self, code: u8) -> u8 {
        self.event(&json!({
            "type": "summary",
            "dry_run": self.dry_run,
            "changes": self.changes(),
            "warnings": self.warnings(),
            "exit": code,
        }));
        code
    }

    fn changed(&self, change: impl Describe) {
        self.changes.fetch_add(1, Ordering::Relaxed);
        if !self.dry_run && !self.json {
            // A real run without --json shows no line per change: the change is never described, which
            // keeps the ownership walk's per-entry cost to the chown itself.
            return;
        }
        let change = change.describe();
        if self.dry_run {
            self.line(Sink::Stdout, &change.would_line());
        }
        self.event(&change.to_json());
    }

    fn warning(&self, text: &str, event: Value) {
        self.warnings.fetch_add(1, Ordering::Relaxed);
        let word = match self.style {
            WarnStyle::Bracketed => "Warning:",
            WarnStyle::Shouted => "WARNING:",
        };
        self.recorded_line(self.sink, &format!("{} {} {}", self.prefix, word, text));
        self.event(&event);
    }

    fn event(&self, event: &Value) {
        if !self.json {
            return;
        }
        match &self.events {
            Some(out) => {
                let mut line = event.to_string().into_bytes();
                line.push(b'\n');
                // `Write` is implemented for `&File`: the events need no lock of their own.
                let mut events: &std::fs::File = out;
                let _ = events.write_all(&line);
            }
            None => self.write(Sink::Stdout, &event.to_string()),
        }
    }

    /// Under `--json` stdout belongs to the events.
    fn human_sink(&self, sink: Sink) -> Sink {
        match self.json {
            true => Sink::Stderr,
            false => sink,
        }
    }

    fn recorded_line(&self, sink: Sink, text: &str) {
        self.line(sink, text);
        if let Some(r) = self.record.get() {
            r.keep(text);
        }
    }

    fn line(&self, sink: Sink, text: &str) {
        self.write(self.human_sink(sink), text);
    }

    fn write(&self, sink: Sink, text: &str) {
        // One write per line so lines from concurrent writers (s6 services, helpers) do not interleave.
        let mut buf = Vec::with_capacity(text.len() + 1);
        buf.extend_from_slice(text.as_bytes());
        buf.push(b'\n');
        let _ = match sink {
            Sink::Stdout => std::io::stdout().lock().write_all(&buf),
            Sink::Stderr => std::io::stderr().lock().write_all(&buf),
        };
    }
}

/// The `--json` object of a failed operation: `op`, `path`, and `errno` (its name) or, where root
/// refused without one, `reason`.
fn warning_event(text: &str, err: &SysError) -> Value {
    let mut event = json!({
        "type": "warning",
        "message": text,
        "op": err.op,
        "path": display_path(&err.path),
    });
    match &err.refusal {
        Some(why) => event["reason"] = json!(why),
        None => event["errno"] = json!(format!("{:?}", err.errno)),
    }
    event
}

/// Where warning and error lines are kept beyond the log: the boot record ([`crate::boot_record`]).
pub trait Keeper: Send + Sync + std::fmt::Debug {
    fn keep(&self, line: &str);
}

/// What [`Report::apply`] takes: a [`Change`], or a closure that builds one, for a caller whose real run
/// should not pay for a description nobody reads.
pub trait Describe {
    fn describe(self) -> Change;
}

impl Describe for Change {
    fn describe(self) -> Change {
        self
    }
}

impl<F: FnOnce() -> Change> Describe for F {
    fn describe(self) -> Change {
        self()
    }
}

/// One change to the system: what is done to which path, and the owner or mode it had and gets.
///
/// Its `would …` line (a dry run) is `would <action> <path> <detail>`; its JSON object (`--json`, both runs)
/// is `{"type":"change","action":…,"path":…}` with `old_owner`/`new_owner` (`{"uid":…,"gid":…}`),
/// `old_mode`/`new_mode` (octal strings) and `detail` when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    action: &'static str,
    path: PathBuf,
    detail: String,
    old_owner: Option<Owner>,
    new_owner: Option<Owner>,
    old_mode: Option<u32>,
    new_mode: Option<u32>,
}

impl Change {
    /// `action` on `path`, with nothing more to say.
    pub fn new(action: &'static str, path: impl Into<PathBuf>) -> Change {
        Change {
            action,
            path: path.into(),
            detail: String::new(),
            old_owner: None,
            new_owner: None,
            old_mode: None,
            new_mode: None,
        }
    }

    /// `chown <path> <u>:<g> -> <u>:<g>`
    pub fn chown(path: impl Into<PathBuf>, old: Owner, new: Owner) -> Change {
        Change {
            old_owner: Some(old),
            new_owner: Some(new),
            ..Change::new("chown", path).detail(format_args!("{old} -> {new}"))
        }
    }

    /// `chmod <path> <old> -> <new>`
    pub fn chmod(path: impl Into<PathBuf>, old: u32, new: u32) -> Change {
        Change {
            old_mode: Some(old),
            new_mode: Some(new),
            ..Change::new("chmod", path).detail(format_args!("{old:04o} -> {new:04o}"))
        }
    }

    /// `<action> <path> mode <mode>`: something new is made with `mode`.
    pub fn made(action: &'static str, path: impl Into<PathBuf>, mode: u32) -> Change {
        Change {
            new_mode: Some(mode),
            ..Change::new(action, path).detail(format_args!("mode {mode:04o}"))
        }
    }

    /// The text after the path in the `would …` line.
    pub fn detail(mut self, detail: impl Display) -> Change {
        self.detail = detail.to_string();
        self
    }

    /// The owner the new thing gets.
    pub fn owned_by(mut self, owner: Option<Owner>) -> Change {
        self.new_owner = owner;
        self
    }

    fn would_line(&self) -> String {
        match self.detail.is_empty() {
            true => format!("would {} {}", self.action, display_path(&self.path)),
            false => format!(
                "would {} {} {}",
                self.action,
                display_path(&self.path),
                self.detail
            ),
        }
    }

    fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("type".into(), json!("change"));
        o.insert("action".into(), json!(self.action));
        o.insert("path".into(), json!(display_path(&self.path)));
        let owner = |o: Owner| json!({ "uid": o.uid, "gid": o.gid });
        let mode = |m: u32| json!(format!("{m:04o}"));
        if let Some(v) = self.old_owner {
            o.insert("old_owner".into(), owner(v));
        }
        if let Some(v) = self.new_owner {
            o.insert("new_owner".into(), owner(v));
        }
        if let Some(v) = self.old_mode {
            o.insert("old_mode".into(), mode(v));
        }
        if let Some(v) = self.new_mode {
            o.insert("new_mode".into(), mode(v));
        }
        if !self.detail.is_empty() {
            o.insert("detail".into(), json!(self.detail));
        }
        Value::Object(o)
    }
}

/// `1 warning`, `3 warnings`.
pub fn plural(n: u32, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_and_plans_are_counted() {
        let r = Report::stage2(true);
        r.warn("x — continuing");
        r.warn_refusing("seed", Path::new("/opt/data/.env"));
        let change = Change::chown("/opt/data", Owner::new(0, 0), Owner::new(1, 1));
        let acted = r.apply(change, "planned", || Ok::<_, ()>("acted"));
        assert_eq!(acted, Ok("planned"), "a dry run does not act");
        assert_eq!(r.warnings(), 2);
        assert_eq!(r.changes(), 1);
    }

    #[test]
    fn a_warning_event_names_the_operation_path_and_errno() {
        let err = SysError::new("chown", Path::new("/opt/data/a\nb"), nix::errno::Errno::EROFS);
        let e = warning_event("t", &err);
        assert_eq!(e["type"], "warning");
        assert_eq!(e["op"], "chown");
        assert_eq!(e["path"], "/opt/data/a\\x0ab", "escaped like a log line");
        assert_eq!(e["errno"], "EROFS");
        assert!(e.get("reason").is_none());
        let refused = SysError::refused("resolve", Path::new("/x"), "owned by uid 5");
        let e = warning_event("t", &refused);
        assert_eq!(e["reason"], "owned by uid 5");
        assert!(e.get("errno").is_none());
    }

    #[test]
    fn a_change_has_one_would_line_and_one_json_object() {
        let c = Change::chown("/opt/data/x", Owner::new(0, 0), Owner::new(1000, 100));
        assert_eq!(c.would_line(), "would chown /opt/data/x 0:0 -> 1000:100");
        let j = c.to_json();
        assert_eq!(j["action"], "chown");
        assert_eq!(j["old_owner"], json!({ "uid": 0, "gid": 0 }));
        assert_eq!(j["new_owner"], json!({ "uid": 1000, "gid": 100 }));
        let m = Change::made("create", "/opt/data/.env", 0o600).owned_by(Some(Owner::new(5, 6)));
        assert_eq!(m.would_line(), "would create /opt/data/.env mode 0600");
        assert_eq!(m.to_json()["new_mode"], "0600");
        assert_eq!(m.to_json()["new_owner"], json!({ "uid": 5, "gid": 6 }));
        assert_eq!(Change::new("remove", "/a").would_line(), "would remove /a");
        assert!(Change::new("remove", "/a").to_json().get("detail").is_none());
        let chmod = Change::chmod("/a", 0o644, 0o600).to_json();
        assert_eq!(
            (&chmod["old_mode"], &chmod["new_mode"]),
            (&json!("0644"), &json!("0600"))
        );
    }

    #[test]
    fn a_real_run_acts_and_counts_only_what_it_made() {
        let r = Report::stage2(false);
        let acted = r.apply(Change::new("remove", "/a"), "planned", || Ok::<_, ()>("acted"));
        assert_eq!(acted, Ok("acted"));
        assert_eq!(
            r.apply_if(Change::new("remove", "/b"), || Ok::<_, ()>(false)),
            Ok(false)
        );
        assert_eq!(
            r.apply(Change::new("remove", "/c"), 0, || Err::<i32, _>("failed")),
            Err("failed")
        );
        r.plan_only(Change::new("wait", "/d"));
        assert_eq!(r.changes(), 1, "made: /a only");
        let dry = Report::stage2(true);
        assert_eq!(
            dry.apply_if(Change::new("remove", "/b"), || Ok::<_, ()>(false)),
            Ok(true)
        );
        dry.plan_only(Change::new("wait", "/d"));
        dry.record(Change::new("update", "/etc/passwd"));
        assert_eq!(dry.changes(), 3);
    }

    #[test]
    fn plural_forms() {
        assert_eq!(plural(1, "warning"), "1 warning");
        assert_eq!(plural(0, "warning"), "0 warnings");
        assert_eq!(plural(7, "change"), "7 changes");
    }
}
