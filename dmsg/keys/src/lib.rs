//! secp256k1 keys, signatures and ECDH exactly as the DMSG network uses them.
//!
//! This is the bottom crate of skymesh: DMSG sessions (Noise DH), DMSG stream objects and
//! discovery entries, and DHT items are all signed and verified with the functions here, so
//! there is exactly one place where a signature is accepted or refused.
//!
//! Based on skycoin/dmsg `cipher` (skywire-utilities over skycoin `src/cipher`), see
//! `spec/dmsg-wire.md` §1:
//!
//! - [`PubKey`]: 33-byte SEC1 compressed point, validated on parse; text form is lowercase hex.
//! - [`SecKey`]: 32-byte big-endian scalar in `[1, n-1]`.
//! - [`Sig`]: 65 bytes `r ‖ s ‖ recid` over `SHA256(payload)`.
//! - Verification is *recover-then-compare*: the key recovered from `(digest, sig)` must equal the
//!   expected key, `recid < 4`, the top bit of `s` clear, and plain ECDSA must verify. So a
//!   signature with a wrong recovery id, or the high-S twin of a valid one, is refused, exactly as
//!   the reference refuses it.
//! - [`SecKey::ecdh`]: `SHA256(compressed(sk·PK))`, the reference `cipher.ECDH`.
//!
//! Deviation (stricter/safer, same wire): our signer uses RFC 6979 deterministic nonces via
//! libsecp256k1 instead of the reference's random nonces; verifiers cannot tell the difference.
#![deny(missing_docs)]

use std::fmt;
use std::str::FromStr;

use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
use secp256k1::{Message, Scalar};
use sha2::{Digest, Sha256};

/// Length of a compressed public key.
pub const PUBKEY_LEN: usize = 33;
/// Length of a secret key.
pub const SECKEY_LEN: usize = 32;
/// Length of a recoverable signature (`r ‖ s ‖ recid`).
pub const SIG_LEN: usize = 65;

/// Why a key or signature could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text is not hexadecimal.
    #[error("invalid hex")]
    Hex,
    /// The byte string has the wrong length.
    #[error("wrong length: expected {expected} bytes, got {got}")]
    Length {
        /// Required length in bytes.
        expected: usize,
        /// Length that was given.
        got: usize,
    },
    /// The bytes are not a valid compressed secp256k1 point (or are the null key where a real
    /// key is required).
    #[error("not a valid compressed secp256k1 public key")]
    InvalidPoint,
    /// The scalar is zero or not below the curve order.
    #[error("secret key out of range")]
    InvalidScalar,
}

/// Why a signature was refused. The variants mirror the order of the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigError {
    /// The recovery id byte is not 0..=3.
    #[error("invalid recovery id")]
    RecoveryId,
    /// The top bit of `s` is set (the reference rejects such signatures before anything else).
    #[error("signature s has its top bit set")]
    HighBit,
    /// No public key can be recovered from the signature and digest.
    #[error("no public key recoverable from signature")]
    Recovery,
    /// The recovered key differs from the expected signer.
    #[error("recovered public key does not match the signer")]
    KeyMismatch,
    /// The (r, s) pair does not verify (high-S twins end here).
    #[error("signature does not verify")]
    Invalid,
    /// The signed digest is all zero, which the reference refuses to sign or verify.
    #[error("all-zero digest")]
    ZeroDigest,
}

