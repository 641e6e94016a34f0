//! Where `auth.json` lives and how it gets there: the credential residence (S2-24), the create-only
//! bootstrap (S2-25) and the Nous session re-bootstrap helper (S2-26).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::atomic::{self, Created};
use crate::display::display_path;
use crate::guarded::{Dir, Entry};
use crate::handover::{hand_over_dir, hand_over_entry};
use crate::report::Change;

use super::app_helpers::{image_path_exists, run_helper};
use super::home::make_image_dirs;
use super::Ctx;

pub const AUTH_HOME_VAR: &str = "HERMES_AUTH_HOME";
pub const CONTAINER_ENV_DIR: &str = "/run/s6/container_environment";
pub const REBOOTSTRAP_SCRIPT: &str = "/opt/hermes/scripts/docker_rebootstrap_nous_session.py";
const AUTH_FILE: &str = "auth.json";

/// Where S2-25 and S2-26 look for `auth.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Residence {
    /// `HERMES_AUTH_HOME` is set but invalid: nothing is seeded anywhere.
    Nowhere,
    /// Unset: the residence is H.
    Home,
    /// Set and valid: `rd` is AH or `AH/profiles/<name>`.
    AuthHome { ah: PathBuf, rd: PathBuf },
}

/// Why a `HERMES_AUTH_HOME` value is invalid, or `None` when it is valid (S2-24).
pub fn auth_home_problem(v: &[u8]) -> Option<&'static str> {
    if v.is_empty() {
        return Some("empty");
    }
    if v.iter().any(|b| b.is_ascii_control()) {
        return Some("contains a control character");
    }
    if v.first().is_some_and(|b| b.is_ascii_whitespace()) || v.last().is_some_and(|b| b.is_ascii_whitespace())
    {
        return Some("leading or trailing whitespace");
    }
    if v.starts_with(b"~") {
        return Some("starts with ~");
    }
    if !v.starts_with(b"/") {
        return Some("not an absolute path");
    }
    if v.split(|b| *b == b'/').any(|c| c == b"." || c == b"..") {
        return Some("contains a . or .. component");
    }
    if v.iter().all(|b| *b == b'/') {
        return Some("is the root directory");
    }
    None
}

/// RD for a valid AH: AH itself, or `AH/profiles/<name>` when H is a named profile's home (its parent
/// directory is named `profiles`).
pub fn residence_dir(ah: &Path, home: &Path) -> PathBuf {
    let parent_is_profiles = home.parent().and_then(|p| p.file_name()) == Some(OsStr::new("profiles"));
    match (parent_is_profiles, home.file_name()) {
        (true, Some(name)) => ah.join("profiles").join(name),
        _ => ah.to_path_buf(),
    }
}

/// `HERMES_AUTH_HOME` from the environment, else from the container environment directory (with-contenv
/// drops empty values, so a file there counts as set).
fn auth_home_value(ctx: &Ctx) -> Option<OsString> {
    if let Some(v) = ctx.env_os(AUTH_HOME_VAR) {
        return Some(v);
    }
    let file = format!("{CONTAINER_ENV_DIR}/{AUTH_HOME_VAR}");
    crate::guarded::read_image_file(ctx.root, &file, crate::guarded::IMAGE_FILE_LIMIT)
        .ok()
        .flatten()
        .and_then(|content| crate::container_env::value_of(&content))
}

/// Collapses repeated slashes and drops a trailing one (the value is already known to be valid).
fn normalize(v: &OsStr) -> PathBuf {
    let mut out = Vec::with_capacity(v.len());
    for &b in v.as_bytes() {
        if b == b'/' && out.last() == Some(&b'/') {
            continue;
        }
        out.push(b);
    }
    if out.len() > 1 && out.last() == Some(&b'/') {
        out.pop();
    }
    PathBuf::from(OsString::from_vec(out))
}

/// S2-24. Decides the residence and, as root with a valid AH, repairs the owners of what is there.
pub fn credential_residence(ctx: &Ctx) -> Residence {
    let Some(value) = auth_home_value(ctx) else {
        return Residence::Home;
    };
    if let Some(reason) = auth_home_problem(value.as_bytes()) {
        ctx.report.warn(format_args!(
            "ignoring invalid HERMES_AUTH_HOME ({reason}); auth.json is not seeded anywhere — continuing"
        ));
        return Residence::Nowhere;
    }
    let ah = normalize(&value);
    let rd = residence_dir(&ah, &ctx.home);
    if ctx.is_root {
        warm_repair(ctx, &ah, &rd);
    }
    Residence::AuthHome { ah, rd }
}

