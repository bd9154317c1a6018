//! The node identity: one secp256k1 key is both the DMSG public key and the libp2p `PeerId`.
//!
//! libp2p encodes a secp256k1 public key as a 37-byte protobuf, short enough for the identity
//! multihash, so the `PeerId` *contains* the 33-byte compressed key and the conversion works in
//! both directions without a lookup.
use keys::{PubKey, SecKey};
use libp2p::PeerId;
use libp2p::identity::{self, Keypair};

use crate::error::IdentityError;

/// Multihash code of the identity hash: the digest is the protobuf-encoded public key itself.
const IDENTITY_MULTIHASH: u64 = 0x00;

/// The libp2p keypair for a skymesh secret key (same secp256k1 scalar).
pub fn keypair(sk: &SecKey) -> Result<Keypair, IdentityError> {
    let secret = identity::secp256k1::SecretKey::try_from_bytes(sk.to_bytes())
        .map_err(|_| IdentityError::SecretKey)?;
    Ok(Keypair::from(identity::secp256k1::Keypair::from(secret)))
}

/// The `PeerId` of a skymesh public key.
pub fn peer_id(pk: &PubKey) -> Result<PeerId, IdentityError> {
    let public = identity::secp256k1::PublicKey::try_from_bytes(pk.as_bytes())
        .map_err(|_| IdentityError::PublicKey)?;
    Ok(PeerId::from_public_key(&identity::PublicKey::from(public)))
}

/// The skymesh public key inside a `PeerId`; fails for peers whose key is not secp256k1 (or
/// whose `PeerId` is a hash, e.g. RSA keys).
pub fn pubkey(peer: &PeerId) -> Result<PubKey, IdentityError> {
    let mh = peer.as_ref();
    if mh.code() != IDENTITY_MULTIHASH {
        return Err(IdentityError::NotInline);
    }
    let public = identity::PublicKey::try_decode_protobuf(mh.digest())
        .map_err(|_| IdentityError::NotInline)?;
    let secp = public
        .try_into_secp256k1()
        .map_err(|_| IdentityError::NotSecp256k1)?;
    PubKey::from_bytes(&secp.to_bytes()).map_err(|_| IdentityError::PublicKey)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn peer_id_round_trips_through_pubkey() {
        let sk = SecKey::generate();
        let pk = sk.pubkey();
        let pid = peer_id(&pk).unwrap();
        assert_eq!(pubkey(&pid).unwrap(), pk);
        assert_eq!(keypair(&sk).unwrap().public().to_peer_id(), pid);
    }

    #[test]
    fn ed25519_peer_is_refused() {
        let pid = Keypair::generate_ed25519().public().to_peer_id();
        assert!(matches!(pubkey(&pid), Err(IdentityError::NotSecp256k1)));
    }
}
