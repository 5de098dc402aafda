//! The election: who of the peers asking to run should hold the resource, computed from the
//! board (every peer's advertised queue size, wish, force and the time it last asked). Every
//! peer evaluates this same pure function on the same board, so they agree on the winner; the
//! lock (local or etcd) makes sure at most one runs even while their views of the board differ
//! for a moment.
//!
//! The rules (docs/svcshare.md, "The election"):
//! 1. Only candidates count: peers that asked to run (`election`, `force`) and were not paused
//!    or halted since. A halted peer reports an empty queue and is never a candidate.
//! 2. A candidate forced with megabytes still to go (`force MB`) ignores elections: the holder
//!    keeps the resource if it is one of them, else the one that forced first wins.
//! 3. Else, the most recent `force` wins unless some candidate asked for an election after it.
//! 4. Else a major election: the smallest queue wins; on equal queues the current holder keeps
//!    the resource, and between others the smaller name wins (byte order).

/// How a candidate is forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Force {
    /// Not forced.
    None = 0,
    /// `force` without megabytes (or with its megabytes done): peers' elections still count.
    Open = 1,
    /// `force MB` with megabytes still to go: peers' elections are ignored.
    Monopoly = 2,
}

impl Force {
    /// From the advertised number.
    pub fn from_i64(v: i64) -> Force {
        match v {
            1 => Force::Open,
            2 => Force::Monopoly,
            _ => Force::None,
        }
    }
}

/// One peer as the board shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The peer's name (its process name; in etcd its key).
    pub name: String,
    /// Queue size it reports (0 while halted).
    pub queue: i64,
    /// Whether it asks to run.
    pub want: bool,
    /// How it is forced.
    pub force: Force,
    /// When it last asked to run (`election` or `force`), ns since the Unix epoch.
    pub asked_ns: i64,
}

/// Everything a peer knows of the others: the entries (its own included) and the holder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Board {
    /// Every live peer of the share.
    pub entries: Vec<Entry>,
    /// Who holds the resource now, if anyone.
    pub holder: Option<String>,
}

/// Why the winner won, for replies and the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The winner's name.
    pub winner: String,
    /// The rule that decided, in words.
    pub why: String,
}

/// The winner on `board`, or `None` when nobody asks to run.
pub fn elect(board: &Board) -> Option<Verdict> {
    let cands: Vec<&Entry> = board.entries.iter().filter(|e| e.want).collect();
    if cands.is_empty() {
        return None;
    }
    let holder = board.holder.as_deref();
    let mono: Vec<&&Entry> = cands
        .iter()
        .filter(|e| e.force == Force::Monopoly)
        .collect();
    if !mono.is_empty() {
        let w = mono
            .iter()
            .find(|e| Some(e.name.as_str()) == holder)
            .or_else(|| mono.iter().min_by_key(|e| (e.asked_ns, e.name.as_str())))
            .map(|e| e.name.clone())?;
        return Some(Verdict {
            why: format!("{w} is forced with megabytes to go (elections ignored)"),
            winner: w,
        });
    }
    if let Some(f) = cands
        .iter()
        .filter(|e| e.force == Force::Open)
        .max_by_key(|e| (e.asked_ns, std::cmp::Reverse(e.name.as_str())))
    {
        let later = cands
            .iter()
            .any(|e| e.name != f.name && e.force == Force::None && e.asked_ns > f.asked_ns);
        if !later {
            return Some(Verdict {
                winner: f.name.clone(),
                why: format!("{} forced, and no election was asked since", f.name),
            });
        }
    }
    let w = cands.iter().min_by_key(|e| {
        (
            e.queue,
            Some(e.name.as_str()) != holder,
            e.name.as_bytes().to_vec(),
        )
    })?;
    let n = cands.len();
    Some(Verdict {
        winner: w.name.clone(),
        why: if n == 1 {
            format!("{} is the only candidate (queue {})", w.name, w.queue)
        } else {
            format!(
                "{} has the smallest queue ({}) of {n} candidates{}",
                w.name,
                w.queue,
                if cands.iter().filter(|e| e.queue == w.queue).count() > 1 {
                    if Some(w.name.as_str()) == holder {
                        "; on a tie the holder keeps it"
                    } else {
                        "; on a tie the smaller name wins"
                    }
                } else {
                    ""
                }
            )
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, queue: i64, want: bool, force: Force, asked: i64) -> Entry {
        Entry {
            name: name.into(),
            queue,
            want,
            force,
            asked_ns: asked,
        }
    }

    fn board(entries: Vec<Entry>, holder: Option<&str>) -> Board {
        Board {
            entries,
            holder: holder.map(Into::into),
        }
    }

    #[test]
    fn smallest_queue_wins_and_ties_go_to_the_holder_then_the_smaller_name() {
        let b = board(
            vec![
                e("b", 3, true, Force::None, 1),
                e("a", 5, true, Force::None, 2),
                e("c", 3, true, Force::None, 3),
                e("d", 0, false, Force::None, 4),
            ],
            None,
        );
        assert_eq!(elect(&b).unwrap().winner, "b");
        let mut b2 = b.clone();
        b2.holder = Some("c".into());
        let v = elect(&b2).unwrap();
        assert_eq!(v.winner, "c");
        assert!(v.why.contains("holder keeps it"), "{}", v.why);
        assert_eq!(
            elect(&board(vec![e("x", 0, false, Force::None, 0)], None)),
            None
        );
    }

    #[test]
    fn force_wins_until_someone_asks_for_an_election_after_it() {
        let mut b = board(
            vec![
                e("a", 1, true, Force::None, 10),
                e("f", 9, true, Force::Open, 20),
            ],
            Some("a"),
        );
        assert_eq!(elect(&b).unwrap().winner, "f");
        b.entries[0].asked_ns = 30;
        assert_eq!(elect(&b).unwrap().winner, "a");
    }

    #[test]
    fn force_with_megabytes_ignores_elections() {
        let b = board(
            vec![
                e("a", 1, true, Force::None, 50),
                e("m", 9, true, Force::Monopoly, 20),
                e("n", 9, true, Force::Monopoly, 10),
            ],
            Some("m"),
        );
        assert_eq!(elect(&b).unwrap().winner, "m");
        let mut b2 = b.clone();
        b2.holder = None;
        assert_eq!(elect(&b2).unwrap().winner, "n");
    }
}
