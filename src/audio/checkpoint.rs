//! Cancellation points: how the long loops notice that nobody wants their result any more.
//!
//! Every analysis, and the decode, takes a `cancelled: &dyn Fn() -> bool`. In the server it is
//! `|| job.is_cancelled()`, which reads the job's cancel flag *and* is the pool's scheduling
//! checkpoint (a worker may yield the CPU there once it has run for `pool::YIELD_EVERY`,
//! 0.5 ms). So it must be polled often — a job whose client left should stop within about one
//! window of work, and a job that never polls never yields — but not per sample: each poll reads
//! a clock.
//!
//! The loops therefore count their work in *estimated nanoseconds* (the per-item costs below,
//! measured on the release build) and poll once the count passes [`POLL_EVERY_NS`], 0.05 ms:
//! ten polls per yield period, with room for the estimates to be off several times over (on a
//! busy machine, cache misses make every item slower). A loop over items each costing more
//! than that polls once per item. Where a stage ends, the check is polled unconditionally.
//!
//! The estimates are per item, not per sample, and never touch the innermost loops (an FFT, a
//! dot product, a sum over one frame): that is where the work is, and where a branch would cost.
//! The decode's bulk passes over samples (conversion, DC, WADA, resampling) count a [`BLOCK`]
//! of samples at a time for the same reason: the loop over a block is the straight-line code
//! the compiler unrolls and vectorises. Two kinds of work hide outside any loop, and are
//! counted too: writing a fresh buffer is a page fault every 4 KiB (a copy of 9 MB of features
//! costs milliseconds), and freeing a large one makes the kernel unmap every page, so buffers
//! of a megabyte or more are freed a step at a time ([`Checkpoint::release`]).
//!
//! `cargo bench --bench audio -- ratios` and `-- long` measure the CPU time spent between two polls
//! (release build, a two-core virtual machine; `docs/AUDIO.md` has the tables). The longest gap of
//! a run is 0.06–0.16 ms on a 10 s clip; on 600 s clips of speech and of 1000 short blips, in every
//! analysis and in `finish`, 0.10–0.21 ms in the median of five runs and at most 0.37 ms (0.69 and
//! 0.84 ms once each, while other work kept the machine busy); in the decode of the costliest 16
//! MiB uploads, 0.08–0.29 ms in the median run and at most 0.55 ms. In those long runs 99 % of the
//! gaps are under 0.04–0.11 ms, and the longest fall in loops whose gaps average 0.02–0.06 ms: a
//! slow page fault or an interrupt of the virtual machine, not a stretch of work left unpolled.
//! What the caller does after the last poll is not counted: freeing a clip of 600 s at 16 kHz (77
//! MB), when the job ends, takes it 4–5 ms.

use super::AudioError;

/// Poll the cancel check after about this much estimated work.
const POLL_EVERY_NS: u64 = 50_000;

/// Estimated cost of one STFT frame per sample of hop (FFT of 2·hop points, power, bands):
/// about 0.9 µs at the default hop of 256.
pub(crate) const STFT_NS_PER_HOP_SAMPLE: u64 = 4;
/// Estimated cost of one frame's smoothed level in one band for the noise histogram (a
/// `log10`), and of one frame's VAD decision (a `log10` and an `exp`).
pub(crate) const LEVEL_NS: u64 = 25;
/// Estimated cost of spreading one occupied histogram bin over the Gaussian kernel.
pub(crate) const KERNEL_NS: u64 = 150;
/// Estimated cost of one feature frame's MFCCs (512-point FFT, mel filterbank, DCT).
pub(crate) const MFCC_NS: u64 = 2_300;
/// Estimated cost of one feature frame's F0 (two 1024-point FFTs, peak search).
pub(crate) const F0_NS: u64 = 3_800;
/// Estimated cost of one feature frame's share among the sound classes and its sums (16
/// classes of 19 coefficients, 16 `exp`): measured at 0.26 µs warm, 0.40 µs cold.
pub(crate) const SOUND_NS: u64 = 400;
/// Estimated cost of one Euclidean distance between two 21-value embeddings (measured when
/// they had 39 values: an overestimate now, so the clustering polls a little more often).
pub(crate) const DISTANCE_NS: u64 = 30;
/// Estimated cost of one step of the clustering's scans (compare, or update one distance).
pub(crate) const LINK_NS: u64 = 2;
/// Estimated cost of one frame of a light pass that maps or bins it (the STFT frame holding a
/// feature frame's centre, a level's histogram bin) and reads or writes one entry: about 5 ns.
pub(crate) const STEP_NS: u64 = 6;
/// Estimated cost of copying one feature frame's MFCCs and F0 (160 bytes) into a fresh
/// buffer, mostly the page faults of its first write.
pub(crate) const COPY_NS: u64 = 100;

