//! What the ownership repair may give the runtime user (SPEC CM-08, tightened).
//!
//! The runtime user owns `H`, so it can rename anything in it — including a root-owned `0600` file or
//! `0700` directory it cannot open — to a name the repair walks. Handing such an entry over would turn
//! "cannot read" into "owns". The rule: the repair may widen the runtime user's access from *read* to
//! *write*, never from *nothing* to *read*. It changes an entry that
//! - is a symlink (its owner grants nothing),
//! - belongs to the runtime user already (only the group differs), to the runtime uid before any remap,
//!   or to the previous runtime uid (`H`'s owner before the repair: the runtime user can never chown
//!   `H`, so that owner is the uid the last container ran as — its `0600` files are the user's own),
//! - or is readable by the runtime user through its group or other bits (a directory: readable and
//!   searchable).
//!
//! Anything else keeps its owner; the walk says so once per tree with the command that hands it over
//! when the operator knows it should be. Hard-linked files keep the CM-05 rule on top.

use std::ffi::OsStr;
use std::path::Path;

use crate::accounts::Account;
use crate::display::display_path;
use crate::error::SysResult;
use crate::guarded::{Dir, Meta};
use crate::owner::Owner;
use crate::report::Report;

/// The runtime user's identity as the repair judges entries against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// The owner entries are given (u:g).
    pub owner: Owner,
    /// The runtime user's groups (its gid and every group listing it), for the read check.
    pub groups: Vec<u32>,
    /// The uids whose entries are the runtime user's own: u₀ (before a remap) and the previous runtime
    /// uid; root is never one of them.
    pub own_uids: Vec<u32>,
    /// u₀: a hard-linked file is only changed when owned by it (CM-05).
    pub hardlink_ok_uid: u32,
}

/// What the repair does with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Already u:g.
    Right,
    /// Change it to u:g.
    Change,
    /// A hard-linked file not owned by u₀ (CM-05): left alone with a warning.
    HardLinked,
    /// Not the runtime user's and unreadable by it: left alone, reported once per tree.
    Unreadable,
}

impl Handover {
    /// For `account` (after any remap), with u₀ and the uid that owned `H` before this boot.
    pub fn new(account: &Account, u0: u32, previous_uid: u32) -> Handover {
        let mut own_uids = vec![account.uid];
        for u in [u0, previous_uid] {
            if u != 0 && !own_uids.contains(&u) {
                own_uids.push(u);
            }
        }
        Handover {
            owner: Owner::new(account.uid, account.gid),
            groups: account.group_set(),
            own_uids,
            hardlink_ok_uid: u0,
        }
    }

    /// Judges an entry from its `stat`: owner, permission bits (`st_mode & 0o7777`), link count and
    /// whether it is a directory or a symlink.
    pub fn judge(
        &self,
        uid: u32,
        gid: u32,
        perm: u32,
        nlink: u64,
        is_dir: bool,
        is_symlink: bool,
    ) -> Verdict {
        if Owner::new(uid, gid) == self.owner {
            return Verdict::Right;
        }
        if !is_dir && !is_symlink && nlink > 1 && uid != self.hardlink_ok_uid {
            return Verdict::HardLinked;
        }
        if is_symlink || self.own_uids.contains(&uid) {
            return Verdict::Change;
        }
        // The bits that apply to the runtime user: group when it is in the entry's group, else other.
        let bits = if self.groups.contains(&gid) {
            (perm >> 3) & 0o7
        } else {
            perm & 0o7
        };
        let readable = if is_dir {
            bits & 0o5 == 0o5
        } else {
            bits & 0o4 != 0
        };
        if readable {
            Verdict::Change
        } else {
            Verdict::Unreadable
        }
    }
}

/// Gives one entry of `dir` (stat'ed as `m`) to the runtime user when [`Handover::judge`] allows it;
/// otherwise says in one line why not, and what hands it over. `Ok(true)` when it was (or, in a dry run,
/// would be) changed.
pub fn hand_over_entry(dir: &Dir, report: &Report, name: &OsStr, m: &Meta, h: &Handover) -> SysResult<bool> {
    match h.judge(m.uid, m.gid, m.perm, m.nlink, m.is_dir(), m.is_symlink()) {
        Verdict::Right => Ok(false),
        // chown_entry says it in the words of CM-05.
        Verdict::Change | Verdict::HardLinked => dir.chown_entry(report, name, m, h.owner, h.hardlink_ok_uid),
        Verdict::Unreadable => {
            warn_left(report, &dir.child(name), m, h);
            Ok(false)
        }
    }
}

/// Gives the directory `d` itself to the runtime user when allowed; `Ok(false)` when it keeps its owner
/// (warned), and then nothing in it may be handed over either.
pub fn hand_over_dir(d: &Dir, report: &Report, h: &Handover) -> SysResult<bool> {
    let m = d.meta()?;
    match h.judge(m.uid, m.gid, m.perm, m.nlink, true, false) {
        Verdict::Unreadable => {
            warn_left(report, d.path(), &m, h);
            Ok(false)
        }
        _ => {
            d.chown_self(report, h.owner)?;
            Ok(true)
        }
    }
}

