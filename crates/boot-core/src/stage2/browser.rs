//! The Chromium binary for the agent's browser tool (S2-29): a pinned path baked into the image, else a
//! deterministic search of `PLAYWRIGHT_BROWSERS_PATH`, exported through the container environment
//! directory.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::atomic;
use crate::display::{display_bytes, display_path};
use crate::guarded::{Dir, Entry};
use crate::owner::Owner;
use crate::report::Change;
use crate::root::RootPrefix;

use super::home::make_image_dirs;
use super::Ctx;

/// Candidate basenames, best first: full browsers, then headless shells.
pub const BROWSER_NAMES: [&str; 5] = [
    "chrome",
    "chromium",
    "chromium-browser",
    "chrome-headless-shell",
    "headless_shell",
];
pub const PINNED_PATH_FILE: &str = "/etc/hermes/agent-browser-executable-path";
pub const EXPORT_NAME: &str = "AGENT_BROWSER_EXECUTABLE_PATH";
const ENVDIR: &str = "/run/s6/container_environment";
/// How deep below the search root a candidate may be (like `find -maxdepth 8`).
pub const MAX_DEPTH: usize = 8;

/// The rank of a basename in [`BROWSER_NAMES`], or `None` when it is no candidate name (shared
/// libraries excluded).
pub fn browser_rank(basename: &[u8]) -> Option<usize> {
    if basename.ends_with(b".so") || basename.windows(4).any(|w| w == b".so.") {
        return None;
    }
    BROWSER_NAMES.iter().position(|n| n.as_bytes() == basename)
}

/// The winner among candidates given in walk order: earliest basename in [`BROWSER_NAMES`], then first
/// in walk order.
pub fn pick_browser(candidates: &[PathBuf]) -> Option<PathBuf> {
    candidates
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((browser_rank(p.file_name()?.as_bytes())?, i, p)))
        .min_by_key(|(rank, i, _)| (*rank, *i))
        .map(|(_, _, p)| p.clone())
}

