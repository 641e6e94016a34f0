//! Bad-input corpus: every program is fed nonsense — garbage environment values, broken account files,
//! JSON and YAML that is not what it should be, wrong file types where a file is expected, a full
//! filesystem (a tiny tmpfs), a read-only one (a read-only bind mount), an unprivileged caller. For every
//! case: no panic (exit status never 101, no `panicked`, no signal, no hang), the documented exit code
//! (SPEC 7.4), and the input named on one line of the output where a message is due.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hostile_tests::{
    crashed, env_count, image, populate_volume, program, MAIN_WRAPPER, RECONCILE, STAGE2, SUPERVISE_PERMS,
};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use test_support::TempRoot;

/// A case's set-up step; may return a mount to undo after the run.
type Setup = Box<dyn Fn(&TempRoot) -> Option<Mount>>;

struct Case {
    name: String,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    setup: Setup,
    user: Option<(u32, u32)>,
    /// Acceptable exit codes (SPEC 7.4).
    codes: Vec<i32>,
    /// Text one output line must contain: the input named (or the documented message).
    mention: Option<String>,
}

impl Case {
    fn new(name: impl Into<String>, code: i32) -> Case {
        Case {
            name: name.into(),
            args: vec![],
            env: vec![],
            setup: Box::new(|_| None),
            user: None,
            codes: vec![code],
            mention: None,
        }
    }
    fn env(mut self, k: &str, v: impl Into<OsString>) -> Case {
        self.env.push((k.into(), v.into()));
        self
    }
    fn arg(mut self, a: impl Into<OsString>) -> Case {
        self.args.push(a.into());
        self
    }
    fn setup(mut self, f: impl Fn(&TempRoot) + 'static) -> Case {
        self.setup = Box::new(move |r| {
            f(r);
            None
        });
        self
    }
    fn mount(mut self, f: impl Fn(&TempRoot) -> Option<Mount> + 'static) -> Case {
        self.setup = Box::new(f);
        self
    }
    fn user(mut self, uid: u32, gid: u32) -> Case {
        self.user = Some((uid, gid));
        self
    }
    fn mention(mut self, m: impl Into<String>) -> Case {
        self.mention = Some(m.into());
        self
    }
    fn codes(mut self, c: &[i32]) -> Case {
        self.codes = c.to_vec();
        self
    }
}

/// A mount in a temp root, detached when dropped (also when the test fails).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

/// A tmpfs of `kib` KiB at `p`, filled up so the next write gets ENOSPC.
fn full_tmpfs(r: &TempRoot, p: &str, kib: u32, fill: bool) -> Option<Mount> {
    let at = r.path(p);
    std::fs::create_dir_all(&at).expect("mountpoint");
    let opts = format!("size={kib}k,nr_inodes=64,mode=0755");
    mount(
        Some("tmpfs"),
        &at,
        Some("tmpfs"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .expect("mount tmpfs");
    let m = Mount(at.clone());
    if fill {
        // Leave a few entries the boot will want to rewrite, then exhaust the space.
        std::fs::write(at.join(".env"), "OPENAI_API_KEY=sk\n").expect("seed .env");
        std::fs::write(at.join("config.yaml"), "model: x\n").expect("seed config");
        let _ = std::fs::write(at.join("filler"), vec![0u8; kib as usize * 1024]);
    }
    Some(m)
}

/// `p` bind-mounted read-only onto itself.
fn read_only(r: &TempRoot, p: &str) -> Option<Mount> {
    let at = r.path(p);
    std::fs::create_dir_all(&at).expect("mountpoint");
    mount(Some(&at), &at, None::<&str>, MsFlags::MS_BIND, None::<&str>).expect("bind mount");
    let m = Mount(at.clone());
    mount(
        None::<&str>,
        &at,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .expect("remount read-only");
    Some(m)
}

fn fifo(r: &TempRoot, p: &str) {
    let path = r.path(p);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("parent");
    }
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
}

fn socket(r: &TempRoot, p: &str) {
    let path = r.path(p);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("parent");
    }
    // The listener is dropped; the socket inode stays.
    std::os::unix::net::UnixListener::bind(&path).expect("bind socket");
}

fn chardev(r: &TempRoot, p: &str) {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    let path = r.path(p);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("parent");
    }
    // 1:3 is /dev/null: harmless if something writes to it.
    mknod(
        &path,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )
    .expect("mknod");
}

/// Which kind of odd entry to put where a regular file (or directory) is expected.
#[derive(Clone, Copy, Debug)]
enum Odd {
    Fifo,
    Socket,
    Device,
    Dir,
    File,
    Dangling,
}

const ODD: [Odd; 6] = [
    Odd::Fifo,
    Odd::Socket,
    Odd::Device,
    Odd::Dir,
    Odd::File,
    Odd::Dangling,
];

fn place(r: &TempRoot, p: &str, odd: Odd) {
    match odd {
        Odd::Fifo => fifo(r, p),
        Odd::Socket => socket(r, p),
        Odd::Device => chardev(r, p),
        Odd::Dir => r.mkdir(&format!("{p}/inner")),
        Odd::File => r.write(p, "not what you expected\n"),
        Odd::Dangling => {
            if let Some(parent) = r.path(p).parent() {
                std::fs::create_dir_all(parent).expect("parent");
            }
            r.symlink("/nonexistent/target", p)
        }
    }
}

fn non_utf8(prefix: &str) -> OsString {
    let mut v = prefix.as_bytes().to_vec();
    v.extend_from_slice(b"\xff\xfe");
    OsString::from_vec(v)
}

/// How long one case may run before it counts as hung: 10 s, a hundred times what the slowest case takes
/// natively; `HERMES_HANG_LIMIT_SECS` raises it where every program runs emulated (`cargo xtask cross`).
fn hang_limit() -> Duration {
    Duration::from_secs(env_count("HERMES_HANG_LIMIT_SECS", 10))
}