fn decode_hex_fixed<const N: usize>(s: &str) -> Result<[u8; N], KeyError> {
    if s.len() != N * 2 {
        return Err(KeyError::Length {
            expected: N,
            got: s.len() / 2,
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| KeyError::Hex)?;
    Ok(out)
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

// ---------------------------------------------------------------------------------------------
// PubKey

/// A compressed secp256k1 public key (33 bytes). Always a valid curve point, except
/// [`PubKey::NULL`], the reference's "absent" key (33 zero bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PubKey([u8; PUBKEY_LEN]);

impl PubKey {
    /// The null key: 33 zero bytes. Its text form is 66 zeros. It never verifies anything.
    pub const NULL: PubKey = PubKey([0u8; PUBKEY_LEN]);

    /// Parses and validates a compressed point. The null key is refused; use
    /// [`PubKey::from_bytes_or_null`] where the reference allows it.
    pub fn from_bytes(b: &[u8]) -> Result<PubKey, KeyError> {
        let arr: [u8; PUBKEY_LEN] = b.try_into().map_err(|_| KeyError::Length {
            expected: PUBKEY_LEN,
            got: b.len(),
        })?;
        secp256k1::PublicKey::from_byte_array_compressed(arr)
            .map_err(|_| KeyError::InvalidPoint)?;
        Ok(PubKey(arr))
    }

    /// Takes 33 bytes as a key *without* checking that they are a point on the curve (the check
    /// costs a field square root, ~4 µs). Only for a key whose signature is checked next by
    /// [`PubKey::verify`]: that check recovers the signer's key and compares bytes, so bytes
    /// that are not a valid point never verify anything, and a key that verified something is
    /// a valid point. Anything else (ECDH, dialling) must use [`PubKey::from_bytes`].
    pub fn from_array_unvalidated(arr: [u8; PUBKEY_LEN]) -> PubKey {
        PubKey(arr)
    }

    /// Like [`PubKey::from_bytes`] but maps 33 zero bytes to [`PubKey::NULL`].
    pub fn from_bytes_or_null(b: &[u8]) -> Result<PubKey, KeyError> {
        if b.len() == PUBKEY_LEN && b.iter().all(|&x| x == 0) {
            return Ok(PubKey::NULL);
        }
        PubKey::from_bytes(b)
    }

    /// Parses the hex text form (case-insensitive). The null key is refused.
    pub fn from_hex(s: &str) -> Result<PubKey, KeyError> {
        let arr = decode_hex_fixed::<PUBKEY_LEN>(s)?;
        PubKey::from_bytes(&arr)
    }

    /// Parses the hex text form as the reference's `UnmarshalText` does: any string made only of
    /// `0` characters (even `"0"`) is the null key.
    pub fn from_hex_or_null(s: &str) -> Result<PubKey, KeyError> {
        if !s.is_empty() && s.bytes().all(|c| c == b'0') {
            return Ok(PubKey::NULL);
        }
        PubKey::from_hex(s)
    }

    /// The 33 raw bytes.
    pub fn as_bytes(&self) -> &[u8; PUBKEY_LEN] {
        &self.0
    }

    /// Lowercase hex (66 characters).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Whether this is the null key.
    pub fn is_null(&self) -> bool {
        self.0 == [0u8; PUBKEY_LEN]
    }

    fn point(&self) -> Result<secp256k1::PublicKey, KeyError> {
        secp256k1::PublicKey::from_byte_array_compressed(self.0).map_err(|_| KeyError::InvalidPoint)
    }

    /// Verifies `sig` over `SHA256(payload)` with the reference's rules.
    pub fn verify(&self, payload: &[u8], sig: &Sig) -> Result<(), SigError> {
        self.verify_hash(&sha256(payload), sig)
    }

    /// Verifies `sig` over a 32-byte digest with the reference's rules (recover-then-compare).
    ///
    /// One curve operation (the recovery), not two: if the key recovered from `(r, s, recid)`
    /// is this key `Q`, then `Q = r⁻¹(s·R − e·G)`, i.e. `R = s⁻¹(e·G + r·Q)` with `x(R) ≡ r`,
    /// which is exactly what an ECDSA verification computes and checks. A separate verification
    /// could therefore only add its low-S rule (`s ≤ n/2`, which libsecp256k1's verify and the
    /// reference enforce), and that rule is checked directly on the scalar. The accepted set
    /// is the same as recover + compare + full verify (`tests::verify_equals_recover_and_verify`).
    pub fn verify_hash(&self, digest: &[u8; 32], sig: &Sig) -> Result<(), SigError> {
        let recovered = sig.recover_hash(digest)?;
        if recovered != *self {
            return Err(SigError::KeyMismatch);
        }
        if !sig.is_low_s() {
            return Err(SigError::Invalid);
        }
        Ok(())
    }
}

impl fmt::Display for PubKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PubKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PubKey({})", self.to_hex())
    }
}

impl FromStr for PubKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PubKey::from_hex(s)
    }
}

impl serde::Serialize for PubKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for PubKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        PubKey::from_hex_or_null(&s).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// SecKey

/// A secp256k1 secret key and its public key (computed once: a multiplication by G costs
/// about as much as a signature, and handshakes and signers ask for it every time). Its `Debug`
/// form never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SecKey {
    sk: secp256k1::SecretKey,
    pk: PubKey,
}

