//! An IO wrapper that lets an idle WebSocket hold no read buffer.
//!
//! tungstenite keeps a read buffer per connection for its whole life, and
//! reads at most that buffer's size per call. [`LeanIo`] reads the socket
//! into one scratch buffer per thread (64 KiB, so a burst is one system
//! call), hands tungstenite what fits, and keeps only the rest, in a buffer
//! that exists while it is non-empty. With a small tungstenite buffer an
//! idle connection costs a few hundred bytes instead of the read buffer
//! plus hyper's 8 KiB request buffer (released by the caller at upgrade).

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const SCRATCH_LEN: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_LEN].into_boxed_slice());
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct LeanIo<S> {
    io: S,
    /// Read from the socket, not yet handed out.
    pending: Bytes,
}

impl<S> LeanIo<S> {
    /// Wraps `io`; `pending` is what was read past the upgrade request
    /// (copied, so no larger buffer stays alive behind a few bytes).
    pub(crate) fn new(io: S, pending: &[u8]) -> LeanIo<S> {
        LeanIo { io, pending: if pending.is_empty() { Bytes::new() } else { Bytes::copy_from_slice(pending) } }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LeanIo<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pending.is_empty() {
            let n = this.pending.len().min(buf.remaining());
            buf.put_slice(&this.pending.split_to(n));
            if this.pending.is_empty() {
                // An empty `Bytes` split off a buffer still holds it.
                this.pending = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= SCRATCH_LEN {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        SCRATCH.with_borrow_mut(|scratch| {
            let mut read = ReadBuf::new(&mut scratch[..]);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            let filled = read.filled();
            let n = filled.len().min(buf.remaining());
            buf.put_slice(&filled[..n]);
            if filled.len() > n {
                this.pending = Bytes::copy_from_slice(&filled[n..]);
            }
            Poll::Ready(Ok(()))
        })
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LeanIo<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn hands_out_small_reads_in_order_and_keeps_nothing_when_drained() {
        let (mut tx, rx) = tokio::io::duplex(256 * 1024);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        tx.write_all(&data).await.unwrap();
        drop(tx);
        let mut lean = LeanIo::new(rx, b"head:");
        let mut got = Vec::new();
        let mut chunk = [0u8; 300];
        loop {
            let n = lean.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            assert!(n <= chunk.len());
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(&got[..5], b"head:");
        assert_eq!(&got[5..], &data[..]);
        assert!(lean.pending.is_empty());
    }

    #[tokio::test]
    async fn large_reads_bypass_the_scratch_buffer() {
        let (mut tx, rx) = tokio::io::duplex(1024);
        tx.write_all(b"abc").await.unwrap();
        let mut lean = LeanIo::new(rx, &[]);
        let mut big = vec![0u8; SCRATCH_LEN];
        let n = lean.read(&mut big).await.unwrap();
        assert_eq!(&big[..n], b"abc");
    }
}
