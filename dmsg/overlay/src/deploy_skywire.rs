//! Skywire's own deployment config, read into a [`Deployment`] (issue #16 §5).
//!
//! Two shapes are accepted (detected from the JSON; skymesh's own format has a top-level `"v"`):
//!
//! * **2026 merged** (`services-config.json`): one object per environment (`prod`, `test`, …);
//!   in it `NAME` is a service's HTTP address, `NAME_dmsg` its `dmsg://PK:PORT` address, and
//!   `dmsg_servers` lists servers as discovery-entry fragments
//!   `{"static": PK, "server": {"address": "HOST:PORT"}}`.
//! * **2024 pair**: `services-config.json` (the same per-environment objects, HTTP addresses
//!   only) and `dmsghttp-config.json` (the same names with `dmsg://` addresses, plus
//!   `dmsg_servers`). Given the first, the second is read from the same directory when present;
//!   either file alone also works.
//!
//! Services become DMSG-first candidates with the HTTP fallback ([`ServiceEndpoint`]);
//! `dmsg_servers` become the servers a fresh visor tries. The format grows over time, so fields
//! this reader does not use (route setup nodes, DNS, STUN servers, …) are ignored here — unlike
//! skymesh's own format, which stays strict.
use std::collections::BTreeMap;

use keys::PubKey;
use serde_json::{Map, Value};

use crate::deploy::{DEPLOY_VERSION, DeployError, Deployment, DmsgServer, ServiceEndpoint};

/// The environment used when none is named (`--deploy-env`).
pub const DEFAULT_ENV: &str = "prod";

/// The file of the 2024 pair that holds the DMSG addresses.
pub const DMSGHTTP_FILE: &str = "dmsghttp-config.json";

/// Whether `v` is a Skywire config (no top-level `"v"`, an object of environment objects).
pub fn is_skywire(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|o| !o.contains_key("v") && !o.is_empty() && o.values().all(Value::is_object))
}

/// Reads environment `env` of one or more Skywire config documents (the 2024 pair is two),
/// merged in order.
pub fn parse(docs: &[(&Value, &str)], env: &str) -> Result<Deployment, DeployError> {
    let mut services: BTreeMap<String, ServiceEndpoint> = BTreeMap::new();
    let mut servers: Vec<DmsgServer> = Vec::new();
    let mut found = false;
    for (doc, origin) in docs {
        let invalid = |reason: String| DeployError::Invalid {
            origin: origin.to_string(),
            reason,
        };
        let Some(obj) = doc.get(env).and_then(Value::as_object) else {
            continue;
        };
        found = true;
        read_env(obj, &mut services, &mut servers).map_err(invalid)?;
    }
    if !found {
        let origin = docs.first().map_or("skywire config", |(_, o)| o);
        let envs: Vec<String> = docs
            .first()
            .and_then(|(d, _)| d.as_object())
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        return Err(DeployError::Invalid {
            origin: origin.to_string(),
            reason: format!(
                "no environment {env:?} (it has: {}); choose one with --deploy-env",
                envs.join(", ")
            ),
        });
    }
    services.retain(|_, s| s.dmsg.is_some() || s.http.is_some());
    Ok(Deployment {
        v: DEPLOY_VERSION,
        name: format!("skywire-{env}"),
        dht_bootstrap: Vec::new(),
        dmsg_servers: servers,
        services,
    })
}

fn read_env(
    obj: &Map<String, Value>,
    services: &mut BTreeMap<String, ServiceEndpoint>,
    servers: &mut Vec<DmsgServer>,
) -> Result<(), String> {
    for (key, value) in obj {
        if key == "dmsg_servers" {
            let list = value
                .as_array()
                .ok_or("dmsg_servers is not a list".to_string())?;
            for s in list {
                let server = read_server(s)?;
                if !servers.iter().any(|x| x.pk == server.pk) {
                    servers.push(server);
                }
            }
            continue;
        }
        let Some(url) = value.as_str() else {
            continue; // lists and objects we do not use (route setup nodes, STUN, …)
        };
        let name = key.strip_suffix("_dmsg").unwrap_or(key);
        let ep = services.entry(name.to_string()).or_default();
        if url.starts_with("dmsg://") {
            check_dmsg_url(key, url)?;
            ep.dmsg = Some(url.to_string());
        } else if url.starts_with("http://") || url.starts_with("https://") {
            ep.http = Some(url.to_string());
        }
        // Anything else (e.g. `dns_server` = a bare IP) is not a service endpoint.
    }
    Ok(())
}

fn read_server(s: &Value) -> Result<DmsgServer, String> {
    let pk = s
        .get("static")
        .and_then(Value::as_str)
        .ok_or("a dmsg_servers entry has no \"static\" key")?;
    let pk = PubKey::from_hex(pk).map_err(|e| format!("dmsg_servers: static {pk}: {e}"))?;
    let address = s
        .get("server")
        .and_then(|x| x.get("address"))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("dmsg_servers: {pk} has no server.address"))?;
    if address
        .rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return Err(format!(
            "dmsg_servers: {pk}: address {address:?} is not HOST:PORT"
        ));
    }
    Ok(DmsgServer {
        pk,
        address: address.to_string(),
    })
}

