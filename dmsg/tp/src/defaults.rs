//! Defaults, each with its reason.
use std::time::Duration;

/// DMSG port of the transport link protocol. Skywire's own transport port 45 speaks Skywire's
/// transport handshake, which this protocol is not, so a Go visor dialing 45 must not reach us;
/// 145 is not used by skywire or dmsg (7, 22, 36, 45, 46, 47, 50, 80, 81, 100, 136 are).
pub const TP_PORT: u16 = 145;

/// Most transports one visor keeps (configured and accepted together). A busy Go visor has
/// tens; 256 keeps the `tp` value (≈ 200 bytes an entry) well inside the 64 KiB item limit and
/// below the format's 512.
pub const DEFAULT_MAX_TRANSPORTS: usize = 256;

/// Keepalive interval on an established link: 5 s of 2-byte frames costs nothing and lets a
/// dead peer be noticed within [`DEFAULT_DEAD_AFTER`].
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(5);

/// A link that receives nothing for three keepalive intervals is dead.
pub const DEFAULT_DEAD_AFTER: Duration = Duration::from_secs(15);

/// Time limit for the dial plus the Hello exchange (a DMSG dial is a discovery lookup plus a
/// relayed handshake, normally well under a second).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// First reconnect delay after a link drops.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(500);

/// Longest reconnect delay (jitter included).
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// An accepted (peer-initiated) transport that stays down this long is forgotten: the peer
/// that configured it redials within [`DEFAULT_BACKOFF_MAX`] while it exists, so 10 min of
/// silence means it is gone or removed the transport while unreachable.
pub const DEFAULT_ACCEPTED_DOWN_TTL: Duration = Duration::from_secs(10 * 60);

/// Republish an unchanged `tp` item after 90 min: storing nodes keep items 2 h
/// (`dht::config::DEFAULT_TTL`), so a refresh arrives 30 min before expiry.
pub const DEFAULT_REFRESH_AFTER: Duration = Duration::from_secs(90 * 60);

/// Least time between two puts of a changed list: bursts (several transports added at once, a
/// flapping link) are coalesced into one put, and the rate is bounded at 5 puts/s.
pub const DEFAULT_MIN_PUBLISH_INTERVAL: Duration = Duration::from_millis(200);

/// Retry a failed put after 5 s.
pub const DEFAULT_PUBLISH_RETRY: Duration = Duration::from_secs(5);

/// `tp all` over the DHT looks up at most this many keys (each is one read).
pub const DEFAULT_MAX_LOOKUPS: usize = 256;

/// Lookups in flight at once for `tp all`.
pub const DEFAULT_LOOKUP_CONCURRENCY: usize = 8;

/// Time limit of the HTTP fallback request.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(20);

/// Largest HTTP fallback body read (the Go discovery's full list of ~10k transports is a few MB).
pub const DEFAULT_MAX_HTTP_BYTES: usize = 16 * 1024 * 1024;

/// Most entries taken from the HTTP fallback.
pub const DEFAULT_MAX_HTTP_ENTRIES: usize = 100_000;

/// Incoming streams waiting for their Hello at once; more are dropped (the DMSG listener's
/// own backlog bounds what waits before that).
pub const DEFAULT_MAX_PENDING_HELLOS: usize = 64;
