//! The container boot log, `$HERMES_HOME/logs/container-boot.log` (SPEC RP-16): one line per gateway
//! action of a boot, appended by `reconcile-profiles boot` in one write and rotated at 256 KiB. Written
//! here only; the doctor reads its last line.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};

use crate::accounts::Account;
use crate::atomic::NewFile;
use crate::chown_refusal::{note_chown_refusal, owner_for};
use crate::error::SysError;
use crate::gateway_state::{display_prior, PriorExit, PriorState};
use crate::guarded::{euid, Dir, Entry};
use crate::report::{Change, Report};

/// The log's name in `H/logs`, and the name the previous one is rotated to.
pub const BOOT_LOG: &str = "container-boot.log";
const BOOT_LOG_OLD: &str = "container-boot.log.1";
/// Rotation threshold (RP-16).
pub const BOOT_LOG_ROTATE_AT: u64 = 262_144;

/// One published slot, for the report (RP-17) and the boot log (RP-16).
#[derive(Debug, Clone)]
pub struct Action {
    pub profile: String,
    pub prior: Option<PriorState>,
    pub started: bool,
    pub prior_exit: PriorExit,
}

impl Action {
    pub fn verb(&self) -> &'static str {
        if self.started {
            "started"
        } else {
            "registered"
        }
    }
}

/// Local time as `YYYY-MM-DDTHH:MM:SS±hhmm`.
pub fn local_timestamp(epoch: i64) -> String {
    // SAFETY: `localtime_r` reads the `time_t` it is given and writes only into the `tm` owned by this
    // frame; it keeps no pointer past the call. (glibc's initialises the time zone from TZ or
    // /etc/localtime on first use.) No safe wrapper exists in nix or rustix.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        let t: libc::time_t = epoch as libc::time_t;
        if libc::localtime_r(&t, &mut tm).is_null() {
            None
        } else {
            Some(tm)
        }
    };
    let Some(tm) = tm else {
        return format!("@{epoch}");
    };
    let off = tm.tm_gmtoff;
    let sign = if off < 0 { '-' } else { '+' };
    let off = off.unsigned_abs();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}{:02}",
        tm.tm_year as i64 + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        off / 3600,
        (off % 3600) / 60
    )
}

/// The RP-16 lines for a set of actions, all with the same timestamp.
pub fn boot_log_lines(actions: &[Action], timestamp: &str) -> String {
    let mut out = String::new();
    for a in actions {
        out.push_str(&format!(
            "{timestamp} profile={} prior_state={} action={} prior_exit={}\n",
            a.profile,
            display_prior(&a.prior),
            a.verb(),
            a.prior_exit.label()
        ));
    }
    out
}

