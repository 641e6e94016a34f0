//! The test image's base: Debian trixie minbase made with `debootstrap` from the apt mirror this
//! machine is configured with, imported with `docker import`, cached by tag. No image registry is
//! needed.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::{docker_ok, run_checked};
use crate::setup;

pub const BASE_TAG: &str = "hermes-boot-base:trixie-minbase";
const SUITE: &str = "trixie";
/// Overrides the mirror read from the apt configuration.
const MIRROR_ENV: &str = "HERMES_BOOT_APT_MIRROR";

pub fn ensure_base_image(rebuild: bool, work: &Path) -> Result<()> {
    if !rebuild && docker_ok(&["image", "inspect", BASE_TAG]) {
        eprintln!("xtask: base image {BASE_TAG} present");
        return Ok(());
    }
    setup::ensure_packages(&["debootstrap"])?;
    let mirror = match std::env::var(MIRROR_ENV) {
        Ok(m) if !m.trim().is_empty() => m.trim().to_string(),
        _ => configured_mirror()?,
    };
    let rootfs = work.join("rootfs");
    if rootfs.exists() {
        fs::remove_dir_all(&rootfs).with_context(|| format!("cannot remove {}", rootfs.display()))?;
    }
    fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;
    eprintln!("xtask: debootstrap --variant=minbase {SUITE} from {mirror}");
    let started = Instant::now();
    run_checked(
        Command::new("debootstrap")
            .arg("--variant=minbase")
            .arg(SUITE)
            .arg(&rootfs)
            .arg(&mirror),
        "debootstrap",
    )?;
    // Package caches only make the image bigger; the image's own apt-get update refills lists.
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let d = rootfs.join(dir);
        for entry in fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let path = entry?.path();
            if path.is_file() {
                fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
    }
    import(&rootfs)?;
    fs::remove_dir_all(&rootfs).with_context(|| format!("cannot remove {}", rootfs.display()))?;
    eprintln!(
        "xtask: base image {BASE_TAG} built in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn import(rootfs: &Path) -> Result<()> {
    let mut tar = Command::new("tar")
        .arg("--numeric-owner")
        .arg("-C")
        .arg(rootfs)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start tar")?;
    let tar_out = tar.stdout.take().context("tar has no stdout")?;
    let import = Command::new("docker")
        .args(["import", "--change", "CMD [\"/bin/bash\"]", "-", BASE_TAG])
        .stdin(tar_out)
        .stdout(Stdio::null())
        .status()
        .context("cannot start docker import")?;
    let tar_status = tar.wait().context("cannot wait for tar")?;
    if !tar_status.success() || !import.success() {
        bail!(
            "importing {} as {BASE_TAG} failed (tar {tar_status}, docker import {import})",
            rootfs.display()
        );
    }
    Ok(())
}

/// The Debian archive URI of this machine's apt configuration: deb822 `.sources` files and
/// one-line `.list` files (only the names apt itself reads), skipping security and third-party
/// repositories.
pub fn configured_mirror() -> Result<String> {
    let mut uris = Vec::new();
    let mut files = vec![Path::new("/etc/apt/sources.list").to_path_buf()];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut names: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        files.extend(names);
    }
    for file in files {
        let Some(ext) = file.extension().and_then(|e| e.to_str()) else {
            continue;
        };
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        match ext {
            "sources" => uris.extend(deb822_uris(&text)),
            "list" => uris.extend(one_line_uris(&text)),
            _ => {}
        }
    }
    pick_mirror(&uris)
        .with_context(|| format!("no Debian mirror found in /etc/apt/sources.list{{,.d/}}; set {MIRROR_ENV}"))
}

/// (uri, suites) pairs of the `deb` stanzas of a deb822 file.
fn deb822_uris(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let enabled = field("Enabled").map(|v| v != "no").unwrap_or(true);
        let is_deb = field("Types")
            .map(|t| t.split_whitespace().any(|t| t == "deb"))
            .unwrap_or(false);
        if let (true, true, Some(uris), Some(suites)) = (enabled, is_deb, field("URIs"), field("Suites")) {
            for uri in uris.split_whitespace() {
                out.push((uri.to_string(), suites.clone()));
            }
        }
    }
    out
}

fn one_line_uris(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace().filter(|w| !w.starts_with('['));
            if words.next()? != "deb" {
                return None;
            }
            let uri = words.next()?;
            let suite = words.next()?;
            Some((uri.to_string(), suite.to_string()))
        })
        .collect()
}

/// The first archive whose path ends in `/debian`; else the first other Debian-looking one (e.g. a
/// snapshot URI). Security-only entries never qualify.
fn pick_mirror(uris: &[(String, String)]) -> Option<String> {
    let candidates: Vec<&str> = uris
        .iter()
        .filter(|(uri, suites)| {
            !uri.contains("security") && !suites.split_whitespace().all(|s| s.ends_with("-security"))
        })
        .map(|(uri, _)| uri.trim_end_matches('/'))
        .collect();
    candidates
        .iter()
        .find(|uri| uri.ends_with("/debian"))
        .or_else(|| candidates.iter().find(|uri| uri.contains("debian")))
        .map(|uri| uri.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_main_archive_of_a_deb822_file() {
        let text = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\
                    Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n\
                    Suites: bookworm-security\nComponents: main\n";
        assert_eq!(
            pick_mirror(&deb822_uris(text)).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn skips_security_and_third_party_lines() {
        let text = "deb https://packages.example.com/apt cloud main\n\
                    deb [arch=amd64] http://deb.example.org/debian-security bookworm-security main\n\
                    deb http://deb.example.org/debian/ bookworm main\n";
        assert_eq!(
            pick_mirror(&one_line_uris(text)).as_deref(),
            Some("http://deb.example.org/debian")
        );
    }

    #[test]
    fn disabled_stanzas_are_ignored() {
        let text = "Enabled: no\nTypes: deb\nURIs: http://a.example/debian\nSuites: bookworm\n";
        assert_eq!(pick_mirror(&deb822_uris(text)), None);
    }
}
