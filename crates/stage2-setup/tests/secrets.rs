//! Files with secrets or operator settings: API_SERVER_KEY (S2-19), routing overrides (S2-20), the
//! credential residence and auth.json bootstrap (S2-24, S2-25), the gateway state seed (S2-27), and what a
//! SIGKILL in the middle of a write leaves behind (CM-06, CM-07).

mod stage2_support;

use std::time::Duration;

use stage2_support::*;
use test_support::TempRoot;

#[test]
fn api_key_is_generated_once_into_a_private_env_file() {
    let r = image();
    r.mkdir("/opt/data");
    r.write("/opt/data/.env", "# mine\nAPI_SERVER_KEY=\nOTHER=1");
    r.chmod("/opt/data/.env", 0o644);
    let out = stage2(&r, &[]);
    out.assert_code(0);
    let env = r.read("/opt/data/.env");
    let keys = api_key(&env);
    assert_eq!(keys.len(), 1, "{env}");
    assert!(is_hex64(keys[0]), "{env}");
    assert_eq!(env, format!("# mine\nOTHER=1\nAPI_SERVER_KEY={}\n", keys[0]));
    assert_eq!((r.owner("/opt/data/.env"), r.mode("/opt/data/.env")), (U, 0o600));
    assert!(out
        .stdout
        .contains("[stage2] Generated API_SERVER_KEY for the loopback gateway api_server"));
    assert!(!out.all().contains(keys[0]), "the key must never be printed");

    // A second boot keeps the key.
    let out = stage2(&r, &[]);
    assert_eq!(r.read("/opt/data/.env"), env);
    assert!(!out.stdout.contains("Generated"));
}

#[test]
fn api_key_creates_a_missing_env_file() {
    let r = image();
    std::fs::remove_file(r.path("/opt/hermes/.env.example")).unwrap();
    stage2(&r, &[]).assert_code(0);
    let env = r.read("/opt/data/.env");
    let keys = api_key(&env);
    assert_eq!(env, format!("API_SERVER_KEY={}\n", keys[0]));
    assert!(is_hex64(keys[0]));
    assert_eq!((r.owner("/opt/data/.env"), r.mode("/opt/data/.env")), (U, 0o600));
}

