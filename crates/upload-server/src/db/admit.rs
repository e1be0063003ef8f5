//! Which of a batch's new uploads fit their owners' pending limits: the
//! decision both group-commit writers make (`sqlite/writer`,
//! `postgres/writer`), apart from their SQL. Each writer holds its owners'
//! counters locked while it asks and decides, and inserts what this admits.

use std::collections::{HashMap, HashSet};

/// A new upload of a batch, as the decision sees it.
pub(super) struct Candidate<'a> {
    pub(super) owner: &'a str,
    pub(super) max_pending: u32,
    pub(super) now_ms: i64,
}

/// The owners whose counter says full, with the limit and time to count
/// their pending uploads exactly by (their first upload's in the batch):
/// the counter also holds uploads past their window that the sweeper has
/// not expired yet, so only the exact, window-aware count may refuse.
pub(super) fn to_count<'a>(batch: &[Candidate<'a>], counters: &HashMap<String, i64>) -> Vec<(&'a str, i64, i64)> {
    let mut seen = HashSet::new();
    let mut full = Vec::new();
    for candidate in batch {
        if seen.insert(candidate.owner) {
            let max = i64::from(candidate.max_pending);
            if counters.get(candidate.owner).copied().unwrap_or(0) >= max {
                full.push((candidate.owner, max, candidate.now_ms));
            }
        }
    }
    full
}

/// Decides in order: an owner has room for its limit less what is pending
/// (its exact count where [`to_count`] asked for one, its counter
/// otherwise), and each upload admitted takes one. Whether each is admitted.
pub(super) fn admit(batch: &[Candidate<'_>], counters: &HashMap<String, i64>, exact: &HashMap<&str, i64>) -> Vec<bool> {
    let mut room: HashMap<&str, i64> = HashMap::new();
    batch
        .iter()
        .map(|candidate| {
            let left = room.entry(candidate.owner).or_insert_with(|| {
                let pending =
                    exact.get(candidate.owner).or_else(|| counters.get(candidate.owner)).copied().unwrap_or(0);
                i64::from(candidate.max_pending) - pending
            });
            let admitted = *left > 0;
            if admitted {
                *left -= 1;
            }
            admitted
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(owner: &str) -> Candidate<'_> {
        Candidate { owner, max_pending: 3, now_ms: 7 }
    }

    /// Room is the limit less the counter, taken in order; an owner whose
    /// counter says full is counted exactly, and only the exact count decides.
    #[test]
    fn owners_get_their_room_in_order() {
        let batch = [candidate("a"), candidate("b"), candidate("a"), candidate("c"), candidate("a"), candidate("b")];
        let counters: HashMap<String, i64> = [("a".to_owned(), 1), ("b".to_owned(), 3), ("c".to_owned(), 9)].into();
        assert_eq!(to_count(&batch, &counters), [("b", 3, 7), ("c", 3, 7)]);
        // b's three pending are all inside their window; c's nine were mostly past it.
        let exact: HashMap<&str, i64> = [("b", 3), ("c", 1)].into();
        assert_eq!(admit(&batch, &counters, &exact), [true, false, true, true, false, false]);
        // A new owner has no counter: its whole limit.
        let fresh = [candidate("d"), candidate("d"), candidate("d"), candidate("d")];
        assert!(to_count(&fresh, &counters).is_empty());
        assert_eq!(admit(&fresh, &counters, &HashMap::new()), [true, true, true, false]);
    }
}
