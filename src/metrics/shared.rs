//! The scoreboard: how each process of `--workers N` lets the others read its metrics and its
//! vital signs, so that a scrape or a dashboard reaching any one of them tells the whole truth.
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
//!   second apart (a reactor timer, `PostMetrics`) and at every scrape it answers.
//!   Another process's numbers are therefore at most about a second old. Rendering 30 KB once a
//!   second costs the reactor some tens of microseconds a second, and the hot path nothing:
//!   counting stays on the process's own plain integers.
//! - **Reading without locks**: a slot's text is a *seqlock*. Its writer makes the sequence
//!   number odd, copies, and makes it even again; a reader copies and keeps the copy only if the
//!   number was the same even value before and after. A writer never waits for a reader,
//!   and a process killed mid-post leaves a text that no reader accepts until the supervisor
//!   clears the slot.
//!
//! Why a `pid` label rather than sums: a counter summed over processes goes *down* when a
//! process is replaced (its count leaves with it), which Prometheus would read as a reset of
//! the sum; per-process series reset cleanly, and `sum by (route) (rate(…[1m]))` gives the
//! total.
//!
//! **Vital signs.** The end of each slot holds a second, smaller seqlocked text: the process's
//! latest frame for `GET /dashboard` ([`super::vitals`]), with the moment it was posted; then
//! two words: *last posted*, when the process last posted either text, and *watched until*. A process whose own dashboard viewers are watching keeps pushing its
//! *watched until* a couple of seconds ahead; every process looks at the others' words once a
//! second, and while any lies in the future it posts a frame four times a second. So the
//! process serving a dashboard shows every process, including one that has stopped posting
//! (its *last posted* tells how long ago), and a process nobody watches posts no frames.
//! Times are milliseconds of `CLOCK_MONOTONIC` ([`crate::sys::monotonic_ms`]), one clock for
//! every process of the machine.

use std::sync::atomic::{fence, AtomicU64, Ordering};

use crate::sys::{self, SharedMemory};

/// Room for one process: seven times the exposition a server with every route and a busy
/// histogram per route writes (about 32 KB), its latest vitals frame, and two words.
pub const SLOT_BYTES: usize = 256 * 1024;
const SLOT_WORDS: usize = SLOT_BYTES / 8;
/// Room for a vitals frame: ten times the frame of a server with every route and a full list
/// of slow turns.
pub const VITALS_BYTES: usize = 16 * 1024;
const VITALS_WORDS: usize = VITALS_BYTES / 8;
/// Where each part of a slot begins, in words: the exposition, the vitals frame, the *last
/// posted* word (when the process last posted either text) and the *watched until* word.
const METRICS_AT: usize = 0;
const VITALS_AT: usize = POSTED_AT - VITALS_WORDS;
const POSTED_AT: usize = SLOT_WORDS - 2;
const WATCHED_AT: usize = SLOT_WORDS - 1;
/// Each text's header: sequence number, tag (the pid for the exposition, the moment of posting
/// for a vitals frame), length in bytes; the text follows.
const HEADER_WORDS: usize = 3;
/// How many times a reader retries a text that changes under it before skipping it.
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

    fn own_slot(&self) -> Option<&[AtomicU64]> {
        self.own.map(|own| self.slot(own))
    }

    /// Post `text` as process `pid`'s exposition in our slot. False (and nothing posted) if
    /// it does not fit, or this scoreboard owns no slot.
    pub fn post(&self, pid: u32, text: &[u8]) -> bool {
        self.own_slot().is_some_and(|slot| {
            let posted = write(&slot[METRICS_AT..VITALS_AT], u64::from(pid), text);
            if posted {
                slot[POSTED_AT].store(sys::monotonic_ms(), Ordering::Relaxed);
            }
            posted
        })
    }

    /// The latest exposition in slot `index`: its pid and text. `None` for an empty slot, or
    /// one that kept changing (or was left half-written) while we read.
    pub fn read(&self, index: usize) -> Option<(u32, Vec<u8>)> {
        let (pid, text) = read(&self.slot(index)[METRICS_AT..VITALS_AT])?;
        (pid != 0).then_some((pid as u32, text))
    }

    /// Every other slot's latest exposition.
    pub fn others(&self) -> Vec<(u32, Vec<u8>)> {
        self.other_indices()
            .filter_map(|index| self.read(index))
            .collect()
    }

    /// Post `frame` as our latest vitals frame, made at `now_ms`. False (and nothing posted) if
    /// it does not fit, or this scoreboard owns no slot.
    pub fn post_vitals(&self, now_ms: u64, frame: &[u8]) -> bool {
        self.own_slot().is_some_and(|slot| {
            let posted = write(&slot[VITALS_AT..POSTED_AT], now_ms.max(1), frame);
            if posted {
                slot[POSTED_AT].store(now_ms, Ordering::Relaxed);
            }
            posted
        })
    }

    /// Every other process on the scoreboard (every slot with an exposition): its pid, how long
    /// before `now_ms` it last posted anything, and its latest vitals frame if it has one.
    pub fn others_vitals(&self, now_ms: u64) -> Vec<Other> {
        self.other_indices()
            .filter_map(|index| {
                let slot = self.slot(index);
                let pid = read_tag(&slot[METRICS_AT..VITALS_AT]).filter(|&pid| pid != 0)?;
                let frame = read(&slot[VITALS_AT..POSTED_AT])
                    .filter(|(posted, frame)| *posted != 0 && !frame.is_empty())
                    .map(|(_, frame)| frame);
                let posted = slot[POSTED_AT].load(Ordering::Relaxed);
                Some(Other {
                    pid: pid as u32,
                    quiet_ms: now_ms.saturating_sub(posted),
                    frame,
                })
            })
            .collect()
    }

    /// Ask the other processes for vitals frames until `until_ms`.
    pub fn watch_until(&self, until_ms: u64) {
        if let Some(slot) = self.own_slot() {
            slot[WATCHED_AT].store(until_ms, Ordering::Relaxed);
        }
    }

    /// True if another process asks for vitals frames at `now_ms`.
    pub fn watched(&self, now_ms: u64) -> bool {
        self.other_indices()
            .any(|index| self.slot(index)[WATCHED_AT].load(Ordering::Relaxed) > now_ms)
    }

    fn other_indices(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.slots()).filter(move |&index| Some(index) != self.own)
    }

    /// Empty slot `index`: its process is gone (the supervisor's job), or is about to go.
    pub fn clear(&self, index: usize) {
        let slot = self.slot(index);
        clear(&slot[METRICS_AT..VITALS_AT]);
        clear(&slot[VITALS_AT..POSTED_AT]);
        slot[POSTED_AT].store(0, Ordering::Relaxed);
        slot[WATCHED_AT].store(0, Ordering::Relaxed);
    }

    /// Take our vitals frame off the scoreboard: we stop posting frames.
    pub fn clear_own_vitals(&self) {
        if let Some(slot) = self.own_slot() {
            clear(&slot[VITALS_AT..POSTED_AT]);
        }
    }

    /// Empty our own slot.
    pub fn clear_own(&self) {
        if let Some(own) = self.own {
            self.clear(own);
        }
    }
}

