//! `skymesh devnet --check`: what is verified once the network is up — DHT round trips,
//! DMSG sessions and relays, the server mesh, the discovery API, store-and-forward.
use std::time::{Duration, Instant};

use super::{CHECK_SALT, DmsgStatus, Member, get_json, links_up};
use crate::api;
use serde_json::Value;

/// `Ok` when the visor holds exactly one DMSG session.
async fn one_session(http: &reqwest::Client, v: &Member) -> Result<(), String> {
    let d: DmsgStatus = get_json(http, &format!("{}{}", v.http, api::DMSG))
        .await
        .ok_or(format!("{}: no dmsg status", v.name))?;
    let Some(c) = d.client else {
        return Err(format!("{} has no DMSG client", v.name));
    };
    match c.servers.len() {
        1 => Ok(()),
        n => Err(format!(
            "{} holds {n} DMSG sessions (want 1; on demand: {:?}; streams: {:?})",
            v.name, c.on_demand, c.session_streams
        )),
    }
}

/// Streams the full nodes forwarded to mesh peers so far.
async fn forwarded(http: &reqwest::Client, fulls: &[&Member]) -> u64 {
    let mut n = 0;
    for f in fulls {
        if let Some(d) = get_json::<DmsgStatus>(http, &format!("{}{}", f.http, api::DMSG)).await {
            n += d.server.map_or(0, |s| s.mesh.forwarded_streams);
        }
    }
    n
}

