//! Labelled families: a fixed table of metrics, one per combination of label values.
//!
//! Prometheus clients usually keep a family's series in a hash map keyed by the label values,
//! created on first use. That costs a hash, a lookup and sometimes an allocation per
//! observation, and lets a careless label (a raw URL path, a user id) grow the map without
//! bound. Here every label's values are fixed when the family is built (routes are known once
//! the router is, status classes and reasons are enums), so the family is a flat array indexed
//! row-major by small integer ids: `requests.get_mut([route, class])` is two bounds checks, a
//! multiply and an add. Unknown values cannot exist, so the series count is bounded by
//! construction; a route the router does not know is counted under a catch-all value the
//! caller provides (`"unmatched"`), never under its raw path.

use super::encode::{is_label_name, Encoder, Metric};

/// A value a label can take, as an enum: `StatusClass::Success`, `CloseReason::Client`. Its
/// `id` indexes [`Family::get`].
pub trait LabelValue: Copy + 'static {
    /// The label's name, as in `reason="client"`.
    const NAME: &'static str;
    /// Every value, in `id` order.
    const ALL: &'static [Self];
    /// The value as it appears in the exposition.
    fn as_str(self) -> &'static str;
    /// Its position in `ALL`.
    fn id(self) -> usize;
}

/// One label of a family: its name and every value it can take, fixed at construction.
#[derive(Debug, Clone)]
pub struct Label {
    name: &'static str,
    values: Vec<String>,
}

impl Label {
    /// A label whose values are known only at start-up (the router's routes). Allocates once.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid Prometheus label name, there are no values, or a value comes
    /// twice: all are bugs in the code that builds the registry, caught the first time it runs.
    pub fn new<I, S>(name: &'static str, values: I) -> Label
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        assert!(is_label_name(name), "invalid label name {name:?}");
        let values: Vec<String> = values.into_iter().map(Into::into).collect();
        assert!(!values.is_empty(), "label {name:?} has no values");
        for (k, value) in values.iter().enumerate() {
            // Two equal values would be two series with the same labels: a scrape Prometheus
            // rejects whole.
            assert!(
                !values[..k].contains(value),
                "label {name:?} has the value {value:?} twice"
            );
        }
        Label { name, values }
    }

    /// The label of an enum of values.
    pub fn of<V: LabelValue>() -> Label {
        Label::new(V::NAME, V::ALL.iter().map(|v| v.as_str()))
    }

    /// The label's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Every value, in id order.
    pub fn values(&self) -> &[String] {
        &self.values
    }
}

/// A metric per combination of the values of `N` labels, stored in one flat table.
#[derive(Debug, Clone)]
pub struct Family<M, const N: usize> {
    labels: [Label; N],
    /// Row-major: the last label's id varies fastest.
    series: Box<[M]>,
}

impl<M, const N: usize> Family<M, N> {
    /// A family with one metric, made by `make`, per combination of label values. Allocates
    /// the whole table here, once.
    pub fn new(labels: [Label; N], make: impl FnMut() -> M) -> Family<M, N> {
        let len = labels.iter().map(|label| label.values.len()).product();
        let series = std::iter::repeat_with(make).take(len).collect();
        Family { labels, series }
    }

    /// The metric for these label value ids (one per label, each below its label's count of
    /// values).
    ///
    /// # Panics
    ///
    /// If an id is out of range: a bug in the caller, which would otherwise count under
    /// another series' labels.
    pub fn get(&self, ids: [usize; N]) -> &M {
        &self.series[self.index(ids)]
    }

    /// The metric for these label value ids, to count into (reactor-owned metrics).
    ///
    /// # Panics
    ///
    /// As [`Family::get`].
    pub fn get_mut(&mut self, ids: [usize; N]) -> &mut M {
        let index = self.index(ids);
        &mut self.series[index]
    }

    /// The family's labels.
    pub fn labels(&self) -> &[Label; N] {
        &self.labels
    }

    /// Every series with its label value ids, in table order.
    pub fn iter(&self) -> impl Iterator<Item = ([usize; N], &M)> {
        self.series
            .iter()
            .enumerate()
            .map(|(index, metric)| (self.ids(index), metric))
    }

    fn index(&self, ids: [usize; N]) -> usize {
        let mut index = 0;
        for (label, id) in self.labels.iter().zip(ids) {
            let count = label.values.len();
            assert!(id < count, "label {:?} has no value {id}", label.name);
            index = index * count + id;
        }
        index
    }

    fn ids(&self, mut index: usize) -> [usize; N] {
        let mut ids = [0; N];
        for (label, id) in self.labels.iter().zip(ids.iter_mut()).rev() {
            let count = label.values.len();
            *id = index % count;
            index /= count;
        }
        ids
    }
}

impl<M: Metric, const N: usize> Family<M, N> {
    /// Write every series, with its labels, after the family's `# HELP`/`# TYPE` header.
    pub(super) fn encode(&self, enc: &mut Encoder<'_>, name: &str) {
        for (ids, metric) in self.iter() {
            let pairs: [(&str, &str); N] = std::array::from_fn(|k| {
                let label = &self.labels[k];
                (label.name, label.values[ids[k]].as_str())
            });
            metric.encode(enc, name, &pairs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::LocalCounter;

    /// Ids map to distinct series, and back.
    #[test]
    fn ids_round_trip_through_the_table() {
        let mut family = Family::new(
            [
                Label::new("route", ["/a", "/b", "/c"]),
                Label::new("class", ["2xx", "5xx"]),
            ],
            LocalCounter::new,
        );
        family.get_mut([2, 1]).inc();
        family.get_mut([0, 1]).add(5);
        let counted: Vec<_> = family
            .iter()
            .filter(|(_, c)| c.get() > 0)
            .map(|(ids, c)| (ids, c.get()))
            .collect();
        assert_eq!(counted, vec![([0, 1], 5), ([2, 1], 1)]);
        assert_eq!(family.iter().count(), 6);
    }

    /// An id past the end of its label is refused, not counted under a neighbour's labels.
    #[test]
    #[should_panic(expected = "has no value 2")]
    fn out_of_range_ids_are_refused() {
        let family = Family::new(
            [
                Label::new("a", ["x", "y"]),
                Label::new("b", ["1", "2", "3"]),
            ],
            LocalCounter::new,
        );
        let _ = family.get([0, 2]).get(); // fine
        let _ = family.get([2, 0]); // would alias nothing, but is a bug
    }

    /// A value given twice is refused: it would make two series with the same labels.
    #[test]
    #[should_panic(expected = "twice")]
    fn duplicate_values_are_refused() {
        let _ = Label::new("route", ["/a", "/b", "/a"]);
    }

    /// Label names are checked when the family is built.
    #[test]
    #[should_panic(expected = "invalid label name")]
    fn bad_label_names_are_refused() {
        let _ = Label::new("le-gal", ["x"]);
    }
}
