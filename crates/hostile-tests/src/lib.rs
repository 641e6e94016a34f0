//! Shared fixtures of the adversarial suite: where the real programs are, root-owned victims outside the
//! volume, tree snapshots for "nothing changed" and "same end state" assertions, and a small seeded PRNG
//! so a failing run can be replayed (`HERMES_ATTACK_SEED`).
//!
//! The programs are the workspace's real binaries in `target/<profile>/`, next to the `deps/` directory
//! the test executable lives in. `cargo nextest run --workspace` and `cargo test --workspace` build them
//! before any test runs; a missing binary fails the test with the command to run.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use test_support::TempRoot;

pub use test_support::{require_root, HERMES_GID, HERMES_UID};

/// The programs under attack.
pub const STAGE2: &str = "stage2-setup";
pub const RECONCILE: &str = "reconcile-profiles";
pub const SUPERVISE_PERMS: &str = "supervise-perms";
pub const MAIN_WRAPPER: &str = "main-wrapper";

/// The host path of one of the workspace's programs, built in the same profile as this test.
#[track_caller]
pub fn program(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable outside target/<profile>/deps");
    let p = profile_dir.join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace` first (cargo nextest run --workspace builds it)",
        p.display()
    );
    p
}

/// Number from the environment (`HERMES_ATTACK_BOOTS`, …), else `default`.
pub fn env_count(var: &str, default: u64) -> u64 {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v:?} is not a number")),
        _ => default,
    }
}

/// The seed of this run: `HERMES_ATTACK_SEED`, else the clock. Printed by the tests so a failure can be
/// replayed.
pub fn seed() -> u64 {
    let s = env_count("HERMES_ATTACK_SEED", 0);
    if s != 0 {
        return s;
    }
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    t ^ (u64::from(std::process::id()) << 32) | 1
}

/// xorshift64*: deterministic from the seed, good enough to pick targets and instants.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A temp root with the image's seed sources (S2-18) and an empty scandir, like the image at first boot.
pub fn image() -> TempRoot {
    require_root();
    let r = TempRoot::new();
    r.write("/opt/hermes/.env.example", "# example\nOPENAI_API_KEY=\n");
    r.write(
        "/opt/hermes/cli-config.yaml.example",
        "model: default\ngateway:\n  multiplex_profiles: false\n",
    );
    r.write("/opt/hermes/docker/SOUL.md", "You are Hermes.\n");
    r.mkdir("/run/service");
    r
}

/// A volume from an earlier container: root-owned profiles, cron jobs, sessions and state, so the first
/// boot has ownership to repair and slots to publish.
pub fn populate_volume(r: &TempRoot) {
    r.write("/opt/data/profiles/coder/SOUL.md", "coder\n");
    r.write("/opt/data/profiles/coder/.env", "OPENAI_API_KEY=sk-coder\n");
    r.write(
        "/opt/data/profiles/coder/gateway_state.json",
        "{\"gateway_state\":\"running\"}\n",
    );
    r.write(
        "/opt/data/profiles/coder/state/gateway.lifecycle.json",
        "{\"phase\":\"exited\"}\n",
    );
    r.write("/opt/data/profiles/writer/SOUL.md", "writer\n");
    r.write("/opt/data/profiles/writer/gateway.pid", "4242\n");
    r.write("/opt/data/cron/jobs.json", "[]\n");
    r.write("/opt/data/sessions/s1/transcript.jsonl", "{}\n");
    r.write("/opt/data/memories/m.md", "memory\n");
    r.write("/opt/data/auth.json", "{\"providers\":{}}");
    r.write("/opt/data/state.db", "SQLite format 3\0");
    r.write("/opt/data/.install_method", "docker\n");
    r.mkdir("/opt/data/platforms/pairing");
    r.mkdir("/opt/data/pairing");
    // Secrets as the application writes them.
    r.chmod("/opt/data/auth.json", 0o600);
    r.chmod("/opt/data/profiles/coder/.env", 0o600);
}

/// Root-owned entries outside the volume that a hostile runtime user points links at. Nothing the boot
/// does may change them.
pub struct Victims {
    /// In-container path of the victims' directory.
    pub base: &'static str,
    /// Host paths.
    pub files: Vec<PathBuf>,
    pub dirs: Vec<PathBuf>,
    /// A root-owned 0666 file: the one kind of root file the runtime user may hard-link while
    /// `fs.protected_hardlinks` is 1.
    pub linkable: PathBuf,
    before: BTreeMap<String, String>,
    host_base: PathBuf,
}

impl Victims {
    pub fn plant(r: &TempRoot) -> Victims {
        let base = "/victims";
        r.write("/victims/file", "victim file\n");
        r.write("/victims/secret", "victim secret\n");
        r.write("/victims/shared", "shared victim\n");
        r.write("/victims/dir/keep", "keep\n");
        r.write("/victims/other/keep", "other user's\n");
        r.chmod("/victims/file", 0o644);
        r.chmod("/victims/secret", 0o600);
        r.chmod("/victims/shared", 0o666);
        r.chmod("/victims/dir", 0o755);
        r.chmod("/victims/dir/keep", 0o644);
        r.chown("/victims/other/keep", 20000, 20000);
        r.chown("/victims/other", 20000, 20000);
        r.chmod("/victims/other", 0o700);
        r.chmod("/victims", 0o755);
        let host_base = r.path(base);
        let before = snapshot(&host_base, &|_, _| None);
        Victims {
            base,
            files: vec![
                r.path("/victims/file"),
                r.path("/victims/secret"),
                r.path("/victims/shared"),
            ],
            dirs: vec![
                r.path("/victims/dir"),
                r.path("/victims/other"),
                r.path("/victims"),
            ],
            linkable: r.path("/victims/shared"),
            before,
            host_base,
        }
    }

    /// Differences from the planted state: owner, mode, type, content, and entries appeared or gone.
    ///
    /// One allowance, the limit SPEC CM-08 accepts by design: with `fs.protected_hardlinks` = 1 the
    /// ownership walk changes a non-directory by name (`fstatat` then `fchownat`), so a name swapped in
    /// between can redirect the chown to a file the runtime user could already hard-link — only a file it
    /// may already rewrite, like the 0666 `linkable` victim. Its owner and mode may then follow the
    /// runtime user's; its type and content must still never change.
    pub fn changes(&self) -> Vec<String> {
        let mut now = snapshot(&self.host_base, &|_, _| None);
        let key = self
            .linkable
            .strip_prefix(&self.host_base)
            .map(|r| format!("/{}", r.display()))
            .unwrap_or_default();
        let body = |v: &str| {
            v.rsplit_once(' ')
                .and_then(|(l, _)| l.rsplit_once(' '))
                .map(|(b, _)| b.to_string())
        };
        if let (Some(b), Some(a)) = (self.before.get(&key), now.get(&key)) {
            if body(b).is_some() && body(b) == body(a) {
                now.insert(key, b.clone());
            }
        }
        diff(&self.before, &now)
    }
}

/// `path → "kind uid:gid mode [content]"` for `base` and everything below it, never following symlinks.
/// `mask(rel, content)` may replace a file's content with a stable stand-in (generated secrets,
/// timestamps). A missing `base` gives an empty map.
pub fn snapshot(base: &Path, mask: &dyn Fn(&str, &[u8]) -> Option<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![base.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let rel = p
            .strip_prefix(base)
            .map(|r| format!("/{}", r.display()))
            .unwrap_or_default();
        let ft = m.file_type();
        let what = if ft.is_symlink() {
            format!(
                "link->{}",
                std::fs::read_link(&p)
                    .map(|t| t.display().to_string())
                    .unwrap_or_default()
            )
        } else if ft.is_file() {
            let content = std::fs::read(&p).unwrap_or_default();
            let shown =
                mask(&rel, &content).unwrap_or_else(|| String::from_utf8_lossy(&content).into_owned());
            format!("file {shown:?}")
        } else if ft.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
            }
            "dir".to_string()
        } else if ft.is_fifo() {
            "fifo".into()
        } else if ft.is_socket() {
            "socket".into()
        } else {
            "other".into()
        };
        out.insert(
            rel,
            format!(
                "{what} {}:{} {:04o}",
                m.uid(),
                m.gid(),
                m.permissions().mode() & 0o7777
            ),
        );
    }
    out
}

/// Human-readable differences between two snapshots.
pub fn diff(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => out.push(format!("{k}: gone (was {v})")),
            Some(w) if w != v => out.push(format!("{k}: {v} → {w}")),
            _ => {}
        }
    }
    for (k, w) in after {
        if !before.contains_key(k) {
            out.push(format!("{k}: new entry {w}"));
        }
    }
    out
}

/// Whether a name is a temporary of the atomic writers (`.<name>.tmp.<pid>.<n>`).
pub fn is_writer_temp(name: &[u8]) -> bool {
    name.starts_with(b".") && name.windows(5).any(|w| w == b".tmp.")
}

/// Every path below `base` (host paths), not following symlinks.
pub fn walk(base: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![base.to_path_buf()];
    while let Some(p) = stack.pop() {
        if let Ok(m) = std::fs::symlink_metadata(&p) {
            if m.is_dir() {
                if let Ok(rd) = std::fs::read_dir(&p) {
                    stack.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
                }
            }
            out.push(p);
        }
    }
    out
}

/// The final component of a path as bytes.
pub fn file_name_bytes(p: &Path) -> &[u8] {
    p.file_name().map(|n| n.as_bytes()).unwrap_or_default()
}

/// Panicked, or died of a signal where an exit code was due: the "never panic" check of every test here.
pub fn crashed(code: Option<i32>, stderr: &str) -> bool {
    code == Some(101) || code.is_none() || stderr.contains("panicked")
}
