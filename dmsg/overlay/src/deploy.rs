//! The deployment config: where a node finds the network when nobody told it.
//!
//! ```json
//! {"v":1,"name":"devnet",
//!  "dht_bootstrap":["/ip4/127.0.0.1/tcp/4100/p2p/16Uiu2…"],
//!  "dmsg_servers":[{"pk":"02…","address":"127.0.0.1:8080"}],
//!  "services":{"transport_discovery":{"dmsg":"dmsg://02…:80","http":"http://127.0.0.1:9091"}}}
//! ```
//!
//! * `dht_bootstrap`: full nodes (multiaddrs ending in `/p2p/<peer id>`) a node bootstraps from
//!   when `--bootstrap` is not given.
//! * `dmsg_servers`: DMSG servers to try when the DHT has not answered yet (a fresh visor).
//! * `services`: each service with a `dmsg://PK:PORT` and/or an `http(s)://` address;
//!   [`ServiceEndpoint::candidates`] gives DMSG first, HTTP only as the fallback.
//!
//! The embedded default ([`EMBEDDED`], `dmsg/overlay/deploy/default.json`) names the public
//! Skywire service hosts. It lists no bootstrap full nodes or DMSG servers yet: skymesh full
//! nodes are not deployed publicly, so a production node needs `--bootstrap` or a deployment
//! file until they are. `SKYDEPLOY=FILE` or `--deploy FILE` replaces it entirely.
use std::collections::BTreeMap;
use std::path::Path;

use keys::PubKey;
use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

/// The embedded default deployment.
pub const EMBEDDED: &str = include_str!("../deploy/default.json");

/// Environment variable naming a deployment file.
pub const ENV_VAR: &str = "SKYDEPLOY";

/// Format version.
pub const DEPLOY_VERSION: u8 = 1;

/// A deployment (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// Format version, [`DEPLOY_VERSION`].
    pub v: u8,
    /// A name for logs.
    #[serde(default)]
    pub name: String,
    /// Bootstrap full nodes.
    #[serde(default)]
    pub dht_bootstrap: Vec<Multiaddr>,
    /// DMSG servers to start from.
    #[serde(default)]
    pub dmsg_servers: Vec<DmsgServer>,
    /// Service endpoints by name.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceEndpoint>,
}

/// A DMSG server of the deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmsgServer {
    /// Its key.
    pub pk: PubKey,
    /// Its TCP address.
    pub address: String,
}

/// A service reachable over DMSG and/or HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEndpoint {
    /// `dmsg://PK:PORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmsg: Option<String>,
    /// `http(s)://HOST[:PORT]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
}

impl ServiceEndpoint {
    /// Addresses to try, DMSG first, HTTP as the fallback.
    pub fn candidates(&self) -> Vec<&str> {
        self.dmsg
            .iter()
            .chain(self.http.iter())
            .map(String::as_str)
            .collect()
    }
}

