//! Node configuration. Required values go through [`Config::new`]; everything else has a
//! `DEFAULT_*` constant below, each with the reason for its value.
use std::path::PathBuf;
use std::time::Duration;

use keys::SecKey;
use libp2p::Multiaddr;

use crate::metrics::Metrics;
use crate::role::{Reachability, Role};

/// Kademlia protocol id: our own, so skymesh never joins (or pollutes) the IPFS DHT.
pub const KAD_PROTOCOL: &str = "/skymesh/kad/1.0.0";

/// Commands queued to the actor before callers wait (back-pressure): 256 is far above what an
/// admin API or a publisher issues concurrently, and small enough to bound memory.
pub const DEFAULT_COMMAND_QUEUE: usize = 256;

/// Most peers found by mDNS that are kept as bootstrap peers (a LAN with more nodes than this
/// still joins through the first ones).
pub const MAX_MDNS_PEERS: usize = 16;
/// Retry bootstrap this often until one bootstrap peer has answered (Go node: 30 s).
pub const DEFAULT_BOOTSTRAP_RETRY: Duration = Duration::from_secs(30);

/// Re-run bootstrap this often once a peer has answered (Go node: 5 min); keeps the routing
/// table fresh and finds new full nodes.
pub const DEFAULT_BOOTSTRAP_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// A full node publishes its `fullnode` advert this often (Go node: 5 min).
pub const DEFAULT_ADVERT_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// An advert counts as fresh this long after its timestamp: six missed periods (Go node: 30 min).
pub const DEFAULT_ADVERT_FRESH: Duration = Duration::from_secs(30 * 60);

/// Own items are re-put this often: well inside the 2 h lifetime storing nodes give an item, so
/// two republish attempts fail before anything expires.
pub const DEFAULT_REPUBLISH_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// Time limit for one Kademlia query (iterative lookup or put): 30 s; on a healthy network a
/// lookup takes a few round trips, far below this.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Time limit for one 1-RTT read request to a full node: 5 s, then the read falls back to an
/// iterative lookup.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Full nodes asked in parallel by one read (the highest valid seq among their answers wins).
pub const DEFAULT_READ_FANOUT: usize = 3;

/// A lookup stops once this many *remote* valid copies have been seen (highest seq wins);
/// more copies cost latency, fewer let one stale responder decide.
pub const DEFAULT_LOOKUP_QUORUM: usize = 2;

/// Inbound requests (kad PutRecord, `/skymesh/get/1`) allowed per peer per
/// [`DEFAULT_LIMIT_WINDOW`]: 600/min is 10/s, plenty for a well-behaved node.
pub const DEFAULT_MAX_REQUESTS_PER_PEER: u32 = 600;

/// Inbound Kademlia requests (FindNode, GetRecord, PutRecord, …) answered per peer per
/// [`DEFAULT_LIMIT_WINDOW`]: 1200/min is 20/s; a lookup asks one peer once, so only a peer
/// flooding us gets near it. Beyond it the requests are dropped and the peer disconnected
/// (see [`crate::kad_limit`]).
pub const DEFAULT_MAX_KAD_REQUESTS_PER_PEER: u32 = 1200;

/// Items accepted into the store from one peer per [`DEFAULT_LIMIT_WINDOW`]: a publisher has a
/// handful of slots refreshed every minute or so; 120/min leaves room for relaying nodes.
pub const DEFAULT_MAX_ITEMS_PER_PEER: u32 = 120;

/// Window of the per-peer limits.
pub const DEFAULT_LIMIT_WINDOW: Duration = Duration::from_secs(60);

/// Concurrent inbound+outbound `/skymesh/get/1` streams per connection: bounds memory per peer.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: usize = 32;

/// Metrics gauges (peers, routing table, items by salt) are refreshed this often.
pub const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(10);

/// Store expiry sweep interval: a minute is fine-grained against a 2 h item lifetime.
pub const DEFAULT_EXPIRE_INTERVAL: Duration = Duration::from_secs(60);

/// Idle connections are kept this long: reads to full nodes reuse the connection (1 RTT
/// instead of TCP + Noise + yamux set-up).
pub const DEFAULT_IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Kademlia replication factor `k` (libp2p and Go node: 20).
pub const DEFAULT_REPLICATION_FACTOR: usize = 20;