impl SecKey {
    /// Parses a 32-byte big-endian scalar in `[1, n-1]`.
    pub fn from_bytes(b: &[u8]) -> Result<SecKey, KeyError> {
        let arr: [u8; SECKEY_LEN] = b.try_into().map_err(|_| KeyError::Length {
            expected: SECKEY_LEN,
            got: b.len(),
        })?;
        secp256k1::SecretKey::from_secret_bytes(arr)
            .map(SecKey::from_secret)
            .map_err(|_| KeyError::InvalidScalar)
    }

    /// Parses the hex text form (64 characters).
    pub fn from_hex(s: &str) -> Result<SecKey, KeyError> {
        let arr = decode_hex_fixed::<SECKEY_LEN>(s.trim())?;
        SecKey::from_bytes(&arr)
    }

    fn from_secret(sk: secp256k1::SecretKey) -> SecKey {
        SecKey {
            pk: PubKey(sk.public_key().serialize()),
            sk,
        }
    }

    /// A fresh random key from the operating system's RNG.
    pub fn generate() -> SecKey {
        SecKey::from_secret(secp256k1::SecretKey::new(&mut secp256k1::rand::rng()))
    }

    /// The key pair skycoin's `cipher.GenerateDeterministicKeyPair(seed)` derives (the same
    /// seed gives the same keys as the Go tools).
    pub fn from_seed(seed: &[u8]) -> SecKey {
        SeedDerivation::new(seed).sk
    }

    /// The 32 secret bytes.
    pub fn to_bytes(&self) -> [u8; SECKEY_LEN] {
        self.sk.to_secret_bytes()
    }

    /// Lowercase hex (64 characters).
    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }

    /// The matching public key (computed when the key was made).
    pub fn pubkey(&self) -> PubKey {
        self.pk
    }

    /// Signs `SHA256(payload)`.
    pub fn sign(&self, payload: &[u8]) -> Sig {
        // SHA256 output is never all-zero in practice; the check below covers the theory.
        self.sign_hash(&sha256(payload))
            .unwrap_or(Sig([0u8; SIG_LEN]))
    }

    /// Signs a 32-byte digest as-is (low-S, recid 0..3). An all-zero digest is refused as the
    /// reference refuses it.
    pub fn sign_hash(&self, digest: &[u8; 32]) -> Result<Sig, SigError> {
        if digest == &[0u8; 32] {
            return Err(SigError::ZeroDigest);
        }
        let rs =
            RecoverableSignature::sign_ecdsa_recoverable(Message::from_digest(*digest), &self.sk);
        let (recid, compact) = rs.serialize_compact();
        let mut out = [0u8; SIG_LEN];
        out[..64].copy_from_slice(&compact);
        out[64] = u8::from(recid);
        Ok(Sig(out))
    }

    /// `cipher.ECDH`: SHA256 of the compressed shared point `sk·pk`.
    pub fn ecdh(&self, pk: &PubKey) -> Result<[u8; 32], KeyError> {
        let point = pk.point()?;
        Ok(secp256k1::ecdh::SharedSecret::new(&point, &self.sk).to_secret_bytes())
    }
}

/// The steps of skycoin's deterministic key generator, exposed so tests can compare each one with
/// the reference's intermediates.
#[derive(Debug)]
pub struct SeedDerivation {
    /// SHA256(seed).
    pub h: [u8; 32],
    /// a = SHA256(h) as a scalar (re-hashed while out of range).
    pub inner_sk: [u8; 32],
    /// B = pubkey(SHA256(SHA256(h))).
    pub inner_pk: [u8; 33],
    /// E = compressed(a·B).
    pub inner_ecdh_point: [u8; 33],
    /// seed1 = SHA256(h ‖ E).
    pub seed1: [u8; 32],
    /// seed2 = SHA256(seed ‖ seed1).
    pub seed2: [u8; 32],
    sk: SecKey,
}

impl SeedDerivation {
    /// Runs the generator on `seed`.
    pub fn new(seed: &[u8]) -> SeedDerivation {
        let h = sha256(seed);
        let a = scalar_from_hash(sha256(&h));
        let inner_b = scalar_from_hash(sha256(&sha256(&h))).public_key();
        let tweak = Scalar::from_be_bytes(a.to_secret_bytes()).unwrap_or(Scalar::ONE);
        // a and B are valid and n is prime, so a·B is a valid point.
        let e = inner_b
            .mul_tweak(&tweak)
            .map(|p| p.serialize())
            .unwrap_or([0u8; 33]);
        let mut buf = Vec::with_capacity(32 + 33);
        buf.extend_from_slice(&h);
        buf.extend_from_slice(&e);
        let seed1 = sha256(&buf);
        let mut buf2 = Vec::with_capacity(seed.len() + 32);
        buf2.extend_from_slice(seed);
        buf2.extend_from_slice(&seed1);
        let seed2 = sha256(&buf2);
        SeedDerivation {
            h,
            inner_sk: a.to_secret_bytes(),
            inner_pk: inner_b.serialize(),
            inner_ecdh_point: e,
            seed1,
            seed2,
            sk: SecKey::from_secret(scalar_from_hash(sha256(&seed2))),
        }
    }

