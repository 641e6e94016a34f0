//! Reading the container environment directory `/run/s6/container_environment` (SPEC MW-04, MW-05).
//!
//! s6-overlay writes the environment the container was started with there, one file per variable, because
//! `/init` scrubs the environment of the programs it starts; stage2-setup adds variables it exports (S2-29).
//! The rules are with-contenv's (`s6-envdir -Lf`): only regular files count, a name with a leading `.` or
//! containing `=` is skipped, the whole content is the value except one trailing newline (s6-overlay writes
//! every value with one), NUL bytes become newlines, and an empty file unsets the variable.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use rustix::fs::FileType;

use crate::error::SysResult;
use crate::guarded::{Dir, Entry};
use crate::report::Report;
use crate::root::RootPrefix;

/// The container environment directory (in-container path).
pub const CONTAINER_ENV_DIR: &str = "/run/s6/container_environment";

/// A single value is bounded by the kernel's limit on one environment string (`MAX_ARG_STRLEN`); a larger
/// file could never be passed to the program anyway.
const VALUE_LIMIT: u64 = 128 * 1024;

/// One variable of the directory: `Some(value)` sets it, `None` (an empty file) unsets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFile {
    pub name: OsString,
    pub value: Option<OsString>,
}

/// True for a file name that names a variable: not empty, no leading `.`, no `=`.
pub fn is_variable_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    !b.is_empty() && b[0] != b'.' && !b.contains(&b'=')
}

/// The value a file's content stands for: `None` for an empty file (unset), otherwise the content without
/// one trailing newline, every NUL byte turned into a newline (an environment string cannot hold NUL). The
/// newline is removed before NULs are translated, as `s6-envdir -f` does, so a value that really ends in a
/// newline survives as a trailing NUL.
pub fn value_of(content: &[u8]) -> Option<OsString> {
    if content.is_empty() {
        return None;
    }
    let content = content.strip_suffix(b"\n").unwrap_or(content);
    let bytes: Vec<u8> = content.iter().map(|b| if *b == 0 { b'\n' } else { *b }).collect();
    Some(OsString::from_vec(bytes))
}

/// Reads the directory under the root prefix. `Ok(None)` when it is not a directory (missing, a symlink or
/// something else: s6-overlay creates it as a plain directory, so anything else is not its environment).
/// Entries that are not regular files or not valid names are skipped silently; a file that cannot be read
/// is warned about and skipped.
pub fn read(root: &RootPrefix, report: &Report) -> SysResult<Option<Vec<EnvFile>>> {
    let dir = match Dir::open_anchor(root, Path::new(CONTAINER_ENV_DIR))? {
        Entry::Found(d) => d,
        _ => return Ok(None),
    };
    let mut out = Vec::new();
    for (name, kind) in dir.list()? {
        if !is_variable_name(&name) {
            continue;
        }
        // s6-overlay writes this directory as root before any other process runs; where a file system
        // reports no d_type, the open checks the real type.
        if kind != FileType::RegularFile && kind != FileType::Unknown {
            continue;
        }
        let read = if kind == FileType::RegularFile {
            dir.read_listed_file(&name, VALUE_LIMIT)
        } else {
            dir.read_regular(&name, VALUE_LIMIT)
        };
        match read {
            Ok(Entry::Found(content)) => out.push(EnvFile {
                value: value_of(&content),
                name,
            }),
            Ok(_) => {}
            Err(e) => report.warn_err(&e),
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_a_leading_dot_or_an_equals_sign_are_not_variables() {
        assert!(is_variable_name(OsStr::new("HERMES_HOME")));
        assert!(is_variable_name(OsStr::new("a.b")));
        assert!(!is_variable_name(OsStr::new(".hidden")));
        assert!(!is_variable_name(OsStr::new("A=B")));
        assert!(!is_variable_name(OsStr::new("")));
    }

    #[test]
    fn values_are_verbatim_with_nul_as_newline_and_empty_as_unset() {
        assert_eq!(value_of(b"/opt/data"), Some(OsString::from("/opt/data")));
        // s6-overlay's dump: every value followed by one newline, which is not part of it.
        assert_eq!(value_of(b"/opt/data\n"), Some(OsString::from("/opt/data")));
        assert_eq!(value_of(b"line1\nline2\n"), Some(OsString::from("line1\nline2")));
        assert_eq!(value_of(b"two\n\n"), Some(OsString::from("two\n")));
        assert_eq!(value_of(b"a\0b\0"), Some(OsString::from("a\nb\n")));
        assert_eq!(value_of(b"a\0\n"), Some(OsString::from("a\n")));
        // A file of one newline is a set, empty value (not an unset).
        assert_eq!(value_of(b"\n"), Some(OsString::new()));
        assert_eq!(value_of(b"  spaced  "), Some(OsString::from("  spaced  ")));
        assert_eq!(value_of(b""), None);
        assert_eq!(value_of(b"\xff"), Some(OsString::from_vec(vec![0xff])));
    }

    #[test]
    fn reads_regular_files_only() {
        let t = tempfile::tempdir().unwrap();
        let root = RootPrefix::new(t.path());
        let report = Report::main_wrapper();
        assert_eq!(read(&root, &report).unwrap(), None, "missing directory");

        let d = t.path().join("run/s6/container_environment");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("HERMES_HOME"), "/srv/h").unwrap();
        std::fs::write(d.join("MULTI"), b"x\0y").unwrap();
        std::fs::write(d.join("EMPTY"), "").unwrap();
        std::fs::write(d.join(".DOT"), "no").unwrap();
        std::fs::write(d.join("A=B"), "no").unwrap();
        std::fs::create_dir(d.join("SUBDIR")).unwrap();
        std::os::unix::fs::symlink(d.join("HERMES_HOME"), d.join("LINKED")).unwrap();
        nix::unistd::mkfifo(&d.join("FIFO"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();

        let got = read(&root, &report).unwrap().unwrap();
        assert_eq!(
            got,
            vec![
                EnvFile {
                    name: "EMPTY".into(),
                    value: None
                },
                EnvFile {
                    name: "HERMES_HOME".into(),
                    value: Some("/srv/h".into())
                },
                EnvFile {
                    name: "MULTI".into(),
                    value: Some("x\ny".into())
                },
            ]
        );
        assert_eq!(report.warnings(), 0);
    }

    #[test]
    fn a_symlinked_directory_is_not_the_container_environment() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("elsewhere");
        std::fs::create_dir_all(&real).unwrap();
        std::fs::write(real.join("X"), "1").unwrap();
        std::fs::create_dir_all(t.path().join("run/s6")).unwrap();
        std::os::unix::fs::symlink(&real, t.path().join("run/s6/container_environment")).unwrap();
        assert_eq!(
            read(&RootPrefix::new(t.path()), &Report::main_wrapper()).unwrap(),
            None
        );
    }
}
