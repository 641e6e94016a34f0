//! The runtime user (SPEC CM-03), read by parsing `/etc/passwd` and `/etc/group` directly.
//!
//! NSS is deliberately not used: the programs must see the files under the `--root` prefix, and they must
//! see edits made a moment ago by this same process (a remap) without any cache in between.

use std::path::PathBuf;

use crate::account_line;
use crate::error::{SysError, SysResult};
use crate::root::RootPrefix;

/// Environment variable naming the runtime user.
pub const ENV_USER: &str = "HERMES_BOOT_USER";
pub const DEFAULT_USER: &str = "hermes";
pub const PASSWD: &str = "/etc/passwd";
pub const GROUP: &str = "/etc/group";

/// One well-formed `/etc/passwd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// One well-formed `/etc/group` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The runtime user as the account files currently record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    /// gids of every group that lists the user as a member, in file order, without duplicates.
    pub member_of: Vec<u32>,
}

impl Account {
    /// The drop set of MW-11: the primary gid plus every group listing the user, primary first.
    pub fn group_set(&self) -> Vec<u32> {
        let mut v = vec![self.gid];
        for g in &self.member_of {
            if !v.contains(g) {
                v.push(*g);
            }
        }
        v
    }
}

/// The runtime user of a run without root (`--user UID:GID`, a Kubernetes `runAsUser`, OpenShift's
/// arbitrary uid with gid 0): the process's own ids and supplementary groups under the runtime user's
/// name and home. Without root nothing can be remapped and there is no more privileged user to protect,
/// so these ids are the ones every program uses, whatever passwd records for the name.
pub fn unprivileged(account: Account) -> Account {
    let (uid, gid) = (crate::guarded::euid(), crate::guarded::egid());
    let mut member_of: Vec<u32> = nix::unistd::getgroups()
        .map(|gs| gs.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default();
    member_of.retain(|g| *g != gid);
    member_of.dedup();
    Account {
        uid,
        gid,
        member_of,
        ..account
    }
}

/// `--runtime-user`, else `HERMES_BOOT_USER`, else `hermes`.
pub fn runtime_user_name(arg: Option<String>, env_value: Option<&std::ffi::OsStr>) -> String {
    // A non-UTF-8 value is kept visible (as `\xNN`) so the lookup fails naming it, instead of silently
    // falling back to the default user.
    arg.filter(|s| !s.is_empty())
        .or_else(|| {
            env_value
                .map(|v| crate::display::display_bytes(std::os::unix::ffi::OsStrExt::as_bytes(v)))
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_USER.to_string())
}

/// The accounts of `/etc/passwd`, in file order ([`crate::account_line`] says which lines count).
pub fn parse_passwd(text: &[u8]) -> Vec<PasswdEntry> {
    account_line::lines(text)
        .into_iter()
        .filter_map(account_line::passwd)
        .map(|p| PasswdEntry {
            name: p.name.to_string(),
            uid: p.uid,
            gid: p.gid,
            home: PathBuf::from(p.home),
        })
        .collect()
}

/// The groups of `/etc/group`, in file order.
pub fn parse_group(text: &[u8]) -> Vec<GroupEntry> {
    account_line::lines(text)
        .into_iter()
        .filter_map(account_line::group)
        .map(|g| GroupEntry {
            name: g.name.to_string(),
            gid: g.gid,
            members: account_line::members(g.members).map(str::to_string).collect(),
        })
        .collect()
}

/// Builds the account of `name` from already-read file contents; `None` when passwd has no such user.
pub fn account_from(passwd: &[u8], group: &[u8], name: &str) -> Option<Account> {
    let p = parse_passwd(passwd).into_iter().find(|e| e.name == name)?;
    let mut member_of = Vec::new();
    for g in parse_group(group) {
        if g.members.iter().any(|m| m == name) && !member_of.contains(&g.gid) {
            member_of.push(g.gid);
        }
    }
    Some(Account {
        name: p.name,
        uid: p.uid,
        gid: p.gid,
        home: p.home,
        member_of,
    })
}

/// Reads an image file (under the root prefix). `/etc` is root's, so plain path reads are fine here.
pub fn read_image_file(root: &RootPrefix, path: &str) -> SysResult<Vec<u8>> {
    crate::guarded::read_image_file(root, path, crate::guarded::IMAGE_FILE_LIMIT)?
        .ok_or_else(|| SysError::new("read", path, nix::errno::Errno::ENOENT))
}

/// Looks the runtime user up. `Ok(None)`: passwd is readable but has no such user. A missing
/// `/etc/group` is treated as empty (the user then has no supplementary groups).
pub fn lookup(root: &RootPrefix, name: &str) -> SysResult<Option<Account>> {
    let passwd = read_image_file(root, PASSWD)?;
    let group = match read_image_file(root, GROUP) {
        Ok(g) => g,
        Err(e) if e.errno == nix::errno::Errno::ENOENT => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(account_from(&passwd, &group, name))
}

/// `runtime user hermes: uid 10000, gid 10000(hermes), groups 44(video),998(hostgid998)`: the account's
/// ids with the names `/etc/group` (under the prefix) gives them. The boot prints it once per boot and the
/// doctor reports it, so both say the same.
pub fn describe(root: &RootPrefix, account: &Account) -> String {
    let group = read_image_file(root, GROUP).unwrap_or_default();
    let named = |gid: u32| match crate::account_db::group_name_of(&group, gid) {
        Some(name) => format!("{gid}({name})"),
        None => gid.to_string(),
    };
    let others: Vec<String> = account.group_set().into_iter().skip(1).map(named).collect();
    format!(
        "runtime user {}: uid {}, gid {}, groups {}",
        account.name,
        account.uid,
        named(account.gid),
        if others.is_empty() {
            "none".to_string()
        } else {
            others.join(",")
        }
    )
}

/// The name of the first account with this uid, if any.
pub fn name_of_uid(passwd: &[u8], uid: u32) -> Option<String> {
    parse_passwd(passwd)
        .into_iter()
        .find(|e| e.uid == uid)
        .map(|e| e.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD_TXT: &[u8] = b"root:x:0:0:root:/root:/bin/bash\n\
+nisuser::::::\n\
broken line\n\
hermes:x:10000:10000::/opt/data:/bin/sh\n\
other:x:abc:1::/x:/bin/sh\n";
    const GROUP_TXT: &[u8] =
        b"root:x:0:\nvideo:x:44:hermes\nhermes:x:10000:\nrender:x:109:alice,hermes\ndup:x:44:hermes\n";

    #[test]
    fn finds_user_and_memberships() {
        let a = account_from(PASSWD_TXT, GROUP_TXT, "hermes").unwrap();
        assert_eq!((a.uid, a.gid), (10000, 10000));
        assert_eq!(a.home, PathBuf::from("/opt/data"));
        assert_eq!(a.member_of, vec![44, 109]);
        assert_eq!(a.group_set(), vec![10000, 44, 109]);
    }

    #[test]
    fn malformed_and_compat_lines_never_describe_accounts() {
        let names: Vec<_> = parse_passwd(PASSWD_TXT).into_iter().map(|e| e.name).collect();
        assert_eq!(names, vec!["root", "hermes"]);
        assert!(account_from(PASSWD_TXT, GROUP_TXT, "nobody").is_none());
        assert!(account_from(PASSWD_TXT, GROUP_TXT, "other").is_none());
    }

    #[test]
    fn name_of_uid_takes_first_match() {
        assert_eq!(name_of_uid(PASSWD_TXT, 0).as_deref(), Some("root"));
        assert_eq!(name_of_uid(PASSWD_TXT, 5), None);
    }

    #[test]
    fn runtime_user_name_prefers_argument() {
        assert_eq!(runtime_user_name(Some("svc".into()), None), "svc");
    }
}
