//! Spread of visors over DMSG servers, end to end with real `skymesh` processes: a devnet of 3
//! full nodes and 6 visors started together, no visor pinned to a server. `devnet --check`
//! verifies that no server holds more than ⌈visors / servers⌉ + 1 visors, and again after one
//! server is killed (its visors move to the others).
use skymesh_tests::run_skymesh;

#[test]
fn devnet_visors_spread_over_servers_also_after_a_server_dies() {
    let out = run_skymesh(&["devnet", "--check", "--full", "3", "--visors", "6"], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "devnet --check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.contains(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{stdout}"))
            .to_string()
    };
    // ⌈6/3⌉ + 1 = 3 with three servers, ⌈6/2⌉ + 1 = 4 with two.
    assert!(
        line("✔ spread: visors per server").contains("≤ 3 ("),
        "{stdout}"
    );
    assert!(
        line("✔ spread after killing full-2: visors per server").contains("≤ 4 ("),
        "{stdout}"
    );
}
