//! Users' password hashes, in RabbitMQ's format, so that a definitions file exported by
//! RabbitMQ logs its users in here and one exported here logs them in on RabbitMQ.
//!
//! RabbitMQ's internal users store `salt ‖ H(salt ‖ password)`: four random salt bytes, then
//! the digest of the salt followed by the password's bytes (UTF-8 as the client sent them). A
//! definitions file carries that in base64 as `password_hash`, and the hash function's module
//! name as `hashing_algorithm` (`rabbit_password:hash/2`, `salted_hash/3`):
//!
//! | `hashing_algorithm` | digest | |
//! |---|---|---|
//! | `rabbit_password_hashing_sha256` | SHA-256, 32 bytes | RabbitMQ's default since 3.6.0, the one new hashes use here |
//! | `rabbit_password_hashing_sha512` | SHA-512, 64 bytes | `password_hashing_module` in rabbitmq.conf |
//! | `rabbit_password_hashing_md5` | MD5, 16 bytes | users created before 3.6.0; salted the same way (checked against RabbitMQ 3.10.8) |
//!
//! An empty hash is a user without a password: RabbitMQ's `clear_password`, or a definitions
//! user with neither `password` nor `password_hash`. Such a user never logs in with a password
//! (it may with another mechanism). RabbitMQ 3.10 also refuses every blank password, whatever
//! the hash, and so does `verify`.
//!
//! Owns: hashing and checking one password. Touches: the kernel's random source for a new
//! salt (getrandom(2)), nothing else. It does not know about users, login or the wire.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use md5::Md5;
use sha2::{Digest, Sha256, Sha512};

/// Bytes of salt in front of every digest (RabbitMQ's `generate_salt/0`: 32 random bits).
pub const SALT_BYTES: usize = 4;

/// A hash function RabbitMQ names in `hashing_algorithm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    Sha256,
    Sha512,
    Md5,
}

impl HashAlgorithm {
    /// What new hashes use: RabbitMQ's default `password_hashing_module`.
    pub const DEFAULT: HashAlgorithm = HashAlgorithm::Sha256;

    /// The algorithm of a RabbitMQ module name (`rabbit_password_hashing_sha256`); None for any
    /// other, such as a plugin's.
    pub fn from_rabbit_name(name: &str) -> Option<HashAlgorithm> {
        match name {
            "rabbit_password_hashing_sha256" => Some(HashAlgorithm::Sha256),
            "rabbit_password_hashing_sha512" => Some(HashAlgorithm::Sha512),
            "rabbit_password_hashing_md5" => Some(HashAlgorithm::Md5),
            _ => None,
        }
    }

    /// The RabbitMQ module name a definitions file carries.
    pub fn rabbit_name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "rabbit_password_hashing_sha256",
            HashAlgorithm::Sha512 => "rabbit_password_hashing_sha512",
            HashAlgorithm::Md5 => "rabbit_password_hashing_md5",
        }
    }

    /// The algorithm RabbitMQ 3.10 assumes for a user without `hashing_algorithm`, from the
    /// file's `rabbitmq_version` (or `rabbit_version`): exports of 3.0–3.5 hashed with MD5,
    /// 3.6.0 with SHA-256, and later ones always name the algorithm, so the node's default
    /// applies (`rabbit_auth_backend_internal:hashing_algorithm/2`).
    pub fn for_unnamed(file_version: Option<&str>) -> HashAlgorithm {
        let md5_versions = ["3.0.", "3.1.", "3.2.", "3.3.", "3.4.", "3.5."];
        match file_version {
            Some(version) if md5_versions.iter().any(|prefix| version.starts_with(prefix)) => HashAlgorithm::Md5,
            _ => HashAlgorithm::DEFAULT,
        }
    }

    /// Bytes of this algorithm's digest.
    pub fn digest_bytes(self) -> usize {
        match self {
            HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha512 => 64,
            HashAlgorithm::Md5 => 16,
        }
    }

    /// H(salt ‖ password).
    fn salted_digest(self, salt: &[u8], password: &[u8]) -> Vec<u8> {
        fn digest<D: Digest>(salt: &[u8], password: &[u8]) -> Vec<u8> {
            let mut hasher = D::new();
            hasher.update(salt);
            hasher.update(password);
            hasher.finalize().to_vec()
        }
        match self {
            HashAlgorithm::Sha256 => digest::<Sha256>(salt, password),
            HashAlgorithm::Sha512 => digest::<Sha512>(salt, password),
            HashAlgorithm::Md5 => digest::<Md5>(salt, password),
        }
    }
}