/// Runs every case; returns the failures.
fn run_cases(prog: &str, cases: Vec<Case>) -> usize {
    let bin = program(prog);
    let limit = hang_limit();
    let n = cases.len();
    let mut failures = Vec::new();
    for case in cases {
        let r = image();
        let mounted = (case.setup)(&r);
        let mut cmd = r.command(&bin);
        cmd.args(&case.args).envs(case.env.iter().map(|(k, v)| (k, v)));
        if let Some((u, g)) = case.user {
            cmd.uid(u).gid(g);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let out = run_bounded(&mut cmd, limit);
        drop(mounted);
        let (code, stdout, stderr) = match out {
            Ok(out) => out,
            Err(doing) => {
                failures.push(format!(
                    "{}: hung (killed after {limit:?}; it was {doing})",
                    case.name
                ));
                continue;
            }
        };
        let stdout = String::from_utf8_lossy(&stdout).into_owned();
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        let shown = || format!("exit {code:?}\n--- stdout\n{stdout}--- stderr\n{stderr}");
        if crashed(code, &stderr) {
            failures.push(format!("{}: crashed: {}", case.name, shown()));
            continue;
        }
        if !code.is_some_and(|c| case.codes.contains(&c)) {
            failures.push(format!(
                "{}: expected exit {:?}, got {}",
                case.name,
                case.codes,
                shown()
            ));
            continue;
        }
        if code != Some(0) && stderr.trim().is_empty() && stdout.trim().is_empty() {
            failures.push(format!("{}: failed without a message", case.name));
            continue;
        }
        if let Some(m) = &case.mention {
            let all = format!("{stdout}{stderr}");
            if !all.lines().any(|l| l.contains(m.as_str())) {
                failures.push(format!("{}: no output line names {m:?}: {}", case.name, shown()));
            }
        }
    }
    eprintln!("{prog}: {n} cases, {} failures", failures.len());
    assert!(
        failures.is_empty(),
        "{prog}: {} of {n} cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    n
}

/// Runs `cmd` to the end or kills it after `limit`: (exit code, stdout, stderr), or on a hang what the
/// process was doing when it was killed.
#[allow(clippy::type_complexity)]
fn run_bounded(
    cmd: &mut std::process::Command,
    limit: Duration,
) -> Result<(Option<i32>, Vec<u8>, Vec<u8>), String> {
    use std::io::Read;
    let mut child = cmd.spawn().expect("spawn program under test");
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break Ok(st);
        }
        if Instant::now() > deadline {
            let doing = what_it_is_doing(child.id());
            let _ = child.kill();
            let _ = child.wait();
            break Err(doing);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    status.map(|st| (st.code(), stdout, stderr))
}

/// A hung process's command line (still the test binary's if it never reached `exec`), scheduler state,
/// kernel wait channel and thread count: enough to tell a program waiting on something from a stalled
/// start.
fn what_it_is_doing(pid: u32) -> String {
    let read = |f: &str| match std::fs::read(format!("/proc/{pid}/{f}")) {
        Ok(b) => String::from_utf8_lossy(&b).replace('\0', " ").trim().to_owned(),
        Err(e) => format!("({e})"),
    };
    let stat = read("stat");
    // Field 3 of stat, after the parenthesised command name that may itself hold spaces.
    let state = stat
        .rsplit_once(") ")
        .map_or("?", |(_, rest)| &rest[..1.min(rest.len())]);
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
    format!(
        "{:?}, state {state}, waiting in {:?}, {threads} thread(s)",
        read("cmdline"),
        read("wchan")
    )
}

/// Values that are not a decimal number from 1 to 65534.
fn bad_ids() -> Vec<OsString> {
    let mut v: Vec<OsString> = [
        "abc",
        "-1",
        "0",
        "65535",
        "99999999999999999999999999999999",
        " 1000",
        "1000 ",
        "+1000",
        "1e3",
        "0x10",
        "1000:1000",
        // A newline or an escape sequence in a value must not split or colour the warning line.
        "1000\n",
        "10\x1b[31m00",
        "１０００",
        "10\t00",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    v.push(non_utf8("10"));
    v
}

fn lossy(v: &OsStr) -> String {
    boot_display(v.as_bytes())
}

/// The programs' rendering of raw bytes (CM-04), stated here on its own terms: control characters
/// (C0, DEL) and non-UTF-8 bytes as `\xNN`, C1 controls as `\u{NN}`, so one value is one line.
fn boot_display(b: &[u8]) -> String {
    let mut out = String::new();
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c as u32 {
                0..=0x1f | 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
                0x80..=0x9f => out.push_str(&format!("\\u{{{:02x}}}", c as u32)),
                _ => out.push(c),
            }
        }
        for x in chunk.invalid() {
            out.push_str(&format!("\\x{x:02x}"));
        }
    }
    out
}

const PASSWD_OK: &str = "root:x:0:0:root:/root:/bin/sh\nhermes:x:10000:10000::/opt/data:/bin/sh\n";

/// Account files that break in every way a file can; (name, passwd, group, U resolvable).
fn account_corpus() -> Vec<(&'static str, Vec<u8>, Vec<u8>, bool)> {
    let group_ok = b"root:x:0:\nhermes:x:10000:\n".to_vec();
    let p = |s: &str| s.as_bytes().to_vec();
    vec![
        ("empty passwd", vec![], group_ok.clone(), false),
        (
            "passwd without hermes",
            p("root:x:0:0::/root:/bin/sh\n"),
            group_ok.clone(),
            false,
        ),
        (
            "hermes uid not a number",
            p("hermes:x:abc:10000::/opt/data:/bin/sh\n"),
            group_ok.clone(),
            false,
        ),
        (
            "hermes uid overflows",
            p("hermes:x:4294967296:10000::/opt/data:/bin/sh\n"),
            group_ok.clone(),
            false,
        ),
        (
            "hermes too few fields",
            p("hermes:x:10000\n"),
            group_ok.clone(),
            false,
        ),
        (
            "binary garbage then hermes",
            [b"\x00\xff\xfe::::\n\n:::::::\n".to_vec(), p(PASSWD_OK)].concat(),
            group_ok.clone(),
            true,
        ),
        (
            "CRLF lines",
            p("root:x:0:0::/root:/bin/sh\r\nhermes:x:10000:10000::/opt/data:/bin/sh\r\n"),
            group_ok.clone(),
            true,
        ),
        (
            "no final newline",
            p("hermes:x:10000:10000::/opt/data:/bin/sh"),
            group_ok.clone(),
            true,
        ),
        (
            "duplicate hermes",
            p("hermes:x:10000:10000::/opt/data:/bin/sh\nhermes:x:2:2::/:/bin/sh\n"),
            group_ok.clone(),
            true,
        ),
        (
            "NIS +/- lines",
            p("+@netgroup\n-baduser\n+\nhermes:x:10000:10000::/opt/data:/bin/sh\n"),
            group_ok.clone(),
            true,
        ),
        (
            "1 MiB line",
            [vec![b'x'; 1 << 20], p("\n"), p(PASSWD_OK)].concat(),
            group_ok.clone(),
            true,
        ),
        (
            "group garbage",
            p(PASSWD_OK),
            b"\xff\xfe\n:::\nhermes:x:abc:\nvideo:x:44:hermes,,,\n".to_vec(),
            true,
        ),
        ("group empty", p(PASSWD_OK), vec![], true),
        (
            "group duplicate gid",
            p(PASSWD_OK),
            p("a:x:10000:\nb:x:10000:hermes\nhermes:x:10000:\n"),
            true,
        ),
        (
            "hermes gid 0",
            p("hermes:x:10000:0::/opt/data:/bin/sh\n"),
            group_ok,
            true,
        ),
    ]
}

fn stage2_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // S2-06: every id variable with every bad value.
    for var in ["HERMES_UID", "PUID", "HERMES_GID", "PGID"] {
        for v in bad_ids() {
            let m = format!("ignoring {var}='{}'", lossy(&v));
            cases.push(Case::new(format!("{var}={v:?}"), 0).env(var, v).mention(m));
        }
        cases.push(Case::new(format!("{var} empty"), 0).env(var, ""));
        cases.push(
            Case::new(format!("{var}=0099"), 0)
                .env(var, "0099")
                .mention("Changing hermes"),
        );
    }
    cases.push(
        Case::new("HERMES_UID overrides PUID", 0)
            .env("HERMES_UID", "1000")
            .env("PUID", "2000")
            .mention("HERMES_UID overrides PUID"),
    );
    // S2-14, S2-15: runtime directories.
    let dirs: Vec<OsString> = [
        "relative/dir",
        "/",
        "//",
        "/run/user/10000",
        "/tmp/../tmp/x",
        "/nonexistent/deep/dir",
        "/etc/passwd",
        "/etc/passwd/below",
        "/tmp/x\ny",
    ]
    .iter()
    .map(OsString::from)
    .chain([
        non_utf8("/tmp/raw"),
        OsString::from(format!("/tmp/{}", "n".repeat(300))),
        OsString::from(format!("/{}", "d/".repeat(3000))),
    ])
    .collect();
    for var in ["XDG_RUNTIME_DIR", "HERMES_REAL_HOME"] {
        for d in &dirs {
            cases.push(Case::new(format!("{var}={d:?}"), 0).env(var, d.clone()));
        }
    }
    cases.push(
        Case::new("XDG_RUNTIME_DIR relative named", 0)
            .env("XDG_RUNTIME_DIR", "rel/x")
            .mention("rel/x"),
    );
    cases.push(
        Case::new("XDG_RUNTIME_DIR owned by another uid", 0)
            .env("XDG_RUNTIME_DIR", "/run/other")
            .setup(|r| {
                r.mkdir("/run/other");
                r.chown("/run/other", 4242, 4242);
            })
            .mention("refusing to adopt"),
    );
    // S2-24: credential residence.
    for (v, reason) in [
        ("relative", true),
        (" /lead", true),
        ("/trail ", true),
        ("~/auth", true),
        ("/a/./b", true),
        ("/a/../b", true),
        ("/", true),
        ("///", true),
        ("/a\tb", true),
        ("/opt/data", false),
        ("/etc/passwd", false),
        ("/opt/auth", false),
    ] {
        let mut c = Case::new(format!("HERMES_AUTH_HOME={v:?}"), 0)
            .env("HERMES_AUTH_HOME", v)
            .env("HERMES_AUTH_JSON_BOOTSTRAP", "{}");
        if reason {
            c = c.mention("ignoring invalid HERMES_AUTH_HOME");
        }
        cases.push(c);
    }
    cases.push(
        Case::new("HERMES_AUTH_HOME non-UTF-8", 0)
            .env("HERMES_AUTH_HOME", non_utf8("/auth"))
            .env("HERMES_AUTH_JSON_BOOTSTRAP", "{}"),
    );
    cases.push(
        // s6-overlay writes an empty value as one newline (a 0-byte file would unset the variable).
        Case::new("HERMES_AUTH_HOME from the envdir, empty", 0)
            .setup(|r| r.write("/run/s6/container_environment/HERMES_AUTH_HOME", "\n"))
            .mention("ignoring invalid HERMES_AUTH_HOME"),
    );
    // Values written into files.
    cases.push(
        Case::new("auth bootstrap 100 KiB", 0).env("HERMES_AUTH_JSON_BOOTSTRAP", "x".repeat(100 << 10)),
    );
    cases.push(Case::new("auth bootstrap non-UTF-8", 0).env("HERMES_AUTH_JSON_BOOTSTRAP", non_utf8("{")));
    for v in ["RUNNING", "running ", "stopped", "\u{202e}running"] {
        cases.push(
            Case::new(format!("HERMES_GATEWAY_BOOTSTRAP_STATE={v:?}"), 0)
                .env("HERMES_GATEWAY_BOOTSTRAP_STATE", v),
        );
    }
    for v in ["short", "a\nb", "x".repeat(100_000).as_str()] {
        cases.push(Case::new(format!("API_SERVER_KEY={:.20?}", v), 0).env("API_SERVER_KEY", v));
    }
    cases.push(
        Case::new("routing URL with a newline", 0)
            .env("NOUS_PORTAL_BASE_URL", "https://a\nEVIL=1")
            .mention("NOUS_PORTAL_BASE_URL"),
    );
    cases.push(Case::new("routing URL non-UTF-8", 0).env("HERMES_PORTAL_BASE_URL", non_utf8("https://x/")));
    // S2-04: HERMES_HOME.
    cases.push(
        Case::new("HERMES_HOME relative", 1)
            .env("HERMES_HOME", "data/rel")
            .mention("cannot create HERMES_HOME data/rel"),
    );
    cases.push(
        Case::new("HERMES_HOME is a file", 1)
            .env("HERMES_HOME", "/etc/passwd")
            .mention("cannot create HERMES_HOME /etc/passwd"),
    );
    cases.push(
        Case::new("HERMES_HOME below a file", 1)
            .env("HERMES_HOME", "/etc/passwd/x")
            .mention("cannot create HERMES_HOME /etc/passwd/x"),
    );
    cases.push(
        Case::new("HERMES_HOME name too long", 1)
            .env("HERMES_HOME", format!("/{}", "h".repeat(300)))
            .mention("cannot create HERMES_HOME"),
    );
    cases.push(
        Case::new("HERMES_HOME a FIFO", 1)
            .env("HERMES_HOME", "/opt/fifo")
            .setup(|r| fifo(r, "/opt/fifo"))
            .mention("cannot create HERMES_HOME /opt/fifo"),
    );
    cases.push(Case::new("HERMES_HOME non-UTF-8", 0).env("HERMES_HOME", non_utf8("/opt/d")));
    cases.push(
        Case::new("HERMES_HOME a symlink", 0)
            .setup(|r| {
                r.mkdir("/srv/real");
                r.symlink("/srv/real", "/opt/data");
            })
            .mention("refusing setup through symlinked path /opt/data"),
    );
    cases.push(
        Case::new("HERMES_HOME in a read-only parent", 1)
            .env("HERMES_HOME", "/ro/data")
            .mount(|r| read_only(r, "/ro"))
            .mention("cannot create HERMES_HOME /ro/data"),
    );
    // Account files.
    for (name, passwd, group, ok) in account_corpus() {
        let mut c = Case::new(format!("accounts: {name}"), if ok { 0 } else { 1 }).setup(move |r| {
            r.write("/etc/passwd", &passwd);
            r.write("/etc/group", &group);
        });
        if !ok {
            c = c.mention("runtime user hermes not found in /etc/passwd");
        }
        cases.push(c.env("HERMES_GID", "10001"));
    }
    cases.push(
        Case::new("passwd missing", 1)
            .setup(|r| std::fs::remove_file(r.path("/etc/passwd")).expect("rm"))
            .mention("/etc/passwd"),
    );
    cases.push(
        Case::new("passwd a FIFO", 1)
            .setup(|r| {
                std::fs::remove_file(r.path("/etc/passwd")).expect("rm");
                fifo(r, "/etc/passwd");
            })
            .mention("/etc/passwd"),
    );
    cases.push(
        Case::new("group missing", 0).setup(|r| std::fs::remove_file(r.path("/etc/group")).expect("rm")),
    );
    cases.push(
        Case::new("runtime user unknown", 1)
            .arg("--runtime-user")
            .arg("nosuch")
            .mention("runtime user nosuch not found"),
    );
    // An empty name means "not set" (CM-03).
    cases.push(Case::new("runtime user empty", 0).arg("--runtime-user").arg(""));
    cases.push(
        Case::new("runtime user non-UTF-8", 1)
            .env("HERMES_BOOT_USER", non_utf8("her"))
            .codes(&[1, 2]),
    );
    // Usage (CM-01).
    for a in ["--bogus", "stray", "-x", "--root"] {
        cases.push(Case::new(format!("argument {a}"), 2).arg(a));
    }
    // The seeds and secrets as the wrong kind of file (S2-12, S2-18, S2-19, S2-20).
    for target in [
        "/opt/data/.env",
        "/opt/data/config.yaml",
        "/opt/data/SOUL.md",
        "/opt/data/auth.json",
        "/opt/data/gateway_state.json",
        "/opt/data/.install_method",
        "/opt/data/profiles/coder/.env",
        "/opt/data/logs",
        "/opt/data/cron",
        "/opt/hermes/.env.example",
        "/opt/hermes/cli-config.yaml.example",
        "/tmp/hermes-files",
    ] {
        for odd in ODD {
            if matches!(odd, Odd::Dir)
                && (target.ends_with("/logs")
                    || target.ends_with("/cron")
                    || target.ends_with("hermes-files"))
            {
                continue;
            }
            cases.push(
                Case::new(format!("{target} is {odd:?}"), 0)
                    .env("HERMES_GATEWAY_BOOTSTRAP_STATE", "running")
                    .env("NOUS_PORTAL_BASE_URL", "https://portal.example")
                    .setup(move |r| {
                        r.mkdir("/opt/data/profiles/coder");
                        r.write("/opt/data/profiles/coder/SOUL.md", "x\n");
                        if !r.exists(target) {
                            place(r, target, odd);
                        }
                    }),
            );
        }
    }
    // .env contents (S2-19, S2-20).
    for (name, content) in [
        ("binary", b"\x00\xff\xfe\x01API_SERVER_KEY\n".to_vec()),
        ("no final newline", b"A=1".to_vec()),
        ("CRLF", b"A=1\r\nAPI_SERVER_KEY=\r\n".to_vec()),
        (
            "only empty key lines",
            b"API_SERVER_KEY=\nAPI_SERVER_KEY=\n".to_vec(),
        ),
        ("4 MiB single line", vec![b'a'; 4 << 20]),
        ("only a newline", b"\n".to_vec()),
    ] {
        cases.push(
            Case::new(format!(".env {name}"), 0)
                .env("NOUS_PORTAL_BASE_URL", "https://p.example")
                .setup(move |r| {
                    r.write("/opt/data/.env", &content);
                    r.chmod("/opt/data/.env", 0o600);
                }),
        );
    }
    // ENOSPC, EROFS, EPERM.
    cases.push(
        Case::new("volume full", 0)
            .env("NOUS_PORTAL_BASE_URL", "https://p.example")
            .mount(|r| full_tmpfs(r, "/opt/data", 64, true))
            .mention("ENOSPC"),
    );
    cases.push(Case::new("volume out of inodes", 0).mount(|r| {
        full_tmpfs(r, "/opt/data", 4096, false).inspect(|_| {
            for i in 0..70 {
                if std::fs::write(r.path(&format!("/opt/data/f{i}")), "").is_err() {
                    break;
                }
            }
        })
    }));
    cases.push(
        // Refused at once with one line (the upstream image contract), not warned about per step.
        Case::new("volume read-only", 1)
            .mount(|r| {
                r.write("/opt/data/.env", "A=1\n");
                r.write("/opt/data/config.yaml", "x: 1\n");
                read_only(r, "/opt/data")
            })
            .mention("is on a read-only file system"),
    );
    cases.push(
        Case::new("/etc read-only with a remap", 0)
            .env("HERMES_UID", "2000")
            .mount(|r| read_only(r, "/etc"))
            .mention("/etc/passwd"),
    );
    cases.push(Case::new("/tmp full", 0).mount(|r| full_tmpfs(r, "/tmp", 16, true)));
    cases.push(
        Case::new("envdir read-only", 0)
            .env("PLAYWRIGHT_BROWSERS_PATH", "/opt/hermes/tools")
            .mount(|r| {
                r.mkdir("/run/s6/container_environment");
                read_only(r, "/run/s6")
            }),
    );
    cases.push(
        Case::new("as the runtime user", 0)
            .user(10000, 10000)
            .setup(|r| {
                r.mkdir("/opt/data");
                r.chown("/opt/data", 10000, 10000);
            })
            .mention("without root"),
    );
    // Any other ids boot too (OpenShift's arbitrary uid with gid 0), on a volume they can write.
    for (name, uid, gid) in [
        ("as an arbitrary user", 12345, 12345),
        ("as an arbitrary uid with gid 0", 1_000_170_000, 0),
    ] {
        cases.push(
            Case::new(name, 0)
                .user(uid, gid)
                .setup(move |r| {
                    r.mkdir("/opt/data");
                    r.chown("/opt/data", uid, gid);
                })
                .mention(format!("running as uid {uid} gid {gid}")),
        );
    }
    // The same ids on the image's root-owned volume: the one failure names the path.
    cases.push(
        Case::new("as an arbitrary user on a volume it cannot write", 1)
            .user(12345, 12345)
            .mention("/opt/data"),
    );
    cases
}

