//! A map that never holds more than `capacity` entries: when full, inserting
//! a new key evicts the oldest key inserted (first in, first out). Every
//! operation is O(1) amortized; nothing scans the map. Callers wrap it in a
//! lock.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

pub struct BoundedMap<K, V> {
    capacity: usize,
    /// key -> (generation, value)
    map: HashMap<K, (u64, V)>,
    /// Insertion order. An entry whose generation no longer matches the map
    /// (its key was removed, or removed and inserted again) is stale and
    /// skipped when it reaches the front. Never longer than `capacity`.
    order: VecDeque<(K, u64)>,
    next: u64,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    pub fn new(capacity: usize) -> Self {
        BoundedMap {
            capacity: capacity.max(1),
            map: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
        }
    }

    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.map.get(key).map(|(_, v)| v)
    }

    pub fn insert(&mut self, key: K, value: V) {
        if let Some(slot) = self.map.get_mut(&key) {
            slot.1 = value;
            return;
        }
        // Each pushed entry is popped at most once: amortized O(1).
        while self.order.len() >= self.capacity {
            let Some((old, generation)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&old).is_some_and(|(g, _)| *g == generation) {
                self.map.remove(&old);
            }
        }
        let generation = self.next;
        self.next = self.next.wrapping_add(1);
        self.order.push_back((key.clone(), generation));
        self.map.insert(key, (generation, value));
    }

    pub fn remove<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.map.remove(key).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_exceeds_capacity_and_evicts_oldest() {
        let mut m = BoundedMap::new(3);
        for i in 0..10 {
            m.insert(i, i * 10);
            assert!(m.len() <= 3);
        }
        assert_eq!(m.get(&9), Some(&90));
        assert_eq!(m.get(&7), Some(&70));
        assert_eq!(m.get(&6), None);
        m.insert(9, 99);
        assert_eq!(m.get(&9), Some(&99), "an update keeps its place");
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn removals_leave_no_unbounded_order() {
        let mut m = BoundedMap::new(4);
        for i in 0..1000 {
            m.insert(i, ());
            m.remove(&i);
            assert!(m.order.len() <= 4);
        }
        assert!(m.is_empty());
        // A key removed and inserted again is not evicted by its stale entry.
        m.insert(1, ());
        m.remove(&1);
        m.insert(2, ());
        m.insert(1, ());
        m.insert(3, ());
        m.insert(4, ());
        assert_eq!(m.len(), 4);
        assert!(m.get(&1).is_some() && m.get(&2).is_some());
    }
}
