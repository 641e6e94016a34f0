//! Generated data volumes that look like a real `$HERMES_HOME`: profiles with session files, a wide
//! `sessions/` directory, a git object store in `workspace/`, skills with a few deep chains, logs.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// What was generated: entries in total (the volume directory included) and per top-level name.
pub struct Volume {
    pub entries: usize,
    pub per_top: BTreeMap<String, usize>,
}

impl Volume {
    /// Entries below the given top-level names (each name counted with everything under it).
    pub fn under(&self, names: &[&str]) -> usize {
        names
            .iter()
            .map(|n| self.per_top.get(*n).copied().unwrap_or(0))
            .sum()
    }
}

struct Gen {
    h: PathBuf,
    count: usize,
    per_top: BTreeMap<String, usize>,
}

impl Gen {
    fn note(&mut self, rel: &str) {
        self.count += 1;
        let top = rel.split('/').next().unwrap_or(rel).to_string();
        *self.per_top.entry(top).or_default() += 1;
    }
    fn dir(&mut self, rel: &str) -> Result<()> {
        let p = self.h.join(rel);
        std::fs::create_dir(&p).with_context(|| format!("mkdir {}", p.display()))?;
        self.note(rel);
        Ok(())
    }
    fn file(&mut self, rel: &str) -> Result<()> {
        let p = self.h.join(rel);
        File::create(&p).with_context(|| format!("create {}", p.display()))?;
        self.note(rel);
        Ok(())
    }
}

/// Creates a volume of about `n` entries at `h` (which must not exist).
pub fn generate(h: &Path, n: usize) -> Result<Volume> {
    std::fs::create_dir_all(h).with_context(|| format!("mkdir {}", h.display()))?;
    let mut g = Gen {
        h: h.to_path_buf(),
        count: 1,
        per_top: BTreeMap::new(),
    };
    for f in [
        "config.yaml",
        ".env",
        "SOUL.md",
        "state.db",
        "auth.json",
        "gateway_state.json",
    ] {
        g.file(f)?;
    }
    for d in [
        "profiles",
        "sessions",
        "logs",
        "skills",
        "memories",
        "workspace",
        "cron",
        "pairing",
        "platforms",
        "home",
        "plans",
        "hooks",
        "skins",
    ] {
        g.dir(d)?;
    }
    g.dir("platforms/pairing")?;
    for i in 0..5 {
        g.file(&format!("cron/job-{i}.json"))?;
        g.file(&format!("memories/memory-{i}.md"))?;
    }

    // 15 %: one wide directory of session transcripts.
    for i in 0..n * 15 / 100 {
        g.file(&format!("sessions/20250101_{i:06}.jsonl"))?;
    }
    // 15 %: a git object store (256 fan-out directories).
    g.dir("workspace/repo")?;
    g.dir("workspace/repo/.git")?;
    g.dir("workspace/repo/.git/objects")?;
    let objects = n * 15 / 100;
    for d in 0..256 {
        g.dir(&format!("workspace/repo/.git/objects/{d:02x}"))?;
    }
    for i in 0..objects.saturating_sub(259) {
        g.file(&format!("workspace/repo/.git/objects/{:02x}/{i:038x}", i % 256))?;
    }
    // 5 %: logs.
    for i in 0..n * 5 / 100 {
        g.file(&format!("logs/agent-{i}.log"))?;
    }
    // 10 %: skills, half in deep chains of up to 200 levels (a file every tenth level; deeper chains
    // would outgrow PATH_MAX for the path-based tools), half shallow.
    let deep = n * 5 / 100;
    let chains = (deep / 200).max(4);
    let per_chain = deep / chains;
    for c in 0..chains {
        let mut rel = format!("skills/deep-{c}");
        g.dir(&rel)?;
        let mut made = 1;
        while made + 2 <= per_chain {
            rel.push_str("/lvl");
            g.dir(&rel)?;
            made += 1;
            if made % 10 == 0 {
                g.file(&format!("{rel}/notes.md"))?;
                made += 1;
            }
        }
    }
    let shallow = n * 5 / 100;
    let mut made = 0;
    let mut s = 0;
    while made + 4 <= shallow {
        g.dir(&format!("skills/skill-{s}"))?;
        g.file(&format!("skills/skill-{s}/SKILL.md"))?;
        g.dir(&format!("skills/skill-{s}/references"))?;
        g.file(&format!("skills/skill-{s}/references/api.md"))?;
        made += 4;
        s += 1;
    }
    // The rest: profiles with their own sessions, memories, logs and config.
    let profiles = (n / 2500).max(4);
    let rest = n.saturating_sub(g.count);
    let per_profile = rest / profiles;
    for p in 0..profiles {
        let base = format!("profiles/p{p}");
        g.dir(&base)?;
        for f in ["config.yaml", ".env", "SOUL.md", "state.db"] {
            g.file(&format!("{base}/{f}"))?;
        }
        for d in ["sessions", "memories", "logs"] {
            g.dir(&format!("{base}/{d}"))?;
        }
        let body = per_profile.saturating_sub(8);
        for i in 0..body {
            let kind = match i % 10 {
                0 => "memories",
                1 => "logs",
                _ => "sessions",
            };
            g.file(&format!("{base}/{kind}/item-{i}"))?;
        }
    }
    Ok(Volume {
        entries: g.count,
        per_top: g.per_top,
    })
}
