//! The Fly Machines API socket (S2-21): the runtime group may talk to it.

use std::ffi::OsStr;
use std::path::Path;

use rustix::fs::{AtFlags, FileType};

use crate::error::SysError;
use crate::guarded::{chmod_pinned, gid, Dir, Entry};
use crate::report::Change;

use super::Ctx;

pub const FLY_API_SOCKET: &str = "/.fly/api";

/// S2-21. Group g and group write on `/.fly/api` when it is a socket, changed through its own
/// descriptor and only where they differ.
pub fn grant_fly_socket(ctx: &Ctx) {
    if !ctx.is_root {
        return;
    }
    let report = ctx.report;
    let path = Path::new(FLY_API_SOCKET);
    let name = OsStr::new("api");
    let dir = match Dir::open_anchor(ctx.root, Path::new("/.fly")) {
        Ok(Entry::Found(d)) => d,
        Ok(Entry::Symlink) => return report.warn_refusing("chgrp/chmod", Path::new("/.fly")),
        Ok(_) => return,
        Err(e) => return report.warn_err(&e),
    };
    let m = match dir.stat(name) {
        Ok(Some(m)) => m,
        Ok(None) => return,
        Err(e) => return report.warn_err(&e),
    };
    if m.is_symlink() {
        return report.warn_refusing("chgrp/chmod", path);
    }
    if m.kind != FileType::Socket {
        return;
    }
    let g = ctx.account.gid;
    let mode = m.perm | 0o020;
    if m.gid != g || m.perm != mode {
        let change = Change::new("chgrp/chmod", path).detail(format_args!("group {g}, mode {mode:04o}"));
        let granted = report.apply_if(change, || {
            let Some(fd) = dir.pin(name, &m)? else {
                return Ok(false);
            };
            if m.gid != g {
                rustix::fs::chownat(&fd, c"", None, Some(gid(g)), AtFlags::EMPTY_PATH)
                    .map_err(|e| SysError::new("chgrp", path, e))?;
            }
            // A chgrp clears nothing on a socket, but re-apply the mode in any case: it is what U needs.
            chmod_pinned(&fd, mode).map_err(|e| SysError::new("chmod", path, e))?;
            Ok(true)
        });
        match granted {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => return report.warn_err(&e),
        }
    }
    report.info_made(format_args!(
        "Granted {} group access to the Fly Machines API socket",
        ctx.user()
    ));
}
