//! The data volume: where it is mounted, its free space, owners that drifted from the runtime user in
//! the trees the boot repairs, and the secrets' owners and modes (never their contents).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::guarded::{Dir, Entry, Meta};
use crate::handover::{Handover, Verdict};
use crate::root::RootPrefix;
use crate::stage2::volume::{EVERY_BOOT_TREES, TARGETED_TREES, TOP_LEVEL_ALLOWLIST};

use super::{owner_mode, shown, Context, Finding};

const AREA: &str = "volume";

/// Below this much free space the agent's writes (sessions, the state database) start failing.
const LOW_SPACE: u64 = 64 << 20;
/// Paths of drifted entries a finding lists; the rest are counted.
const FIRST_PATHS: usize = 5;
/// Entries one tree's walk looks at before it stops and says so: a check, not a repair.
const WALK_LIMIT: usize = 200_000;
/// Directory levels the walk descends (each holds a descriptor).
const WALK_DEPTH: usize = 48;

/// Opens the data volume as a directory, without following a symlink at its last component.
pub(super) fn open_home(root: &RootPrefix, home: &Path, out: &mut Vec<Finding>) -> Option<Dir> {
    let fix = format!(
        "mount a volume at {} or set HERMES_HOME to the volume's path",
        shown(home)
    );
    match Dir::open_anchor(root, home) {
        Ok(Entry::Found(d)) => Some(d),
        Ok(Entry::Missing) => {
            out.push(Finding::problem(AREA, "home", format!("{} does not exist", shown(home)), fix).at(home));
            None
        }
        Ok(Entry::Symlink) | Ok(Entry::Other(_)) => {
            out.push(
                Finding::problem(AREA, "home", format!("{} is not a directory", shown(home)), fix).at(home),
            );
            None
        }
        Err(e) => {
            out.push(Finding::problem(AREA, "home", format!("cannot open the volume: {e}"), fix).at(home));
            None
        }
    }
}

/// Mount, free space and (unless `quick`) ownership drift.
pub(super) fn check(cx: &Context, quick: bool, out: &mut Vec<Finding>) {
    let Some(home) = &cx.home else { return };
    let host = cx.root.path(&cx.places.home);
    let (fstype, source) = mount_of(&host).unwrap_or_else(|| ("?".to_string(), "?".to_string()));
    let (owner, mode) = match home.meta() {
        Ok(m) => (Some((m.uid, m.gid)), m.perm),
        Err(_) => (None, 0),
    };
    let free = rustix::fs::statvfs(&host)
        .ok()
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize));
    let mut f = Finding::ok(
        AREA,
        "home",
        format!(
            "{} on {fstype} ({source}), owner {}, {} free",
            shown(&cx.places.home),
            owner.map_or("?".to_string(), |(u, g)| owner_mode(u, g, mode)),
            free.map_or("?".to_string(), human_bytes)
        ),
    )
    .at(&cx.places.home)
    .with("fstype", fstype)
    .with("source", source);
    if let Some(free) = free {
        f = f.with("free_bytes", free);
    }
    if let Some((u, g)) = owner {
        f = f
            .with("uid", u)
            .with("gid", g)
            .with("mode", format!("{mode:04o}"));
    }
    out.push(f);
    if free.is_some_and(|b| b < LOW_SPACE) {
        out.push(
            Finding::problem(
                AREA,
                "free-space",
                format!("only {} free on the volume", human_bytes(free.unwrap_or(0))),
                "free space on the volume (old sessions, logs, backups) or grow it",
            )
            .at(&cx.places.home),
        );
    }
    if quick {
        return;
    }
    if !cx.started_as_root {
        out.push(Finding::ok(
            AREA,
            "ownership",
            "no ownership check: the container runs without root (--user), so the boot repairs nothing",
        ));
    } else if let (Some(account), Some((previous, _))) = (&cx.account, owner) {
        drift(cx, home, account, previous, out);
    }
}

