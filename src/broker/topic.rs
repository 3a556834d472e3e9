//! Topic-exchange pattern index: a trie over dot-separated words that maps
//! binding patterns (with `*` and `#` wildcards) to destinations and finds
//! the destinations whose patterns match a routing key.
//!
//! It owns only pattern storage and matching. It must not know about
//! binding arguments or binding identity (the routing table does), and
//! matching must not allocate except by pushing into the caller's Vec, nor
//! panic on any routing key bytes.

use std::collections::HashMap;

/// Cursor value meaning "no words left". A key of N bytes never has a word
/// starting at `usize::MAX`, so this cannot collide with a real offset.
const END: usize = usize::MAX;

/// Pattern words with a special meaning; any other word is literal.
const STAR: &[u8] = b"*";
const HASH: &[u8] = b"#";

/// Trie of topic binding patterns. Each `insert` of a (pattern, destination)
/// pair is counted and needs a matching `remove`: patterns that normalise to
/// the same path (`a.#.#` and `a.#`) share a node, so a plain set would lose
/// one of them on removal.
#[derive(Clone, Debug)]
pub struct TopicTrie<D> {
    root: Node<D>,
}

#[derive(Clone, Debug)]
struct Node<D> {
    /// Children reached by a literal word (including the empty word).
    literal: HashMap<Box<[u8]>, Node<D>>,
    /// Child reached by a `*` pattern word.
    star: Option<Box<Node<D>>>,
    /// Child reached by a `#` pattern word.
    hash: Option<Box<Node<D>>>,
    /// Destinations whose pattern ends here, with how many patterns put them here.
    destinations: Vec<(D, u32)>,
}

impl<D> Default for Node<D> {
    fn default() -> Self {
        Self { literal: HashMap::new(), star: None, hash: None, destinations: Vec::new() }
    }
}

impl<D> Node<D> {
    fn is_empty(&self) -> bool {
        self.destinations.is_empty() && self.literal.is_empty() && self.star.is_none() && self.hash.is_none()
    }
}

impl<D> Default for TopicTrie<D> {
    fn default() -> Self {
        Self { root: Node::default() }
    }
}

/// Returns the word starting at byte offset `pos` and the offset of the next
/// word (`END` when this was the last one), or None when no words are left.
///
/// RabbitMQ semantics: the empty key has zero words; otherwise the key is
/// split on every '.', so `a..b` is three words and `a.` is two.
fn split_word(key: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = key.get(pos..)?;
    match rest.iter().position(|&byte| byte == b'.') {
        Some(dot) => {
            let (word, _) = rest.split_at(dot);
            Some((word, pos + dot + 1))
        }
        None => Some((rest, END)),
    }
}

/// Offset of the first word of `key`, or `END` for the empty key.
fn first_word(key: &[u8]) -> usize {
    if key.is_empty() {
        END
    } else {
        0
    }
}

/// Pattern words with runs of `#` collapsed to one: `#.#` matches exactly
/// what `#` matches, and collapsing keeps backtracking from multiplying.
fn normalized_words(pattern: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = first_word(pattern);
    let mut previous_was_hash = false;
    std::iter::from_fn(move || loop {
        let (word, next) = split_word(pattern, pos)?;
        pos = next;
        let is_hash = word == HASH;
        if is_hash && previous_was_hash {
            continue;
        }
        previous_was_hash = is_hash;
        return Some(word);
    })
}

impl<D: Copy + Eq + Ord> TopicTrie<D> {
    pub fn new() -> Self {
        Self::default()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.root.is_empty()
    }

    /// Adds one reference from `pattern` to `destination`.
    pub fn insert(&mut self, pattern: &str, destination: D) {
        let mut node = &mut self.root;
        for word in normalized_words(pattern.as_bytes()) {
            node = match word {
                STAR => node.star.get_or_insert_with(Box::default),
                HASH => node.hash.get_or_insert_with(Box::default),
                _ => node.literal.entry(Box::from(word)).or_default(),
            };
        }
        match node.destinations.iter_mut().find(|(d, _)| *d == destination) {
            Some((_, count)) => *count = count.saturating_add(1),
            None => node.destinations.push((destination, 1)),
        }
    }

