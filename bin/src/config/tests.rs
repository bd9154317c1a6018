//! Both conversions into [`NodeConfig`], and what each file section accepts or refuses.
use clap::Parser;
use keys::SecKey;

use super::*;

/// `skymesh node`'s arguments as a parser of their own.
#[derive(clap::Parser)]
struct NodeCli {
    #[command(flatten)]
    args: crate::commands::node::Args,
}

fn args(argv: &[&str]) -> crate::commands::node::Args {
    let mut v = vec!["skymesh-node"];
    v.extend_from_slice(argv);
    NodeCli::try_parse_from(v).expect("valid flags").args
}

fn sk(seed: &str) -> SecKey {
    SecKey::from_seed(seed.as_bytes())
}

/// A reference dmsg-server config (the fields pkg/dmsgserver writes), plus `extra` fields.
fn server_json(extra: &str) -> String {
    let sk = sk("server");
    format!(
        r#"{{
            "public_key": "{}",
            "secret_key": "{}",
            "discovery": "http://dmsgd.skywire.skycoin.com",
            "public_address": "203.0.113.7:8081",
            "local_address": ":8081",
            "health_endpoint_address": ":8082",
            "log_level": "info",
            "update_interval": 0,
            "max_sessions": 100{extra}
        }}"#,
        sk.pubkey().to_hex(),
        sk.to_hex()
    )
}

const DHT: &str = r#", "dht": {"listen": ["/ip4/0.0.0.0/tcp/7800"], "data": "/var/lib/skymesh"}"#;

#[test]
fn flags_convert_into_a_full_node_with_a_dmsg_server() {
    let peer = sk("peer").pubkey().to_hex();
    let cfg = NodeConfig::from_args(args(&[
        "--role",
        "full",
        "--listen",
        "/ip4/127.0.0.1/tcp/4100",
        "--data",
        "/tmp/d",
        "--sk",
        "00ff",
        "--dmsg-listen",
        "127.0.0.1:8081",
        "--disc-test-mode",
        "--mesh-peer",
        &format!("{peer}@127.0.0.1:8091"),
        "--mesh-dht",
        "--mesh-allow",
        "any",
    ]))
    .expect("converts");
    assert_eq!(cfg.role, Role::Full);
    assert_eq!(
        cfg.listen,
        vec!["/ip4/127.0.0.1/tcp/4100".parse::<Multiaddr>().unwrap()]
    );
    assert_eq!(cfg.key, KeySource::Hex("00ff".into()));
    assert_eq!(cfg.http, DEFAULT_HTTP.parse::<SocketAddr>().unwrap());
    assert_eq!(cfg.reachability, Reach::Auto);
    assert!(cfg.dmsg_client.is_none());
    let s = cfg.dmsg_server.expect("a DMSG server");
    assert_eq!(s.listen, "127.0.0.1:8081");
    assert_eq!(s.max_sessions, ::dmsg::defaults::DEFAULT_MAX_SESSIONS);
    assert!(s.disc_test_mode);
    assert_eq!(s.mesh_peers.len(), 1);
    assert_eq!(s.mesh_peers[0].address, "127.0.0.1:8091");
    assert_eq!(s.mesh_dht, Some(MeshAllow::Any));
    let mesh = s.mesh();
    assert_eq!(mesh.peers[0].pk, sk("peer").pubkey());
}

#[test]
fn flags_convert_into_a_visor() {
    let server = sk("server").pubkey();
    let cfg = NodeConfig::from_args(args(&[
        "--role",
        "regular",
        "--listen",
        "/ip4/127.0.0.1/tcp/4101",
        "--data",
        "/tmp/v",
        "--key",
        "/tmp/v.key",
        "--reachability",
        "public",
        "--dmsg",
        "--dmsg-http-dir",
        "/tmp/www",
        "--dmsg-server",
        &server.to_hex(),
        "--dmsg-protocol",
        "smux",
        "--http",
        "127.0.0.1:9000",
    ]))
    .expect("converts");
    assert_eq!(cfg.key, KeySource::File("/tmp/v.key".into()));
    assert_eq!(cfg.reachability, Reach::Public);
    assert_eq!(cfg.http, "127.0.0.1:9000".parse::<SocketAddr>().unwrap());
    let c = cfg.dmsg_client.clone().expect("a DMSG client");
    assert_eq!(c.http_dir, Some("/tmp/www".into()));
    assert_eq!(c.http_port, 80);
    assert_eq!(c.servers, vec![server]);
    assert_eq!(c.sessions, ::dmsg::defaults::DEFAULT_MIN_SESSIONS);
    assert_eq!(c.protocol, ::dmsg::mux::Protocol::Smux);
    cfg.validate().expect("a visor with a DMSG client is valid");
}

