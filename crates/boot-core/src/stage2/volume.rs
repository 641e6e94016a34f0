//! The data volume itself: ownership repair (S2-11), the top-level allowlist (S2-12), the seeded directory
//! tree (S2-13) and the stale install-method stamp (S2-17).

use std::ffi::OsStr;
use std::path::Path;

use crate::display::display_path;
use crate::guarded::{Dir, Entry};
use crate::handover::hand_over_entry;
use crate::ownership;
use crate::privdrop::as_runtime_user;
use crate::report::Change;

use super::Ctx;

/// Trees repaired when H's owner differs from u:g, in this order (S2-11).
pub const TARGETED_TREES: &[&str] = &[
    "cron",
    "sessions",
    "logs",
    "hooks",
    "memories",
    "skills",
    "skins",
    "plans",
    "workspace",
    "home",
    "profiles",
    "pairing",
    "platforms/pairing",
];

/// Trees repaired on every boot (upstream #10270).
pub const EVERY_BOOT_TREES: &[&str] = &["profiles", "cron", "platforms/pairing", "pairing"];

/// Files directly in H whose owner is repaired on every boot (S2-12).
pub const TOP_LEVEL_ALLOWLIST: &[&str] = &[
    "auth.json",
    "auth.lock",
    ".env",
    "state.db",
    "state.db-shm",
    "state.db-wal",
    "hermes_state.db",
    "response_store.db",
    "response_store.db-shm",
    "response_store.db-wal",
    "gateway.pid",
    "gateway.lock",
    "gateway_state.json",
    "processes.json",
    "active_profile",
    "SOUL.md",
    "config.yaml",
];

/// Directories created as U when missing (S2-13), parents before children.
pub const SEEDED_DIRS: &[&str] = &[
    "backups",
    "cron",
    "sessions",
    "logs",
    "logs/gateways",
    "hooks",
    "memories",
    "skills",
    "skins",
    "plans",
    "workspace",
    "home",
    "pairing",
    "platforms",
    "platforms/pairing",
];

/// Opens the parent of a relative `a/b` (or H itself for `b`) without following symlinks. `None` after
/// warning about a symlinked intermediate component with `action`.
fn parent_of(ctx: &Ctx, home: &Dir, rel: &str, action: &str) -> Option<(Dir, String)> {
    let (dir_part, name) = match rel.rsplit_once('/') {
        Some((d, n)) => (Some(d), n.to_string()),
        None => (None, rel.to_string()),
    };
    let Some(dir_part) = dir_part else {
        return dup(ctx, home).map(|d| (d, name));
    };
    match home.open_path(Path::new(dir_part)) {
        Ok((Entry::Found(d), _)) => Some((d, name)),
        Ok((Entry::Symlink, at)) => {
            if !action.is_empty() {
                ctx.report.warn_refusing(action, &at);
            }
            None
        }
        Ok(_) => None,
        Err(e) => {
            ctx.report.warn_err(&e);
            None
        }
    }
}

fn dup(ctx: &Ctx, d: &Dir) -> Option<Dir> {
    match d.fd().try_clone_to_owned() {
        Ok(fd) => Some(Dir::from_fd(fd, d.path())),
        Err(e) => {
            ctx.report
                .warn_err(&crate::error::SysError::new("dup", d.path(), e));
            None
        }
    }
}

/// S2-11. The targeted set when H's owner differs (then H itself, last), else the every-boot trees;
/// `logs/gateways` non-recursively on every boot.
pub fn repair_ownership(ctx: &Ctx) {
    if !ctx.is_root {
        return;
    }
    let Some(home) = &ctx.home_dir else { return };
    let crate::owner::Owner { uid: u, gid: g } = ctx.owner();
    let hmeta = match home.meta() {
        Ok(m) => m,
        Err(e) => return ctx.report.warn_err(&e),
    };
    let handover = &ctx.handover;
    // One refusal speaks for the whole volume: one warning per boot, not one per tree.
    let refused = std::cell::Cell::new(false);
    let walk = |rel: &str| {
        if refused.get() {
            return;
        }
        if let Some((parent, name)) = parent_of(ctx, home, rel, "recursive chown") {
            let stats = ownership::repair(ctx.report, &parent, OsStr::new(&name), handover);
            refused.set(stats.refused);
        }
    };
    let targeted = hmeta.uid != u || hmeta.gid != g;
    if targeted {
        ctx.report.info(format_args!(
            "Fixing ownership of {} (targeted) to {} ({u}:{g})",
            display_path(&ctx.home),
            ctx.user()
        ));
        for rel in TARGETED_TREES {
            walk(rel);
        }
    } else {
        for rel in EVERY_BOOT_TREES {
            walk(rel);
        }
    }
    if refused.get() {
        ctx.chown_refused
            .store(true, std::sync::atomic::Ordering::Relaxed);
        return;
    }
    // Upstream #45258: the gateways' log directory must be writable even when `logs` itself is not
    // walked. Already right after a targeted walk, so this is then a no-op.
    if let Some((logs, name)) = parent_of(ctx, home, "logs/gateways", "chown") {
        match logs.stat(&name) {
            Ok(Some(m)) if m.is_dir() => {
                if let Err(e) = hand_over_entry(&logs, ctx.report, OsStr::new(&name), &m, handover) {
                    ctx.report.warn_err(&e);
                }
            }
            Ok(Some(m)) if m.is_symlink() => ctx.report.warn_refusing("chown", &logs.child(&name)),
            Ok(_) => {}
            Err(e) => ctx.report.warn_err(&e),
        }
    }
    if targeted {
        // Last, so an interrupted repair is retried on the next boot.
        if let Err(e) = home.chown_self(ctx.report, ctx.owner()) {
            ctx.report.warn_err(&e);
        }
    }
}

