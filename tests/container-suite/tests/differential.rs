//! `reconcile-profiles` against the application's own reconciler (`hermes_cli/container_boot.py` of the
//! installed hermes-agent), on the same generated volumes inside the image: which slots exist, up or
//! down, each slot's command line, the boot-log line per profile and the stale files removed. Every
//! difference must be one the README lists as deliberate (*Differences from the application's
//! reconciler*).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use container_suite::*;
use serde_json::Value;

const WORK: &str = "/tmp/differential";

/// Runs both reconcilers on a fresh copy of one generated volume; returns (application, ours) per profile.
fn compare(c: &Container, argv: &[&str], generate_args: &str) -> Result<(Summary, Summary)> {
    let cmdline: String = argv.iter().flat_map(|a| [*a, "\\000"]).collect();
    let py_argv: Vec<String> = argv.iter().map(|a| format!("'{a}'")).collect();
    let script = format!(
        r#"set -e
cd {WORK}
rm -rf gen app ours
mkdir -p gen/opt/data
python3 generate.py gen/opt/data {generate_args}
cp -a gen app; cp -a gen ours
mkdir -p app/run/service ours/run/service ours/etc ours/proc/1
cp /etc/passwd /etc/group ours/etc/
printf '{cmdline}' > ours/proc/1/cmdline
/opt/hermes/.venv/bin/python -c '
import sys
from pathlib import Path
from hermes_cli.container_boot import reconcile_profile_gateways
try:
    reconcile_profile_gateways(hermes_home=Path("app/opt/data").resolve(),
                               scandir=Path("app/run/service").resolve(),
                               container_argv=sys.argv[1:])
except Exception as e:
    print("APP-ABORTED", type(e).__name__, e)
' {py} > app.out 2>&1
HERMES_HOME=/opt/data /opt/hermes/docker/bin/reconcile-profiles --root {WORK}/ours > ours.out 2>&1
echo '== app'; python3 summarize.py app; cat app.out | sed 's/^/APP-OUT /'
echo '== ours'; python3 summarize.py ours
"#,
        py = py_argv.join(" ")
    );
    let out = c.root_ok(&script)?;
    let (app_part, ours_part) = out.split_once("== ours").context("no summary of ours")?;
    Ok((Summary::parse(app_part)?, Summary::parse(ours_part)?))
}

#[derive(Debug, Default)]
struct Summary {
    profiles: BTreeMap<String, Value>,
    aborted: Option<String>,
}

impl Summary {
    fn parse(text: &str) -> Result<Self> {
        let mut s = Summary::default();
        for line in text.lines() {
            if let Some(msg) = line.strip_prefix("APP-OUT APP-ABORTED ") {
                s.aborted = Some(msg.to_string());
            } else if line.starts_with('{') {
                let v: Value =
                    serde_json::from_str(line).with_context(|| format!("bad summary line {line}"))?;
                let name = v["profile"].as_str().context("profile")?.to_string();
                s.profiles.insert(name, v);
            }
        }
        Ok(s)
    }
}

/// The deliberate differences (README): which field of which profile may differ, and how.
fn deliberate(profile: &str, field: &str, app: &Value, ours: &Value) -> bool {
    match (profile, field) {
        // A UTF-8 BOM before the JSON: the application's json.loads refuses it and treats the file as
        // "no state"; the file was written by an editor that keeps the state readable, so we read it.
        ("bom-running", "prior_state" | "action" | "down") => true,
        // A state file that parses but is not an object, or a desired_state that is not a string: the
        // application aborts the whole boot (AttributeError, TypeError); we treat it as "no state" for
        // that profile only.
        ("array" | "string" | "nested-desired", _) => app.is_null(),
        _ => {
            let _ = ours;
            false
        }
    }
}

fn assert_agree(case: &str, app: &Summary, ours: &Summary) -> Result<()> {
    let mut problems = Vec::new();
    let names: std::collections::BTreeSet<&String> =
        app.profiles.keys().chain(ours.profiles.keys()).collect();
    for name in names {
        let a = app.profiles.get(name).cloned().unwrap_or(Value::Null);
        let o = ours.profiles.get(name).cloned().unwrap_or(Value::Null);
        for field in [
            "slot",
            "down",
            "command",
            "has_log",
            "prior_state",
            "action",
            "stale_left",
        ] {
            let (af, of) = (&a[field], &o[field]);
            if af != of && !deliberate(name, field, af, of) {
                problems.push(format!("{name}.{field}: application {af} / ours {of}"));
            }
        }
    }
    if !problems.is_empty() {
        bail!("{case}: {} differences:\n{}", problems.len(), problems.join("\n"));
    }
    Ok(())
}

fn container_with_scripts() -> Result<Container> {
    let c = Run::new().cmd(&["sleep", "infinity"]).start_ready()?;
    c.root_ok(&format!("mkdir -p {WORK}"))?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("differential");
    for f in ["generate.py", "summarize.py"] {
        let from = dir.join(f);
        docker_checked(&[
            "cp",
            from.to_str().context("path")?,
            &format!("{}:{WORK}/{f}", c.id),
        ])?;
    }
    Ok(c)
}

#[test]
fn reconcilers_agree_on_a_generated_volume() -> Result<()> {
    let c = container_with_scripts()?;
    let argv = ["/init", "/opt/hermes/docker/main-wrapper.sh", "sleep", "infinity"];
    let (app, ours) = compare(&c, &argv, "")?;
    // The generated volume has non-object state files, on which the application aborts; the rest of
    // its run is compared through a volume without them.
    assert!(
        app.aborted.is_some(),
        "expected the application to abort on a non-object state file"
    );
    assert!(ours.profiles.len() > 30, "{:?}", ours.profiles.keys());
    let (app, ours) = compare(&c, &argv, "--no-non-objects")?;
    assert!(app.aborted.is_none(), "application aborted: {:?}", app.aborted);
    assert!(app.profiles.len() > 30, "{:?}", app.profiles.keys());
    assert_agree("sleep infinity", &app, &ours)
}

#[test]
fn reconcilers_agree_on_the_legacy_gateway_run_command() -> Result<()> {
    let c = container_with_scripts()?;
    let argv = ["/init", "/opt/hermes/docker/main-wrapper.sh", "gateway", "run"];
    let (app, ours) = compare(&c, &argv, "--no-non-objects --no-default-state")?;
    assert!(app.aborted.is_none(), "application aborted: {:?}", app.aborted);
    assert_eq!(ours.profiles["default"]["action"], "started");
    assert_agree("legacy gateway run", &app, &ours)
}

#[test]
fn invalid_profile_names_abort_the_application_but_not_us() -> Result<()> {
    let c = container_with_scripts()?;
    let argv = ["/init", "/opt/hermes/docker/main-wrapper.sh", "sleep", "infinity"];
    let (app, ours) = compare(&c, &argv, "--no-non-objects --invalid-names")?;
    assert!(app.aborted.is_some(), "the application accepted an invalid name");
    // We skip the invalid names (one warning each) and give every valid profile its slot.
    assert!(!ours.profiles.get("Bad-Upper").is_some_and(|p| p["slot"] == true));
    assert!(ours.profiles["s02-none-running"]["slot"] == true);
    Ok(())
}
