//! Prometheus metrics of a DMSG server (`skymesh_dmsg_*`, listed in `docs/metrics.md`).
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Label: a reason string.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: String,
}

/// Label: a DMSG error code.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The code, e.g. `307`.
    pub code: String,
}

/// Server metrics (cheap to clone: the metrics are shared handles).
#[derive(Debug, Clone, Default)]
pub struct ServerMetrics {
    /// Sessions currently open.
    pub sessions: Gauge,
    /// Sessions accepted since start.
    pub sessions_accepted: Counter,
    /// Handshake failures by reason (timeout, handshake, extra_bytes, io, overload, max_sessions).
    pub handshake_failures: Family<ReasonLabel, Counter>,
    /// Streams relayed since start.
    pub streams: Counter,
    /// Streams being relayed now.
    pub streams_active: Gauge,
    /// Payload bytes relayed (both directions).
    pub bytes_relayed: Counter,
    /// Stream requests refused, by DMSG error code.
    pub refusals: Family<CodeLabel, Counter>,
    /// Ping streams answered (the 2026 `00 00` marker).
    pub pings: Counter,
    /// The server mesh (`skymesh_dmsg_mesh_*`).
    pub mesh: MeshMetrics,
}

/// Label: a mesh peer's key (hex). Bounded by the peer table (at most 256 peers).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    /// The peer's key.
    pub peer: String,
}

/// Label: a link event.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabel {
    /// up, down, inbound_up, inbound_down, dial_failed, garbage, flood.
    pub event: String,
}

/// Server-mesh metrics (`skymesh_dmsg_mesh_*`, listed in `docs/metrics.md`).
#[derive(Debug, Clone, Default)]
pub struct MeshMetrics {
    /// Peers in the table.
    pub peers: Gauge,
    /// 1 while a link (ours or the peer's) is up.
    pub peer_up: Family<PeerLabel, Gauge>,
    /// Last measured link round trip.
    pub peer_rtt: Family<PeerLabel, Gauge<f64, AtomicU64>>,
    /// Streams forwarded to a peer and accepted by the destination.
    pub forwarded_streams: Counter,
    /// Payload bytes of forwarded streams, both directions.
    pub forwarded_bytes: Counter,
    /// Streams a peer relayed to one of our clients.
    pub relayed_in: Counter,
    /// Peers that did not hold a destination they were offered.
    pub misses: Counter,
    /// Mesh refusals by reason: relay_capacity (4096 server-wide), link_capacity (512 per
    /// link), no_peer (nobody reached the destination), one_hop (a peer's request for a
    /// destination not held here), not_a_peer (a relayed request on an ordinary session).
    pub refusals: Family<ReasonLabel, Counter>,
    /// Link events.
    pub link_events: Family<EventLabel, Counter>,
}

impl MeshMetrics {
    fn register(&self, r: &mut Registry) {
        r.register("mesh_peers", "Mesh peers known", self.peers.clone());
        r.register(
            "mesh_peer_up",
            "1 while a link with the mesh peer is up",
            self.peer_up.clone(),
        );
        r.register(
            "mesh_peer_rtt_seconds",
            "Last measured round trip of the link with the mesh peer",
            self.peer_rtt.clone(),
        );
        r.register(
            "mesh_forwarded_streams",
            "Streams forwarded to a mesh peer and accepted",
            self.forwarded_streams.clone(),
        );
        r.register(
            "mesh_forwarded_bytes",
            "Payload bytes of forwarded streams, both directions",
            self.forwarded_bytes.clone(),
        );
        r.register(
            "mesh_relayed_in_streams",
            "Streams a mesh peer relayed to a client of this server",
            self.relayed_in.clone(),
        );
        r.register(
            "mesh_misses",
            "Mesh peers offered a destination they did not hold",
            self.misses.clone(),
        );
        r.register(
            "mesh_refusals",
            "Mesh refusals by reason",
            self.refusals.clone(),
        );
        r.register(
            "mesh_link_events",
            "Mesh link events",
            self.link_events.clone(),
        );
    }

