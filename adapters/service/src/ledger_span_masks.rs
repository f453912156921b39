//! [`SpanMasks`]: which spans of a group of index spans may hold a key, answered by reading
//! one 64-byte block of memory.
//!
//! A lookup by record id or hash that missed in the index tail must know which spans to
//! ask the store (`ledger_ids.rs`). One Bloom filter per span answers that, but a lookup
//! then probes every span's filter, each probe a cache miss in a different filter (153 at
//! 10M entries in spans of 2^16). Here a key's bits for its span are set in a block chosen
//! by the key alone, so one block read answers for every span of the group: the spans
//! whose bits are all set may hold the key, the others surely do not.

use std::sync::atomic::{AtomicU64, Ordering};

/// Words of one block: 512 bits, one cache line.
const BLOCK_WORDS: usize = 8;

/// Bits of one block.
const BLOCK_BITS: u64 = 64 * BLOCK_WORDS as u64;

/// Bits per key the masks are sized for: about 0.3% false positives per span asked when
/// full (0.07% for unblocked bits; a block holds 34 keys on average, some many more), so
/// that the 153 spans of a 10M-entry feed answer "maybe" in vain about 0.4 times per
/// lookup, each a store read that its on-disk filter answers.
const BITS_PER_KEY: usize = 15;

/// Bits each key sets (and a lookup tests) in its block, per span.
const PROBES: u64 = 10;

/// The spans (numbered 0 to 63 within their group: "slots") whose keys were added, as
/// Bloom filter bits in blocks chosen by the key. Safe to use from many threads; an added
/// key is never lost, so a lookup never misses a slot that holds it.
pub(crate) struct SpanMasks {
    blocks: Box<[[AtomicU64; BLOCK_WORDS]]>,
}

/// The block of one key in a [`SpanMasks`], read once for all of its slots.
pub(crate) struct KeyBlock<'a> {
    words: &'a [AtomicU64; BLOCK_WORDS],
    hash: u64,
}

impl SpanMasks {
    /// Masks sized for `keys` keys in all (at least one block).
    pub(crate) fn new(keys: usize) -> SpanMasks {
        let blocks = keys
            .max(1)
            .saturating_mul(BITS_PER_KEY)
            .div_ceil(BLOCK_BITS as usize)
            .max(1);
        SpanMasks {
            blocks: (0..blocks)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
        }
    }

    /// The block of the key whose 64-bit hash (of a well-keyed hasher) is `hash`.
    pub(crate) fn block(&self, hash: u64) -> KeyBlock<'_> {
        // The top 32 bits pick the block (a multiply-shift range reduction); `bits` mixes
        // the whole hash for the bits within it.
        let len = self.blocks.len() as u64;
        let at = usize::try_from(((hash >> 32) * len) >> 32).unwrap_or(0);
        let words = self.blocks.get(at).or_else(|| self.blocks.first());
        KeyBlock {
            words: words.unwrap_or(&EMPTY_BLOCK),
            hash,
        }
    }

    /// Adds the key of `hash` to `slot`.
    pub(crate) fn insert(&self, hash: u64, slot: u32) {
        let block = self.block(hash);
        for (word, bit) in bits(hash, slot) {
            if let Some(word) = block.words.get(word) {
                word.fetch_or(bit, Ordering::Relaxed);
            }
        }
    }

    /// The masks' size in bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.blocks.len() * BLOCK_WORDS * 8
    }
}

/// A block that holds nothing (the masks always have at least one block; this only keeps
/// [`SpanMasks::block`] free of a panic path).
static EMPTY_BLOCK: [AtomicU64; BLOCK_WORDS] = [const { AtomicU64::new(0) }; BLOCK_WORDS];

impl KeyBlock<'_> {
    /// `false` only if the key was never added to `slot`.
    pub(crate) fn may_hold(&self, slot: u32) -> bool {
        bits(self.hash, slot).all(|(word, bit)| {
            self.words
                .get(word)
                .is_some_and(|w| w.load(Ordering::Relaxed) & bit != 0)
        })
    }
}

/// The (word, bit mask) pairs the key of `hash` sets in its block for `slot`: double
/// hashing over a mix of the hash and the slot.
fn bits(hash: u64, slot: u32) -> impl Iterator<Item = (usize, u64)> {
    let mixed = mix(hash ^ (u64::from(slot) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let (first, step) = (mixed, (mixed >> 32) | 1);
    (0..PROBES).map(move |i| {
        let at = first.wrapping_add(i.wrapping_mul(step)) % BLOCK_BITS;
        (usize::try_from(at / 64).unwrap_or(0), 1u64 << (at % 64))
    })
}

/// The finalizer of SplitMix64: every bit of the input affects every bit of the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, RandomState};

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn full_masks_answer_maybe_in_vain_about_once_a_thousand_slots() {
        // 16 slots of 4,096 keys each, as a group of spans holds them.
        let hasher = RandomState::new();
        let masks = SpanMasks::new(16 * 4_096);
        for slot in 0..16u32 {
            for i in 0..4_096u64 {
                masks.insert(hasher.hash_one((slot, i)), slot);
            }
        }
        let mut vain = 0usize;
        for slot in 0..16u32 {
            for i in 0..4_096u64 {
                let block = masks.block(hasher.hash_one((slot, i)));
                assert!(block.may_hold(slot));
                vain += (0..16).filter(|&s| s != slot && block.may_hold(s)).count();
            }
        }
        // 983,040 slots asked in vain: about 0.3% answer "maybe".
        assert!(vain < 3_500, "{vain} false positives");
        assert_eq!(masks.bytes(), 16 * 4_096 * BITS_PER_KEY / 8);
    }

    proptest! {
        /// An added key is always found in its slot, whatever the size and the hashes.
        #[test]
        fn an_added_key_is_never_missed(
            keys in proptest::collection::vec((any::<u64>(), 0u32..64), 0..300),
            size in 0usize..1_000,
        ) {
            let masks = SpanMasks::new(size);
            for &(hash, slot) in &keys {
                masks.insert(hash, slot);
            }
            for &(hash, slot) in &keys {
                prop_assert!(masks.block(hash).may_hold(slot));
            }
        }
    }
}