#[test]
fn flags_refuse_bad_keys_and_role_mismatches() {
    let e = NodeConfig::from_args(args(&[
        "--role",
        "full",
        "--listen",
        "/ip4/127.0.0.1/tcp/1",
        "--data",
        "d",
        "--dmsg-listen",
        "127.0.0.1:2",
        "--mesh-dht",
        "--mesh-allow",
        "nope",
    ]))
    .unwrap_err();
    assert!(format!("{e:#}").contains("--mesh-allow nope"), "{e:#}");
    // --trusted-writer is typed by clap (config::public_key), like mirror put --for.
    let e = NodeCli::try_parse_from([
        "skymesh-node",
        "--role",
        "full",
        "--listen",
        "/ip4/127.0.0.1/tcp/1",
        "--data",
        "d",
        "--trusted-writer",
        "xyz",
    ])
    .err()
    .expect("a bad key is refused")
    .to_string();
    assert!(
        e.contains("invalid value 'xyz' for '--trusted-writer <PK>': not a public key"),
        "{e}"
    );
    let writer = sk("writer").pubkey();
    let cfg = NodeConfig::from_args(args(&[
        "--role",
        "full",
        "--listen",
        "/ip4/127.0.0.1/tcp/1",
        "--data",
        "d",
        "--trusted-writer",
        &writer.to_hex(),
    ]))
    .expect("converts");
    assert_eq!(cfg.trusted_writers, vec![writer]);
    let cfg = NodeConfig::from_args(args(&[
        "--role",
        "regular",
        "--listen",
        "/ip4/127.0.0.1/tcp/1",
        "--data",
        "d",
        "--dmsg-listen",
        "127.0.0.1:2",
    ]))
    .expect("converts");
    let e = cfg.validate().unwrap_err();
    assert!(e.to_string().contains("needs --role full"), "{e}");
}

#[test]
fn server_file_with_dht_converts_into_a_full_node() {
    let peer = sk("peer").pubkey().to_hex();
    let text = server_json(&format!(
        r#", "dht": {{"listen": ["/ip4/0.0.0.0/tcp/7800"], "bootstrap": [], "data": "/var/lib/skymesh", "deploy": "/etc/skymesh/deploy.json"}},
            "peers": [{{"public_key": "{peer}", "address": "198.51.100.1:8081"}}]"#
    ));
    let f = ServerFile::parse(&text).expect("parses");
    let cfg = NodeConfig::from_server_file(&f, Some("redis://127.0.0.1:6379/".into()))
        .expect("converts")
        .expect("has a dht section");
    assert_eq!(cfg.role, Role::Full);
    assert_eq!(
        cfg.listen,
        vec!["/ip4/0.0.0.0/tcp/7800".parse::<Multiaddr>().unwrap()]
    );
    assert_eq!(cfg.data, PathBuf::from("/var/lib/skymesh"));
    assert_eq!(cfg.key, KeySource::Hex(sk("server").to_hex()));
    assert_eq!(cfg.http, "0.0.0.0:8082".parse::<SocketAddr>().unwrap());
    assert_eq!(cfg.deploy, Some(PathBuf::from("/etc/skymesh/deploy.json")));
    assert_eq!(cfg.redis.as_deref(), Some("redis://127.0.0.1:6379/"));
    let s = cfg.dmsg_server.clone().expect("a DMSG server");
    assert_eq!(s.listen, "0.0.0.0:8081");
    assert_eq!(s.public.as_deref(), Some("203.0.113.7:8081"));
    assert_eq!(s.max_sessions, 100);
    assert_eq!(s.mesh_peers[0].pk, sk("peer").pubkey());
    assert_eq!(s.mesh_peers[0].address, "198.51.100.1:8081");
    cfg.validate().expect("valid");
}

#[test]
fn server_file_defaults_match_the_node_flags() {
    let sk = sk("server");
    let text = format!(
        r#"{{"public_key": "{}", "secret_key": "{}", "discovery": "", "public_address": "",
            "local_address": "127.0.0.1:8081"{DHT}}}"#,
        sk.pubkey().to_hex(),
        sk.to_hex()
    );
    let f = ServerFile::parse(&text).expect("parses");
    let from_file = NodeConfig::from_server_file(&f, None)
        .expect("converts")
        .expect("has a dht section");
    let from_flags = NodeConfig::from_args(args(&[
        "--role",
        "full",
        "--listen",
        "/ip4/0.0.0.0/tcp/7800",
        "--data",
        "/var/lib/skymesh",
        "--sk",
        &sk.to_hex(),
        "--dmsg-listen",
        "127.0.0.1:8081",
    ]))
    .expect("converts");
    assert_eq!(from_file, from_flags);
}

