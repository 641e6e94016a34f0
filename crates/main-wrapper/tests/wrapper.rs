//! main-wrapper run for real against a temporary root prefix: roles, environment, routing, privilege drop,
//! exit statuses and the `hermes` shim (SPEC §5).
//!
//! The programs main-wrapper starts are `sh` scripts that report what they see from the inside: their
//! credentials from `/proc/self/status`, their environment and their working directory.

use std::path::PathBuf;
use std::process::Command;

use test_support::{require_root, run, run_as, Run, TempRoot};

const BIN: &str = env!("CARGO_BIN_EXE_main-wrapper");

/// Prints what a program sees, one `KEY=value` per line.
const PROBE: &str = r#"
while IFS= read -r line; do
  case "$line" in Uid:*|Gid:*|Groups:*|CapEff:*|CapPrm:*) echo "$line";; esac
done < /proc/self/status
echo "HOME=$HOME"
echo "HERMES_HOME=$HERMES_HOME"
echo "VIRTUAL_ENV=${VIRTUAL_ENV-<unset>}"
echo "PATH=$PATH"
echo "PWD=$(pwd)"
for v in FOO EMPTYVAR PYTHONHOME HERMES_MAIN_WRAPPER_ENV_READY AGENT_BROWSER_EXECUTABLE_PATH; do
  eval "printf '%s=%s\\n' $v \"\${$v-<unset>}\""
done
"#;

/// The value of `KEY` in probe output (`Uid:` lines are keyed `Uid`).
fn field(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .and_then(|r| r.strip_prefix('=').or_else(|| r.strip_prefix(':')))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no {key} in probe output:\n{out}"))
}

/// A temp root in which main-wrapper selects the wrapper role (s6-svscan is PID 1, `/run/s6/basedir`
/// exists), with the program installed where the image has it, so any uid can execute it.
fn s6_root() -> TempRoot {
    let r = TempRoot::new();
    r.write("/proc/1/comm", "s6-svscan\n");
    r.mkdir("/run/s6/basedir");
    install(&r);
    r
}

/// main-wrapper inside the temp root (the build directory may not be reachable by the runtime user).
fn install(r: &TempRoot) -> PathBuf {
    let dest = r.path("/opt/hermes/docker/bin/main-wrapper");
    if !dest.exists() {
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        if std::fs::hard_link(BIN, &dest).is_err() {
            std::fs::copy(BIN, &dest).unwrap();
        }
    }
    dest
}

/// An executable script under the prefix.
fn script(r: &TempRoot, p: &str, body: &str, mode: u32) {
    r.write(p, format!("#!/bin/sh\n{body}\n"));
    r.chmod(p, mode);
}

/// A venv whose `hermes` prints its arguments and uid.
fn venv(r: &TempRoot) {
    script(
        r,
        "/opt/hermes/.venv/bin/hermes",
        r#"echo "hermes-args:$*"; echo "hermes-uid:$(id -u)""#,
        0o755,
    );
}

fn wrapper(r: &TempRoot, args: &[&str]) -> Command {
    let mut c = r.command(install(r));
    c.args(args).current_dir(r.root()).env("HERMES_HOME", "/opt/data");
    c
}

fn probe(r: &TempRoot) -> Command {
    wrapper(r, &["sh", "-c", PROBE])
}

#[track_caller]
fn assert_no_capabilities(out: &str) {
    assert_eq!(field(out, "CapEff"), "0000000000000000", "{out}");
    assert_eq!(field(out, "CapPrm"), "0000000000000000", "{out}");
}

