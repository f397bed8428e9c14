//! The fuzzer's input: its layout, and the choices its control bytes make.

use arbitrary::Unstructured;

/// Cut the input into its control section and the request stream.
pub fn split_input(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return (&[], data);
    };
    let n = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    rest.split_at(n)
}

/// The fuzzer's choices. When the bytes run out, every choice is its first option.
pub struct Choices<'a>(pub Unstructured<'a>);

impl Choices<'_> {
    /// A number in `0..n` (0 when `n` is 0 or the bytes are spent).
    pub fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        self.0.int_in_range(0..=n - 1).unwrap_or(0)
    }

    /// True once every control byte has been used.
    pub fn exhausted(&self) -> bool {
        self.0.is_empty()
    }
}