fn check_dmsg_url(key: &str, url: &str) -> Result<(), String> {
    let rest = &url["dmsg://".len()..];
    let (pk, port) = rest.split_once(':').unwrap_or((rest, "80"));
    PubKey::from_hex(pk).map_err(|e| format!("{key}: {url}: key: {e}"))?;
    port.trim_end_matches('/')
        .parse::<u16>()
        .map_err(|_| format!("{key}: {url}: bad port"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../tests/vectors/services-config-2026.json");

    #[test]
    fn the_2026_sample_gives_dmsg_first_services_and_servers() {
        let v: Value = serde_json::from_str(SAMPLE).unwrap();
        assert!(is_skywire(&v));
        let d = parse(&[(&v, "sample")], DEFAULT_ENV).unwrap();
        let tpd = &d.services["transport_discovery"];
        assert_eq!(
            tpd.candidates(),
            [
                "dmsg://02b307aee5c8ce1666c63891f8af25ad2f0a47a243914c963942b3ba35b9d095ae:80",
                "http://127.0.0.1:19002"
            ]
        );
        assert_eq!(d.dmsg_servers.len(), 2);
        assert_eq!(d.dmsg_servers[0].address, "127.0.0.1:19007");
        assert!(!d.services.contains_key("dns_server"));
        assert!(!d.services.contains_key("route_setup_nodes"));
        // The test environment.
        let t = parse(&[(&v, "sample")], "test").unwrap();
        assert_eq!(t.dmsg_servers.len(), 1);
        assert_eq!(t.services["transport_discovery"].dmsg, None);
        assert!(t.services["dmsg_discovery"].dmsg.is_some());
        // An unknown environment names the ones there are.
        let e = parse(&[(&v, "sample")], "staging").unwrap_err().to_string();
        assert!(e.contains("prod") && e.contains("test"), "{e}");
    }

    #[test]
    fn the_2024_pair_merges_http_and_dmsg_addresses() {
        let pk = "02b307aee5c8ce1666c63891f8af25ad2f0a47a243914c963942b3ba35b9d095ae";
        let services: Value = serde_json::json!({"prod": {
            "transport_discovery": "http://127.0.0.1:19002",
            "stun_servers": ["127.0.0.1:3478"],
        }});
        let dmsghttp: Value = serde_json::json!({"prod": {
            "transport_discovery": format!("dmsg://{pk}:80"),
            "dmsg_servers": [{"static": pk, "server": {"address": "127.0.0.1:19007"}}],
        }});
        let d = parse(&[(&services, "a"), (&dmsghttp, "b")], "prod").unwrap();
        let tpd = &d.services["transport_discovery"];
        assert_eq!(
            tpd.dmsg.as_deref(),
            Some(format!("dmsg://{pk}:80").as_str())
        );
        assert_eq!(tpd.http.as_deref(), Some("http://127.0.0.1:19002"));
        assert_eq!(d.dmsg_servers.len(), 1);
    }

    #[test]
    fn load_detects_the_format_and_reads_the_2024_sibling() {
        let dir = std::env::temp_dir().join(format!("skymesh-deploy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pk = "03717576ada5b1744e395c66c2bb11cea73b0e23d0dcd54422139b1a7f12e962c4";
        let services = dir.join("services-config.json");
        std::fs::write(
            &services,
            r#"{"prod":{"address_resolver":"http://127.0.0.1:19003"},"test":{}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join(DMSGHTTP_FILE),
            format!(
                r#"{{"prod":{{"address_resolver":"dmsg://{pk}:80","dmsg_servers":[{{"static":"{pk}","server":{{"address":"127.0.0.1:19008"}}}}]}}}}"#
            ),
        )
        .unwrap();
        let d = Deployment::load_env(Some(&services), DEFAULT_ENV).unwrap();
        let ar = &d.services["address_resolver"];
        assert_eq!(ar.candidates().len(), 2, "{ar:?}");
        assert_eq!(d.dmsg_servers[0].address, "127.0.0.1:19008");
        // skymesh's own format stays strict.
        let own = dir.join("own.json");
        std::fs::write(&own, r#"{"v":1,"surprise":true}"#).unwrap();
        assert!(Deployment::load_env(Some(&own), DEFAULT_ENV).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_entries_are_refused_with_reasons() {
        for (doc, what) in [
            (
                serde_json::json!({"prod": {"dmsg_servers": 1}}),
                "not a list",
            ),
            (
                serde_json::json!({"prod": {"dmsg_servers": [{"server": {"address": "a:1"}}]}}),
                "static",
            ),
            (
                serde_json::json!({"prod": {"x_dmsg": "dmsg://nothex:80"}}),
                "key",
            ),
        ] {
            let e = parse(&[(&doc, "t")], "prod").unwrap_err().to_string();
            assert!(e.contains(what), "{doc}: {e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_json_object_never_panics(text in "\\{\"prod\":\\{.{0,200}\\}\\}") {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                let _ = parse(&[(&v, "fuzz")], "prod");
            }
        }
    }
}