fn reconcile_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let with_profiles = |r: &TempRoot| {
        populate_volume(r);
    };
    // RP-04: the multiplex flag.
    for v in [
        "",
        "1",
        "TRUE",
        " yes ",
        "off",
        "maybe",
        "tru e",
        "ON\n",
        "2",
        "-1",
        &"y".repeat(100_000),
    ] {
        cases.push(
            Case::new(format!("GATEWAY_MULTIPLEX_PROFILES={:.12?}", v), 0)
                .env("GATEWAY_MULTIPLEX_PROFILES", v)
                .setup(with_profiles),
        );
    }
    cases.push(
        Case::new("GATEWAY_MULTIPLEX_PROFILES non-UTF-8", 0)
            .env("GATEWAY_MULTIPLEX_PROFILES", non_utf8("tr"))
            .setup(with_profiles),
    );
    // config.yaml contents.
    let nested = format!("gateway: {}{}", "[".repeat(100_000), "]".repeat(100_000));
    let bomb = "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\ngateway:\n  multiplex_profiles: [*d, *d, *d, *d]\n";
    for (name, yaml) in [
        ("garbage", b"\x00\xff: : :\n\t- [".to_vec()),
        ("deeply nested", nested.into_bytes()),
        ("alias bomb", bomb.as_bytes().to_vec()),
        ("multiplex yes", b"gateway:\n  multiplex_profiles: yes\n".to_vec()),
        ("multiplex 1", b"gateway:\n  multiplex_profiles: 1\n".to_vec()),
        (
            "multiplex list",
            b"gateway:\n  multiplex_profiles: [true]\n".to_vec(),
        ),
        (
            "multiplex map",
            b"gateway:\n  multiplex_profiles: {a: 1}\n".to_vec(),
        ),
        ("gateway scalar", b"gateway: true\n".to_vec()),
        (
            "duplicate keys",
            b"gateway:\n  multiplex_profiles: true\ngateway:\n  multiplex_profiles: false\n".to_vec(),
        ),
        ("tabs", b"gateway:\n\tmultiplex_profiles: true\n".to_vec()),
        (
            "multi-document",
            b"---\na: 1\n---\ngateway:\n  multiplex_profiles: true\n".to_vec(),
        ),
        ("5 MiB", vec![b'#'; 5 << 20]),
        (
            "BOM",
            b"\xef\xbb\xbfgateway:\n  multiplex_profiles: true\n".to_vec(),
        ),
    ] {
        cases.push(Case::new(format!("config.yaml {name}"), 0).setup(move |r| {
            with_profiles(r);
            r.write("/opt/data/config.yaml", &yaml);
        }));
    }
    // RP-06: state files.
    let deep_json = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    for (name, json) in [
        ("garbage", b"\x00\xff{".to_vec()),
        ("BOM", b"\xef\xbb\xbf{\"gateway_state\":\"running\"}".to_vec()),
        ("double BOM", b"\xef\xbb\xbf\xef\xbb\xbf{}".to_vec()),
        ("not an object", b"[\"running\"]".to_vec()),
        ("a string", b"\"running\"".to_vec()),
        (
            "null desired",
            b"{\"desired_state\":null,\"gateway_state\":\"draining\"}".to_vec(),
        ),
        ("number state", b"{\"gateway_state\":1e999}".to_vec()),
        ("object state", b"{\"desired_state\":{\"a\":[1,2]}}".to_vec()),
        ("escapes", b"{\"desired_state\":\"run\\u0000ning\\n\"}".to_vec()),
        ("lone surrogate", b"{\"desired_state\":\"\\ud800\"}".to_vec()),
        ("deep nesting", deep_json.into_bytes()),
        (
            "2 MiB",
            [b"{\"a\":\"".to_vec(), vec![b'x'; 2 << 20], b"\"}".to_vec()].concat(),
        ),
        ("trailing garbage", b"{\"gateway_state\":\"running\"} x".to_vec()),
        ("empty", vec![]),
        ("latin-1", b"{\"desired_state\":\"r\xe9\"}".to_vec()),
        (
            "duplicate keys",
            b"{\"desired_state\":\"running\",\"desired_state\":\"stopped\"}".to_vec(),
        ),
    ] {
        for at in [
            "/opt/data/gateway_state.json",
            "/opt/data/profiles/coder/gateway_state.json",
        ] {
            let json = json.clone();
            cases.push(Case::new(format!("{at} {name}"), 0).setup(move |r| {
                with_profiles(r);
                r.write(at, &json);
            }));
        }
    }
    cases.push(Case::new("lifecycle garbage", 0).setup(move |r| {
        with_profiles(r);
        r.write(
            "/opt/data/profiles/coder/state/gateway.lifecycle.json",
            b"\xff[[[",
        );
    }));
    // RP-09, RP-10: profile names and entry types.
    let names: Vec<(Vec<u8>, Option<&str>)> = vec![
        (b"Coder".to_vec(), Some("skipping profile Coder")),
        (b"-lead".to_vec(), Some("skipping profile -lead")),
        (b"_lead".to_vec(), Some("skipping profile _lead")),
        (b"a.b".to_vec(), Some("skipping profile a.b")),
        (b"with space".to_vec(), Some("skipping profile with space")),
        // Every derived name must fit NAME_MAX: `.gateway-<p>.tmp.old` is the longest (RP-10).
        (vec![b'a'; 252], Some("profile name too long (252 > 238)")),
        (vec![b'a'; 251], Some("profile name too long (251 > 238)")),
        (vec![b'a'; 243], Some("profile name too long (243 > 238)")),
        (vec![b'a'; 239], Some("profile name too long (239 > 238)")),
        (vec![b'a'; 238], None),
        (b"default".to_vec(), Some("the name default is reserved")),
        (b"caf\xc3\xa9".to_vec(), Some("skipping profile caf\u{e9}")),
        (b"raw\xff".to_vec(), Some("skipping profile raw\\xff")),
        (b"new\nline".to_vec(), Some("skipping profile new")),
        (b"tab\tname".to_vec(), Some("skipping profile tab")),
        (b"0".to_vec(), None),
    ];
    for (name, msg) in names {
        let shown = boot_display(&name);
        let mut c = Case::new(format!("profile {shown:?}"), 0).setup(move |r| {
            with_profiles(r);
            let dir = r.path("/opt/data/profiles").join(OsStr::from_bytes(&name));
            std::fs::create_dir_all(&dir).expect("mkdir profile");
            std::fs::write(dir.join("SOUL.md"), "x\n").expect("soul");
        });
        if let Some(m) = msg {
            c = c.mention(m);
        }
        cases.push(c);
    }
    for odd in ODD {
        cases.push(Case::new(format!("profile entry is {odd:?}"), 0).setup(move |r| {
            with_profiles(r);
            place(r, "/opt/data/profiles/odd", odd);
        }));
        cases.push(
            Case::new(format!("profile SOUL.md is {odd:?}"), 0).setup(move |r| {
                with_profiles(r);
                r.mkdir("/opt/data/profiles/odd");
                place(r, "/opt/data/profiles/odd/SOUL.md", odd);
            }),
        );
        cases.push(Case::new(format!("state file is {odd:?}"), 0).setup(move |r| {
            with_profiles(r);
            std::fs::remove_file(r.path("/opt/data/profiles/coder/gateway_state.json")).expect("rm");
            place(r, "/opt/data/profiles/coder/gateway_state.json", odd);
        }));
        cases.push(Case::new(format!("config.yaml is {odd:?}"), 0).setup(move |r| {
            with_profiles(r);
            place(r, "/opt/data/config.yaml", odd);
        }));
        cases.push(Case::new(format!("boot log is {odd:?}"), 0).setup(move |r| {
            with_profiles(r);
            place(r, "/opt/data/logs/container-boot.log", odd);
        }));
        cases.push(Case::new(format!("profiles is {odd:?}"), 0).setup(move |r| {
            r.mkdir("/opt/data");
            place(r, "/opt/data/profiles", odd);
        }));
        cases.push(Case::new(format!("slot staging is {odd:?}"), 0).setup(move |r| {
            with_profiles(r);
            place(r, "/run/service/.gateway-coder.tmp", odd);
        }));
        cases.push(
            Case::new(format!("published slot is {odd:?}"), 0).setup(move |r| {
                with_profiles(r);
                place(r, "/run/service/gateway-coder", odd);
            }),
        );
        cases.push(
            Case::new(format!("stale gateway.pid is {odd:?}"), 0).setup(move |r| {
                with_profiles(r);
                place(r, "/opt/data/gateway.pid", odd);
            }),
        );
    }
    // Places.
    for (var, v) in [
        ("S6_PROFILE_GATEWAY_SCANDIR", "relative/scan"),
        ("S6_PROFILE_GATEWAY_SCANDIR", "/nonexistent"),
        ("S6_PROFILE_GATEWAY_SCANDIR", "/etc/passwd"),
        ("HERMES_HOME", "relative/home"),
        ("HERMES_HOME", "/nonexistent"),
        ("HERMES_HOME", "/etc/passwd"),
    ] {
        cases.push(
            Case::new(format!("{var}={v}"), 0)
                .env(var, v)
                .setup(with_profiles)
                .mention(v),
        );
    }
    cases.push(
        Case::new("HERMES_HOME non-UTF-8", 0)
            .env("HERMES_HOME", non_utf8("/opt/x"))
            .setup(with_profiles),
    );
    // RP-02: the container argv.
    for (name, argv) in [
        (
            "dashboard",
            b"/init\0/opt/hermes/docker/bin/main-wrapper\0dashboard\0".to_vec(),
        ),
        ("garbage", b"\xff\xfe\0\0\0".to_vec()),
        ("no NUL", vec![b'a'; 100_000]),
        ("legacy gateway run", b"gateway\0run\0".to_vec()),
        ("wrapper only", b"main-wrapper\0".to_vec()),
    ] {
        cases.push(Case::new(format!("argv {name}"), 0).setup(move |r| {
            with_profiles(r);
            r.write("/proc/1/cmdline", &argv);
        }));
    }
    cases.push(
        Case::new("argv dashboard skips", 0)
            .setup(|r| r.write("/proc/1/cmdline", "/init\0main-wrapper\0dashboard\0"))
            .mention("skipping (dashboard container"),
    );
    // Accounts.
    for (name, passwd, group, ok) in account_corpus() {
        let mut c = Case::new(format!("accounts: {name}"), if ok { 0 } else { 1 }).setup(move |r| {
            with_profiles(r);
            r.write("/etc/passwd", &passwd);
            r.write("/etc/group", &group);
        });
        if !ok {
            c = c.mention("runtime user hermes not found in /etc/passwd");
        }
        cases.push(c);
    }
    // register / unregister (RP-18, RP-19) and usage.
    for (name, code) in [("Coder", 2), ("../escape", 2), ("", 2), ("-x", 2), ("a.b", 2)] {
        cases.push(
            Case::new(format!("register {name:?}"), code)
                .arg("register")
                .arg(name)
                .mention(if name.is_empty() {
                    "profile name must not be empty"
                } else {
                    name
                }),
        );
        cases.push(
            Case::new(format!("unregister {name:?}"), code)
                .arg("unregister")
                .arg(name),
        );
    }
    cases.push(
        Case::new("register non-UTF-8", 2)
            .arg("register")
            .arg(non_utf8("x")),
    );
    cases.push(
        Case::new("register already registered", 3)
            .arg("register")
            .arg("coder")
            .setup(|r| r.mkdir("/run/service/gateway-coder"))
            .mention("already registered"),
    );
    cases.push(
        Case::new("register without s6", 1)
            .arg("register")
            .arg("coder")
            .mention("s6-svscanctl"),
    );
    cases.push(
        Case::new("unregister absent", 0)
            .arg("unregister")
            .arg("coder")
            .mention("gateway-coder is not registered"),
    );
    for a in [
        &["--bogus"][..],
        &["register"],
        &["register", "a", "b"],
        &["frobnicate"],
        &["unregister"],
    ] {
        let mut c = Case::new(format!("usage {a:?}"), 2);
        for x in a {
            c = c.arg(*x);
        }
        cases.push(c);
    }
    // ENOSPC, EROFS, EPERM.
    cases.push(
        Case::new("scandir full", 0)
            .setup(with_profiles)
            .mount(|r| {
                populate_volume(r);
                full_tmpfs(r, "/run/service", 16, true)
            })
            .mention("ENOSPC"),
    );
    cases.push(
        Case::new("scandir read-only", 0)
            .mount(|r| {
                populate_volume(r);
                read_only(r, "/run/service")
            })
            .mention("EROFS"),
    );
    cases.push(Case::new("volume read-only", 0).mount(|r| {
        populate_volume(r);
        read_only(r, "/opt/data")
    }));
    cases.push(Case::new("volume full", 0).mount(|r| {
        let m = full_tmpfs(r, "/opt/data", 32, false);
        r.write("/opt/data/profiles/coder/SOUL.md", "x\n");
        let _ = std::fs::write(r.path("/opt/data/filler"), vec![0u8; 64 << 10]);
        m
    }));
    cases.push(
        Case::new("as the runtime user, root-owned scandir", 0)
            .user(10000, 10000)
            .setup(with_profiles),
    );
    cases.push(
        Case::new("as the runtime user, register", 1)
            .user(10000, 10000)
            .arg("register")
            .arg("coder")
            .codes(&[1]),
    );
    cases
}

