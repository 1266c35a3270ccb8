//! Generation numbers for rewrites in flight. A rewrite (a decay step, a restore, a thaw for a
//! writer) publishes its new artifact under `objects/<id>.<generation>` before its commit, and a
//! failed or refused one removes that file again. Two of them racing on one object must never
//! pick the same name, or the loser would delete the winner's committed artifact: each takes a
//! number above the object's committed generation (read now, not from the rewrite's possibly
//! stale snapshot) and above every number handed out for it and not yet released.

use std::collections::HashMap;

use parking_lot::Mutex;

/// Per object: the highest generation handed out, and how many reservations are live.
#[derive(Default)]
pub(super) struct Generations(Mutex<HashMap<u64, (u64, usize)>>);

impl Generations {
    /// A new generation for `id`; `committed` reads its committed generation (under this set's
    /// lock, so no reservation can be released and reused meanwhile). Keep the reservation until
    /// the new file is committed or removed.
    pub(super) fn reserve<E>(
        &self,
        id: u64,
        committed: impl FnOnce() -> Result<u64, E>,
    ) -> Result<Reservation<'_>, E> {
        let mut map = self.0.lock();
        let current = committed()?;
        let entry = map.entry(id).or_insert((current, 0));
        entry.0 = entry.0.max(current) + 1;
        entry.1 += 1;
        Ok(Reservation {
            set: self,
            id,
            generation: entry.0,
        })
    }
}

pub(super) struct Reservation<'a> {
    set: &'a Generations,
    id: u64,
    pub(super) generation: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut map = self.set.0.lock();
        if let Some(entry) = map.get_mut(&self.id) {
            entry.1 -= 1;
            if entry.1 == 0 {
                map.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(generation: u64) -> impl FnOnce() -> Result<u64, ()> {
        move || Ok(generation)
    }

    #[test]
    fn racing_reservations_get_distinct_generations() {
        let g = Generations::default();
        let a = g.reserve(7, at(2)).unwrap();
        let b = g.reserve(7, at(2)).unwrap();
        assert_eq!((a.generation, b.generation), (3, 4));
        // A commits generation 3; B is still in flight: the next one goes above both.
        drop(a);
        let c = g.reserve(7, at(3)).unwrap();
        assert_eq!(c.generation, 5);
        drop(b);
        drop(c);
        assert!(g.0.lock().is_empty(), "nothing in flight, nothing kept");
    }

    #[test]
    fn a_released_number_is_not_handed_out_again_over_a_commit() {
        let g = Generations::default();
        // A thaw commits generation 5 and lets its reservation go; a tick whose snapshot still
        // says 4 must not get 5 (it would publish over the committed file, then remove it).
        drop(g.reserve(9, at(4)).unwrap());
        assert_eq!(g.reserve(9, at(5)).unwrap().generation, 6);
    }
}
