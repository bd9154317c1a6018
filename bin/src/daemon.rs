//! The daemon's lifecycle: what a running `skymesh node` (or `skymesh dmsg server`) owns, and
//! the order it stops in.
//!
//! Shutdown is signalled explicitly and drained, as mini-redis does it (`src/server.rs`,
//! `src/shutdown.rs`), instead of dropping handles and aborting tasks:
//!
//! 1. **HTTP**: the admin/health listener stops accepting and finishes the requests in flight
//!    (at most [`HTTP_GRACE`]), so nothing new reaches the parts stopped next.
//! 2. **DMSG deregistration**: the DMSG server withdraws its discovery entry (at most
//!    [`DEREGISTER_TIMEOUT`]); on a full node that is a `dmsg` item with no free sessions, put
//!    into the DHT while the node can still reach its peers.
//! 3. **Transports**: the transport manager, DMSG-HTTP serving, the DMSG client and server
//!    (their sessions close).
//! 4. **Mirror**: the Redis feed and the task handing its items to the node.
//! 5. **Node**: the DHT node flushes its store and its task is joined.
//!
//! Each stage's tasks form a [`TaskGroup`]: they are told to stop through a broadcast channel
//! and the group knows they are done when a completion channel closes. Library components that
//! stop when dropped (`tp::Manager`, `dmsg::Server`, `mirror::MirrorFeed`) are held by their
//! stage and dropped there, in order.
use std::any::Any;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

/// How long stopping HTTP waits for requests in flight (a `dmsg/fetch` may take 30 s; an
/// operator stopping a node should not wait that long).
pub(crate) const HTTP_GRACE: Duration = Duration::from_secs(5);
/// How long a DMSG server's deregistration may take: one DHT put (or one discovery call,
/// whose client times out after 10 s).
pub(crate) const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the other task groups get to finish after being told to stop.
pub(crate) const TASK_GRACE: Duration = Duration::from_secs(5);

/// Listens for the shutdown notice (mini-redis `Shutdown`). Each task of a [`TaskGroup`] gets
/// one; `recv` returns once the group is told to stop, and at once on every later call.
#[derive(Debug)]
pub(crate) struct Shutdown {
    /// Set once the notice was seen.
    is_shutdown: bool,
    /// Receives the notice: a message, or the sender being dropped.
    notify: broadcast::Receiver<()>,
}

impl Shutdown {
    /// Waits for the notice.
    pub(crate) async fn recv(&mut self) {
        if self.is_shutdown {
            return;
        }
        // Lagged, closed or a message: every outcome means "stop".
        let _ = self.notify.recv().await;
        self.is_shutdown = true;
    }
}

/// Tasks that stop together, and the components they need (dropped after the tasks end).
pub(crate) struct TaskGroup {
    name: &'static str,
    /// Tells the tasks to stop: every [`Shutdown`] subscribed here returns from `recv` when a
    /// message is sent (or this sender is dropped).
    notify_shutdown: broadcast::Sender<()>,
    /// Cloned into every task and dropped when the task ends; the group never sends on it.
    /// Once the group drops its own clone, `shutdown_complete_rx` returns `None` exactly when
    /// every task has ended: that is how [`TaskGroup::drain`] knows it may go on.
    shutdown_complete_tx: mpsc::Sender<()>,
    /// See `shutdown_complete_tx`.
    shutdown_complete_rx: mpsc::Receiver<()>,
    /// The tasks, aborted only if they outlive the grace period of `drain`.
    tasks: Vec<dmsg::AbortOnDrop>,
    /// Components that stop when dropped, dropped (in order) after the tasks ended.
    held: Vec<Box<dyn Any + Send>>,
}

impl TaskGroup {
    /// An empty group; `name` appears in the logs.
    pub(crate) fn new(name: &'static str) -> TaskGroup {
        let (notify_shutdown, _) = broadcast::channel(1);
        let (shutdown_complete_tx, shutdown_complete_rx) = mpsc::channel(1);
        TaskGroup {
            name,
            notify_shutdown,
            shutdown_complete_tx,
            shutdown_complete_rx,
            tasks: Vec::new(),
            held: Vec::new(),
        }
    }

