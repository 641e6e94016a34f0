//! Shared set-up for the stage2-setup temp-root tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use test_support::{run, Run, TempRoot};

pub use test_support::{require_root, HERMES_GID, HERMES_UID};

pub const U: (u32, u32) = (HERMES_UID, HERMES_GID);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_stage2-setup")
}

/// A temp root with the image's seed sources.
pub fn image() -> TempRoot {
    require_root();
    let r = TempRoot::new();
    r.write("/opt/hermes/.env.example", "# example\nOPENAI_API_KEY=\n");
    r.write("/opt/hermes/cli-config.yaml.example", "model: default\n");
    r.write("/opt/hermes/docker/SOUL.md", "You are Hermes.\n");
    r
}

/// Runs stage2-setup as root against `r` with extra environment.
pub fn stage2(r: &TempRoot, env: &[(&str, &str)]) -> Run {
    let mut c = r.command(bin());
    c.envs(env.iter().copied());
    run(&mut c)
}

pub fn stage2_args(r: &TempRoot, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = r.command(bin());
    c.args(args).envs(env.iter().copied());
    run(&mut c)
}

/// A root-owned file outside the volume that a hostile symlink points at: (in-container path).
pub fn victim_file(r: &TempRoot) -> &'static str {
    r.write("/srv/victim/secret", "TOP SECRET\n");
    r.chmod("/srv/victim/secret", 0o600);
    r.chmod("/srv/victim", 0o700);
    "/srv/victim/secret"
}

/// A root-owned directory outside the volume with one file in it.
pub fn victim_dir(r: &TempRoot) -> &'static str {
    r.write("/srv/victimdir/keep", "keep\n");
    r.chmod("/srv/victimdir/keep", 0o600);
    r.chmod("/srv/victimdir", 0o750);
    "/srv/victimdir"
}

/// Owner, mode and content (regular files) or target (symlinks) of every entry below `base`.
pub fn snapshot(base: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![base.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let what = if ft.is_symlink() {
            format!("link->{}", std::fs::read_link(&p).unwrap().display())
        } else if ft.is_file() {
            format!("file:{}", String::from_utf8_lossy(&std::fs::read(&p).unwrap()))
        } else if ft.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            stack.extend(names);
            "dir".to_string()
        } else if ft.is_fifo() {
            "fifo".into()
        } else if ft.is_socket() {
            "socket".into()
        } else {
            "other".into()
        };
        out.insert(
            p.strip_prefix(base).unwrap().to_path_buf(),
            format!("{}:{} {:04o} {what}", m.uid(), m.gid(), m.mode() & 0o7777),
        );
    }
    out
}

/// ctime (ns) of every entry below `base`.
pub fn ctimes(base: &Path) -> BTreeMap<PathBuf, i128> {
    let mut out = BTreeMap::new();
    let mut stack = vec![base.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
        out.insert(p.clone(), test_support::ctime_ns(&p));
    }
    out
}

/// Makes an executable `#!/bin/sh` script.
pub fn script(r: &TempRoot, p: &str, body: &str) {
    r.write(p, format!("#!/bin/sh\n{body}\n"));
    r.chmod(p, 0o755);
}

pub fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// The value of the single `API_SERVER_KEY=` line.
pub fn api_key(env_file: &str) -> Vec<&str> {
    env_file
        .lines()
        .filter_map(|l| l.strip_prefix("API_SERVER_KEY="))
        .collect()
}

pub fn names_with(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .as_bytes()
                .windows(needle.len())
                .any(|w| w == needle)
        })
        .collect()
}

pub fn perm(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}
