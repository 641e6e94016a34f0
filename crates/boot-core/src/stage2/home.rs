//! `$HERMES_HOME` itself (S2-04) and the `mkdir -p` of image paths the later steps share.

use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::config::Env;
use crate::display::display_path;
use crate::error::{errno_text, SysError, SysResult};
use crate::guarded::{Dir, Entry};
use crate::report::Report;
use crate::root::RootPrefix;

/// S2-04. Creates H like `mkdir -p` as the current user and opens it without following a symlink.
/// `Err(())` after printing the fatal error. `Ok((H, None))` when H is a symlink (warned) or, in a dry
/// run, does not exist yet.
pub fn open_home(root: &RootPrefix, report: &Report, env: &Env) -> Result<(PathBuf, Option<Dir>), ()> {
    let home = crate::data_home::of(env);
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
            if let Some(why) = not_writable_without_root(&d) {
                report.error(format_args!(
                    "HERMES_HOME {} {why} — stopping",
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

/// A run without root cannot repair H's owner: when it cannot write there itself, every step and the
/// application would fail one by one. The reason, naming the owner and what to do, else `None`.
fn not_writable_without_root(dir: &Dir) -> Option<String> {
    let (uid, gid) = (rustix::process::geteuid(), rustix::process::getegid());
    if uid.is_root() {
        return None;
    }
    let access = rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK;
    rustix::fs::accessat(dir.fd(), ".", access, rustix::fs::AtFlags::EACCESS).err()?;
    let (u, g) = (uid.as_raw(), gid.as_raw());
    let owner = dir
        .meta()
        .map(|m| format!(" (owner {}:{}, mode {:04o})", m.uid, m.gid, m.perm))
        .unwrap_or_default();
    Some(format!(
        "is not writable by uid {u} gid {g}, which the container runs as{owner}; give the volume to that uid or \
group, or start as root with -e HERMES_UID={u} -e HERMES_GID={g}"
    ))
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