    /// Counts a mesh refusal.
    pub fn refused(&self, reason: &str) {
        self.refusals
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a link event.
    pub fn link_event(&self, event: &str) {
        self.link_events
            .get_or_create(&EventLabel {
                event: event.to_string(),
            })
            .inc();
    }

    /// The up gauge of `pk`.
    pub fn peer_up(&self, pk: &keys::PubKey) -> Gauge {
        self.peer_up
            .get_or_create(&PeerLabel { peer: pk.to_hex() })
            .clone()
    }

    /// The RTT gauge of `pk`.
    pub fn peer_rtt(&self, pk: &keys::PubKey) -> Gauge<f64, AtomicU64> {
        self.peer_rtt
            .get_or_create(&PeerLabel { peer: pk.to_hex() })
            .clone()
    }

    /// Drops the per-peer series of a peer that left.
    pub fn forget_peer(&self, pk: &keys::PubKey) {
        let l = PeerLabel { peer: pk.to_hex() };
        self.peer_up.remove(&l);
        self.peer_rtt.remove(&l);
    }
}

impl ServerMetrics {
    /// Creates the metrics and registers them under the `skymesh_dmsg` prefix.
    pub fn new(registry: &mut Registry) -> ServerMetrics {
        let m = ServerMetrics::default();
        let r = registry.sub_registry_with_prefix("skymesh_dmsg");
        r.register("sessions", "Sessions currently open", m.sessions.clone());
        r.register(
            "sessions_accepted",
            "Sessions accepted (handshake completed)",
            m.sessions_accepted.clone(),
        );
        r.register(
            "handshake_failures",
            "Failed session set-ups by reason",
            m.handshake_failures.clone(),
        );
        r.register("streams", "Streams relayed", m.streams.clone());
        r.register(
            "streams_active",
            "Streams being relayed now",
            m.streams_active.clone(),
        );
        r.register(
            "relayed_bytes",
            "Payload bytes relayed, both directions",
            m.bytes_relayed.clone(),
        );
        r.register(
            "refusals",
            "Stream requests refused, by DMSG error code",
            m.refusals.clone(),
        );
        r.register(
            "pings",
            "Ping streams answered (00 00 marker, skywire 2026)",
            m.pings.clone(),
        );
        m.mesh.register(r);
        m
    }

    /// Counts a handshake failure.
    pub fn handshake_failed(&self, reason: &str) {
        self.handshake_failures
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a refusal.
    pub fn refused(&self, code: u16) {
        self.refusals
            .get_or_create(&CodeLabel {
                code: code.to_string(),
            })
            .inc();
    }
}

/// Mailbox metrics of a DMSG server (`skymesh_mailbox_*`, listed in `docs/metrics.md`).
#[derive(Debug, Clone, Default)]
pub struct MailboxMetrics {
    /// Messages queued now.
    pub queued_messages: Gauge,
    /// Bytes queued now.
    pub queued_bytes: Gauge,
    /// Messages stored (fsync'd) since start.
    pub stored: Counter,
    /// Messages acknowledged by their recipient (and deleted).
    pub delivered: Counter,
    /// Messages dropped at their TTL.
    pub expired: Counter,
    /// Refusals by reason.
    pub refusals: Family<ReasonLabel, Counter>,
}

impl MailboxMetrics {
    /// Creates the metrics and registers them under `skymesh_mailbox`.
    pub fn new(registry: &mut Registry) -> MailboxMetrics {
        let m = MailboxMetrics::default();
        let r = registry.sub_registry_with_prefix("skymesh_mailbox");
        r.register(
            "queued_messages",
            "Messages queued",
            m.queued_messages.clone(),
        );
        r.register("queued_bytes", "Bytes queued", m.queued_bytes.clone());
        r.register("stored", "Messages stored durably", m.stored.clone());
        r.register(
            "delivered",
            "Messages acknowledged by their recipient",
            m.delivered.clone(),
        );
        r.register(
            "expired",
            "Messages dropped at their TTL",
            m.expired.clone(),
        );
        r.register("refusals", "Mailbox refusals by reason", m.refusals.clone());
        m
    }

    /// Counts a refusal.
    pub fn refused(&self, why: crate::mailbox::Reason) {
        self.refusals
            .get_or_create(&ReasonLabel {
                reason: why.as_str().to_string(),
            })
            .inc();
    }
}
