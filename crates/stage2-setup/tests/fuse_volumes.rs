//! Volumes that are not a local file system, with a real FUSE file system (Debian's `bindfs`): one that
//! refuses every chown, as NFS with root-squash or a CIFS share does, and a FUSE mount inside the volume
//! whose daemon is frozen, as an rclone mount that stopped answering.

mod stage2_support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stage2_support::*;

/// A bindfs mount of `source` on `target`, in the foreground so its daemon's pid is known; unmounted
/// (and thawed first) when dropped.
struct Bindfs {
    child: Child,
    target: std::path::PathBuf,
}

impl Bindfs {
    fn mount(source: &Path, target: &Path, opts: &[&str]) -> Bindfs {
        assert!(
            Path::new("/usr/bin/bindfs").exists(),
            "bindfs is not installed (cargo xtask test installs it)"
        );
        let child = Command::new("/usr/bin/bindfs")
            .arg("-f")
            .args(opts)
            .arg(source)
            .arg(target)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn bindfs");
        let m = Bindfs {
            child,
            target: target.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !m.is_mounted() {
            assert!(
                Instant::now() < deadline,
                "bindfs did not mount {}",
                target.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    fn is_mounted(&self) -> bool {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let t = self.target.to_str().unwrap();
        info.lines()
            .any(|l| l.split(' ').nth(4) == Some(t) && l.contains(" - fuse"))
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }
}

impl Drop for Bindfs {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = Command::new("umount").arg("-l").arg(&self.target).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs stage2-setup against `r`, killing it (and failing) if it has not finished within `limit`.
fn stage2_within(r: &test_support::TempRoot, limit: Duration) -> test_support::Run {
    let mut c = r.command(bin());
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn stage2-setup");
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return test_support::Run::from_output(child.wait_with_output().unwrap());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "stage2-setup still running after {limit:?} (hung on the mount?)\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_volume_that_refuses_chown_gets_one_warning_and_the_boot_goes_on() {
    let r = image();
    let backing = tempfile::tempdir().unwrap();
    let b = backing.path();
    // H is the runtime user's (a NAS share mapped to it); trees below hold files of another uid that the
    // runtime user can read, which the every-boot repair would hand over.
    for d in ["cron", "profiles/coder", "pairing", "platforms/pairing"] {
        std::fs::create_dir_all(b.join(d)).unwrap();
        for i in 0..5 {
            std::fs::write(b.join(d).join(format!("f{i}")), "x").unwrap();
        }
    }
    // The seeds exist, with the key: making or rewriting them is a chown of root's too, which such a
    // volume refuses as well (see the README's mode table).
    std::fs::write(b.join(".env"), format!("API_SERVER_KEY={}\n", "a".repeat(64))).unwrap();
    for f in ["config.yaml", "SOUL.md"] {
        std::fs::write(b.join(f), "x\n").unwrap();
    }
    let chown = |spec: &str, p: &Path| {
        assert!(Command::new("chown")
            .args(["-R", spec])
            .arg(p)
            .status()
            .unwrap()
            .success());
    };
    chown("10000:10000", b);
    for d in ["cron", "profiles", "pairing", "platforms/pairing"] {
        chown("2000:2000", &b.join(d));
    }
    r.mkdir("/opt/data");
    let _mount = Bindfs::mount(b, &r.path("/opt/data"), &["--chown-deny", "--chgrp-deny"]);

    let out = stage2_within(&r, Duration::from_secs(60));
    out.assert_code(0);
    let all = format!("{}{}", out.stdout, out.stderr);
    let refusals: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("this volume refuses chown"))
        .collect();
    assert_eq!(refusals.len(), 1, "one warning per boot:\n{all}");
    assert!(
        refusals[0].contains("/opt/data/") && refusals[0].contains("EPERM"),
        "{}",
        refusals[0]
    );
    assert_eq!(
        all.lines()
            .filter(|l| l.contains("chown") && l.contains("Warning"))
            .count(),
        1,
        "no other chown warning:\n{all}"
    );
    assert!(all.contains("Setup complete"), "{all}");
    assert_eq!(test_support::owner(&b.join("cron/f0")), (2000, 2000));
    assert_eq!(test_support::owner(&b.join("profiles/coder/f0")), (2000, 2000));
}

#[test]
fn a_frozen_fuse_mount_inside_the_volume_is_not_walked_and_does_not_hang_the_boot() {
    let r = image();
    r.mkdir("/opt/data/workspace/rclone");
    r.write("/opt/data/workspace/own.txt", "x");
    // The previous runtime uid: the boot walks the whole targeted set, `workspace` included.
    assert!(Command::new("chown")
        .args(["-R", "2000:2000"])
        .arg(r.path("/opt/data"))
        .status()
        .unwrap()
        .success());
    let remote = tempfile::tempdir().unwrap();
    std::fs::write(remote.path().join("remote.txt"), "remote").unwrap();
    let mount = Bindfs::mount(remote.path(), &r.path("/opt/data/workspace/rclone"), &[]);
    mount.signal("-STOP");

    let out = stage2_within(&r, Duration::from_secs(60));
    out.assert_code(0);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("Skipping mount point /opt/data/workspace/rclone (different filesystem)"),
        "{all}"
    );
    assert_eq!(
        r.owner("/opt/data/workspace/own.txt"),
        U,
        "the rest of the tree is repaired"
    );
    drop(mount);
    assert_eq!(
        test_support::owner(&remote.path().join("remote.txt")),
        (0, 0),
        "nothing below the mount was changed"
    );
}
