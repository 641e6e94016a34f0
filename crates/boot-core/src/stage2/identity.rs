//! Who the runtime user is, and making it the identity the operator asked for (SPEC S2-02, S2-03,
//! S2-05 … S2-10).
//!
//! [`preflight`] holds the two fatal checks. [`remap`] applies the uid/gid remap and the supplementary
//! groups in one locked update of the account files ([`crate::account_db`]). The decisions themselves are
//! made by [`plan`], a pure function of the account files, the requested ids and the group sources, so the
//! real run and the dry run cannot disagree: the real run prints the plan's messages after the files were
//! written, the dry run prints its `would …` lines instead.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::Duration;

use crate::account_db::{self, Changes, Plan, Snapshot, UpdateOptions};
use crate::accounts::{self, Account};
use crate::display::display_bytes;
use crate::guarded::euid;
use crate::ids::{self, IdVars, Target};
use crate::report::{Change, Report};
use crate::root::RootPrefix;

/// The runtime user after S2-05 … S2-10.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// As passwd records it after this run's edits (unchanged in a dry run or when `/etc` is read-only).
    pub account: Account,
    /// The uid before this run changed anything.
    pub u0: u32,
    pub is_root: bool,
}

/// S2-02 (the user must exist) and S2-03 (the `--user` guard). Prints the error lines itself; `Err(())`
/// means: exit 1, nothing was changed.
// The error carries nothing on purpose: it has been printed, and the only thing left to decide is the exit
// status.
#[allow(clippy::result_unit_err)]
pub fn preflight(root: &RootPrefix, report: &Report, user: &str) -> Result<Account, ()> {
    let account = match accounts::lookup(root, user) {
        Ok(Some(a)) => a,
        Ok(None) => {
            report.error(format_args!("runtime user {user} not found in /etc/passwd"));
            return Err(());
        }
        Err(e) => {
            report.error(format_args!("runtime user {user} not found in /etc/passwd ({e})"));
            return Err(());
        }
    };
    // Any `--user UID:GID` is accepted: without root nothing can be remapped, and the ids the container
    // was given are the runtime user's for this run.
    if euid() != 0 {
        return Ok(accounts::unprivileged(account));
    }
    Ok(account)
}

/// S2-05 … S2-10, in order. Prints its own lines and warnings; never fails (warns and continues). A dry
/// run prints `would …` lines and edits nothing. `env` looks a variable up; a value that is not UTF-8
/// should be passed lossily converted (it is then invalid).
pub fn remap(
    root: &RootPrefix,
    report: &Report,
    account: Account,
    env: &dyn Fn(&str) -> Option<String>,
) -> Identity {
    remap_with_lock_timeout(root, report, account, env, account_db::LOCK_TIMEOUT)
}

/// [`remap`] with another give-up time for `/etc/.pwd.lock` (tests of the lock contention use a short one).
pub fn remap_with_lock_timeout(
    root: &RootPrefix,
    report: &Report,
    account: Account,
    env: &dyn Fn(&str) -> Option<String>,
    lock_timeout: Duration,
) -> Identity {
    let u0 = account.uid;
    // S2-05
    if euid() != 0 {
        report_unprivileged(report, &account, env);
        return Identity {
            account,
            u0,
            is_root: false,
        };
    }

    // S2-06
    let request = Request {
        uid: requested_id(report, ids::UID_VARS, env),
        gid: requested_id(report, ids::GID_VARS, env),
    };

    // S2-07, S2-08, S2-10 as one plan; S2-09 when the files cannot be replaced.
    let sources = group_sources(root);
    let opts = UpdateOptions {
        dry_run: report.dry_run(),
        lock_timeout,
    };
    let user = account.name.clone();
    match account_db::update(root, opts, |snap| plan(snap, &user, &request, &sources)) {
        Ok(events) => emit(report, &events),
        Err(e) => report.warn(e.warning()),
    }

    // CM-03: re-read what passwd now holds (a failed or partial update included).
    let account = if report.dry_run() {
        // Nothing was edited: later steps plan against the ids the edit would have set.
        Account {
            uid: request.uid.unwrap_or(account.uid),
            gid: request.gid.unwrap_or(account.gid),
            ..account
        }
    } else {
        match accounts::lookup(root, &user) {
            Ok(Some(a)) => a,
            _ => account,
        }
    };
    report_identity(root, report, &account);
    Identity {
        account,
        u0,
        is_root: true,
    }
}

