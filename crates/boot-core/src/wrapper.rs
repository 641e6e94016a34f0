//! main-wrapper (SPEC §5): one program in three roles.
//!
//! - the ENTRYPOINT dispatcher: as PID 1 it execs s6-overlay's `/init` (MW-03), or, outside s6 and not PID 1,
//!   runs stage2-setup itself (MW-04) and carries on as the wrapper;
//! - the wrapper, s6-overlay's main program: rehydrates the environment (MW-05), takes any `--user` as the runtime
//!   user (MW-06), prepares the program's environment (MW-07…MW-09), routes the command (MW-10), drops to
//!   the runtime user and execs (MW-11);
//! - the `docker exec` shim, invoked as `hermes` (MW-12).
//!
//! Everything is printed on stderr, so the container command's stdout stays clean. The program's environment
//! is computed as a value ([`Env`]) and handed to `execve`; this process's own environment is never modified.
//!
//! Root-safety: the only code path that execs while still root is the shim with an explicit
//! `HERMES_DOCKER_EXEC_AS_ROOT` (and the PID 1 hand-over to `/init`, which is s6-overlay's job). The wrapper and
//! the shim can only reach [`exec_program`] with an [`Identity`], which is obtained from [`become_runtime_user`]
//! — a drop that failed ends the program with status 1.

use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::errno::Errno;

use crate::accounts::{self, Account};
use crate::cmd_stdin;
use crate::container_env::{self, EnvFile};
// `HOME` of the program, and `HERMES_HOME` when none is given (MW-07).
use crate::config::{Config, Env};
use crate::data_home::DEFAULT as DATA_HOME;
use crate::display::display_path;
use crate::error::errno_text;
use crate::guarded;
use crate::privdrop;
use crate::report::{Report, Sink, WarnStyle};
use crate::root::RootPrefix;
use crate::routing::{self, Decision, Lookup};

/// s6-overlay's init, exec'd by the PID 1 dispatcher.
pub const INIT: &str = "/init";
/// Where the image installs this program; `/init` runs it from there as its main program.
pub const SELF_PATH: &str = "/opt/hermes/docker/bin/main-wrapper";
/// The bootstrap the non-PID-1 fallback runs.
pub const STAGE2_SETUP: &str = "/opt/hermes/docker/bin/stage2-setup";
pub const VENV: &str = "/opt/hermes/.venv";
pub const VENV_BIN: &str = "/opt/hermes/.venv/bin";
/// The real hermes CLI the shim runs.
pub const REAL_HERMES: &str = "/opt/hermes/.venv/bin/hermes";
/// Where the application installs the runtime user's commands (profile aliases, `pip install --user`).
pub const USER_TOOLS: &str = "/opt/data/.local/bin";
const PID1_COMM: &str = "/proc/1/comm";
const S6_BASEDIR: &str = "/run/s6/basedir";

/// The basename that selects the shim role.
const SHIM_NAME: &[u8] = b"hermes";
/// T1 of SPEC §7.1.
const T1: [&str; 7] = ["1", "true", "TRUE", "True", "yes", "YES", "Yes"];

/// The role of this invocation (MW-02).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Invoked as `hermes`: the `docker exec` shim (MW-12).
    Shim,
    /// PID 1: hand over to s6-overlay's `/init` (MW-03).
    Pid1,
    /// s6-overlay's main program (MW-05…MW-11).
    Wrapper,
    /// Neither PID 1 nor under s6: bootstrap directly, then act as the wrapper (MW-04).
    Fallback,
}

/// MW-02, in its order. `pid1_comm` is the content of `/proc/1/comm` when readable.
pub fn select_role(argv0: &OsStr, pid: u32, pid1_comm: Option<&[u8]>, s6_basedir_is_dir: bool) -> Role {
    let base = Path::new(argv0)
        .file_name()
        .map(OsStr::as_bytes)
        .unwrap_or_default();
    if base == SHIM_NAME {
        return Role::Shim;
    }
    if pid == 1 {
        return Role::Pid1;
    }
    let under_s6 = pid1_comm.is_some_and(|c| c.trim_ascii() == b"s6-svscan");
    if under_s6 && s6_basedir_is_dir {
        Role::Wrapper
    } else {
        Role::Fallback
    }
}

