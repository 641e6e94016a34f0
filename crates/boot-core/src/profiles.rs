//! Profiles and the facts about the container that decide which gateways start (SPEC RP-02, RP-04, RP-09,
//! RP-10): profile names, the container's command line, the multiplex flag, and the listing of
//! `$HERMES_HOME/profiles`.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::FileType;
use saphyr_parser::{Event, Parser, ScalarStyle};

use crate::display::{display_bytes, display_path};
use crate::guarded::{Dir, Entry};
use crate::report::Report;
use crate::root::RootPrefix;

/// Longest profile name (RP-10): every name derived from it must fit NAME_MAX (255), the longest being
/// `.gateway-<p>.tmp.old`, where a replaced or unregistered slot waits for removal. The application
/// itself accepts 251 bytes; a profile of 239–251 gets one warning and no slot.
pub const MAX_PROFILE_NAME: usize = 255 - ".gateway-".len() - ".tmp.old".len();
/// The root profile's name; never a directory under `profiles/`.
pub const DEFAULT_PROFILE: &str = "default";

/// RP-10: non-empty, at most [`MAX_PROFILE_NAME`] (238) bytes, fully matching `[a-z0-9][a-z0-9_-]*`.
pub fn validate_profile_name(name: &[u8]) -> Result<(), String> {
    if name.is_empty() {
        return Err("profile name must not be empty".to_string());
    }
    if name.len() > MAX_PROFILE_NAME {
        return Err(format!(
            "profile name too long ({} > {MAX_PROFILE_NAME})",
            name.len()
        ));
    }
    let first_ok = name[0].is_ascii_lowercase() || name[0].is_ascii_digit();
    let rest_ok = name[1..]
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
    if !(first_ok && rest_ok) {
        return Err(format!(
            "profile name must match [a-z0-9][a-z0-9_-]*, got '{}'",
            display_bytes(name)
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// RP-02 container argv

fn basename(token: &[u8]) -> &[u8] {
    match token.iter().rposition(|b| *b == b'/') {
        Some(i) => &token[i + 1..],
        None => token,
    }
}

fn is_wrapper(token: &[u8]) -> bool {
    matches!(basename(token), b"main-wrapper" | b"main-wrapper.sh")
}

/// Splits a NUL-separated `cmdline` into its tokens.
pub fn split_cmdline(raw: &[u8]) -> Vec<Vec<u8>> {
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|b| *b == 0).map(<[u8]>::to_vec).collect()
}

/// The container's arguments as the user wrote them after the image's ENTRYPOINT (RP-02): through the
/// first `main-wrapper` token, else an `init` token 0, then a leading `entrypoint-dispatch.sh`, then a
/// leading `hermes`, are dropped.
pub fn strip_container_argv(argv: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut rest: &[Vec<u8>] = match argv.iter().position(|t| is_wrapper(t)) {
        Some(i) => &argv[i + 1..],
        None => match argv.first() {
            Some(t0) if basename(t0) == b"init" => &argv[1..],
            _ => argv,
        },
    };
    if rest
        .first()
        .is_some_and(|t| basename(t) == b"entrypoint-dispatch.sh")
    {
        rest = &rest[1..];
    }
    if rest.first().is_some_and(|t| basename(t) == b"hermes") {
        rest = &rest[1..];
    }
    rest.to_vec()
}

/// The first of the candidate argvs that has a `main-wrapper` token, else the empty argv (RP-02).
pub fn pick_container_argv(candidates: impl IntoIterator<Item = Vec<Vec<u8>>>) -> Vec<Vec<u8>> {
    candidates
        .into_iter()
        .find(|argv| argv.iter().any(|t| is_wrapper(t)))
        .unwrap_or_default()
}

/// Reads `/proc/1/cmdline`, then every numeric `/proc/<pid>/cmdline` in ascending pid order (under the
/// root prefix), and returns the stripped container argv (RP-02).
pub fn read_container_argv(root: &RootPrefix) -> Vec<Vec<u8>> {
    let read = |pid: u64| std::fs::read(root.path(format!("/proc/{pid}/cmdline"))).ok();
    let mut pids: Vec<u64> = std::fs::read_dir(root.path("/proc"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let n = e.file_name();
                    let b = n.as_bytes();
                    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
                        return None;
                    }
                    std::str::from_utf8(b).ok()?.parse().ok()
                })
                .filter(|pid| *pid != 1)
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    let candidates = std::iter::once(1)
        .chain(pids)
        .filter_map(read)
        .map(|raw| split_cmdline(&raw));
    strip_container_argv(&pick_container_argv(candidates))
}

/// RP-03: a dashboard container needs no per-profile gateways.
pub fn is_dashboard_container(stripped: &[Vec<u8>]) -> bool {
    stripped.first().is_some_and(|t| t == b"dashboard")
}

/// RP-05's argv condition: starts `gateway run` and has no `--no-supervise`.
pub fn is_legacy_gateway_run(stripped: &[Vec<u8>]) -> bool {
    stripped.len() >= 2
        && stripped[0] == b"gateway"
        && stripped[1] == b"run"
        && !stripped.iter().any(|t| t == b"--no-supervise")
}

/// T2 of SPEC 7.1: lower-cased `1 true yes`.
pub fn truthy_t2(value: Option<&OsStr>) -> bool {
    value
        .and_then(|v| v.to_str())
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

// ---------------------------------------------------------------------------------------------------
// RP-04 multiplex flag

/// T3 of SPEC 7.1: trimmed, case-insensitive `1 true yes on` → true, `0 false no off` → false, else
/// not recognised.
pub fn parse_t3(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// An integer as YAML 1.2's core schema reads a plain scalar (`01`, `+1`, `0x1`, `0o1`).
fn yaml_int(v: &str) -> Option<i128> {
    let (neg, digits) = match v.as_bytes().first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    };
    let n = if let Some(h) = v.strip_prefix("0x") {
        i128::from_str_radix(h, 16).ok()?
    } else if let Some(o) = v.strip_prefix("0o") {
        i128::from_str_radix(o, 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse::<i128>().ok()?
    } else {
        return None;
    };
    Some(if neg { -n } else { n })
}

/// Whether one YAML scalar means "on" for RP-04: a boolean, or a string or number in T3's truthy set.
fn scalar_is_true(v: &str, style: ScalarStyle) -> bool {
    if style == ScalarStyle::Plain {
        if let Some(n) = yaml_int(v) {
            return n == 1;
        }
    }
    parse_t3(v) == Some(true)
}

#[derive(Debug)]
enum Frame {
    Map { key: Option<String>, want_key: bool },
    Seq,
}

fn at_multiplex_key(stack: &[Frame]) -> bool {
    matches!(
        stack,
        [Frame::Map { key: Some(k1), want_key: false }, Frame::Map { key: Some(k2), want_key: false }]
            if k1 == "gateway" && k2 == "multiplex_profiles"
    )
}

fn node_done(stack: &mut [Frame], key_text: Option<String>) {
    if let Some(Frame::Map { key, want_key }) = stack.last_mut() {
        if *want_key {
            *key = key_text;
            *want_key = false;
        } else {
            *want_key = true;
        }
    }
}

/// `gateway.multiplex_profiles` of a config.yaml text (RP-04). The document is walked as a stream of
/// parser events, so aliases are never expanded (no "billion laughs") and deep nesting costs no stack.
/// Err: the text is not YAML.
pub fn multiplex_from_yaml(text: &str) -> Result<bool, String> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, bool> = HashMap::new();
    let mut result = false;
    let mut documents = 0u32;
    for item in Parser::new_from_str(text) {
        let (event, _) = item.map_err(|e| e.to_string())?;
        match event {
            Event::DocumentStart(_) => documents += 1,
            Event::Scalar(v, style, anchor, _) => {
                let value = scalar_is_true(&v, style);
                if anchor != 0 {
                    anchors.insert(anchor, value);
                }
                if documents == 1 && at_multiplex_key(&stack) {
                    result = value;
                }
                node_done(&mut stack, Some(v.into_owned()));
            }
            Event::Alias(id) => {
                if documents == 1 && at_multiplex_key(&stack) {
                    result = anchors.get(&id).copied().unwrap_or(false);
                }
                node_done(&mut stack, None);
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                if anchor != 0 {
                    anchors.insert(anchor, false);
                }
                if documents == 1 && at_multiplex_key(&stack) {
                    result = false;
                }
                stack.push(match event {
                    Event::MappingStart(..) => Frame::Map {
                        key: None,
                        want_key: true,
                    },
                    _ => Frame::Seq,
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                node_done(&mut stack, None);
            }
            _ => {}
        }
    }
    Ok(result)
}

/// Largest config.yaml that is read for the flag.
pub const CONFIG_LIMIT: u64 = 4 << 20;

/// The RP-04 flag: `GATEWAY_MULTIPLEX_PROFILES` when recognised, else `gateway.multiplex_profiles` of
/// `H/config.yaml` (missing → false; unreadable or unparsable → one warning, false).
pub fn multiplex_flag(env_value: Option<&OsStr>, home: Option<&Dir>, report: &Report) -> bool {
    if let Some(v) = env_value.and_then(|v| v.to_str()).and_then(parse_t3) {
        return v;
    }
    let Some(home) = home else {
        return false;
    };
    let file = home.child("config.yaml");
    let bytes = match home.read_regular("config.yaml", CONFIG_LIMIT) {
        Ok(Entry::Found(b)) => b,
        Ok(Entry::Missing) => return false,
        Ok(Entry::Symlink) => {
            report.warn_refusing("read", &file);
            return false;
        }
        Ok(Entry::Other(_)) => {
            report.warn(format_args!(
                "could not read {}: not a regular file; gateway.multiplex_profiles treated as false — continuing",
                display_path(&file)
            ));
            return false;
        }
        Err(e) => {
            report.warn_err(&e);
            return false;
        }
    };
    let parsed = std::str::from_utf8(&bytes)
        .map_err(|_| "not UTF-8".to_string())
        .and_then(multiplex_from_yaml);
    match parsed {
        Ok(v) => v,
        Err(why) => {
            report.warn(format_args!(
                "could not parse {}: {why}; gateway.multiplex_profiles treated as false — continuing",
                display_path(&file)
            ));
            false
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// RP-09 listing

/// A named profile that passed RP-09's checks, with its directory opened without following symlinks.
#[derive(Debug)]
pub struct Profile {
    pub name: String,
    pub dir: Dir,
}

/// Why an entry of `H/profiles` is not a profile, for the one warning RP-09 prints about it.
#[derive(Debug)]
pub enum ProfileProblem {
    /// The entry (or `profiles` itself) is a symlink.
    Symlink(std::path::PathBuf),
    /// `profiles/default/`: the name belongs to the root profile.
    Reserved(std::path::PathBuf),
    /// A name failing RP-10, with the validation message.
    Invalid(Vec<u8>, String),
    /// A system error while looking at the entry.
    Sys(crate::error::SysError),
}

impl ProfileProblem {
    /// Prints the problem's warning line.
    pub fn emit(&self, report: &Report) {
        match self {
            ProfileProblem::Symlink(path) => report.warn_refusing("profile", path),
            ProfileProblem::Reserved(path) => report.warn(format_args!(
                "ignoring {}/: the name default is reserved for the root profile",
                display_path(path)
            )),
            ProfileProblem::Invalid(name, msg) => {
                report.warn(format_args!("skipping profile {}: {msg}", display_bytes(name)))
            }
            ProfileProblem::Sys(e) => report.warn_err(e),
        }
    }

    /// Identifies the problem, so a watcher that rescans can warn once per problem, not once per scan.
    pub fn key(&self) -> String {
        match self {
            ProfileProblem::Symlink(p) => format!("symlink {}", display_path(p)),
            ProfileProblem::Reserved(p) => format!("reserved {}", display_path(p)),
            ProfileProblem::Invalid(n, m) => format!("invalid {} {m}", display_bytes(n)),
            ProfileProblem::Sys(e) => format!("error {e}"),
        }
    }
}

/// One looked-at entry of `H/profiles`; entries that are silently not profiles do not appear.
#[derive(Debug)]
pub enum Scanned {
    Profile(Profile),
    Problem(ProfileProblem),
}

/// The profiles of `H/profiles` in byte order of their names (RP-09). Non-directories and directories
/// without `SOUL.md` are skipped silently; a symlink, `default` and an invalid name each print one warning.
pub fn list_profiles(home: &Dir, report: &Report) -> Vec<Profile> {
    scan_profiles(home, |_| {})
        .into_iter()
        .filter_map(|s| match s {
            Scanned::Profile(p) => Some(p),
            Scanned::Problem(problem) => {
                problem.emit(report);
                None
            }
        })
        .collect()
}

/// RP-09's look at `H/profiles` without printing. `visit` sees every directory entry's descriptor
/// before its `SOUL.md` is looked for (a watcher adds its watch there, so a `SOUL.md` created right after
/// the look still produces an event).
pub fn scan_profiles(home: &Dir, mut visit: impl FnMut(&Dir)) -> Vec<Scanned> {
    let profiles = match home.subdir("profiles") {
        Ok(Entry::Found(d)) => d,
        Ok(Entry::Missing) | Ok(Entry::Other(_)) => return Vec::new(),
        Ok(Entry::Symlink) => {
            return vec![Scanned::Problem(ProfileProblem::Symlink(home.child("profiles")))];
        }
        Err(e) => return vec![Scanned::Problem(ProfileProblem::Sys(e))],
    };
    visit(&profiles);
    let entries = match profiles.list() {
        Ok(v) => v,
        Err(e) => return vec![Scanned::Problem(ProfileProblem::Sys(e))],
    };
    entries
        .into_iter()
        .filter_map(|(name, kind)| check_entry(&profiles, &name, kind, &mut visit))
        .collect()
}

fn check_entry(
    profiles: &Dir,
    name: &OsString,
    kind: FileType,
    visit: &mut impl FnMut(&Dir),
) -> Option<Scanned> {
    let path = profiles.child(name);
    if kind == FileType::Symlink {
        return Some(Scanned::Problem(ProfileProblem::Symlink(path)));
    }
    if kind != FileType::Directory && kind != FileType::Unknown {
        return None;
    }
    let dir = match profiles.subdir(name) {
        Ok(Entry::Found(d)) => d,
        Ok(Entry::Symlink) => return Some(Scanned::Problem(ProfileProblem::Symlink(path))),
        Ok(_) => return None,
        Err(e) => return Some(Scanned::Problem(ProfileProblem::Sys(e))),
    };
    visit(&dir);
    match dir.stat("SOUL.md") {
        Ok(Some(_)) => {}
        Ok(None) => return None,
        Err(e) => return Some(Scanned::Problem(ProfileProblem::Sys(e))),
    }
    let bytes = name.as_bytes();
    if bytes == DEFAULT_PROFILE.as_bytes() {
        return Some(Scanned::Problem(ProfileProblem::Reserved(path)));
    }
    if let Err(msg) = validate_profile_name(bytes) {
        return Some(Scanned::Problem(ProfileProblem::Invalid(bytes.to_vec(), msg)));
    }
    Some(Scanned::Profile(Profile {
        // Validated names are ASCII.
        name: String::from_utf8_lossy(bytes).into_owned(),
        dir,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<Vec<u8>> {
        s.split(' ')
            .filter(|t| !t.is_empty())
            .map(|t| t.as_bytes().to_vec())
            .collect()
    }
    fn strip(s: &str) -> String {
        strip_container_argv(&argv(s))
            .iter()
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn valid_profile_names() {
        for n in ["coder", "my-profile", "assistant_v2", "a", "0", "0abc"] {
            assert_eq!(validate_profile_name(n.as_bytes()), Ok(()), "{n}");
        }
        assert_eq!(validate_profile_name("a".repeat(238).as_bytes()), Ok(()));
    }

    #[test]
    fn invalid_profile_names_and_messages() {
        assert_eq!(
            validate_profile_name(b""),
            Err("profile name must not be empty".into())
        );
        assert_eq!(
            validate_profile_name("a".repeat(239).as_bytes()),
            Err("profile name too long (239 > 238)".into())
        );
        for n in [
            "Coder",
            "foo/bar",
            "../escape",
            "-leading-dash",
            "_leading_underscore",
            "with space",
            "name.with.dots",
        ] {
            assert_eq!(
                validate_profile_name(n.as_bytes()),
                Err(format!("profile name must match [a-z0-9][a-z0-9_-]*, got '{n}'")),
                "{n}"
            );
        }
        assert_eq!(
            validate_profile_name(b"caf\xff"),
            Err("profile name must match [a-z0-9][a-z0-9_-]*, got 'caf\\xff'".into())
        );
    }

    #[test]
    fn argv_shapes_of_rp02() {
        assert_eq!(
            strip("/init /opt/hermes/docker/bin/main-wrapper gateway run"),
            "gateway run"
        );
        assert_eq!(
            strip("/bin/sh -e /run/s6/basedir/scripts/rc.init top /opt/hermes/docker/bin/main-wrapper dashboard --host 0.0.0.0"),
            "dashboard --host 0.0.0.0"
        );
        assert_eq!(strip("gateway run"), "gateway run");
        assert_eq!(strip("/init main-wrapper.sh hermes dashboard"), "dashboard");
        assert_eq!(strip("/init gateway run"), "gateway run");
        assert_eq!(
            strip("/init /opt/hermes/docker/entrypoint-dispatch.sh hermes gateway run -p x"),
            "gateway run -p x"
        );
        // Only the first wrapper token counts; later tokens are the container's own.
        assert_eq!(strip("/init main-wrapper main-wrapper x"), "main-wrapper x");
        assert_eq!(strip(""), "");
    }

    #[test]
    fn first_argv_with_a_wrapper_token_is_taken() {
        let picked = pick_container_argv(vec![
            argv("s6-svscan -d4 -- /run/service"),
            argv("/bin/sh -e rc.init top /x/main-wrapper gateway run"),
            argv("/x/main-wrapper dashboard"),
        ]);
        assert_eq!(picked, argv("/bin/sh -e rc.init top /x/main-wrapper gateway run"));
        assert!(pick_container_argv(vec![argv("sleep 1")]).is_empty());
        assert_eq!(
            split_cmdline(b"a\0b c\0\0d\0"),
            vec![b"a".to_vec(), b"b c".to_vec(), vec![], b"d".to_vec()]
        );
        assert!(split_cmdline(b"").is_empty());
    }

    #[test]
    fn dashboard_and_legacy_decisions() {
        assert!(is_dashboard_container(&argv("dashboard --host x")));
        assert!(!is_dashboard_container(&argv("gateway run -p dashboard")));
        assert!(is_legacy_gateway_run(&argv("gateway run")));
        assert!(is_legacy_gateway_run(&argv("gateway run -v")));
        assert!(!is_legacy_gateway_run(&argv("gateway run --no-supervise")));
        assert!(!is_legacy_gateway_run(&argv("gateway status")));
        assert!(!is_legacy_gateway_run(&argv("gateway")));
        assert!(truthy_t2(Some(OsStr::new("TRUE"))));
        assert!(truthy_t2(Some(OsStr::new("Yes"))));
        assert!(!truthy_t2(Some(OsStr::new("on"))));
        assert!(!truthy_t2(None));
    }

    #[test]
    fn t3_values() {
        for v in ["1", "true", " TRUE ", "Yes", "on", "ON\n"] {
            assert_eq!(parse_t3(v), Some(true), "{v:?}");
        }
        for v in ["0", "false", "No", " off "] {
            assert_eq!(parse_t3(v), Some(false), "{v:?}");
        }
        for v in ["", "2", "enabled", "y"] {
            assert_eq!(parse_t3(v), None, "{v:?}");
        }
    }

    #[test]
    fn multiplex_from_config_yaml() {
        let t = |y: &str| multiplex_from_yaml(y).unwrap();
        assert!(t("gateway:\n  multiplex_profiles: true\n"));
        assert!(t("gateway:\n  multiplex_profiles: True\n"));
        assert!(t("gateway:\n  multiplex_profiles: yes\n"));
        assert!(t("gateway:\n  multiplex_profiles: \"on\"\n"));
        assert!(t("gateway:\n  multiplex_profiles: 1\n"));
        assert!(t("gateway: {multiplex_profiles: ' TRUE '}\n"));
        assert!(t(
            "model: x\ngateway:\n  other: [1, 2]\n  multiplex_profiles: true\nend: 1\n"
        ));
        assert!(!t("gateway:\n  multiplex_profiles: false\n"));
        assert!(!t("gateway:\n  multiplex_profiles: 2\n"));
        assert!(!t("gateway:\n  multiplex_profiles: 1.0\n"));
        assert!(!t("gateway:\n  multiplex_profiles:\n"));
        assert!(!t("gateway:\n  multiplex_profiles: [true]\n"));
        assert!(!t("gateway:\n  multiplex_profiles: {a: true}\n"));
        assert!(!t("multiplex_profiles: true\n"), "top-level key is not the flag");
        assert!(
            !t("other:\n  gateway:\n    multiplex_profiles: true\n"),
            "only the top-level gateway"
        );
        assert!(!t("- gateway\n- true\n"));
        assert!(!t(""));
        assert!(!t("just a string\n"));
        // The last duplicate wins, as in a YAML loader.
        assert!(t(
            "gateway:\n  multiplex_profiles: false\n  multiplex_profiles: true\n"
        ));
        // Aliases resolve to their anchored scalar without being expanded.
        assert!(t("x: &on yes\ngateway:\n  multiplex_profiles: *on\n"));
        assert!(!t("x: &m {a: 1}\ngateway:\n  multiplex_profiles: *m\n"));
    }

    #[test]
    fn unparsable_yaml_is_an_error() {
        assert!(multiplex_from_yaml("gateway: [unclosed\n").is_err());
        assert!(multiplex_from_yaml("a: b: c\n").is_err());
        assert!(multiplex_from_yaml("x: *undefined\n").is_err());
    }

    #[test]
    fn deeply_nested_yaml_does_not_overflow() {
        let mut y = String::from("gateway:\n  multiplex_profiles: true\nx: ");
        y.push_str(&"[".repeat(10_000));
        y.push_str(&"]".repeat(10_000));
        y.push('\n');
        // The parser's own nesting limit answers with an error, which RP-04 turns into a warning.
        let err = multiplex_from_yaml(&y).unwrap_err();
        assert!(err.contains("recursion limit"), "{err}");
    }

    fn home_with(config: Option<&[u8]>) -> (tempfile::TempDir, Dir) {
        let t = tempfile::tempdir().unwrap();
        if let Some(c) = config {
            std::fs::write(t.path().join("config.yaml"), c).unwrap();
        }
        let d = Dir::open_anchor(&RootPrefix::none(), t.path())
            .unwrap()
            .found()
            .unwrap();
        (t, d)
    }

    #[test]
    fn environment_overrides_config_in_both_directions() {
        let r = Report::reconcile(false);
        let (_t, on) = home_with(Some(b"gateway:\n  multiplex_profiles: true\n"));
        let (_u, off) = home_with(Some(b"gateway:\n  multiplex_profiles: false\n"));
        assert!(multiplex_flag(None, Some(&on), &r));
        assert!(!multiplex_flag(None, Some(&off), &r));
        assert!(!multiplex_flag(Some(OsStr::new(" Off ")), Some(&on), &r));
        assert!(!multiplex_flag(Some(OsStr::new("0")), Some(&on), &r));
        assert!(multiplex_flag(Some(OsStr::new("YES")), Some(&off), &r));
        assert!(multiplex_flag(Some(OsStr::new("on")), Some(&off), &r));
        // Unrecognised values fall through to the file.
        assert!(multiplex_flag(Some(OsStr::new("maybe")), Some(&on), &r));
        assert!(!multiplex_flag(Some(OsStr::new("")), Some(&off), &r));
        assert_eq!(r.warnings(), 0);
    }

    #[test]
    fn missing_config_is_false_and_broken_config_warns() {
        let r = Report::reconcile(false);
        let (_t, none) = home_with(None);
        assert!(!multiplex_flag(None, Some(&none), &r));
        assert_eq!(r.warnings(), 0);
        let (_u, broken) = home_with(Some(b"gateway: [\n"));
        assert!(!multiplex_flag(None, Some(&broken), &r));
        assert_eq!(r.warnings(), 1);
        let (_v, binary) = home_with(Some(b"gateway:\n  multiplex_profiles: \xff\n"));
        assert!(!multiplex_flag(None, Some(&binary), &r));
        assert_eq!(r.warnings(), 2);
        let (w, link) = home_with(None);
        std::fs::write(
            w.path().join("real.yaml"),
            b"gateway:\n  multiplex_profiles: true\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(w.path().join("real.yaml"), w.path().join("config.yaml")).unwrap();
        assert!(
            !multiplex_flag(None, Some(&link), &r),
            "a symlinked config.yaml is not followed"
        );
        assert_eq!(r.warnings(), 3);
    }
}
