//! AES-256-CBC encryption of many independent buffers at once.
//!
//! CBC encryption is serial within one buffer: each block waits for the block before it, so
//! one chain leaves the AES unit idle most of the time. Separate records are separate chains.
//! [`encrypt_chains`] advances many chains by one block per step, so their blocks overlap
//! in the AES unit: as many chains as the `aes` backend encrypts in one batch (8 with
//! AES-NI, 64 with VAES-512, at most [`MAX_LANES`]), the batch encrypted by the backend's
//! wide path while at least half of its lanes have a chain, block by block otherwise. The
//! chains advance without a check per block until the shortest one ends (records of one
//! size all end together). Only
//! the order in which blocks are computed differs from plain CBC: the output is
//! byte-for-byte that of `cbc::Encryptor` without padding, which the tests check against
//! the `cbc` crate.

use aes::Aes256;
use aes::cipher::array::Array;
use aes::cipher::consts::U16;
use aes::cipher::typenum::Unsigned;
use aes::cipher::{
    BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt, BlockModeEncrypt,
    BlockSizeUser, InnerIvInit, ParBlocks, ParBlocksSizeUser,
};

/// Most chains advanced together (the widest backend's batch: 64 blocks with VAES-512).
pub const MAX_LANES: usize = 64;

const BLOCK: usize = 16;

/// One buffer to encrypt in place with its own IV. Only whole 16-byte blocks are encrypted;
/// callers pad first (a trailing partial block would be left as it is).
pub struct Chain<'a> {
    /// The CBC initialisation vector of this buffer.
    pub iv: [u8; BLOCK],
    /// The plaintext, replaced by its ciphertext.
    pub data: &'a mut [u8],
}

/// Encrypts every chain in place with AES-256-CBC under `cipher`; the result equals
/// encrypting each chain separately.
pub fn encrypt_chains(cipher: &Aes256, mut chains: Vec<Chain<'_>>) {
    if let [chain] = chains.as_mut_slice() {
        // Nothing to interleave: the `cbc` crate's own loop is faster for one chain.
        let whole = chain.data.len() / BLOCK * BLOCK;
        let (data, _) = chain.data.split_at_mut(whole);
        let blocks = Array::<u8, U16>::slice_as_chunks_mut(data).0;
        cbc::Encryptor::<Aes256>::inner_iv_init(cipher.clone(), &chain.iv.into())
            .encrypt_blocks(blocks);
        return;
    }
    cipher.encrypt_with_backend(Interleave { chains });
}

/// A chain being worked on: its whole blocks, the next one to encrypt and the ciphertext
/// block before it.
struct Lane<'a> {
    blocks: &'a mut [[u8; BLOCK]],
    at: usize,
    prev: u128,
}

impl Lane<'_> {
    fn left(&self) -> usize {
        self.blocks.len() - self.at
    }
}

struct Interleave<'a> {
    chains: Vec<Chain<'a>>,
}

impl BlockSizeUser for Interleave<'_> {
    type BlockSize = U16;
}

