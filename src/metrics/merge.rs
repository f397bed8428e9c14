//! One exposition from several: every process's series of a family under that family's one
//! `# HELP` and `# TYPE`, as the text format requires.
//!
//! Each input is a whole exposition from [`super::Encoder`] (so each family starts with its
//! `# HELP` line, then `# TYPE`, then its samples), with the series of each process labelled
//! apart (`pid`). Families keep the order of their first appearance, the first input's first:
//! a process started from another build, with a family the others lack, still shows it.

/// A family as merged: its name, its `# HELP` and `# TYPE` lines, and the sample lines of
/// each input (empty where an input lacks it).
struct Merged<'a> {
    name: &'a [u8],
    header: &'a [u8],
    samples: Vec<&'a [u8]>,
}

/// Append to `out` the merge of `inputs`.
pub fn merge(inputs: &[&[u8]], out: &mut Vec<u8>) {
    let mut families: Vec<Merged<'_>> = Vec::new();
    for (which, input) in inputs.iter().enumerate() {
        for (name, header, samples) in split(input) {
            let index = match families.iter().position(|f| f.name == name) {
                Some(index) => index,
                None => {
                    families.push(Merged {
                        name,
                        header,
                        samples: vec![&[][..]; inputs.len()],
                    });
                    families.len() - 1
                }
            };
            families[index].samples[which] = samples;
        }
    }
    for family in families {
        out.extend_from_slice(family.header);
        for part in family.samples {
            out.extend_from_slice(part);
        }
    }
}

/// The families of one exposition: name, its `# HELP` and `# TYPE` lines, its sample lines.
fn split(text: &[u8]) -> Vec<(&[u8], &[u8], &[u8])> {
    let mut starts: Vec<usize> = Vec::new();
    let mut at = 0;
    while at < text.len() {
        if text[at..].starts_with(b"# HELP ") {
            starts.push(at);
        }
        at += text[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(text.len() - at, |n| n + 1);
    }
    let mut families = Vec::with_capacity(starts.len());
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(text.len());
        let block = &text[start..end];
        let name_end = block[7..]
            .iter()
            .position(|&b| b == b' ' || b == b'\n')
            .map_or(block.len(), |n| n + 7);
        let name = &block[7..name_end];
        // The header is the HELP line and the TYPE line after it.
        let mut header_end = 0;
        for _ in 0..2 {
            header_end += block[header_end..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(block.len() - header_end, |n| n + 1);
        }
        families.push((name, &block[..header_end], &block[header_end..]));
    }
    families
}