fn supervise_perms_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let svc = |r: &TempRoot, name: &str| {
        let base = format!("/run/s6-rc/servicedirs/{name}");
        r.mkdir(&format!("{base}/supervise"));
        r.mkdir(&format!("{base}/event"));
        r.mkdir(&format!("{base}/supervise/event"));
        fifo(r, &format!("{base}/supervise/control"));
    };
    cases.push(Case::new("no servicedirs", 0).mention("not present; skipping"));
    cases.push(
        Case::new("normal", 0)
            .setup(move |r| svc(r, "dashboard"))
            .mention("granted group hermes"),
    );
    for entry in [
        "supervise",
        "supervise/control",
        "event",
        "supervise/event",
        "",
        "supervise/lock",
    ] {
        for odd in ODD {
            cases.push(Case::new(format!("{entry:?} is {odd:?}"), 0).setup(move |r| {
                let base = "/run/s6-rc/servicedirs/dashboard";
                if entry.is_empty() {
                    r.mkdir("/run/s6-rc/servicedirs");
                    place(r, base, odd);
                    return;
                }
                r.mkdir(base);
                let p = format!("{base}/{entry}");
                if entry.starts_with("supervise/") {
                    r.mkdir(&format!("{base}/supervise"));
                }
                place(r, &p, odd);
            }));
        }
    }
    // Odd modes already in place: the result is the SP-03 mode whatever was there.
    for service in ["dashboard", "main-hermes"] {
        for entry in ["supervise", "supervise/control", "event", "supervise/event"] {
            for mode in [0o777, 0o000, 0o4755, 0o1777] {
                cases.push(
                    Case::new(format!("{service}/{entry} mode {mode:o}"), 0).setup(move |r| {
                        svc(r, service);
                        r.chmod(&format!("/run/s6-rc/servicedirs/{service}/{entry}"), mode);
                    }),
                );
            }
        }
    }
    for odd in ODD {
        cases.push(Case::new(format!("servicedirs is {odd:?}"), 0).setup(move |r| {
            r.mkdir("/run/s6-rc");
            place(r, "/run/s6-rc/servicedirs", odd);
        }));
    }
    for name in [
        ".hidden",
        "s6rc-oneshot-runner",
        "s6-linux-init-shutdownd",
        "raw\u{e9}",
        "new\nline",
        "-dash",
    ] {
        cases.push(Case::new(format!("service {name:?}"), 0).setup(move |r| svc(r, name)));
    }
    cases.push(Case::new("service non-UTF-8 name", 0).setup(move |r| {
        let p = r.path("/run/s6-rc/servicedirs").join(OsStr::from_bytes(b"x\xff"));
        std::fs::create_dir_all(p.join("supervise")).expect("mkdir");
    }));
    cases.push(Case::new("500 services", 0).setup(move |r| {
        for i in 0..500 {
            svc(r, &format!("svc{i}"));
        }
    }));
    for (name, passwd, group, ok) in account_corpus() {
        let mut c = Case::new(format!("accounts: {name}"), if ok { 0 } else { 1 }).setup(move |r| {
            svc(r, "dashboard");
            r.write("/etc/passwd", &passwd);
            r.write("/etc/group", &group);
        });
        if !ok {
            c = c.mention("runtime user hermes not found in /etc/passwd");
        }
        cases.push(c);
    }
    cases.push(
        Case::new("runtime user unknown", 1)
            .arg("--runtime-user")
            .arg("ghost")
            .mention("runtime user ghost not found"),
    );
    cases.push(
        Case::new("HERMES_BOOT_USER non-UTF-8", 1)
            .env("HERMES_BOOT_USER", non_utf8("h"))
            .codes(&[1, 2]),
    );
    for a in ["--bogus", "stray", "--root"] {
        cases.push(Case::new(format!("argument {a}"), 2).arg(a));
    }
    cases.push(
        Case::new("read-only servicedirs", 0)
            .mount(move |r| {
                svc(r, "dashboard");
                read_only(r, "/run/s6-rc")
            })
            .mention("EROFS"),
    );
    cases.push(
        Case::new("not root", 0)
            .user(10000, 10000)
            .setup(move |r| svc(r, "dashboard"))
            .mention("not running as root; skipping"),
    );
    cases.push(Case::new("root prefix missing", 1).env("HERMES_BOOT_ROOT", "/nonexistent/prefix"));
    cases
}

