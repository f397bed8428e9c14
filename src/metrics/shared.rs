//! The scoreboard: how each process of `--workers N` lets the others read its metrics, so that
//! a scrape of any one of them tells the whole truth.
//!
//! A scrape reaches one process, whichever accepted the connection. Its own numbers are a
//! fraction of the truth. So every process keeps its latest exposition (the text `/metrics`
//! would answer, each series labelled with its `pid`) on a shared *scoreboard* — the name
//! Apache's prefork MPM gives the shared memory where its children post their state — and a
//! scrape answers its own fresh numbers merged with every other process's latest post.
//!
//! - **The memory**: one anonymous shared file made by the supervisor
//!   ([`crate::sys::SharedMemory`]), inherited by every process, cut into slots of
//!   [`SLOT_BYTES`]. The supervisor gives each process a slot of its own, and clears it when
//!   the process is gone, so a dead process's series disappear from the next scrape.
//! - **Posting**: the process renders its exposition and copies it into its slot, at most a
//!   second apart (the reactor's once-a-second housekeeping) and at every scrape it answers.
//!   Another process's numbers are therefore at most about a second old. Rendering 30 KB once a
//!   second costs the reactor some tens of microseconds a second, and the hot path nothing:
//!   counting stays on the process's own plain integers.
//! - **Reading without locks**: a slot is a *seqlock*. Its writer makes the sequence number
//!   odd, copies, and makes it even again; a reader copies and keeps the copy only if the
//!   number was the same even value before and after. A writer never waits for a reader,
//!   and a process killed mid-post leaves a slot that no reader accepts until the supervisor
//!   clears it.
//!
//! Why a `pid` label rather than sums: a counter summed over processes goes *down* when a
//! process is replaced (its count leaves with it), which Prometheus would read as a reset of
//! the sum; per-process series reset cleanly, and `sum by (route) (rate(…[1m]))` gives the
//! total.

use std::sync::atomic::{fence, AtomicU64, Ordering};

use crate::sys::SharedMemory;

/// Room for one process's exposition: eight times what a server with every route and a
/// busy histogram per route writes (about 32 KB).
pub const SLOT_BYTES: usize = 256 * 1024;
const SLOT_WORDS: usize = SLOT_BYTES / 8;
/// Sequence number, pid, length in bytes; the text follows.
const HEADER_WORDS: usize = 3;
/// How many times a reader retries a slot that changes under it before skipping it.
const READ_TRIES: usize = 8;

/// Slots for a supervisor of `workers` processes. During a reload a place has two processes
/// (the new one and the old one, draining), and an old one may still be draining when the next
/// reload begins: four per place, and two spare. Pages nobody writes cost no memory.
pub fn slots_for(workers: usize) -> usize {
    4 * workers + 2
}

/// The scoreboard of one process, or of the supervisor (which owns no slot).
#[derive(Debug)]
pub struct Scoreboard {
    memory: SharedMemory,
    own: Option<usize>,
}

impl Scoreboard {
    /// A new, empty scoreboard of `slots` slots (the supervisor's).
    pub fn create(slots: usize) -> std::io::Result<Scoreboard> {
        let memory = SharedMemory::create("evloop-metrics", slots * SLOT_WORDS)?;
        Ok(Scoreboard { memory, own: None })
    }

    /// The scoreboard inherited by a process that posts in slot `own`.
    pub fn join(memory: SharedMemory, own: usize) -> std::io::Result<Scoreboard> {
        let board = Scoreboard {
            memory,
            own: Some(own),
        };
        if own >= board.slots() {
            return Err(std::io::Error::other(format!(
                "metrics slot {own} is beyond the scoreboard's {}",
                board.slots()
            )));
        }
        Ok(board)
    }

    /// The shared memory's descriptor, to hand to a new process.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.memory.fd()
    }

    /// How many slots there are.
    pub fn slots(&self) -> usize {
        self.memory.words().len() / SLOT_WORDS
    }

    fn slot(&self, index: usize) -> &[AtomicU64] {
        &self.memory.words()[index * SLOT_WORDS..(index + 1) * SLOT_WORDS]
    }

    /// Post `text` as process `pid`'s exposition in our slot. False (and nothing posted) if
    /// it does not fit, or this scoreboard owns no slot.
    pub fn post(&self, pid: u32, text: &[u8]) -> bool {
        let Some(own) = self.own else {
            return false;
        };
        if text.len() > (SLOT_WORDS - HEADER_WORDS) * 8 {
            return false;
        }
        let slot = self.slot(own);
        let seq = slot[0].load(Ordering::Relaxed);
        // Odd while writing; never the value a reader may have seen before.
        let writing = seq.wrapping_add(if seq.is_multiple_of(2) { 1 } else { 2 });
        slot[0].store(writing, Ordering::Relaxed);
        fence(Ordering::Release);
        slot[1].store(u64::from(pid), Ordering::Relaxed);
        slot[2].store(text.len() as u64, Ordering::Relaxed);
        for (word, chunk) in slot[HEADER_WORDS..].iter().zip(text.chunks(8)) {
            let mut bytes = [0u8; 8];
            bytes[..chunk.len()].copy_from_slice(chunk);
            word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        }
        slot[0].store(writing.wrapping_add(1), Ordering::Release);
        true
    }

    /// The latest post in slot `index`: its pid and text. `None` for an empty slot, or one
    /// that kept changing (or was left half-written) while we read.
    pub fn read(&self, index: usize) -> Option<(u32, Vec<u8>)> {
        let slot = self.slot(index);
        for _ in 0..READ_TRIES {
            let before = slot[0].load(Ordering::Acquire);
            if before & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let pid = slot[1].load(Ordering::Relaxed) as u32;
            let len =
                (slot[2].load(Ordering::Relaxed) as usize).min((SLOT_WORDS - HEADER_WORDS) * 8);
            let mut text = Vec::with_capacity(len);
            for word in &slot[HEADER_WORDS..HEADER_WORDS + len.div_ceil(8)] {
                text.extend_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
            }
            text.truncate(len);
            fence(Ordering::Acquire);
            if slot[0].load(Ordering::Relaxed) != before {
                continue;
            }
            return (pid != 0).then_some((pid, text));
        }
        None
    }

    /// Every other slot's latest post.
    pub fn others(&self) -> Vec<(u32, Vec<u8>)> {
        (0..self.slots())
            .filter(|&index| Some(index) != self.own)
            .filter_map(|index| self.read(index))
            .collect()
    }

    /// Empty slot `index`: its process is gone (the supervisor's job), or is about to go.
    pub fn clear(&self, index: usize) {
        let slot = self.slot(index);
        let seq = slot[0].load(Ordering::Relaxed);
        let even = seq.wrapping_add(if seq.is_multiple_of(2) { 2 } else { 1 });
        slot[1].store(0, Ordering::Relaxed);
        slot[2].store(0, Ordering::Relaxed);
        slot[0].store(even, Ordering::Release);
    }

    /// Empty our own slot.
    pub fn clear_own(&self) {
        if let Some(own) = self.own {
            self.clear(own);
        }
    }
}
