//! Store-and-forward wire formats (pure): the end-to-end encrypted, signed [`envelope`] and the
//! mailbox protocol [`wire`] spoken on a DMSG stream to a server's own key. The network side
//! (durable store, service, client, visor agent) is `dmsg::mailbox`. See
//! `docs/protocols/mailbox.md`.
pub mod envelope;
pub mod wire;
