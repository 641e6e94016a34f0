//! The container command's standard input under `S6_CMD_RECEIVE_SIGNALS`.
//!
//! With that setting s6-overlay's stage 2 starts the command as an asynchronous list (`cmd &`, then `wait`)
//! so that it can forward `docker stop`'s signal to it. A non-interactive POSIX shell gives an asynchronous
//! list `/dev/null` as its standard input, so the command loses the container's terminal (`docker run -it`)
//! or its pipe (`docker run -i`). The stage-2 shell that started us (our parent) still holds the real one:
//! when ours is `/dev/null` and the parent's is not, the wrapper reopens the parent's as its own before it
//! drops privileges. (PID 1, s6-linux-init's s6-svscan, has `/dev/null` itself.)

use std::fs::OpenOptions;
use std::os::fd::AsFd;

use rustix::fs::{fstat, major, minor, FileType};

/// The parent's standard input, as the kernel's magic link (a pipe or terminal opens as the same object).
fn parent_stdin() -> String {
    let ppid = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
    format!("/proc/{ppid}/fd/0")
}

/// True for the character device 1:3, `/dev/null`.
fn is_dev_null(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice
        && major(st.st_rdev) == 1
        && minor(st.st_rdev) == 3
}

/// Whether s6-overlay runs the command in the background (`S6_CMD_RECEIVE_SIGNALS` a positive number).
pub fn command_runs_in_background(value: Option<&std::ffi::OsStr>) -> bool {
    value
        .and_then(|v| v.to_str())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0)
}

/// Replaces a `/dev/null` standard input with the parent's when that is something else. Best effort: any
/// failure leaves standard input as it was (the command then reads end-of-file, as it would have anyway).
pub fn restore_from_parent() {
    let Ok(ours) = fstat(std::io::stdin().as_fd()) else {
        return;
    };
    if !is_dev_null(&ours) {
        return;
    }
    let path = parent_stdin();
    let Ok(theirs) = rustix::fs::stat(path.as_str()) else {
        return;
    };
    if is_dev_null(&theirs) {
        return;
    }
    // A terminal is opened read-write, as a login would; anything else for reading only.
    let terminal = FileType::from_raw_mode(theirs.st_mode) == FileType::CharacterDevice;
    let file = OpenOptions::new().read(true).write(terminal).open(&path);
    if let Ok(file) = file {
        let _ = rustix::stdio::dup2_stdin(&file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn only_a_positive_number_means_background() {
        assert!(command_runs_in_background(Some(OsStr::new("1"))));
        assert!(command_runs_in_background(Some(OsStr::new("2"))));
        assert!(!command_runs_in_background(Some(OsStr::new("0"))));
        assert!(!command_runs_in_background(Some(OsStr::new(""))));
        assert!(!command_runs_in_background(Some(OsStr::new("yes"))));
        assert!(!command_runs_in_background(None));
    }

    #[test]
    fn dev_null_is_recognised_by_its_device_number() {
        let null = rustix::fs::stat("/dev/null").unwrap();
        assert!(is_dev_null(&null));
        let zero = rustix::fs::stat("/dev/zero").unwrap();
        assert!(!is_dev_null(&zero));
    }
}