    /// The derived secret key.
    pub fn secret_key(&self) -> &SecKey {
        &self.sk
    }
}

fn scalar_from_hash(mut h: [u8; 32]) -> secp256k1::SecretKey {
    loop {
        if let Ok(k) = secp256k1::SecretKey::from_secret_bytes(h) {
            return k;
        }
        h = sha256(&h);
    }
}

impl fmt::Debug for SecKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecKey(pk={})", self.pubkey())
    }
}

impl FromStr for SecKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SecKey::from_hex(s)
    }
}

// ---------------------------------------------------------------------------------------------
// Sig

/// A 65-byte recoverable signature: `r (32, BE) ‖ s (32, BE) ‖ recid (0..3)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sig([u8; SIG_LEN]);

impl Sig {
    /// Wraps 65 bytes. Nothing is checked until verification.
    pub fn from_bytes(b: &[u8]) -> Result<Sig, KeyError> {
        let arr: [u8; SIG_LEN] = b.try_into().map_err(|_| KeyError::Length {
            expected: SIG_LEN,
            got: b.len(),
        })?;
        Ok(Sig(arr))
    }

    /// Parses the hex text form (130 characters, case-insensitive).
    pub fn from_hex(s: &str) -> Result<Sig, KeyError> {
        decode_hex_fixed::<SIG_LEN>(s).map(Sig)
    }

    /// The 65 raw bytes.
    pub fn as_bytes(&self) -> &[u8; SIG_LEN] {
        &self.0
    }

    /// Lowercase hex (130 characters).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Whether `s` is at most n/2 (the low-S rule of ECDSA verification; the reference and
    /// libsecp256k1 refuse the high-S twin). An unparsable `(r, s)` is not low-S.
    fn is_low_s(&self) -> bool {
        match secp256k1::ecdsa::Signature::from_compact(&self.0[..64]) {
            Ok(sig) => {
                let mut low = sig;
                low.normalize_s();
                low == sig
            }
            Err(_) => false,
        }
    }

    /// Recovers the signer of a digest, applying the reference's pre-checks (recid < 4, top bit
    /// of `s` clear). Recovery alone is not verification: use [`PubKey::verify_hash`].
    pub fn recover_hash(&self, digest: &[u8; 32]) -> Result<PubKey, SigError> {
        if digest == &[0u8; 32] {
            return Err(SigError::ZeroDigest);
        }
        if self.0[64] >= 4 {
            return Err(SigError::RecoveryId);
        }
        if self.0[32] & 0x80 != 0 {
            return Err(SigError::HighBit);
        }
        let recid =
            RecoveryId::try_from(i32::from(self.0[64])).map_err(|_| SigError::RecoveryId)?;
        let rs = RecoverableSignature::from_compact(&self.0[..64], recid)
            .map_err(|_| SigError::Recovery)?;
        let pk = rs
            .recover_ecdsa(Message::from_digest(*digest))
            .map_err(|_| SigError::Recovery)?;
        Ok(PubKey(pk.serialize()))
    }
}

impl fmt::Display for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sig({})", self.to_hex())
    }
}

impl FromStr for Sig {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sig::from_hex(s)
    }
}

