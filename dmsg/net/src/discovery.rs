//! Where clients and servers find each other: the [`Discovery`] trait.
//!
//! The reference network has one implementation, the HTTP discovery API ([`DiscClient`]).
//! skymesh adds a DHT-backed one (`skymesh-overlay`'s `DhtDiscovery`), so a [`crate::Client`]
//! or [`crate::Server`] works unchanged with either: they only need an entry by key, a list of
//! servers to connect to, a way to publish their own signed entry and a way to withdraw it.
use std::future::Future;
use std::pin::Pin;

use dmsg_proto::disc::Entry;
use keys::{PubKey, SecKey};

use crate::disc_client::DiscClient;
use crate::error::DiscError;

/// A boxed discovery call.
pub type DiscFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DiscError>> + Send + 'a>>;

/// A source of discovery entries and a place to publish one's own.
pub trait Discovery: Send + Sync + 'static {
    /// The entry of `pk` ([`DiscError::NotFound`] when there is none).
    fn entry(&self, pk: PubKey) -> DiscFuture<'_, Entry>;

    /// Servers to open sessions with, best first.
    fn available_servers(&self) -> DiscFuture<'_, Vec<Entry>>;

    /// Every published server, full or not (the mesh's peer candidates). Defaults to
    /// [`Discovery::available_servers`].
    fn all_servers(&self) -> DiscFuture<'_, Vec<Entry>> {
        self.available_servers()
    }

    /// Publishes `e` signed with `sk`, with a sequence above any published before; returns
    /// what was published.
    fn put_entry(&self, sk: SecKey, e: Entry) -> DiscFuture<'_, Entry>;

    /// Withdraws the entry of `sk`'s key (best effort; a clean shutdown).
    fn withdraw(&self, sk: SecKey) -> DiscFuture<'_, ()>;

    /// A short description for logs (`http://…`, `dht`).
    fn describe(&self) -> String;
}

impl Discovery for DiscClient {
    fn entry(&self, pk: PubKey) -> DiscFuture<'_, Entry> {
        Box::pin(async move { DiscClient::entry(self, &pk).await })
    }

    fn available_servers(&self) -> DiscFuture<'_, Vec<Entry>> {
        Box::pin(DiscClient::available_servers(self))
    }

    fn all_servers(&self) -> DiscFuture<'_, Vec<Entry>> {
        Box::pin(DiscClient::all_servers(self))
    }

    fn put_entry(&self, sk: SecKey, e: Entry) -> DiscFuture<'_, Entry> {
        Box::pin(async move { DiscClient::put_entry(self, &sk, e).await })
    }

    fn withdraw(&self, sk: SecKey) -> DiscFuture<'_, ()> {
        Box::pin(async move {
            let mut e = DiscClient::entry(self, &sk.pubkey()).await?;
            e.timestamp = crate::now_ns();
            e.signature.clear();
            e.sign(&sk);
            self.delete_entry(&e).await
        })
    }

    fn describe(&self) -> String {
        self.base().to_string()
    }
}