    /// Drops one reference from `pattern` to `destination`, pruning nodes
    /// that become empty so a long-lived exchange does not accumulate dead
    /// paths. Returns false if there was no such reference.
    pub fn remove(&mut self, pattern: &str, destination: D) -> bool {
        // Removal is off the publish path, so collecting the words is fine.
        let words: Vec<&[u8]> = normalized_words(pattern.as_bytes()).collect();
        remove_path(&mut self.root, &words, destination)
    }

    /// Appends every destination whose pattern matches `routing_key` to
    /// `out`. Destinations appended by this call are deduplicated; entries
    /// already in `out` before the call are left alone.
    pub fn route(&self, routing_key: &[u8], out: &mut Vec<D>) {
        let start = out.len();
        walk(&self.root, routing_key, first_word(routing_key), out);
        dedup_tail(out, start);
    }
}

fn remove_path<D: Copy + Eq>(node: &mut Node<D>, words: &[&[u8]], destination: D) -> bool {
    let Some((&word, rest)) = words.split_first() else {
        let Some(i) = node.destinations.iter().position(|(d, _)| *d == destination) else {
            return false;
        };
        match node.destinations.get_mut(i) {
            Some((_, count)) if *count > 1 => *count -= 1,
            _ => {
                node.destinations.swap_remove(i);
            }
        }
        return true;
    };
    match word {
        STAR => remove_boxed(&mut node.star, rest, destination),
        HASH => remove_boxed(&mut node.hash, rest, destination),
        _ => {
            let Some(child) = node.literal.get_mut(word) else {
                return false;
            };
            let removed = remove_path(child, rest, destination);
            if child.is_empty() {
                node.literal.remove(word);
            }
            removed
        }
    }
}

fn remove_boxed<D: Copy + Eq>(slot: &mut Option<Box<Node<D>>>, words: &[&[u8]], destination: D) -> bool {
    let Some(child) = slot.as_deref_mut() else {
        return false;
    };
    let removed = remove_path(child, words, destination);
    if child.is_empty() {
        *slot = None;
    }
    removed
}

/// Depth-first match of the words from `pos` onwards against the subtree at
/// `node`. Recursion depth is bounded by the pattern length (one level per
/// trie edge), not by the routing key.
fn walk<D: Copy>(node: &Node<D>, key: &[u8], pos: usize, out: &mut Vec<D>) {
    if let Some(hash) = node.hash.as_deref() {
        // `#` swallows zero or more words: resume after each possible count.
        let mut resume = pos;
        loop {
            walk(hash, key, resume, out);
            match split_word(key, resume) {
                Some((_, next)) => resume = next,
                None => break,
            }
        }
    }
    let Some((word, next)) = split_word(key, pos) else {
        out.extend(node.destinations.iter().map(|&(d, _)| d));
        return;
    };
    if let Some(child) = node.literal.get(word) {
        walk(child, key, next, out);
    }
    if let Some(star) = node.star.as_deref() {
        walk(star, key, next, out);
    }
}

