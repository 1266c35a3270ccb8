//! Opens are batched in memory and flushed to the catalog at least every second.

use std::collections::HashMap;

use parking_lot::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingAccess {
    pub opens: u32,
    pub first_at: i64,
    pub last_at: i64,
}

#[derive(Debug, Default)]
pub struct HeatBuffer {
    pending: Mutex<HashMap<u64, PendingAccess>>,
}

impl HeatBuffer {
    pub fn record(&self, id: u64, now: i64) {
        let mut pending = self.pending.lock();
        let entry = pending.entry(id).or_insert(PendingAccess {
            opens: 0,
            first_at: now,
            last_at: now,
        });
        entry.opens += 1;
        entry.last_at = entry.last_at.max(now);
    }

    pub fn take(&self) -> HashMap<u64, PendingAccess> {
        std::mem::take(&mut *self.pending.lock())
    }

    pub fn is_empty(&self) -> bool {
        self.pending.lock().is_empty()
    }
}

/// How many of a batch's opens add heat: with a cooldown, at most one per batch, and none when
/// the batch starts within the cooldown of the last recorded access.
pub fn counted_opens(batch: &PendingAccess, last_access_at: i64, cooldown_sec: i64) -> u32 {
    if cooldown_sec <= 0 {
        batch.opens
    } else if batch.first_at - last_access_at >= cooldown_sec {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_and_cooldown() {
        let buf = HeatBuffer::default();
        buf.record(1, 10);
        buf.record(1, 12);
        buf.record(2, 11);
        let batch = buf.take();
        assert!(buf.is_empty());
        let one = batch[&1];
        assert_eq!((one.opens, one.first_at, one.last_at), (2, 10, 12));
        assert_eq!(counted_opens(&one, 0, 0), 2);
        assert_eq!(counted_opens(&one, 0, 5), 1);
        assert_eq!(counted_opens(&one, 8, 5), 0);
    }
}
