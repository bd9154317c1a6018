//! Async framing shared by the request-response protocols (`/skymesh/get/1`,
//! `/skymesh/sync/1`): one message per stream direction; the writer closes its half after the
//! message, so the reader reads to EOF, with a hard byte limit. The byte layouts are pure and
//! live elsewhere ([`itemsync::get`], [`itemsync::wire`]).
use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Reads to EOF, at most `limit` bytes; a longer message is refused with the error
/// `over_limit(limit)` makes (each protocol decides what an oversized message means).
pub async fn read_limited<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    limit: usize,
    over_limit: impl FnOnce(usize) -> io::Error,
) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    // One byte over the limit tells "too large" apart from "exactly at the limit".
    io.take(limit as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > limit {
        return Err(over_limit(limit));
    }
    Ok(buf)
}

/// Writes `bytes` and closes the stream's write half.
pub async fn write_and_close<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
) -> io::Result<()> {
    io.write_all(bytes).await?;
    io.close().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn over(limit: usize) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, format!("over {limit}"))
    }

    #[test]
    fn reads_up_to_the_limit_and_refuses_more() {
        futures::executor::block_on(async {
            let mut exact: &[u8] = &[1, 2, 3];
            assert_eq!(
                read_limited(&mut exact, 3, over).await.unwrap(),
                vec![1, 2, 3]
            );
            let mut long: &[u8] = &[1, 2, 3, 4];
            let e = read_limited(&mut long, 3, over).await.unwrap_err();
            assert_eq!(e.to_string(), "over 3");
            let mut out = Vec::new();
            let mut sink = futures::io::Cursor::new(&mut out);
            write_and_close(&mut sink, &[9, 8]).await.unwrap();
            assert_eq!(out, vec![9, 8]);
        });
    }
}