/// Samples a bulk pass of the decode (conversion, sums, resampling) handles between two ticks:
/// a block long enough for the loop over it to stay unrolled and vectorised, short enough to
/// take microseconds.
pub(crate) const BLOCK: usize = 1024;
/// Estimated cost of one sample in a bulk pass of the decode that writes a new buffer (the
/// conversion, the resampler's output): the arithmetic is a nanosecond, but the first write
/// to each page of a fresh buffer is a page fault, a few nanoseconds per 8-byte sample.
pub(crate) const WRITE_NS: u64 = 5;
/// Estimated cost of one sample in a bulk pass of the decode over memory already written: a
/// sum, a subtraction, a comparison.
pub(crate) const READ_NS: u64 = 2;
/// Estimated cost of one sample of the WADA statistic: an absolute value and a `ln`.
pub(crate) const LN_NS: u64 = 6;
/// Estimated cost of one multiply-add of the resampler's dot products.
pub(crate) const TAP_NS: u64 = 1;
/// Estimated cost of one tap of a resampling filter's design (a sinc, a Kaiser window):
/// about 75 ns.
pub(crate) const DESIGN_NS: u64 = 100;
/// Estimated cost of stepping over one RIFF chunk.
pub(crate) const CHUNK_NS: u64 = 5;

/// Buffers from this size on are freed by [`Checkpoint::release`] a step at a time: unmapping
/// one takes about 0.1 ms or more.
const RELEASE_FROM: usize = 1 << 20;
/// Bytes [`Checkpoint::release`] gives back between two ticks: 64 pages.
const RELEASE_STEP: usize = 256 << 10;
/// Estimated cost of giving back one [`RELEASE_STEP`]: a `mremap` call, about 10 µs with its
/// TLB flush on a virtual machine, and 64 pages unmapped at about half a microsecond each.
const RELEASE_NS: u64 = 45_000;

/// A cancel check polled every [`POLL_EVERY_NS`] of estimated work.
pub(crate) struct Checkpoint<'a> {
    /// The caller's check: true once the result is no longer wanted.
    cancelled: &'a dyn Fn() -> bool,
    /// Estimated work since the last poll, in nanoseconds.
    owed_ns: u64,
}

impl<'a> Checkpoint<'a> {
    pub(crate) fn new(cancelled: &'a dyn Fn() -> bool) -> Checkpoint<'a> {
        Checkpoint {
            cancelled,
            owed_ns: 0,
        }
    }

    /// Count `ns` of estimated work just done; poll the check once enough has accumulated.
    pub(crate) fn tick(&mut self, ns: u64) -> Result<(), AudioError> {
        self.owed_ns = self.owed_ns.saturating_add(ns);
        if self.owed_ns < POLL_EVERY_NS {
            return Ok(());
        }
        self.poll()
    }

    /// Poll the check now (where a stage ends).
    pub(crate) fn poll(&mut self) -> Result<(), AudioError> {
        self.owed_ns = 0;
        if (self.cancelled)() {
            Err(AudioError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Free `buffer`: at once if it is smaller than [`RELEASE_FROM`], else a [`RELEASE_STEP`]
    /// at a time, ticking after each step.
    ///
    /// glibc's `malloc` maps a large buffer on its own: anything over 128 KiB at first; the
    /// threshold then grows to the largest such buffer freed (up to 32 MiB), but a request as
    /// large as that one is still mapped apart, so the buffers of every long clip are. Dropping
    /// one is a stretch without a poll while the kernel unmaps every page: 1.1–1.4 ms for the
    /// 9 MB of features of a 600 s clip, about 8–16 ms for the 106 MB mono mix of a 600 s,
    /// 22.05 kHz upload, on a virtual machine. Shrinking the vector from its end returns the
    /// tail a step at a time instead: `realloc` shrinks a mapping in place (`mremap`), or a
    /// heap block by splitting it. Each step is a system call, so this costs more than one
    /// drop (`docs/AUDIO.md` measures it). Once the check is true, the rest is dropped at once:
    /// the work is ending anyway.
    pub(crate) fn release<T>(&mut self, mut buffer: Vec<T>) -> Result<(), AudioError> {
        let size = std::mem::size_of::<T>().max(1);
        if buffer.capacity() * size < RELEASE_FROM {
            return Ok(());
        }
        let step = RELEASE_STEP / size;
        while buffer.capacity() > step {
            buffer.truncate(buffer.capacity() - step);
            buffer.shrink_to_fit();
            self.tick(RELEASE_NS)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// Small items are batched into one poll per [`POLL_EVERY_NS`]; a large item polls at
    /// once; a cancelled check becomes `AudioError::Cancelled`.
    #[test]
    fn polls_by_estimated_work() {
        let polls = Cell::new(0);
        let check = || {
            polls.set(polls.get() + 1);
            polls.get() >= 3
        };
        let mut checkpoint = Checkpoint::new(&check);
        for _ in 0..(POLL_EVERY_NS / 1_000 - 1) {
            assert_eq!(checkpoint.tick(1_000), Ok(()));
        }
        assert_eq!(polls.get(), 0);
        assert_eq!(checkpoint.tick(1_000), Ok(()));
        assert_eq!(polls.get(), 1);
        assert_eq!(checkpoint.tick(POLL_EVERY_NS * 10), Ok(()));
        assert_eq!(polls.get(), 2);
        assert_eq!(checkpoint.poll(), Err(AudioError::Cancelled));
    }
}