/// Largest kad message: 1 MiB, room for one item at the 64 KiB value limit many times over.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 1 << 20;

/// A full node pulls from the full nodes it knows this often, one at a time, from the cursor it
/// saved for each (incremental: only what changed). Pushes carry every write at once; this pull
/// only repairs gaps (a push queue that overflowed, a node that was down). The Go node
/// reconciled hourly and resent unchanged data every 60 s; an incremental pull of nothing costs
/// one small request.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(60);

/// Time limit for one sync page or push (request sent → response read): 30 s, as the Go
/// `GetItems`.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// Sync requests (GetItems pages and pushes) served per peer per [`DEFAULT_LIMIT_WINDOW`]:
/// 6000/min = 100/s; a full sync of 1 M items is 1000 pages, so a joining node is never
/// throttled by this while a flood of tiny requests is.
pub const DEFAULT_MAX_SYNC_REQUESTS_PER_PEER: u32 = 6000;

/// Items queued for pushing to one full node: 8192 × ~200 B ≈ 1.6 MiB per peer (a burst of a
/// few seconds of heavy writes); beyond it items are dropped and counted, and the periodic pull
/// repairs the gap.
pub const DEFAULT_PUSH_QUEUE: usize = 8192;

/// Configuration of one node.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The node's key: DMSG key, libp2p identity and item signer.
    pub secret_key: SecKey,
    /// Role of the node.
    pub role: Role,
    /// Reachability (decides the kad mode of a regular node). Default [`Reachability::Auto`].
    pub reachability: Reachability,
    /// Addresses to listen on. Default: `/ip4/127.0.0.1/tcp/0`.
    pub listen: Vec<Multiaddr>,
    /// The transport under Noise + yamux. Default [`Transport::Tcp`].
    pub transport: Transport,
    /// Bootstrap peers, each ending in `/p2p/<peer id>`. Default none.
    pub bootstrap: Vec<Multiaddr>,
    /// Find peers on the local network by mDNS (`_p2p._udp.local` multicast on every
    /// interface that is up): each discovered node becomes a bootstrap peer, at most
    /// [`MAX_MDNS_PEERS`]. Default off (the `skymesh node` command turns it on when a listen
    /// address is not loopback).
    pub mdns: bool,
    /// Directory of the persistent store (redb file [`crate::store::STORE_FILE`], created if
    /// missing); `None` keeps items in memory. Default `None`.
    pub data_dir: Option<PathBuf>,
    /// Store configuration (quotas, value limit, TTL). Default: the dht crate's defaults.
    pub store: dht::Config,
    /// Metrics to record into. Default: unregistered metrics.
    pub metrics: Metrics,
    /// See [`DEFAULT_COMMAND_QUEUE`].
    pub command_queue: usize,
    /// See [`DEFAULT_BOOTSTRAP_RETRY`].
    pub bootstrap_retry: Duration,
    /// See [`DEFAULT_BOOTSTRAP_INTERVAL`].
    pub bootstrap_interval: Duration,
    /// See [`DEFAULT_ADVERT_INTERVAL`].
    pub advert_interval: Duration,
    /// See [`DEFAULT_ADVERT_FRESH`].
    pub advert_fresh: Duration,
    /// See [`DEFAULT_REPUBLISH_INTERVAL`].
    pub republish_interval: Duration,
    /// Salts whose own items the application keeps fresh itself (it re-puts them when they
    /// change and before they would expire, like the transport manager does for `tp`): the
    /// republish timer leaves them alone, so an unchanged item costs no traffic. Default: empty.
    /// Own `dmsg` items are never re-signed by the timer either: their seq is the discovery
    /// entry's sequence, which only the DMSG side can advance.
    pub app_refreshed: std::collections::HashSet<dht::Salt>,
    /// See [`DEFAULT_QUERY_TIMEOUT`].
    pub query_timeout: Duration,
    /// See [`DEFAULT_REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    /// See [`DEFAULT_READ_FANOUT`].
    pub read_fanout: usize,
    /// See [`DEFAULT_LOOKUP_QUORUM`].
    pub lookup_quorum: usize,
    /// See [`DEFAULT_MAX_REQUESTS_PER_PEER`].
    pub max_requests_per_peer: u32,
    /// See [`DEFAULT_MAX_ITEMS_PER_PEER`].
    pub max_items_per_peer: u32,
    /// See [`DEFAULT_MAX_KAD_REQUESTS_PER_PEER`].
    pub max_kad_requests_per_peer: u32,
    /// See [`DEFAULT_LIMIT_WINDOW`].
    pub limit_window: Duration,
    /// See [`DEFAULT_REPLICATION_FACTOR`].
    pub replication_factor: usize,
    /// See [`DEFAULT_IDLE_CONNECTION_TIMEOUT`].
    pub idle_connection_timeout: Duration,
    /// Measure the hops of this node's lookups ([`crate::ReadOutcome::lookup_hops`]; see
    /// [`crate::hops`]): an upper bound while the node runs one query at a time, so meant for
    /// benchmarks and diagnostics. Off by default (no cost then).
    pub measure_lookup_hops: bool,
    /// Put our items again, to the peers a new closest-peers query finds, after the routing
    /// table changed since the put (items put while tables fill; see `docs/scale.md`). On by
    /// default; off only to measure what it fixes.
    pub reput_on_table_change: bool,
    /// See [`DEFAULT_SYNC_INTERVAL`].
    pub sync_interval: Duration,
    /// See [`DEFAULT_SYNC_TIMEOUT`].
    pub sync_timeout: Duration,
    /// See [`DEFAULT_MAX_SYNC_REQUESTS_PER_PEER`].
    pub max_sync_requests_per_peer: u32,
    /// See [`DEFAULT_PUSH_QUEUE`].
    pub push_queue: usize,
    /// Threads verifying a pulled sync page's signatures; 0 (default): one per core. Two pages
    /// of a session are in verification at once (each on this many threads, sharing the cores)
    /// so the threads never wait between pages; with 1, one page at a time on one thread.
    pub verify_threads: usize,
}