/// Looks at this process and the (prefixed) system to select the role.
pub fn detect_role(root: &RootPrefix, argv0: &OsStr) -> Role {
    let comm = std::fs::read(root.path(PID1_COMM)).ok();
    let basedir = std::fs::metadata(root.path(S6_BASEDIR)).is_ok_and(|m| m.is_dir());
    select_role(argv0, std::process::id(), comm.as_deref(), basedir)
}

/// What the wrapper makes of the environment it started with before it execs the program.
impl Env {
    /// MW-05: every file of the container environment directory sets (or, empty, unsets) its variable.
    pub fn rehydrate(&mut self, files: Vec<EnvFile>) {
        for f in files {
            match f.value {
                Some(v) => self.set(f.name, v),
                None => self.remove(&f.name),
            }
        }
    }

    /// MW-04: only variables that are unset or empty here are taken from the directory, so the container's
    /// own environment wins over what the bootstrap exported.
    pub fn fill_unset(&mut self, files: Vec<EnvFile>) {
        for f in files {
            if !self.is_unset_or_empty(&f.name) {
                continue;
            }
            match f.value {
                Some(v) => self.set(f.name, v),
                None => self.remove(&f.name),
            }
        }
    }

    /// MW-07: `HOME` is the data volume; a non-empty `HERMES_HOME` is kept.
    pub fn set_homes(&mut self) {
        self.set("HOME", DATA_HOME);
        if self.is_unset_or_empty(crate::data_home::ENV) {
            self.set(crate::data_home::ENV, DATA_HOME);
        }
    }

    /// MW-09: the exported effects of sourcing `bin/activate`. Values are in-container paths (CM-02).
    pub fn activate_venv(&mut self) {
        self.set("VIRTUAL_ENV", VENV);
        self.prepend_path(OsStr::new(VENV_BIN));
        self.remove("PYTHONHOME");
    }
}

impl Env {
    /// The runtime user's own tool directory first on PATH, for a process that runs as that user. The
    /// image's PATH leaves it out: root must never find a program the runtime user planted there.
    pub fn add_user_tools(&mut self) {
        let dir = OsStr::new(USER_TOOLS);
        let present = self
            .get("PATH")
            .is_some_and(|p| p.as_bytes().split(|b| *b == b':').any(|c| c == dir.as_bytes()));
        if !present {
            self.prepend_path(dir);
        }
    }

    /// `dir` as PATH's first entry (the whole PATH when it was unset or empty).
    fn prepend_path(&mut self, dir: &OsStr) {
        let path = match self.get("PATH") {
            Some(p) if !p.is_empty() => {
                let mut s = dir.to_os_string();
                s.push(":");
                s.push(p);
                s
            }
            _ => dir.to_os_string(),
        };
        self.set("PATH", path);
    }
}

/// True for a value of T1 (SPEC §7.1).
pub fn is_t1(v: Option<&OsStr>) -> bool {
    v.is_some_and(|v| T1.iter().any(|t| v == *t))
}

/// The identity the program will run with. Only [`become_runtime_user`] and the shim's explicit root
/// request construct one, so nothing can exec without having passed through the MW-11 decision.
#[derive(Debug)]
pub struct Identity(Who);

#[derive(Debug)]
enum Who {
    Dropped { uid: u32 },
    AlreadyUnprivileged,
    RootByRequest,
}

/// MW-11: as root, drop to the runtime user (groups, gids, uids, verified); otherwise keep the current
/// credentials (upstream #34837). `Err` carries the errno of the failed drop.
pub fn become_runtime_user(account: &Account) -> Result<Identity, Errno> {
    if guarded::euid() != 0 {
        return Ok(Identity(Who::AlreadyUnprivileged));
    }
    privdrop::drop_privileges(account).map_err(|e| e.errno)?;
    Ok(Identity(Who::Dropped { uid: account.uid }))
}

