//! Runs the ownership walk (SPEC CM-08) on one path: `repair <path> <uid>:<gid> [--dry-run]
//! [--helpers N]` (N threads besides this one share the walk; default: one per further CPU). The path's
//! owner is taken for the previous runtime uid, as `stage2-setup` takes `H`'s.
//!
//! A measuring aid for `cargo xtask bench`, which compares the walk alone with the programs that use it.

use std::path::Path;
use std::process::ExitCode;

use boot_core::guarded::{Dir, Entry};
use boot_core::handover::Handover;
use boot_core::report::Report;
use boot_core::root::RootPrefix;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(owner)) = (args.first(), args.get(1)) else {
        eprintln!("usage: repair <path> <uid>:<gid> [--dry-run] [--helpers N]");
        return ExitCode::from(2);
    };
    let Some((u, g)) = owner
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
    else {
        eprintln!("repair: bad owner {owner:?}");
        return ExitCode::from(2);
    };
    let dry_run = args.iter().skip(2).any(|a| a == "--dry-run");
    let helpers = match args.iter().position(|a| a == "--helpers") {
        Some(i) => match args.get(i + 1).and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => Some(n),
            None => {
                eprintln!("repair: --helpers needs a number");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let path = Path::new(path);
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        eprintln!("repair: {} has no parent", path.display());
        return ExitCode::from(2);
    };
    let dir = match Dir::open_anchor(&RootPrefix::none(), parent) {
        Ok(Entry::Found(d)) => d,
        Ok(other) => {
            eprintln!("repair: {} is not a directory ({other:?})", parent.display());
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("repair: {e}");
            return ExitCode::from(1);
        }
    };
    let previous = std::fs::symlink_metadata(path).map_or(0, |m| std::os::unix::fs::MetadataExt::uid(&m));
    let handover = Handover {
        owner: boot_core::owner::Owner::new(u, g),
        groups: vec![g],
        own_uids: [u, previous].into_iter().filter(|&x| x != 0).collect(),
        hardlink_ok_uid: u,
    };
    let report = Report::stage2(dry_run);
    let stats = match helpers {
        Some(n) => boot_core::ownership::repair_with_helpers(&report, &dir, name, &handover, n),
        None => boot_core::ownership::repair(&report, &dir, name, &handover),
    };
    println!(
        "checked {} changed {} warnings {}",
        stats.checked,
        stats.changed,
        report.warnings()
    );
    ExitCode::SUCCESS
}
