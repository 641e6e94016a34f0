//! Routing of the container command (SPEC MW-10): which program main-wrapper executes for the arguments
//! it was given, and where that program is found on `PATH`.
//!
//! The decision ([`decide`]) is pure; the file-system question it needs ("is `A[0]` an executable program?")
//! is passed in, so every rule is unit-tested without touching the disk. [`find_program`] answers that
//! question for real.
//!
//! Root prefix (CM-02) and `PATH`: `PATH` holds in-container directories (`/opt/hermes/.venv/bin` after
//! MW-09), but under a prefix the image's own tree lives below the prefix while system tools (`sh`, `sleep`)
//! are the host's. Every absolute candidate is therefore tried below the prefix first, then as given. Without a
//! prefix the two are the same path and only one lookup is made. Relative `PATH` entries (and an empty entry,
//! meaning the current directory) are used as given, as `execvp` would.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use rustix::fs::{Access, AtFlags, CWD};

use crate::error::SysResult;
use crate::root::RootPrefix;

/// The list of hermes subcommands that must never be shadowed by a `PATH` program (B25).
pub const CLI_SUBCOMMANDS: &str = "/etc/hermes/cli-subcommands";

/// The program every non-direct route runs.
pub const HERMES: &str = "hermes";

/// What MW-10 decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Run `hermes A…` (rules 1, 2, 3 and 5).
    Hermes,
    /// Run `A…` as given (rule 4).
    AsGiven,
}

/// Applies the rules of MW-10 in order. `is_program(a0)` answers rule 4: `a0` contains `/` and names an
/// executable regular file, or `a0` is found as one in a `PATH` directory.
pub fn decide(
    args: &[OsString],
    subcommands: &[OsString],
    is_program: impl FnOnce(&OsStr) -> bool,
) -> Decision {
    let Some(a0) = args.first() else {
        return Decision::Hermes;
    };
    if a0.as_bytes().starts_with(b"-") {
        return Decision::Hermes;
    }
    if subcommands.iter().any(|s| s == a0) {
        return Decision::Hermes;
    }
    // An empty name is no program; checking it would only find the current directory.
    if !a0.is_empty() && is_program(a0) {
        return Decision::AsGiven;
    }
    Decision::Hermes
}

/// Parses `/etc/hermes/cli-subcommands`: one name per line, surrounding whitespace trimmed, blank lines and
/// lines starting with `#` ignored.
pub fn parse_subcommands(text: &[u8]) -> Vec<OsString> {
    text.split(|b| *b == b'\n')
        .map(|line| line.trim_ascii())
        .filter(|line| !line.is_empty() && !line.starts_with(b"#"))
        .map(|line| OsStr::from_bytes(line).to_os_string())
        .collect()
}

/// Reads the subcommand list under the root prefix; a missing file is an empty list.
pub fn read_subcommands(root: &RootPrefix) -> SysResult<Vec<OsString>> {
    Ok(
        crate::guarded::read_image_file(root, CLI_SUBCOMMANDS, crate::guarded::IMAGE_FILE_LIMIT)?
            .map(|text| parse_subcommands(&text))
            .unwrap_or_default(),
    )
}

/// A program located for execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Where it is on this host (below the root prefix when it was found there).
    pub host: PathBuf,
    /// The name to show in messages: the in-container path (`PATH` directory joined with the name).
    pub shown: PathBuf,
}

/// The outcome of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// An executable regular file.
    Found(Located),
    /// No executable candidate, but this regular file exists (executing it reports why: 126).
    NotExecutable(Located),
    /// Nothing of that name (127).
    Missing,
}

impl Lookup {
    pub fn found(&self) -> Option<&Located> {
        match self {
            Lookup::Found(l) => Some(l),
            _ => None,
        }
    }
}

/// Finds `name` the way a shell would before `exec`: a name containing `/` is used as a path; any other
/// name is searched in the directories of `path_var` in order. The first executable regular file wins; the
/// check uses the effective ids, so call it with the credentials the program will run with.
pub fn find_program(root: &RootPrefix, name: &OsStr, path_var: Option<&OsStr>) -> Lookup {
    if name.is_empty() {
        return Lookup::Missing;
    }
    let mut first_inert = None;
    let mut consider = |shown: PathBuf| -> Option<Located> {
        for host in candidates(root, &shown) {
            match classify(&host) {
                Kind::Executable => {
                    return Some(Located {
                        host,
                        shown: shown.clone(),
                    })
                }
                Kind::Inert => {
                    if first_inert.is_none() {
                        first_inert = Some(Located {
                            host,
                            shown: shown.clone(),
                        });
                    }
                }
                Kind::Absent => {}
            }
        }
        None
    };
    if name.as_bytes().contains(&b'/') {
        if let Some(l) = consider(PathBuf::from(name)) {
            return Lookup::Found(l);
        }
    } else {
        let dirs = path_var.map(|p| p.as_bytes()).unwrap_or_default();
        if !dirs.is_empty() {
            for dir in dirs.split(|b| *b == b':') {
                let dir = if dir.is_empty() {
                    Path::new(".")
                } else {
                    Path::new(OsStr::from_bytes(dir))
                };
                if let Some(l) = consider(dir.join(name)) {
                    return Lookup::Found(l);
                }
            }
        }
    }
    match first_inert {
        Some(l) => Lookup::NotExecutable(l),
        None => Lookup::Missing,
    }
}

