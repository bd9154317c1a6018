//! Default limits and timeouts, each with the reason for its value.
use std::time::Duration;

/// XK handshake deadline per side: the reference uses 5 s; a peer that cannot send 116 bytes in
/// that time is not worth a slot.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Handshakes in progress at once on a server: bounds memory and CPU spent on peers that have not
/// proven key possession yet (each waits at most [`DEFAULT_HANDSHAKE_TIMEOUT`]).
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 1024;
/// Sessions a server holds (the reference's generated configs say 2048).
pub const DEFAULT_MAX_SESSIONS: usize = 2048;
/// yamux receive window per stream (hashicorp default, 256 KiB): also the per-stream receive
/// buffer bound, since a peer may never send beyond the window it was granted.
pub const DEFAULT_WINDOW: u32 = dmsg_proto::yamux::DEFAULT_WINDOW;
/// Receive window we grant per stream: the 256 KiB yamux initial window plus a window update
/// sent with SYN/ACK (hashicorp does the same when MaxStreamWindowSize is raised; Go senders
/// add the delta). A larger window keeps a relayed stream busy across two hops; it is also the
/// bound of each stream's receive buffer.
pub const DEFAULT_RECV_WINDOW: u32 = 1024 * 1024;
/// Incoming streams per session that are open at once; a SYN beyond this is refused with RST.
/// Bounds the per-session stream map (remote input).
pub const DEFAULT_MAX_STREAMS: usize = 1024;
/// Accepted-but-not-yet-taken incoming streams per session (hashicorp AcceptBacklog 256).
pub const DEFAULT_ACCEPT_BACKLOG: usize = 256;
/// Largest data frame we send: large frames amortise headers; well below the 256 KiB window.
pub const DEFAULT_MAX_FRAME_DATA: usize = 64 * 1024;
/// Keep-alive ping interval (hashicorp default 30 s, what Go peers send).
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(30);
/// A session that has received nothing for this long is dead: Go peers ping every 30 s, we ping
/// every 30 s, so two missed rounds plus slack means the peer is gone (half-dead TCP).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Bytes queued for a session's socket beyond which local writers wait (back-pressure).
pub const DEFAULT_WRITE_HIGH_WATER: usize = 4 * 1024 * 1024;
/// Bytes queued for a session's socket beyond which the session is closed: only a peer that
/// stops reading while making us answer (pings, window updates, RSTs) gets here.
pub const DEFAULT_WRITE_HARD_LIMIT: usize = 16 * 1024 * 1024;
/// smux NOP interval (skywire 2026 `SmuxConfig` KeepAliveInterval: what Go peers send and
/// expect; a Go peer drops a session after 30–60 s without a frame).
pub const DEFAULT_SMUX_KEEPALIVE: Duration = Duration::from_secs(10);
/// smux silence check period (skywire 2026 KeepAliveTimeout): nothing received between two
/// checks closes the session, so a dead peer is noticed after 30–60 s.
pub const DEFAULT_SMUX_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest smux data frame we send (skywire 2026 MaxFrameSize, the 16-bit length allows 65535).
pub const DEFAULT_SMUX_MAX_FRAME: usize = 32 * 1024;
/// smux session receive buffer: unread bytes of all streams of one session, past which we stop
/// reading its socket (skywire 2026 MaxReceiveBuffer, 1 MiB). The memory bound of an smux
/// session, since smux peers do not respect per-stream windows strictly.
pub const DEFAULT_SMUX_RECEIVE_BUFFER: usize = 1024 * 1024;
/// smux window we advertise per stream in UPD frames, one UPD per half of it read (skywire 2026
/// MaxStreamBuffer, 64 KiB).
pub const DEFAULT_SMUX_STREAM_WINDOW: u32 = 64 * 1024;
/// How long a server waits for a client's discovery entry after the handshake to learn its
/// multiplexer (then yamux). Well inside the client's own handshake deadline.
pub const DEFAULT_PROTOCOL_LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// Deadline of an smux ping (a `00 00` stream echoed by the server; the reference's 5 s).
pub const DEFAULT_SMUX_PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Socket read buffer per session: small, so idle sessions cost little memory; large data
/// bodies bypass it.
pub const DEFAULT_READ_BUF: usize = 4 * 1024;
/// Deadline for the request/response exchange of a new stream (the reference: 20 s in 2023,
/// 5 s in 2026; we take the 2026 value for the server and allow more for dialers behind it).
pub const DEFAULT_STREAM_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client waits after the XK handshake for the server's first frame before it
/// writes anything, so its first yamux bytes never land in the same read as message 3 (the
/// reference server drops such sessions with error 203). Our server pings right away; a Go
/// server sends nothing, so this is only a short pause there.
pub const DEFAULT_POST_HANDSHAKE_WAIT: Duration = Duration::from_millis(100);
/// Listener accept queue per port (the reference: 20 in 2023, 256 in 2026).
pub const DEFAULT_LISTENER_BACKLOG: usize = 256;
/// First ephemeral port (the reference's porter starts at 49152 and increments before use).
pub const EPHEMERAL_PORT_MIN: u16 = 49152;
/// Server entry refresh interval (the reference's DefaultUpdateInterval, 1 min).
pub const DEFAULT_UPDATE_INTERVAL: Duration = Duration::from_secs(60);
/// Discovery: server entries live this long after their last write (the reference: 2 min).
pub const DEFAULT_SERVER_ENTRY_TTL: Duration = Duration::from_secs(120);
/// Discovery: client entries posted with `?timeout=true` live this long (the reference: 3 min).
pub const DEFAULT_CLIENT_ENTRY_TTL: Duration = Duration::from_secs(180);
/// Discovery: most entries stored (bounds memory against key-churning posters).
pub const DEFAULT_MAX_ENTRIES: usize = 1_000_000;
/// Discovery: most entries in an `available_servers` reply (the reference's Redis store: 512).
pub const DEFAULT_MAX_SERVERS_LISTED: usize = 512;
/// Discovery HTTP client timeout.
pub const DEFAULT_DISC_TIMEOUT: Duration = Duration::from_secs(10);
/// Reconnect backoff of the client (`client.rs` `maintain`) and of a server's discovery
/// registration (`server/mod.rs` `register_loop`): first delay, factor 2, capped
/// ([`crate::backoff::Backoff`]), then ±50 % jitter (`crate::reconnect_delay`).
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Upper bound of the reconnect backoff before jitter (the reference caps at 1 min; we retry
/// sooner).
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Sessions a client keeps to servers chosen from discovery (the reference's MinSessions 1).
pub const DEFAULT_MIN_SESSIONS: usize = 1;
/// Sessions a client may hold in total (its own choice plus sessions to peers' servers).
pub const DEFAULT_MAX_CLIENT_SESSIONS: usize = 64;
/// DMSG-HTTP port (the reference's DefaultDmsgHTTPPort).
pub const DEFAULT_HTTP_PORT: u16 = 80;
