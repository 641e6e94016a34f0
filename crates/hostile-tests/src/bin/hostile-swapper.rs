//! The hostile runtime user of the race tests. Started as the runtime uid, it loops until the stop file
//! appears, swapping the entries the boot touches with symlinks and hard links to root-owned victims:
//!
//! - flip: exchange a target with a symlink (`renameat2(RENAME_EXCHANGE)`), wait a few hundred
//!   nanoseconds, exchange back — the narrowest window between a check and an act;
//! - plant / restore: leave a symlink in place of the target for a while, keeping the original aside;
//! - hard link: replace a file target with a hard link to the world-writable root-owned victim;
//! - decoy directory: exchange a target with a directory whose entries (the names the boot writes) are
//!   symlinks to victims.
//!
//! Usage: `hostile-swapper --stop FILE --seed N --victim PATH… --linkable PATH --target PATH…`
//! Every failure is ignored (the boot moves things too); on exit it prints the counts of successful moves.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use hostile_tests::Rng;
use rustix::fs::{renameat_with, RenameFlags, CWD};

/// Names the boot writes inside directories it creates or walks; the decoy directory has them all.
const DECOY_NAMES: [&str; 16] = [
    ".env",
    "auth.json",
    "config.yaml",
    "SOUL.md",
    "gateway_state.json",
    "run",
    "finish",
    "type",
    "down",
    "log",
    "supervise",
    "event",
    "control",
    "keep",
    "jobs.json",
    "container-boot.log",
];

#[derive(Default)]
struct Counts {
    flips: u64,
    plants: u64,
    restores: u64,
    hardlinks: u64,
    decoys: u64,
}

struct Args {
    stop: PathBuf,
    seed: u64,
    victims: Vec<PathBuf>,
    linkable: Option<PathBuf>,
    targets: Vec<PathBuf>,
}

fn parse_args() -> Args {
    let mut a = Args {
        stop: PathBuf::new(),
        seed: 1,
        victims: vec![],
        linkable: None,
        targets: vec![],
    };
    let mut it = std::env::args_os().skip(1);
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else { break };
        match flag.to_str() {
            Some("--stop") => a.stop = value.into(),
            Some("--seed") => a.seed = value.to_str().and_then(|s| s.parse().ok()).unwrap_or(1),
            Some("--victim") => a.victims.push(value.into()),
            Some("--linkable") => a.linkable = Some(value.into()),
            Some("--target") => a.targets.push(value.into()),
            _ => {
                eprintln!("hostile-swapper: unknown argument {flag:?}");
                std::process::exit(2);
            }
        }
    }
    if a.targets.is_empty() || a.victims.is_empty() || a.stop.as_os_str().is_empty() {
        eprintln!(
            "usage: hostile-swapper --stop FILE --seed N --victim PATH… [--linkable PATH] --target PATH…"
        );
        std::process::exit(2);
    }
    a
}

/// `dir/<prefix><name>`: the attacker's side names next to a target.
fn side(target: &Path, prefix: &str) -> PathBuf {
    let mut n = OsString::from(prefix);
    n.push(target.file_name().unwrap_or_default());
    target.with_file_name(n)
}

fn exchange(a: &Path, b: &Path) -> bool {
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).is_ok()
}

/// A victim as an absolute link target, or relative to the target's directory (both resolve the same).
fn link_target(rng: &mut Rng, victim: &Path, at: &Path) -> PathBuf {
    if rng.chance(70) {
        return victim.to_path_buf();
    }
    let depth = at
        .parent()
        .map(|p| p.components().count().saturating_sub(1))
        .unwrap_or(0);
    let mut rel = Vec::new();
    for _ in 0..depth {
        rel.extend_from_slice(b"../");
    }
    rel.extend_from_slice(
        victim
            .as_os_str()
            .as_bytes()
            .strip_prefix(b"/")
            .unwrap_or_default(),
    );
    PathBuf::from(OsString::from_vec(rel))
}

