//! Self-removing scratch directories and the root-prefix layout the programs expect.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// A scratch directory, removed with `rm -rf` on drop (the trees are deep and large). Created 0755 so the
/// runtime user can reach what is below it.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(base: &Path, prefix: &str) -> Result<ScratchDir> {
        for i in 0..1000u32 {
            let p = base.join(format!("{prefix}{}.{i}", std::process::id()));
            match std::fs::create_dir(&p) {
                Ok(()) => {
                    let d = ScratchDir(p);
                    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755))
                        .with_context(|| format!("chmod {}", d.path().display()))?;
                    return Ok(d);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("mkdir {}", p.display())),
            }
        }
        bail!("cannot create a scratch directory in {}", base.display())
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rm").arg("-rf").arg(&self.0).status();
    }
}

/// The minimal image layout of a root prefix (as `test-support`'s `TempRoot`): account files with root and
/// `hermes` 10000:10000 (home /opt/data), `run/`, `tmp/` (1777), `opt/hermes/`, `proc/1/`.
pub fn lay_out_root(root: &Path) -> Result<()> {
    for d in ["etc", "run", "tmp", "opt/hermes", "proc/1"] {
        std::fs::create_dir_all(root.join(d)).with_context(|| format!("mkdir {}/{d}", root.display()))?;
    }
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    write(
        &root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
         hermes:x:10000:10000::/opt/data:/bin/sh\n",
    )?;
    write(
        &root.join("etc/group"),
        "root:x:0:\nvideo:x:44:\nnogroup:x:65534:\nhermes:x:10000:\n",
    )
}

/// Writes a file, creating its parent directories.
pub fn write(path: &Path, content: impl AsRef<[u8]>) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("mkdir {}", parent.display()))?;
    }
    std::fs::write(path, content).with_context(|| format!("write {}", path.display()))
}
