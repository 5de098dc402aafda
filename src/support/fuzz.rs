//! What the decoders' fuzz tests share (test builds only): a small seeded random source and
//! the byte-level mutations they apply to good messages.

/// Xorshift64: reproducible, seeded per test.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    /// A source seeded with `seed` (not zero).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Up to `max_edits` random edits of `input`: a byte replaced, inserted or removed.
pub fn mutate(input: &mut Vec<u8>, rng: &mut Rng, max_edits: u64) {
    for _ in 0..(rng.next_u64() % (max_edits + 1)) {
        let r = rng.next_u64();
        let i = (r as usize >> 8) % (input.len() + 1);
        match r % 3 {
            0 if i < input.len() => input[i] = (r >> 32) as u8,
            1 => input.insert(i, (r >> 40) as u8),
            _ if i < input.len() => {
                input.remove(i);
            }
            _ => {}
        }
    }
}