fn is_executable_file(host: &Path) -> bool {
    // Follows symlinks on purpose: a candidate may resolve to the real binary.
    std::fs::metadata(host).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Candidates below `dir` (in-container) in depth-first pre-order, names in byte order, at most
/// [`MAX_DEPTH`] levels, not entering symlinked directories. Read-only: only names are collected.
pub fn find_candidates(root: &RootPrefix, dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    // Each level: its in-container path and its remaining names, reversed so `pop` yields byte order.
    let mut stack: Vec<(PathBuf, Vec<OsString>)> = vec![(dir.to_path_buf(), sorted_names(root, dir))];
    while let Some((d, names)) = stack.last_mut() {
        let Some(name) = names.pop() else {
            stack.pop();
            continue;
        };
        let p = d.join(&name);
        let depth = stack.len();
        let host = root.path(&p);
        let Ok(lm) = std::fs::symlink_metadata(&host) else {
            continue;
        };
        if browser_rank(name.as_bytes()).is_some() && is_executable_file(&host) {
            out.push(p.clone());
        }
        if lm.is_dir() && depth < MAX_DEPTH {
            let names = sorted_names(root, &p);
            stack.push((p, names));
        }
    }
    out
}

fn sorted_names(root: &RootPrefix, dir: &Path) -> Vec<OsString> {
    let Ok(rd) = std::fs::read_dir(root.path(dir)) else {
        return Vec::new();
    };
    let mut names: Vec<OsString> = rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    names.sort_by(|a, b| b.as_bytes().cmp(a.as_bytes()));
    names
}

/// S2-29
pub fn export_browser_path(ctx: &Ctx) {
    if ctx.env_non_empty(EXPORT_NAME).is_some() {
        return;
    }
    let report = ctx.report;
    let mut chosen: Option<PathBuf> = None;
    let pinned_host = ctx.root.path(PINNED_PATH_FILE);
    if std::fs::symlink_metadata(&pinned_host).is_ok() {
        let raw =
            crate::guarded::read_image_file(ctx.root, PINNED_PATH_FILE, crate::guarded::IMAGE_FILE_LIMIT)
                .ok()
                .flatten()
                .unwrap_or_default();
        let p = raw.trim_ascii_end();
        let shown = if p.is_empty() {
            "<empty>".to_string()
        } else {
            display_bytes(p)
        };
        let path = PathBuf::from(OsStr::from_bytes(p));
        if !p.is_empty() && path.is_absolute() && is_executable_file(&ctx.root.path(&path)) {
            report.info(format_args!(
                "Using pinned agent-browser Chromium binary: {shown}"
            ));
            chosen = Some(path);
        } else {
            report.warn(format_args!(
                "baked Chromium binary is missing ({shown}); browser tool may fail — continuing"
            ));
        }
    }
    if chosen.is_none() {
        let search = ctx.env_non_empty("PLAYWRIGHT_BROWSERS_PATH").map(PathBuf::from);
        match search {
            Some(dir)
                if dir.is_absolute() && std::fs::metadata(ctx.root.path(&dir)).is_ok_and(|m| m.is_dir()) =>
            {
                match pick_browser(&find_candidates(ctx.root, &dir)) {
                    Some(p) => {
                        report.info(format_args!(
                            "Found agent-browser Chromium binary: {}",
                            display_path(&p)
                        ));
                        chosen = Some(p);
                    }
                    None => report.warn(format_args!(
                        "no Chromium binary under {}; browser tool may fail — continuing",
                        display_path(&dir)
                    )),
                }
            }
            _ => report.warn("no Chromium binary found; browser tool may fail — continuing"),
        }
    }
    if let Some(p) = chosen {
        export(ctx, &p);
    }
}

/// Writes the chosen path to the container environment directory (root-owned 0644, replaced atomically,
/// left alone when already right so a rerun changes nothing).
fn export(ctx: &Ctx, value: &Path) {
    let report = ctx.report;
    let envdir = Path::new(ENVDIR);
    match make_image_dirs(ctx.root, report, envdir) {
        Ok(true) => {
            let owner = ctx.is_root.then_some(Owner::ROOT);
            return report.plan_only(Change::made("write", envdir.join(EXPORT_NAME), 0o644).owned_by(owner));
        }
        Ok(false) => {}
        Err(e) => return report.warn_err(&e),
    }
    let dir = match Dir::open_anchor(ctx.root, envdir) {
        Ok(Entry::Found(d)) => d,
        Ok(Entry::Symlink) => return report.warn_refusing("write", envdir),
        Ok(_) => return,
        Err(e) => return report.warn_err(&e),
    };
    let name = OsStr::new(EXPORT_NAME);
    let content = value.as_os_str().as_bytes();
    let owner = ctx.is_root.then_some(Owner::ROOT);
    if let Ok(Some(m)) = dir.stat(name) {
        if m.is_file() && m.perm == 0o644 && (!ctx.is_root || (m.uid, m.gid) == (0, 0)) {
            if let Ok(Entry::Found(old)) = dir.read_regular(name, 1 << 16) {
                if old == content {
                    return;
                }
            }
        }
    }
    if let Err(e) = atomic::replace(&dir, report, name, content, 0o644, owner) {
        report.warn_err(&e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pb(v: &[&str]) -> Vec<PathBuf> {
        v.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn basename_preference_beats_walk_order() {
        let c = pb(&["/t/a/headless_shell", "/t/b/chromium", "/t/c/chrome"]);
        assert_eq!(pick_browser(&c), Some(PathBuf::from("/t/c/chrome")));
        let c = pb(&["/t/a/chromium-browser", "/t/b/chromium"]);
        assert_eq!(pick_browser(&c), Some(PathBuf::from("/t/b/chromium")));
    }

    #[test]
    fn first_in_walk_order_wins_among_equals() {
        let c = pb(&["/t/x/chrome", "/t/a/chrome"]);
        assert_eq!(pick_browser(&c), Some(PathBuf::from("/t/x/chrome")));
    }

    #[test]
    fn headless_shells_only_without_a_full_browser() {
        let c = pb(&["/t/chrome-headless-shell", "/t/headless_shell"]);
        assert_eq!(pick_browser(&c), Some(PathBuf::from("/t/chrome-headless-shell")));
        let c = pb(&["/t/headless_shell", "/t/z/chromium-browser"]);
        assert_eq!(pick_browser(&c), Some(PathBuf::from("/t/z/chromium-browser")));
    }

    #[test]
    fn shared_libraries_and_other_names_are_excluded() {
        assert_eq!(browser_rank(b"chrome.so"), None);
        assert_eq!(browser_rank(b"libchrome.so.1"), None);
        assert_eq!(browser_rank(b"chrome_crashpad_handler"), None);
        assert_eq!(browser_rank(b"chrome"), Some(0));
        assert_eq!(browser_rank(b"headless_shell"), Some(4));
        assert_eq!(pick_browser(&pb(&["/t/chrome.so", "/t/libx.so.3"])), None);
    }

    fn exe(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn walk_is_byte_ordered_depth_limited_and_skips_symlinked_dirs() {
        let t = tempfile::tempdir().unwrap();
        let root = RootPrefix::new(t.path());
        let base = t.path().join("pw");
        exe(&base.join("b/chrome"));
        exe(&base.join("a/deep/chrome"));
        exe(&base.join("B/chrome")); // 'B' < 'a' < 'b' in byte order
                                     // Not executable: no candidate.
        std::fs::create_dir_all(base.join("c")).unwrap();
        std::fs::write(base.join("c/chromium"), b"x").unwrap();
        // Too deep: 9 levels below the root.
        exe(&base.join("d/1/2/3/4/5/6/7/chrome"));
        // Exactly 8 levels: found.
        exe(&base.join("e/1/2/3/4/5/6/chromium"));
        // A symlinked directory is not entered, but a symlink to an executable is a candidate.
        let outside = tempfile::tempdir().unwrap();
        exe(&outside.path().join("chrome"));
        std::os::unix::fs::symlink(outside.path(), base.join("f")).unwrap();
        std::fs::create_dir_all(base.join("g")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("chrome"), base.join("g/chrome")).unwrap();
        // Pre-order: a subdirectory's candidates come before a later-sorting name of its parent.
        exe(&base.join("h/a/chromium"));
        exe(&base.join("h/chromium"));
        let found = find_candidates(&root, Path::new("/pw"));
        assert_eq!(
            found,
            pb(&[
                "/pw/B/chrome",
                "/pw/a/deep/chrome",
                "/pw/b/chrome",
                "/pw/e/1/2/3/4/5/6/chromium",
                "/pw/g/chrome",
                "/pw/h/a/chromium",
                "/pw/h/chromium",
            ])
        );
        assert_eq!(pick_browser(&found), Some(PathBuf::from("/pw/B/chrome")));
    }
}