/// The per-boot identity line of a run as root: who the services will run as, after the remap, with
/// the names the groups have in `/etc/group` (the ids a `--group-add` or a device group brought).
fn report_identity(root: &RootPrefix, report: &Report, account: &Account) {
    report.info(accounts::describe(root, account));
}

/// S2-05: the one line of a run without root, and a warning when remap variables ask for what only root
/// can do.
fn report_unprivileged(report: &Report, account: &Account, env: &dyn Fn(&str) -> Option<String>) {
    let groups = account.group_set();
    let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
    report.info(format_args!(
        "running as uid {} gid {} (groups {}) without root: skipping UID/GID remap, group setup and \
ownership repair, which only root can do",
        account.uid,
        account.gid,
        groups.join(",")
    ));
    let asked: Vec<&str> = [ids::UID_VARS, ids::GID_VARS]
        .iter()
        .flat_map(|v| [v.primary, v.alias])
        .filter(|name| env(name).is_some_and(|v| !v.is_empty()))
        .collect();
    if !asked.is_empty() {
        report.warn(format_args!(
            "ignoring {}: a remap needs the container to start as root (drop --user) — continuing",
            asked.join(", ")
        ));
    }
}

/// S2-06 for one id: prints the `overrides` line and the invalid-value warning; the valid target, if any.
fn requested_id(report: &Report, vars: IdVars, env: &dyn Fn(&str) -> Option<String>) -> Option<u32> {
    let sel = ids::select(vars, env);
    if sel.overrides {
        report.info(format_args!("{} overrides {}", vars.primary, vars.alias));
    }
    match sel.target {
        Target::Unset => None,
        Target::Valid { id, .. } => Some(id),
        Target::Invalid { var, value } => {
            report.warn(format_args!(
                "ignoring {var}='{}': must be a decimal number from {} to {} — continuing",
                display_bytes(value.as_bytes()),
                ids::MIN_ID,
                ids::MAX_ID
            ));
            None
        }
    }
}

/// Remap targets that passed S2-06.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Request {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Where a supplementary group came from (S2-10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// A socket or device; a GID-0 owner is warned about.
    File,
    /// PID 1's `Groups:` line (`docker run --group-add`); a 0 there is ignored silently.
    Pid1,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSource {
    /// The path, or `supplementary group of PID 1`.
    pub label: String,
    pub gid: u32,
    pub kind: SourceKind,
}

pub const PID1_LABEL: &str = "supplementary group of PID 1";

