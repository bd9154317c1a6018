//! Building the libp2p `Swarm` (TCP + Noise + yamux, or the in-process memory transport for
//! benchmarks; kad, identify, ping, `/skymesh/get/1`,
//! `/skymesh/sync/1`) and binding its listeners. The only place the node's network stack is
//! configured; the actor drives the swarm it returns.
use std::num::NonZeroUsize;
use std::time::Duration;

use futures::StreamExt;
use libp2p::kad;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, StreamProtocol, Swarm, identify, mdns, noise, ping, tcp, yamux};

use crate::codec::{self, GetCodec};
use crate::config::{Config, KAD_PROTOCOL, Transport};
use crate::error::SpawnError;
use crate::limits::PeerLimiter;
use crate::role;
use crate::store::ItemStore;
use crate::sync_codec::{self, SyncCodec};

/// Identify protocol version announced by skymesh nodes.
const IDENTIFY_PROTOCOL: &str = "/skymesh/id/1.0.0";

/// The behaviours of a skymesh node.
#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    pub(super) kad: crate::kad_limit::PeerLimited<kad::Behaviour<ItemStore>>,
    pub(super) identify: identify::Behaviour,
    pub(super) ping: ping::Behaviour,
    pub(super) get: request_response::Behaviour<GetCodec>,
    pub(super) sync: request_response::Behaviour<SyncCodec>,
    /// Local-network discovery (only with [`Config::mdns`]).
    pub(super) mdns: Toggle<mdns::tokio::Behaviour>,
}

/// What [`behaviour`] is built from.
struct Parts {
    store: ItemStore,
    kcfg: kad::Config,
    mode: Option<kad::Mode>,
    role: crate::Role,
    req_timeout: Duration,
    sync_timeout: Duration,
    kad_max: u32,
    limit_window: Duration,
    kad_limited: prometheus_client::metrics::counter::Counter,
    measure_hops: bool,
    want_mdns: bool,
}

