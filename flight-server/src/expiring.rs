//! Handles the server keeps for its clients between calls — prepared statements, results of
//! statements run ahead of their fetch, cancellations that arrived before their query — in one
//! map type: each entry belongs to the token that made it (no other token sees it), expires when
//! unused for a while, and a token can hold only so many at once, as can the server.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Who made an entry: the token's id ([`crate::auth::Grant::owner`]).
pub type Owner = u64;

/// Why an entry was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    /// The token already holds this many.
    #[error("this token already holds {0}, the most one token may hold")]
    Owner(usize),
    /// The server holds this many, for all tokens.
    #[error("the server already holds {0}, the most it holds for all tokens")]
    Server(usize),
}

struct Slot<V> {
    value: V,
    owner: Owner,
    used: Instant,
}

struct Inner<K, V> {
    slots: HashMap<K, Slot<V>>,
    per_owner: HashMap<Owner, usize>,
}

/// A map of handles that expire after `ttl` unused, at most `per_owner` for one token and
/// `total` in all.
pub struct ExpiringMap<K, V> {
    inner: Mutex<Inner<K, V>>,
    ttl: Duration,
    per_owner: usize,
    total: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> ExpiringMap<K, V> {
    /// An empty map.
    pub fn new(ttl: Duration, per_owner: usize, total: usize) -> Self {
        ExpiringMap { inner: Mutex::new(Inner { slots: HashMap::new(), per_owner: HashMap::new() }), ttl, per_owner, total }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        // A poisoned lock only means a request panicked; the map stays consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds (or replaces) `key` for `owner`. Expired entries are dropped first when a limit is
    /// reached, so a full map is full of live entries.
    pub fn insert(&self, key: K, owner: Owner, value: V) -> Result<(), Full> {
        let mut inner = self.lock();
        let replacing = inner.slots.get(&key).is_some_and(|s| s.owner == owner);
        if !replacing {
            if inner.slots.len() >= self.total || inner.per_owner.get(&owner).copied().unwrap_or(0) >= self.per_owner {
                drop(Self::sweep_locked(&mut inner, self.ttl));
            }
            if inner.slots.len() >= self.total {
                return Err(Full::Server(self.total));
            }
            if inner.per_owner.get(&owner).copied().unwrap_or(0) >= self.per_owner {
                return Err(Full::Owner(self.per_owner));
            }
        }
        if let Some(old) = inner.slots.insert(key, Slot { value, owner, used: Instant::now() }) {
            Self::release(&mut inner, old.owner);
        }
        *inner.per_owner.entry(owner).or_insert(0) += 1;
        Ok(())
    }

    /// Adds (or replaces) `key` for `owner`, making room when a limit is reached by dropping the
    /// least recently used entry (of `owner`, or of anyone when the map is full): for entries a
    /// client may never come back for, such as results nobody fetches.
    pub fn insert_evicting(&self, key: K, owner: Owner, value: V) {
        loop {
            match self.insert(key.clone(), owner, value.clone()) {
                Ok(()) => return,
                Err(full) => {
                    let mut inner = self.lock();
                    let oldest = inner
                        .slots
                        .iter()
                        .filter(|(_, s)| matches!(full, Full::Server(_)) || s.owner == owner)
                        .min_by_key(|(_, s)| s.used)
                        .map(|(k, s)| (k.clone(), s.owner));
                    let Some((oldest, its_owner)) = oldest else { return };
                    inner.slots.remove(&oldest);
                    Self::release(&mut inner, its_owner);
                }
            }
        }
    }

    /// The entry `key` of `owner` (marked used), unless it expired or belongs to another token.
    pub fn get(&self, key: &K, owner: Owner) -> Option<V> {
        let mut inner = self.lock();
        let ttl = self.ttl;
        let slot = inner.slots.get_mut(key).filter(|s| s.owner == owner && s.used.elapsed() < ttl)?;
        slot.used = Instant::now();
        Some(slot.value.clone())
    }

    /// Whether `key` is held by anyone (expired or not).
    pub fn contains(&self, key: &K) -> bool {
        self.lock().slots.contains_key(key)
    }

    /// Removes and returns the entry `key` of `owner`, unless it expired or belongs to another
    /// token (then it stays).
    pub fn take(&self, key: &K, owner: Owner) -> Option<V> {
        let mut inner = self.lock();
        let live = inner.slots.get(key).is_some_and(|s| s.owner == owner && s.used.elapsed() < self.ttl);
        if !live {
            return None;
        }
        let slot = inner.slots.remove(key)?;
        Self::release(&mut inner, slot.owner);
        Some(slot.value)
    }

    /// Removes the entry `key` whoever holds it; for entries the server itself expires.
    pub fn remove_any(&self, key: &K) -> Option<V> {
        let mut inner = self.lock();
        let slot = inner.slots.remove(key)?;
        Self::release(&mut inner, slot.owner);
        Some(slot.value)
    }

    /// Removes expired entries and returns them (the server's sweeper calls this now and then;
    /// a value whose drop blocks can be dropped where blocking is allowed).
    pub fn sweep(&self) -> Vec<V> {
        Self::sweep_locked(&mut self.lock(), self.ttl)
    }

    /// Removes every entry and returns them.
    pub fn drain(&self) -> Vec<V> {
        let mut inner = self.lock();
        inner.per_owner.clear();
        inner.slots.drain().map(|(_, slot)| slot.value).collect()
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn sweep_locked(inner: &mut Inner<K, V>, ttl: Duration) -> Vec<V> {
        let expired: Vec<K> = inner.slots.iter().filter(|(_, s)| s.used.elapsed() >= ttl).map(|(k, _)| k.clone()).collect();
        let mut values = Vec::with_capacity(expired.len());
        for key in expired {
            if let Some(slot) = inner.slots.remove(&key) {
                Self::release(inner, slot.owner);
                values.push(slot.value);
            }
        }
        values
    }

    fn release(inner: &mut Inner<K, V>, owner: Owner) {
        if let Some(n) = inner.per_owner.get_mut(&owner) {
            *n -= 1;
            if *n == 0 {
                inner.per_owner.remove(&owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_belong_to_their_owner() {
        let m = ExpiringMap::new(Duration::from_secs(60), 10, 100);
        m.insert("a", 1, 10).unwrap();
        assert_eq!(m.get(&"a", 1), Some(10));
        assert_eq!(m.get(&"a", 2), None, "another token does not see it");
        assert_eq!(m.take(&"a", 2), None, "nor remove it");
        assert_eq!(m.take(&"a", 1), Some(10));
        assert!(m.is_empty());
    }

    #[test]
    fn limits_per_owner_and_in_all() {
        let m = ExpiringMap::new(Duration::from_secs(60), 2, 3);
        m.insert(1, 7, ()).unwrap();
        m.insert(2, 7, ()).unwrap();
        assert_eq!(m.insert(3, 7, ()), Err(Full::Owner(2)));
        m.insert(2, 7, ()).unwrap(); // replacing is not adding
        m.insert(3, 8, ()).unwrap();
        assert_eq!(m.insert(4, 9, ()), Err(Full::Server(3)));
        m.take(&1, 7).unwrap();
        m.insert(4, 9, ()).unwrap();
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn evicting_inserts_drop_the_least_recently_used() {
        let m = ExpiringMap::new(Duration::from_secs(60), 2, 3);
        m.insert_evicting(1, 7, ());
        m.insert_evicting(2, 7, ());
        m.get(&1, 7).unwrap(); // 2 is now the least recently used of owner 7
        m.insert_evicting(3, 7, ());
        assert!(m.contains(&1) && !m.contains(&2) && m.contains(&3));
        m.insert_evicting(4, 8, ());
        m.insert_evicting(5, 9, ()); // the map is full: the oldest of anyone goes
        assert_eq!(m.len(), 3);
        assert!(!m.contains(&1) && m.contains(&5));
    }

    #[test]
    fn unused_entries_expire_and_free_their_place() {
        let m = ExpiringMap::new(Duration::from_millis(30), 1, 10);
        m.insert("a", 1, ()).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(m.get(&"a", 1), None);
        // Full for owner 1 until the expired one is swept, which insert does by itself.
        m.insert("b", 1, ()).unwrap();
        assert!(!m.contains(&"a"));
        assert!(m.sweep().is_empty(), "the expired one went when b was added");
        assert_eq!(m.len(), 1);
        assert_eq!(m.drain().len(), 1);
        assert!(m.is_empty());
    }
}
