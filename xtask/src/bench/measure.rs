//! Timing and syscall counting of external commands.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Runs `cmd` once with its output discarded; fails on a non-zero exit. Returns the wall time from spawn
/// to exit.
pub fn time_once(cmd: &mut Command) -> Result<Duration> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let out = cmd.output().with_context(|| format!("cannot start {cmd:?}"))?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

/// Runs `cmd` and returns its stdout; fails on a non-zero exit.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Spawns `cmd` with all three standard streams on `/dev/null` and waits for it; fails on a non-zero
/// exit. The harness cost (one fork/exec and one wait) is the same for every command timed this way, so
/// differences of a fraction of a millisecond between commands are the commands' own.
pub fn time_spawn(cmd: &mut Command) -> Result<Duration> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let start = Instant::now();
    let status = cmd
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?
        .wait()
        .with_context(|| format!("waiting for {cmd:?}"))?;
    let took = start.elapsed();
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(took)
}

/// The `p`-th percentile (0–100) by nearest rank.
pub fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    if s.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

pub fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    match s.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2,
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Milliseconds with microsecond resolution, for the figures that are a millisecond or less.
pub fn ms3(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// `a / b` of two durations as a factor.
pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

/// Calls per syscall of one run, from `strace -f -c`.
#[derive(Debug, Default, Clone)]
pub struct Syscalls {
    pub calls: BTreeMap<String, u64>,
    /// Calls that failed, per syscall (only those with failures).
    pub errors: BTreeMap<String, u64>,
}

impl Syscalls {
    fn sum(&self, names: &[&str]) -> u64 {
        names
            .iter()
            .map(|n| self.calls.get(*n).copied().unwrap_or(0))
            .sum()
    }
    pub fn stat(&self) -> u64 {
        self.sum(&[
            "newfstatat",
            "fstatat64",
            "statx",
            "fstat",
            "fstat64",
            "stat",
            "stat64",
            "lstat",
            "lstat64",
        ])
    }
    pub fn chown(&self) -> u64 {
        self.sum(&[
            "fchownat", "fchown", "lchown", "chown", "fchown32", "lchown32", "chown32",
        ])
    }
    pub fn chmod(&self) -> u64 {
        self.sum(&["fchmodat", "fchmodat2", "fchmod", "chmod"])
    }
    pub fn getdents(&self) -> u64 {
        self.sum(&["getdents64", "getdents"])
    }
    pub fn get(&self, name: &str) -> u64 {
        self.calls.get(name).copied().unwrap_or(0)
    }
    /// Calls of `name` that succeeded.
    pub fn succeeded(&self, name: &str) -> u64 {
        self.get(name) - self.errors.get(name).copied().unwrap_or(0).min(self.get(name))
    }
    pub fn total(&self) -> u64 {
        self.calls.values().sum()
    }
}

/// Runs `cmd` under `strace -f -c` and returns the per-syscall call counts (the command's own output is
/// discarded).
pub fn strace(cmd: &Command, scratch: &Path) -> Result<Syscalls> {
    let log = scratch.join("strace.out");
    let mut st = Command::new("strace");
    st.args(["-f", "-c", "-o"])
        .arg(&log)
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    st.env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            st.env(k, v);
        }
    }
    if let Some(d) = cmd.get_current_dir() {
        st.current_dir(d);
    }
    time_once(&mut st)?;
    let text = std::fs::read_to_string(&log).with_context(|| format!("read {}", log.display()))?;
    let _ = std::fs::remove_file(&log);
    Ok(parse_strace_summary(&text))
}

/// Parses the table `strace -c` prints: `% time seconds usecs/call calls [errors] syscall`.
fn parse_strace_summary(text: &str) -> Syscalls {
    let mut s = Syscalls::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || f[0].starts_with('%') || f[0].starts_with('-') {
            continue;
        }
        let name = f[f.len() - 1];
        if name == "total" {
            continue;
        }
        if let Ok(calls) = f[3].parse::<u64>() {
            *s.calls.entry(name.to_string()).or_default() += calls;
            // The errors column is blank when nothing failed.
            if let Some(Ok(errors)) = (f.len() >= 6).then(|| f[4].parse::<u64>()) {
                *s.errors.entry(name.to_string()).or_default() += errors;
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strace_table_is_parsed() {
        let t = "% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 60.00    0.006000           6      1001         3 newfstatat
 30.00    0.003000           3      1000           fchownat
  0.00    0.000000           0        12           getdents64
  0.00    0.000000           0         9         6 execve
------ ----------- ----------- --------- --------- ----------------
100.00    0.010000           4      2022         9 total
";
        let s = parse_strace_summary(t);
        assert_eq!(s.stat(), 1001);
        assert_eq!(s.chown(), 1000);
        assert_eq!(s.getdents(), 12);
        assert_eq!(s.total(), 2022);
        assert_eq!(s.succeeded("execve"), 3);
        assert_eq!(s.succeeded("fchownat"), 1000);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        let d = |n| Duration::from_millis(n);
        assert_eq!(median(&[d(5), d(1), d(3)]), d(3));
        assert_eq!(median(&[d(4), d(1), d(3), d(2)]), Duration::from_micros(2500));
    }

    #[test]
    fn percentile_by_nearest_rank() {
        let d = |n| Duration::from_millis(n);
        let v: Vec<Duration> = (1..=10).rev().map(d).collect();
        assert_eq!(percentile(&v, 90.0), d(9));
        assert_eq!(percentile(&v, 50.0), d(5));
        assert_eq!(percentile(&v, 100.0), d(10));
        assert_eq!(percentile(&[d(7)], 90.0), d(7));
        assert_eq!(percentile(&[], 90.0), Duration::ZERO);
    }
}