/// Replaces this process with `host` (argv[0] `argv0`, then `args`, exactly the environment `env`). Returns
/// only on failure, with the errno. The identity is checked once more against the process's effective uid:
/// a mismatch is refused (EPERM) rather than trusted.
pub fn exec_program(who: &Identity, host: &Path, argv0: &OsStr, args: &[OsString], env: &Env) -> Errno {
    let euid = guarded::euid();
    let consistent = match who.0 {
        Who::Dropped { uid } => euid == uid,
        Who::AlreadyUnprivileged => euid != 0,
        Who::RootByRequest => true,
    };
    if !consistent {
        return Errno::EPERM;
    }
    let err = Command::new(host)
        .arg0(argv0)
        .args(args)
        .env_clear()
        .envs(env.iter())
        .exec();
    Errno::from_raw(err.raw_os_error().unwrap_or(Errno::EIO as i32))
}

/// The whole program: returns the exit status when it does not exec.
pub fn main(argv: Vec<OsString>, version: &str) -> i32 {
    let mut argv = argv.into_iter();
    let argv0 = argv.next().unwrap_or_else(|| OsString::from("main-wrapper"));
    let args: Vec<OsString> = argv.collect();
    let Config { root, user, env } = Config::from_args(None, None);
    let role = detect_role(&root, &argv0);
    let report = Report::main_wrapper();

    if role != Role::Shim && args.len() == 1 {
        if args[0] == "--wrapper-help" {
            eprintln!("usage: main-wrapper [COMMAND [ARG…]]\n{HELP}");
            return 0;
        }
        if args[0] == "--wrapper-version" {
            eprintln!("main-wrapper {version}");
            return 0;
        }
    }
    match role {
        Role::Shim => run_shim(&root, &user, &argv0, &args, env),
        Role::Pid1 => exec_init(&root, &args, &report),
        Role::Wrapper => run_wrapper(&root, &user, &args, env, &report),
        Role::Fallback => {
            let mut env = env;
            match bootstrap_directly(&root, &mut env, &report) {
                Ok(()) => run_wrapper(&root, &user, &args, env, &report),
                Err(code) => code,
            }
        }
    }
}

const HELP: &str = "\
Runs the container command as the runtime user. Every argument belongs to the command:
  (none)                 run `hermes`
  -… or a subcommand     run `hermes ARG…` (subcommands: /etc/hermes/cli-subcommands)
  a program on PATH      run it as given
  anything else          run `hermes ARG…`
As PID 1 it hands over to s6-overlay's /init; invoked as `hermes` it is the `docker exec` shim.
Configuration: HERMES_BOOT_ROOT (root prefix), HERMES_BOOT_USER (runtime user, default hermes).
Own options (only as the sole argument): --wrapper-help, --wrapper-version.";

/// MW-03: `/init /opt/hermes/docker/bin/main-wrapper ARG…` with the environment unchanged.
fn exec_init(root: &RootPrefix, args: &[OsString], report: &Report) -> i32 {
    if rustix::process::geteuid().is_root() {
        crate::nss_entry::secure_run_dir(root, report);
    }
    let err = Command::new(root.path(INIT))
        .arg0(INIT)
        .arg(SELF_PATH)
        .args(args)
        .exec();
    let errno = Errno::from_raw(err.raw_os_error().unwrap_or(Errno::EIO as i32));
    report.error(format_args!("cannot exec {INIT}: {}", errno_text(errno)));
    127
}

/// MW-04: the stage2 bootstrap without s6, then the variables it exported. `Err` is the exit status.
fn bootstrap_directly(root: &RootPrefix, env: &mut Env, report: &Report) -> Result<(), i32> {
    report.info(
        "WARNING: container entrypoint is not PID 1; skipping s6-overlay /init and falling back to direct \
         bootstrap. Supervised services are unavailable in this runtime, but the requested command will still run.",
    );
    let status = std::io::stderr().as_fd().try_clone_to_owned().and_then(|err| {
        Command::new(root.path(STAGE2_SETUP))
            .env_clear()
            .envs(env.iter())
            .stdout(Stdio::from(err))
            .status()
    });
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            let errno = Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32));
            report.error(format_args!("cannot run stage2-setup: {}", errno_text(errno)));
            return Err(1);
        }
    };
    match (status.code(), status.signal()) {
        (Some(0), _) => {}
        (Some(c), _) => return Err(c),
        (None, Some(sig)) => return Err(128 + sig),
        (None, None) => return Err(1),
    }
    match container_env::read(root, report) {
        Ok(Some(files)) => env.fill_unset(files),
        Ok(None) => {}
        Err(e) => report.warn_err(&e),
    }
    Ok(())
}