/// The repair's own judgement ([`Handover`]) over the trees it walks and the top-level allowlist: what
/// the next boot would change, and what it leaves alone (the host's files).
/// `previous`: the volume's owner now, which the next boot's repair takes for the last runtime uid.
fn drift(
    cx: &Context,
    home: &Dir,
    account: &crate::accounts::Account,
    previous: u32,
    out: &mut Vec<Finding>,
) {
    let handover = Handover::new(account, account.uid, previous);
    let crate::owner::Owner { uid: u, gid: g } = handover.owner;
    let mut clean = 0;
    let mut present = 0;
    let mut left_alone = 0usize;
    for tree in TARGETED_TREES {
        let mut t = Tally::default();
        let nested;
        let (parent, name) = match tree.rsplit_once('/') {
            Some((p, n)) => match home.open_path(Path::new(p)) {
                Ok((Entry::Found(d), _)) => {
                    nested = d;
                    (&nested, n)
                }
                _ => continue,
            },
            None => (home, *tree),
        };
        let name = OsStr::new(name);
        match parent.stat(name) {
            Ok(Some(m)) => {
                t.judge(&handover, &parent.child(name), &m);
                if m.is_dir() {
                    if let Ok(Entry::Found(d)) = parent.subdir(name) {
                        walk(&d, &handover, &mut t, 1);
                    }
                }
            }
            _ => continue,
        }
        left_alone += t.left_alone;
        if t.drifted == 0 {
            clean += 1;
            present += 1;
            continue;
        }
        let every_boot = EVERY_BOOT_TREES.contains(tree);
        let fix = if every_boot {
            "docker restart <container> (the boot repairs this tree on every start)".to_string()
        } else {
            format!(
                "docker exec <container> chown -Rh {u}:{g} {}",
                shown(&cx.places.home.join(tree))
            )
        };
        present += 1;
        out.push(t.finding(
            format!(
                "in {}, {} not {u}:{g}",
                shown(&cx.places.home.join(tree)),
                entries(t.drifted)
            ),
            fix,
            &cx.places.home.join(tree),
        ));
    }
    let mut top = Tally::default();
    for name in TOP_LEVEL_ALLOWLIST {
        if let Ok(Some(m)) = home.stat(name) {
            top.judge(&handover, &home.child(name), &m);
        }
    }
    left_alone += top.left_alone;
    if top.drifted > 0 {
        out.push(top.finding(
            format!(
                "directly in {}, {} not {u}:{g}",
                shown(&cx.places.home),
                entries(top.drifted)
            ),
            "docker restart <container> (the boot repairs these owners on every start)".to_string(),
            &cx.places.home,
        ));
    }
    let mut f = Finding::ok(
        AREA,
        "ownership",
        format!("repaired trees: {present} present, {clean} of them fully {u}:{g}"),
    )
    .with("left_alone", left_alone as u64);
    if left_alone > 0 {
        f.message.push_str(&format!(
            "; the repair leaves alone {left_alone} unreadable to the runtime user (the host's files)"
        ));
    }
    out.push(f);
}

/// `1 entry is`, `3 entries are`.
fn entries(n: usize) -> String {
    if n == 1 {
        "1 entry is".to_string()
    } else {
        format!("{n} entries are")
    }
}

#[derive(Default)]
struct Tally {
    drifted: usize,
    left_alone: usize,
    seen: usize,
    truncated: bool,
    first: Vec<(PathBuf, Meta)>,
}

impl Tally {
    fn judge(&mut self, h: &Handover, path: &Path, m: &Meta) {
        self.seen += 1;
        match h.judge(m.uid, m.gid, m.perm, m.nlink, m.is_dir(), m.is_symlink()) {
            Verdict::Right => {}
            Verdict::Change => {
                self.drifted += 1;
                if self.first.len() < FIRST_PATHS {
                    self.first.push((path.to_path_buf(), *m));
                }
            }
            Verdict::HardLinked | Verdict::Unreadable => self.left_alone += 1,
        }
    }

    fn finding(&self, mut message: String, fix: String, at: &Path) -> Finding {
        let first: Vec<String> = self
            .first
            .iter()
            .map(|(p, m)| format!("{} {}", shown(p), owner_mode(m.uid, m.gid, m.perm)))
            .collect();
        message.push_str(&format!(": {}", first.join(", ")));
        if self.drifted > first.len() {
            message.push_str(", …");
        }
        if self.truncated {
            message.push_str(&format!(" (stopped after {} entries)", self.seen));
        }
        Finding::problem(AREA, "ownership-drift", message, fix)
            .at(at)
            .with("count", self.drifted as u64)
            .with("first", first)
            .with("truncated", self.truncated)
    }
}

