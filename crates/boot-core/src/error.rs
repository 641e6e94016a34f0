//! The one error type of the core: an operation, the in-container path it was applied to, and the errno.
//!
//! Its `Display` is the middle of every warning line of SPEC CM-04:
//! `<operation> <path>: <ERRNO> (<description>)`.

use std::fmt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::display::display_path;

/// A failed system operation on a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysError {
    /// What was attempted, in words an operator understands (`chown`, `open`, `rename`, …).
    pub op: String,
    /// The in-container path (never prefixed with the `--root` directory).
    pub path: PathBuf,
    pub errno: Errno,
    /// Why root refused, where no errno says it (an unsafe path); shown instead of the errno.
    pub refusal: Option<String>,
}

impl SysError {
    pub fn new(op: impl Into<String>, path: impl AsRef<Path>, errno: impl Into<Errno2>) -> Self {
        SysError {
            op: op.into(),
            path: path.as_ref().to_path_buf(),
            errno: errno.into().0,
            refusal: None,
        }
    }

    /// Root refused `op` on `path` for `reason` (EPERM underneath, for callers that test errnos).
    pub fn refused(op: impl Into<String>, path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        SysError {
            refusal: Some(reason.into()),
            ..SysError::new(op, path, Errno::EPERM)
        }
    }

    /// True for the errors that mean "the entry vanished or was replaced under us" (CM-08).
    pub fn is_vanished(&self) -> bool {
        matches!(self.errno, Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP)
    }
}

/// `ERRNO (description)`, e.g. `EACCES (Permission denied)`.
pub fn errno_text(e: Errno) -> String {
    format!("{:?} ({})", e, e.desc())
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.refusal {
            Some(why) => write!(f, "{} {}: {}", self.op, display_path(&self.path), why),
            None => write!(
                f,
                "{} {}: {}",
                self.op,
                display_path(&self.path),
                errno_text(self.errno)
            ),
        }
    }
}

impl std::error::Error for SysError {}

/// Conversion helper so both `rustix::io::Errno` and `nix::errno::Errno` (and raw `std::io::Error`s) can be
/// passed to [`SysError::new`].
pub struct Errno2(pub Errno);

impl From<Errno> for Errno2 {
    fn from(e: Errno) -> Self {
        Errno2(e)
    }
}

impl From<rustix::io::Errno> for Errno2 {
    fn from(e: rustix::io::Errno) -> Self {
        Errno2(Errno::from_raw(e.raw_os_error()))
    }
}

impl From<std::io::Error> for Errno2 {
    fn from(e: std::io::Error) -> Self {
        Errno2(Errno::from_raw(e.raw_os_error().unwrap_or(libc_eio())))
    }
}

fn libc_eio() -> i32 {
    Errno::EIO as i32
}

/// Shorthand used throughout the core.
pub type SysResult<T> = Result<T, SysError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_operation_path_errno_and_description() {
        let e = SysError::new("chown", "/opt/data/x", Errno::EPERM);
        assert_eq!(
            e.to_string(),
            "chown /opt/data/x: EPERM (Operation not permitted)"
        );
    }

    #[test]
    fn converts_from_rustix_and_io() {
        let e = SysError::new("open", "/a", rustix::io::Errno::NOENT);
        assert_eq!(e.errno, Errno::ENOENT);
        assert!(e.is_vanished());
        let e = SysError::new("open", "/a", std::io::Error::from_raw_os_error(13));
        assert_eq!(e.errno, Errno::EACCES);
        assert!(!e.is_vanished());
    }

    #[test]
    fn non_utf8_path_bytes_print_as_hex_escapes() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let e = SysError::new("open", Path::new(OsStr::from_bytes(b"/d/\xffx")), Errno::EIO);
        assert!(e.to_string().starts_with("open /d/\\xffx: EIO"), "{e}");
    }
}
