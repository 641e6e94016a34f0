//! Directories outside the volume the runtime user needs: `XDG_RUNTIME_DIR` (S2-14), `HERMES_REAL_HOME`
//! (S2-15) and the private scratch directory `/tmp/hermes-files` (S2-16).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::chown_refusal::is_chown_refusal;
use crate::display::display_path;
use crate::guarded::{euid, Dir, Entry};
use crate::report::Change;

use super::Ctx;

pub const SCRATCH_DIR: &str = "/tmp/hermes-files";

/// S2-14. Created (parents root 0755), adopted, chowned u:g and set to 0700.
pub fn xdg_runtime_dir(ctx: &Ctx) {
    let Some(value) = ctx.env_non_empty("XDG_RUNTIME_DIR") else {
        return;
    };
    let path = PathBuf::from(value);
    if !path.is_absolute() {
        ctx.report.warn(format_args!(
            "ignoring relative XDG_RUNTIME_DIR {} — continuing",
            display_path(&path)
        ));
        return;
    }
    user_dir(ctx, &path, 0o700, true);
}

/// S2-15. Created if missing (0755) and chowned u:g, not recursively; an existing mode is kept.
pub fn real_home(ctx: &Ctx) {
    let Some(value) = ctx.env_non_empty("HERMES_REAL_HOME") else {
        return;
    };
    let path = PathBuf::from(value);
    if !path.is_absolute() {
        return;
    }
    user_dir(ctx, &path, 0o755, false);
}

/// Resolves `path` from `/` like every anchor ([`crate::anchor`]), creates what is missing (parents root
/// 0755, the directory itself `mode`), refuses to adopt a directory owned by someone other than root or
/// u, then gives it to u:g (and `mode` when `force_mode`).
fn user_dir(ctx: &Ctx, path: &Path, mode: u32, force_mode: bool) {
    let report = ctx.report;
    let (Some(name), Some(parent)) = (path.file_name(), path.parent()) else {
        return;
    };
    let pdir = match crate::anchor::resolve(ctx.root, parent, Some(report)) {
        Ok((Entry::Found(d), _)) => d,
        Ok((Entry::Symlink, at)) => return report.warn_refusing("create", &at),
        Ok((Entry::Missing, _)) => {
            // Dry run: the parents would be created, and then the directory.
            let owner = ctx.new_file_owner();
            return report.plan_only(Change::made("create directory", path, mode).owned_by(owner));
        }
        Ok((Entry::Other(_), at)) => {
            return report.warn(format_args!(
                "cannot create {}: {} is not a directory — continuing",
                display_path(path),
                display_path(&at)
            ))
        }
        Err(e) => return report.warn_err(&e),
    };
    match pdir.stat(name) {
        Ok(Some(m)) if m.is_symlink() => return report.warn_refusing("create", path),
        Ok(Some(m)) if !m.is_dir() => {
            return report.warn(format_args!(
                "{} is not a directory — continuing",
                display_path(path)
            ))
        }
        Ok(Some(_)) => {}
        // Made u's at once, so there is nothing to adopt.
        Ok(None) => return make_for_user(ctx, &pdir, name, mode),
        Err(e) => return report.warn_err(&e),
    }
    adopt(ctx, &pdir, name, path, force_mode.then_some(mode));
}

/// Makes `pdir/name` with `mode`, u's from the start when running as root. A root that may not chown
/// (`--cap-drop CHOWN`) makes it its own instead, with the same private mode, after one warning: the
/// directory is there and nobody else can use it, and the boot goes on (S2-16). A name that appeared
/// meanwhile is left for the next boot to adopt.
fn make_for_user(ctx: &Ctx, pdir: &Dir, name: &OsStr, mode: u32) {
    let report = ctx.report;
    if let Err(e) = pdir.make_dir(report, name, mode, ctx.new_file_owner()) {
        report.warn_err(&e);
        if is_chown_refusal(&e) {
            if let Err(e) = pdir.make_dir(report, name, mode, None) {
                report.warn_err(&e);
            }
        }
    }
}

/// Opens an existing directory no-follow, refuses one owned by a stranger, chowns it u:g (root) and sets
/// `mode` when given.
fn adopt(ctx: &Ctx, pdir: &Dir, name: &OsStr, path: &Path, mode: Option<u32>) -> bool {
    let report = ctx.report;
    let d = match pdir.subdir(name) {
        Ok(Entry::Found(d)) => d,
        Ok(Entry::Symlink) => {
            report.warn_refusing("create", path);
            return false;
        }
        Ok(_) => return false,
        Err(e) => {
            report.warn_err(&e);
            return false;
        }
    };
    let m = match d.meta() {
        Ok(m) => m,
        Err(e) => {
            report.warn_err(&e);
            return false;
        }
    };
    let u = ctx.account.uid;
    if m.uid != 0 && m.uid != u {
        report.warn(format_args!(
            "{} is owned by uid {} (not root or {}) — refusing to adopt it — continuing",
            display_path(path),
            m.uid,
            ctx.user()
        ));
        return false;
    }
    // Mode first: a directory still owned by root is then already private when it is handed over.
    if let Some(mode) = mode {
        if ctx.is_root || m.uid == euid() {
            if let Err(e) = d.chmod_self(report, mode) {
                report.warn_err(&e);
            }
        }
    }
    if ctx.is_root {
        if let Err(e) = d.chown_self(report, ctx.owner()) {
            report.warn_err(&e);
            return false;
        }
    }
    true
}

/// S2-16. `/tmp/hermes-files`: a real directory, mode 0700, owned u:g (root-owned 0700 when the chown
/// is denied).
pub fn scratch_dir(ctx: &Ctx) {
    let report = ctx.report;
    let path = Path::new(SCRATCH_DIR);
    let name = OsStr::new("hermes-files");
    let tmp = match Dir::open_anchor(ctx.root, Path::new("/tmp")) {
        Ok(Entry::Found(d)) => d,
        Ok(Entry::Symlink) => return report.warn_refusing("create", Path::new("/tmp")),
        Ok(_) => {
            return report.warn(format_args!(
                "cannot create {}: /tmp is not a directory — continuing",
                SCRATCH_DIR
            ))
        }
        Err(e) => return report.warn_err(&e),
    };
    match tmp.stat(name) {
        Ok(Some(m)) if m.is_symlink() => return report.warn_refusing("create", path),
        Ok(Some(m)) if !m.is_dir() => {
            return report.warn(format_args!(
                "{SCRATCH_DIR} is not a directory; skipping — continuing"
            ))
        }
        Ok(Some(_)) => {}
        Ok(None) => return make_for_user(ctx, &tmp, name, 0o700),
        Err(e) => return report.warn_err(&e),
    }
    adopt(ctx, &tmp, name, path, Some(0o700));
}