/// MW-05…MW-11.
fn run_wrapper(root: &RootPrefix, user: &str, args: &[OsString], mut env: Env, report: &Report) -> i32 {
    // MW-05: /init scrubbed the environment; HERMES_HOME is the marker that it is still intact.
    if env.is_unset_or_empty(crate::data_home::ENV) {
        match container_env::read(root, report) {
            Ok(Some(files)) => env.rehydrate(files),
            Ok(None) => {}
            Err(e) => report.warn_err(&e),
        }
    }
    env.remove("HERMES_MAIN_WRAPPER_ENV_READY");

    // MW-06
    let mut account = match accounts::lookup(root, user) {
        Ok(Some(a)) => a,
        Ok(None) => {
            report.error(format_args!("runtime user {user} not found in /etc/passwd"));
            return 1;
        }
        Err(e) => {
            report.error(format_args!("cannot look up runtime user {user}: {e}"));
            return 1;
        }
    };
    // Any `--user UID:GID` runs the program with the ids it was given (the runtime user of this run).
    if guarded::euid() != 0 {
        account = accounts::unprivileged(account);
    }

    env.set_homes();
    if std::fs::metadata(root.path(VENV_BIN)).is_ok_and(|m| m.is_dir()) {
        env.activate_venv();
    } else {
        report.warn(format_args!(
            "virtual environment {VENV_BIN} not found; PATH left unchanged — continuing"
        ));
    }
    // Before the drop: the runtime user may not read the stage-2 shell's descriptors.
    if cmd_stdin::command_runs_in_background(env.get("S6_CMD_RECEIVE_SIGNALS")) {
        cmd_stdin::restore_from_parent();
    }

    // The list is an image file: read it while still root, before anything can make it unreadable to us.
    let subcommands = routing::read_subcommands(root).unwrap_or_else(|e| {
        report.warn_err(&e);
        Vec::new()
    });

    let who = match become_runtime_user(&account) {
        Ok(who) => who,
        Err(errno) => {
            report.error(format_args!(
                "cannot drop privileges to {user}: {}",
                errno_text(errno)
            ));
            return 1;
        }
    };

    // After the drop, so the program cannot be placed in a directory its user could not enter.
    enter_orig_cwd(root, &mut env, report);
    env.add_user_tools();

    // MW-10, with the program's credentials, so "executable" means executable for it.
    let path = env.get("PATH").map(OsStr::to_os_string);
    let mut direct = None;
    let decision = routing::decide(args, &subcommands, |a0| {
        direct = routing::find_program(root, a0, path.as_deref()).found().cloned();
        direct.is_some()
    });
    let (lookup, argv0, rest) = match (decision, direct) {
        (Decision::AsGiven, Some(l)) => (Lookup::Found(l), args[0].clone(), &args[1..]),
        _ => (
            routing::find_program(root, OsStr::new(routing::HERMES), path.as_deref()),
            OsString::from(routing::HERMES),
            args,
        ),
    };
    let located = match lookup {
        Lookup::Found(l) | Lookup::NotExecutable(l) => l,
        Lookup::Missing => {
            report.error(format_args!(
                "cannot execute {}: {}",
                display_path(Path::new(&argv0)),
                errno_text(Errno::ENOENT)
            ));
            return 127;
        }
    };
    let errno = exec_program(&who, &located.host, &argv0, rest, &env);
    report.error(format_args!(
        "cannot execute {}: {}",
        display_path(&located.shown),
        errno_text(errno)
    ));
    routing::exec_failure_status(errno)
}

/// MW-08: `HERMES_ORIG_CWD`, when set and a directory, is where the program runs (`docker run -w` survives
/// `/init`). Otherwise the directory main-wrapper started in is kept.
fn enter_orig_cwd(root: &RootPrefix, env: &mut Env, report: &Report) {
    let Some(cwd) = env.get("HERMES_ORIG_CWD").filter(|c| !c.is_empty()) else {
        return;
    };
    let shown = PathBuf::from(cwd);
    let host = root.path(&shown);
    if !std::fs::metadata(&host).is_ok_and(|m| m.is_dir()) {
        return;
    }
    match std::env::set_current_dir(&host) {
        // The shell's idea of the directory must match the real one.
        Ok(()) => env.set("PWD", host),
        Err(e) => report.warn(format_args!(
            "cannot enter HERMES_ORIG_CWD {}: {} — continuing",
            display_path(&shown),
            errno_text(Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32)))
        )),
    }
}

