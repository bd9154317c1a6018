//! The layering of docs/architecture.md ("Allowed dependencies"), checked against the real
//! manifests: `cargo metadata --no-deps` lists every workspace crate's normal dependencies, and
//! a crate that depends on something its row forbids fails this test.
//!
//! The table is encoded below ([`RULES`]); [`the_doc_table_lists_the_same_crates`] fails when a
//! row is added to or removed from one but not the other. Dev-dependencies are not checked (tests
//! may use anything).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Command;

/// Crates that open sockets or run an async runtime: none of them in a protocol core.
const SOCKETS: &[&str] = &[
    "tokio",
    "mio",
    "socket2",
    "hyper",
    "hyper-util",
    "reqwest",
    "axum",
    "redis",
    "libp2p",
];

/// One row of the table: the name in the doc, the package, and what it must not depend on
/// (package names; [`SOCKETS`] is spelled out where a row says "sockets").
struct Rule {
    doc_name: &'static str,
    package: &'static str,
    sockets: bool,
    forbidden: &'static [&'static str],
}

/// docs/architecture.md, "Allowed dependencies", column "must not depend on".
const RULES: &[Rule] = &[
    Rule {
        doc_name: "keys",
        package: "skymesh-keys",
        sockets: true,
        forbidden: &[
            "skymesh-dmsg-proto",
            "skymesh-dht",
            "skymesh-sync",
            "skymesh-dht-node",
            "skymesh-dmsg",
            "skymesh-mirror",
            "skymesh-overlay",
            "skymesh-tp",
        ],
    },
    Rule {
        doc_name: "dmsg-proto",
        package: "skymesh-dmsg-proto",
        sockets: true,
        forbidden: &[
            "skymesh-dht",
            "skymesh-sync",
            "skymesh-dht-node",
            "skymesh-dmsg",
            "skymesh-mirror",
            "skymesh-overlay",
            "skymesh-tp",
        ],
    },
    Rule {
        doc_name: "dht",
        package: "skymesh-dht",
        sockets: true,
        forbidden: &[
            "skymesh-sync",
            "skymesh-dht-node",
            "skymesh-dmsg",
            "skymesh-mirror",
            "skymesh-overlay",
            "skymesh-tp",
        ],
    },
    Rule {
        doc_name: "itemsync",
        package: "skymesh-sync",
        sockets: true,
        forbidden: &[
            "skymesh-dht-node",
            "skymesh-dmsg",
            "skymesh-mirror",
            "skymesh-overlay",
            "skymesh-tp",
        ],
    },
    Rule {
        doc_name: "dht-node",
        package: "skymesh-dht-node",
        sockets: false,
        forbidden: &[
            "skymesh-dmsg",
            "skymesh-mirror",
            "skymesh-overlay",
            "skymesh-tp",
        ],
    },
    Rule {
        doc_name: "dhtsim",
        package: "skymesh-dhtsim",
        sockets: false,
        forbidden: &["tokio", "skymesh-dmsg", "skymesh-mirror", "skymesh-overlay"],
    },
    Rule {
        doc_name: "overlay",
        package: "skymesh-overlay",
        sockets: false,
        forbidden: &["skymesh-mirror"],
    },
    Rule {
        doc_name: "tp",
        package: "skymesh-tp",
        sockets: false,
        forbidden: &["skymesh-mirror", "skymesh-overlay"],
    },
    Rule {
        doc_name: "mirror",
        package: "skymesh-mirror",
        sockets: false,
        forbidden: &[
            "libp2p",
            "skymesh-dht-node",
            "skymesh-dmsg",
            "skymesh-overlay",
            "skymesh-tp",
        ],
    },
    Rule {
        doc_name: "dmsg",
        package: "skymesh-dmsg",
        sockets: false,
        forbidden: &[
            "skymesh-dht",
            "skymesh-sync",
            "skymesh-dht-node",
            "skymesh-mirror",
            "skymesh-overlay",
            "skymesh-tp",
        ],
    },
    Rule {
        doc_name: "bin",
        package: "skymesh-bin",
        sockets: false,
        forbidden: &[],
    },
    Rule {
        doc_name: "tests",
        package: "skymesh-tests",
        sockets: false,
        forbidden: &[],
    },
];

/// Nothing may depend on these.
const LEAVES: &[&str] = &["skymesh-bin", "skymesh-tests"];

/// Each workspace package and its normal (non-dev, non-build) dependencies.
fn workspace() -> BTreeMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_string())
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn every_crate_respects_the_layering_table() {
    let ws = workspace();
    let mut violations = Vec::new();
    for (package, deps) in &ws {
        let rule = RULES
            .iter()
            .find(|r| r.package == package)
            .unwrap_or_else(|| {
                panic!("workspace crate {package} has no row in RULES (and docs/architecture.md)")
            });
        for dep in deps {
            if LEAVES.contains(&dep.as_str()) {
                violations.push(format!("{package} depends on {dep}, which nothing may"));
            }
            if rule.forbidden.contains(&dep.as_str()) {
                violations.push(format!("{package} depends on {dep} (forbidden by its row)"));
            }
            if rule.sockets && SOCKETS.contains(&dep.as_str()) {
                violations.push(format!(
                    "{package} depends on {dep}: a protocol core has no tokio and no sockets"
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations (docs/architecture.md, Allowed dependencies):\n{}",
        violations.join("\n")
    );
    for r in RULES {
        assert!(
            ws.contains_key(r.package),
            "RULES names {} but the workspace has no such crate",
            r.package
        );
    }
}

#[test]
fn the_doc_table_lists_the_same_crates() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/architecture.md"
    ))
    .unwrap();
    let section = doc
        .split("## Allowed dependencies")
        .nth(1)
        .expect("docs/architecture.md has an Allowed dependencies section");
    let rows: Vec<String> = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .filter_map(|l| {
            let first = l.split('|').nth(1)?.trim();
            let name = first.split('`').nth(1)?;
            Some(name.to_string())
        })
        .collect();
    let encoded: Vec<String> = RULES.iter().map(|r| r.doc_name.to_string()).collect();
    assert_eq!(
        rows, encoded,
        "the rows of docs/architecture.md's Allowed dependencies table and RULES differ"
    );
}