fn is_rd_file(name: &[u8]) -> bool {
    matches!(
        name,
        b"auth.json" | b"auth.lock" | b"auth.json.corrupt" | b".anthropic_oauth.json"
    ) || name.starts_with(b"auth.json.tmp.")
        || name.starts_with(b".anthropic_oauth.tmp.")
        || (name.starts_with(b"..anthropic_oauth_") && name.ends_with(b".tmp") && name.len() >= 22)
}

fn is_shared_file(name: &[u8]) -> bool {
    name == b"nous_auth.json" || name.starts_with(b"nous_auth.json.tmp.")
}

/// Chowns the files of `dir` selected by `pick` to u:g, never following a symlink.
fn chown_files(ctx: &Ctx, dir: &Dir, pick: impl Fn(&[u8]) -> bool) {
    let names = match dir.list() {
        Ok(n) => n,
        Err(e) => return ctx.report.warn_err(&e),
    };
    for (name, _) in names.iter().filter(|(n, _)| pick(n.as_bytes())) {
        chown_one(ctx, dir, name);
    }
}

fn chown_one(ctx: &Ctx, dir: &Dir, name: &OsStr) {
    match dir.stat(name) {
        Ok(Some(m)) if m.is_symlink() => ctx.report.warn_refusing("chown", &dir.child(name)),
        Ok(Some(m)) => {
            if let Err(e) = hand_over_entry(dir, ctx.report, name, &m, &ctx.handover) {
                ctx.report.warn_err(&e);
            }
        }
        Ok(None) => {}
        Err(e) => ctx.report.warn_err(&e),
    }
}

/// Opens `name` below `parent` for the warm repair; a symlink is refused.
fn open_sub(ctx: &Ctx, parent: &Dir, name: &OsStr) -> Option<Dir> {
    match parent.subdir(name) {
        Ok(Entry::Found(d)) => Some(d),
        Ok(Entry::Symlink) => {
            ctx.report.warn_refusing("chown", &parent.child(name));
            None
        }
        Ok(_) => None,
        Err(e) => {
            ctx.report.warn_err(&e);
            None
        }
    }
}

/// Gives the directory to u:g when the repair may ([`crate::handover`]); `false` when it kept its owner,
/// and then nothing in it is handed over either.
fn chown_dir(ctx: &Ctx, d: &Dir) -> bool {
    match hand_over_dir(d, ctx.report, &ctx.handover) {
        Ok(allowed) => allowed,
        Err(e) => {
            ctx.report.warn_err(&e);
            true
        }
    }
}

/// The non-recursive owner repair of S2-24 below AH.
fn warm_repair(ctx: &Ctx, ah: &Path, rd: &Path) {
    let ahd = match Dir::open_anchor(ctx.root, ah) {
        Ok(Entry::Found(d)) => d,
        Ok(Entry::Symlink) => return ctx.report.warn_refusing("chown", ah),
        Ok(_) => return,
        Err(e) => return ctx.report.warn_err(&e),
    };
    if !chown_dir(ctx, &ahd) {
        return;
    }
    let named = rd != ah;
    let rdd = if named {
        let Some(profiles) = open_sub(ctx, &ahd, OsStr::new("profiles")) else {
            return shared_repair(ctx, &ahd);
        };
        if !chown_dir(ctx, &profiles) {
            return shared_repair(ctx, &ahd);
        }
        let Some(name) = rd.file_name() else { return };
        let sub = open_sub(ctx, &profiles, name);
        chown_one(ctx, &ahd, OsStr::new(AUTH_FILE));
        sub
    } else {
        match ahd.fd().try_clone_to_owned() {
            Ok(fd) => Some(Dir::from_fd(fd, ah)),
            Err(_) => None,
        }
    };
    if let Some(rdd) = rdd {
        if !named || chown_dir(ctx, &rdd) {
            chown_files(ctx, &rdd, is_rd_file);
        }
    }
    shared_repair(ctx, &ahd);
}

fn shared_repair(ctx: &Ctx, ahd: &Dir) {
    if let Some(shared) = open_sub(ctx, ahd, OsStr::new("shared")) {
        if chown_dir(ctx, &shared) {
            chown_files(ctx, &shared, is_shared_file);
        }
    }
}

