//! RP-16 against a hostile volume: the boot log name hard-linked to a root file outside the volume.

use test_support::{run, TempRoot};

const BIN: &str = env!("CARGO_BIN_EXE_reconcile-profiles");

#[test]
fn boot_log_hard_linked_to_a_root_file_is_not_appended_to() {
    let r = TempRoot::for_reconcile();
    r.mkdir("/opt/data/logs");
    // A root file the runtime user could hard-link (world-writable), linked in as the boot log.
    r.write("/victims/shared", "victim\n");
    r.chmod("/victims/shared", 0o666);
    std::fs::hard_link(
        r.path("/victims/shared"),
        r.path("/opt/data/logs/container-boot.log"),
    )
    .unwrap();

    let out = run(&mut r.command(BIN));
    out.assert_code(0);
    assert_eq!(
        r.read("/victims/shared"),
        "victim\n",
        "root appended to a hard-linked file"
    );
    assert!(
        out.stdout
            .contains("refusing write of hard-linked file /opt/data/logs/container-boot.log (2 links)"),
        "{}",
        out.stdout
    );
    // The slots were still made: one refused log write does not stop the boot.
    assert!(r.exists("/run/service/gateway-default/run"));
}

#[test]
fn boot_log_with_a_second_name_is_refused_even_when_the_runtime_user_owns_it() {
    // The ownership walk's accepted race (CM-08) can leave a foreign world-writable file owned by the
    // runtime user; the boot log still must not be appended to through a second name.
    let r = TempRoot::for_reconcile();
    r.mkdir("/opt/data/logs");
    r.write("/victims/shared", "victim\n");
    r.chmod("/victims/shared", 0o666);
    r.chown("/victims/shared", 10000, 10000);
    std::fs::hard_link(
        r.path("/victims/shared"),
        r.path("/opt/data/logs/container-boot.log"),
    )
    .unwrap();

    let out = run(&mut r.command(BIN));
    out.assert_code(0);
    assert_eq!(r.read("/victims/shared"), "victim\n");
    assert!(
        out.stdout.contains("refusing write of hard-linked file"),
        "{}",
        out.stdout
    );
}
