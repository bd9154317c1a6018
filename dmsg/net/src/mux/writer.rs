//! The session's writer task: takes queued frames in batches and writes each batch with one
//! vectored write (headers and bodies from their own buffers, never copied), then reports them
//! written and wakes local writers held at the queue's high-water mark.

use std::io;
use std::sync::Arc;
use std::task::Waker;

use dmsg_proto::mux::{CloseReason, StreamMux, Transmit};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;

use super::{Shared, wait_closed};

/// Most frames handed to one `writev` call (each is a header and maybe a body: two slices;
/// Linux takes up to 1024 slices per call).
const WRITE_BATCH_FRAMES: usize = 64;
/// Most bytes gathered for one `writev` call.
const WRITE_BATCH_BYTES: usize = 512 * 1024;

pub(super) async fn write_loop(sh: Arc<Shared>, mut wr: OwnedWriteHalf) {
    loop {
        // Made per batch: an idle session keeps no batch buffer (it would cost 3 KB each).
        let mut batch: Vec<Transmit> = Vec::new();
        let mut bytes = 0;
        {
            let mut g = sh.lock();
            if g.proto.is_closed() {
                break;
            }
            while batch.len() < WRITE_BATCH_FRAMES && bytes < WRITE_BATCH_BYTES {
                let Some(t) = g.proto.poll_transmit() else {
                    break;
                };
                bytes += t.len();
                batch.push(t);
            }
            // Nothing queued: any writer still waiting (one woken before did not write) goes.
            if batch.is_empty() && !g.proto.write_blocked() {
                g.write_waiters.drain(..).for_each(Waker::wake);
            }
        }
        if batch.is_empty() {
            tokio::select! {
                _ = sh.tx_notify.notified() => {}
                _ = wait_closed(&sh) => {}
            }
            continue;
        }
        // Headers and bodies leave from their own buffers (no copy), and a data frame never
        // goes out as a lone 12-byte header segment followed by its body.
        let ok = write_batch(&mut wr, &batch).await.is_ok();
        let batch_frames = batch.len();
        drop(batch);
        let mut g = sh.lock();
        g.proto.on_transmitted(bytes);
        if !ok {
            g.proto.close(CloseReason::Io);
            sh.drive(&mut g);
            break;
        }
        // Room for about as many frames as just left: wake that many writers (oldest first)
        // rather than all of them, most of whom would find the queue full again.
        if !g.proto.write_blocked() {
            let n = (batch_frames + 1).min(g.write_waiters.len());
            g.write_waiters.drain(..n).for_each(Waker::wake);
        }
    }
    // Flush what is still queued (FIN/RST of a local close), then close the socket.
    let batch: Vec<Transmit> = {
        let mut g = sh.lock();
        std::iter::from_fn(|| g.proto.poll_transmit()).collect()
    };
    if !batch.is_empty() {
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            write_batch(&mut wr, &batch),
        )
        .await;
    }
    let _ = wr.shutdown().await;
}

/// Writes every frame of `batch` (vectored, partial writes resumed).
async fn write_batch(wr: &mut OwnedWriteHalf, batch: &[Transmit]) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = Vec::with_capacity(batch.len() * 2);
    for t in batch {
        slices.push(io::IoSlice::new(t.header()));
        if !t.body.is_empty() {
            slices.push(io::IoSlice::new(&t.body));
        }
    }
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = wr.write_vectored(rest).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        io::IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}