#[test]
fn root_start_drops_to_the_runtime_user_with_its_group_file_groups() {
    require_root();
    let r = s6_root();
    r.write(
        "/etc/group",
        "root:x:0:\nvideo:x:44:hermes\nnogroup:x:65534:\nhermes:x:10000:\nother:x:55:alice\n",
    );
    venv(&r);
    let out = run(&mut probe(&r));
    out.assert_code(0);
    let o = &out.stdout;
    assert_eq!(field(o, "Uid"), "10000\t10000\t10000\t10000", "{o}");
    assert_eq!(field(o, "Gid"), "10000\t10000\t10000\t10000", "{o}");
    let groups = field(o, "Groups");
    let mut groups: Vec<&str> = groups.split_whitespace().collect();
    groups.sort();
    assert_eq!(groups, vec!["10000", "44"], "{o}");
    assert_no_capabilities(o);
    assert_eq!(field(o, "HOME"), "/opt/data");
    assert_eq!(field(o, "HERMES_HOME"), "/opt/data");
    assert_eq!(field(o, "VIRTUAL_ENV"), "/opt/hermes/.venv");
    // The runtime user's tools first (only its own processes get them), then the venv.
    assert!(
        field(o, "PATH").starts_with("/opt/data/.local/bin:/opt/hermes/.venv/bin:/usr/local/sbin:"),
        "{o}"
    );
    assert_eq!(
        field(o, "PWD"),
        r.root().display().to_string(),
        "the working directory is kept"
    );
    // main-wrapper printed nothing of its own: the program's stdout is all there is, stderr is empty.
    assert!(out.stdout.starts_with("Uid:"), "{}", out.stdout);
    assert_eq!(out.stderr, "");
}

#[test]
fn supplementary_groups_of_the_caller_are_not_inherited() {
    require_root();
    let r = s6_root();
    // Start as root with extra groups, as a runtime granting `--group-add` would (util-linux `setpriv`).
    let mut cmd = r.command("setpriv");
    cmd.args(["--groups", "0,44,65534", "--"])
        .arg(install(&r))
        .args(["sh", "-c", PROBE]);
    cmd.current_dir(r.root()).env("HERMES_HOME", "/opt/data");
    let out = run(&mut cmd);
    out.assert_code(0);
    assert_eq!(field(&out.stdout, "Groups"), "10000", "{}", out.stdout);
}

#[test]
fn already_the_runtime_user_runs_without_credential_changes() {
    require_root();
    let r = s6_root();
    venv(&r);
    let out = run_as(&mut probe(&r), 10000, 10000);
    out.assert_code(0);
    assert_eq!(field(&out.stdout, "Uid"), "10000\t10000\t10000\t10000");
    assert_eq!(field(&out.stdout, "Gid"), "10000\t10000\t10000\t10000");
    assert_eq!(field(&out.stdout, "HOME"), "/opt/data");
    assert_eq!(field(&out.stdout, "VIRTUAL_ENV"), "/opt/hermes/.venv");
}

#[test]
fn any_user_runs_the_command_as_itself_with_the_runtime_home() {
    require_root();
    let r = s6_root();
    venv(&r);
    // Any --user, OpenShift's arbitrary uid with gid 0 among them: no credential change is possible or tried.
    for (uid, gid) in [(1000, 1000), (1_000_170_000, 0), (10000, 0)] {
        let out = run_as(&mut probe(&r), uid, gid);
        out.assert_code(0);
        assert_eq!(field(&out.stdout, "Uid"), format!("{uid}\t{uid}\t{uid}\t{uid}"));
        assert_eq!(field(&out.stdout, "Gid"), format!("{gid}\t{gid}\t{gid}\t{gid}"));
        assert_eq!(field(&out.stdout, "HOME"), "/opt/data");
        assert_eq!(field(&out.stdout, "VIRTUAL_ENV"), "/opt/hermes/.venv");
        assert!(!out.stderr.contains("ERROR"), "{}", out.stderr);
    }
}

#[test]
fn missing_runtime_user_is_fatal() {
    require_root();
    let r = s6_root();
    let out = run(wrapper(&r, &["sh", "-c", "echo ran"]).env("HERMES_BOOT_USER", "agent"));
    out.assert_code(1);
    assert_eq!(
        out.stderr.trim_end(),
        "[hermes] ERROR: runtime user agent not found in /etc/passwd"
    );
    assert_eq!(out.stdout, "");
}

#[test]
fn exit_status_is_the_programs() {
    require_root();
    let r = s6_root();
    run(&mut wrapper(&r, &["sh", "-c", "exit 42"])).assert_code(42);
    // Death by signal reaches the caller as the signal (the program replaced main-wrapper).
    let out = run(&mut wrapper(&r, &["sh", "-c", "kill -TERM $$"]));
    assert_eq!(out.code, None, "{out:?}");
}