#[test]
fn environment_key_wins_and_is_not_generated() {
    let r = image();
    r.mkdir("/opt/data");
    r.write("/opt/data/.env", "A=1\nAPI_SERVER_KEY=\n");
    let out = stage2(&r, &[("API_SERVER_KEY", "short")]);
    out.assert_code(0);
    assert_eq!(r.read("/opt/data/.env"), "A=1\n");
    assert!(out
        .stdout
        .contains("[stage2] API_SERVER_KEY provided via container environment — skipping generation"));
    assert!(
        out.stdout.contains("shorter than 16 characters"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("short\n") && !out.stdout.contains("=short"),
        "the key must never be printed"
    );

    r.write("/opt/data/.env", "API_SERVER_KEY=fromfile\n");
    let out = stage2(&r, &[("API_SERVER_KEY", "0123456789abcdef0123")]);
    assert!(
        out.stdout.contains("the .env value wins at runtime"),
        "{}",
        out.stdout
    );
    assert_eq!(r.read("/opt/data/.env"), "API_SERVER_KEY=fromfile\n");
}

#[test]
fn routing_overrides_are_synced_into_home_and_profiles_and_removed_when_unset() {
    let r = image();
    r.mkdir("/opt/data/profiles/alpha");
    r.mkdir("/opt/data/profiles/beta");
    r.write(
        "/opt/data/profiles/beta/.env",
        "NOUS_PORTAL_BASE_URL=hand-written\nB=2",
    );
    let set = [
        ("NOUS_PORTAL_BASE_URL", "https://portal"),
        ("HERMES_PORTAL_BASE_URL", "https://h"),
    ];
    let out = stage2(&r, &set);
    out.assert_code(0);
    for f in [
        "/opt/data/.env",
        "/opt/data/profiles/alpha/.env",
        "/opt/data/profiles/beta/.env",
    ] {
        let text = r.read(f);
        assert!(
            text.contains("NOUS_PORTAL_BASE_URL=https://portal # stage2-managed\n"),
            "{f}: {text}"
        );
        assert!(
            text.contains("HERMES_PORTAL_BASE_URL=https://h # stage2-managed\n"),
            "{f}: {text}"
        );
        assert!(
            !text.contains("hand-written"),
            "a set variable replaces hand-written lines"
        );
        assert!(
            out.stdout.contains(&format!(
                "[stage2] Synced NOUS_PORTAL_BASE_URL from the container environment into {f}"
            )),
            "{}",
            out.stdout
        );
    }
    assert_eq!(
        (
            r.owner("/opt/data/profiles/alpha/.env"),
            r.mode("/opt/data/profiles/alpha/.env")
        ),
        (U, 0o600)
    );
    assert!(r.read("/opt/data/profiles/beta/.env").starts_with("B=2\n"));

    // Unchanged values: nothing written, nothing said.
    let before = test_support::ctime_ns(&r.path("/opt/data/profiles/beta/.env"));
    let out = stage2(&r, &set);
    assert!(!out.stdout.contains("Synced"), "{}", out.stdout);
    assert_eq!(
        test_support::ctime_ns(&r.path("/opt/data/profiles/beta/.env")),
        before
    );

    // Unset: managed lines go, hand-written ones stay.
    let text = r.read("/opt/data/profiles/alpha/.env");
    r.write(
        "/opt/data/profiles/alpha/.env",
        format!("HERMES_PORTAL_BASE_URL=mine\n{text}"),
    );
    let out = stage2(&r, &[]);
    assert_eq!(
        r.read("/opt/data/profiles/alpha/.env"),
        "HERMES_PORTAL_BASE_URL=mine\n"
    );
    assert!(out.stdout.contains(
        "[stage2] Removed NOUS_PORTAL_BASE_URL from /opt/data/profiles/alpha/.env (no longer set in the container environment)"
    ));
    assert!(!r.read("/opt/data/.env").contains("stage2-managed"));
}

#[test]
fn routing_value_with_a_newline_is_not_synced() {
    let r = image();
    let out = stage2(&r, &[("NOUS_INFERENCE_BASE_URL", "https://x\nEVIL=1")]);
    out.assert_code(0);
    assert!(
        out.stdout
            .contains("NOUS_INFERENCE_BASE_URL contains a newline; not synced"),
        "{}",
        out.stdout
    );
    assert!(!r.read("/opt/data/.env").contains("EVIL"));
}

#[test]
fn routing_value_with_a_carriage_return_or_unicode_break_is_not_synced() {
    // dotenv parsers end a line at `\r`: written verbatim, this value became two variables.
    for (value, what) in [
        (
            "https://x\rOPENAI_BASE_URL=https://attacker.example",
            "a carriage return",
        ),
        (
            "https://x\u{2028}OPENAI_BASE_URL=https://attacker.example",
            "a line separator",
        ),
    ] {
        let r = image();
        let out = stage2(&r, &[("HERMES_PORTAL_BASE_URL", value)]);
        out.assert_code(0);
        assert!(
            out.stdout
                .contains(&format!("HERMES_PORTAL_BASE_URL contains {what}; not synced")),
            "{}",
            out.stdout
        );
        assert!(!r.read("/opt/data/.env").contains("OPENAI_BASE_URL"), "{value:?}");
    }
}

#[test]
fn auth_json_bootstrap_lands_in_home_verbatim_and_is_never_replaced() {
    let r = image();
    let value = "{\"providers\": {\"nous\": {\"token\": \"s3cr3t\"}}}";
    let out = stage2(&r, &[("HERMES_AUTH_JSON_BOOTSTRAP", value)]);
    out.assert_code(0);
    assert_eq!(r.read("/opt/data/auth.json"), value);
    assert_eq!(
        (r.owner("/opt/data/auth.json"), r.mode("/opt/data/auth.json")),
        (U, 0o600)
    );
    assert!(out
        .stdout
        .contains("[stage2] Seeded /opt/data/auth.json from HERMES_AUTH_JSON_BOOTSTRAP"));
    assert!(!out.all().contains("s3cr3t"));
    let out = stage2(&r, &[("HERMES_AUTH_JSON_BOOTSTRAP", "{\"other\":1}")]);
    assert_eq!(r.read("/opt/data/auth.json"), value);
    assert!(!out.stdout.contains("Seeded"));
}

#[test]
fn auth_home_residence_for_a_named_profile() {
    let r = image();
    let out = stage2(
        &r,
        &[
            ("HERMES_HOME", "/opt/data/profiles/work"),
            ("HERMES_AUTH_HOME", "//srv//auth/"),
            ("HERMES_AUTH_JSON_BOOTSTRAP", "{}"),
        ],
    );
    out.assert_code(0);
    assert_eq!(r.read("/srv/auth/profiles/work/auth.json"), "{}");
    assert_eq!(r.mode("/srv/auth/profiles/work/auth.json"), 0o600);
    assert_eq!((r.owner("/srv"), r.mode("/srv")), ((0, 0), 0o755));
    for d in ["/srv/auth", "/srv/auth/profiles", "/srv/auth/profiles/work"] {
        assert_eq!((r.owner(d), r.mode(d)), (U, 0o700), "{d}");
    }
    assert!(
        !r.exists("/opt/data/profiles/work/auth.json"),
        "nothing is written under H"
    );
    assert!(out
        .stdout
        .contains("Seeded /srv/auth/profiles/work/auth.json from HERMES_AUTH_JSON_BOOTSTRAP"));
}

#[test]
fn auth_home_warm_repair_touches_only_the_listed_entries() {
    let r = image();
    for f in [
        "/auth/auth.json",
        "/auth/auth.lock",
        "/auth/auth.json.tmp.77",
        "/auth/..anthropic_oauth_x.tmp",
        "/auth/auth.json.rebootstrap.tmp",
        "/auth/unrelated",
        "/auth/shared/nous_auth.json",
        "/auth/shared/other",
    ] {
        // Root's, and readable by the runtime user: the repair may hand them over (a 0600 file of root's
        // it may not; see hostile-tests' volume_attacks).
        r.write(f, "x");
        r.chmod(f, 0o644);
    }
    stage2(&r, &[("HERMES_AUTH_HOME", "/auth")]).assert_code(0);
    for f in [
        "/auth",
        "/auth/shared",
        "/auth/auth.json",
        "/auth/auth.lock",
        "/auth/auth.json.tmp.77",
        "/auth/..anthropic_oauth_x.tmp",
        "/auth/shared/nous_auth.json",
    ] {
        assert_eq!(r.owner(f), U, "{f}");
    }
    assert_eq!(r.mode("/auth/auth.json"), 0o644, "modes are kept");
    for f in [
        "/auth/auth.json.rebootstrap.tmp",
        "/auth/unrelated",
        "/auth/shared/other",
    ] {
        assert_eq!(r.owner(f), (0, 0), "{f}");
    }
}

#[test]
fn invalid_auth_home_seeds_nothing_anywhere() {
    for bad in ["relative", "/", "//", "/srv/../etc", " /srv/auth", "~/auth"] {
        let r = image();
        let out = stage2(
            &r,
            &[("HERMES_AUTH_HOME", bad), ("HERMES_AUTH_JSON_BOOTSTRAP", "{}")],
        );
        out.assert_code(0);
        assert!(
            out.stdout
                .contains("Warning: ignoring invalid HERMES_AUTH_HOME ("),
            "{bad}: {}",
            out.stdout
        );
        assert!(out.stdout.contains("auth.json is not seeded anywhere"));
        assert!(!r.exists("/opt/data/auth.json"), "{bad}");
        assert!(!r.exists("/auth.json"), "{bad}");
        assert_eq!((r.owner("/"), r.mode("/")), ((0, 0), 0o755), "{bad}");
    }
}

#[test]
fn auth_home_from_the_container_environment_directory() {
    let r = image();
    r.write("/run/s6/container_environment/HERMES_AUTH_HOME", "/auth");
    stage2(&r, &[("HERMES_AUTH_JSON_BOOTSTRAP", "{}")]).assert_code(0);
    assert_eq!(r.read("/auth/auth.json"), "{}");
    assert!(!r.exists("/opt/data/auth.json"));
}

#[test]
fn gateway_state_is_seeded_only_for_running() {
    let r = image();
    stage2(&r, &[("HERMES_GATEWAY_BOOTSTRAP_STATE", "stopped")]).assert_code(0);
    assert!(!r.exists("/opt/data/gateway_state.json"));
    stage2(&r, &[]).assert_code(0);
    assert!(!r.exists("/opt/data/gateway_state.json"));
    stage2(&r, &[("HERMES_GATEWAY_BOOTSTRAP_STATE", "running")]).assert_code(0);
    assert_eq!(
        r.read("/opt/data/gateway_state.json"),
        "{\"gateway_state\":\"running\"}\n"
    );
    assert_eq!(
        (
            r.owner("/opt/data/gateway_state.json"),
            r.mode("/opt/data/gateway_state.json")
        ),
        (U, 0o644)
    );
    r.write("/opt/data/gateway_state.json", "{\"gateway_state\":\"stopped\"}");
    stage2(&r, &[("HERMES_GATEWAY_BOOTSTRAP_STATE", "running")]).assert_code(0);
    assert_eq!(
        r.read("/opt/data/gateway_state.json"),
        "{\"gateway_state\":\"stopped\"}"
    );
}

/// A small deterministic PRNG so failures are reproducible from the printed seed.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn sigkill_during_writes_leaves_old_or_new_content_never_partial_or_exposed() {
    require_root();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = XorShift(seed);
    let old_env = "# operator settings\nOPENAI_API_KEY=sk-old\n";
    let auth = "{\"nous\":{\"refresh_token\":\"abc\"}}";
    let fresh = || {
        let r: TempRoot = image();
        r.mkdir("/opt/data");
        r.write("/opt/data/.env", old_env);
        r.chmod("/opt/data/.env", 0o600);
        let mut c = r.command(bin());
        c.env("HERMES_AUTH_JSON_BOOTSTRAP", auth)
            .env("NOUS_PORTAL_BASE_URL", "https://p")
            .stdout(std::process::Stdio::null());
        (r, c)
    };
    // Spread the kills over the whole run: measure how long an undisturbed run takes.
    let (_r, mut c) = fresh();
    let t0 = std::time::Instant::now();
    assert!(c.status().unwrap().success());
    let full = (t0.elapsed().as_micros() as u64).max(200);
    let mut outcomes = [0usize; 2];
    for round in 0..50 {
        let (r, mut c) = fresh();
        let mut child = c.spawn().unwrap();
        std::thread::sleep(Duration::from_micros(rng.next() % full));
        let _ = child.kill();
        let _ = child.wait();

        let env = r.read("/opt/data/.env");
        let with_key = env.starts_with(old_env) && {
            let rest = &env[old_env.len()..];
            let keys = api_key(rest);
            keys.len() == 1 && is_hex64(keys[0])
        };
        assert!(
            env == old_env || with_key || env.starts_with(old_env) && env.ends_with("# stage2-managed\n"),
            "round {round} (seed {seed}): partial .env: {env:?}"
        );
        outcomes[usize::from(env != old_env)] += 1;
        assert_eq!(r.mode("/opt/data/.env"), 0o600, "round {round}");
        if r.exists("/opt/data/auth.json") {
            assert_eq!(r.read("/opt/data/auth.json"), auth, "round {round} (seed {seed})");
            assert_eq!(r.mode("/opt/data/auth.json"), 0o600);
        }
        // Temporaries left by the kill hold secrets too: never readable by anyone but the owner.
        let home = r.path("/opt/data");
        let secrets = names_with(&home, b".tmp.")
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(".env") || p.to_string_lossy().contains("auth.json"));
        for p in secrets {
            assert_eq!(perm(&p) & 0o077, 0, "round {round}: {} is exposed", p.display());
        }
    }
    eprintln!("outcomes (old, changed): {outcomes:?}, seed {seed}, full run {full} µs");
}
