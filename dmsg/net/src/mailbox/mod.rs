//! Store-and-forward (issue #15): messages to visors that are offline wait on DMSG servers and
//! are delivered, acknowledged, when the visor comes back. See `docs/protocols/mailbox.md`.
//!
//! | module | owns | I/O |
//! |---|---|---|
//! | [`envelope`] | the signed, end-to-end encrypted envelope (v1 layout; `dmsg_proto::mailbox`) | none (pure) |
//! | [`wire`] | the mailbox frames on a DMSG stream, receipts, mailbox-server choice (`dmsg_proto::mailbox`) | none (pure) |
//! | [`store`] | the server's durable queue: fsync'd log, group commit, quotas, replay refusal | files |
//! | [`service`] | the server side of the protocol on its own key, port 44; push to subscribers | DMSG streams |
//! | [`client`] | one stream with a mailbox server: store, subscribe, acknowledge | DMSG streams |
//! | [`agent`] | a visor's side: send to the recipient's servers, inbox exactly once, receipts | DMSG streams, files |
pub mod agent;
pub mod client;
pub use dmsg_proto::mailbox::envelope;
pub mod service;
pub mod store;
pub use dmsg_proto::mailbox::wire;

pub use agent::{InboxEntry, MailboxAgent, SendOutcome, SentEntry};
pub use envelope::{Draft, Envelope, EnvelopeError, MsgId};
pub use service::MailboxService;
pub use store::{Limits, MailboxStore};
pub use wire::{MAILBOX_PORT, Reason, Receipt, mailbox_servers};
