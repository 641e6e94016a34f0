//! The passwd and group entries of a run without root whose ids the image's account files do not know
//! (`--user 1000170000:0` on OpenShift, any `runAsUser`).
//!
//! `getpwuid` must name the process's uid for the application, `whoami`, git and ssh. `/etc/passwd` is
//! root's (and read-only with `--read-only`), and making it writable for such a user would hand it every
//! account's entry. So the image's NSS reads a second source, `libnss-extrausers`, whose directory
//! `/var/lib/extrausers` is a root-owned symlink to [`NSS_DIR`] in `/run`. There the run writes one
//! entry for its own ids and nothing else. The image has no set-user-id program that consults NSS
//! (their bits are removed at build time; `s6-overlay-suexec` runs only as PID 1 before this step), so
//! whatever the user writes there is believed only by the user's own processes.
//!
//! A root run never writes here: [`secure_run_dir`] makes `/run` root's `0755` first, so the runtime
//! user cannot create the directory either.

use std::ffi::OsStr;
use std::path::Path;

use crate::accounts::{self, Account};
use crate::anchor;
use crate::atomic;
use crate::display::display_bytes;
use crate::error::SysError;
use crate::guarded::{Dir, Entry};
use crate::report::Report;
use crate::root::RootPrefix;

/// Where `/var/lib/extrausers` points.
pub const NSS_DIR: &str = "/run/hermes-boot/nss";
/// The login shell of the written entry.
const SHELL: &str = "/bin/sh";

/// The passwd and group lines a run as `account` needs beyond the image's files: a passwd line when no
/// entry has its uid, a group line when no group has its gid. Names come from the runtime user, so
/// `whoami` says `hermes` whatever uid the platform chose.
pub fn missing_entries(passwd: &[u8], group: &[u8], account: &Account) -> (Option<String>, Option<String>) {
    let has_uid = accounts::parse_passwd(passwd)
        .iter()
        .any(|e| e.uid == account.uid);
    let has_gid = accounts::parse_group(group).iter().any(|g| g.gid == account.gid);
    let name = &account.name;
    let user = (!has_uid).then(|| {
        format!(
            "{name}:x:{}:{}:{name}:{}:{SHELL}\n",
            account.uid,
            account.gid,
            display_bytes(account.home.as_os_str().as_encoded_bytes())
        )
    });
    let group = (!has_gid).then(|| format!("{name}:x:{}:\n", account.gid));
    (user, group)
}

/// Writes the entries [`missing_entries`] finds into [`NSS_DIR`] (a run without root only), with one line
/// saying which. Failures warn and the boot goes on: only name lookups are affected.
pub fn publish(root: &RootPrefix, report: &Report, account: &Account) {
    let read = |path| accounts::read_image_file(root, path).unwrap_or_default();
    let (user, group) = missing_entries(&read(accounts::PASSWD), &read(accounts::GROUP), account);
    if user.is_none() && group.is_none() {
        return;
    }
    if let Err(e) = write_entries(root, report, user.as_deref(), group.as_deref()) {
        report.warn(format_args!(
            "{e}; uid {} has no passwd entry (whoami and ~ lookups fail) — continuing",
            account.uid
        ));
        return;
    }
    report.info_made(format_args!(
        "Added passwd entry {}:{} for uid {} in {NSS_DIR}",
        account.name, account.gid, account.uid
    ));
}

fn write_entries(
    root: &RootPrefix,
    report: &Report,
    user: Option<&str>,
    group: Option<&str>,
) -> Result<(), SysError> {
    let dir = match anchor::resolve(root, Path::new(NSS_DIR), Some(report))? {
        (Entry::Found(d), _) => d,
        (Entry::Missing, _) => return Ok(()), // dry run: reported by resolve
        (_, at) => return Err(SysError::refused("create", &at, "not a directory")),
    };
    // Both files always, so a stale one from an earlier boot of the same container never survives.
    write(&dir, report, "passwd", user.unwrap_or(""))?;
    write(&dir, report, "group", group.unwrap_or(""))
}

fn write(dir: &Dir, report: &Report, name: &str, content: &str) -> Result<(), SysError> {
    atomic::replace(dir, report, OsStr::new(name), content.as_bytes(), 0o644, None)
}

/// A root run: `/run` (and so everything the boot makes there) is root's `root:root 0755`.
///
/// The image ships `/run` as `root:nogroup 3777` so that s6-overlay's preinit accepts it for any run
/// without root and without a set-user-id `s6-overlay-suexec` (`no-new-privileges`, `--cap-drop ALL`):
/// world-writable and sticky passes its single-uid check for every gid but `/run`'s own, setgid passes it
/// for that one, and a group other than 0 keeps a gid-0 run (OpenShift) off the gid-0 check, which
/// refuses a world-writable `/run`. main-wrapper calls this as PID 1 before `/init`, so nothing root
/// makes there inherits the group; stage2 calls it again for a boot without `/init`.
pub fn secure_run_dir(root: &RootPrefix, report: &Report) {
    let run = match Dir::open_anchor(root, Path::new("/run")) {
        Ok(Entry::Found(d)) => d,
        Ok(_) => return,
        Err(e) => return report.warn_err(&e),
    };
    let meta = match run.meta() {
        Ok(m) => m,
        Err(e) => return report.warn_err(&e),
    };
    if meta.uid != 0 || (meta.perm & 0o7022 == 0 && meta.gid == 0) {
        return;
    }
    let result = run
        .chmod_self(report, meta.perm & !0o7022)
        .and_then(|_| run.chown_self(report, crate::owner::Owner::ROOT));
    match result {
        // A read-only root without a tmpfs on /run: s6-overlay mounts its own there.
        Err(e) if e.errno == nix::errno::Errno::EROFS => {}
        Err(e) => report.warn_err(&e),
        Ok(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn account(uid: u32, gid: u32) -> Account {
        Account {
            name: "hermes".into(),
            uid,
            gid,
            home: PathBuf::from("/opt/data"),
            member_of: vec![],
        }
    }

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/sh\nhermes:x:10000:10000::/opt/data:/bin/sh\n";
    const GROUP: &[u8] = b"root:x:0:\nhermes:x:10000:\n";

    #[test]
    fn openshift_uid_gets_a_user_line_and_keeps_group_root() {
        let (u, g) = missing_entries(PASSWD, GROUP, &account(1000170000, 0));
        assert_eq!(
            u.as_deref(),
            Some("hermes:x:1000170000:0:hermes:/opt/data:/bin/sh\n")
        );
        assert_eq!(g, None);
    }

    #[test]
    fn unknown_gid_gets_a_group_line() {
        let (u, g) = missing_entries(PASSWD, GROUP, &account(1234, 5678));
        assert!(u.unwrap().starts_with("hermes:x:1234:5678:"));
        assert_eq!(g.as_deref(), Some("hermes:x:5678:\n"));
    }

    #[test]
    fn the_image_ids_need_nothing() {
        assert_eq!(
            missing_entries(PASSWD, GROUP, &account(10000, 10000)),
            (None, None)
        );
        assert_eq!(missing_entries(PASSWD, GROUP, &account(10000, 0)), (None, None));
    }
}