impl BlockCipherEncClosure for Interleave<'_> {
    fn call<B: BlockCipherEncBackend<BlockSize = U16>>(self, backend: &B) {
        let width = <B as ParBlocksSizeUser>::ParBlocksSize::USIZE;
        let most = width.clamp(1, MAX_LANES);
        // Every chain's whole blocks, in order; empty ones are skipped.
        let mut waiting = self.chains.into_iter().filter_map(|c| {
            let (blocks, _) = c.data.as_chunks_mut::<BLOCK>();
            (!blocks.is_empty()).then(|| Lane {
                blocks,
                at: 0,
                prev: u128::from_ne_bytes(c.iv),
            })
        });
        let mut lanes: Vec<Lane<'_>> = Vec::with_capacity(most);
        // Lanes past the active ones hold stale blocks: encrypted with the batch, unused.
        let mut batch = ParBlocks::<B>::default();
        loop {
            lanes.retain(|lane| lane.left() > 0);
            while lanes.len() < most {
                match waiting.next() {
                    Some(lane) => lanes.push(lane),
                    None => break,
                }
            }
            // Every lane has at least this many blocks left: that many steps run without
            // a lane ending (records of one size all end together).
            let Some(steps) = lanes.iter().map(Lane::left).min() else {
                return;
            };
            let wide = most == width && lanes.len() * 2 >= width;
            for _ in 0..steps {
                for (lane, slot) in lanes.iter_mut().zip(batch.iter_mut()) {
                    let plain = u128::from_ne_bytes(lane.blocks[lane.at]);
                    *slot = (plain ^ lane.prev).to_ne_bytes().into();
                }
                if wide {
                    backend.encrypt_par_blocks_inplace(&mut batch);
                } else {
                    // Independent blocks: the CPU still overlaps these encryptions.
                    for slot in &mut batch[..lanes.len()] {
                        backend.encrypt_block_inplace(slot);
                    }
                }
                for (lane, slot) in lanes.iter_mut().zip(batch.iter()) {
                    let cipher_block: [u8; BLOCK] = (*slot).into();
                    lane.blocks[lane.at] = cipher_block;
                    lane.prev = u128::from_ne_bytes(cipher_block);
                    lane.at += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use aes::cipher::block_padding::NoPadding;
    use aes::cipher::{BlockModeEncrypt, KeyInit, KeyIvInit};
    use proptest::prelude::*;

    use super::*;

    fn reference(key: &[u8; 32], iv: &[u8; 16], data: &[u8]) -> Vec<u8> {
        let mut out = data.to_vec();
        let len = out.len();
        cbc::Encryptor::<Aes256>::new(key.into(), iv.into())
            .encrypt_padded::<NoPadding>(&mut out, len)
            .map(|ct| ct.to_vec())
            .unwrap_or_default()
    }

    proptest! {
        #[test]
        fn interleaved_chains_equal_the_cbc_crate(
            key in any::<[u8; 32]>(),
            inputs in prop::collection::vec(
                (any::<[u8; 16]>(), (0usize..40).prop_flat_map(|n| prop::collection::vec(any::<u8>(), n * 16))),
                0..150,
            ),
        ) {
            let cipher = Aes256::new(&key.into());
            let mut buffers: Vec<Vec<u8>> = inputs.iter().map(|(_, d)| d.clone()).collect();
            let chains: Vec<Chain<'_>> = buffers
                .iter_mut()
                .zip(&inputs)
                .map(|(data, (iv, _))| Chain { iv: *iv, data })
                .collect();
            encrypt_chains(&cipher, chains);
            for (got, (iv, plain)) in buffers.iter().zip(&inputs) {
                prop_assert_eq!(got, &reference(&key, iv, plain));
            }
        }
    }

    #[test]
    fn more_chains_than_lanes_of_very_different_lengths() {
        let key = [9u8; 32];
        let cipher = Aes256::new(&key.into());
        let lens = [
            1usize, 1024, 0, 3, 17, 2, 500, 1, 1, 64, 900, 5, 0, 7, 33, 1024, 2,
        ];
        let plains: Vec<Vec<u8>> = lens
            .iter()
            .enumerate()
            .map(|(i, n)| (0..n * 16).map(|j| (i * 31 + j) as u8).collect())
            .collect();
        let mut buffers = plains.clone();
        let chains: Vec<Chain<'_>> = buffers
            .iter_mut()
            .enumerate()
            .map(|(i, data)| Chain {
                iv: [i as u8; 16],
                data,
            })
            .collect();
        encrypt_chains(&cipher, chains);
        for (i, (got, plain)) in buffers.iter().zip(&plains).enumerate() {
            assert_eq!(got, &reference(&key, &[i as u8; 16], plain), "chain {i}");
        }
    }
}
