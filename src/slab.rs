//! Connection slots, and the tokens that name them.
//!
//! mio hands every event back with the [`mio::Token`] it was registered with. A token here packs
//! two numbers into one `usize`: the **slot** (an index into a `Vec`, so lookup is O(1)) and the
//! slot's **generation** (bumped every time the slot is freed).
//!
//! Why the generation: a connection closed early in a turn frees its slot, and the next accept may
//! reuse it *in the same turn*. Job completions still in the channel, timers in the heap, and the
//! reactor's lists of connections to drive this turn or the next all name the old token; with a
//! generation they no longer match, so they can never reach the new connection (nginx uses an
//! "instance" bit in `epoll_data` for the same reason).
//!
//! One more bit, the **tag**, tells slabs apart when their tokens share one poller: client
//! connections have tag 0, the reactor's connections to upstreams tag 1, so an event names
//! which slab to look in, and a token of one slab is never found in the other.

/// Bits of the token that hold the slot index.
const SLOT_BITS: u32 = 32;
/// Generations wrap below this, keeping the top two bits of a token free: the tag below them,
/// and the top bit for the reactor's own tokens (listener, waker, signals).
const GENERATION_MASK: u32 = 0x3fff_ffff;
/// Where a slab's tag sits in its tokens.
const TAG_SHIFT: u32 = 62;

/// One slot: the value it holds now (if any) and its current generation.
#[derive(Debug)]
struct Entry<T> {
    generation: u32,
    value: Option<T>,
}

/// A vector of slots with a free list and generation-checked tokens.
#[derive(Debug)]
pub struct Slab<T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    len: usize,
    /// The tag bits every token of this slab carries.
    tag: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
            tag: 0,
        }
    }
}

impl<T> Slab<T> {
    /// An empty slab, tag 0.
    pub fn new() -> Self {
        Slab::default()
    }

    /// An empty slab whose tokens carry `tag` (0 or 1).
    pub fn with_tag(tag: u8) -> Self {
        debug_assert!(tag <= 1);
        Slab {
            tag: usize::from(tag & 1) << TAG_SHIFT,
            ..Slab::default()
        }
    }

    /// The tag of a slab token; `None` for the reactor's own tokens (top bit set).
    pub fn tag_of(token: usize) -> Option<u8> {
        if token >> (TAG_SHIFT + 1) != 0 {
            return None;
        }
        Some((token >> TAG_SHIFT) as u8 & 1)
    }

    /// The token the next [`Slab::insert`] will return (so a value can know its own token).
    pub fn next_token(&self) -> usize {
        self.tag
            | match self.free.last() {
                Some(&slot) => pack(slot, self.entries[slot as usize].generation),
                None => pack(self.entries.len() as u32, 0),
            }
    }

    /// Store `value` in a free slot and return its token.
    pub fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(slot) => {
                let entry = &mut self.entries[slot as usize];
                entry.value = Some(value);
                self.tag | pack(slot, entry.generation)
            }
            None => {
                let slot = self.entries.len() as u32;
                self.entries.push(Entry {
                    generation: 0,
                    value: Some(value),
                });
                self.tag | pack(slot, 0)
            }
        }
    }

    /// The slot and generation of `token`, if it carries this slab's tag.
    fn unpack(&self, token: usize) -> Option<(u32, u32)> {
        if token & !(usize::MAX >> 2) != self.tag {
            return None;
        }
        Some(unpack(token))
    }

    /// The value for `token`, if that exact slot *and generation* is still live.
    pub fn get_mut(&mut self, token: usize) -> Option<&mut T> {
        let (slot, generation) = self.unpack(token)?;
        match self.entries.get_mut(slot as usize) {
            Some(entry) if entry.generation == generation => entry.value.as_mut(),
            _ => None,
        }
    }

    /// The value for `token`, if that exact slot *and generation* is still live.
    pub fn get(&self, token: usize) -> Option<&T> {
        let (slot, generation) = self.unpack(token)?;
        match self.entries.get(slot as usize) {
            Some(entry) if entry.generation == generation => entry.value.as_ref(),
            _ => None,
        }
    }

    /// Every live value with its token.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.entries.iter().enumerate().filter_map(|(slot, entry)| {
            entry
                .value
                .as_ref()
                .map(|value| (self.tag | pack(slot as u32, entry.generation), value))
        })
    }

    /// Remove the value for `token` and retire the token for good (the generation moves on).
    pub fn remove(&mut self, token: usize) -> Option<T> {
        let (slot, generation) = self.unpack(token)?;
        let entry = self.entries.get_mut(slot as usize)?;
        if entry.generation != generation {
            return None;
        }
        let value = entry.value.take()?;
        entry.generation = (entry.generation + 1) & GENERATION_MASK;
        self.free.push(slot);
        self.len -= 1;
        Some(value)
    }

    /// Tokens of every live value.
    pub fn tokens(&self) -> Vec<usize> {
        self.iter().map(|(token, _)| token).collect()
    }

    /// Live values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no value is live.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn pack(slot: u32, generation: u32) -> usize {
    ((generation as usize) << SLOT_BITS) | slot as usize
}

fn unpack(token: usize) -> (u32, u32) {
    (token as u32, (token >> SLOT_BITS) as u32 & GENERATION_MASK)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reused slot gets a new token; the old token finds nothing.
    #[test]
    fn stale_tokens_never_reach_a_reused_slot() {
        let mut slab = Slab::new();
        let first = slab.insert("first");
        assert_eq!(slab.remove(first), Some("first"));
        let predicted = slab.next_token();
        let second = slab.insert("second");
        assert_eq!(predicted, second);
        assert_ne!(first, second, "same slot, new generation");
        assert_eq!(first as u32, second as u32, "the slot itself is reused");
        assert_eq!(slab.get_mut(first), None);
        assert_eq!(slab.remove(first), None);
        assert_eq!(slab.get_mut(second), Some(&mut "second"));
        assert_eq!(slab.len(), 1);
        assert_eq!(slab.tokens(), vec![second]);
    }

    /// Two slabs with different tags never find each other's tokens, and neither finds the
    /// reactor's own.
    #[test]
    fn tags_keep_slabs_apart() {
        let mut clients = Slab::new();
        let mut upstreams = Slab::with_tag(1);
        let client = clients.insert("client");
        let upstream = upstreams.insert("upstream");
        assert_eq!(client as u32, upstream as u32, "the same slot in each");
        assert_ne!(client, upstream);
        assert_eq!(Slab::<()>::tag_of(client), Some(0));
        assert_eq!(Slab::<()>::tag_of(upstream), Some(1));
        assert_eq!(Slab::<()>::tag_of(usize::MAX - 1), None);
        assert_eq!(clients.get(upstream), None);
        assert_eq!(upstreams.get(client), None);
        assert_eq!(upstreams.remove(client), None);
        assert_eq!(upstreams.get(upstream), Some(&"upstream"));
        assert_eq!(upstreams.next_token() >> 62, 1);
        assert_eq!(clients.get(usize::MAX - 2), None);
    }
}
