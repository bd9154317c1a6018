//! `skymesh devnet --json`: instead of the live table, one JSON document of the whole network
//! per refresh (every 2 s), each on one line of stdout, until Ctrl-C:
//!
//! ```json
//! {"data": DIR, "nodes": [{"name", "role": "full"|"visor", "public_key", "p2p", "http",
//!   "status_page", "dmsg_address", "up", "info": /api/v1/info, "dmsg": /api/v1/dmsg}]}
//! ```
//!
//! `info` and `dmsg` are the node's own admin API answers, unchanged (`null` while it does not
//! answer; `up` is false then), so a script reads the same fields as from the node itself.
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Member, get_json};
use crate::api;

/// Time between two documents.
const REFRESH: Duration = Duration::from_secs(2);

/// The network's state now: one object with every member.
async fn document(http: &reqwest::Client, members: &[Member], dir: &Path) -> Value {
    let nodes = futures::future::join_all(members.iter().map(|m| async move {
        let info: Option<Value> = get_json(http, &format!("{}{}", m.http, api::INFO)).await;
        let dmsg: Option<Value> = get_json(http, &format!("{}{}", m.http, api::DMSG)).await;
        json!({
            "name": m.name,
            "role": if m.full { "full" } else { "visor" },
            "public_key": m.pk,
            "p2p": m.p2p,
            "http": m.http,
            "status_page": format!("{}/", m.http.trim_end_matches('/')),
            "dmsg_address": m.dmsg,
            "up": info.is_some(),
            "info": info,
            "dmsg": dmsg,
        })
    }))
    .await;
    json!({ "data": dir.display().to_string(), "nodes": nodes })
}

/// Prints a document every [`REFRESH`] until Ctrl-C.
pub(super) async fn live_json(http: &reqwest::Client, members: &[Member], dir: &Path) {
    let mut tick = tokio::time::interval(REFRESH);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::daemon::shutdown_signal() => {
                tracing::info!(nodes = members.len(), "stopping the devnet");
                return;
            }
        }
        let doc = document(http, members, dir).await;
        let mut out = std::io::stdout().lock();
        // A closed stdout (`| head -1`) is not an error worth a panic: stop printing.
        if writeln!(out, "{doc}").and_then(|()| out.flush()).is_err() {
            return;
        }
    }
}