/// S2-12. Owners of the allowlisted top-level files, then the modes of `.env`, `config.yaml` and
/// `SOUL.md`. No other entry of H is touched.
pub fn repair_top_level(ctx: &Ctx) {
    let Some(home) = &ctx.home_dir else { return };
    let caller = crate::guarded::euid();
    let handover = &ctx.handover;
    for &name in TOP_LEVEL_ALLOWLIST {
        let os = OsStr::new(name);
        let mut m = match home.stat(os) {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(e) => {
                ctx.report.warn_err(&e);
                continue;
            }
        };
        if m.is_symlink() {
            ctx.report.warn_refusing("chown", &home.child(os));
            continue;
        }
        if ctx.is_root && !ctx.chown_refused.load(std::sync::atomic::Ordering::Relaxed) {
            match hand_over_entry(home, ctx.report, os, &m, handover) {
                // After a change (planned or made) the entry is looked at again, as it now is.
                Ok(true) => match home.stat(os) {
                    Ok(Some(now)) if now.ino == m.ino => m = now,
                    Ok(_) => continue,
                    Err(e) => {
                        ctx.report.warn_err(&e);
                        continue;
                    }
                },
                Ok(_) => {}
                Err(e) => {
                    ctx.report.warn_err(&e);
                    continue;
                }
            }
        }
        if !m.is_file() {
            continue;
        }
        let wanted = match name {
            ".env" => 0o600,
            "config.yaml" => 0o640,
            "SOUL.md" => m.perm | 0o600,
            _ => continue,
        };
        // Not root: only what the caller owns can be chmodded.
        if !ctx.is_root && m.uid != caller {
            continue;
        }
        if let Err(e) = home.chmod_entry(ctx.report, os, &m, wanted, ctx.u0) {
            ctx.report.warn_err(&e);
        }
    }
}

/// S2-13. Missing directories of the seeded tree, created as U with mode 0755. Anything already there,
/// of any type, is left alone.
pub fn seed_directory_tree(ctx: &Ctx) {
    let home_dir;
    let home = match &ctx.home_dir {
        Some(h) => h,
        None => {
            if ctx.report.dry_run() {
                return;
            }
            // H is a symlink: the tree is created as U, who may follow it (it is U's own link), so open H
            // with U's credentials.
            match as_runtime_user(&ctx.account, || {
                rustix::fs::open(
                    ctx.root.path(&ctx.home),
                    rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
            }) {
                Ok(Ok(fd)) => {
                    home_dir = Dir::from_fd(fd, &ctx.home);
                    &home_dir
                }
                Ok(Err(_)) => return,
                Err(e) => return ctx.report.warn_err(&e),
            }
        }
    };
    let owner = Some(ctx.owner());
    // What a dry run planned but could not make: the directories below those are planned too.
    let mut only_planned: Vec<&str> = Vec::new();
    for rel in SEEDED_DIRS {
        if rel
            .rsplit_once('/')
            .is_some_and(|(d, _)| only_planned.contains(&d))
        {
            let change = Change::made("create directory", home.child(rel), 0o755).owned_by(owner);
            ctx.report.plan_only(change);
            only_planned.push(rel);
            continue;
        }
        let Some((parent, name)) = parent_of(ctx, home, rel, "") else {
            continue;
        };
        match parent.stat(&name) {
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(e) => {
                ctx.report.warn_err(&e);
                continue;
            }
        }
        let change = Change::made("create directory", parent.child(&name), 0o755).owned_by(owner);
        let made = ctx.report.apply(change, false, || {
            as_runtime_user(&ctx.account, || parent.mkdir(&name, 0o755, None)).and_then(|r| r.map(|_| true))
        });
        match made {
            Ok(true) => {}
            Ok(false) => only_planned.push(rel),
            Err(e) => ctx.report.warn_err(&e),
        }
    }
}

/// S2-17. A regular `.install_method` whose trimmed content is exactly `docker` is removed.
pub fn remove_install_method_stamp(ctx: &Ctx) {
    let Some(home) = &ctx.home_dir else { return };
    let name = OsStr::new(".install_method");
    match home.read_regular(name, 4096) {
        Ok(Entry::Found(bytes)) if is_docker_stamp(&bytes) => {
            if let Err(e) = home.unlink(ctx.report, name) {
                ctx.report.warn_err(&e);
            }
        }
        Ok(_) => {}
        // A larger file is not the stamp.
        Err(e) if e.errno == nix::errno::Errno::EFBIG => {}
        Err(e) => ctx.report.warn_err(&e),
    }
}

/// The stamp an older image wrote: `docker` with any surrounding whitespace.
pub fn is_docker_stamp(content: &[u8]) -> bool {
    content.trim_ascii() == b"docker"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_method_stamp_is_exactly_docker_modulo_whitespace() {
        for yes in [&b"docker"[..], b"docker\n", b"  docker \r\n", b"\tdocker"] {
            assert!(is_docker_stamp(yes), "{yes:?}");
        }
        for no in [
            &b""[..],
            b"Docker",
            b"docker pip",
            b"pip",
            b"dock er",
            b"docker\0",
        ] {
            assert!(!is_docker_stamp(no), "{no:?}");
        }
    }

    #[test]
    fn seeded_tree_lists_parents_before_children() {
        for (i, rel) in SEEDED_DIRS.iter().enumerate() {
            if let Some((parent, _)) = rel.rsplit_once('/') {
                assert!(SEEDED_DIRS[..i].contains(&parent), "{rel}");
            }
        }
        assert_eq!(TOP_LEVEL_ALLOWLIST.len(), 17);
        assert_eq!(TARGETED_TREES.len(), 13);
    }
}