fn warn_left(report: &Report, path: &Path, m: &Meta, h: &Handover) {
    report.warn(format_args!(
        "left {} ({}:{} {:04o}) with its owner: the runtime user could not read it and it was not its own \
         — if it should be, run: chown -R {}:{} {} — continuing",
        display_path(path),
        m.uid,
        m.gid,
        m.perm,
        h.owner.uid,
        h.owner.gid,
        display_path(path)
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn hermes() -> Account {
        Account {
            name: "hermes".into(),
            uid: 10000,
            gid: 10000,
            home: PathBuf::from("/opt/data"),
            member_of: vec![44],
        }
    }

    #[test]
    fn nothing_becomes_readable_that_was_not() {
        let h = Handover::new(&hermes(), 10000, 10000);
        assert_eq!(h.judge(0, 0, 0o600, 1, false, false), Verdict::Unreadable);
        assert_eq!(h.judge(0, 0, 0o700, 2, true, false), Verdict::Unreadable);
        assert_eq!(
            h.judge(0, 0, 0o711, 2, true, false),
            Verdict::Unreadable,
            "search alone is not read"
        );
        assert_eq!(h.judge(0, 0, 0o640, 1, false, false), Verdict::Unreadable);
        assert_eq!(
            h.judge(0, 44, 0o640, 1, false, false),
            Verdict::Change,
            "readable through group 44"
        );
        assert_eq!(h.judge(0, 0, 0o644, 1, false, false), Verdict::Change);
        assert_eq!(h.judge(0, 0, 0o755, 2, true, false), Verdict::Change);
        assert_eq!(
            h.judge(0, 0, 0o777, 1, false, true),
            Verdict::Change,
            "a symlink's owner grants nothing"
        );
        assert_eq!(h.judge(20000, 20000, 0o600, 1, false, false), Verdict::Unreadable);
    }

    #[test]
    fn the_previous_runtime_uid_hands_over_everything_of_its_own() {
        // PUID changed from 1000 to 10000: H was 1000's.
        let h = Handover::new(&hermes(), 10000, 1000);
        assert_eq!(h.judge(1000, 1000, 0o600, 1, false, false), Verdict::Change);
        assert_eq!(h.judge(1000, 1000, 0o700, 2, true, false), Verdict::Change);
        assert_eq!(
            h.judge(10000, 0, 0o600, 1, false, false),
            Verdict::Change,
            "only the group differs"
        );
        assert_eq!(h.judge(10000, 10000, 0o600, 1, false, false), Verdict::Right);
        // A root-owned H (a fresh volume) makes root no previous runtime user.
        let h = Handover::new(&hermes(), 10000, 0);
        assert_eq!(h.judge(0, 0, 0o600, 1, false, false), Verdict::Unreadable);
    }

    #[test]
    fn hard_links_keep_the_cm05_rule() {
        let h = Handover::new(&hermes(), 10000, 1000);
        assert_eq!(h.judge(1000, 1000, 0o644, 2, false, false), Verdict::HardLinked);
        assert_eq!(h.judge(10000, 0, 0o644, 2, false, false), Verdict::Change);
    }

    /// On real directories: one the runtime user can read is handed over itself; one it cannot keeps its
    /// owner with the one warning naming the command that hands it over. Files alike.
    #[test]
    fn directories_and_files_on_disk_are_handed_over_or_left_with_one_warning() {
        use crate::guarded::Entry;
        use crate::root::RootPrefix;
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert!(
            rustix::process::geteuid().is_root(),
            "this test changes owners: run it as root"
        );
        let t = tempfile::tempdir().unwrap();
        let owner = |p: &Path| {
            let m = std::fs::symlink_metadata(p).unwrap();
            (m.uid(), m.gid())
        };
        for (name, mode) in [("open", 0o755), ("closed", 0o700)] {
            let p = t.path().join(name);
            std::fs::create_dir(&p).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        for (name, mode) in [("open/f", 0o644), ("open/secret", 0o600)] {
            let p = t.path().join(name);
            std::fs::write(&p, b"x").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let h = Handover::new(&hermes(), 10000, 0);
        let report = Report::stage2(false);
        let open_dir = |name: &str| match Dir::open_anchor(&RootPrefix::none(), &t.path().join(name)).unwrap()
        {
            Entry::Found(d) => d,
            other => panic!("{other:?}"),
        };
        let open = open_dir("open");
        assert!(hand_over_dir(&open, &report, &h).unwrap());
        assert_eq!(owner(&t.path().join("open")), (10000, 10000));
        assert_eq!(report.warnings(), 0);
        assert!(!hand_over_dir(&open_dir("closed"), &report, &h).unwrap());
        assert_eq!(owner(&t.path().join("closed")), (0, 0));
        assert_eq!(report.warnings(), 1);
        for (name, changed) in [("f", true), ("secret", false)] {
            let m = open.stat(name).unwrap().unwrap();
            assert_eq!(
                hand_over_entry(&open, &report, OsStr::new(name), &m, &h).unwrap(),
                changed,
                "{name}"
            );
        }
        assert_eq!(owner(&t.path().join("open/f")), (10000, 10000));
        assert_eq!(owner(&t.path().join("open/secret")), (0, 0));
        assert_eq!(report.warnings(), 2);
        // Right already: nothing to do, nothing said.
        let m = open.stat("f").unwrap().unwrap();
        assert!(!hand_over_entry(&open, &report, OsStr::new("f"), &m, &h).unwrap());
        assert_eq!(report.warnings(), 2);
    }
}