/// Creates the empty log `dir/name` (0644, the runtime user's) unless something of that name exists.
fn create_log(dir: &Dir, report: &Report, name: &str, account: &Account) -> Result<(), SysError> {
    let owner = owner_for(account);
    let attempt = NewFile::create(dir, OsStr::new(name), 0o644, owner)
        .and_then(|mut f| f.publish_new(OsStr::new(name)));
    match attempt {
        Ok(_) => Ok(()),
        // A log root could not give away is still written (SPEC §0).
        Err(e) if note_chown_refusal(report, &e, &account.name) => {
            NewFile::create(dir, OsStr::new(name), 0o644, None)?.publish_new(OsStr::new(name))?;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Opens `name` in `dir` for appending without following a symlink, creating it 0644 with `owner`.
/// `Ok(None)` after a symlink was refused.
fn open_log(
    dir: &Dir,
    report: &Report,
    name: &str,
    account: &Account,
) -> Result<Option<std::fs::File>, SysError> {
    let path = dir.child(name);
    let base = OFlags::WRONLY
        | OFlags::APPEND
        | OFlags::NOFOLLOW
        | OFlags::CLOEXEC
        | OFlags::NONBLOCK
        | OFlags::NOCTTY;
    let mut created = false;
    let fd = loop {
        match rustix::fs::openat(dir.fd(), name, base, Mode::empty()) {
            Ok(fd) => break fd,
            Err(rustix::io::Errno::NOENT) if !created => {
                // Made whole (owner, then mode) before it gets its name, so a kill at any instant leaves
                // no log, or the right one: a root-owned log would stay root's on every later boot.
                created = true;
                create_log(dir, report, name, account)?;
            }
            Err(rustix::io::Errno::LOOP) => {
                report.warn_refusing("write", &path);
                return Ok(None);
            }
            Err(e) => return Err(SysError::new("open", &path, e)),
        }
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| SysError::new("stat", &path, e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(SysError::new("open", &path, nix::errno::Errno::EINVAL));
    }
    // The runtime user may hard-link any file it can write (or, without fs.protected_hardlinks, any
    // file) to this name; root must not append to it then. Stricter than CM-05's rule (which spares
    // files the runtime user owns): the walk's accepted race (CM-08) can leave a foreign file owned by
    // the runtime user, and the boot log never needs a second name.
    if crate::guarded::nlink_of(&st) > 1 {
        report.warn(format_args!(
            "refusing write of hard-linked file {} ({} links) — continuing",
            crate::display::display_path(&path),
            st.st_nlink
        ));
        return Ok(None);
    }
    Ok(Some(std::fs::File::from(fd)))
}

/// `H/logs` (0755, u:g). When root may not give it away it is kept root's, with its mode set all the same.
fn make_logs_dir(home: &Dir, report: &Report, account: &Account) -> Result<(Entry<Dir>, PathBuf), SysError> {
    match home.make_path(report, Path::new("logs"), 0o755, owner_for(account)) {
        Err(e) if note_chown_refusal(report, &e, &account.name) => {
            let made = home.make_path(report, Path::new("logs"), 0o755, None)?;
            if let (Entry::Found(d), _) = &made {
                // `mkdir` stopped at the chown, before the fchmod that makes the mode exact.
                let m = d.meta()?;
                if m.uid == euid() && m.perm != 0o755 {
                    d.chmod_self(report, 0o755)?;
                }
            }
            Ok(made)
        }
        other => other,
    }
}

/// RP-16: one append write of all lines to `H/logs/container-boot.log`, rotated at 256 KiB.
pub(crate) fn append(home: &Dir, report: &Report, actions: &[Action], account: &Account) {
    if actions.is_empty() {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let text = boot_log_lines(actions, &local_timestamp(now));
    let log_path = home.child("logs").join(BOOT_LOG);
    let append = Change::new("append", &log_path).detail(format_args!("({} lines)", actions.len()));
    let logs = match make_logs_dir(home, report, account) {
        Ok((Entry::Found(d), _)) => d,
        Ok((Entry::Symlink, at)) => {
            report.warn_refusing("write", &at);
            return;
        }
        // A dry run does not make the directory it plans.
        Ok((Entry::Missing, at)) => {
            let made = report.apply(append, (), || {
                Err(SysError::new("mkdir", at, nix::errno::Errno::ENOENT))
            });
            if let Err(e) = made {
                report.warn_err(&e);
            }
            return;
        }
        Ok((_, at)) => {
            report.warn_err(&SysError::new("mkdir", at, nix::errno::Errno::ENOTDIR));
            return;
        }
        Err(e) => {
            report.warn_err(&e);
            return;
        }
    };
    let path = logs.child(BOOT_LOG);
    let existing = match logs.stat(BOOT_LOG) {
        Ok(m) => m,
        Err(e) => return report.warn_err(&e),
    };
    if existing.is_some_and(|m| m.is_symlink()) {
        return report.warn_refusing("write", &path);
    }
    if existing.is_some_and(|m| m.size >= BOOT_LOG_ROTATE_AT) {
        let rotate = Change::new("rotate", &path).detail(format_args!("to {BOOT_LOG_OLD}"));
        let rotated = report.apply(rotate, (), || {
            rustix::fs::renameat(logs.fd(), BOOT_LOG, logs.fd(), BOOT_LOG_OLD)
                .map_err(|e| SysError::new("rotate", &path, e))
        });
        if let Err(e) = rotated {
            report.warn_err(&e);
        }
    }
    let written = report.apply(append, (), || {
        let Some(mut file) = open_log(&logs, report, BOOT_LOG, account)? else {
            return Ok(());
        };
        file.write_all(text.as_bytes())
            .map_err(|e| SysError::new("write", &path, e))
    });
    if let Err(e) = written {
        report.warn_err(&e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_shape() {
        let ts = local_timestamp(1_700_000_000);
        assert_eq!(ts.len(), 24, "{ts}");
        let b = ts.as_bytes();
        assert_eq!((b[4], b[7], b[10], b[13], b[16]), (b'-', b'-', b'T', b':', b':'));
        assert!(b[19] == b'+' || b[19] == b'-', "{ts}");
    }

    #[test]
    fn log_lines_share_one_timestamp() {
        let actions = vec![
            Action {
                profile: "default".into(),
                prior: Some(PriorState::Text("running".into())),
                started: true,
                prior_exit: PriorExit::Unclean,
            },
            Action {
                profile: "coder".into(),
                prior: None,
                started: false,
                prior_exit: PriorExit::Unknown,
            },
        ];
        assert_eq!(
            boot_log_lines(&actions, "2026-01-02T03:04:05+0000"),
            "2026-01-02T03:04:05+0000 profile=default prior_state=running action=started prior_exit=unclean\n\
             2026-01-02T03:04:05+0000 profile=coder prior_state=None action=registered prior_exit=unknown\n"
        );
    }
}