impl Config {
    /// A configuration with every optional value at its default.
    pub fn new(secret_key: SecKey, role: Role) -> Config {
        Config {
            secret_key,
            role,
            reachability: Reachability::Auto,
            listen: vec![loopback_any_port()],
            bootstrap: Vec::new(),
            mdns: false,
            transport: Transport::Tcp,
            data_dir: None,
            store: dht::Config::default(),
            metrics: Metrics::default(),
            command_queue: DEFAULT_COMMAND_QUEUE,
            bootstrap_retry: DEFAULT_BOOTSTRAP_RETRY,
            bootstrap_interval: DEFAULT_BOOTSTRAP_INTERVAL,
            advert_interval: DEFAULT_ADVERT_INTERVAL,
            advert_fresh: DEFAULT_ADVERT_FRESH,
            republish_interval: DEFAULT_REPUBLISH_INTERVAL,
            app_refreshed: std::collections::HashSet::new(),
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            read_fanout: DEFAULT_READ_FANOUT,
            lookup_quorum: DEFAULT_LOOKUP_QUORUM,
            max_requests_per_peer: DEFAULT_MAX_REQUESTS_PER_PEER,
            max_items_per_peer: DEFAULT_MAX_ITEMS_PER_PEER,
            max_kad_requests_per_peer: DEFAULT_MAX_KAD_REQUESTS_PER_PEER,
            limit_window: DEFAULT_LIMIT_WINDOW,
            replication_factor: DEFAULT_REPLICATION_FACTOR,
            idle_connection_timeout: DEFAULT_IDLE_CONNECTION_TIMEOUT,
            measure_lookup_hops: false,
            reput_on_table_change: true,
            sync_interval: DEFAULT_SYNC_INTERVAL,
            sync_timeout: DEFAULT_SYNC_TIMEOUT,
            max_sync_requests_per_peer: DEFAULT_MAX_SYNC_REQUESTS_PER_PEER,
            push_queue: DEFAULT_PUSH_QUEUE,
            verify_threads: 0,
        }
    }
}

/// The transport a node's swarm runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Transport {
    /// TCP (with DNS): the production transport.
    #[default]
    Tcp,
    /// libp2p's in-process memory transport (`/memory/N` addresses, `/memory/0` picks one):
    /// for networks of thousands of nodes in one process (benchmarks); no sockets.
    Memory,
}

fn loopback_any_port() -> Multiaddr {
    Multiaddr::from(std::net::Ipv4Addr::LOCALHOST).with(libp2p::multiaddr::Protocol::Tcp(0))
}
