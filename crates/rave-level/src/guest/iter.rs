//! An iterator of a [`super::Guest`]: buffers the host's data messages and acks each one once
//! it is fully consumed (the host reads ahead only on acks, at most two messages ahead). The
//! limit is enforced here, exactly (the host's is soft).

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use rave_api::{Entry, Error, KvIterator, Projection, Range, Result};
use tokio::sync::mpsc;

use super::{IterReply, Shared};
use crate::codes;
use crate::frame::Outgoing;
use crate::messages::{self as m, request};
use crate::range::to_options;

pub(crate) struct GuestIter {
    shared: Arc<Shared>,
    id: u32,
    replies: mpsc::UnboundedReceiver<IterReply>,
    projection: Projection,
    limit: Option<u64>,
    consumed: u64,
    /// The rest of the data message being consumed.
    current: VecDeque<Entry>,
    ended: bool,
}

impl GuestIter {
    pub(crate) fn open(shared: Arc<Shared>, range: Range) -> Result<Self> {
        let (id, replies) = shared.register_iterator()?;
        let open = m::Iterator {
            id,
            seq: 0,
            options: to_options(&range),
            consumed: 0,
            bookmark: None,
            seek: None,
        };
        let it = GuestIter {
            shared,
            id,
            replies,
            projection: range.projection,
            limit: range.limit,
            consumed: 0,
            current: VecDeque::new(),
            ended: range.limit == Some(0),
        };
        if !it.ended {
            it.shared.send(Outgoing::new(request::ITERATOR, &open))?;
        }
        Ok(it)
    }

    /// The entries of one data message, as the projection lays them out.
    fn entries(&self, data: Vec<Vec<u8>>) -> Result<Vec<Entry>> {
        Ok(match self.projection {
            Projection::KeysAndValues => {
                if !data.len().is_multiple_of(2) {
                    return Err(Error::protocol("an odd number of keys and values"));
                }
                let mut items = data.into_iter();
                let mut out = Vec::new();
                while let (Some(key), Some(value)) = (items.next(), items.next()) {
                    out.push(Entry { key, value });
                }
                out
            }
            Projection::KeysOnly => data.into_iter().map(|key| Entry::new(key, [])).collect(),
            Projection::ValuesOnly => data
                .into_iter()
                .map(|value| Entry::new([], value))
                .collect(),
        })
    }

    /// Waits for the next message of this iterator.
    async fn receive(&mut self) -> Result<IterReply> {
        let next = async {
            tokio::select! {
                reply = self.replies.recv() => reply.ok_or(Error::LeaderLost),
                _ = self.shared.lost().cancelled() => Err(Error::LeaderLost),
            }
        };
        match self.shared.call_timeout() {
            Some(limit) => tokio::time::timeout(limit, next)
                .await
                .unwrap_or(Err(Error::Timeout { waited: limit })),
            None => next.await,
        }
    }
}

#[async_trait]
impl KvIterator for GuestIter {
    async fn next_chunk(&mut self, max: usize) -> Result<Vec<Entry>> {
        loop {
            // After close nothing is handed out, not even what was buffered.
            if self.shared.is_closed() {
                return Err(Error::Closed);
            }
            if self.ended {
                return Ok(Vec::new());
            }
            let room = self
                .limit
                .map_or(u64::MAX, |l| l.saturating_sub(self.consumed));
            if room == 0 {
                self.ended = true;
                continue;
            }
            if !self.current.is_empty() {
                let n = (max.max(1) as u64).min(room).min(self.current.len() as u64) as usize;
                let chunk: Vec<Entry> = self.current.drain(..n).collect();
                self.consumed += n as u64;
                if self.current.is_empty() && room > n as u64 {
                    let ack = m::IteratorAck {
                        id: self.id,
                        seq: 0,
                        consumed: self.consumed,
                    };
                    self.shared
                        .send(Outgoing::new(request::ITERATOR_ACK, &ack))?;
                }
                return Ok(chunk);
            }
            match self.receive().await? {
                IterReply::Data(data) => {
                    let entries = self.entries(data)?;
                    if entries.is_empty() {
                        // abstract-level 1 takes an empty message for the end.
                        self.ended = true;
                    }
                    self.current.extend(entries);
                }
                IterReply::End => self.ended = true,
                IterReply::Error(code) => {
                    self.ended = true;
                    return Err(codes::error_of(&code));
                }
            }
        }
    }
}

impl Drop for GuestIter {
    fn drop(&mut self) {
        self.shared.unregister_iterator(self.id);
    }
}
