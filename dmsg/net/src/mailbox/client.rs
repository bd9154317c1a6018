//! The client side of the mailbox protocol: store an envelope on a mailbox server (signed
//! receipt back), subscribe to one's own queue, acknowledge what was written to the inbox.
use std::time::Duration;

use keys::PubKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::envelope::{Envelope, EnvelopeError, MsgId};
use super::wire::{Frame, MAILBOX_PORT, Reason, Receipt, WireError};
use crate::client::{Client, NewSession};
use crate::error::DialError;
use crate::stream::DmsgStream;

/// How long a store waits for its receipt.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a mailbox call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxError {
    /// The server could not be reached.
    #[error("dialing the mailbox server {server}")]
    Dial {
        /// The server.
        server: PubKey,
        /// The cause.
        #[source]
        source: DialError,
    },
    /// The server refused the message.
    #[error("mailbox server {server} refused the message: {}", .reason.as_str())]
    Refused {
        /// The server.
        server: PubKey,
        /// Why.
        reason: Reason,
    },
    /// The server sent something that is not the protocol.
    #[error("mailbox server {server} broke the protocol")]
    Protocol {
        /// The server.
        server: PubKey,
        /// The cause.
        #[source]
        source: WireError,
    },
    /// A delivered envelope is forged or malformed.
    #[error("mailbox server {server} delivered a bad envelope")]
    BadEnvelope {
        /// The server.
        server: PubKey,
        /// The cause.
        #[source]
        source: EnvelopeError,
    },
    /// A receipt is for another message or signed by another key than the server's.
    #[error("mailbox server {server} sent a receipt that is not its own for this message")]
    BadReceipt {
        /// The server.
        server: PubKey,
    },
    /// The stream closed or timed out.
    #[error("mailbox stream with {server} closed")]
    Closed {
        /// The server.
        server: PubKey,
    },
}

/// A stream with a mailbox server.
pub struct MailboxConn {
    server: PubKey,
    stream: DmsgStream,
    buf: Vec<u8>,
}

impl MailboxConn {
    /// Opens a stream to `server`'s mailbox.
    pub async fn open(client: &Client, server: PubKey) -> Result<MailboxConn, MailboxError> {
        Self::open_with(client, server, NewSession::Allow).await
    }

    /// Opens a stream to `server`'s mailbox, opening a session with it only when `new` allows.
    pub async fn open_with(
        client: &Client,
        server: PubKey,
        new: NewSession,
    ) -> Result<MailboxConn, MailboxError> {
        let stream = client
            .dial_server_with(server, MAILBOX_PORT, new)
            .await
            .map_err(|source| MailboxError::Dial { server, source })?;
        Ok(MailboxConn {
            server,
            stream,
            buf: Vec::new(),
        })
    }

    async fn send(&mut self, f: &Frame) -> Result<(), MailboxError> {
        let mut out = Vec::new();
        f.encode(&mut out);
        self.stream
            .write_all(&out)
            .await
            .map_err(|_| MailboxError::Closed {
                server: self.server,
            })
    }

    async fn recv(&mut self) -> Result<Frame, MailboxError> {
        let server = self.server;
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            match Frame::decode(&self.buf) {
                Ok(Some((f, used))) => {
                    self.buf.drain(..used);
                    return Ok(f);
                }
                Ok(None) => {}
                Err(source) => return Err(MailboxError::Protocol { server, source }),
            }
            match self.stream.read(&mut chunk).await {
                Ok(n) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => return Err(MailboxError::Closed { server }),
            }
        }
    }

    /// Stores `e`; returns the server's verified receipt.
    pub async fn store(&mut self, e: &Envelope) -> Result<Receipt, MailboxError> {
        self.store_bytes(e.as_bytes(), e.id).await
    }

    /// Stores an encoded envelope whose id is `id` (tests send forgeries this way).
    pub async fn store_bytes(&mut self, raw: &[u8], id: MsgId) -> Result<Receipt, MailboxError> {
        let server = self.server;
        self.send(&Frame::Store(raw.to_vec())).await?;
        let f = tokio::time::timeout(STORE_TIMEOUT, self.recv())
            .await
            .map_err(|_| MailboxError::Closed { server })??;
        match f {
            Frame::Stored(r) if r.id == id && r.server == server => Ok(r),
            Frame::Stored(_) => Err(MailboxError::BadReceipt { server }),
            Frame::Refused(_, reason) => Err(MailboxError::Refused { server, reason }),
            _ => Err(MailboxError::Protocol {
                server,
                source: WireError::Malformed("unexpected frame"),
            }),
        }
    }

    /// Subscribes to our own queue; then call [`MailboxConn::next`].
    pub async fn subscribe(&mut self) -> Result<(), MailboxError> {
        self.send(&Frame::Subscribe).await
    }

    /// The next delivered envelope (signature checked), or `None` when the stream closed.
    pub async fn next(&mut self) -> Result<Option<Envelope>, MailboxError> {
        let server = self.server;
        match self.recv().await {
            Ok(Frame::Deliver(raw)) => Envelope::decode(&raw)
                .map(Some)
                .map_err(|source| MailboxError::BadEnvelope { server, source }),
            Ok(_) => Err(MailboxError::Protocol {
                server,
                source: WireError::Malformed("unexpected frame"),
            }),
            Err(MailboxError::Closed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Acknowledges a message written to our inbox.
    pub async fn ack(&mut self, id: MsgId) -> Result<(), MailboxError> {
        self.send(&Frame::Ack(id)).await
    }

    /// The server.
    pub fn server(&self) -> PubKey {
        self.server
    }
}