fn walk(dir: &Dir, h: &Handover, t: &mut Tally, depth: usize) {
    let Ok(entries) = dir.list() else { return };
    for (name, _) in entries {
        if t.seen >= WALK_LIMIT {
            t.truncated = true;
            return;
        }
        let Ok(Some(m)) = dir.stat(&name) else { continue };
        t.judge(h, &dir.child(&name), &m);
        if m.is_dir() && depth < WALK_DEPTH {
            if let Ok(Entry::Found(sub)) = dir.subdir(&name) {
                walk(&sub, h, t, depth + 1);
            }
        }
    }
}

/// `.env` and `auth.json` in the volume: present or not, owner and mode. Either must be the runtime
/// user's and private to it (0600): a root-owned `.env` hides the agent's keys from it, a readable one
/// shows them to every other account.
pub(super) fn secrets(cx: &Context, out: &mut Vec<Finding>) {
    let (Some(home), Some(account)) = (&cx.home, &cx.account) else {
        return;
    };
    for name in [".env", "auth.json"] {
        let path = cx.places.home.join(name);
        let m = match home.stat(name) {
            Ok(Some(m)) => m,
            Ok(None) => {
                out.push(Finding::ok("secrets", "secret", format!("{} is absent", shown(&path))).at(&path));
                continue;
            }
            Err(e) => {
                out.push(
                    Finding::problem(
                        "secrets",
                        "secret",
                        format!("cannot stat: {e}"),
                        "check the volume",
                    )
                    .at(&path),
                );
                continue;
            }
        };
        let om = owner_mode(m.uid, m.gid, m.perm);
        let base = |f: Finding| {
            f.at(&path)
                .with("uid", m.uid)
                .with("gid", m.gid)
                .with("mode", format!("{:04o}", m.perm))
        };
        if m.is_symlink() || !m.is_file() {
            out.push(base(Finding::problem(
                "secrets",
                "secret-type",
                format!(
                    "{} is not a regular file (the boot refuses to use it)",
                    shown(&path)
                ),
                format!("docker exec <container> rm {} and restart", shown(&path)),
            )));
        } else if m.uid != account.uid {
            out.push(base(Finding::problem(
                "secrets",
                "secret-owner",
                format!(
                    "{} is {om}, not the runtime user's ({}): the agent cannot read it",
                    shown(&path),
                    account.uid
                ),
                format!(
                    "docker exec <container> chown {}:{} {p} && docker exec <container> chmod 600 {p}",
                    account.uid,
                    account.gid,
                    p = shown(&path)
                ),
            )));
        } else if m.perm & 0o077 != 0 {
            out.push(base(Finding::problem(
                "secrets",
                "secret-mode",
                format!("{} is {om}: other accounts can read it", shown(&path)),
                format!("docker exec <container> chmod 600 {}", shown(&path)),
            )));
        } else {
            out.push(base(Finding::ok(
                "secrets",
                "secret",
                format!("{} is {om}", shown(&path)),
            )));
        }
    }
}

/// The file system type and source of the mount holding `host_path`, from `/proc/self/mountinfo`.
fn mount_of(host_path: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(usize, String, String)> = None;
    for line in text.lines() {
        let (left, right) = line.split_once(" - ")?;
        let point = unescape_mount(left.split(' ').nth(4)?);
        let mut r = right.split(' ');
        let (fstype, source) = (r.next()?.to_string(), r.next().unwrap_or("").to_string());
        if host_path.starts_with(&point) {
            let len = point.as_os_str().len();
            if best.as_ref().is_none_or(|(l, _, _)| len >= *l) {
                best = Some((len, fstype, source));
            }
        }
    }
    best.map(|(_, t, s)| (t, s))
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mount(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&field[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(
        out,
    ))
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_with_spaces_are_unescaped() {
        assert_eq!(unescape_mount("/mnt/my\\040disk"), PathBuf::from("/mnt/my disk"));
        assert_eq!(unescape_mount("/plain"), PathBuf::from("/plain"));
    }

    #[test]
    fn the_volume_of_a_path_is_its_longest_mount_point() {
        // Every machine has / mounted; /proc is its own mount.
        let (fstype, _) = mount_of(Path::new("/proc/self")).unwrap();
        assert_eq!(fstype, "proc");
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
