//! `$HERMES_HOME` itself (S2-04) and the `mkdir -p` of image paths the later steps share.

use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::error::{errno_text, SysError, SysResult};
use crate::guarded::{Dir, Entry};
use crate::report::{display_path, Report};
use crate::root::RootPrefix;

pub const DEFAULT_HOME: &str = "/opt/data";

/// H: `HERMES_HOME`, or `/opt/data` when unset or empty.
pub fn home_path() -> PathBuf {
    std::env::var_os("HERMES_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_HOME))
}

/// S2-04. Creates H like `mkdir -p` as the current user and opens it without following a symlink.
/// `Err(())` after printing the fatal error. `Ok((H, None))` when H is a symlink (warned) or, in a dry
/// run, does not exist yet.
pub fn open_home(root: &RootPrefix, report: &Report) -> Result<(PathBuf, Option<Dir>), ()> {
    let home = home_path();
    let fatal = |e: Errno| {
        report.error(format_args!(
            "cannot create HERMES_HOME {}: {}",
            display_path(&home),
            errno_text(e)
        ));
    };
    if !home.is_absolute() {
        fatal(Errno::EINVAL);
        return Err(());
    }
    let refused = |e: &SysError| {
        report.error(format_args!(
            "refusing HERMES_HOME {}: {e} — stopping",
            display_path(&home)
        ));
    };
    let planned = match make_image_dirs(root, report, &home) {
        Ok(planned) => planned,
        Err(e) if e.refusal.is_some() => {
            refused(&e);
            return Err(());
        }
        Err(e) => {
            fatal(e.errno);
            return Err(());
        }
    };
    if planned {
        // Dry run: H would be created; there is nothing in it to inspect.
        return Ok((home, None));
    }
    match Dir::open_anchor(root, &home) {
        Ok(Entry::Found(d)) => {
            if is_read_only(&d) {
                // Every later step writes there, and so does the application: refuse now, with one line,
                // rather than warn per step and start an agent that cannot keep anything.
                report.error(format_args!(
                    "HERMES_HOME {} is on a read-only file system; the data volume must be writable \
                     (mount it read-write) — stopping",
                    display_path(&home)
                ));
                return Err(());
            }
            Ok((home, Some(d)))
        }
        Ok(Entry::Symlink) => {
            report.warn_refusing("setup", &home);
            Ok((home, None))
        }
        Ok(Entry::Missing) => {
            fatal(Errno::ENOENT);
            Err(())
        }
        Ok(Entry::Other(_)) => {
            fatal(Errno::ENOTDIR);
            Err(())
        }
        Err(e) if e.refusal.is_some() => {
            refused(&e);
            Err(())
        }
        Err(e) => {
            fatal(e.errno);
            Err(())
        }
    }
}

/// Whether the file system holding the directory is mounted read-only (`ST_RDONLY`).
fn is_read_only(dir: &Dir) -> bool {
    rustix::fs::fstatvfs(dir.fd()).is_ok_and(|st| st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// `mkdir -p` of an anchor as the current user: resolved like [`Dir::open_anchor`], every missing
/// component made a directory with mode 0755. An existing last component is never followed or changed
/// (the caller opens it with `O_NOFOLLOW`). Returns `true` when, in a dry run, something would have been
/// created.
pub fn make_image_dirs(root: &RootPrefix, report: &Report, path: &Path) -> SysResult<bool> {
    match crate::anchor::resolve(root, path, Some(report))? {
        (Entry::Missing, _) => Ok(true),
        _ => Ok(false),
    }
}