impl serde::Serialize for Sig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Sig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Sig::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_roundtrip_and_tamper() {
        let sk = SecKey::from_seed(b"unit");
        let pk = sk.pubkey();
        let sig = sk.sign(b"hello");
        pk.verify(b"hello", &sig).unwrap();
        assert_eq!(pk.verify(b"hellp", &sig), Err(SigError::KeyMismatch));
        let mut b = *sig.as_bytes();
        b[64] ^= 1;
        assert!(pk.verify(b"hello", &Sig(b)).is_err());
        b[64] = 4;
        assert_eq!(pk.verify(b"hello", &Sig(b)), Err(SigError::RecoveryId));
    }

    /// The verification before the one-operation rule: recover, compare, then a full ECDSA
    /// verification by libsecp256k1.
    fn verify_recover_and_verify(
        pk: &PubKey,
        digest: &[u8; 32],
        sig: &Sig,
    ) -> Result<(), SigError> {
        let recovered = sig.recover_hash(digest)?;
        if recovered != *pk {
            return Err(SigError::KeyMismatch);
        }
        let point = pk.point().map_err(|_| SigError::KeyMismatch)?;
        let std_sig = secp256k1::ecdsa::Signature::from_compact(&sig.0[..64])
            .map_err(|_| SigError::Invalid)?;
        std_sig
            .verify(Message::from_digest(*digest), &point)
            .map_err(|_| SigError::Invalid)
    }

    #[test]
    fn high_s_with_top_bit_clear_is_refused() {
        // s in (n/2, 2^255): the top-bit pre-check passes, recovery gives some key Q, and only
        // the low-S rule refuses it — for both verification paths.
        let digest = sha256(b"high s");
        let mut raw = [0u8; SIG_LEN];
        // r = x(G)
        raw[..32].copy_from_slice(
            &hex::decode("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
                .unwrap(),
        );
        // s = 0x7fff…ff, above n/2 = 0x7fff…ff5d576e73… and below 2^255
        raw[32] = 0x7f;
        raw[33..64].fill(0xff);
        let sig = Sig(raw);
        let q = sig.recover_hash(&digest).unwrap();
        assert_eq!(q.verify_hash(&digest, &sig), Err(SigError::Invalid));
        assert_eq!(
            verify_recover_and_verify(&q, &digest, &sig),
            Err(SigError::Invalid)
        );
    }

    #[test]
    fn null_key_text() {
        assert_eq!(PubKey::from_hex_or_null("0").unwrap(), PubKey::NULL);
        assert!(PubKey::from_hex(&"0".repeat(66)).is_err());
        assert_eq!(
            PubKey::from_hex_or_null(&"0".repeat(66)).unwrap(),
            PubKey::NULL
        );
    }

    #[test]
    fn bad_lengths_are_typed_errors() {
        assert!(matches!(
            PubKey::from_bytes(&[2u8; 32]),
            Err(KeyError::Length {
                expected: 33,
                got: 32
            })
        ));
        assert_eq!(SecKey::from_bytes(&[0u8; 32]), Err(KeyError::InvalidScalar));
        assert_eq!(
            SecKey::from_bytes(&[0xffu8; 32]),
            Err(KeyError::InvalidScalar)
        );
        assert_eq!(
            PubKey::from_hex("zz"),
            Err(KeyError::Length {
                expected: 33,
                got: 1
            })
        );
    }

    mod proptests {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_payload_signs_and_verifies(seed in any::<Vec<u8>>(), msg in any::<Vec<u8>>()) {
                let sk = SecKey::from_seed(&seed);
                let sig = sk.sign(&msg);
                prop_assert!(sig.as_bytes()[64] < 4);
                prop_assert_eq!(sig.as_bytes()[32] & 0x80, 0);
                prop_assert!(sk.pubkey().verify(&msg, &sig).is_ok());
            }

            #[test]
            fn verify_equals_recover_and_verify(
                seed in any::<Vec<u8>>(),
                msg in any::<Vec<u8>>(),
                flip in 0usize..66,
                bit in 0u8..8,
                other in any::<bool>(),
            ) {
                let sk = SecKey::from_seed(&seed);
                let digest = sha256(&msg);
                let mut b = *sk.sign_hash(&digest).unwrap().as_bytes();
                // flip == 65: the signature as made; otherwise one bit flipped
                if flip < SIG_LEN {
                    b[flip] ^= 1 << bit;
                }
                let sig = Sig(b);
                let pk = if other { SecKey::from_seed(&msg).pubkey() } else { sk.pubkey() };
                prop_assert_eq!(
                    pk.verify_hash(&digest, &sig),
                    super::verify_recover_and_verify(&pk, &digest, &sig)
                );
            }

            #[test]
            fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..80), d in any::<[u8; 32]>()) {
                let _ = PubKey::from_bytes(&b);
                if let Ok(sig) = Sig::from_bytes(&b) {
                    let _ = sig.recover_hash(&d);
                }
            }

            #[test]
            fn ecdh_is_symmetric(a in any::<Vec<u8>>(), b in any::<Vec<u8>>()) {
                let ka = SecKey::from_seed(&a);
                let kb = SecKey::from_seed(&b);
                prop_assert_eq!(ka.ecdh(&kb.pubkey()).unwrap(), kb.ecdh(&ka.pubkey()).unwrap());
            }
        }
    }
}