/// The node's behaviours over its store, whatever the transport.
fn behaviour(key: &libp2p::identity::Keypair, p: Parts) -> Behaviour {
    let peer = key.public().to_peer_id();
    let mut kad = kad::Behaviour::with_config(peer, p.store, p.kcfg);
    kad.set_mode(p.mode);
    let mut kad = crate::kad_limit::PeerLimited::new(
        kad,
        crate::kad_limit::is_kad_inbound_request,
        PeerLimiter::new(p.kad_max, p.limit_window),
        p.kad_limited,
    );
    if p.measure_hops {
        kad.measure_hops(
            crate::kad_limit::is_kad_lookup_request,
            crate::kad_limit::is_kad_lookup_answer,
        );
    }
    let mdns = p
        .want_mdns
        .then(
            || match mdns::tokio::Behaviour::new(mdns::Config::default(), peer) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(error = %e, "mDNS unavailable; finding LAN peers is off");
                    None
                }
            },
        )
        .flatten();
    Behaviour {
        kad,
        mdns: Toggle::from(mdns),
        identify: identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), key.public())
                .with_agent_version(role::agent_version(p.role)),
        ),
        ping: ping::Behaviour::default(),
        get: request_response::Behaviour::with_codec(
            GetCodec,
            [(codec::PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(p.req_timeout)
                .with_max_concurrent_streams(crate::config::DEFAULT_MAX_CONCURRENT_STREAMS),
        ),
        sync: request_response::Behaviour::with_codec(
            SyncCodec,
            [(sync_codec::PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(p.sync_timeout)
                .with_max_concurrent_streams(sync_codec::MAX_CONCURRENT_STREAMS),
        ),
    }
}

fn transport_err(e: impl std::fmt::Display) -> SpawnError {
    SpawnError::Transport {
        reason: e.to_string(),
    }
}

/// Builds the swarm over `store`, starts every listener of `cfg` and waits (up to 10 s) until
/// each has reported its bound address; returns the swarm and those addresses, each ending in
/// `/p2p/<peer id>`.
pub(super) async fn build(
    cfg: &Config,
    keypair: libp2p::identity::Keypair,
    store: ItemStore,
) -> Result<(Swarm<Behaviour>, Vec<Multiaddr>), SpawnError> {
    let local_peer = keypair.public().to_peer_id();
    let mut kcfg = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    kcfg.set_record_filtering(kad::StoreInserts::FilterBoth)
        .set_query_timeout(cfg.query_timeout)
        .set_max_packet_size(crate::config::DEFAULT_MAX_PACKET_SIZE)
        .set_caching(kad::Caching::Disabled)
        .set_replication_interval(None)
        .set_publication_interval(None)
        .set_record_ttl(None)
        .set_provider_publication_interval(None)
        .set_periodic_bootstrap_interval(Some(cfg.bootstrap_interval));
    if let Some(k) = NonZeroUsize::new(cfg.replication_factor) {
        kcfg.set_replication_factor(k);
    }
    let role = cfg.role;
    let mode = role.kad_mode(cfg.reachability);
    let req_timeout = cfg.request_timeout;
    let sync_timeout = cfg.sync_timeout;
    let idle = cfg.idle_connection_timeout;
    let (kad_max, limit_window) = (cfg.max_kad_requests_per_peer, cfg.limit_window);
    let kad_limited = cfg.metrics.kad_requests_limited.clone();
    let measure_hops = cfg.measure_lookup_hops;
    let want_mdns = cfg.mdns;

    let parts = Parts {
        store,
        kcfg,
        mode,
        role,
        req_timeout,
        sync_timeout,
        kad_max,
        limit_window,
        kad_limited,
        measure_hops,
        want_mdns,
    };
    let memory_noise = noise::Config::new(&keypair).map_err(transport_err)?;
    let builder = libp2p::SwarmBuilder::with_existing_identity(keypair).with_tokio();
    let mut swarm = match cfg.transport {
        Transport::Tcp => builder
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(transport_err)?
            .with_dns()
            .map_err(transport_err)?
            .with_behaviour(|key| behaviour(key, parts))
            .map_err(transport_err)?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
        Transport::Memory => builder
            .with_other_transport(move |_| {
                use libp2p::Transport as _;
                libp2p::core::transport::MemoryTransport::default()
                    .upgrade(libp2p::core::upgrade::Version::V1)
                    .authenticate(memory_noise)
                    .multiplex(yamux::Config::default())
                    .boxed()
            })
            .map_err(transport_err)?
            .with_behaviour(|key| behaviour(key, parts))
            .map_err(transport_err)?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
    };

    for addr in &cfg.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| SpawnError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    // Wait until every listener reported its bound address (port 0 resolved).
    let mut listen_addrs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while listen_addrs.len() < cfg.listen.len() {
        let ev = tokio::time::timeout_at(deadline, swarm.select_next_some()).await;
        match ev {
            Ok(SwarmEvent::NewListenAddr { address, .. }) => {
                listen_addrs.push(address.with_p2p(local_peer).unwrap_or_else(|a| a));
            }
            Ok(SwarmEvent::ListenerError { error, .. }) => {
                return Err(SpawnError::Listen {
                    addr: cfg.listen.first().cloned().unwrap_or_else(Multiaddr::empty),
                    reason: error.to_string(),
                });
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    if listen_addrs.is_empty() && !cfg.listen.is_empty() {
        return Err(SpawnError::NoListenAddr);
    }

    // A listen address on a public IP is dialable as it is: confirm it, so a regular node in
    // `Reachability::Auto` becomes a Kademlia server (kad switches on confirmed external
    // addresses). Private, loopback and unspecified addresses are never confirmed here.
    for a in &listen_addrs {
        if is_public_addr(a) {
            swarm.add_external_address(strip_p2p(a.clone()));
        }
    }
    Ok((swarm, listen_addrs))
}

/// True when `addr` starts with a globally routable IP address.
fn is_public_addr(addr: &Multiaddr) -> bool {
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => {
            let o = ip.octets();
            !(ip.is_private()
                || ip.is_loopback()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.is_documentation()
                || ip.is_multicast()
                || (o[0] == 100 && (o[1] & 0xc0) == 64))
        }
        Some(Protocol::Ip6(ip)) => {
            let first = ip.segments()[0];
            !(ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
        _ => false,
    }
}

/// `addr` without a trailing `/p2p/<peer id>`.
pub(super) fn strip_p2p(mut addr: Multiaddr) -> Multiaddr {
    if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        addr.pop();
    }
    addr
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn public_addresses() {
        for (a, public) in [
            ("/ip4/8.8.8.8/tcp/1", true),
            ("/ip4/127.0.0.1/tcp/1", false),
            ("/ip4/10.1.2.3/tcp/1", false),
            ("/ip4/192.168.1.1/tcp/1", false),
            ("/ip4/100.64.0.1/tcp/1", false),
            ("/ip4/0.0.0.0/tcp/1", false),
            ("/ip6/2001:4860::1/tcp/1", true),
            ("/ip6/::1/tcp/1", false),
            ("/ip6/fd00::1/tcp/1", false),
            ("/dns4/example.com/tcp/1", false),
        ] {
            assert_eq!(is_public_addr(&a.parse().unwrap()), public, "{a}");
        }
    }
}
