//! Password hashes as RabbitMQ stores them (placeholder until the full module lands):
//! base64(salt ‖ SHA-256(salt ‖ password)) with a 4-byte random salt.

use base64::Engine;
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlgorithm {
    Sha256,
}

impl HashAlgorithm {
    pub fn rabbit_name(self) -> &'static str {
        "rabbit_password_hashing_sha256"
    }

    pub fn from_rabbit_name(name: &str) -> Option<HashAlgorithm> {
        (name == "rabbit_password_hashing_sha256").then_some(HashAlgorithm::Sha256)
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    pub algorithm: HashAlgorithm,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasswordHash({})", self.algorithm.rabbit_name())
    }
}

impl PasswordHash {
    pub fn new(password: &str) -> PasswordHash {
        let mut salt = [0u8; 4];
        // SAFETY: getrandom writes at most `salt.len()` bytes into the buffer.
        unsafe {
            libc::getrandom(salt.as_mut_ptr().cast(), salt.len(), 0);
        }
        let mut bytes = salt.to_vec();
        bytes.extend_from_slice(&Sha256::new().chain_update(salt).chain_update(password.as_bytes()).finalize());
        PasswordHash { algorithm: HashAlgorithm::Sha256, bytes }
    }

    pub fn empty() -> PasswordHash {
        PasswordHash { algorithm: HashAlgorithm::Sha256, bytes: Vec::new() }
    }

    pub fn from_base64(algorithm: HashAlgorithm, text: &str) -> Result<PasswordHash, String> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(text).map_err(|error| error.to_string())?;
        Ok(PasswordHash { algorithm, bytes })
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.bytes)
    }

    pub fn verify(&self, password: &[u8]) -> bool {
        if self.bytes.len() < 5 {
            return false;
        }
        let (salt, digest) = self.bytes.split_at(4);
        let computed = Sha256::new().chain_update(salt).chain_update(password).finalize();
        computed.as_slice() == digest
    }
}