/// Retries `f` until it returns `Ok` or `deadline` passes; returns the last error.
async fn until<F, Fut>(deadline: Instant, mut f: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    loop {
        match f().await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

fn report(ok: &mut bool, what: &str, r: Result<(), String>, started: Instant) {
    match r {
        Ok(()) => println!("✔ {what} ({:.1} s)", started.elapsed().as_secs_f64()),
        Err(e) => {
            *ok = false;
            println!("✘ {what}: {e}");
        }
    }
}

pub(super) async fn check(http: &reqwest::Client, members: &[Member], timeout: Duration) -> bool {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut ok = true;
    let fulls: Vec<&Member> = members.iter().filter(|m| m.full).collect();
    let visors: Vec<&Member> = members.iter().filter(|m| !m.full).collect();
    println!(
        "devnet: {} full nodes (DMSG servers), {} visors; checking…",
        fulls.len(),
        visors.len()
    );

    // 1. Every node sees the full nodes.
    let r = until(deadline, || async {
        for m in members {
            let info: api::InfoView = get_json(http, &format!("{}{}", m.http, api::INFO))
                .await
                .ok_or(format!("{}: no info", m.name))?;
            let known = info.full_nodes.len();
            let want = if m.full { fulls.len() - 1 } else { fulls.len() };
            if known < want {
                return Err(format!("{} knows {known}/{want} full nodes", m.name));
            }
        }
        Ok(())
    })
    .await;
    report(&mut ok, "every node knows every full node", r, started);

    // 2. DHT round trip: a put on the first node is read back on every node.
    let value = format!("devnet-check-{}", dmsg::now_ns());
    let writer = &members[0];
    let put = http
        .post(format!("{}{}", writer.http, api::PUT))
        .json(&api::PutRequest {
            salt: CHECK_SALT.into(),
            value: value.clone(),
        })
        .send()
        .await;
    let r = match put {
        Ok(r) if r.status().is_success() => {
            until(deadline, || async {
                for m in members {
                    let url = format!("{}{}?pk={}&salt={CHECK_SALT}", m.http, api::GET, writer.pk);
                    let got: api::ItemView = get_json(http, &url)
                        .await
                        .ok_or(format!("{}: not found yet", m.name))?;
                    if got.value != value {
                        return Err(format!("{}: read {:?}", m.name, got.value));
                    }
                }
                Ok(())
            })
            .await
        }
        Ok(r) => Err(format!("put answered {}", r.status())),
        Err(e) => Err(format!("put failed: {e}")),
    };
    report(
        &mut ok,
        &format!(
            "DHT: item put on {} read back on all {} nodes",
            writer.name,
            members.len()
        ),
        r,
        started,
    );

    // 3. Every visor holds exactly one DMSG session, and the servers' mesh links are up. With
    // several servers, visors that picked the same one are spread by rebalancing (a few seconds
    // after start): wait for that, so that the fetches below cross servers.
    let r = until(deadline, || async {
        let mut held = std::collections::BTreeSet::new();
        for v in &visors {
            one_session(http, v).await?;
            if let Some(d) = get_json::<DmsgStatus>(http, &format!("{}{}", v.http, api::DMSG)).await
            {
                held.extend(d.client.map(|c| c.servers).unwrap_or_default());
            }
        }
        if fulls.len() > 1 && visors.len() > 1 && held.len() < 2 {
            return Err("every visor is on the same server (waiting for rebalancing)".into());
        }
        for f in &fulls {
            let d: DmsgStatus = get_json(http, &format!("{}{}", f.http, api::DMSG))
                .await
                .ok_or(format!("{}: no dmsg status", f.name))?;
            let up = d.server.as_ref().map_or(0, links_up);
            if up + 1 < fulls.len() {
                return Err(format!(
                    "{}: {up}/{} mesh links up",
                    f.name,
                    fulls.len() - 1
                ));
            }
        }
        Ok(())
    })
    .await;
    report(
        &mut ok,
        "DMSG: every visor holds one session with a server found in the DHT; the servers are meshed",
        r,
        started,
    );
    let forwarded_before = forwarded(http, &fulls).await;

    // 4. Every visor fetches every other visor's page over DMSG.
    let pairs = visors.len() * visors.len().saturating_sub(1);
    let r = until(deadline, || async {
        for a in &visors {
            for b in &visors {
                if a.pk == b.pk {
                    continue;
                }
                let url = format!(
                    "{}{}?url=dmsg://{}:80/index.html",
                    a.http,
                    api::DMSG_FETCH,
                    b.pk
                );
                let resp = http.get(&url).send().await.map_err(|e| e.to_string())?;
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                if !status.is_success() || !body.contains(&b.pk) {
                    return Err(format!("{} → {}: {status} {body}", a.name, b.name));
                }
            }
        }
        Ok(())
    })
    .await;
    report(
        &mut ok,
        &format!("DMSG relay: {pairs} visor-to-visor fetches over DMSG-HTTP"),
        r,
        started,
    );

    // 4b. Those fetches crossed servers through the mesh: visors still hold one session each.
    let mut servers_of = Vec::new();
    for v in &visors {
        let d: Option<DmsgStatus> = get_json(http, &format!("{}{}", v.http, api::DMSG)).await;
        servers_of.push(d.and_then(|d| d.client).map(|c| c.servers));
    }
    let cross = (0..visors.len())
        .flat_map(|a| (0..visors.len()).map(move |b| (a, b)))
        .filter(|(a, b)| a != b && servers_of[*a] != servers_of[*b])
        .count();
    // A visor may open a session to reach a peer while the mesh cannot; it closes it when idle.
    let r = until(
        deadline.max(Instant::now() + Duration::from_secs(60)),
        || async {
            for v in &visors {
                one_session(http, v).await?;
            }
            Ok(())
        },
    )
    .await;
    let r = async {
        r?;
        let fwd = forwarded(http, &fulls).await - forwarded_before;
        if cross > 0 && fwd == 0 {
            return Err("no stream was forwarded between servers".to_string());
        }
        if fulls.len() > 1 && visors.len() > 1 && cross == 0 {
            return Err("every visor is on the same server".to_string());
        }
        Ok(())
    }
    .await;
    report(
        &mut ok,
        &format!(
            "DMSG mesh: {cross} of those fetches crossed servers through the mesh; every visor still holds one session"
        ),
        r,
        started,
    );

    // 5. The legacy discovery API of every full node lists every server.
    let r = until(deadline, || async {
        for f in &fulls {
            let list: Vec<Value> = get_json(
                http,
                &format!("{}/dmsg-discovery/available_servers", f.http),
            )
            .await
            .ok_or(format!("{}: available_servers failed", f.name))?;
            let n = list.len();
            if n < fulls.len() {
                return Err(format!("{} lists {n}/{} servers", f.name, fulls.len()));
            }
        }
        Ok(())
    })
    .await;
    report(
        &mut ok,
        "discovery API: every full node lists every DMSG server at /dmsg-discovery/available_servers",
        r,
        started,
    );
    ok
}

/// Store-and-forward: a message to a visor that is stopped waits on the DMSG servers and
/// arrives exactly once after the visor is started again; the sender sees it delivered.
pub(super) async fn check_mailbox(
    http: &reqwest::Client,
    members: &mut [Member],
    timeout: Duration,
) -> bool {
    let started = Instant::now();
    let deadline = started + timeout;
    let visors: Vec<usize> = (0..members.len()).filter(|i| !members[*i].full).collect();
    let (Some(&from), Some(&to)) = (visors.first(), visors.last()) else {
        return true;
    };
    if from == to {
        return true;
    }
    let mut ok = true;
    let text = format!("devnet mailbox check {}", dmsg::now_ns());
    let r = async {
        let m = &mut members[to];
        let _ = m.child.kill();
        let _ = m.child.wait();
        let (sender, rcpt) = (&members[from], &members[to]);
        let req = api::MsgSendRequest {
            to: rcpt.pk.clone(),
            text: Some(text.clone()),
            payload_hex: None,
            ttl: Some(600),
        };
        let sent: api::MsgSent = until_value(deadline, || async {
            let res = http
                .post(format!("{}{}", sender.http, api::MSG_SEND))
                .json(&req)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = res.status();
            if !status.is_success() {
                return Err(format!(
                    "send answered {status}: {}",
                    res.text().await.unwrap_or_default()
                ));
            }
            res.json().await.map_err(|e| e.to_string())
        })
        .await?;
        let m = &mut members[to];
        m.child = m
            .launch
            .spawn()
            .map_err(|e| format!("restarting {}: {e}", m.name))?;
        let rcpt = &members[to];
        until(deadline, || async {
            let inbox: Vec<api::MsgInboxEntry> =
                get_json(http, &format!("{}{}", rcpt.http, api::MSG_INBOX))
                    .await
                    .ok_or(format!("{}: no inbox yet", rcpt.name))?;
            match inbox.iter().filter(|e| e.id == sent.id).count() {
                1 if inbox
                    .iter()
                    .any(|e| e.text.as_deref() == Some(text.as_str())) =>
                {
                    Ok(())
                }
                0 => Err(format!("{} has not received it yet", rcpt.name)),
                n => Err(format!("{} received it {n} times", rcpt.name)),
            }
        })
        .await?;
        let sender = &members[from];
        until(deadline, || async {
            let list: Vec<api::MsgSentEntry> =
                get_json(http, &format!("{}{}", sender.http, api::MSG_SENT))
                    .await
                    .ok_or("no sent list")?;
            match list.iter().find(|s| s.id == sent.id) {
                Some(s) if s.status == "delivered" => Ok(()),
                Some(s) => Err(format!("status {}", s.status)),
                None => Err("not in the sent list".to_string()),
            }
        })
        .await?;
        Ok::<usize, String>(sent.stored_on.len())
    }
    .await;
    let what = format!(
        "mailbox: a message to stopped {} waited on the DMSG servers, arrived once after its restart, and {} saw it delivered",
        members[to].name, members[from].name
    );
    report(&mut ok, &what, r.map(|_| ()), started);
    ok
}

/// Retries `f` until it returns a value or `deadline` passes; returns the last error.
async fn until_value<T, F, Fut>(deadline: Instant, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// `Ok` when every visor holds a session with one of `live` and no server of `live` holds
/// sessions of more than ⌈visors / servers⌉ + 1 visors (counted from the visors' side, so a
/// server's own links do not count).
async fn spread(
    http: &reqwest::Client,
    visors: &[&Member],
    live: &[&Member],
) -> Result<String, String> {
    let bound = visors.len().div_ceil(live.len().max(1)) + 1;
    let mut counts = vec![0usize; live.len()];
    for v in visors {
        let d: DmsgStatus = get_json(http, &format!("{}{}", v.http, api::DMSG))
            .await
            .ok_or(format!("{}: no dmsg status", v.name))?;
        let servers = d.client.map(|c| c.servers).unwrap_or_default();
        let mut any = false;
        for (i, f) in live.iter().enumerate() {
            if servers.contains(&f.pk) {
                counts[i] += 1;
                any = true;
            }
        }
        if !any {
            return Err(format!("{} holds no session with a live server", v.name));
        }
    }
    let shown = format!("{counts:?}");
    for (f, n) in live.iter().zip(&counts) {
        if *n > bound {
            return Err(format!("{} holds {n} visors (> {bound}): {shown}", f.name));
        }
    }
    Ok(format!("visors per server {shown} ≤ {bound}"))
}

/// Spread: visors that started together are spread over the DMSG servers (≤ ⌈visors /
/// servers⌉ + 1 sessions each), and still are after one server is killed (the last full node,
/// so this runs last).
pub(super) async fn check_spread(
    http: &reqwest::Client,
    members: &mut [Member],
    timeout: Duration,
) -> bool {
    let mut ok = true;
    let fulls: Vec<String> = members
        .iter()
        .filter(|m| m.full)
        .map(|m| m.name.clone())
        .collect();
    if fulls.is_empty() || members.iter().all(|m| m.full) {
        return true;
    }
    ok &= spread_step(http, members, &fulls, "spread", timeout).await;
    if fulls.len() < 2 {
        return ok;
    }
    let victim = &fulls[fulls.len() - 1];
    if let Some(m) = members.iter_mut().find(|m| &m.name == victim) {
        let _ = m.child.kill();
        let _ = m.child.wait();
    }
    let what = format!("spread after killing {victim}");
    ok &= spread_step(http, members, &fulls[..fulls.len() - 1], &what, timeout).await;
    ok
}

/// Waits until [`spread`] holds over the servers named `live`, and reports it.
async fn spread_step(
    http: &reqwest::Client,
    members: &[Member],
    live: &[String],
    what: &str,
    timeout: Duration,
) -> bool {
    let started = Instant::now();
    let visors: Vec<&Member> = members.iter().filter(|m| !m.full).collect();
    let live: Vec<&Member> = members.iter().filter(|m| live.contains(&m.name)).collect();
    let r = until(started + timeout, || async {
        spread(http, &visors, &live).await.map(|_| ())
    })
    .await;
    let shown = match &r {
        Ok(()) => spread(http, &visors, &live).await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let mut ok = true;
    report(&mut ok, &format!("{what}: {shown}"), r, started);
    ok
}