/// Another process as the scoreboard shows it: see [`Scoreboard::others_vitals`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Other {
    /// Its pid.
    pub pid: u32,
    /// Milliseconds since it last posted its exposition or a vitals frame: a process whose
    /// loop is stuck stops posting, and this grows.
    pub quiet_ms: u64,
    /// Its latest vitals frame (JSON), if it is posting frames.
    pub frame: Option<Vec<u8>>,
}

/// Write `text` tagged `tag` into the seqlocked `region`. False if it does not fit.
fn write(region: &[AtomicU64], tag: u64, text: &[u8]) -> bool {
    if text.len() > (region.len() - HEADER_WORDS) * 8 {
        return false;
    }
    let seq = region[0].load(Ordering::Relaxed);
    // Odd while writing; never the value a reader may have seen before.
    let writing = seq.wrapping_add(if seq.is_multiple_of(2) { 1 } else { 2 });
    region[0].store(writing, Ordering::Relaxed);
    fence(Ordering::Release);
    region[1].store(tag, Ordering::Relaxed);
    region[2].store(text.len() as u64, Ordering::Relaxed);
    for (word, chunk) in region[HEADER_WORDS..].iter().zip(text.chunks(8)) {
        let mut bytes = [0u8; 8];
        bytes[..chunk.len()].copy_from_slice(chunk);
        word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
    }
    region[0].store(writing.wrapping_add(1), Ordering::Release);
    true
}