#[test]
fn server_file_without_dht_is_not_a_node() {
    let f = ServerFile::parse(&server_json("")).expect("parses");
    assert!(
        NodeConfig::from_server_file(&f, None)
            .expect("converts")
            .is_none()
    );
}

#[test]
fn reference_fields_are_accepted_unchanged() {
    // Fields a future or older Go server writes are ignored at the top level, as Go does.
    let text = server_json(r#", "trace": true, "some_future_field": {"x": 1}"#);
    let f = ServerFile::parse(&text).expect("unknown reference fields are accepted");
    assert_eq!(f.local_address, ":8081");
    assert_eq!(f.health_endpoint_address, ":8082");
    assert_eq!(f.log_level, "info");
    assert_eq!(f.max_sessions, 100);
    assert_eq!(f.discovery, "http://dmsgd.skywire.skycoin.com");
}

#[test]
fn unknown_fields_in_our_sections_are_refused() {
    let e = ServerFile::parse(&server_json(
        r#", "dht": {"listen": [], "data": "d", "bootstrapp": []}"#,
    ))
    .unwrap_err();
    assert!(format!("{e:#}").contains("bootstrapp"), "{e:#}");
    let e = ServerFile::parse(&server_json(
        r#", "peers": [{"public_key": "00", "address": "a:1", "weight": 2}]"#,
    ))
    .unwrap_err();
    assert!(format!("{e:#}").contains("weight"), "{e:#}");
    // The typed configuration refuses unknown fields too.
    let cfg = NodeConfig::from_args(args(&[
        "--role",
        "regular",
        "--listen",
        "/ip4/127.0.0.1/tcp/1",
        "--data",
        "d",
    ]))
    .expect("converts");
    let mut v = serde_json::to_value(&cfg).expect("serializes");
    assert_eq!(
        serde_json::from_value::<NodeConfig>(v.clone()).expect("round trip"),
        cfg
    );
    v["listn"] = serde_json::json!([]);
    assert!(serde_json::from_value::<NodeConfig>(v).is_err());
}

#[test]
fn server_file_errors_name_the_field() {
    let f = ServerFile::parse(&server_json(
        r#", "dht": {"listen": ["not a multiaddr"], "data": "d"}"#,
    ))
    .expect("parses");
    let e = NodeConfig::from_server_file(&f, None).unwrap_err();
    assert!(format!("{e:#}").contains("dht.listen"), "{e:#}");
    let f = ServerFile::parse(&server_json(&format!(
        r#"{DHT}, "peers": [{{"public_key": "00", "address": "nope"}}]"#
    )))
    .expect("parses");
    let e = NodeConfig::from_server_file(&f, None).unwrap_err();
    assert!(format!("{e:#}").contains("peers"), "{e:#}");
    let other = sk("other").to_hex();
    let text = server_json("").replace(&sk("server").to_hex(), &other);
    let e = ServerFile::parse(&text).unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
}

#[test]
fn proxy_protocol_and_deploy_env_from_flags_and_file() {
    let cfg = NodeConfig::from_args(args(&[
        "--role",
        "full",
        "--listen",
        "/ip4/127.0.0.1/tcp/4100",
        "--data",
        "/tmp/d",
        "--dmsg-listen",
        "127.0.0.1:8081",
        "--dmsg-proxy-protocol",
        "required",
        "--deploy-env",
        "test",
    ]))
    .expect("converts");
    assert_eq!(cfg.deploy_env, "test");
    let s = cfg.dmsg_server.expect("a DMSG server");
    assert_eq!(s.proxy_protocol, ::dmsg::proxy::ProxyMode::Required);
    assert!(
        NodeCli::try_parse_from([
            "skymesh-node",
            "--role",
            "full",
            "--listen",
            "/ip4/127.0.0.1/tcp/1",
            "--data",
            "/d",
            "--dmsg-listen",
            "127.0.0.1:1",
            "--dmsg-proxy-protocol",
            "sometimes"
        ])
        .is_err()
    );
    // The default is the reference server's behaviour: a header is used when present.
    let f = ServerFile::parse(&server_json(DHT)).expect("parses");
    let cfg = NodeConfig::from_server_file(&f, None).unwrap().unwrap();
    assert_eq!(
        cfg.dmsg_server.unwrap().proxy_protocol,
        ::dmsg::proxy::ProxyMode::Optional
    );
    assert_eq!(cfg.deploy_env, "prod");
    let f = ServerFile::parse(&server_json(r#", "proxy_protocol": "off""#)).expect("parses");
    assert_eq!(f.proxy_protocol, ::dmsg::proxy::ProxyMode::Off);
}
