//! Root refused a chown (no CAP_CHOWN, or an id the user namespace does not map): recognised once,
//! warned about once per process, and from then on files are made with the programs' own identity instead
//! of failing step after step. The slots, the boot log and stage 2's private directories all ask here.

use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;

use crate::error::SysError;
use crate::guarded::euid;
use crate::owner::Owner;
use crate::report::Report;

static CHOWN_REFUSED: AtomicBool = AtomicBool::new(false);

/// Whether root was refused a chown earlier in this process ([`note_chown_refusal`]). From then on the
/// programs create what they need with their own identity instead of failing step after step.
pub fn chown_refused() -> bool {
    CHOWN_REFUSED.load(Ordering::Relaxed)
}

/// u:g when running as root; otherwise the caller's identity is kept and ownership steps are skipped.
/// Also skipped once root was refused a chown in this process (no CAP_CHOWN): files are then root's.
pub(crate) fn owner_for(account: &crate::accounts::Account) -> Option<Owner> {
    (euid() == 0 && !chown_refused()).then_some(Owner::new(account.uid, account.gid))
}

/// A chown root may not do here: EPERM without CAP_CHOWN (`docker run --cap-drop CHOWN`), EINVAL for an
/// id the user namespace does not map. Either way every later chown to the runtime user fails the same.
pub fn is_chown_refusal(err: &SysError) -> bool {
    err.op == "chown" && matches!(err.errno, Errno::EPERM | Errno::EINVAL)
}

/// When `err` is a chown refusal: remembers it and prints, once per process, the one warning that says
/// what it costs — slots and files stay root's, so `runtime_user` cannot control its gateways. Returns
/// false (and prints nothing) for any other error.
pub fn note_chown_refusal(report: &Report, err: &SysError, runtime_user: &str) -> bool {
    if !is_chown_refusal(err) {
        return false;
    }
    if !CHOWN_REFUSED.swap(true, Ordering::Relaxed) {
        report.warn(format_args!(
            "{err}; root may not change owners here (no CAP_CHOWN?): gateway slots and the files this run \
             creates stay root:root, so {runtime_user} cannot control gateways (s6-svc, s6-svstat) — continuing"
        ));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refused_chown_is_a_chown_refusal() {
        let e = |op: &'static str, errno| SysError::new(op, "/run/service/gateway-x", errno);
        assert!(is_chown_refusal(&e("chown", Errno::EPERM)));
        assert!(is_chown_refusal(&e("chown", Errno::EINVAL)));
        assert!(!is_chown_refusal(&e("chown", Errno::ENOSPC)));
        assert!(!is_chown_refusal(&e("chmod", Errno::EPERM)));
        // Any other error is not remembered and prints nothing.
        let r = Report::reconcile(false);
        assert!(!note_chown_refusal(&r, &e("mkdir", Errno::EPERM), "hermes"));
        assert_eq!(r.warnings(), 0);
    }
}