fn main_wrapper_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // The wrapper role through the fallback path needs stage2-setup at the image path; a stand-in that
    // succeeds keeps these cases about main-wrapper's own inputs.
    let image_bits = |r: &TempRoot| {
        r.write("/opt/hermes/docker/bin/stage2-setup", "#!/bin/sh\nexit 0\n");
        r.chmod("/opt/hermes/docker/bin/stage2-setup", 0o755);
        r.mkdir("/opt/data");
    };
    for (name, a, code) in [
        ("true", &["/bin/true"][..], 0),
        ("exit 42", &["/bin/sh", "-c", "exit 42"], 42),
        // Not an executable file: routed to hermes (MW-10 rule 5), which this image lacks.
        ("missing program", &["/nonexistent/prog"], 127),
        ("not executable", &["/etc/passwd"], 127),
        ("a directory", &["/etc"], 127),
        ("wrapper help", &["--wrapper-help"], 0),
        ("wrapper version", &["--wrapper-version"], 0),
    ] {
        let mut c = Case::new(format!("run {name}"), code).setup(image_bits);
        for x in a {
            c = c.arg(*x);
        }
        if code >= 126 {
            c = c.mention("cannot execute hermes: ENOENT");
        }
        cases.push(c);
    }
    cases.push(
        Case::new("hermes not a program", 126)
            .setup(move |r| {
                image_bits(r);
                // The interpreter is not executable: execve answers EACCES.
                r.write("/opt/hermes/.venv/bin/hermes", "#!/etc/passwd\n");
                r.chmod("/opt/hermes/.venv/bin/hermes", 0o755);
            })
            .arg("chat")
            .mention("cannot execute /opt/hermes/.venv/bin/hermes"),
    );
    // The program's status is the container's.
    for code in [1, 2, 3, 42, 100, 125, 126, 127, 128, 255] {
        cases.push(
            Case::new(format!("program exits {code}"), code)
                .setup(image_bits)
                .arg("/bin/sh")
                .arg("-c")
                .arg(format!("exit {code}")),
        );
    }
    // Subcommand-shaped arguments reach hermes, which this image lacks.
    for a in [
        &["-p", "x"][..],
        &["--help"],
        &["chat"],
        &["gateway", "run"],
        &["mcp"],
    ] {
        let mut c = Case::new(format!("routed {a:?}"), 127)
            .setup(image_bits)
            .mention("cannot execute hermes");
        for x in a {
            c = c.arg(*x);
        }
        cases.push(c);
    }
    // Routing with odd arguments: the program must run or fail with 126/127, never panic.
    for a in ["", "-", "--", "-p", "x\ny", "\u{202e}", " ", "./", "/", "hermes"] {
        cases.push(
            Case::new(format!("argument {a:?}"), 127)
                .codes(&[0, 1, 126, 127])
                .setup(image_bits)
                .arg(a),
        );
    }
    cases.push(
        Case::new("non-UTF-8 argument", 127)
            .codes(&[126, 127])
            .setup(image_bits)
            .arg(non_utf8("prog")),
    );
    // Environment values.
    for (var, v) in [
        ("HERMES_ORIG_CWD", "/nonexistent"),
        ("HERMES_ORIG_CWD", "relative"),
        ("HERMES_ORIG_CWD", "/etc/passwd"),
        ("HERMES_HOME", "relative"),
        ("HERMES_HOME", "/etc/passwd"),
        ("PATH", ""),
        ("PATH", ":::"),
        ("PATH", "/nonexistent:relative"),
        ("HERMES_DOCKER_EXEC_AS_ROOT", "maybe"),
        ("HERMES_BOOT_USER", "ghost"),
    ] {
        let code = if var == "HERMES_BOOT_USER" { 1 } else { 0 };
        cases.push(
            Case::new(format!("{var}={v:?}"), code)
                .env(var, v)
                .setup(image_bits)
                .arg("/bin/true"),
        );
    }
    cases.push(
        Case::new("PATH non-UTF-8", 0)
            .env("PATH", non_utf8("/usr/bin:/bin:/x"))
            .setup(image_bits)
            .arg("/bin/true"),
    );
    // cli-subcommands and the envdir.
    for (name, content) in [
        ("binary", b"\x00\xff\n\n#x\n".to_vec()),
        ("huge", vec![b'a'; 4 << 20]),
        ("CRLF", b"chat\r\nmodel\r\n".to_vec()),
    ] {
        cases.push(
            Case::new(format!("cli-subcommands {name}"), 0)
                .setup(move |r| {
                    image_bits(r);
                    r.write("/etc/hermes/cli-subcommands", &content);
                })
                .arg("/bin/true"),
        );
    }
    for odd in ODD {
        cases.push(
            Case::new(format!("cli-subcommands is {odd:?}"), 0)
                .setup(move |r| {
                    image_bits(r);
                    place(r, "/etc/hermes/cli-subcommands", odd);
                })
                .arg("/bin/true"),
        );
        cases.push(
            Case::new(format!("envdir entry is {odd:?}"), 0)
                .setup(move |r| {
                    image_bits(r);
                    place(r, "/run/s6/container_environment/SOME_VAR", odd);
                })
                .arg("/bin/true"),
        );
        cases.push(
            Case::new(format!("venv bin is {odd:?}"), 0)
                .setup(move |r| {
                    image_bits(r);
                    place(r, "/opt/hermes/.venv/bin", odd);
                })
                .arg("/bin/true"),
        );
        cases.push(
            Case::new(format!("stage2-setup is {odd:?}"), 1)
                .codes(&[1, 126, 127])
                .setup(move |r| {
                    r.mkdir("/opt/data");
                    place(r, "/opt/hermes/docker/bin/stage2-setup", odd);
                })
                .arg("/bin/true")
                .mention("stage2-setup"),
        );
    }
    for (name, bytes) in [
        ("name with =", (&b"A=B"[..], &b"v"[..])),
        ("dot name", (b".hidden", b"v")),
        ("NUL bytes", (b"NULLY", b"a\0b")),
        ("non-UTF-8 value", (b"RAW", b"\xff\xfe")),
        ("1 MiB value", (b"BIG", &[b'v'; 1 << 20][..])),
        ("empty value", (b"EMPTY", b"")),
    ] {
        let (n, v) = (bytes.0.to_vec(), bytes.1.to_vec());
        cases.push(
            Case::new(format!("envdir {name}"), 0)
                .setup(move |r| {
                    image_bits(r);
                    let dir = r.path("/run/s6/container_environment");
                    std::fs::create_dir_all(&dir).expect("envdir");
                    std::fs::write(dir.join(OsStr::from_bytes(&n)), &v).expect("envdir file");
                })
                .arg("/bin/true"),
        );
    }
    // The fallback's stage2-setup fails: its status becomes main-wrapper's.
    for code in [1, 2, 3, 77] {
        cases.push(
            Case::new(format!("stage2-setup exits {code}"), code)
                .setup(move |r| {
                    r.write(
                        "/opt/hermes/docker/bin/stage2-setup",
                        format!("#!/bin/sh\nexit {code}\n"),
                    );
                    r.chmod("/opt/hermes/docker/bin/stage2-setup", 0o755);
                })
                .arg("/bin/true"),
        );
    }
    // Identity.
    for (name, passwd, group, ok) in account_corpus() {
        let mut c = Case::new(format!("accounts: {name}"), if ok { 0 } else { 1 })
            .setup(move |r| {
                image_bits(r);
                r.write("/etc/passwd", &passwd);
                r.write("/etc/group", &group);
            })
            .arg("/bin/true");
        if !ok {
            c = c.mention("runtime user hermes not found in /etc/passwd");
        }
        cases.push(c);
    }
    cases.push(
        Case::new("as an arbitrary user", 0)
            .user(12345, 12345)
            .setup(image_bits)
            .arg("/bin/true")
            .mention("not PID 1"),
    );
    cases.push(
        Case::new("as hermes with gid 0", 0)
            .user(10000, 0)
            .setup(image_bits)
            .arg("/bin/true")
            .mention("not PID 1"),
    );
    cases.push(
        Case::new("as hermes", 0)
            .user(10000, 10000)
            .setup(image_bits)
            .arg("/bin/true"),
    );
    // The exec shim is main-wrapper under the name `hermes`.
    cases
}

