//! What a root boot can do with the capabilities it was given (`--cap-drop`, a Kubernetes
//! `capabilities:` list), read from `/proc/self/status`.
//!
//! Only what changes the boot's outcome is checked; a missing CHOWN is found by its first refused chown
//! ([`crate::chown_refusal::chown_refused`]), because a user namespace can grant the bit and still refuse ids.

use crate::report::Report;

/// `CAP_KILL` (linux/capability.h): signal processes of other uids.
const CAP_KILL: u32 = 5;

/// Whether the effective set of the status text `status` holds capability `cap`; `None` when the
/// `CapEff:` line is missing or unreadable.
pub fn effective_has(status: &str, cap: u32) -> Option<bool> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    let bits = u64::from_str_radix(hex, 16).ok()?;
    Some(bits & (1u64 << cap) != 0)
}

/// A root boot whose runtime user is another uid: without CAP_KILL, s6-supervise (root) cannot signal
/// the user's services, so `gateway stop`, `restart` and `docker stop` never reach them. One warning.
pub fn warn_if_supervision_cannot_signal(report: &Report, runtime_uid: u32) {
    if runtime_uid == 0 {
        return;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if effective_has(&status, CAP_KILL) == Some(false) {
        report.warn(
            "root has no CAP_KILL (capabilities dropped): s6 cannot signal the runtime user's services, so \
gateway stop and restart do nothing and docker stop waits for its timeout; add the KILL capability — continuing",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_effective_set() {
        // Docker's default set, and `--cap-drop ALL --cap-add CHOWN,SETUID,SETGID,DAC_OVERRIDE`.
        let default = "CapInh:\t0000000000000000\nCapEff:\t00000000a80425fb\n";
        let four = "CapEff:\t00000000000000c3\n";
        assert_eq!(effective_has(default, CAP_KILL), Some(true));
        assert_eq!(effective_has(four, CAP_KILL), Some(false));
        assert_eq!(effective_has(four, 0), Some(true));
        assert_eq!(effective_has("Name:\tx\n", CAP_KILL), None);
        assert_eq!(effective_has("CapEff:\tzz\n", CAP_KILL), None);
    }
}