/// Removes whatever the attacker left at `p` (a symlink, a hard link, or its decoy directory).
fn clear(p: &Path) {
    if std::fs::remove_file(p).is_err() {
        let _ = std::fs::remove_dir_all(p);
    }
}

fn spin(rng: &mut Rng) {
    for _ in 0..rng.below(400) {
        std::hint::spin_loop();
    }
}

fn flip(rng: &mut Rng, a: &Args, target: &Path, c: &mut Counts) {
    let tmp = side(target, ".hx.");
    clear(&tmp);
    let victim = rng.pick(&a.victims).clone();
    if std::os::unix::fs::symlink(link_target(rng, &victim, target), &tmp).is_err() {
        return;
    }
    if exchange(&tmp, target) {
        c.flips += 1;
        spin(rng);
        let _ = exchange(&tmp, target);
    } else if std::fs::symlink_metadata(target).is_err() && std::fs::rename(&tmp, target).is_ok() {
        // Nothing there yet: the link stays until a restore removes it.
        c.plants += 1;
        return;
    }
    clear(&tmp);
}

fn plant(rng: &mut Rng, a: &Args, target: &Path, c: &mut Counts) {
    let keep = side(target, ".hk.");
    if std::fs::symlink_metadata(&keep).is_ok() {
        return restore(target, c);
    }
    let victim = rng.pick(&a.victims).clone();
    if std::os::unix::fs::symlink(link_target(rng, &victim, target), &keep).is_err() {
        return;
    }
    if exchange(&keep, target) {
        c.plants += 1;
    } else {
        clear(&keep);
    }
}

fn restore(target: &Path, c: &mut Counts) {
    let keep = side(target, ".hk.");
    if exchange(&keep, target) {
        c.restores += 1;
        clear(&keep);
    }
}

fn hardlink(a: &Args, target: &Path, c: &mut Counts) {
    let Some(linkable) = &a.linkable else { return };
    if std::fs::symlink_metadata(target)
        .map(|m| m.is_dir())
        .unwrap_or(false)
    {
        return;
    }
    let tmp = side(target, ".hl.");
    clear(&tmp);
    if std::fs::hard_link(linkable, &tmp).is_ok() {
        if std::fs::rename(&tmp, target).is_ok() {
            c.hardlinks += 1;
        } else {
            clear(&tmp);
        }
    }
}

fn decoy(rng: &mut Rng, a: &Args, target: &Path, c: &mut Counts) {
    let tmp = side(target, ".hd.");
    clear(&tmp);
    if std::fs::create_dir(&tmp).is_err() {
        return;
    }
    for name in DECOY_NAMES {
        let victim = rng.pick(&a.victims).clone();
        let _ = std::os::unix::fs::symlink(&victim, tmp.join(name));
    }
    if exchange(&tmp, target) {
        c.decoys += 1;
        spin(rng);
        if rng.chance(50) {
            let _ = exchange(&tmp, target);
        } else {
            // Leave the decoy in place; the original waits under the plant name for a restore.
            let keep = side(target, ".hk.");
            if std::fs::symlink_metadata(&keep).is_err() && std::fs::rename(&tmp, &keep).is_ok() {
                return;
            }
            let _ = exchange(&tmp, target);
        }
    }
    clear(&tmp);
}

fn main() {
    let a = parse_args();
    let mut rng = Rng::new(a.seed);
    let mut c = Counts::default();
    let mut i: u64 = 0;
    loop {
        if i % 32 == 0 && a.stop.exists() {
            break;
        }
        i += 1;
        let target = rng.pick(&a.targets).clone();
        match rng.below(10) {
            0..=4 => flip(&mut rng, &a, &target, &mut c),
            5 => plant(&mut rng, &a, &target, &mut c),
            6 | 7 => restore(&target, &mut c),
            8 => hardlink(&a, &target, &mut c),
            _ => decoy(&mut rng, &a, &target, &mut c),
        }
    }
    println!(
        "flips={} plants={} restores={} hardlinks={} decoys={}",
        c.flips, c.plants, c.restores, c.hardlinks, c.decoys
    );
}