/// The `hermes` exec shim: main-wrapper invoked through a symlink named `hermes` (MW-12).
fn shim_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (name, real, code) in [
        ("real hermes missing", None, 127),
        (
            "real hermes not executable",
            Some(("#!/bin/sh\nexit 0\n", 0o644)),
            127,
        ),
        ("real hermes exits 5", Some(("#!/bin/sh\nexit 5\n", 0o755)), 5),
    ] {
        let mut c = Case::new(format!("shim: {name}"), code).setup(move |r| {
            if let Some((body, mode)) = real {
                r.write("/opt/hermes/.venv/bin/hermes", body);
                r.chmod("/opt/hermes/.venv/bin/hermes", mode);
            }
        });
        if code == 127 {
            c = c.mention("hermes-shim: /opt/hermes/.venv/bin/hermes not found or not executable");
        }
        cases.push(c);
    }
    cases
}

#[test]
fn stage2_setup_survives_the_corpus() {
    let n = run_cases(STAGE2, stage2_cases());
    assert!(n >= 100, "only {n} cases");
}

#[test]
fn reconcile_profiles_survives_the_corpus() {
    let n = run_cases(RECONCILE, reconcile_cases());
    assert!(n >= 100, "only {n} cases");
}

#[test]
fn supervise_perms_survives_the_corpus() {
    let n = run_cases(SUPERVISE_PERMS, supervise_perms_cases());
    assert!(n >= 100, "only {n} cases");
}

#[test]
fn main_wrapper_survives_the_corpus() {
    let n = run_cases(MAIN_WRAPPER, main_wrapper_cases());
    assert!(n >= 100, "only {n} cases");
    // The shim role: the same binary under the name `hermes`.
    let dir = tempfile_dir();
    let shim = dir.join("hermes");
    std::os::unix::fs::symlink(program(MAIN_WRAPPER), &shim).expect("symlink shim");
    for case in shim_cases() {
        let r = image();
        (case.setup)(&r);
        let mut cmd = r.command(&shim);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let (code, _, stderr) = run_bounded(&mut cmd, Duration::from_secs(30)).expect("shim hung");
        let stderr = String::from_utf8_lossy(&stderr);
        assert!(!crashed(code, &stderr), "{}: crashed: {stderr}", case.name);
        assert_eq!(code, Some(case.codes[0]), "{}: {stderr}", case.name);
        if let Some(m) = &case.mention {
            assert!(
                stderr.lines().any(|l| l.contains(m.as_str())),
                "{}: no line names {m:?}: {stderr}",
                case.name
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("hermes-shim-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("shim dir");
    d
}
