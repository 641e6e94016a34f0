//! Who the services run as, and how the container was started.

use crate::accounts::{self, Account};
use crate::config::Config;
use crate::ids::{self, IdVars, Target};
use crate::root::RootPrefix;

use super::{read_system_file, Finding};

const AREA: &str = "identity";

/// The runtime user, a pending or invalid remap, and how the container runs (root or `--user`,
/// user namespace, read-only root). Returns the runtime user when passwd has it, and whether PID 1 runs
/// as root (so the boot could remap and repair).
pub(super) fn check(config: &Config, out: &mut Vec<Finding>) -> (Option<Account>, bool) {
    let (root, user) = (&config.root, config.user.as_str());
    let status = read_system_file(root, "/proc/1/status").unwrap_or_default();
    let as_root = status_ids(&status, "Uid:").is_none_or(|u| u == 0);
    let account = match accounts::lookup(root, user) {
        // Started with --user: the services run with PID 1's own ids, whatever passwd records.
        Ok(Some(a)) => match (status_ids(&status, "Uid:"), status_ids(&status, "Gid:")) {
            (Some(uid), Some(gid)) if uid != 0 => Account {
                uid,
                gid,
                member_of: status_groups(&status).into_iter().filter(|g| *g != gid).collect(),
                ..a
            },
            _ => a,
        },
        Ok(None) => {
            out.push(Finding::problem(
                AREA,
                "runtime-user",
                format!("runtime user {user} is not in /etc/passwd"),
                "set HERMES_BOOT_USER to the image's runtime user, or use an image that has it",
            ));
            return (None, as_root);
        }
        Err(e) => {
            out.push(Finding::problem(
                AREA,
                "runtime-user",
                format!("cannot look up the runtime user: {e}"),
                "check /etc/passwd in the image",
            ));
            return (None, as_root);
        }
    };
    out.push(
        Finding::ok(AREA, "runtime-user", accounts::describe(root, &account))
            .with("user", account.name.clone())
            .with("uid", account.uid)
            .with("gid", account.gid)
            .with("groups", account.group_set()),
    );
    let env = |name: &str| config.env.get(name).and_then(|v| v.to_str()).map(str::to_string);
    remap(out, ids::UID_VARS, account.uid, "uid", &env);
    remap(out, ids::GID_VARS, account.gid, "gid", &env);
    container(root, &status, out);
    (Some(account), as_root)
}

/// What `HERMES_UID`/`PUID` (or the gid pair) ask for against what passwd holds: stage2-setup remaps at
/// boot, so a difference means the boot could not (not root, read-only `/etc`) or the variable was set
/// after it (`docker exec -e` does not count: the doctor sees the container's own environment).
fn remap(
    out: &mut Vec<Finding>,
    vars: IdVars,
    current: u32,
    what: &'static str,
    env: &dyn Fn(&str) -> Option<String>,
) {
    let check = if what == "uid" { "uid-remap" } else { "gid-remap" };
    match ids::select(vars, env).target {
        Target::Unset => out.push(
            Finding::ok(
                AREA,
                check,
                format!(
                    "no {what} remap requested ({} and {} unset)",
                    vars.primary, vars.alias
                ),
            )
            .with(what, current),
        ),
        Target::Valid { var, id } if id == current => out.push(
            Finding::ok(AREA, check, format!("{var}={id} is in effect"))
                .with("variable", var)
                .with(what, current),
        ),
        Target::Valid { var, id } => out.push(
            Finding::problem(
                AREA,
                check,
                format!("{var}={id} is not in effect: /etc/passwd has {what} {current}"),
                "restart the container as root (no --user, writable /etc): docker restart <container>",
            )
            .with("variable", var)
            .with("requested", id)
            .with(what, current),
        ),
        Target::Invalid { var, value } => out.push(
            Finding::problem(
                AREA,
                check,
                format!(
                    "{var}='{}' is not a {what} from {} to {}",
                    crate::display::display_bytes(value.as_bytes()),
                    ids::MIN_ID,
                    ids::MAX_ID
                ),
                format!(
                    "set {var} to a number from {} to {} and recreate the container",
                    ids::MIN_ID,
                    ids::MAX_ID
                ),
            )
            .with("variable", var),
        ),
    }
}

/// How the container was started, from PID 1's credentials and the root file system: facts for the
/// operator, never problems on their own.
fn container(root: &RootPrefix, status: &str, out: &mut Vec<Finding>) {
    let uid = status_ids(status, "Uid:");
    let as_root = uid == Some(0);
    let started = match uid {
        Some(0) => "started as root".to_string(),
        Some(u) => format!("started as uid {u} (--user): no remap, no ownership repair"),
        None => "PID 1's credentials are unreadable".to_string(),
    };
    // The identity map is `0 0 4294967295`; anything else is a user namespace (rootless Podman or
    // Docker, userns-remap), where container root is an unprivileged host user.
    let map = read_system_file(root, "/proc/1/uid_map").unwrap_or_default();
    let fields: Vec<&str> = map.split_whitespace().collect();
    let userns = !map.is_empty() && fields != ["0", "0", "4294967295"];
    let read_only = rustix::fs::statvfs(root.path("/"))
        .map(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
        .unwrap_or(false);
    let mut parts = vec![started];
    if userns {
        let host = fields.get(1).copied().unwrap_or("?");
        parts.push(format!(
            "in a user namespace (rootless or userns-remap; container root is host uid {host})"
        ));
    }
    if read_only {
        parts.push("read-only root file system".to_string());
    }
    out.push(
        Finding::ok(AREA, "container", parts.join(", "))
            .with("as_root", as_root)
            .with("pid1_uid", uid.map_or(serde_json::Value::Null, Into::into))
            .with("user_namespace", userns)
            .with("read_only_root", read_only),
    );
}

/// The real id of a `/proc/<pid>/status` line such as `Uid:\t0\t0\t0\t0`.
fn status_ids(status: &str, key: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The supplementary groups of a `/proc/<pid>/status` (`Groups:\t44 109 `).
fn status_groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|rest| rest.split_whitespace().filter_map(|g| g.parse().ok()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_uid_of_a_status_line() {
        assert_eq!(
            status_ids("Name:\tinit\nUid:\t1000\t1000\t1000\t1000\n", "Uid:"),
            Some(1000)
        );
        assert_eq!(status_ids("Name:\tinit\n", "Uid:"), None);
        assert_eq!(status_groups("Groups:\t44 109 \nNgid:\t0\n"), vec![44, 109]);
    }

    #[test]
    fn a_requested_id_that_passwd_does_not_hold_is_a_pending_remap() {
        let mut out = Vec::new();
        let env = |n: &str| (n == "PUID").then(|| "1000".to_string());
        remap(&mut out, ids::UID_VARS, 10000, "uid", &env);
        assert_eq!(out[0].status, super::super::Status::Problem);
        assert_eq!(
            out[0].message,
            "PUID=1000 is not in effect: /etc/passwd has uid 10000"
        );
        let mut out = Vec::new();
        remap(&mut out, ids::UID_VARS, 1000, "uid", &env);
        assert_eq!(out[0].status, super::super::Status::Ok);
        assert_eq!(out[0].message, "PUID=1000 is in effect");
        let mut out = Vec::new();
        let bad = |n: &str| (n == "HERMES_GID").then(|| "-5".to_string());
        remap(&mut out, ids::GID_VARS, 1000, "gid", &bad);
        assert_eq!(out[0].status, super::super::Status::Problem);
        assert!(
            out[0].message.starts_with("HERMES_GID='-5' is not a gid"),
            "{}",
            out[0].message
        );
    }
}
