//! The command line as an operator meets it (issue #20): shell completions and man pages
//! generated from the real flags, one spelling per idea with the reference programs' spellings
//! still accepted, conflicting flags refused, `--log-format`.
#![allow(clippy::unwrap_used)]

use std::process::Output;

use skymesh_tests::run_skymesh;

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn err(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn completions_for_every_shell_name_the_subcommands_and_flags() {
    let cases = [
        ("bash", "complete -F _skymesh"),
        ("zsh", "#compdef skymesh"),
        ("fish", "complete -c skymesh"),
        ("powershell", "Register-ArgumentCompleter"),
    ];
    for (shell, marker) in cases {
        let text = ok(&run_skymesh(&["completions", shell], None));
        assert!(text.contains(marker), "{shell}: {marker}");
        // (fish spells a long flag `-l admin-auth`.)
        for word in [
            "devnet",
            "completions",
            "discovery",
            "admin-auth",
            "log-format",
        ] {
            assert!(text.contains(word), "{shell} completion lacks {word}");
        }
    }
    // bash accepts the script it is given (syntax check, nothing run).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("skymesh.bash");
    std::fs::write(&path, ok(&run_skymesh(&["completions", "bash"], None))).unwrap();
    let st = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .status()
        .unwrap();
    assert!(st.success(), "bash -n on the completion script");
    assert!(err(&run_skymesh(&["completions", "tcsh"], None)).contains("tcsh"));
}

#[test]
fn man_pages_cover_every_subcommand() {
    let page = ok(&run_skymesh(&["man"], None));
    assert!(
        page.starts_with(".ie") || page.contains(".TH skymesh 1"),
        "{page}"
    );
    assert!(page.contains(".SH NAME") && page.contains(".SH SUBCOMMANDS"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    ok(&run_skymesh(&["man", "--out", out.to_str().unwrap()], None));
    for name in [
        "skymesh.1",
        "skymesh-node.1",
        "skymesh-dht-sync.1",
        "skymesh-dmsg-get.1",
        "skymesh-dmsg-discovery.1",
        "skymesh-completions.1",
    ] {
        let text =
            std::fs::read_to_string(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.contains(".TH"), "{name} is roff");
    }
    let node = std::fs::read_to_string(out.join("skymesh-node.1")).unwrap();
    assert!(node.contains("admin\\-auth"), "flags documented");
}

#[test]
fn one_spelling_per_idea_with_reference_aliases() {
    // A full node's multiaddr is --bootstrap everywhere; dmsg get/http still take --dht.
    for old in ["--dht", "--bootstrap"] {
        let e = err(&run_skymesh(
            &[
                "dmsg",
                "get",
                old,
                "not-a-multiaddr",
                "--stdout",
                "dmsg://x:80/",
            ],
            None,
        ));
        assert!(
            e.contains("invalid value 'not-a-multiaddr' for '--bootstrap <MULTIADDR>'"),
            "{old}: {e}"
        );
    }
    // dht sync's full node to pull from is --bootstrap too, with its former --from.
    for old in ["--from", "--bootstrap"] {
        let e = err(&run_skymesh(
            &["dht", "sync", "--node", "http://127.0.0.1:1", old, "nope"],
            None,
        ));
        assert!(
            e.contains("invalid value 'nope' for '--bootstrap <MULTIADDR>'"),
            "{old}: {e}"
        );
    }
    let help = ok(&run_skymesh(&["dht", "sync", "--help"], None));
    assert!(help.contains("--bootstrap <MULTIADDR>"), "{help}");
    // The discovery URL is --disc, with dmsgget's -d/--dmsg-disc and dmsghttp's -D.
    for spelling in [
        &["-d", "http://x"][..],
        &["--dmsg-disc", "http://x"],
        &["--disc", "http://x"],
    ] {
        let mut args = vec!["dmsg", "get", "--bootstrap", "/ip4/127.0.0.1/tcp/1"];
        args.extend_from_slice(spelling);
        args.extend_from_slice(&["--stdout", "dmsg://x:80/"]);
        let e = err(&run_skymesh(&args, None));
        assert!(e.contains("cannot be used with"), "{spelling:?}: {e}");
    }
    // Discovery test mode: --disc-test-mode, as on `node`, with the reference's -t/--test-mode.
    let help = ok(&run_skymesh(&["dmsg", "discovery", "--help"], None));
    assert!(
        help.contains("--disc-test-mode") && help.contains("test-mode"),
        "{help}"
    );
    assert!(help.contains("-t,"), "{help}");
    // A metrics listener is --http, as on `node`, with the reference's -m/--metrics.
    assert!(
        help.contains("--http <HOST:PORT>") && help.contains("-m,"),
        "{help}"
    );
    // --redis and --data of the discovery exclude each other.
    let e = err(&run_skymesh(
        &[
            "dmsg",
            "discovery",
            "--redis",
            "redis://127.0.0.1:1/",
            "--data",
            "/tmp/x",
        ],
        None,
    ));
    assert!(e.contains("cannot be used with"), "{e}");
    // --dmsg-http-port means nothing without --dmsg-http-dir.
    let e = err(&run_skymesh(
        &[
            "node",
            "--role",
            "regular",
            "--listen",
            "/ip4/127.0.0.1/tcp/1",
            "--data",
            "/tmp/x",
            "--dmsg-http-port",
            "81",
        ],
        None,
    ));
    assert!(e.contains("--dmsg-http-dir"), "{e}");
    // The dht help line lists every subcommand.
    let help = ok(&run_skymesh(&["--help"], None));
    let line = help
        .lines()
        .find(|l| l.trim_start().starts_with("dht"))
        .unwrap();
    assert!(line.contains("sync"), "{line}");
}

#[test]
fn public_key_flags_share_one_parser() {
    // node --trusted-writer, mirror put --for, item sign --for and item verify --trusted-writer
    // are typed by one value parser: the same refusal, naming the flag and the value.
    let cases: [&[&str]; 4] = [
        &[
            "node",
            "--role",
            "full",
            "--listen",
            "/ip4/127.0.0.1/tcp/1",
            "--data",
            "/tmp/x",
            "--trusted-writer",
            "xyz",
        ],
        &[
            "mirror",
            "put",
            "--redis",
            "redis://127.0.0.1:1/",
            "--sk",
            "00",
            "--salt",
            "svc",
            "--value",
            "v",
            "--for",
            "xyz",
        ],
        &[
            "item", "sign", "--salt", "svc", "--value", "v", "--for", "xyz",
        ],
        &["item", "verify", "--trusted-writer", "xyz"],
    ];
    for args in cases {
        let e = err(&run_skymesh(args, None));
        let flag = args[args.len() - 2];
        assert!(
            e.contains(&format!(
                "invalid value 'xyz' for '{flag} <PK>': not a public key (66 hex digits)"
            )),
            "{args:?}: {e}"
        );
    }
}

#[test]
fn commands_that_print_data_take_json() {
    for args in [
        &["keygen", "--help"][..],
        &["dht", "info", "--help"],
        &["dht", "sync", "--help"],
        &["tp", "ls", "--help"],
        &["tp", "all", "--help"],
        &["msg", "inbox", "--help"],
        &["msg", "sent", "--help"],
        &["dmsg", "get", "--help"],
    ] {
        let help = ok(&run_skymesh(args, None));
        assert!(help.contains("--json"), "{args:?} has --json");
    }
    let v: serde_json::Value =
        serde_json::from_str(&ok(&run_skymesh(&["keygen", "--json"], None))).unwrap();
    assert!(v["public_key"].is_string());
}

#[test]
fn log_format_is_text_or_json() {
    let help = ok(&run_skymesh(&["--help"], None));
    assert!(help.contains("--log-format <FORMAT>"), "{help}");
    let e = err(&run_skymesh(&["--log-format", "xml", "keygen"], None));
    assert!(e.contains("possible values: text, json"), "{e}");
}

#[test]
fn devnet_json_prints_the_network_state_as_json_lines() {
    use std::io::BufRead;
    let mut cmd = std::process::Command::new(skymesh_tests::skymesh_bin());
    cmd.args(["devnet", "--full", "2", "--visors", "1", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut devnet = skymesh_tests::Proc::spawn("devnet", &mut cmd).unwrap();
    let stdout = devnet.child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    // One document every 2 s: wait (≤ 60 documents) for the network to be up, the servers
    // meshed and the visor holding a session.
    let mut last = String::new();
    let doc = (0..60)
        .find_map(|_| {
            last = lines.next()?.unwrap();
            let doc: serde_json::Value = serde_json::from_str(&last)
                .unwrap_or_else(|e| panic!("not one JSON document per line ({e}): {last}"));
            let nodes = doc["nodes"].as_array().unwrap();
            let ready = nodes.iter().all(|n| n["up"] == true)
                && nodes
                    .iter()
                    .filter(|n| n["role"] == "full")
                    .all(|n| n["dmsg"]["server"]["mesh"]["peers"][0]["up"] == true)
                && nodes.iter().filter(|n| n["role"] == "visor").all(|n| {
                    n["dmsg"]["client"]["servers"]
                        .as_array()
                        .is_some_and(|s| !s.is_empty())
                });
            ready.then_some(doc)
        })
        .unwrap_or_else(|| panic!("the network never came up; last document: {last}"));
    let nodes = doc["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{doc}");
    assert!(
        doc["data"].as_str().unwrap().contains("skymesh-devnet-"),
        "{doc}"
    );
    let fulls: Vec<&serde_json::Value> = nodes.iter().filter(|n| n["role"] == "full").collect();
    assert_eq!(fulls.len(), 2, "{doc}");
    for n in nodes {
        // The node's own API answers, unchanged: its key matches the devnet's view of it.
        assert_eq!(n["info"]["public_key"], n["public_key"], "{n}");
        assert!(n["p2p"].as_str().unwrap().contains("/p2p/"), "{n}");
        // The status page URL serves the page.
        let port: u16 = n["status_page"]
            .as_str()
            .unwrap()
            .trim_start_matches("http://127.0.0.1:")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let (status, body) = skymesh_tests::http_request(port, "GET", "/", None).unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("skymesh"), "{body}");
    }
    for f in &fulls {
        assert!(f["dmsg_address"].is_string(), "{f}");
        assert_eq!(f["info"]["role"], "full", "{f}");
    }
    let visor = nodes.iter().find(|n| n["role"] == "visor").unwrap();
    assert!(visor["dmsg_address"].is_null(), "{visor}");
    let held = visor["dmsg"]["client"]["servers"][0].as_str().unwrap();
    assert!(fulls.iter().any(|f| f["public_key"] == held), "{doc}");

    // Ctrl-C stops it cleanly.
    let pid = devnet.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = devnet.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn devnet_json_and_check_exclude_each_other() {
    let e = err(&run_skymesh(&["devnet", "--json", "--check"], None));
    assert!(e.contains("cannot be used with"), "{e}");
}