    /// Spawns `task`, which must return soon after its [`Shutdown`] fires.
    pub(crate) fn spawn<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(Shutdown) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let shutdown = Shutdown {
            is_shutdown: false,
            notify: self.notify_shutdown.subscribe(),
        };
        let done = self.shutdown_complete_tx.clone();
        let fut = task(shutdown);
        self.tasks.push(dmsg::AbortOnDrop(tokio::spawn(async move {
            fut.await;
            drop(done);
        })));
    }

    /// Keeps `component` until the group is drained; dropping it is what stops it.
    pub(crate) fn hold<T: Send + 'static>(&mut self, component: T) {
        self.held.push(Box::new(component));
    }

    /// Tells every task to stop, waits up to `grace` for all of them (aborting the rest), then
    /// drops the held components in the order they were added.
    pub(crate) async fn drain(self, grace: Duration) {
        let TaskGroup {
            name,
            notify_shutdown,
            shutdown_complete_tx,
            mut shutdown_complete_rx,
            tasks,
            held,
        } = self;
        let _ = notify_shutdown.send(());
        drop(shutdown_complete_tx);
        let finished = tokio::time::timeout(grace, shutdown_complete_rx.recv())
            .await
            .is_ok();
        if !finished {
            tracing::warn!(
                group = name,
                ?grace,
                "tasks still running after the grace period; aborting them"
            );
        }
        drop(tasks);
        for component in held {
            drop(component);
        }
        tracing::debug!(group = name, "stopped");
    }
}

/// The DMSG server whose entry is withdrawn at shutdown.
pub(crate) enum DmsgServerRef {
    /// A server registered with an HTTP discovery (`skymesh dmsg server`).
    Plain(Arc<dmsg::Server>),
    /// A full node's server, published in the DHT (`skymesh node --dmsg-listen`).
    Dht(Arc<overlay::DhtServer>),
}

impl DmsgServerRef {
    fn server(&self) -> &dmsg::Server {
        match self {
            DmsgServerRef::Plain(s) => s,
            DmsgServerRef::Dht(s) => &s.server,
        }
    }
}

/// A running daemon, stopped by [`Daemon::shutdown`] in the order of the module doc. Every
/// stage is optional: `skymesh dmsg server` has no node, a visor no DMSG server.
pub(crate) struct Daemon {
    /// 1. HTTP listeners.
    pub(crate) http: TaskGroup,
    /// 2. The DMSG server to deregister.
    pub(crate) dmsg_server: Option<DmsgServerRef>,
    /// 3. Transports, DMSG-HTTP, DMSG client and server.
    pub(crate) transports: TaskGroup,
    /// 4. The Redis mirror feed and its hand-over task.
    pub(crate) mirror: TaskGroup,
    /// 5. The DHT node and its task.
    pub(crate) node: Option<(dhtnode::Node, tokio::task::JoinHandle<()>)>,
}

impl Default for Daemon {
    fn default() -> Self {
        Daemon {
            http: TaskGroup::new("http"),
            dmsg_server: None,
            transports: TaskGroup::new("transports"),
            mirror: TaskGroup::new("mirror"),
            node: None,
        }
    }
}

impl Daemon {
    /// Stops everything, in order, each stage drained before the next starts.
    pub(crate) async fn shutdown(self) -> anyhow::Result<()> {
        let Daemon {
            http,
            dmsg_server,
            transports,
            mirror,
            node,
        } = self;
        http.drain(HTTP_GRACE).await;
        if let Some(s) = &dmsg_server {
            match tokio::time::timeout(DEREGISTER_TIMEOUT, s.server().deregister()).await {
                Ok(()) => tracing::info!("dmsg entry withdrawn"),
                Err(_) => tracing::warn!(
                    timeout = ?DEREGISTER_TIMEOUT,
                    "withdrawing the dmsg entry timed out"
                ),
            }
        }
        drop(dmsg_server);
        transports.drain(TASK_GRACE).await;
        mirror.drain(TASK_GRACE).await;
        if let Some((node, task)) = node {
            node.shutdown().await;
            task.await.map_err(|e| anyhow::anyhow!("node task: {e}"))?;
        }
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Resolves when process `pid` no longer exists (never when `None`; Linux `/proc` check
/// every 500 ms).
pub(crate) async fn parent_gone(pid: Option<u32>) {
    let Some(pid) = pid else {
        return std::future::pending().await;
    };
    let path = PathBuf::from(format!("/proc/{pid}"));
    while path.exists() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
