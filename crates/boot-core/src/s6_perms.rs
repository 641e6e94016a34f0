//! Group control of the static s6-rc services (SPEC SP-01 … SP-04), modelled on
//! `s6-svperms -G <group>`: the owner stays root, the runtime group may send commands and read the state.
//! Nothing is handed to the runtime user, so it cannot plant entries that root's s6-supervise would write
//! through.
//!
//! Event subscription (`s6-svperms -E`, `event/` 03730 root:g) is granted only in the legacy
//! `HERMES_GATEWAY_SLOTS=user-owned` mode: s6-supervise, as root, opens every `ftrig1*` entry of `event/`
//! for writing and follows symlinks while doing so, so a group that may create entries there can make root
//! write into any file. By default `event/` is root:g 0710 (the group may not create entries) and the
//! runtime user polls `s6-svstat` instead of using `s6-svwait`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::FileType;

use crate::error::SysError;
use crate::guarded::{Dir, Entry, Meta};
use crate::report::Report;
use crate::root::RootPrefix;
use crate::s6_slot::{ROOT_CONTROL_MODE, ROOT_EVENT_MODE, ROOT_SUPERVISE_MODE, USER_EVENT_MODE};

/// The static services' servicedirs (s6-rc's live directory).
pub const SERVICEDIRS: &str = "/run/s6-rc/servicedirs";

/// What [`grant_group_control`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The servicedirs directory does not exist (SP-02).
    NoTree,
    Done,
}

fn skipped_name(name: &[u8]) -> bool {
    name.starts_with(b".") || name.starts_with(b"s6rc-") || name.starts_with(b"s6-linux-")
}

/// Sets `root:<g>` and `mode` on the entry `name` of `dir` when it has the expected type. Absent: nothing;
/// a symlink: refused; another type: left alone. Failures warn.
fn grant(dir: &Dir, report: &Report, name: &str, kind: FileType, group: u32, mode: u32) -> Option<Meta> {
    let path = dir.child(name);
    let m = match dir.stat(name) {
        Ok(Some(m)) => m,
        Ok(None) => return None,
        Err(e) => {
            report.warn_err(&e);
            return None;
        }
    };
    if m.is_symlink() {
        report.warn_refusing("chgrp/chmod", &path);
        return None;
    }
    if m.kind != kind {
        return None;
    }
    // root-owned entries in root's tree: the hard-link exception is for root itself.
    let result = dir
        .chown_entry(
            report,
            OsStr::new(name),
            &m,
            crate::owner::Owner::new(0, group),
            0,
        )
        .and_then(|_| {
            // Re-read: a chown may clear the setgid bit of a non-directory.
            let m = dir.stat(name)?.unwrap_or(m);
            dir.chmod_entry(report, OsStr::new(name), &m, mode, 0)
        });
    if let Err(e) = result {
        report.warn_err(&e);
        return None;
    }
    Some(m)
}

fn open_child(dir: &Dir, report: &Report, name: &str) -> Option<Dir> {
    match dir.subdir(name) {
        Ok(Entry::Found(d)) => Some(d),
        Ok(Entry::Symlink) => {
            report.warn_refusing("chgrp/chmod", &dir.child(name));
            None
        }
        Ok(_) => None,
        Err(e) => {
            report.warn_err(&e);
            None
        }
    }
}

/// SP-03 for one servicedir.
fn grant_service(svc: &Dir, report: &Report, group: u32, event_mode: u32) {
    if grant(
        svc,
        report,
        "supervise",
        FileType::Directory,
        group,
        ROOT_SUPERVISE_MODE,
    )
    .is_some()
    {
        if let Some(sup) = open_child(svc, report, "supervise") {
            grant(&sup, report, "control", FileType::Fifo, group, ROOT_CONTROL_MODE);
            grant(&sup, report, "event", FileType::Directory, group, event_mode);
        }
    }
    grant(svc, report, "event", FileType::Directory, group, event_mode);
}

/// SP-02/SP-03 over `/run/s6-rc/servicedirs` (under the root prefix): each service in sorted order,
/// skipping `.`, `s6rc-` and `s6-linux-` names. `event_mode` is [`ROOT_EVENT_MODE`] or, in the legacy mode,
/// [`USER_EVENT_MODE`].
pub fn grant_group_control(
    root: &RootPrefix,
    report: &Report,
    group: u32,
    event_mode: u32,
) -> Result<Outcome, SysError> {
    let top = match Dir::open_anchor(root, Path::new(SERVICEDIRS))? {
        Entry::Found(d) => d,
        Entry::Missing => return Ok(Outcome::NoTree),
        Entry::Symlink => {
            report.warn_refusing("chgrp/chmod", Path::new(SERVICEDIRS));
            return Ok(Outcome::Done);
        }
        Entry::Other(_) => return Ok(Outcome::NoTree),
    };
    for (name, kind) in top.list()? {
        if skipped_name(name.as_bytes()) {
            continue;
        }
        match kind {
            FileType::Symlink => {
                report.warn_refusing("chgrp/chmod", &top.child(&name));
                continue;
            }
            FileType::Directory | FileType::Unknown => {}
            _ => continue,
        }
        match top.subdir(&name) {
            Ok(Entry::Found(svc)) => grant_service(&svc, report, group, event_mode),
            Ok(Entry::Symlink) => report.warn_refusing("chgrp/chmod", &top.child(&name)),
            Ok(_) => {}
            Err(e) => report.warn_err(&e),
        }
    }
    Ok(Outcome::Done)
}

/// The whole program (SP-01 … SP-04); returns the exit code.
pub fn run_supervise_perms(config: &crate::config::Config, report: &Report) -> u8 {
    let (root, user) = (&config.root, config.user.as_str());
    if crate::guarded::euid() != 0 {
        report.info("not running as root; skipping");
        return 0;
    }
    let account = match crate::accounts::lookup(root, user) {
        Ok(Some(a)) => a,
        Ok(None) => {
            report.error(format_args!("runtime user {user} not found in /etc/passwd"));
            return 1;
        }
        Err(e) => {
            report.error(&e);
            return 1;
        }
    };
    let event_mode = match crate::reconcile::SlotMode::from_value(config.env.get(crate::reconcile::ENV_SLOTS))
    {
        crate::reconcile::SlotMode::RootOwned => ROOT_EVENT_MODE,
        crate::reconcile::SlotMode::UserOwned => USER_EVENT_MODE,
    };
    match grant_group_control(root, report, account.gid, event_mode) {
        Ok(Outcome::NoTree) => {
            report.info(format_args!("{SERVICEDIRS} not present; skipping"));
            return 0;
        }
        Ok(Outcome::Done) => {}
        Err(e) => report.warn_err(&e),
    }
    report.closing(format_args!(
        "granted group {} control of static s6-rc services",
        group_name(root, account.gid)
    ));
    0
}

/// The name of a gid in `/etc/group`, else the number.
fn group_name(root: &RootPrefix, gid: u32) -> String {
    crate::accounts::read_image_file(root, crate::accounts::GROUP)
        .ok()
        .and_then(|text| {
            crate::accounts::parse_group(&text)
                .into_iter()
                .find(|g| g.gid == gid)
                .map(|g| g.name)
        })
        .unwrap_or_else(|| gid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_names_are_skipped() {
        assert!(skipped_name(b".lock"));
        assert!(skipped_name(b"s6rc-oneshot-runner"));
        assert!(skipped_name(b"s6-linux-init-shutdownd"));
        assert!(!skipped_name(b"main-hermes"));
        assert!(!skipped_name(b"dashboard"));
    }
}