/// The host paths an in-container program path may be at: below the prefix first, then as given.
fn candidates(root: &RootPrefix, shown: &Path) -> Vec<PathBuf> {
    let prefixed = root.path(shown);
    if prefixed == shown {
        vec![prefixed]
    } else {
        vec![prefixed, shown.to_path_buf()]
    }
}

enum Kind {
    Executable,
    /// A regular file the caller may not execute.
    Inert,
    Absent,
}

/// True when `host` is a regular file (symlinks followed) that the caller may execute.
pub fn is_executable_file(host: &Path) -> bool {
    matches!(classify(host), Kind::Executable)
}

fn classify(host: &Path) -> Kind {
    match std::fs::metadata(host) {
        Ok(m) if m.is_file() => {
            if rustix::fs::accessat(CWD, host, Access::EXEC_OK, AtFlags::EACCESS).is_ok() {
                Kind::Executable
            } else {
                Kind::Inert
            }
        }
        _ => Kind::Absent,
    }
}

/// The exit status of a failed `execve` (shell convention): 127 when the program does not exist, 126 when
/// it exists but cannot be executed.
pub fn exec_failure_status(errno: Errno) -> i32 {
    match errno {
        Errno::ENOENT | Errno::ENOTDIR => 127,
        _ => 126,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn subs() -> Vec<OsString> {
        args(&["chat", "mcp", "login", "gateway"])
    }

    /// A fake file system answering rule 4: `sleep`, `bash`, `mcp`, `login` and `./run.sh` are programs.
    fn programs(a0: &OsStr) -> bool {
        ["sleep", "bash", "mcp", "login", "./run.sh", "/usr/bin/env"]
            .iter()
            .any(|p| a0 == *p)
    }

    #[test]
    fn no_arguments_run_hermes() {
        assert_eq!(
            decide(&[], &subs(), |_| panic!("no lookup for empty args")),
            Decision::Hermes
        );
    }

    #[test]
    fn leading_dash_runs_hermes_even_when_a_program_has_that_name() {
        for a in [&["-p", "hi"][..], &["--help"], &["-"], &["--version"]] {
            assert_eq!(decide(&args(a), &subs(), |_| true), Decision::Hermes, "{a:?}");
        }
    }

    #[test]
    fn listed_subcommands_win_over_path_programs() {
        // `mcp` and `login` exist on PATH here, yet they are hermes subcommands (B25).
        for a in [&["mcp", "serve"][..], &["login"], &["chat", "-q", "x"]] {
            assert_eq!(decide(&args(a), &subs(), programs), Decision::Hermes, "{a:?}");
        }
    }

    #[test]
    fn path_programs_and_paths_run_as_given() {
        for a in [
            &["sleep", "5"][..],
            &["bash", "-lc", "x"],
            &["./run.sh"],
            &["/usr/bin/env"],
        ] {
            assert_eq!(decide(&args(a), &subs(), programs), Decision::AsGiven, "{a:?}");
        }
    }

    #[test]
    fn anything_else_is_a_hermes_argument() {
        for a in [
            &["model"][..],
            &["./missing.sh"],
            &["/nonexistent/x"],
            &["status", "--all"],
            &[""],
        ] {
            assert_eq!(decide(&args(a), &subs(), programs), Decision::Hermes, "{a:?}");
        }
    }

    #[test]
    fn without_a_list_path_programs_still_shadow_nothing_listed() {
        assert_eq!(decide(&args(&["mcp"]), &[], programs), Decision::AsGiven);
        assert_eq!(decide(&args(&["chat"]), &[], programs), Decision::Hermes);
    }

    #[test]
    fn subcommand_list_parsing() {
        let text = b"# hermes subcommands\n  chat  \n\nmcp\r\n\t# indented comment\ngateway\n   \n";
        assert_eq!(parse_subcommands(text), args(&["chat", "mcp", "gateway"]));
        assert!(parse_subcommands(b"").is_empty());
    }

    #[test]
    fn missing_subcommand_list_is_empty() {
        let t = tempfile::tempdir().unwrap();
        let root = RootPrefix::new(t.path());
        assert!(read_subcommands(&root).unwrap().is_empty());
        std::fs::create_dir_all(t.path().join("etc/hermes")).unwrap();
        std::fs::write(t.path().join("etc/hermes/cli-subcommands"), "chat\n#x\nmcp\n").unwrap();
        assert_eq!(read_subcommands(&root).unwrap(), args(&["chat", "mcp"]));
    }

    fn write_mode(p: &Path, mode: u32) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn path_entries_are_tried_below_the_prefix_first() {
        let t = tempfile::tempdir().unwrap();
        let root = RootPrefix::new(t.path());
        write_mode(&t.path().join("opt/hermes/.venv/bin/hermes"), 0o755);
        let path = OsStr::new("/opt/hermes/.venv/bin:/usr/bin:/bin");
        let l = find_program(&root, OsStr::new("hermes"), Some(path));
        let l = l.found().expect("venv hermes found");
        assert_eq!(l.host, t.path().join("opt/hermes/.venv/bin/hermes"));
        assert_eq!(l.shown, PathBuf::from("/opt/hermes/.venv/bin/hermes"));
        // Host tools are still found where the prefix has none.
        let sh = find_program(&root, OsStr::new("sh"), Some(path));
        assert!(
            sh.found()
                .is_some_and(|l| l.host.starts_with("/usr/bin") || l.host.starts_with("/bin")),
            "{sh:?}"
        );
    }

    #[test]
    fn directories_and_missing_names_are_not_programs() {
        let t = tempfile::tempdir().unwrap();
        let root = RootPrefix::new(t.path());
        std::fs::create_dir_all(t.path().join("bin/tool")).unwrap();
        let path = OsStr::new("/bin");
        // `/bin/tool` is a directory under the prefix and does not exist on the host.
        assert_eq!(
            find_program(&root, OsStr::new("tool"), Some(path)),
            Lookup::Missing
        );
        assert_eq!(
            find_program(&root, OsStr::new("no-such-program-xyz"), Some(path)),
            Lookup::Missing
        );
        assert_eq!(find_program(&root, OsStr::new("sh"), None), Lookup::Missing);
        assert_eq!(find_program(&root, OsStr::new(""), Some(path)), Lookup::Missing);
    }

    #[test]
    fn absolute_names_resolve_below_the_prefix_then_as_given() {
        let t = tempfile::tempdir().unwrap();
        let root = RootPrefix::new(t.path());
        write_mode(&t.path().join("opt/hermes/tool"), 0o755);
        let l = find_program(&root, OsStr::new("/opt/hermes/tool"), None);
        assert_eq!(
            l.found().map(|l| l.host.clone()),
            Some(t.path().join("opt/hermes/tool"))
        );
        assert!(find_program(&root, OsStr::new("/bin/sh"), None).found().is_some());
    }

    #[test]
    fn relative_names_with_a_slash_are_relative_to_the_working_directory() {
        let t = tempfile::tempdir().unwrap();
        write_mode(&t.path().join("run.sh"), 0o755);
        let name = t.path().join("run.sh");
        let l = find_program(&RootPrefix::none(), name.as_os_str(), None);
        assert_eq!(l.found().map(|l| l.shown.clone()), Some(name));
        // `./x` never searches PATH.
        assert_eq!(
            find_program(
                &RootPrefix::none(),
                OsStr::new("./no-such-program-xyz"),
                Some(OsStr::new("/bin"))
            ),
            Lookup::Missing
        );
    }

    #[test]
    fn a_later_executable_beats_an_earlier_inert_file() {
        let t = tempfile::tempdir().unwrap();
        write_mode(&t.path().join("a/prog"), 0o644);
        write_mode(&t.path().join("b/prog"), 0o755);
        let path = std::env::join_paths([t.path().join("a"), t.path().join("b")]).unwrap();
        let l = find_program(&RootPrefix::none(), OsStr::new("prog"), Some(&path));
        assert_eq!(l.found().map(|l| l.host.clone()), Some(t.path().join("b/prog")));
        let only_inert = t.path().join("a");
        let l = find_program(
            &RootPrefix::none(),
            OsStr::new("prog"),
            Some(only_inert.as_os_str()),
        );
        assert_eq!(
            l,
            Lookup::NotExecutable(Located {
                host: t.path().join("a/prog"),
                shown: t.path().join("a/prog")
            })
        );
    }

    #[test]
    fn exec_failure_statuses() {
        assert_eq!(exec_failure_status(Errno::ENOENT), 127);
        assert_eq!(exec_failure_status(Errno::ENOTDIR), 127);
        assert_eq!(exec_failure_status(Errno::EACCES), 126);
        assert_eq!(exec_failure_status(Errno::ENOEXEC), 126);
    }
}
