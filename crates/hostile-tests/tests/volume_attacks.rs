//! Attacks the runtime user prepares on the data volume between two boots (it owns `H` and runs arbitrary
//! code): each test sets the trap the way `hermes` could, boots, and checks that root neither fell into it
//! nor let it stop the boot.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use hostile_tests::{image, program, STAGE2};
use test_support::{run, TempRoot};

const HERMES: (u32, u32) = (10000, 10000);

/// A fresh volume owned by the runtime user, as after an earlier boot.
fn volume() -> TempRoot {
    let r = image();
    r.mkdir("/opt/data");
    std::os::unix::fs::chown(r.path("/opt/data"), Some(HERMES.0), Some(HERMES.1)).unwrap();
    r.write(
        "/proc/1/cmdline",
        "/init\0/opt/hermes/docker/bin/main-wrapper\0gateway\0run\0",
    );
    r
}

/// `prog` as PID 1 of a new PID namespace, so its PID — and anything named after it — is known in advance,
/// as it is in a container.
fn as_pid_1(r: &TempRoot, prog: &Path) -> Command {
    let inner = r.command(prog);
    let mut c = Command::new("unshare");
    c.env_clear();
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c.args(["--fork", "--pid", "--"]).arg(prog);
    c
}

#[test]
fn planted_temporary_names_do_not_block_seeding() {
    let r = volume();
    // Every name a writer that counts from its PID would try first, for the seeds of a first boot.
    let mut planted = 0;
    for name in [".env", "config.yaml", "SOUL.md"] {
        for pid in 1..=3 {
            for n in 0..32 {
                let p = r.path(&format!("/opt/data/.{name}.tmp.{pid}.{n}"));
                std::fs::create_dir(&p).unwrap();
                std::os::unix::fs::chown(&p, Some(HERMES.0), Some(HERMES.1)).unwrap();
                planted += 1;
            }
        }
    }
    let out = run(&mut as_pid_1(&r, &program(STAGE2)));
    assert_eq!(
        out.code,
        Some(0),
        "stage2-setup failed:\n{}{}",
        out.stdout,
        out.stderr
    );
    assert!(
        !out.stderr.contains("tmp."),
        "a planted temporary name got in the way:\n{}",
        out.stderr
    );
    for (seed, mode) in [(".env", 0o600), ("config.yaml", 0o640), ("SOUL.md", 0o644)] {
        let m = std::fs::symlink_metadata(r.path(&format!("/opt/data/{seed}")))
            .unwrap_or_else(|e| panic!("{seed} was not seeded ({e}):\n{}", out.stderr));
        assert!(m.is_file(), "{seed} is not a file");
        assert_eq!((m.uid(), m.gid()), HERMES, "{seed} owner");
        assert_eq!(m.mode() & 0o7777, mode, "{seed} mode");
    }
    let left = std::fs::read_dir(r.path("/opt/data"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp.")
        })
        .count();
    assert_eq!(
        left, planted,
        "the planted entries are the runtime user's and stay"
    );
}
