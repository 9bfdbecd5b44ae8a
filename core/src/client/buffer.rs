//! A socket's outbound queue, which is also its offline buffer: packets
//! wait here, in order, until the socket is connected and the Manager
//! writes them to the connection. Bounded; pure.

use std::collections::VecDeque;

use crate::protocol::engine::Encoded;

/// One queued packet: its Engine.IO frames, its ack id if any, and the
/// event's name (`None` for a reply: the answer to a server's ack request,
/// which belongs to the connection it was asked on).
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub(crate) frames: Vec<Encoded>,
    pub(crate) ack: Option<u64>,
    pub(crate) event: Option<bytestring::ByteString>,
}

/// The queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the send buffer is full ({capacity} packets)")]
pub struct BufferFull {
    /// Its capacity.
    pub capacity: usize,
}

/// Packets waiting to be sent, oldest first.
#[derive(Debug)]
pub(crate) struct SendBuffer {
    items: VecDeque<Queued>,
    capacity: usize,
}

impl SendBuffer {
    pub(crate) fn new(capacity: usize) -> SendBuffer {
        SendBuffer { items: VecDeque::new(), capacity: capacity.max(1) }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Queues a packet at the back.
    pub(crate) fn push(&mut self, item: Queued) -> Result<(), BufferFull> {
        if self.items.len() >= self.capacity {
            return Err(BufferFull { capacity: self.capacity });
        }
        self.items.push_back(item);
        Ok(())
    }

    /// Queues a reply at the back, over the capacity: replies are bounded
    /// by the listener queue, and refusing one would leave the server's
    /// ack unanswered.
    pub(crate) fn push_reply(&mut self, frames: Vec<Encoded>) {
        self.items.push_back(Queued { frames, ack: None, event: None });
    }

    /// Drops the replies: the connection they answer is gone.
    pub(crate) fn drop_replies(&mut self) {
        self.items.retain(|q| q.event.is_some());
    }

    /// Everything queued, oldest first.
    pub(crate) fn take(&mut self) -> Vec<Queued> {
        self.items.drain(..).collect()
    }

    /// Drops the packet waiting for ack `id` (its ack timed out before it
    /// could be sent). Returns whether it was there.
    pub(crate) fn remove_ack(&mut self, id: u64) -> bool {
        let before = self.items.len();
        self.items.retain(|q| q.ack != Some(id));
        self.items.len() != before
    }

    /// Whether the packet of ack `id` is still queued.
    pub(crate) fn holds_ack(&self, id: u64) -> bool {
        self.items.iter().any(|q| q.ack == Some(id))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str, ack: Option<u64>) -> Queued {
        Queued { frames: vec![Encoded::Text(text.into())], ack, event: Some("e".into()) }
    }

    #[test]
    fn keeps_order_bounds_and_removes_timed_out_acks() {
        let mut b = SendBuffer::new(3);
        b.push(q("a", None)).unwrap();
        b.push(q("b", Some(1))).unwrap();
        b.push(q("c", None)).unwrap();
        assert_eq!(b.push(q("d", None)), Err(BufferFull { capacity: 3 }));
        assert!(b.holds_ack(1));
        assert!(b.remove_ack(1));
        assert!(!b.remove_ack(1));
        b.push(q("d", Some(2))).unwrap();
        b.push_reply(vec![Encoded::Text("r".into())]);
        assert_eq!(b.len(), 4);
        b.drop_replies();
        let texts: Vec<_> = b.take().into_iter().map(|q| q.frames[0].clone()).collect();
        assert_eq!(texts, ["a", "c", "d"].map(|t| Encoded::Text(t.into())));
        assert_eq!(b.len(), 0);
    }
}
