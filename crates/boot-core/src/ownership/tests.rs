//! Tests of the ownership walk against the real kernel: they run as root and change owners for real.
//!
//! Scenarios whose log lines matter (or that need a private mount namespace or fewer capabilities) run the
//! walk in a fresh process of this test binary, so its stdout can be read and nothing leaks into other tests.

use super::*;
use crate::guarded::Entry;
use crate::root::RootPrefix;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;

const U: (u32, u32) = (10000, 10000);

fn require_root() {
    if !rustix::process::geteuid().is_root() {
        panic!("this test needs root (it changes owners for real); run the suite as root, as CI does");
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ownership-test.")
        .tempdir()
        .expect("tempdir")
}

/// The runtime user U, whose trees in these tests were made by root (the previous owner): what root made
/// is handed over where U could read it.
fn handover() -> Handover {
    Handover {
        owner: U.into(),
        groups: vec![U.1],
        own_uids: vec![U.0],
        hardlink_ok_uid: U.0,
    }
}

/// The two ways the walk changes an entry: by name, when the kernel's `fs.protected_hardlinks` makes a
/// swap since the `stat` harmless, and through an `O_PATH` descriptor checked against the `stat`, when it
/// does not. Every case that changes entries runs on both, whatever this machine's setting (hosts with
/// the setting off exist, and that path is the race-safe one).
const HARDLINK_RULES: [bool; 2] = [true, false];

/// [`Options`] for one of [`HARDLINK_RULES`].
fn on_rule(protected: bool) -> Options {
    Options {
        protected_hardlinks: Some(protected),
        ..Options::default()
    }
}

/// The child flag for one of [`HARDLINK_RULES`].
fn rule_flag(protected: bool) -> &'static str {
    if protected {
        "protected"
    } else {
        "unprotected"
    }
}

fn anchor(p: &Path) -> Dir {
    match Dir::open_anchor(&RootPrefix::none(), p).expect("open anchor") {
        Entry::Found(d) => d,
        other => panic!("anchor {} not a directory: {other:?}", p.display()),
    }
}

/// Runs the walk in this process on `target` (whose parent is opened as the anchor).
fn walk(target: &Path, dry: bool, opts: Options) -> (RepairStats, WalkDiag, u32) {
    let parent = anchor(target.parent().expect("parent"));
    let report = Report::stage2(dry);
    let (stats, diag) = repair_with(
        &report,
        &parent,
        target.file_name().expect("name"),
        &handover(),
        opts,
    );
    (stats, diag, report.warnings())
}

fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
    (m.uid(), m.gid())
}

fn ctime(p: &Path) -> (i64, i64) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
    (m.ctime(), m.ctime_nsec())
}

fn lchown(p: &Path, o: (u32, u32)) {
    std::os::unix::fs::lchown(p, Some(o.0), Some(o.1))
        .unwrap_or_else(|e| panic!("lchown {}: {e}", p.display()));
}

/// Every path below (and including) `root`, not following symlinks.
fn all_paths(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        if std::fs::symlink_metadata(&p).map(|m| m.is_dir()).unwrap_or(false) {
            for e in std::fs::read_dir(&p).expect("read_dir") {
                out.push(e.expect("entry").path());
            }
        }
        i += 1;
    }
    out
}

fn mknod(p: &Path, kind: nix::sys::stat::SFlag, dev: u64) {
    nix::sys::stat::mknod(p, kind, nix::sys::stat::Mode::from_bits_truncate(0o644), dev)
        .unwrap_or_else(|e| panic!("mknod {}: {e}", p.display()));
}