/// One user's stored password: `salt ‖ digest`, or nothing for a user without a password.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    algorithm: HashAlgorithm,
    /// Empty, or exactly `SALT_BYTES + algorithm.digest_bytes()` bytes.
    bytes: Vec<u8>,
}

/// The kernel's random source could not give a salt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaltError(pub String);

impl fmt::Display for SaltError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot read random bytes for a password salt: {}", self.0)
    }
}

impl PasswordHash {
    /// A new SHA-256 hash of `password` with a random salt, as `rabbitmqctl add_user` makes.
    pub fn new(password: &[u8]) -> Result<PasswordHash, SaltError> {
        Ok(PasswordHash::with_salt(HashAlgorithm::DEFAULT, random_salt()?, password))
    }

    /// The hash of `password` with a given salt (tests, and hashes that must be reproducible).
    pub fn with_salt(algorithm: HashAlgorithm, salt: [u8; SALT_BYTES], password: &[u8]) -> PasswordHash {
        let mut bytes = salt.to_vec();
        bytes.extend_from_slice(&algorithm.salted_digest(&salt, password));
        PasswordHash { algorithm, bytes }
    }

    /// A user without a password: no password logs it in.
    pub fn none() -> PasswordHash {
        PasswordHash { algorithm: HashAlgorithm::DEFAULT, bytes: Vec::new() }
    }

    /// Reads a definitions file's `password_hash`. The empty string is a user without a
    /// password. Anything else must be base64 of a salt and a whole digest of `algorithm`:
    /// RabbitMQ would store a hash of another length and never log the user in with it, so it
    /// is refused here instead.
    pub fn from_base64(algorithm: HashAlgorithm, text: &str) -> Result<PasswordHash, String> {
        if text.is_empty() {
            return Ok(PasswordHash { algorithm, bytes: Vec::new() });
        }
        let bytes = STANDARD.decode(text).map_err(|error| format!("password_hash is not base64: {error}"))?;
        let expected = SALT_BYTES + algorithm.digest_bytes();
        if bytes.len() != expected {
            return Err(format!(
                "password_hash has {} bytes, but a {} hash has {expected} ({SALT_BYTES} of salt and a {}-byte digest)",
                bytes.len(),
                algorithm.rabbit_name(),
                algorithm.digest_bytes()
            ));
        }
        Ok(PasswordHash { algorithm, bytes })
    }

    /// The definitions file's `password_hash`: base64 of `salt ‖ digest`, or "" without a password.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(&self.bytes)
    }

    pub fn algorithm(&self) -> HashAlgorithm {
        self.algorithm
    }

    /// Whether some password can log this user in.
    pub fn has_password(&self) -> bool {
        !self.bytes.is_empty()
    }

    /// Whether `password` is this user's. A blank password is never right (RabbitMQ 3.10's
    /// internal backend refuses it before looking at the hash), nor is any password of a user
    /// without one. The digests are compared in time independent of where they differ.
    pub fn verify(&self, password: &[u8]) -> bool {
        if password.is_empty() || self.bytes.len() <= SALT_BYTES {
            return false;
        }
        let (salt, stored) = self.bytes.split_at(SALT_BYTES);
        let computed = self.algorithm.salted_digest(salt, password);
        stored.len() == computed.len()
            && stored.iter().zip(&computed).fold(0u8, |difference, (a, b)| difference | (a ^ b)) == 0
    }
}

impl fmt::Debug for PasswordHash {
    /// Logs show the algorithm and whether there is a password, never the hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.has_password() { "set" } else { "none" };
        write!(f, "PasswordHash({}, {state})", self.algorithm.rabbit_name())
    }
}