/// MW-12: the `docker exec` shim.
fn run_shim(root: &RootPrefix, user: &str, argv0: &OsStr, args: &[OsString], mut env: Env) -> i32 {
    let report = Report::new("hermes-shim:", WarnStyle::Bracketed, Sink::Stderr, false);
    let real = root.path(REAL_HERMES);
    if !routing::is_executable_file(&real) {
        report.info(format_args!("{REAL_HERMES} not found or not executable"));
        return 127;
    }
    let who = if guarded::euid() != 0 {
        Identity(Who::AlreadyUnprivileged)
    } else if is_t1(env.get("HERMES_DOCKER_EXEC_AS_ROOT")) {
        Identity(Who::RootByRequest)
    } else {
        let account = match accounts::lookup(root, user) {
            Ok(Some(a)) => a,
            Ok(None) => {
                report.info(format_args!("runtime user {user} not found"));
                return 126;
            }
            Err(e) => {
                report.info(format_args!("runtime user {user} not found ({e})"));
                return 126;
            }
        };
        env.set("HOME", DATA_HOME);
        match become_runtime_user(&account) {
            Ok(who) => who,
            Err(errno) => {
                report.info(format_args!(
                    "cannot drop privileges to {user}: {}",
                    errno_text(errno)
                ));
                return 1;
            }
        }
    };
    if !matches!(who, Identity(Who::RootByRequest)) {
        env.add_user_tools();
    }
    let errno = exec_program(&who, &real, argv0, args, &env);
    report.info(format_args!(
        "cannot execute {REAL_HERMES}: {}",
        errno_text(errno)
    ));
    routing::exec_failure_status(errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn role_order_shim_then_pid1_then_s6_then_fallback() {
        let s6 = Some(&b"s6-svscan\n"[..]);
        assert_eq!(select_role(os("/opt/hermes/bin/hermes"), 1, s6, true), Role::Shim);
        assert_eq!(select_role(os("hermes"), 77, None, false), Role::Shim);
        assert_eq!(
            select_role(os("/opt/hermes/docker/bin/main-wrapper"), 1, s6, true),
            Role::Pid1
        );
        assert_eq!(select_role(os("main-wrapper"), 1, None, false), Role::Pid1);
        assert_eq!(select_role(os("main-wrapper"), 300, s6, true), Role::Wrapper);
        assert_eq!(
            select_role(os("main-wrapper"), 300, Some(b"  s6-svscan  "), true),
            Role::Wrapper
        );
        assert_eq!(select_role(os("main-wrapper"), 300, s6, false), Role::Fallback);
        assert_eq!(
            select_role(os("main-wrapper"), 300, Some(b"tini\n"), true),
            Role::Fallback
        );
        assert_eq!(select_role(os("main-wrapper"), 300, None, true), Role::Fallback);
        // Only the basename counts.
        assert_eq!(
            select_role(os("/opt/hermes/bin/hermes-dev"), 300, s6, true),
            Role::Wrapper
        );
        assert_eq!(
            select_role(os("/hermes/main-wrapper"), 300, s6, true),
            Role::Wrapper
        );
    }

    fn file(name: &str, value: Option<&str>) -> EnvFile {
        EnvFile {
            name: name.into(),
            value: value.map(OsString::from),
        }
    }

    #[test]
    fn rehydration_sets_and_unsets() {
        let mut env = Env::from_pairs([("PATH", "/bin"), ("GONE", "x"), ("KEEP", "k")]);
        env.rehydrate(vec![
            file("PATH", Some("/usr/bin:/bin")),
            file("GONE", None),
            file("NEW", Some("n\n")),
        ]);
        assert_eq!(env.get("PATH"), Some(os("/usr/bin:/bin")));
        assert_eq!(env.get("GONE"), None);
        assert_eq!(env.get("NEW"), Some(os("n\n")));
        assert_eq!(env.get("KEEP"), Some(os("k")));
    }

    #[test]
    fn fallback_fills_only_unset_or_empty_variables() {
        let mut env = Env::from_pairs([("SET", "mine"), ("EMPTY", "")]);
        env.fill_unset(vec![
            file("SET", Some("theirs")),
            file("EMPTY", Some("filled")),
            file("AGENT_BROWSER_EXECUTABLE_PATH", Some("/usr/bin/chromium")),
        ]);
        assert_eq!(env.get("SET"), Some(os("mine")));
        assert_eq!(env.get("EMPTY"), Some(os("filled")));
        assert_eq!(
            env.get("AGENT_BROWSER_EXECUTABLE_PATH"),
            Some(os("/usr/bin/chromium"))
        );
    }

    #[test]
    fn homes_keep_a_given_hermes_home() {
        let mut env = Env::from_pairs([("HOME", "/root"), ("HERMES_HOME", "/srv/h")]);
        env.set_homes();
        assert_eq!(env.get("HOME"), Some(os("/opt/data")));
        assert_eq!(env.get("HERMES_HOME"), Some(os("/srv/h")));
        let mut env = Env::from_pairs([("HERMES_HOME", "")]);
        env.set_homes();
        assert_eq!(env.get("HERMES_HOME"), Some(os("/opt/data")));
    }

    #[test]
    fn venv_activation_prepends_and_drops_pythonhome() {
        let mut env = Env::from_pairs([("PATH", "/usr/bin:/bin"), ("PYTHONHOME", "/x")]);
        env.activate_venv();
        assert_eq!(env.get("PATH"), Some(os("/opt/hermes/.venv/bin:/usr/bin:/bin")));
        assert_eq!(env.get("VIRTUAL_ENV"), Some(os("/opt/hermes/.venv")));
        assert_eq!(env.get("PYTHONHOME"), None);
        let mut env = Env::default();
        env.activate_venv();
        assert_eq!(env.get("PATH"), Some(os("/opt/hermes/.venv/bin")));
    }

    #[test]
    fn user_tools_come_first_once() {
        let mut e = Env::from_pairs([("PATH", "/opt/hermes/.venv/bin:/usr/bin")]);
        e.add_user_tools();
        assert_eq!(
            e.get("PATH"),
            Some(OsStr::new("/opt/data/.local/bin:/opt/hermes/.venv/bin:/usr/bin"))
        );
        e.add_user_tools();
        assert_eq!(
            e.get("PATH"),
            Some(OsStr::new("/opt/data/.local/bin:/opt/hermes/.venv/bin:/usr/bin"))
        );
        let mut empty = Env::from_pairs::<&str, &str>([]);
        empty.add_user_tools();
        assert_eq!(empty.get("PATH"), Some(OsStr::new("/opt/data/.local/bin")));
    }

    #[test]
    fn t1_is_exact() {
        for v in T1 {
            assert!(is_t1(Some(os(v))), "{v}");
        }
        for v in ["", "0", "on", "yEs", " 1", "y", "false"] {
            assert!(!is_t1(Some(os(v))), "{v}");
        }
        assert!(!is_t1(None));
    }

    #[test]
    fn exec_refuses_an_identity_that_does_not_match_the_process() {
        assert_eq!(
            guarded::euid(),
            0,
            "this test needs root (it checks the root-exec refusal); run the suite as root, as CI does"
        );
        // A missing program: if the refusal were broken, the exec would fail with ENOENT, not replace the
        // test process.
        let prog = Path::new("/nonexistent/hermes-boot-test-program");
        let env = Env::default();
        for who in [Who::AlreadyUnprivileged, Who::Dropped { uid: 10000 }] {
            assert_eq!(
                exec_program(&Identity(who), prog, os("x"), &[], &env),
                Errno::EPERM
            );
        }
        assert_eq!(
            exec_program(&Identity(Who::RootByRequest), prog, os("x"), &[], &env),
            Errno::ENOENT
        );
        assert_eq!(
            exec_program(&Identity(Who::Dropped { uid: 0 }), prog, os("x"), &[], &env),
            Errno::ENOENT
        );
    }
}