/// Opens RD without creating anything. `Ok(None)` when it does not exist; `Err(())` after a refusal
/// (`action`) or error.
fn open_residence(ctx: &Ctx, residence: &Residence, action: &str) -> Result<Option<Dir>, ()> {
    match residence {
        Residence::Nowhere => Err(()),
        Residence::Home => match &ctx.home_dir {
            Some(h) => match h.fd().try_clone_to_owned() {
                Ok(fd) => Ok(Some(Dir::from_fd(fd, h.path()))),
                Err(_) => Err(()),
            },
            None => Err(()),
        },
        Residence::AuthHome { ah, rd } => {
            let ahd = match Dir::open_anchor(ctx.root, ah) {
                Ok(Entry::Found(d)) => d,
                Ok(Entry::Symlink) => {
                    ctx.report.warn_refusing(action, ah);
                    return Err(());
                }
                Ok(Entry::Missing) => return Ok(None),
                Ok(Entry::Other(_)) => return Err(()),
                Err(e) => {
                    ctx.report.warn_err(&e);
                    return Err(());
                }
            };
            let rel = rd.strip_prefix(ah).unwrap_or(Path::new(""));
            match ahd.open_path(rel) {
                Ok((Entry::Found(d), _)) => Ok(Some(d)),
                Ok((Entry::Symlink, at)) => {
                    ctx.report.warn_refusing(action, &at);
                    Err(())
                }
                Ok((Entry::Missing, _)) => Ok(None),
                Ok(_) => Err(()),
                Err(e) => {
                    ctx.report.warn_err(&e);
                    Err(())
                }
            }
        }
    }
}

/// Creates the missing directories from AH down to RD, owned u:g with mode 0700 (missing parents of AH
/// root 0755). `None` after a warning, or in a dry run.
fn create_residence(ctx: &Ctx, ah: &Path, rd: &Path) -> Option<Dir> {
    const ACTION: &str = "credential residence creation";
    let report = ctx.report;
    let (Some(ah_parent), Some(ah_name)) = (ah.parent(), ah.file_name()) else {
        return None;
    };
    match make_image_dirs(ctx.root, report, ah_parent) {
        Ok(true) => {
            let change = Change::made("create directory", ah, 0o700).owned_by(ctx.new_file_owner());
            report.plan_only(change);
            return None;
        }
        Ok(false) => {}
        Err(e) => {
            report.warn_err(&e);
            return None;
        }
    }
    let parent = match Dir::open_anchor(ctx.root, ah_parent) {
        Ok(Entry::Found(d)) => d,
        Ok(_) => return None,
        Err(e) => {
            report.warn_err(&e);
            return None;
        }
    };
    let ahd = match parent.make_path(report, Path::new(ah_name), 0o700, ctx.new_file_owner()) {
        Ok((Entry::Found(d), _)) => d,
        Ok((Entry::Symlink, at)) => {
            report.warn_refusing(ACTION, &at);
            return None;
        }
        Ok(_) => return None,
        Err(e) => {
            report.warn_err(&e);
            return None;
        }
    };
    let rel = rd.strip_prefix(ah).unwrap_or(Path::new(""));
    match ahd.make_path(report, rel, 0o700, ctx.new_file_owner()) {
        Ok((Entry::Found(d), _)) => Some(d),
        Ok((Entry::Symlink, at)) => {
            report.warn_refusing(ACTION, &at);
            None
        }
        Ok(_) => None,
        Err(e) => {
            report.warn_err(&e);
            None
        }
    }
}

/// S2-25. `HERMES_AUTH_JSON_BOOTSTRAP` becomes RF, verbatim, when RF does not exist. Never replaces.
pub fn auth_json_bootstrap(ctx: &Ctx, residence: &Residence) {
    let Some(value) = ctx.env_non_empty("HERMES_AUTH_JSON_BOOTSTRAP") else {
        return;
    };
    let name = OsStr::new(AUTH_FILE);
    let rdd = match open_residence(ctx, residence, "credential residence creation") {
        Ok(Some(d)) => d,
        Ok(None) => {
            let Residence::AuthHome { ah, rd } = residence else {
                return;
            };
            match create_residence(ctx, ah, rd) {
                Some(d) => d,
                None => {
                    let change = Change::made("create", rd.join(name), 0o600).owned_by(ctx.new_file_owner());
                    return ctx.report.plan_only(change);
                }
            }
        }
        Err(()) => return,
    };
    match rdd.stat(name) {
        Ok(Some(m)) if m.is_symlink() => return ctx.report.warn_refusing("seed", &rdd.child(name)),
        Ok(Some(_)) => return,
        Ok(None) => {}
        Err(e) => return ctx.report.warn_err(&e),
    }
    match atomic::create_exclusive(
        &rdd,
        ctx.report,
        name,
        value.as_bytes(),
        0o600,
        ctx.new_file_owner(),
    ) {
        Ok(Created::Created) => ctx.report.info_made(format_args!(
            "Seeded {} from HERMES_AUTH_JSON_BOOTSTRAP",
            display_path(&rdd.child(name))
        )),
        Ok(_) => {}
        Err(e) => ctx.report.warn_err(&e),
    }
}