/// Four bytes from getrandom(2), retried when a signal interrupts it.
fn random_salt() -> Result<[u8; SALT_BYTES], SaltError> {
    let mut salt = [0u8; SALT_BYTES];
    loop {
        // SAFETY: getrandom(2) writes at most `salt.len()` bytes into the buffer it is given,
        // which lives for the whole call.
        let read = unsafe { libc::getrandom(salt.as_mut_ptr().cast(), salt.len(), 0) };
        if usize::try_from(read).ok() == Some(SALT_BYTES) {
            return Ok(salt);
        }
        let error = std::io::Error::last_os_error();
        // Requests of up to 256 bytes are never cut short, so anything but a whole salt is an
        // error; only an interrupted call is worth another try.
        if read >= 0 || error.kind() != std::io::ErrorKind::Interrupted {
            let reason = if read >= 0 { format!("short read of {read} bytes") } else { error.to_string() };
            return Err(SaltError(reason));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The salt of the worked example on RabbitMQ's "Credentials and Passwords" page.
    const DOCUMENTED_SALT: [u8; SALT_BYTES] = [0x90, 0x8D, 0xC6, 0x0A];

    #[test]
    fn documented_sha256_example_is_reproduced() {
        // The page hashes "test12" with salt 908DC60A and shows this result.
        let hash = PasswordHash::with_salt(HashAlgorithm::Sha256, DOCUMENTED_SALT, b"test12");
        assert_eq!(hash.to_base64(), "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR");
        assert!(hash.verify(b"test12"));
        assert!(!hash.verify(b"test13"));
    }

    /// `rabbit_password:salted_hash/3` of RabbitMQ 3.10.8 for each module, with the documented
    /// salt and with a non-ASCII password (computed on a throw-away node with `rabbitmqctl eval`).
    #[test]
    fn each_algorithm_matches_rabbitmq_3_10() {
        let vectors: [(HashAlgorithm, [u8; SALT_BYTES], &str, &str); 6] = [
            (HashAlgorithm::Sha256, DOCUMENTED_SALT, "test12", "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"),
            (
                HashAlgorithm::Sha512,
                DOCUMENTED_SALT,
                "test12",
                "kI3GChuNuIYf8lRbCCxZjgjKwsY19ns6+uFO0zcXRBGA/XGJPYD8OWMy7EB8TaOmAzjP2azv84GbINYwX2cDWb4DHnc=",
            ),
            (HashAlgorithm::Md5, DOCUMENTED_SALT, "test12", "kI3GChNpte2FApYFXScl+0dIluk="),
            (HashAlgorithm::Sha256, [1, 2, 3, 4], "pässwörd ✓", "AQIDBFMzTOSi9NasAbmuRjokUDCz/YFO7kQiUV8nBVInUYQI"),
            (
                HashAlgorithm::Sha512,
                [1, 2, 3, 4],
                "pässwörd ✓",
                "AQIDBDx1JTTPc55QR3mQqyozzFC/Qqitxwbdz1uO4rfeQgeS1rPLtB0i3xMczK6m1JvbkYMi/wy73gElWTE33KI0RZ4=",
            ),
            (HashAlgorithm::Md5, [1, 2, 3, 4], "pässwörd ✓", "AQIDBIKozpcGt/49ZzDTXgLWYYE="),
        ];
        for (algorithm, salt, password, expected) in vectors {
            let hash = PasswordHash::with_salt(algorithm, salt, password.as_bytes());
            assert_eq!(hash.to_base64(), expected, "{algorithm:?} {password}");
            let read = PasswordHash::from_base64(algorithm, expected).expect("valid hash");
            assert!(read.verify(password.as_bytes()), "{algorithm:?} {password}");
            assert!(!read.verify(b"test1"), "{algorithm:?}");
        }
    }

    /// Hashes `rabbitmqctl export_definitions` wrote on RabbitMQ 3.10.8 for users created with
    /// `add_user` (SHA-256, the default module) and re-hashed with the other modules.
    #[test]
    fn hashes_exported_by_rabbitmq_log_their_users_in() {
        let exported = [
            (HashAlgorithm::Sha256, "ZBh2DulS5hr2G+KMTwtlPm8xlEpARwO3NuILMXpiuBkv72IS", "guest"),
            (HashAlgorithm::Sha256, "2Yz3buLTqv3eplO+Ua0S8riWNBbwBNbrbGQZyMxPHmXIUWQb", "wonderland-42"),
            (HashAlgorithm::Md5, "xqoYgu6vE4+uptv64CnjTGyJ930=", "old-pass"),
            (
                HashAlgorithm::Sha512,
                "XB8RZoKzabVRhMa3+20wKzernkyOh7MVZx1U9wnip9/fRk/TGG/qeExAOq5Ul685HvF82QP3JbuZXXdGLPFpHWXbWiQ=",
                "c4r0l!",
            ),
        ];
        for (algorithm, text, password) in exported {
            let hash = PasswordHash::from_base64(algorithm, text).expect("exported hash");
            assert!(hash.verify(password.as_bytes()), "{password}");
            assert!(!hash.verify(format!("{password}x").as_bytes()), "{password}");
            assert_eq!(hash.to_base64(), text);
        }
    }

    #[test]
    fn new_hashes_are_salted_sha256_and_verify() {
        let first = PasswordHash::new(b"guest").expect("random salt");
        let second = PasswordHash::new(b"guest").expect("random salt");
        assert_eq!(first.algorithm(), HashAlgorithm::Sha256);
        assert_eq!(first.to_base64().len(), 48, "36 bytes in base64");
        assert!(first.verify(b"guest") && second.verify(b"guest"));
        assert!(!first.verify(b"Guest"));
        // Two salts of 32 random bits are equal once in four billion runs.
        assert_ne!(first, second);
    }

    #[test]
    fn a_user_without_password_and_blank_passwords_never_log_in() {
        let none = PasswordHash::from_base64(HashAlgorithm::Sha256, "").expect("empty is valid");
        assert_eq!(none, PasswordHash::none());
        assert!(!none.has_password());
        assert!(!none.verify(b"") && !none.verify(b"anything"));
        assert_eq!(none.to_base64(), "");
        // RabbitMQ refuses a blank password even when the hash is of the empty string.
        let of_blank = PasswordHash::with_salt(HashAlgorithm::Sha256, DOCUMENTED_SALT, b"");
        assert!(of_blank.has_password() && !of_blank.verify(b""));
    }

    #[test]
    fn malformed_hashes_are_refused_with_the_reason() {
        let not_base64 = PasswordHash::from_base64(HashAlgorithm::Sha256, "not base64!").expect_err("refused");
        assert!(not_base64.starts_with("password_hash is not base64"), "{not_base64}");
        // A SHA-256 hash read as SHA-512 has the wrong length.
        let sha256 = "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR";
        let wrong = PasswordHash::from_base64(HashAlgorithm::Sha512, sha256).expect_err("refused");
        assert_eq!(
            wrong,
            "password_hash has 36 bytes, but a rabbit_password_hashing_sha512 hash has 68 (4 of salt and a 64-byte digest)"
        );
        let salt_only = PasswordHash::from_base64(HashAlgorithm::Md5, "kI3GCg==").expect_err("refused");
        assert!(salt_only.contains("has 4 bytes"), "{salt_only}");
    }

    #[test]
    fn algorithm_names_and_defaults_follow_rabbitmq() {
        for algorithm in [HashAlgorithm::Sha256, HashAlgorithm::Sha512, HashAlgorithm::Md5] {
            assert_eq!(HashAlgorithm::from_rabbit_name(algorithm.rabbit_name()), Some(algorithm));
        }
        assert_eq!(HashAlgorithm::from_rabbit_name("rabbit_password_hashing_bcrypt"), None);
        assert_eq!(HashAlgorithm::for_unnamed(Some("3.5.7")), HashAlgorithm::Md5);
        assert_eq!(HashAlgorithm::for_unnamed(Some("3.6.0")), HashAlgorithm::Sha256);
        assert_eq!(HashAlgorithm::for_unnamed(Some("3.10.8")), HashAlgorithm::Sha256);
        assert_eq!(HashAlgorithm::for_unnamed(None), HashAlgorithm::Sha256);
    }

    #[test]
    fn debug_output_hides_the_hash() {
        let hash = PasswordHash::with_salt(HashAlgorithm::Sha256, DOCUMENTED_SALT, b"test12");
        let shown = format!("{hash:?}");
        assert_eq!(shown, "PasswordHash(rabbit_password_hashing_sha256, set)");
        assert!(!shown.contains("kI3GC"));
    }
}