/// The tag and text in the seqlocked `region`; `None` if it kept changing (or was left
/// half-written) while we read. An empty region reads as tag 0.
fn read(region: &[AtomicU64]) -> Option<(u64, Vec<u8>)> {
    consistent(region, |region| {
        let tag = region[1].load(Ordering::Relaxed);
        let len =
            (region[2].load(Ordering::Relaxed) as usize).min((region.len() - HEADER_WORDS) * 8);
        let mut text = Vec::with_capacity(len);
        for word in &region[HEADER_WORDS..HEADER_WORDS + len.div_ceil(8)] {
            text.extend_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        text.truncate(len);
        (tag, text)
    })
}

/// The tag of the seqlocked `region`, without copying its text; `None` as for [`read`].
fn read_tag(region: &[AtomicU64]) -> Option<u64> {
    consistent(region, |region| region[1].load(Ordering::Relaxed))
}

/// What `copy` reads from the seqlocked `region`, kept only if no writer was inside the region
/// before or after the copy (the sequence number was the same even value); up to
/// [`READ_TRIES`] tries.
fn consistent<T>(region: &[AtomicU64], copy: impl Fn(&[AtomicU64]) -> T) -> Option<T> {
    for _ in 0..READ_TRIES {
        let before = region[0].load(Ordering::Acquire);
        if before & 1 == 1 {
            std::hint::spin_loop();
            continue;
        }
        let copied = copy(region);
        fence(Ordering::Acquire);
        if region[0].load(Ordering::Relaxed) == before {
            return Some(copied);
        }
    }
    None
}

/// Empty the seqlocked `region` (tag 0, no text).
fn clear(region: &[AtomicU64]) {
    let seq = region[0].load(Ordering::Relaxed);
    let even = seq.wrapping_add(if seq.is_multiple_of(2) { 2 } else { 1 });
    region[1].store(0, Ordering::Relaxed);
    region[2].store(0, Ordering::Relaxed);
    region[0].store(even, Ordering::Release);
}

#[cfg(test)]
impl Scoreboard {
    /// The scoreboard as a process posting in slot `own` would inherit it from this one.
    pub fn as_process(&self, own: usize) -> Scoreboard {
        // SAFETY: `self` keeps its descriptor open for the whole call.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd()) };
        let memory = SharedMemory::adopt(fd.try_clone_to_owned().unwrap()).unwrap();
        Scoreboard::join(memory, own).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(board: &Scoreboard, own: usize) -> Scoreboard {
        board.as_process(own)
    }

    /// A process reads the others' expositions, not its own; a cleared slot reads as empty.
    #[test]
    fn each_process_reads_the_others_posts() {
        let board = Scoreboard::create(3).unwrap();
        let (a, b) = (process(&board, 0), process(&board, 1));
        assert!(a.post(100, b"a's numbers"));
        assert!(b.post(200, b"b's"));
        assert_eq!(a.others(), vec![(200, b"b's".to_vec())]);
        assert_eq!(b.others(), vec![(100, b"a's numbers".to_vec())]);
        assert!(!board.post(1, b"the supervisor owns no slot"));
        board.clear(1);
        assert!(a.others().is_empty());
        assert!(!a.post(100, &vec![b'x'; SLOT_BYTES]), "too long to fit");
    }

    /// A half-written text (its writer died mid-post) is never read, until the slot is cleared.
    #[test]
    fn a_torn_post_is_not_read() {
        let board = Scoreboard::create(2).unwrap();
        let (a, b) = (process(&board, 0), process(&board, 1));
        assert!(b.post(200, b"whole"));
        b.slot(1)[METRICS_AT].fetch_add(1, Ordering::Relaxed); // odd: a writer inside
        assert!(a.others().is_empty());
        board.clear(1);
        assert!(a.others().is_empty());
        assert!(b.post(200, b"again"));
        assert_eq!(a.others(), vec![(200, b"again".to_vec())]);
    }

    /// Vitals frames live beside the exposition; every other process with an exposition is
    /// listed, with how long ago it last posted and its frame if it has one; *watched until* is
    /// seen by the others only, until it passes; clearing a slot clears all of it.
    #[test]
    fn vitals_and_watching_are_shared_and_cleared() {
        let board = Scoreboard::create(3).unwrap();
        let (a, b, c) = (process(&board, 0), process(&board, 1), process(&board, 2));
        assert!(b.post(200, b"metrics"));
        assert!(b.post_vitals(1_000, br#"{"pid":200}"#));
        assert!(c.post(300, b"metrics, no frame"));
        let others = a.others_vitals(1_250);
        assert_eq!(others.len(), 2);
        assert_eq!(
            others[0],
            Other {
                pid: 200,
                quiet_ms: 250,
                frame: Some(br#"{"pid":200}"#.to_vec())
            }
        );
        assert_eq!((others[1].pid, &others[1].frame), (300, &None));
        assert_eq!(
            a.others(),
            vec![
                (200, b"metrics".to_vec()),
                (300, b"metrics, no frame".to_vec())
            ]
        );
        assert!(
            !b.post_vitals(1_000, &vec![b'x'; VITALS_BYTES]),
            "too long to fit"
        );
        b.clear_own_vitals();
        assert_eq!(a.others_vitals(1_250)[0].frame, None);

        a.watch_until(5_000);
        assert!(b.watched(4_999));
        assert!(!b.watched(5_000), "the moment has passed");
        assert!(!a.watched(1_000), "a process does not watch itself");

        for slot in 0..3 {
            board.clear(slot);
        }
        assert!(!b.watched(0));
        assert!(a.others_vitals(1_250).is_empty());
        assert!(a.others().is_empty());
    }
}
