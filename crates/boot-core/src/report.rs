//! Output lines of SPEC CM-04 and the dry-run plan of CM-11.
//!
//! Every program owns one [`Report`]. It prints information and warnings with the program's prefix, counts
//! warnings for the closing summary, and — in a dry run — prints and counts the `would …` lines that stand
//! in for changes. Warning and error lines also go to the boot record when the program keeps one
//! ([`crate::boot_record`]). It is `Sync` so a parallel walk can share it.

use std::fmt::Display;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use crate::boot_record::BootRecord;
use crate::display::display_path;
use crate::error::SysError;

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
    warnings: AtomicU32,
    planned: AtomicU32,
    /// Where warnings and errors are also kept for the doctor, once the program has opened it.
    record: OnceLock<BootRecord>,
}

impl Report {
    pub fn new(prefix: &'static str, style: WarnStyle, sink: Sink, dry_run: bool) -> Self {
        Report {
            prefix,
            style,
            sink,
            dry_run,
            warnings: AtomicU32::new(0),
            planned: AtomicU32::new(0),
            record: OnceLock::new(),
        }
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
    /// `would …` lines printed so far.
    pub fn planned(&self) -> u32 {
        self.planned.load(Ordering::Relaxed)
    }

    /// From now on, warning and error lines are also added to `record`.
    pub fn keep_record(&self, record: BootRecord) {
        let _ = self.record.set(record);
    }

    /// `<prefix> <msg>`
    pub fn info(&self, msg: impl Display) {
        self.line(self.sink, &format!("{} {}", self.prefix, msg));
    }

    /// `<prefix> Warning: <msg>` — counted. The caller supplies the tail (`— continuing` or `; continuing`)
    /// because the spec's messages differ there.
    pub fn warn(&self, msg: impl Display) {
        self.warnings.fetch_add(1, Ordering::Relaxed);
        let word = match self.style {
            WarnStyle::Bracketed => "Warning:",
            WarnStyle::Shouted => "WARNING:",
        };
        self.recorded_line(self.sink, &format!("{} {} {}", self.prefix, word, msg));
    }

    /// `<prefix> Warning: <op> <path>: <ERRNO> (<description>) — continuing`
    pub fn warn_err(&self, err: &SysError) {
        self.warn(format_args!("{err} — continuing"));
    }

    /// `<prefix> Warning: refusing <action> through symlinked path <path> — continuing` (CM-05).
    pub fn warn_refusing(&self, action: &str, path: &Path) {
        self.warn(format_args!(
            "refusing {action} through symlinked path {} — continuing",
            display_path(path)
        ));
    }

    /// `<prefix> ERROR: <msg>` on stderr (fatal conditions).
    pub fn error(&self, msg: impl Display) {
        self.recorded_line(Sink::Stderr, &format!("{} ERROR: {}", self.prefix, msg));
    }

    /// `would <action> <path> [detail]` on stdout (CM-11) — counted.
    pub fn would(&self, action: &str, path: &Path, detail: impl Display) {
        self.planned.fetch_add(1, Ordering::Relaxed);
        let detail = detail.to_string();
        let line = if detail.is_empty() {
            format!("would {action} {}", display_path(path))
        } else {
            format!("would {action} {} {detail}", display_path(path))
        };
        self.line(Sink::Stdout, &line);
    }

    fn recorded_line(&self, sink: Sink, text: &str) {
        self.line(sink, text);
        if let Some(r) = self.record.get() {
            r.add(text);
        }
    }

    fn line(&self, sink: Sink, text: &str) {
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
        r.would("chown", Path::new("/opt/data"), "to 1:1");
        assert_eq!(r.warnings(), 2);
        assert_eq!(r.planned(), 1);
    }

    #[test]
    fn plural_forms() {
        assert_eq!(plural(1, "warning"), "1 warning");
        assert_eq!(plural(0, "warning"), "0 warnings");
        assert_eq!(plural(7, "change"), "7 changes");
    }
}