/// Why a deployment could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The file could not be read.
    #[error("reading the deployment file {path}")]
    Read {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The JSON is not a deployment.
    #[error("deployment {origin}: {source}")]
    Parse {
        /// File path or `embedded`.
        origin: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A field is invalid.
    #[error("deployment {origin}: {reason}")]
    Invalid {
        /// File path or `embedded`.
        origin: String,
        /// What is wrong.
        reason: String,
    },
}

impl Deployment {
    /// Parses and checks a deployment (`origin` names it in errors): skymesh's own format, or
    /// Skywire's (environment [`crate::deploy_skywire::DEFAULT_ENV`]).
    pub fn parse(text: &str, origin: &str) -> Result<Deployment, DeployError> {
        Deployment::parse_env(text, origin, crate::deploy_skywire::DEFAULT_ENV)
    }

    /// Like [`Deployment::parse`]; a Skywire config is read for environment `env`.
    pub fn parse_env(text: &str, origin: &str, env: &str) -> Result<Deployment, DeployError> {
        let parse_err = |source| DeployError::Parse {
            origin: origin.to_string(),
            source,
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(parse_err)?;
        if crate::deploy_skywire::is_skywire(&value) {
            return crate::deploy_skywire::parse(&[(&value, origin)], env);
        }
        Deployment::parse_own(text, origin)
    }

    /// skymesh's own, strict format.
    fn parse_own(text: &str, origin: &str) -> Result<Deployment, DeployError> {
        let d: Deployment = serde_json::from_str(text).map_err(|source| DeployError::Parse {
            origin: origin.to_string(),
            source,
        })?;
        let invalid = |reason: String| DeployError::Invalid {
            origin: origin.to_string(),
            reason,
        };
        if d.v != DEPLOY_VERSION {
            return Err(invalid(format!("unsupported version {}", d.v)));
        }
        for a in &d.dht_bootstrap {
            if !a
                .iter()
                .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
            {
                return Err(invalid(format!(
                    "bootstrap {a} does not end in /p2p/<peer id>"
                )));
            }
        }
        for (name, s) in &d.services {
            if s.dmsg.is_none() && s.http.is_none() {
                return Err(invalid(format!("service {name} has neither dmsg nor http")));
            }
            if let Some(u) = &s.dmsg
                && !u.starts_with("dmsg://")
            {
                return Err(invalid(format!(
                    "service {name}: {u} is not a dmsg:// address"
                )));
            }
            if let Some(u) = &s.http
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                return Err(invalid(format!(
                    "service {name}: {u} is not an http(s):// URL"
                )));
            }
        }
        Ok(d)
    }

    /// The embedded default.
    pub fn embedded() -> Result<Deployment, DeployError> {
        Deployment::parse(EMBEDDED, "embedded")
    }

    /// `file` if given, else the file named by `$SKYDEPLOY`, else the embedded default.
    pub fn load(file: Option<&Path>) -> Result<Deployment, DeployError> {
        Deployment::load_env(file, crate::deploy_skywire::DEFAULT_ENV)
    }

    /// Like [`Deployment::load`]; a Skywire config is read for environment `env`, and with a
    /// 2024 `services-config.json` its sibling `dmsghttp-config.json` is read too.
    pub fn load_env(file: Option<&Path>, env: &str) -> Result<Deployment, DeployError> {
        let var = std::env::var_os(ENV_VAR).map(std::path::PathBuf::from);
        let Some(path) = file.map(Path::to_path_buf).or(var) else {
            return Deployment::embedded();
        };
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| DeployError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        let text = read(&path)?;
        let origin = path.display().to_string();
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| DeployError::Parse {
                origin: origin.clone(),
                source,
            })?;
        if !crate::deploy_skywire::is_skywire(&value) {
            return Deployment::parse_own(&text, &origin);
        }
        let sibling = path.with_file_name(crate::deploy_skywire::DMSGHTTP_FILE);
        let pair = if sibling != path && sibling.exists() {
            let t = read(&sibling)?;
            let v: serde_json::Value =
                serde_json::from_str(&t).map_err(|source| DeployError::Parse {
                    origin: sibling.display().to_string(),
                    source,
                })?;
            Some((v, sibling.display().to_string()))
        } else {
            None
        };
        let mut docs = vec![(&value, origin.as_str())];
        if let Some((v, o)) = &pair {
            docs.push((v, o.as_str()));
        }
        crate::deploy_skywire::parse(&docs, env)
    }

    /// The JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keys::SecKey;

    #[test]
    fn embedded_default_parses_and_prefers_dmsg() {
        let d = Deployment::embedded().unwrap();
        assert_eq!(d.v, 1);
        assert!(d.services.contains_key("transport_discovery"));
        let both = ServiceEndpoint {
            dmsg: Some("dmsg://02aa:80".into()),
            http: Some("https://x".into()),
        };
        assert_eq!(both.candidates(), ["dmsg://02aa:80", "https://x"]);
    }

    #[test]
    fn bad_deployments_are_refused_with_reasons() {
        for (text, what) in [
            (r#"{"v":2}"#, "version"),
            (r#"{"v":1,"dht_bootstrap":["/ip4/1.2.3.4/tcp/1"]}"#, "/p2p/"),
            (r#"{"v":1,"services":{"x":{}}}"#, "neither"),
            (r#"{"v":1,"services":{"x":{"dmsg":"http://a"}}}"#, "dmsg://"),
            (r#"{"v":1,"services":{"x":{"http":"ftp://a"}}}"#, "http(s)"),
        ] {
            let err = Deployment::parse(text, "t").unwrap_err().to_string();
            assert!(err.contains(what), "{text}: {err}");
        }
        assert!(matches!(
            Deployment::parse(r#"{"v":1,"extra":1}"#, "t"),
            Err(DeployError::Parse { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(text in ".{0,400}") {
            let _ = Deployment::parse(&text, "fuzz");
        }

        #[test]
        fn generated_deployments_round_trip(
            name in "[a-z0-9-]{0,20}",
            seeds in proptest::collection::vec(proptest::prelude::any::<u64>(), 0..4),
            http in proptest::option::of("https?://[a-z]{1,10}\\.[a-z]{2,3}"),
            port in 1u16..,
        ) {
            let keys: Vec<SecKey> = seeds.iter().map(|s| SecKey::from_seed(&s.to_be_bytes())).collect();
            let d = Deployment {
                v: DEPLOY_VERSION,
                name,
                dht_bootstrap: keys
                    .iter()
                    .map(|k| {
                        let peer = dhtnode::identity::peer_id(&k.pubkey()).unwrap();
                        format!("/ip4/127.0.0.1/tcp/{port}/p2p/{peer}").parse().unwrap()
                    })
                    .collect(),
                dmsg_servers: keys
                    .iter()
                    .map(|k| DmsgServer { pk: k.pubkey(), address: format!("127.0.0.1:{port}") })
                    .collect(),
                services: keys
                    .first()
                    .map(|k| {
                        let ep = ServiceEndpoint {
                            dmsg: Some(format!("dmsg://{}:{port}", k.pubkey())),
                            http: http.clone(),
                        };
                        BTreeMap::from([("svc".to_string(), ep)])
                    })
                    .unwrap_or_default(),
            };
            proptest::prop_assert_eq!(Deployment::parse(&d.to_json(), "t").unwrap(), d);
        }
    }

    #[test]
    fn round_trips_through_json() {
        let d = Deployment::parse(
            r#"{"v":1,"name":"n","dmsg_servers":[{"pk":"0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798","address":"127.0.0.1:1"}],"services":{"tpd":{"http":"http://x"}}}"#,
            "t",
        )
        .unwrap();
        assert_eq!(Deployment::parse(&d.to_json(), "t").unwrap(), d);
    }
}