/// S2-26. The helper decides whether to replace the Nous session; stage2-setup never writes RF here.
pub fn nous_rebootstrap(ctx: &Ctx, residence: &Residence) {
    if ctx.env_non_empty("HERMES_AUTH_JSON_REBOOTSTRAP").is_none() {
        return;
    }
    let Ok(Some(rdd)) = open_residence(ctx, residence, "reseed") else {
        return;
    };
    let name = OsStr::new(AUTH_FILE);
    match rdd.stat(name) {
        Ok(Some(m)) if m.is_symlink() => return ctx.report.warn_refusing("reseed", &rdd.child(name)),
        Ok(Some(m)) if m.is_file() => {}
        Ok(_) => return,
        Err(e) => return ctx.report.warn_err(&e),
    }
    if !image_path_exists(ctx, REBOOTSTRAP_SCRIPT) {
        return;
    }
    let rf: OsString = rdd.child(name).into_os_string();
    if let Some(st) = run_helper(ctx, REBOOTSTRAP_SCRIPT, &[rf]) {
        if !st.success() {
            ctx.report.warn(format_args!(
                "docker_rebootstrap_nous_session.py failed ({st}); continuing"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_home_validation_table() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"/srv/auth", None),
            (b"/srv//auth/", None),
            (b"/a", None),
            (b"", Some("empty")),
            (b"relative/dir", Some("not an absolute path")),
            (b"~/auth", Some("starts with ~")),
            (b"~", Some("starts with ~")),
            (b" /srv/auth", Some("leading or trailing whitespace")),
            (b"/srv/auth ", Some("leading or trailing whitespace")),
            (b"/srv/a\nb", Some("contains a control character")),
            (b"/srv/a\tb", Some("contains a control character")),
            (b"/srv/\x7f", Some("contains a control character")),
            (b"/srv/./auth", Some("contains a . or .. component")),
            (b"/srv/../auth", Some("contains a . or .. component")),
            (b"/srv/auth/..", Some("contains a . or .. component")),
            (b"/srv/auth/.", Some("contains a . or .. component")),
            (b"/", Some("is the root directory")),
            (b"//", Some("is the root directory")),
            (b"///", Some("is the root directory")),
            (b"/srv/.hidden", None),
            (b"/srv/a..b", None),
        ];
        for (v, want) in cases {
            assert_eq!(auth_home_problem(v), *want, "{}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn residence_is_per_profile_only_for_named_profile_homes() {
        let ah = Path::new("/auth");
        assert_eq!(residence_dir(ah, Path::new("/opt/data")), PathBuf::from("/auth"));
        assert_eq!(
            residence_dir(ah, Path::new("/opt/data/profiles/work")),
            PathBuf::from("/auth/profiles/work")
        );
        assert_eq!(residence_dir(ah, Path::new("/profiles")), PathBuf::from("/auth"));
    }

    #[test]
    fn normalize_collapses_slashes() {
        assert_eq!(normalize(OsStr::new("//srv///auth/")), PathBuf::from("/srv/auth"));
    }

    #[test]
    fn residence_file_patterns() {
        for yes in [
            &b"auth.json"[..],
            b"auth.lock",
            b"auth.json.corrupt",
            b".anthropic_oauth.json",
            b"auth.json.tmp.123",
            b".anthropic_oauth.tmp.x",
            b"..anthropic_oauth_abc.tmp",
        ] {
            assert!(is_rd_file(yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in [
            &b"auth.json.rebootstrap.tmp"[..],
            b"other",
            b"auth.jsonx",
            b"..anthropic_oauth_x",
        ] {
            assert!(!is_rd_file(no), "{}", String::from_utf8_lossy(no));
        }
        assert!(is_shared_file(b"nous_auth.json"));
        assert!(is_shared_file(b"nous_auth.json.tmp.9"));
        assert!(!is_shared_file(b"nous_auth.jsonx"));
    }
}