/// The S2-10 sources, in order: the Docker sockets that are sockets, the character devices directly in
/// `/dev/dri` (by name), PID 1's supplementary groups (ascending). Unreadable sources are skipped.
pub fn group_sources(root: &RootPrefix) -> Vec<GroupSource> {
    let mut out = Vec::new();
    for sock in ["/var/run/docker.sock", "/run/docker.sock"] {
        // These are image paths (or the operator's bind mounts), so a symlinked /var/run is followed.
        if let Ok(m) = std::fs::metadata(root.path(sock)) {
            if m.file_type().is_socket() {
                out.push(GroupSource {
                    label: sock.to_string(),
                    gid: m.gid(),
                    kind: SourceKind::File,
                });
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(root.path("/dev/dri")) {
        let mut names: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let inside = Path::new("/dev/dri").join(&name);
            if let Ok(m) = std::fs::symlink_metadata(root.path(&inside)) {
                if m.file_type().is_char_device() {
                    out.push(GroupSource {
                        label: display_bytes(inside.as_os_str().as_bytes()),
                        gid: m.gid(),
                        kind: SourceKind::File,
                    });
                }
            }
        }
    }
    if let Ok(status) = std::fs::read(root.path("/proc/1/status")) {
        for gid in status_groups(&status) {
            out.push(GroupSource {
                label: PID1_LABEL.to_string(),
                gid,
                kind: SourceKind::Pid1,
            });
        }
    }
    out
}

/// The gids of the `Groups:` line of a `/proc/<pid>/status`, ascending, without duplicates.
pub fn status_groups(status: &[u8]) -> Vec<u32> {
    let mut gids: Vec<u32> = status
        .split(|b| *b == b'\n')
        .find_map(|l| l.strip_prefix(b"Groups:"))
        .map(|rest| {
            rest.split(|b| b.is_ascii_whitespace())
                .filter_map(|t| std::str::from_utf8(t).ok()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    gids.sort_unstable();
    gids.dedup();
    gids
}

/// One thing the plan has to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An information line, printed in real and dry runs.
    Note(String),
    /// A warning (with its `— continuing` tail), printed in real and dry runs.
    Warn(String),
    /// A change: `say` lines in a real run (after the files were written), `would update <file> <detail>`
    /// lines in a dry run.
    Change {
        say: Vec<String>,
        would: Vec<(&'static str, String)>,
    },
}

/// Decides S2-07, S2-08 and S2-10 on the given account files: the edits and the messages.
pub fn plan(snap: &Snapshot, user: &str, req: &Request, sources: &[GroupSource]) -> Plan<Vec<Event>> {
    let mut ev = Vec::new();
    let mut passwd = snap.passwd.clone();
    let mut group = snap.group.clone();
    let mut gshadow = snap.gshadow.clone();

    let Some(before) = accounts::account_from(&passwd, &group, user) else {
        ev.push(Event::Warn(format!(
            "runtime user {user} is no longer in /etc/passwd; skipping UID/GID remap and group setup — continuing"
        )));
        return Plan {
            changes: Changes::default(),
            value: ev,
        };
    };

    // S2-07
    if let Some(n) = req.uid.filter(|n| *n != before.uid) {
        ev.push(Event::Change {
            say: vec![format!("Changing {user} UID to {n}")],
            would: vec![(
                account_db::PASSWD,
                format!("uid of {user} from {} to {n}", before.uid),
            )],
        });
        if let Some(other) = accounts::parse_passwd(&passwd)
            .into_iter()
            .find(|e| e.uid == n && e.name != user)
        {
            ev.push(Event::Warn(format!(
                "UID {n} is already used by account {}; sharing it — continuing",
                other.name
            )));
        }
        if let Some(p) = account_db::set_uid(&passwd, user, n) {
            passwd = p;
        }
    }

    // S2-08
    if let Some(n) = req.gid.filter(|n| *n != before.gid) {
        let g = before.gid;
        let mut would = Vec::new();
        let mut warns = Vec::new();
        if let Some(name) = account_db::group_name_of(&group, n) {
            warns.push(format!(
                "GID {n} is already used by group {name}; sharing it — continuing"
            ));
        }
        match account_db::change_gid(&group, g, n) {
            Some((new_group, name)) => {
                would.push((account_db::GROUP, format!("gid of group {name} from {g} to {n}")));
                group = new_group;
            }
            None => warns.push(format!(
                "no group in /etc/group has GID {g}; changing only the primary GID in /etc/passwd — continuing"
            )),
        }
        if let Some((new_passwd, count)) = account_db::set_primary_gid(&passwd, g, n) {
            let accounts = if count == 1 { "account" } else { "accounts" };
            would.push((
                account_db::PASSWD,
                format!("primary gid of {count} {accounts} from {g} to {n}"),
            ));
            passwd = new_passwd;
        }
        ev.push(Event::Change {
            say: vec![format!("Changing {user} GID to {n}")],
            would,
        });
        ev.extend(warns.into_iter().map(Event::Warn));
    }

    // S2-10, against the identity after the remap.
    let mut account = accounts::account_from(&passwd, &group, user).unwrap_or(before);
    let mut handled: Vec<u32> = Vec::new();
    for src in sources {
        if handled.contains(&src.gid) {
            continue;
        }
        handled.push(src.gid);
        let (gid, label) = (src.gid, &src.label);
        if gid == 0 {
            if src.kind == SourceKind::File {
                ev.push(Event::Warn(format!(
                    "{label} is owned by GID 0; not adding {user} to the root group — continuing"
                )));
            }
            continue;
        }
        if gid == account.gid || account.member_of.contains(&gid) {
            ev.push(Event::Note(format!("{user} already in group {gid} for {label}")));
            continue;
        }
        if let Some((new_group, name)) = account_db::add_member(&group, gid, user) {
            group = new_group;
            let mut would = vec![(
                account_db::GROUP,
                format!("add {user} to group {name} (GID {gid})"),
            )];
            if let Some(gs) = gshadow
                .as_deref()
                .and_then(|gs| account_db::add_gshadow_member(gs, &name, user))
            {
                gshadow = Some(gs);
                would.push((account_db::GSHADOW, format!("add {user} to group {name}")));
            }
            ev.push(Event::Change {
                say: vec![format!("Added {user} to group {name} (GID {gid}) for {label}")],
                would,
            });
            account.member_of.push(gid);
            continue;
        }
        let name = format!("hostgid{gid}");
        if let Some(other) = account_db::gid_of_group(&group, &name) {
            ev.push(Event::Warn(format!(
                "group {name} already exists with GID {other}; not adding {user} to a group for {label} — continuing"
            )));
            continue;
        }
        group = account_db::append_group(&group, &name, gid, user);
        let mut would = vec![(
            account_db::GROUP,
            format!("append group {name} (GID {gid}) with member {user}"),
        )];
        if let Some(gs) = gshadow.as_deref() {
            if account_db::has_gshadow_entry(gs, &name) {
                if let Some(new_gs) = account_db::add_gshadow_member(gs, &name, user) {
                    gshadow = Some(new_gs);
                    would.push((account_db::GSHADOW, format!("add {user} to group {name}")));
                }
            } else {
                gshadow = Some(account_db::append_gshadow(gs, &name, user));
                would.push((
                    account_db::GSHADOW,
                    format!("append group {name} with member {user}"),
                ));
            }
        }
        ev.push(Event::Change {
            say: vec![
                format!("Created group {name} (GID {gid}) for {label}"),
                format!("Added {user} to group {name} (GID {gid}) for {label}"),
            ],
            would,
        });
        account.member_of.push(gid);
    }

    let changed = |new: Vec<u8>, old: &[u8]| (new != old).then_some(new);
    let changes = Changes {
        passwd: changed(passwd, &snap.passwd),
        group: changed(group, &snap.group),
        gshadow: match (gshadow, &snap.gshadow) {
            (Some(new), Some(old)) => changed(new, old),
            _ => None,
        },
    };
    Plan { changes, value: ev }
}

/// Prints a plan's messages: `say` lines in a real run, `would` lines in a dry run.
fn emit(report: &Report, events: &[Event]) {
    for e in events {
        match e {
            Event::Note(m) => report.info(m),
            Event::Warn(m) => report.warn(m),
            Event::Change { say, would } => {
                for (file, detail) in would {
                    report.record(Change::new("update", file).detail(detail));
                }
                for line in say {
                    report.info_made(line);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
hermes:x:10000:10000::/opt/data:/bin/sh\n\
alice:x:1000:1000::/home/alice:/bin/sh\n";
    const GROUP: &[u8] = b"root:x:0:\nvideo:x:44:\nnogroup:x:65534:\nhermes:x:10000:\nusers:x:100:\n";

    fn snap(gshadow: Option<&[u8]>) -> Snapshot {
        Snapshot {
            passwd: PASSWD.to_vec(),
            group: GROUP.to_vec(),
            gshadow: gshadow.map(<[u8]>::to_vec),
        }
    }

    fn file(label: &str, gid: u32) -> GroupSource {
        GroupSource {
            label: label.into(),
            gid,
            kind: SourceKind::File,
        }
    }

    fn pid1(gid: u32) -> GroupSource {
        GroupSource {
            label: PID1_LABEL.into(),
            gid,
            kind: SourceKind::Pid1,
        }
    }

    fn says(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .flat_map(|e| match e {
                Event::Note(m) => vec![m.clone()],
                Event::Warn(m) => vec![format!("Warning: {m}")],
                Event::Change { say, .. } => say.clone(),
            })
            .collect()
    }

    #[test]
    fn nothing_requested_changes_nothing() {
        let p = plan(&snap(None), "hermes", &Request::default(), &[]);
        assert!(p.changes.is_empty());
        assert!(p.value.is_empty());
    }

    #[test]
    fn uid_and_gid_remap_in_one_plan() {
        let req = Request {
            uid: Some(1001),
            gid: Some(1001),
        };
        let p = plan(&snap(None), "hermes", &req, &[]);
        assert_eq!(
            says(&p.value),
            vec!["Changing hermes UID to 1001", "Changing hermes GID to 1001"]
        );
        let passwd = p.changes.passwd.unwrap();
        let group = p.changes.group.unwrap();
        let a = accounts::account_from(&passwd, &group, "hermes").unwrap();
        assert_eq!((a.uid, a.gid), (1001, 1001));
        assert!(String::from_utf8_lossy(&group).contains("hermes:x:1001:\n"));
    }

    #[test]
    fn gid_only_remap_leaves_the_uid() {
        let req = Request {
            uid: None,
            gid: Some(2000),
        };
        let p = plan(&snap(None), "hermes", &req, &[]);
        assert_eq!(says(&p.value), vec!["Changing hermes GID to 2000"]);
        let passwd = p.changes.passwd.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&passwd).lines().nth(2),
            Some("hermes:x:10000:2000::/opt/data:/bin/sh")
        );
    }

    #[test]
    fn target_equal_to_current_is_no_change() {
        let req = Request {
            uid: Some(10000),
            gid: Some(10000),
        };
        let p = plan(&snap(None), "hermes", &req, &[]);
        assert!(p.changes.is_empty());
        assert!(p.value.is_empty());
    }

    #[test]
    fn uid_used_by_another_account_is_shared_with_a_warning() {
        let req = Request {
            uid: Some(1000),
            gid: None,
        };
        let p = plan(&snap(None), "hermes", &req, &[]);
        assert_eq!(
            says(&p.value),
            vec![
                "Changing hermes UID to 1000",
                "Warning: UID 1000 is already used by account alice; sharing it — continuing"
            ]
        );
        let passwd = p.changes.passwd.unwrap();
        assert_eq!(
            accounts::account_from(&passwd, GROUP, "hermes").unwrap().uid,
            1000
        );
        assert_eq!(accounts::account_from(&passwd, GROUP, "alice").unwrap().uid, 1000);
    }

    #[test]
    fn gid_used_by_another_group_is_shared_with_a_warning() {
        let req = Request {
            uid: None,
            gid: Some(100),
        };
        let p = plan(&snap(None), "hermes", &req, &[]);
        assert_eq!(
            says(&p.value),
            vec![
                "Changing hermes GID to 100",
                "Warning: GID 100 is already used by group users; sharing it — continuing"
            ]
        );
        let group = p.changes.group.unwrap();
        assert_eq!(
            accounts::parse_group(&group)
                .iter()
                .filter(|g| g.gid == 100)
                .count(),
            2
        );
    }

    #[test]
    fn gid_remap_without_a_group_at_g_changes_passwd_only() {
        let s = Snapshot {
            passwd: PASSWD.to_vec(),
            group: b"root:x:0:\n".to_vec(),
            gshadow: None,
        };
        let req = Request {
            uid: None,
            gid: Some(3000),
        };
        let p = plan(&s, "hermes", &req, &[]);
        assert!(p.changes.group.is_none());
        assert!(p.changes.passwd.is_some());
        assert!(says(&p.value)[1].starts_with("Warning: no group in /etc/group has GID 10000"));
    }

    #[test]
    fn group_sources_join_existing_create_missing_and_skip_root() {
        let gs: &[u8] = b"root:*::\nvideo:!::\nhermes:!::\n";
        let sources = vec![
            file("/var/run/docker.sock", 0),
            file("/run/docker.sock", 0),
            file("/dev/dri/card0", 44),
            file("/dev/dri/renderD128", 64000),
            pid1(0),
            pid1(44),
            pid1(10000),
            pid1(64000),
        ];
        let p = plan(&snap(Some(gs)), "hermes", &Request::default(), &sources);
        assert_eq!(
            says(&p.value),
            vec![
                "Warning: /var/run/docker.sock is owned by GID 0; not adding hermes to the root group — continuing",
                "Added hermes to group video (GID 44) for /dev/dri/card0",
                "Created group hostgid64000 (GID 64000) for /dev/dri/renderD128",
                "Added hermes to group hostgid64000 (GID 64000) for /dev/dri/renderD128",
                "hermes already in group 10000 for supplementary group of PID 1",
            ]
        );
        let group = String::from_utf8(p.changes.group.unwrap()).unwrap();
        assert!(group.contains("video:x:44:hermes\n"));
        assert!(group.ends_with("hostgid64000:x:64000:hermes\n"));
        assert!(group.starts_with("root:x:0:\n"), "root never gains hermes");
        let gshadow = String::from_utf8(p.changes.gshadow.unwrap()).unwrap();
        assert_eq!(
            gshadow,
            "root:*::\nvideo:!::hermes\nhermes:!::\nhostgid64000:!::hermes\n"
        );
    }

    #[test]
    fn rerun_after_group_setup_adds_nothing() {
        let sources = vec![file("/dev/dri/card0", 44), file("/dev/dri/renderD128", 64000)];
        let first = plan(&snap(Some(b"")), "hermes", &Request::default(), &sources);
        let s2 = Snapshot {
            passwd: PASSWD.to_vec(),
            group: first.changes.group.unwrap(),
            gshadow: first.changes.gshadow,
        };
        let second = plan(&s2, "hermes", &Request::default(), &sources);
        assert!(second.changes.is_empty());
        assert_eq!(
            says(&second.value),
            vec![
                "hermes already in group 44 for /dev/dri/card0",
                "hermes already in group 64000 for /dev/dri/renderD128"
            ]
        );
    }

    #[test]
    fn source_at_the_new_primary_gid_is_already_a_group() {
        let req = Request {
            uid: None,
            gid: Some(998),
        };
        let p = plan(&snap(None), "hermes", &req, &[file("/run/docker.sock", 998)]);
        assert_eq!(
            says(&p.value),
            vec![
                "Changing hermes GID to 998",
                "hermes already in group 998 for /run/docker.sock"
            ]
        );
    }

    #[test]
    fn hostgid_name_clash_warns_and_skips() {
        let s = Snapshot {
            passwd: PASSWD.to_vec(),
            group: b"hostgid500:x:501:\n".to_vec(),
            gshadow: None,
        };
        let p = plan(&s, "hermes", &Request::default(), &[file("/dev/dri/card1", 500)]);
        assert!(p.changes.is_empty());
        assert_eq!(
            says(&p.value),
            vec!["Warning: group hostgid500 already exists with GID 501; not adding hermes to a group for /dev/dri/card1 — continuing"]
        );
    }

    #[test]
    fn missing_gshadow_is_never_created() {
        let p = plan(
            &snap(None),
            "hermes",
            &Request::default(),
            &[file("/dev/dri/x", 7)],
        );
        assert!(p.changes.gshadow.is_none());
        assert!(p.changes.group.is_some());
    }

    #[test]
    fn status_groups_line() {
        let status = b"Name:\tinit\nUid:\t0\t0\t0\t0\nGroups:\t64000 44 0 44 abc \nNgid:\t0\n";
        assert_eq!(status_groups(status), vec![0, 44, 64000]);
        assert_eq!(status_groups(b"Groups:\t\n"), Vec::<u32>::new());
        assert_eq!(status_groups(b"Name:\tx\n"), Vec::<u32>::new());
    }
}
