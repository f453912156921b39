//! The peers an admin added at runtime (`padd`, spec/replication.md §2.2), kept in
//! [`Table::Replicas`] so they survive a restart: one key per peer, `peer:` + the 32 bytes
//! of its fingerprint, whose value is its dial address (UTF-8; empty: not dialed). An origin
//! key begins with `0x02` or `0x03`, so no feed key begins like `peer:`.

use vserv_core::Fingerprint;
use vserv_store::kv::{Op, Store, StoreError, Table};

use super::peers::PeerConfig;

/// The prefix of the runtime peers' keys.
pub(crate) const PEER_PREFIX: &[u8] = b"peer:";

fn key(fingerprint: &Fingerprint) -> Vec<u8> {
    [PEER_PREFIX, fingerprint.0.as_slice()].concat()
}

/// Every stored runtime peer, by fingerprint.
///
/// # Errors
///
/// A store failure, or a stored row that is not a fingerprint and a UTF-8 address
/// ([`StoreError::Backend`]).
pub(crate) fn load(store: &dyn Store) -> Result<Vec<PeerConfig>, StoreError> {
    store
        .scan(Table::Replicas, PEER_PREFIX)?
        .into_iter()
        .map(|(key, value)| {
            let garbled =
                || StoreError::Backend("a stored runtime peer (replicas/peer:) is garbled".into());
            let fingerprint = key
                .get(PEER_PREFIX.len()..)
                .and_then(|fp| <[u8; 32]>::try_from(fp).ok())
                .map(Fingerprint)
                .ok_or_else(garbled)?;
            let address = String::from_utf8(value).map_err(|_| garbled())?;
            Ok(PeerConfig {
                fingerprint,
                address: (!address.is_empty()).then_some(address),
            })
        })
        .collect()
}

/// Stores `peer` (replacing what was stored of it), durably.
pub(crate) fn put(store: &dyn Store, peer: &PeerConfig) -> Result<(), StoreError> {
    store.commit(vec![Op::Put {
        table: Table::Replicas,
        key: key(&peer.fingerprint),
        value: peer.address.clone().unwrap_or_default().into_bytes(),
    }])
}

/// Forgets the stored peer `fingerprint`, durably.
pub(crate) fn delete(store: &dyn Store, fingerprint: &Fingerprint) -> Result<(), StoreError> {
    store.commit(vec![Op::Delete {
        table: Table::Replicas,
        key: key(fingerprint),
    }])
}

#[cfg(test)]
mod tests {
    use vserv_store::MemoryStore;

    use super::*;

    #[test]
    fn peers_are_stored_replaced_and_deleted() {
        let store = MemoryStore::new();
        let a = PeerConfig {
            fingerprint: Fingerprint([1; 32]),
            address: Some("a.example:1".into()),
        };
        let b = PeerConfig {
            fingerprint: Fingerprint([2; 32]),
            address: None,
        };
        put(&store, &a).unwrap();
        put(&store, &b).unwrap();
        assert_eq!(load(&store).unwrap(), vec![a.clone(), b.clone()]);
        let moved = PeerConfig {
            address: Some("a.example:2".into()),
            ..a
        };
        put(&store, &moved).unwrap();
        delete(&store, &b.fingerprint).unwrap();
        assert_eq!(load(&store).unwrap(), vec![moved]);
        store
            .commit(vec![Op::Put {
                table: Table::Replicas,
                key: b"peer:short".to_vec(),
                value: Vec::new(),
            }])
            .unwrap();
        assert!(load(&store).is_err(), "a garbled row is an error");
    }
}
