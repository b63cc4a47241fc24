//! Checking signed checkpoints of the chain head (`store::codec` signs them). The coordinator
//! signs `(seq, head hash, time)` with its ed25519 key (the key that signs vote requests),
//! every `[history] checkpoint_every`, on every DNS change and before retention deletes rows.
//!
//! Same envelope as the protocol (`{"payload": base64, "signature": base64}`), its own domain:
//!
//! ```text
//! signed bytes = "quorate/v1/checkpoint\n" || payload bytes
//! payload      = {"version":1,"coordinator":"<key id>","seq":N,"head":"<hex>","at_ms":T,
//!                 "reason":"periodic"|"dns-change"|"prune"|"shutdown","pruned_before_ms":T|null}
//! ```
//!
//! A checkpoint proves links `1..=seq` as they were when it was signed: deleting or editing
//! any of them, or truncating the tail below `seq`, is detected. Links written after the
//! newest checkpoint are not covered by it: a truncation among them cannot be told from a
//! history that simply stopped there. `pruned_before_ms` (prune checkpoints) says retention
//! deletes prunable rows of links `..=seq` older than that time: their links stay.

use base64::Engine as _;
use ed25519_dalek::Signature;
use shared::protocol::Envelope;

use super::keys::KeySet;
pub use crate::store::codec::{CHECKPOINT_DOMAIN, Checkpoint, StoredCheckpoint};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

impl StoredCheckpoint {
    /// The checkpoint, when its envelope is signed by a coordinator key of `keys`.
    pub fn open(&self, keys: &KeySet) -> Result<Checkpoint, String> {
        let env = Envelope::from_json(self.envelope.as_bytes())
            .map_err(|e| format!("unreadable envelope: {e}"))?;
        let payload = B64
            .decode(&env.payload)
            .map_err(|e| format!("payload is not base64: {e}"))?;
        let sig: [u8; 64] = B64
            .decode(&env.signature)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or("signature is not 64 bytes of base64")?;
        let cp: Checkpoint =
            serde_json::from_slice(&payload).map_err(|e| format!("unreadable payload: {e}"))?;
        let key = keys.coordinator(&cp.coordinator).ok_or_else(|| {
            format!(
                "signed by coordinator key {}, which is not in the keys",
                cp.coordinator
            )
        })?;
        let mut signed = CHECKPOINT_DOMAIN.to_vec();
        signed.extend_from_slice(&payload);
        key.key
            .verify_strict(&signed, &Signature::from_bytes(&sig))
            .map_err(|_| format!("bad signature (coordinator key {})", cp.coordinator))?;
        Ok(cp)
    }
}