#[test]
fn missing_hermes_is_127() {
    require_root();
    let r = s6_root();
    let out = run(&mut wrapper(&r, &[]));
    out.assert_code(127);
    assert!(
        out.stderr
            .contains("[hermes] ERROR: cannot execute hermes: ENOENT"),
        "{}",
        out.stderr
    );
}

#[test]
fn non_executable_hermes_is_126() {
    require_root();
    let r = s6_root();
    script(&r, "/opt/hermes/.venv/bin/hermes", "echo should-not-run", 0o644);
    let out = run(&mut wrapper(&r, &["chat"]));
    out.assert_code(126);
    assert!(
        out.stderr
            .contains("[hermes] ERROR: cannot execute /opt/hermes/.venv/bin/hermes: EACCES"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "");
}

#[test]
fn a_script_without_interpreter_line_runs_under_sh_as_the_shell_did() {
    require_root();
    let r = s6_root();
    // Upstream's `exec hermes` handed a file the kernel cannot execute (ENOEXEC) to /bin/sh; so does
    // main-wrapper (execvp semantics).
    r.write("/opt/hermes/.venv/bin/hermes", "echo \"headerless:$*\"\n");
    r.chmod("/opt/hermes/.venv/bin/hermes", 0o755);
    let out = run(&mut wrapper(&r, &["chat"]));
    out.assert_code(0);
    assert_eq!(out.stdout, "headerless:chat\n");
}

#[test]
fn routing_sends_options_subcommands_and_unknown_words_to_hermes() {
    require_root();
    let r = s6_root();
    venv(&r);
    // `sleep` exists on PATH but is listed as a subcommand: hermes wins (B25).
    r.write("/etc/hermes/cli-subcommands", "# subcommands\nchat\n  sleep  \n");
    let cases: &[(&[&str], &str)] = &[
        (&[], "hermes-args:"),
        (&["-p", "hello"], "hermes-args:-p hello"),
        (&["--help"], "hermes-args:--help"),
        (&["sleep", "5"], "hermes-args:sleep 5"),
        (&["chat", "-q", "x"], "hermes-args:chat -q x"),
        (&["model"], "hermes-args:model"),
        (&["./missing.sh", "a"], "hermes-args:./missing.sh a"),
    ];
    for (args, want) in cases {
        let out = run(&mut wrapper(&r, args));
        out.assert_code(0);
        assert_eq!(out.stdout.lines().next(), Some(*want), "{args:?}: {}", out.stderr);
        assert_eq!(field(&out.stdout, "hermes-uid"), "10000");
    }
}

#[test]
fn routing_runs_path_programs_and_paths_as_given() {
    require_root();
    let r = s6_root();
    venv(&r);
    script(&r, "/opt/tools/run.sh", r#"echo "run.sh:$*""#, 0o755);
    let out = run(&mut wrapper(&r, &["echo", "direct"]));
    out.assert_code(0);
    assert_eq!(out.stdout, "direct\n");
    // An absolute path is looked up under the prefix.
    let out = run(&mut wrapper(&r, &["/opt/tools/run.sh", "x"]));
    out.assert_code(0);
    assert_eq!(out.stdout, "run.sh:x\n");
    // A relative path is relative to the working directory.
    let out = run(wrapper(&r, &["./run.sh", "y"]).current_dir(r.path("/opt/tools")));
    out.assert_code(0);
    assert_eq!(out.stdout, "run.sh:y\n");
    // The venv's programs shadow the system's once it is on PATH.
    script(&r, "/opt/hermes/.venv/bin/python3", "echo venv-python", 0o755);
    let out = run(&mut wrapper(&r, &["python3"]));
    assert_eq!(out.stdout, "venv-python\n");
}

#[test]
fn missing_venv_warns_and_leaves_path_alone() {
    require_root();
    let r = s6_root();
    let out = run(&mut probe(&r));
    out.assert_code(0);
    assert_eq!(field(&out.stdout, "VIRTUAL_ENV"), "<unset>");
    // No venv entry; the runtime user's tools are still added for the dropped program.
    assert!(
        field(&out.stdout, "PATH").starts_with("/opt/data/.local/bin:/usr/local/sbin:"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("[hermes] Warning: virtual environment"),
        "{}",
        out.stderr
    );
}

#[test]
fn environment_is_rehydrated_only_when_hermes_home_is_empty() {
    require_root();
    let r = s6_root();
    venv(&r);
    r.write("/run/s6/container_environment/HERMES_HOME", "/srv/hermes");
    r.write("/run/s6/container_environment/FOO", b"two\0lines");
    r.write("/run/s6/container_environment/EMPTYVAR", "");
    r.write("/run/s6/container_environment/PYTHONHOME", "/usr");
    r.write("/run/s6/container_environment/.hidden", "x");

    let mut cmd = probe(&r);
    cmd.env_remove("HERMES_HOME")
        .env("EMPTYVAR", "set-before")
        .env("HERMES_MAIN_WRAPPER_ENV_READY", "1");
    let out = run(&mut cmd);
    out.assert_code(0);
    let o = &out.stdout;
    assert_eq!(field(o, "HERMES_HOME"), "/srv/hermes");
    assert!(o.contains("FOO=two\nlines\n"), "{o}");
    assert_eq!(field(o, "EMPTYVAR"), "<unset>");
    assert_eq!(
        field(o, "PYTHONHOME"),
        "<unset>",
        "the venv removes PYTHONHOME after rehydration"
    );
    assert_eq!(field(o, "HERMES_MAIN_WRAPPER_ENV_READY"), "<unset>");

    let mut cmd = probe(&r);
    cmd.env("HERMES_HOME", "/mine").env("EMPTYVAR", "kept");
    let out = run(&mut cmd);
    out.assert_code(0);
    assert_eq!(field(&out.stdout, "HERMES_HOME"), "/mine");
    assert_eq!(field(&out.stdout, "FOO"), "<unset>");
    assert_eq!(field(&out.stdout, "EMPTYVAR"), "kept");

    // Empty counts as unset.
    let out = run(probe(&r).env("HERMES_HOME", ""));
    assert_eq!(field(&out.stdout, "HERMES_HOME"), "/srv/hermes");
}

#[test]
fn hermes_home_defaults_to_the_data_volume() {
    require_root();
    let r = s6_root();
    let out = run(probe(&r).env_remove("HERMES_HOME").env("HOME", "/root"));
    out.assert_code(0);
    assert_eq!(field(&out.stdout, "HERMES_HOME"), "/opt/data");
    assert_eq!(field(&out.stdout, "HOME"), "/opt/data");
}

#[test]
fn working_directory_follows_hermes_orig_cwd() {
    require_root();
    let r = s6_root();
    r.mkdir("/work/project");
    let out = run(probe(&r).env("HERMES_ORIG_CWD", "/work/project"));
    out.assert_code(0);
    assert_eq!(
        field(&out.stdout, "PWD"),
        r.path("/work/project").display().to_string()
    );

    // Not a directory: the start directory is kept.
    r.write("/work/file", "x");
    for cwd in ["/work/file", "/work/absent", ""] {
        let out = run(probe(&r).env("HERMES_ORIG_CWD", cwd));
        out.assert_code(0);
        assert_eq!(
            field(&out.stdout, "PWD"),
            r.root().display().to_string(),
            "{cwd:?}"
        );
    }

    // A directory the runtime user cannot enter is not entered as root on its behalf.
    r.mkdir("/work/private");
    r.chmod("/work/private", 0o700);
    let out = run(probe(&r).env("HERMES_ORIG_CWD", "/work/private"));
    out.assert_code(0);
    assert_eq!(field(&out.stdout, "PWD"), r.root().display().to_string());
    assert!(
        out.stderr
            .contains("cannot enter HERMES_ORIG_CWD /work/private: EACCES"),
        "{}",
        out.stderr
    );
}

#[test]
fn wrapper_options_are_answered_only_as_the_sole_argument() {
    require_root();
    let r = s6_root();
    let out = run(&mut wrapper(&r, &["--wrapper-version"]));
    out.assert_code(0);
    assert_eq!(
        out.stderr.trim_end(),
        format!("main-wrapper {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(out.stdout, "");
    let out = run(&mut wrapper(&r, &["--wrapper-help"]));
    out.assert_code(0);
    assert!(out.stderr.contains("usage: main-wrapper"), "{}", out.stderr);

    venv(&r);
    let out = run(&mut wrapper(&r, &["--wrapper-version", "x"]));
    out.assert_code(0);
    assert_eq!(out.stdout.lines().next(), Some("hermes-args:--wrapper-version x"));
}

// ---- MW-04: not PID 1 and no s6 ----

/// A root where main-wrapper is neither PID 1 nor under s6 (no `/proc/1/comm`).
fn bare_root() -> TempRoot {
    let r = TempRoot::new();
    install(&r);
    r
}

const EXPORTING_STAGE2: &str = r#"echo "stage2 ran as $(id -u)"
mkdir -p "$HERMES_BOOT_ROOT/run/s6/container_environment"
printf /usr/bin/chromium > "$HERMES_BOOT_ROOT/run/s6/container_environment/AGENT_BROWSER_EXECUTABLE_PATH"
printf from-envdir > "$HERMES_BOOT_ROOT/run/s6/container_environment/FOO"
printf ignored > "$HERMES_BOOT_ROOT/run/s6/container_environment/.dot""#;

#[test]
fn fallback_runs_stage2_and_applies_its_exports() {
    require_root();
    let r = bare_root();
    script(&r, "/opt/hermes/docker/bin/stage2-setup", EXPORTING_STAGE2, 0o755);
    let mut cmd = probe(&r);
    cmd.env("FOO", "from-container");
    let out = run(&mut cmd);
    out.assert_code(0);
    assert!(
        out.stderr
            .starts_with("[hermes] WARNING: container entrypoint is not PID 1; skipping s6-overlay /init"),
        "{}",
        out.stderr
    );
    // stage2-setup's stdout went to stderr, keeping the command's stdout clean.
    assert!(out.stderr.contains("stage2 ran as 0"), "{}", out.stderr);
    assert!(!out.stdout.contains("stage2 ran"), "{}", out.stdout);
    assert_eq!(
        field(&out.stdout, "AGENT_BROWSER_EXECUTABLE_PATH"),
        "/usr/bin/chromium"
    );
    assert_eq!(
        field(&out.stdout, "FOO"),
        "from-container",
        "the container's own value wins"
    );
    assert_eq!(field(&out.stdout, "Uid"), "10000\t10000\t10000\t10000");
}

#[test]
fn fallback_stage2_failure_is_the_exit_status() {
    require_root();
    let r = bare_root();
    let marker = r.path("/tmp/ran");
    script(
        &r,
        "/opt/hermes/docker/bin/stage2-setup",
        "echo boom >&2; exit 3",
        0o755,
    );
    let out = run(&mut wrapper(
        &r,
        &["sh", "-c", &format!("touch {}", marker.display())],
    ));
    out.assert_code(3);
    assert!(!marker.exists(), "the command ran after a failed bootstrap");

    script(&r, "/opt/hermes/docker/bin/stage2-setup", "kill -KILL $$", 0o755);
    run(&mut wrapper(&r, &["sh", "-c", "exit 0"])).assert_code(128 + 9);
}

#[test]
fn fallback_without_stage2_is_an_error() {
    require_root();
    let r = bare_root();
    let out = run(&mut wrapper(&r, &["sh", "-c", "echo ran"]));
    out.assert_code(1);
    assert!(
        out.stderr
            .contains("[hermes] ERROR: cannot run stage2-setup: ENOENT"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "");
}

// ---- MW-03: PID 1 ----

/// Runs main-wrapper as PID 1 of a new PID namespace (util-linux `unshare`).
fn as_pid1(r: &TempRoot, args: &[&str]) -> Run {
    let mut cmd = r.command("unshare");
    cmd.arg("--pid")
        .arg("--fork")
        .arg("--kill-child")
        .arg(install(r))
        .args(args)
        .env("MARK", "kept");
    run(&mut cmd)
}

#[test]
fn pid1_hands_over_to_init_with_arguments_and_environment() {
    require_root();
    let r = s6_root();
    script(
        &r,
        "/init",
        r#"{ echo "pid=$$"; for a in "$@"; do echo "arg=$a"; done; echo "MARK=$MARK"; } > "$HERMES_BOOT_ROOT/tmp/init.log""#,
        0o755,
    );
    let out = as_pid1(&r, &["chat", "-q", "hi there"]);
    out.assert_code(0);
    assert_eq!(
        r.read("/tmp/init.log"),
        "pid=1\narg=/opt/hermes/docker/bin/main-wrapper\narg=chat\narg=-q\narg=hi there\nMARK=kept\n"
    );
    assert_eq!(out.stdout, "");
}

#[test]
fn pid1_without_init_is_127() {
    require_root();
    let r = s6_root();
    let out = as_pid1(&r, &[]);
    out.assert_code(127);
    assert!(
        out.stderr.contains("[hermes] ERROR: cannot exec /init: ENOENT"),
        "{}",
        out.stderr
    );
}

// ---- MW-12: the `docker exec` shim ----

/// `/opt/hermes/bin/hermes` → main-wrapper, and a REAL hermes printing who runs it.
fn shim_root() -> (TempRoot, PathBuf) {
    let r = TempRoot::new();
    let bin = install(&r);
    r.mkdir("/opt/hermes/bin");
    r.symlink(&bin, "/opt/hermes/bin/hermes");
    script(
        &r,
        "/opt/hermes/.venv/bin/hermes",
        r#"echo "real:$(id -u):$(id -g):$HOME:$*""#,
        0o755,
    );
    let shim = r.path("/opt/hermes/bin/hermes");
    (r, shim)
}

#[test]
fn shim_as_root_runs_real_hermes_as_the_runtime_user() {
    require_root();
    let (r, shim) = shim_root();
    r.write("/etc/group", "root:x:0:\nvideo:x:44:hermes\nhermes:x:10000:\n");
    let mut cmd = r.command(&shim);
    cmd.args(["status", "--all"]).env("HOME", "/root");
    let out = run(&mut cmd);
    out.assert_code(0);
    assert_eq!(out.stdout, "real:10000:10000:/opt/data:status --all\n");
    assert_eq!(out.stderr, "");
    // No routing, no wrapper options: everything goes to REAL.
    let out = run(r.command(&shim).arg("--wrapper-version"));
    assert_eq!(out.stdout, "real:10000:10000:/opt/data:--wrapper-version\n");
}

#[test]
fn shim_keeps_root_only_on_an_explicit_request() {
    require_root();
    let (r, shim) = shim_root();
    for v in ["1", "yes", "True"] {
        let out = run(r
            .command(&shim)
            .arg("x")
            .env("HERMES_DOCKER_EXEC_AS_ROOT", v)
            .env("HOME", "/root"));
        out.assert_code(0);
        assert_eq!(out.stdout, "real:0:0:/root:x\n", "{v}");
    }
    let out = run(r.command(&shim).env("HERMES_DOCKER_EXEC_AS_ROOT", "on"));
    assert!(out.stdout.starts_with("real:10000:"), "{}", out.stdout);
}

#[test]
fn shim_as_non_root_runs_real_unchanged() {
    require_root();
    let (r, shim) = shim_root();
    let out = run_as(r.command(&shim).arg("chat").env("HOME", "/home/x"), 10000, 10000);
    out.assert_code(0);
    assert_eq!(out.stdout, "real:10000:10000:/home/x:chat\n");
}

#[test]
fn shim_without_real_hermes_is_127() {
    require_root();
    let (r, shim) = shim_root();
    r.chmod("/opt/hermes/.venv/bin/hermes", 0o644);
    let out = run(&mut r.command(&shim));
    out.assert_code(127);
    assert_eq!(
        out.stderr.trim_end(),
        "hermes-shim: /opt/hermes/.venv/bin/hermes not found or not executable"
    );
    std::fs::remove_file(r.path("/opt/hermes/.venv/bin/hermes")).unwrap();
    run(&mut r.command(&shim)).assert_code(127);
}

#[test]
fn shim_without_runtime_user_is_126() {
    require_root();
    let (r, shim) = shim_root();
    let out = run(r.command(&shim).env("HERMES_BOOT_USER", "agent"));
    out.assert_code(126);
    assert_eq!(out.stderr.trim_end(), "hermes-shim: runtime user agent not found");
    assert_eq!(out.stdout, "");
}
