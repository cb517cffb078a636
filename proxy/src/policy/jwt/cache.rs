//! The hasher of the cache of verified tokens.

/// Hashes only the end of a key: a token's last bytes are its signature's,
/// as good a spread as the whole and a fifth of the work. Keys are still
/// compared whole; only verified tokens are ever stored.
#[derive(Debug, Default, Clone)]
pub(super) struct TailHash(std::collections::hash_map::RandomState);

/// Bytes of a key hashed.
const HASHED_TAIL: usize = 48;

pub(super) struct TailHasher(std::collections::hash_map::DefaultHasher);

impl std::hash::BuildHasher for TailHash {
    type Hasher = TailHasher;
    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

impl std::hash::Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0
            .write(&bytes[bytes.len().saturating_sub(HASHED_TAIL)..]);
    }
    fn finish(&self) -> u64 {
        self.0.finish()
    }
}