/// A tree with one entry of every type, nested directories and a name that is not UTF-8, all root-owned and readable by the runtime user (what the repair may hand over).
fn mixed_tree(t: &Path) -> PathBuf {
    use nix::sys::stat::SFlag;
    let h = t.join("data");
    std::fs::create_dir_all(h.join("profiles/a/sessions")).unwrap();
    std::fs::create_dir_all(h.join("logs")).unwrap();
    std::fs::write(h.join("config.yaml"), b"x: 1\n").unwrap();
    std::fs::write(h.join("profiles/a/sessions/s1.json"), b"{}").unwrap();
    std::fs::write(h.join(OsStr::from_bytes(b"caf\xe9-\xff")), b"latin-1").unwrap();
    std::fs::create_dir(h.join(OsStr::from_bytes(b"dir-\xfe"))).unwrap();
    std::fs::write(h.join(OsStr::from_bytes(b"dir-\xfe/inner")), b"i").unwrap();
    nix::unistd::mkfifo(
        &h.join("logs/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    mknod(
        &h.join("logs/null"),
        SFlag::S_IFCHR,
        nix::sys::stat::makedev(1, 3),
    );
    mknod(
        &h.join("logs/blk"),
        SFlag::S_IFBLK,
        nix::sys::stat::makedev(7, 200),
    );
    let sock = std::os::unix::net::UnixListener::bind(h.join("logs/sock")).unwrap();
    drop(sock);
    std::os::unix::fs::symlink("profiles/a", h.join("link-in")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/dangling", h.join("dangling")).unwrap();
    for p in all_paths(&h) {
        lchown(&p, (0, 0));
    }
    h
}

// ---- child-process scenarios -------------------------------------------------------------------------

const CHILD_TEST: &str = "OWNERSHIP_TEST_CHILD";
const CHILD_TARGET: &str = "OWNERSHIP_TEST_TARGET";
const CHILD_FLAGS: &str = "OWNERSHIP_TEST_FLAGS";

/// What a child run printed.
struct ChildRun {
    stdout: String,
    checked: u64,
    changed: u64,
    warnings: u32,
    /// Entries changed through a checked `O_PATH` descriptor.
    pinned: u64,
    /// The volume refused a chown outright.
    refused: bool,
}

impl ChildRun {
    fn lines_with(&self, needle: &str) -> Vec<&str> {
        self.stdout.lines().filter(|l| l.contains(needle)).collect()
    }
}

/// In the child process of test `test`, runs the scenario and exits; in the test itself, returns false.
fn is_child(test: &str) -> bool {
    if std::env::var(CHILD_TEST).ok().as_deref() != Some(test) {
        return false;
    }
    child_main();
}

/// Runs test `test` of this binary again in a fresh process, which walks `target` as `flags` say.
fn run_child(test: &str, target: &Path, flags: &str) -> ChildRun {
    let full = format!("ownership::tests::{test}");
    let out = Command::new(std::env::current_exe().expect("current_exe"))
        .args([full.as_str(), "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(CHILD_TEST, test)
        .env(CHILD_TARGET, target)
        .env(CHILD_FLAGS, flags)
        .output()
        .expect("spawn test child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed: {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CHILD-STATS "))
        .unwrap_or_else(|| panic!("no stats line in child output:\n{stdout}"));
    let v: Vec<u64> = stats.split(' ').map(|x| x.parse().expect("number")).collect();
    ChildRun {
        checked: v[0],
        changed: v[1],
        warnings: v[2] as u32,
        pinned: v[3],
        refused: v[4] == 1,
        stdout,
    }
}

/// Moves this process into a mount namespace of its own, so its mounts disappear with it.
pub(crate) fn private_mount_namespace() {
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare");
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("make / private");
}

/// The child side. Flags: `dry`, `nochown` (drop CAP_CHOWN), `openat` (no openat2), `protected` /
/// `unprotected` (one of [`HARDLINK_RULES`]), `hardlinks=V` (read V as `fs.protected_hardlinks`),
/// `progress` (progress
/// line on every clock check), `helpers=N` (threads besides the caller's), `tmpfs=REL` (mount a tmpfs at REL below the target, with a root-owned file
/// `inner` in it), `bind=REL` (bind-mount the sibling directory `bindsrc` of the target at REL).
fn child_main() -> ! {
    use nix::mount::{mount, MsFlags};
    let target = PathBuf::from(std::env::var_os(CHILD_TARGET).expect("target"));
    let flags = std::env::var(CHILD_FLAGS).unwrap_or_default();
    let mut opts = Options::default();
    let mut dry = false;
    let mut mounted = None;
    for f in flags.split(',').filter(|f| !f.is_empty()) {
        match f.split_once('=') {
            None if f == "dry" => dry = true,
            None if f == "openat" => opts.force_openat = true,
            None if f == "protected" => opts.protected_hardlinks = Some(true),
            None if f == "unprotected" => opts.protected_hardlinks = Some(false),
            None if f == "progress" => opts.progress_every = Duration::ZERO,
            Some(("helpers", n)) => opts.helpers = Some(n.parse().expect("helpers=N")),
            None if f == "nochown" => {
                let mut caps = rustix::thread::capabilities(None).expect("capget");
                caps.effective.remove(rustix::thread::CapabilitySet::CHOWN);
                rustix::thread::set_capabilities(None, caps).expect("capset");
            }
            Some(("hardlinks", value)) => {
                // What this process reads as fs.protected_hardlinks, in a mount namespace of its own:
                // the host's setting is never changed.
                private_mount_namespace();
                let fake = target.parent().unwrap().join("protected_hardlinks");
                std::fs::write(&fake, format!("{value}\n")).unwrap();
                mount(
                    Some(&fake),
                    "/proc/sys/fs/protected_hardlinks",
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .expect("bind over /proc/sys/fs/protected_hardlinks");
            }
            Some((kind, rel)) => {
                private_mount_namespace();
                let at = target.join(rel);
                if kind == "tmpfs" {
                    mount(
                        Some("tmpfs"),
                        &at,
                        Some("tmpfs"),
                        MsFlags::empty(),
                        Some("mode=0755"),
                    )
                    .expect("mount tmpfs");
                    std::fs::write(at.join("inner"), b"on another fs").unwrap();
                } else {
                    let src = target.parent().unwrap().join("bindsrc");
                    mount(Some(&src), &at, None::<&str>, MsFlags::MS_BIND, None::<&str>).expect("bind mount");
                }
                mounted = Some(at);
            }
            _ => panic!("unknown child flag {f}"),
        }
    }
    let parent = anchor(target.parent().expect("parent"));
    let report = Report::stage2(dry);
    let (stats, diag) = repair_with(
        &report,
        &parent,
        target.file_name().expect("name"),
        &handover(),
        opts,
    );
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Some(at) = mounted {
        let (u, g) = owner(&at);
        let _ = writeln!(out, "CHILD-MOUNT {u}:{g}");
        let inner = all_paths(&at)
            .iter()
            .skip(1)
            .map(|p| owner(p))
            .collect::<Vec<_>>();
        let _ = writeln!(out, "CHILD-MOUNT-INNER {inner:?}");
    }
    let _ = writeln!(
        out,
        "CHILD-STATS {} {} {} {} {}",
        stats.checked,
        stats.changed,
        report.warnings(),
        diag.pinned,
        u8::from(stats.refused)
    );
    let _ = out.flush();
    std::process::exit(0);
}

// ---- tests ---------------------------------------------------------------------------------------------

#[test]
fn repairs_every_entry_type_including_non_utf8_names() {
    if is_child("repairs_every_entry_type_including_non_utf8_names") {
        return;
    }
    require_root();
    for protected in HARDLINK_RULES {
        let t = tempdir();
        let h = mixed_tree(t.path());
        let paths = all_paths(&h);
        let run = run_child(
            "repairs_every_entry_type_including_non_utf8_names",
            &h,
            rule_flag(protected),
        );
        for p in &paths {
            assert_eq!(owner(p), U, "protected_hardlinks={protected}: {}", p.display());
        }
        assert_eq!(run.checked, paths.len() as u64);
        assert_eq!(run.changed, paths.len() as u64);
        assert_eq!(run.warnings, 0, "{}", run.stdout);
        let summary = format!(
            "[stage2] Ownership of {}: {} entries checked, {} changed",
            h.display(),
            paths.len(),
            paths.len()
        );
        assert!(run.stdout.lines().any(|l| l == summary), "{}", run.stdout);
    }
}

#[test]
fn already_right_tree_is_not_touched() {
    require_root();
    for protected in HARDLINK_RULES {
        let t = tempdir();
        let h = mixed_tree(t.path());
        let (first, _, w) = walk(&h, false, on_rule(protected));
        assert_eq!(w, 0);
        assert!(first.changed > 0);
        let paths = all_paths(&h);
        let before: Vec<_> = paths.iter().map(|p| ctime(p)).collect();
        std::thread::sleep(Duration::from_millis(20));
        let (second, diag, w) = walk(&h, false, on_rule(protected));
        assert_eq!(w, 0);
        assert_eq!(
            second,
            RepairStats {
                checked: paths.len() as u64,
                changed: 0,
                refused: false
            }
        );
        assert_eq!(diag.pinned, 0, "nothing to change, nothing pinned");
        let after: Vec<_> = paths.iter().map(|p| ctime(p)).collect();
        assert_eq!(
            before, after,
            "protected_hardlinks={protected}: an entry that was already right had its inode rewritten"
        );
    }
}

#[test]
fn gid_only_difference_is_repaired() {
    // The upstream script's bug: it skipped whatever already had the right uid, so a GID-only remap
    // left every file in the old group. Each kind of entry, at two depths, with only the gid wrong; and
    // one with only the uid wrong.
    require_root();
    for protected in HARDLINK_RULES {
        let t = tempdir();
        let h = t.path().join("data");
        std::fs::create_dir_all(h.join("sub/deeper")).unwrap();
        std::fs::write(h.join("f"), b"x").unwrap();
        std::fs::write(h.join("sub/deeper/g"), b"x").unwrap();
        std::os::unix::fs::symlink("f", h.join("sub/link")).unwrap();
        nix::unistd::mkfifo(
            &h.join("sub/fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        std::fs::write(h.join("uid-only"), b"x").unwrap();
        for p in all_paths(&h) {
            lchown(&p, (U.0, 4242));
        }
        lchown(&h.join("uid-only"), (4343, U.1));
        let (s, d, w) = walk(&h, false, on_rule(protected));
        let paths = all_paths(&h);
        for p in &paths {
            assert_eq!(owner(p), U, "protected_hardlinks={protected}: {}", p.display());
        }
        assert_eq!(
            (s.checked, s.changed, w),
            (paths.len() as u64, paths.len() as u64, 0)
        );
        // f, g, fifo and uid-only go through a checked descriptor without the kernel's protection.
        assert_eq!(d.pinned, if protected { 0 } else { 4 });
    }
}

#[test]
fn only_entries_not_yet_right_are_changed_and_counted() {
    // Right entries among wrong ones, at every depth: the count says exactly how many were changed, and
    // the right ones keep their inode untouched.
    require_root();
    for protected in HARDLINK_RULES {
        let t = tempdir();
        let h = t.path().join("data");
        std::fs::create_dir_all(h.join("a/b")).unwrap();
        for d in ["", "a", "a/b"] {
            std::fs::write(h.join(d).join("right"), b"x").unwrap();
            std::fs::write(h.join(d).join("wrong"), b"x").unwrap();
        }
        for p in all_paths(&h) {
            lchown(&p, U);
        }
        for d in ["", "a", "a/b"] {
            lchown(&h.join(d).join("wrong"), (0, 0));
        }
        lchown(&h.join("a"), (0, 0));
        let right: Vec<_> = ["right", "a/right", "a/b/right", "a/b"]
            .iter()
            .map(|p| (p, ctime(&h.join(p))))
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        let (s, _, w) = walk(&h, false, on_rule(protected));
        assert_eq!(
            (s.checked, s.changed, w),
            (9, 4, 0),
            "protected_hardlinks={protected}"
        );
        for p in all_paths(&h) {
            assert_eq!(owner(&p), U, "{}", p.display());
        }
        for (p, before) in right {
            assert_eq!(ctime(&h.join(p)), before, "{p} was rewritten");
        }
    }
}

/// A tree wide and deep enough that idle helper threads are handed subdirectories.
fn wide_tree(t: &Path) -> PathBuf {
    let h = t.join("data");
    for d in 0..60 {
        let dir = h.join(format!("d{d}/inner/deeper"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..8 {
            std::fs::write(dir.join(format!("f{f}")), b"x").unwrap();
            std::fs::write(h.join(format!("d{d}/f{f}")), b"x").unwrap();
        }
        std::os::unix::fs::symlink("/etc/shadow", h.join(format!("d{d}/inner/link"))).unwrap();
    }
    h
}

#[test]
fn a_shared_walk_changes_exactly_what_one_thread_changes() {
    require_root();
    let t = tempdir();
    let alone = wide_tree(&t.path().join("alone"));
    let shared = wide_tree(&t.path().join("shared"));
    let one = Options {
        helpers: Some(0),
        ..Options::default()
    };
    let four = Options {
        helpers: Some(3),
        ..Options::default()
    };
    let shadow = owner(Path::new("/etc/shadow"));
    let (s1, d1, w1) = walk(&alone, false, one);
    let (s4, d4, w4) = walk(&shared, false, four);
    assert_eq!(d1.shared, 0);
    assert!(d4.shared > 0, "no subdirectory was handed to another thread");
    assert_eq!((s1, w1), (s4, w4));
    assert_eq!(s4.checked, all_paths(&shared).len() as u64);
    assert_eq!(s4.changed, s4.checked);
    for p in all_paths(&shared) {
        assert_eq!(owner(&p), U, "{}", p.display());
    }
    assert_eq!(owner(Path::new("/etc/shadow")), shadow, "a symlink was followed");
    // Warm: nothing left to change, on any thread.
    let (again, _, w) = walk(&shared, false, four);
    assert_eq!((again.changed, w), (0, 0));
    assert!(d4.max_fds_held <= MAX_DIR_FDS);
    // Without a number given, a machine with more than one CPU shares the walk.
    let default = wide_tree(&t.path().join("default"));
    let (s, d, _) = walk(&default, false, Options::default());
    assert_eq!(s.checked, all_paths(&default).len() as u64);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(
        d.shared > 0,
        cpus > 1,
        "{cpus} CPUs, {} subdirectories shared",
        d.shared
    );
}

#[test]
fn symlinks_are_changed_themselves_and_never_followed() {
    require_root();
    for protected in HARDLINK_RULES {
        let t = tempdir();
        let outside = tempdir();
        std::fs::write(outside.path().join("secret"), b"root only").unwrap();
        std::fs::create_dir(outside.path().join("dir")).unwrap();
        std::fs::write(outside.path().join("dir/f"), b"x").unwrap();
        let h = t.path().join("data");
        std::fs::create_dir(&h).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), h.join("to-file")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("dir"), h.join("to-dir")).unwrap();
        let (s, d, w) = walk(&h, false, on_rule(protected));
        assert_eq!((s.checked, s.changed, w), (3, 3, 0));
        // A symlink is changed by name on both paths: chown on its descriptor would follow nothing,
        // but lchownat on the name changes the link itself and nothing else.
        assert_eq!(d.pinned, 0);
        assert_eq!(owner(&h.join("to-file")), U);
        assert_eq!(owner(&h.join("to-dir")), U);
        for p in all_paths(outside.path()) {
            assert_eq!(owner(&p), (0, 0), "followed a symlink to {}", p.display());
        }
    }
}

#[test]
fn symlinked_target_is_refused() {
    if is_child("symlinked_target_is_refused") {
        return;
    }
    require_root();
    let t = tempdir();
    let real = t.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("f"), b"x").unwrap();
    let link = t.path().join("data");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let run = run_child("symlinked_target_is_refused", &link, "");
    let want = format!(
        "[stage2] Warning: refusing recursive chown through symlinked path {} — continuing",
        link.display()
    );
    assert_eq!(run.lines_with("refusing"), vec![want.as_str()], "{}", run.stdout);
    assert_eq!((run.checked, run.changed, run.warnings), (0, 0, 1));
    assert_eq!(owner(&real), (0, 0));
    assert_eq!(owner(&real.join("f")), (0, 0));
    assert_eq!(owner(&link), (0, 0), "the refused link itself stays as it was");
}

#[test]
fn absent_target_is_nothing_and_file_target_is_one_entry() {
    require_root();
    for protected in HARDLINK_RULES {
        let t = tempdir();
        let (s, _, w) = walk(&t.path().join("missing"), false, on_rule(protected));
        assert_eq!((s, w), (RepairStats::default(), 0));
        let f = t.path().join("lone");
        std::fs::write(&f, b"x").unwrap();
        let (s, _, w) = walk(&f, false, on_rule(protected));
        assert_eq!((s.checked, s.changed, w), (1, 1, 0));
        assert_eq!(owner(&f), U);
    }
}

#[test]
fn hard_link_to_foreign_file_is_refused() {
    if is_child("hard_link_to_foreign_file_is_refused") {
        return;
    }
    require_root();
    for protected in HARDLINK_RULES {
        let t = tempdir();
        let h = t.path().join("data");
        std::fs::create_dir(&h).unwrap();
        let shadow = t.path().join("shadow");
        std::fs::write(&shadow, b"root:*:").unwrap();
        std::fs::hard_link(&shadow, h.join("innocent")).unwrap();
        // A hard-linked file the user already owned (u0) is still repaired (here: its group).
        std::fs::write(h.join("own"), b"x").unwrap();
        std::fs::hard_link(h.join("own"), h.join("own2")).unwrap();
        lchown(&h.join("own"), (U.0, 0));
        let run = run_child("hard_link_to_foreign_file_is_refused", &h, rule_flag(protected));
        let want = format!(
            "[stage2] Warning: refusing chown of hard-linked file {} (2 links) — continuing",
            h.join("innocent").display()
        );
        assert_eq!(
            run.lines_with("hard-linked"),
            vec![want.as_str()],
            "protected_hardlinks={protected}: {}",
            run.stdout
        );
        assert_eq!(owner(&shadow), (0, 0));
        assert_eq!(owner(&h.join("own")), U);
        // h, own/own2 (one inode, changed once; the second name is already right) — the refusal is no
        // change.
        assert_eq!((run.checked, run.changed, run.warnings), (4, 2, 1));
    }
}

/// Regular files, a FIFO, devices, a symlink, an entry whose uid is already right and whose gid is not, and
/// a foreign hard link, below two levels.
fn tree_for_both_rules(t: &Path) -> PathBuf {
    let h = mixed_tree(t);
    std::fs::write(h.join("profiles/a/gid-only"), b"x").unwrap();
    lchown(&h.join("profiles/a/gid-only"), (U.0, 0));
    let shadow = t.join("shadow");
    std::fs::write(&shadow, b"root:*:").unwrap();
    std::fs::hard_link(&shadow, h.join("profiles/innocent")).unwrap();
    h
}

#[test]
fn both_hard_link_rules_change_the_same_entries_each_by_its_own_path() {
    require_root();
    let mut results = Vec::new();
    for protected in [true, false] {
        let t = tempdir();
        let h = tree_for_both_rules(t.path());
        let symlinks = all_paths(&h)
            .iter()
            .filter(|p| p.symlink_metadata().unwrap().file_type().is_symlink())
            .count() as u64;
        let non_dirs = all_paths(&h)
            .iter()
            .filter(|p| !p.symlink_metadata().unwrap().is_dir())
            .count() as u64;
        let opts = Options {
            protected_hardlinks: Some(protected),
            ..Options::default()
        };
        let (s, d, w) = walk(&h, false, opts);
        for p in all_paths(&h) {
            let want = if p.ends_with("innocent") { (0, 0) } else { U };
            assert_eq!(
                owner(&p),
                want,
                "protected_hardlinks={protected}: {}",
                p.display()
            );
        }
        assert_eq!(owner(&t.path().join("shadow")), (0, 0));
        // Without the kernel's protection every changed file goes through a checked descriptor (the
        // refused hard link is never changed); with it, none does.
        let pinned_want = if protected { 0 } else { non_dirs - symlinks - 1 };
        assert_eq!(d.pinned, pinned_want, "protected_hardlinks={protected}");
        results.push((s, w));
    }
    assert_eq!(results[0], results[1], "the two rules changed different entries");
    assert_eq!(results[0].1, 1, "one hard-link refusal");
}

#[test]
fn the_kernel_setting_picks_the_path_when_no_option_does() {
    require_root();
    let protected = std::fs::read("/proc/sys/fs/protected_hardlinks")
        .map(|v| v.trim_ascii() == b"1")
        .unwrap_or(false);
    let t = tempdir();
    let h = tree_for_both_rules(t.path());
    let (_, d, _) = walk(&h, false, Options::default());
    assert_eq!(
        d.pinned == 0,
        protected,
        "fs.protected_hardlinks={protected}, pinned {}",
        d.pinned
    );
}

#[test]
fn each_value_of_the_kernel_setting_picks_its_path() {
    if is_child("each_value_of_the_kernel_setting_picks_its_path") {
        return;
    }
    require_root();
    // 0 is the setting off; 2 is not a value the kernel takes, and what is not 1 is treated as off
    // (the checked path is safe on every kernel).
    for (value, pinned) in [("0", true), ("1", false), ("2", true)] {
        let t = tempdir();
        let h = tree_for_both_rules(t.path());
        let run = run_child(
            "each_value_of_the_kernel_setting_picks_its_path",
            &h,
            &format!("hardlinks={value}"),
        );
        assert_eq!(
            run.pinned > 0,
            pinned,
            "fs.protected_hardlinks={value}: {}",
            run.stdout
        );
        for p in all_paths(&h) {
            let want = if p.ends_with("innocent") { (0, 0) } else { U };
            assert_eq!(owner(&p), want, "fs.protected_hardlinks={value}: {}", p.display());
        }
        assert_eq!(run.warnings, 1, "one hard-link refusal: {}", run.stdout);
    }
}

#[test]
fn pinned_path_without_protected_hardlinks_repairs_and_refuses_alike() {
    require_root();
    let t = tempdir();
    let h = mixed_tree(t.path());
    let shadow = t.path().join("shadow");
    std::fs::write(&shadow, b"root:*:").unwrap();
    std::fs::hard_link(&shadow, h.join("innocent")).unwrap();
    let opts = Options {
        force_openat: true,
        protected_hardlinks: Some(false),
        ..Options::default()
    };
    let (s, _, w) = walk(&h, false, opts);
    assert_eq!(w, 1, "one hard-link refusal");
    for p in all_paths(&h) {
        let want = if p.ends_with("innocent") { (0, 0) } else { U };
        assert_eq!(owner(&p), want, "{}", p.display());
    }
    assert_eq!(s.changed, s.checked - 1);
}

#[test]
fn tmpfs_mounted_inside_is_not_entered() {
    if is_child("tmpfs_mounted_inside_is_not_entered") {
        return;
    }
    require_root();
    let t = tempdir();
    let h = t.path().join("data");
    std::fs::create_dir_all(h.join("profiles/mnt")).unwrap();
    std::fs::write(h.join("profiles/f"), b"x").unwrap();
    let run = run_child("tmpfs_mounted_inside_is_not_entered", &h, "tmpfs=profiles/mnt");
    let want = format!(
        "[stage2] Skipping mount point {} (different filesystem)",
        h.join("profiles/mnt").display()
    );
    assert_eq!(run.lines_with("Skipping"), vec![want.as_str()], "{}", run.stdout);
    assert!(run.stdout.contains("CHILD-MOUNT 0:0"), "{}", run.stdout);
    assert!(
        run.stdout.contains("CHILD-MOUNT-INNER [(0, 0)]"),
        "{}",
        run.stdout
    );
    assert_eq!(owner(&h.join("profiles/f")), U);
    assert_eq!(owner(&h), U);
    assert_eq!(run.warnings, 0);
    // data, profiles, profiles/f and the mount point itself, which is counted but not entered.
    assert_eq!(run.checked, 4);
}

#[test]
fn bind_mount_of_same_filesystem_is_not_entered_without_openat2() {
    if is_child("bind_mount_of_same_filesystem_is_not_entered_without_openat2") {
        return;
    }
    require_root();
    let t = tempdir();
    let h = t.path().join("data");
    std::fs::create_dir_all(h.join("cron/bound")).unwrap();
    std::fs::create_dir(t.path().join("bindsrc")).unwrap();
    std::fs::write(t.path().join("bindsrc/host-file"), b"x").unwrap();
    for test_flags in ["bind=cron/bound,openat", "bind=cron/bound"] {
        let run = run_child(
            "bind_mount_of_same_filesystem_is_not_entered_without_openat2",
            &h,
            test_flags,
        );
        assert_eq!(
            run.lines_with("Skipping mount point").len(),
            1,
            "{test_flags}: {}",
            run.stdout
        );
        assert!(
            run.stdout.contains("CHILD-MOUNT-INNER [(0, 0)]"),
            "{}",
            run.stdout
        );
        assert_eq!(owner(&t.path().join("bindsrc")), (0, 0));
        assert_eq!(owner(&h.join("cron")), U);
    }
}

#[test]
fn deep_chain_is_repaired_with_at_most_64_descriptors() {
    require_root();
    const DEPTH: usize = 10_000;
    let t = tempdir();
    let h = t.path().join("data");
    std::fs::create_dir(&h).unwrap();
    // Paths this long exceed PATH_MAX: build and inspect the chain through descriptors.
    let open = |dfd: BorrowedFd<'_>, name: &CStr| {
        rustix::fs::openat(dfd, name, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).expect("open level")
    };
    let mut fd = open(anchor(t.path()).fd(), c"data");
    for i in 0..DEPTH {
        rustix::fs::mkdirat(&fd, c"d", Mode::from_raw_mode(0o755)).expect("mkdir level");
        if i % 1000 == 999 {
            std::mem::drop(
                rustix::fs::openat(
                    &fd,
                    c"f",
                    OFlags::CREATE | OFlags::WRONLY,
                    Mode::from_raw_mode(0o644),
                )
                .expect("create file"),
            );
        }
        fd = open(fd.as_fd(), c"d");
    }
    let files = DEPTH / 1000;
    let total = (1 + DEPTH + files) as u64;
    for opts in [
        Options::default(),
        Options {
            force_openat: true,
            ..Options::default()
        },
    ] {
        lchown(&h, (0, 0));
        let (s, diag, w) = walk(&h, false, opts);
        assert_eq!(w, 0);
        assert!(
            diag.max_fds_held <= MAX_DIR_FDS,
            "held {} descriptors",
            diag.max_fds_held
        );
        assert_eq!(s.checked, total);
        let mut fd = open(anchor(t.path()).fd(), c"data");
        let mut seen = 0;
        loop {
            let st = rustix::fs::fstat(&fd).unwrap();
            assert_eq!((st.st_uid, st.st_gid), U);
            if let Ok(f) = rustix::fs::statat(&fd, c"f", AtFlags::SYMLINK_NOFOLLOW) {
                assert_eq!((f.st_uid, f.st_gid), U);
                seen += 1;
            }
            match rustix::fs::openat(&fd, c"d", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()) {
                Ok(next) => fd = next,
                Err(_) => break,
            }
        }
        assert_eq!(seen, files);
        // Everything but the target was already right in the second round.
        if opts.force_openat {
            assert_eq!(s.changed, 1);
        } else {
            assert_eq!(s.changed, total);
        }
    }
    let (s, _, _) = walk(&h, false, Options::default());
    assert_eq!(s.changed, 0);
    let _ = Command::new("rm").arg("-rf").arg(&h).status();
}

/// The descriptor budget exactly: a chain that fits is walked holding one descriptor per level and
/// opening nothing twice; a deeper one holds exactly [`MAX_DIR_FDS`] and opens each released ancestor
/// once more on the way back up. A walk shared with another thread keeps the budget per thread.
#[test]
fn the_descriptor_budget_is_used_in_full_and_never_exceeded() {
    require_root();
    let chain = |t: &Path, dirs: usize| -> PathBuf {
        let h = t.join(format!("chain{dirs}"));
        let mut p = h.clone();
        for _ in 1..dirs {
            p.push("d");
        }
        std::fs::create_dir_all(&p).unwrap();
        let mut q = h.clone();
        for _ in 1..dirs {
            std::fs::write(q.join("f"), b"x").unwrap();
            q.push("d");
        }
        for p in all_paths(&h) {
            lchown(&p, (0, 0));
        }
        h
    };
    let t = tempdir();
    let alone = Options {
        helpers: Some(0),
        ..Options::default()
    };
    // (directories in the chain, ancestors opened again)
    for (dirs, reacquired) in [
        (2, 0),
        (MAX_DIR_FDS, 0),
        (MAX_DIR_FDS + 1, 1),
        (3 * MAX_DIR_FDS, 2 * MAX_DIR_FDS),
    ] {
        let h = chain(t.path(), dirs);
        let (s, diag, w) = walk(&h, false, alone);
        assert_eq!(w, 0, "{dirs} directories");
        assert_eq!(
            (diag.max_fds_held, diag.reacquired),
            (dirs.min(MAX_DIR_FDS), reacquired as u64),
            "{dirs} directories"
        );
        assert_eq!(s.checked, all_paths(&h).len() as u64);
        assert_eq!(s.changed, s.checked);
        for p in all_paths(&h) {
            assert_eq!(owner(&p), U, "{}", p.display());
        }
    }
    let shared = Options {
        helpers: Some(1),
        ..Options::default()
    };
    // The two threads hand the chain back and forth (each time one is idle): no thread exceeds its budget.
    // Whether the helper is idle in time is up to the scheduler (on a loaded machine it may start only
    // once the walk is over), so the walk is repeated until it was handed over at least once.
    let mut handed_over = 0;
    for round in 0..50 {
        let h = chain(&t.path().join(format!("shared{round}")), 4 * MAX_DIR_FDS);
        let (s, diag, w) = walk(&h, false, shared);
        assert_eq!(w, 0);
        assert!(diag.max_fds_held <= MAX_DIR_FDS, "held {}", diag.max_fds_held);
        assert_eq!(s.checked, all_paths(&h).len() as u64);
        assert_eq!(s.changed, s.checked);
        handed_over += diag.shared;
        if handed_over > 0 {
            break;
        }
    }
    assert!(
        handed_over > 0,
        "in 50 walks the chain was never handed to the idle thread"
    );
}

#[test]
fn released_ancestor_that_moved_abandons_the_walk() {
    require_root();
    let t = tempdir();
    let h = t.path().join("data");
    let mut p = h.clone();
    for _ in 0..(MAX_DIR_FDS + 2) {
        p.push("d");
    }
    std::fs::create_dir_all(&p).unwrap();
    let parent = anchor(t.path());
    let report = Report::stage2(false);
    let rule = handover();
    let mut w = Walk::new(&report, &parent, OsStr::new("data"), &rule, Options::default());
    // Walk down the chain the way `descend` does, then move a released ancestor away before coming back up.
    let fd = w.open_dir(parent.fd(), c"data", false).unwrap();
    w.held = 1;
    let id = w.dir_id(&fd).unwrap();
    w.path = h.as_os_str().as_bytes().to_vec();
    w.push_frame(fd, id);
    assert!(matches!(w.list_top(), Flow::Continue));
    for _ in 0..(MAX_DIR_FDS + 2) {
        let top = w.frames.last_mut().unwrap();
        assert!(next_name(top, &mut w.name_buf));
        assert!(matches!(w.enter_subdir(), Flow::Continue));
    }
    assert!(
        w.frames[0].fd.is_none() && w.frames[1].fd.is_none(),
        "outer levels released"
    );
    std::fs::rename(h.join("d"), t.path().join("moved")).unwrap();
    std::fs::create_dir(h.join("d")).unwrap();
    let mut flow = Flow::Continue;
    while !w.frames.is_empty() {
        flow = w.finish_top();
        if let Flow::Abandon = flow {
            break;
        }
    }
    assert!(matches!(flow, Flow::Abandon));
    assert_eq!(report.warnings(), 1);
    assert_eq!(
        owner(&h),
        (0, 0),
        "the abandoned target keeps its owner for the next boot"
    );
}

#[test]
fn entries_vanishing_during_the_walk_are_skipped_silently() {
    require_root();
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let t = tempdir();
    let h = t.path().join("data");
    for i in 0..20 {
        std::fs::create_dir_all(h.join(format!("s{i}"))).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let churn = {
        let (h, stop, rounds) = (h.clone(), stop.clone(), rounds.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for i in 0..20 {
                    let d = h.join(format!("s{i}"));
                    let _ = std::fs::write(d.join("f"), b"x");
                    let _ = std::fs::create_dir(d.join("sub"));
                    let _ = std::fs::write(d.join("sub/g"), b"x");
                    let _ = std::fs::remove_file(d.join("f"));
                    let _ = std::fs::remove_dir_all(d.join("sub"));
                }
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Vanished names the walk was told about but that are gone by the time it looks.
    let parent = anchor(t.path());
    let report = Report::stage2(false);
    let rule = handover();
    let mut w = Walk::new(&report, &parent, OsStr::new("data"), &rule, Options::default());
    let fd = w.open_dir(parent.fd(), c"data", false).unwrap();
    let mut subdirs = Vec::new();
    assert!(matches!(
        w.entry(fd.as_fd(), c"gone-file", &mut subdirs),
        Flow::Continue
    ));
    let id = w.dir_id(&fd).unwrap();
    w.held = 1;
    w.push_frame(fd, id);
    w.frames[0].subdirs.extend_from_slice(b"gone-dir\0");
    w.descend();
    assert_eq!(report.warnings(), 0);
    assert_eq!(w.stats.checked, 0);
    // Walk while the tree changes under us, for at least 50 rounds of churn.
    let mut walks = 0;
    while walks < 30 || rounds.load(Ordering::Relaxed) < 50 {
        let rule = HARDLINK_RULES[walks % 2];
        let (_, _, warnings) = walk(&h, false, on_rule(rule));
        assert_eq!(warnings, 0);
        walks += 1;
    }
    stop.store(true, Ordering::Relaxed);
    churn.join().unwrap();
}

#[test]
fn dry_run_prints_would_lines_and_changes_nothing() {
    if is_child("dry_run_prints_would_lines_and_changes_nothing") {
        return;
    }
    require_root();
    for protected in HARDLINK_RULES {
        dry_run_on_rule(protected);
    }
}

fn dry_run_on_rule(protected: bool) {
    let t = tempdir();
    let h = mixed_tree(t.path());
    let paths = all_paths(&h);
    let before: Vec<_> = paths.iter().map(|p| ctime(p)).collect();
    let flags = format!("dry,{}", rule_flag(protected));
    let run = run_child("dry_run_prints_would_lines_and_changes_nothing", &h, &flags);
    assert_eq!(
        run.lines_with("would chown ").len(),
        paths.len(),
        "{}",
        run.stdout
    );
    let line = format!(
        "would chown {} 0:0 -> 10000:10000",
        h.join("config.yaml").display()
    );
    assert!(run.stdout.lines().any(|l| l == line), "{}", run.stdout);
    assert!(
        run.stdout.contains("would chown ") && run.stdout.contains("\\xe9-\\xff"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("Ownership of"), "{}", run.stdout);
    assert_eq!(run.changed, paths.len() as u64);
    let after: Vec<_> = paths.iter().map(|p| ctime(p)).collect();
    assert_eq!(before, after);
    for p in &paths {
        assert_eq!(owner(p), (0, 0));
    }
}

#[test]
fn chown_refused_ends_the_walk_with_one_warning() {
    if is_child("chown_refused_ends_the_walk_with_one_warning") {
        return;
    }
    require_root();
    for protected in HARDLINK_RULES {
        chown_refused_on_rule(protected);
    }
}

fn chown_refused_on_rule(protected: bool) {
    let t = tempdir();
    chown_refused_in(&mixed_tree(t.path()), protected);
    // Only directories to change: the first refusal meets a directory's own chown, after its contents.
    let dirs = t.path().join("dirs");
    std::fs::create_dir_all(dirs.join("a/b")).unwrap();
    for p in all_paths(&dirs) {
        lchown(&p, (0, 0));
    }
    chown_refused_in(&dirs, protected);
}

fn chown_refused_in(h: &Path, protected: bool) {
    let flags = format!("nochown,{}", rule_flag(protected));
    let run = run_child("chown_refused_ends_the_walk_with_one_warning", h, &flags);
    let lines = run.lines_with("Warning:");
    assert_eq!(lines.len(), 1, "{}", run.stdout);
    assert!(lines[0].starts_with("[stage2] Warning: chown "), "{}", lines[0]);
    assert!(
        lines[0].ends_with(
            ": EPERM (Operation not permitted): this volume refuses chown (NFS root-squash, CIFS/SMB or ACL \
share, rootless container or read-only volume?); ownership repair stops for this boot — continuing"
        ),
        "{}",
        lines[0]
    );
    assert_eq!((run.changed, run.warnings, run.refused), (0, 1, true));
    assert!(!run.stdout.contains("Ownership of"), "{}", run.stdout);
    for p in all_paths(h) {
        assert_eq!(owner(&p), (0, 0));
    }
}

#[test]
fn long_walk_prints_progress_lines() {
    if is_child("long_walk_prints_progress_lines") {
        return;
    }
    require_root();
    let t = tempdir();
    let h = t.path().join("data");
    std::fs::create_dir(&h).unwrap();
    for i in 0..600 {
        std::fs::write(h.join(format!("f{i}")), b"").unwrap();
    }
    let run = run_child("long_walk_prints_progress_lines", &h, "progress");
    let progress = run.lines_with("changed so far; still working");
    assert!(progress.len() >= 2, "{}", run.stdout);
    assert!(progress[0].starts_with(&format!("[stage2] Ownership of {}: ", h.display())));
    assert_eq!(run.changed, 601);
}

#[test]
fn unreadable_root_entries_and_everything_below_keep_their_owner_with_one_warning() {
    require_root();
    // Also where directories are opened and identified without openat2 (statx gives their mode).
    for (protected, force_openat) in [(true, false), (false, false), (true, true)] {
        unreadable_on_rule(protected, force_openat);
    }
}

fn unreadable_on_rule(protected: bool, force_openat: bool) {
    use std::os::unix::fs::PermissionsExt;
    let t = tempdir();
    let h = t.path().join("data");
    std::fs::create_dir_all(h.join("vault/deeper")).unwrap();
    std::fs::write(h.join("vault/deeper/readable"), b"r").unwrap();
    std::fs::set_permissions(
        h.join("vault/deeper/readable"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(h.join("vault"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(h.join("secret"), b"s").unwrap();
    std::fs::set_permissions(h.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(h.join("open"), b"o").unwrap();
    std::fs::set_permissions(h.join("open"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let parent = anchor(t.path());
    let report = Report::stage2(false);
    let (stats, _) = repair_with(
        &report,
        &parent,
        OsStr::new("data"),
        &handover(),
        Options {
            force_openat,
            ..on_rule(protected)
        },
    );
    for p in ["vault", "vault/deeper", "vault/deeper/readable", "secret"] {
        assert_eq!(owner(&h.join(p)), (0, 0), "{p}");
    }
    assert_eq!(owner(&h.join("open")), U);
    assert_eq!(owner(&h), U);
    assert_eq!(stats.changed, 2, "data and open");
    assert_eq!(report.warnings(), 1, "one warning for the tree");
}

#[test]
fn only_errors_that_every_chown_would_meet_end_the_walk() {
    for e in [Errno::PERM, Errno::ROFS, Errno::INVAL, Errno::OPNOTSUPP] {
        assert!(volume_refuses_chown(e), "{e:?}");
    }
    // One entry's trouble (or a passing one): warned about, and the walk goes on.
    for e in [
        Errno::IO,
        Errno::NOSPC,
        Errno::DQUOT,
        Errno::ACCESS,
        Errno::NOMEM,
        Errno::BADF,
    ] {
        assert!(!volume_refuses_chown(e), "{e:?}");
    }
}

#[test]
fn repair_with_any_number_of_helpers_counts_every_entry_once() {
    require_root();
    let t = tempdir();
    for helpers in [0, 2] {
        let h = wide_tree(&t.path().join(format!("h{helpers}")));
        for p in all_paths(&h) {
            lchown(&p, (0, 0));
        }
        let parent = anchor(h.parent().unwrap());
        let report = Report::stage2(false);
        let s = repair_with_helpers(&report, &parent, OsStr::new("data"), &handover(), helpers);
        let total = all_paths(&h).len() as u64;
        assert_eq!(
            (s.checked, s.changed, s.refused),
            (total, total, false),
            "{helpers} helpers"
        );
        assert_eq!(report.warnings(), 0);
        for p in all_paths(&h) {
            assert_eq!(owner(&p), U, "{}", p.display());
        }
    }
}

/// Progress lines of a shared walk: printed by the caller's thread only, counting each entry once, so
/// the counts only grow and never pass the number of entries.
#[test]
fn shared_walk_progress_counts_each_entry_once() {
    if is_child("shared_walk_progress_counts_each_entry_once") {
        return;
    }
    require_root();
    let t = tempdir();
    let h = t.path().join("data");
    for d in 0..120 {
        let dir = h.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..40 {
            std::fs::write(dir.join(format!("f{f}")), b"").unwrap();
        }
    }
    let total = all_paths(&h).len() as u64;
    let run = run_child(
        "shared_walk_progress_counts_each_entry_once",
        &h,
        "progress,helpers=1",
    );
    assert_eq!((run.checked, run.changed, run.warnings), (total, total, 0));
    let counts: Vec<u64> = run
        .lines_with("changed so far; still working")
        .iter()
        .map(|l| {
            let (_, rest) = l.split_once(": ").unwrap();
            rest.split(' ').next().unwrap().parse().unwrap()
        })
        .collect();
    assert!(!counts.is_empty(), "{}", run.stdout);
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]) && counts.iter().all(|&c| c <= total),
        "progress counts {counts:?} of {total} entries"
    );
}

/// A refused chown in one thread stops the others at their next directory: the walk does not go on
/// checking a volume it has given up on.
#[test]
fn a_refusal_in_one_thread_stops_every_thread() {
    if is_child("a_refusal_in_one_thread_stops_every_thread") {
        return;
    }
    require_root();
    let t = tempdir();
    let h = t.path().join("data");
    for d in 0..1000 {
        let dir = h.join(format!("d{d}"));
        std::fs::create_dir_all(dir.join("below")).unwrap();
        for f in 0..10 {
            std::fs::write(dir.join(format!("f{f}")), b"").unwrap();
        }
    }
    for p in all_paths(&h) {
        lchown(&p, U);
    }
    let total = all_paths(&h).len() as u64;
    // Only the subdirectory the walk enters first (the first in directory order) needs a chown, which
    // the volume refuses: the idle helper is handed it, and the caller's thread walks on meanwhile.
    let first = std::fs::read_dir(&h)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    lchown(&first.join("f0"), (0, 0));
    for _ in 0..3 {
        let run = run_child(
            "a_refusal_in_one_thread_stops_every_thread",
            &h,
            "nochown,helpers=1",
        );
        assert_eq!(
            (run.changed, run.warnings, run.refused),
            (0, 1, true),
            "{}",
            run.stdout
        );
        assert!(
            run.checked < total / 2,
            "{} of {total} entries checked after the refusal",
            run.checked
        );
    }
}

/// Entries left with their owner are counted across the threads of a shared walk: one warning with the
/// total.
/// Swaps a sibling directory for a symlink to `victim` (or, with `link`, for a hard link to it) the
/// moment the walk warns about a file inside the other one, that is after the parent was listed and
/// before the sibling is entered: the swap the walk must not follow, made at a known point instead of by
/// a racing process.
#[derive(Debug)]
struct SwapOnWarning {
    top: PathBuf,
    victim: PathBuf,
    link: bool,
    swapped: std::sync::Mutex<Option<String>>,
}

impl crate::report::Keeper for SwapOnWarning {
    fn keep(&self, line: &str) {
        let mut swapped = self.swapped.lock().unwrap();
        if swapped.is_some() {
            return;
        }
        let walking = if line.contains("/one/") { "one" } else { "two" };
        let other = if walking == "one" { "two" } else { "one" };
        let at = self.top.join(other);
        std::fs::rename(&at, self.top.join(format!("{other}.moved"))).unwrap();
        match self.link {
            true => std::fs::hard_link(&self.victim, &at).unwrap(),
            false => std::os::unix::fs::symlink(&self.victim, &at).unwrap(),
        }
        *swapped = Some(other.to_owned());
    }
}

#[test]
fn a_directory_swapped_after_the_listing_is_not_followed() {
    // For a symlink to a directory outside and for a hard link to a foreign file, on both ways of opening
    // a subdirectory: openat2 with RESOLVE_NO_SYMLINKS, and the openat fallback (O_NOFOLLOW |
    // O_DIRECTORY) used where openat2 is missing.
    require_root();
    for (force_openat, link) in [(false, false), (true, false), (false, true), (true, true)] {
        let t = tempdir();
        let victim = t.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join("keep"), b"k").unwrap();
        let h = t.path().join("data");
        // Root's and executable, like a set-uid program: what a directory's mode check would let through.
        let shadow = t.path().join("shadow");
        std::fs::write(&shadow, b"root:*:").unwrap();
        std::fs::set_permissions(&shadow, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        for d in ["one", "two"] {
            std::fs::create_dir_all(h.join(d)).unwrap();
            // A foreign hard link: the warning that triggers the swap.
            std::fs::hard_link(&shadow, h.join(d).join("innocent")).unwrap();
        }
        let parent = anchor(t.path());
        let report = Report::stage2(false);
        let swap = std::sync::Arc::new(SwapOnWarning {
            top: h.clone(),
            victim: if link { shadow.clone() } else { victim.clone() },
            link,
            swapped: std::sync::Mutex::new(None),
        });
        report.keep_record(SharedKeeper(swap.clone()));
        let opts = Options {
            force_openat,
            helpers: Some(0),
            ..Options::default()
        };
        repair_with(&report, &parent, OsStr::new("data"), &handover(), opts);
        let swapped = swap.swapped.lock().unwrap().clone();
        assert!(
            swapped.is_some(),
            "force_openat={force_openat}, hard link={link}: no warning, no swap"
        );
        for p in [&victim, &victim.join("keep"), &shadow] {
            assert_eq!(
                owner(p),
                (0, 0),
                "force_openat={force_openat}, hard link={link}: {} was handed over",
                p.display()
            );
        }
        assert_eq!(owner(&h), U);
    }
}

#[derive(Debug)]
struct SharedKeeper(std::sync::Arc<SwapOnWarning>);

impl crate::report::Keeper for SharedKeeper {
    fn keep(&self, line: &str) {
        self.0.keep(line)
    }
}

#[test]
fn a_target_name_that_is_not_one_plain_component_is_refused() {
    // `.` would be the anchor itself, `..` its parent, `a/b` a path below it: the walk takes none of
    // them, warns once, and changes nothing.
    require_root();
    let t = tempdir();
    let top = t.path().join("top");
    std::fs::create_dir_all(top.join("a/b")).unwrap();
    std::fs::write(top.join("a/b/f"), b"x").unwrap();
    let parent = anchor(&top.join("a"));
    for name in ["", ".", "..", "b/", "b/f"] {
        let report = Report::stage2(false);
        let stats = repair(&report, &parent, OsStr::new(name), &handover());
        assert_eq!((stats.checked, stats.changed), (0, 0), "{name:?}");
        assert_eq!(report.warnings(), 1, "{name:?}");
        for p in all_paths(t.path()) {
            assert_eq!(owner(&p), (0, 0), "{name:?}: {}", p.display());
        }
    }
}

#[test]
fn the_warning_about_entries_left_gives_the_command_that_hands_them_over() {
    // One entry: `chown -R` of that entry. More: one `find` over the volume for all of them.
    const NAME: &str = "the_warning_about_entries_left_gives_the_command_that_hands_them_over";
    if is_child(NAME) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    require_root();
    for n in [1, 2] {
        let t = tempdir();
        let h = t.path().join("data");
        std::fs::create_dir(&h).unwrap();
        for i in 0..n {
            let p = h.join(format!("secret{i}"));
            std::fs::write(&p, b"s").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        for p in all_paths(&h) {
            lchown(&p, (0, 0));
        }
        let run = run_child(NAME, &h, "");
        let left = run.lines_with("left ");
        assert_eq!(left.len(), 1, "{}", run.stdout);
        let (u, g) = U;
        let fix = match n {
            1 => format!("run: chown -R {u}:{g} {}/secret0 — continuing", h.display()),
            _ => format!(
                "run: find {} -xdev \\( ! -user {u} -o ! -group {g} \\) -exec chown -h {u}:{g} {{}} + — continuing",
                h.display()
            ),
        };
        assert!(
            left[0].ends_with(&fix),
            "{n} left: {}\nwanted the end: {fix}",
            left[0]
        );
        assert_eq!(owner(&h), U);
    }
}

#[test]
fn entries_left_by_every_thread_are_counted_in_the_one_warning() {
    if is_child("entries_left_by_every_thread_are_counted_in_the_one_warning") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    require_root();
    let t = tempdir();
    let h = wide_tree(&t.path().join("w"));
    for d in 0..60 {
        let p = h.join(format!("d{d}/inner/secret"));
        std::fs::write(&p, b"s").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    for p in all_paths(&h) {
        lchown(&p, (0, 0));
    }
    let run = run_child(
        "entries_left_by_every_thread_are_counted_in_the_one_warning",
        &h,
        "helpers=3",
    );
    let left = run.lines_with("left ");
    assert_eq!(left.len(), 1, "{}", run.stdout);
    assert!(
        left[0].starts_with("[stage2] Warning: left 60 entries the runtime user could not read"),
        "{}",
        left[0]
    );
    assert_eq!(run.warnings, 1);
    assert_eq!(run.checked, all_paths(&h).len() as u64);
}