/// Removes duplicates among `out[start..]` in place, without allocating.
/// Sorting the tail is O(k log k); the order of destinations in a routing
/// result carries no meaning.
fn dedup_tail<D: Copy + Ord>(out: &mut Vec<D>, start: usize) {
    let Some(tail) = out.get_mut(start..) else {
        return;
    };
    if tail.len() < 2 {
        return;
    }
    tail.sort_unstable();
    let mut kept = 1;
    for read in 1..tail.len() {
        if tail.get(read) != tail.get(kept - 1) {
            tail.swap(kept, read);
            kept += 1;
        }
    }
    out.truncate(start + kept);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward recursive matcher used as the oracle for the trie.
    fn reference_match(pattern: &[&[u8]], key: &[&[u8]]) -> bool {
        match pattern.split_first() {
            None => key.is_empty(),
            Some((&HASH, rest)) => {
                (0..=key.len()).any(|skip| key.get(skip..).is_some_and(|tail| reference_match(rest, tail)))
            }
            Some((&word, rest)) => match key.split_first() {
                Some((&first, tail)) => (word == STAR || word == first) && reference_match(rest, tail),
                None => false,
            },
        }
    }

    fn words(s: &str) -> Vec<&[u8]> {
        if s.is_empty() {
            Vec::new()
        } else {
            s.as_bytes().split(|&b| b == b'.').collect()
        }
    }

    fn reference(pattern: &str, key: &str) -> bool {
        reference_match(&words(pattern), &words(key))
    }

    fn trie_matches(pattern: &str, key: &str) -> bool {
        let mut trie = TopicTrie::new();
        trie.insert(pattern, 7u32);
        let mut out = Vec::new();
        trie.route(key.as_bytes(), &mut out);
        assert!(out.len() <= 1, "duplicate destinations for {pattern:?} / {key:?}");
        out == [7]
    }

    const TABLE: &[(&str, &str, bool)] = &[
        // literal words
        ("a", "a", true),
        ("a", "b", false),
        ("a.b", "a.b", true),
        ("a.b", "a.b.c", false),
        ("a.b.c", "a.b", false),
        ("a.b", "a", false),
        ("", "", true),
        ("", "a", false),
        ("a", "", false),
        ("A", "a", false),
        // `*` is exactly one word
        ("*", "a", true),
        ("*", "", false),
        ("*", "a.b", false),
        ("*.b", "a.b", true),
        ("a.*", "a", false),
        ("a.*", "a.b", true),
        ("a.*", "a.b.c", false),
        ("*.*", "a.b", true),
        ("*.*", "a", false),
        ("a.*.c", "a.b.c", true),
        ("a.*.c", "a.c", false),
        // `#` is zero or more words
        ("#", "", true),
        ("#", "a", true),
        ("#", "a.b.c", true),
        ("#", ".", true),
        ("a.#", "a", true),
        ("a.#", "a.b", true),
        ("a.#", "a.b.c", true),
        ("a.#", "b", false),
        ("a.#", "", false),
        ("#.a", "a", true),
        ("#.a", "x.y.a", true),
        ("#.a", "a.x", false),
        ("a.#.b", "a.b", true),
        ("a.#.b", "a.x.b", true),
        ("a.#.b", "a.x.y.b", true),
        ("a.#.b", "a.x.y", false),
        ("a.#.b", "b.a.b", false),
        ("#.#", "", true),
        ("#.#", "a.b", true),
        ("#.*", "", false),
        ("#.*", "a", true),
        ("*.#", "a.b.c", true),
        ("*.#", "", false),
        ("#.b.#", "a.b.c", true),
        ("#.b.#", "b", true),
        ("#.b.#", "a.c", false),
        ("a.#.#.b", "a.b", true),
        ("#.a.#.a.#", "a.a", true),
        ("#.a.#.a.#", "x.a.y", false),
        // empty words are words
        ("a..b", "a..b", true),
        ("a.*.b", "a..b", true),
        ("a.b", "a..b", false),
        ("a.#.b", "a..b", true),
        ("*", ".", false),
        ("*.*", ".", true),
        (".", ".", true),
        ("a.", "a.", true),
        ("a.", "a", false),
        ("a.*", "a.", true),
        ("a.#", "a.", true),
        (".a", ".a", true),
        // wildcards are whole words only; in keys they are literal
        ("a*", "ab", false),
        ("a*", "a*", true),
        ("a#", "a", false),
        ("*", "#", true),
        ("#", "*", true),
        ("a.b", "a.*", false),
    ];

    #[test]
    fn pattern_table_matches_trie_and_reference() {
        assert!(TABLE.len() >= 40);
        for &(pattern, key, expected) in TABLE {
            assert_eq!(trie_matches(pattern, key), expected, "trie: pattern {pattern:?} key {key:?}");
            assert_eq!(reference(pattern, key), expected, "reference: pattern {pattern:?} key {key:?}");
        }
    }

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn random_dotted(rng: &mut XorShift, alphabet: &[&str], max_words: usize) -> String {
        let count = rng.below(max_words + 1);
        let picked: Vec<&str> = (0..count).map(|_| alphabet[rng.below(alphabet.len())]).collect();
        picked.join(".")
    }

    fn check_all_keys(trie: &TopicTrie<usize>, patterns: &[(String, bool)], keys: &[String]) {
        let mut out = Vec::new();
        for key in keys {
            out.clear();
            trie.route(key.as_bytes(), &mut out);
            let mut expected: Vec<usize> = patterns
                .iter()
                .enumerate()
                .filter(|(_, (p, live))| *live && reference(p, key))
                .map(|(i, _)| i % 37)
                .collect();
            expected.sort_unstable();
            expected.dedup();
            let mut got = out.clone();
            got.sort_unstable();
            assert_eq!(got, expected, "key {key:?}");
            assert_eq!(got.len(), out.len(), "duplicates for key {key:?}");
        }
    }

    #[test]
    fn randomized_cross_check_against_reference() {
        const PATTERN_WORDS: &[&str] = &["a", "b", "c", "", "*", "#"];
        const KEY_WORDS: &[&str] = &["a", "b", "c", "", "*", "#"];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _round in 0..20 {
            // Destinations repeat (i % 37) so several patterns share one.
            let mut patterns: Vec<(String, bool)> =
                (0..300).map(|_| (random_dotted(&mut rng, PATTERN_WORDS, 6), true)).collect();
            let mut trie = TopicTrie::new();
            for (i, (p, _)) in patterns.iter().enumerate() {
                trie.insert(p, i % 37);
            }
            let keys: Vec<String> = (0..200).map(|_| random_dotted(&mut rng, KEY_WORDS, 7)).collect();
            check_all_keys(&trie, &patterns, &keys);

            for (i, (p, live)) in patterns.iter_mut().enumerate() {
                if rng.below(2) == 0 {
                    assert!(trie.remove(p, i % 37));
                    *live = false;
                }
            }
            check_all_keys(&trie, &patterns, &keys);

            for (i, (p, live)) in patterns.iter().enumerate() {
                if *live {
                    assert!(trie.remove(p, i % 37));
                }
            }
            assert!(trie.is_empty(), "trie must prune every node");
        }
    }

    #[test]
    fn remove_is_counted_for_equivalent_patterns() {
        let mut trie = TopicTrie::new();
        trie.insert("a.#", 1u8);
        trie.insert("a.#.#", 1u8);
        assert!(trie.remove("a.#.#", 1));
        let mut out = Vec::new();
        trie.route(b"a.b", &mut out);
        assert_eq!(out, [1]);
        assert!(trie.remove("a.#", 1));
        assert!(!trie.remove("a.#", 1));
        assert!(trie.is_empty());
    }

    #[test]
    fn remove_unknown_pattern_or_destination_is_false() {
        let mut trie = TopicTrie::new();
        trie.insert("a.*", 1u8);
        assert!(!trie.remove("a.*", 2));
        assert!(!trie.remove("a.b", 1));
        assert!(!trie.remove("a.#", 1));
        assert!(!trie.remove("*", 1));
        assert!(trie.remove("a.*", 1));
    }

    #[test]
    fn many_bindings_route_only_the_matching_ones() {
        let mut trie = TopicTrie::new();
        for i in 0..10_000u32 {
            trie.insert(&format!("stock.{i}.*"), i);
        }
        trie.insert("stock.#", 99_999);
        let mut out = vec![5];
        trie.route(b"stock.42.nyse", &mut out);
        out.sort_unstable();
        assert_eq!(out, [5, 42, 99_999]);
    }

    #[test]
    fn arbitrary_bytes_in_keys_are_plain_words() {
        let mut trie = TopicTrie::new();
        trie.insert("*.x", 1u8);
        let mut out = Vec::new();
        trie.route(&[0xff, 0x00, b'.', b'x'], &mut out);
        assert_eq!(out, [1]);
        out.clear();
        trie.route(&[0xff, b'.', b'.', b'x'], &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn dedup_tail_keeps_prefix() {
        let mut v = vec![3, 3, 5, 1, 5, 1, 2];
        dedup_tail(&mut v, 2);
        assert_eq!(v, [3, 3, 1, 2, 5]);
        let mut short = vec![1];
        dedup_tail(&mut short, 5);
        assert_eq!(short, [1]);
    }
}
