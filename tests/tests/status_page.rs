//! The node's status page (`GET /`, issue #20) opened in headless Chromium against real
//! `skymesh node` processes: two full nodes that are meshed DMSG servers and a visor. The test
//! reads what a person sees from the rendered DOM (the peers table filled with the other full
//! node, the item counts, the DMSG sections) and saves a screenshot in the test's temp dir
//! (`STATUS_PAGE_SCREENSHOT=FILE` keeps a copy).
//!
//! Needs Debian's `chromium` (`.ci/run` installs it); fails, never skips, without it.
#![allow(clippy::unwrap_used)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use keys::SecKey;
use skymesh_tests::{Member, free_port, get_json, multiaddr, poll, run_skymesh, spawn_member};

const DEADLINE: Duration = Duration::from_secs(120);

/// The Chromium binary; panics with an install hint when there is none.
fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let p = Path::new(dir).join(name);
            if p.exists() {
                return p;
            }
        }
    }
    panic!("chromium is not installed: this test needs it (apt-get install -y chromium)");
}

/// Loads `url` in headless Chromium, lets the page run for `budget_ms` of virtual time (its
/// 2 s refresh included) and returns the DOM as rendered. `profile` keeps Chromium's state
/// inside the test's temp dir.
fn render(url: &str, profile: &Path, budget_ms: u32, screenshot: Option<&Path>) -> String {
    let mut cmd = Command::new(chromium());
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu"])
        .args(["--no-first-run", "--disable-extensions"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg("--window-size=1200,1800");
    match screenshot {
        Some(p) => cmd.arg(format!("--screenshot={}", p.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd.arg(url).output().expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The text of the element with `id` in `dom` (first text run, tags stripped).
fn text_of(dom: &str, id: &str) -> Option<String> {
    let start = dom.find(&format!("id=\"{id}\""))?;
    let rest = &dom[start..];
    let open_end = rest.find('>')?;
    let body = &rest[open_end + 1..];
    let close = body.find("</")?;
    Some(body[..close].trim().to_owned())
}

/// The RTT cell ("N.N ms") of the row of server `pk` in the DMSG client's servers table.
fn rtt_cell(servers: &str, pk: &str) -> Option<String> {
    let row = servers.split("<tr>").find(|r| r.contains(pk))?;
    let cell = row.split("<td>").nth(2)?;
    let text = &cell[..cell.find("</td>")?];
    text.ends_with(" ms").then(|| text.to_owned())
}

/// The `<tbody>` of the table with `id`.
fn tbody_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("<table id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table {id}"));
    let rest = &dom[start..];
    let end = rest.find("</table>").unwrap();
    let table = &rest[..end];
    table.split("<tbody>").nth(1).unwrap_or("")
}

fn deploy(dir: &Path, fulls: &[(SecKey, u16)]) -> PathBuf {
    let bootstrap: Vec<String> = fulls.iter().map(|(k, p)| multiaddr(k, *p)).collect();
    let path = dir.join("deploy.json");
    std::fs::write(
        &path,
        serde_json::json!({"v": 1, "name": "status-page", "dht_bootstrap": bootstrap}).to_string(),
    )
    .unwrap();
    path
}

const MESH: [&str; 5] = [
    "--mesh-dht",
    "--mesh-allow",
    "any",
    "--mesh-refresh-ms",
    "500",
];

fn healthy(m: &Member) {
    poll(&format!("{} healthy", m.name), DEADLINE, || {
        get_json(m.http, "/health")
    });
}

#[test]
fn status_page_shows_live_peers_items_and_dmsg_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fulls: Vec<(SecKey, u16)> = (0..2).map(|_| (SecKey::generate(), free_port())).collect();
    let deploy = deploy(dir, &fulls);
    let mesh: Vec<&OsStr> = MESH.iter().map(OsStr::new).collect();
    let a = spawn_member(
        dir,
        &deploy,
        "full-a",
        fulls[0].0.clone(),
        fulls[0].1,
        true,
        &mesh,
    );
    let b = spawn_member(
        dir,
        &deploy,
        "full-b",
        fulls[1].0.clone(),
        fulls[1].1,
        true,
        &mesh,
    );
    healthy(&a);
    healthy(&b);
    let v = spawn_member(
        dir,
        &deploy,
        "visor",
        SecKey::generate(),
        free_port(),
        false,
        &[],
    );
    healthy(&v);

    // Two items under one salt (one per node key), written through the CLI.
    for m in [&a, &b] {
        let out = run_skymesh(
            &[
                "dht",
                "put",
                "--node",
                &m.url(),
                "--salt",
                "status-demo",
                "--value",
                "hi",
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let info_b = get_json(b.http, "/api/v1/info").unwrap();
    let peer_b = info_b["peer_id"].as_str().unwrap().to_owned();
    let profile = dir.join("chromium-profile");
    let url = format!("http://127.0.0.1:{}/", a.http);

    // What a person sees on full-a's page once the data is live: full-b in the peers table
    // (as a full node and as a mesh link that is up), both items of the salt, the DMSG server
    // holding the visor's session.
    let dom = poll("full-a's page to show the network", DEADLINE, || {
        let dom = render(&url, &profile, 5_000, None);
        let peers = tbody_of(&dom, "peers");
        let items = tbody_of(&dom, "items");
        let ok = dom.contains("data-state=\"live\"")
            && peers.contains(&peer_b)
            && peers.contains(&b.pk())
            && peers.contains("class=\"up\"")
            && items.contains("<td>status-demo</td><td>2</td>")
            && text_of(&dom, "srv-sessions").is_some_and(|s| s != "0");
        ok.then_some(dom)
    });
    assert_eq!(text_of(&dom, "role").as_deref(), Some("full"));
    assert_eq!(text_of(&dom, "public-key"), Some(a.pk()));
    assert_eq!(text_of(&dom, "deployment").as_deref(), Some("status-page"));
    assert!(
        !dom.contains("id=\"dmsg-server\" hidden"),
        "server section shown"
    );
    let total: u64 = text_of(&dom, "items-total").unwrap().parse().unwrap();
    assert!(total >= 2, "items-total {total}");
    // Times are shown for people, not as Unix milliseconds.
    let boot = text_of(&dom, "last-bootstrap").unwrap();
    assert!(
        boot == "never" || boot.contains(" ago)"),
        "last bootstrap: {boot}"
    );

    // The visor's page shows its DMSG client with the server it holds a session with and that
    // server's session-ping RTT.
    let vurl = format!("http://127.0.0.1:{}/", v.http);
    let rtt = poll(
        "the visor's page to show its DMSG servers with their RTT",
        DEADLINE,
        || {
            let dom = render(&vurl, &profile, 5_000, None);
            let servers = tbody_of(&dom, "dmsg-servers");
            let rtt = [a.pk(), b.pk()]
                .iter()
                .find_map(|pk| rtt_cell(servers, pk))?;
            (dom.contains("data-state=\"live\"")
                && text_of(&dom, "role").as_deref() == Some("regular")
                && !dom.contains("id=\"mailbox\" hidden"))
            .then_some(rtt)
        },
    );
    // Loopback: a positive time well under a second, printed as "N.N ms".
    let ms: f64 = rtt.strip_suffix(" ms").unwrap().parse().unwrap();
    assert!(ms > 0.0 && ms < 1_000.0, "RTT {rtt}");

    // A message for a visor that is offline waits in both servers' mailboxes (the recipient's
    // two closest servers); full-a's page counts it.
    let offline = SecKey::generate().pubkey().to_hex();
    poll("the visor to store a message", DEADLINE, || {
        let out = run_skymesh(
            &[
                "msg",
                "send",
                "--node",
                &v.url(),
                "--to",
                &offline,
                "--text",
                "later",
            ],
            None,
        );
        out.status.success().then_some(())
    });
    let mailbox = poll("full-a's page to count its mailbox", DEADLINE, || {
        let dom = render(&url, &profile, 5_000, None);
        text_of(&dom, "srv-mailbox").filter(|t| t.starts_with("1 messages for 1 recipients"))
    });
    assert!(mailbox.ends_with(" of 1.0 GiB"), "{mailbox}");
    let api = get_json(a.http, "/api/v1/dmsg").unwrap();
    assert_eq!(api["server"]["mailbox"]["messages"], 1, "{api}");
    assert_eq!(api["server"]["mailbox"]["recipients"], 1, "{api}");

    let shot = dir.join("status-page.png");
    render(&url, &profile, 5_000, Some(&shot));
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
    assert!(
        png.len() > 10_000,
        "screenshot has content ({} bytes)",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
    // `STATUS_PAGE_SCREENSHOT=docs/img/status-page.png` keeps a copy (how the README's is made).
    if let Ok(keep) = std::env::var("STATUS_PAGE_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}

#[test]
fn status_page_asks_for_the_token_and_goes_live_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (sk, p2p) = (SecKey::generate(), free_port());
    let deploy = deploy(dir, &[(sk.clone(), p2p)]);
    let a = spawn_member(
        dir,
        &deploy,
        "full",
        sk,
        p2p,
        true,
        &[OsStr::new("--admin-auth"), OsStr::new("token")],
    );
    healthy(&a);
    let token = std::fs::read_to_string(dir.join("full").join("admin.token")).unwrap();
    let profile = dir.join("chromium-profile");

    // Without the token the page loads (it holds no data) and asks for it.
    let dom = render(
        &format!("http://127.0.0.1:{}/", a.http),
        &profile,
        3_000,
        None,
    );
    assert!(dom.contains("data-state=\"error\""), "{dom}");
    assert_eq!(
        text_of(&dom, "state").as_deref(),
        Some("admin token needed")
    );
    assert!(!dom.contains("id=\"auth\" hidden"), "token form shown");
    assert_eq!(text_of(&dom, "public-key").as_deref(), Some("–"));

    // With the token in the URL fragment (never sent to the server) the data appears.
    let url = format!("http://127.0.0.1:{}/#token={}", a.http, token.trim());
    let dom = poll("the page to go live with the token", DEADLINE, || {
        let dom = render(&url, &profile, 3_000, None);
        dom.contains("data-state=\"live\"").then_some(dom)
    });
    assert_eq!(text_of(&dom, "public-key"), Some(a.pk()));
}

#[test]
fn devnet_prints_each_nodes_status_page() {
    use std::io::BufRead;
    let mut cmd = Command::new(skymesh_tests::skymesh_bin());
    cmd.args(["devnet", "--full", "2", "--visors", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut devnet = skymesh_tests::Proc::spawn("devnet", &mut cmd).unwrap();
    let stdout = devnet.child.stdout.take().unwrap();
    let mut urls = Vec::new();
    let mut seen = String::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("Ctrl-C stops every node") {
            break;
        }
        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://"))
            && line.starts_with("    ")
        {
            urls.push(url.to_owned());
        }
    }
    assert!(seen.contains("status pages"), "{seen}");
    assert_eq!(urls.len(), 2, "one page per node: {seen}");
    for url in urls {
        let port: u16 = url
            .trim_start_matches("http://127.0.0.1:")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|_| panic!("{url}"));
        let (code, body) = skymesh_tests::http_request(port, "GET", "/", None).unwrap();
        assert_eq!(code, 200, "{url}");
        assert!(
            body.contains("<title>skymesh node</title>"),
            "{url}: {body}"
        );
    }
    devnet.kill();
}
