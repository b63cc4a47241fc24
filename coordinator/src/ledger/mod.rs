//! The auditable history, as pure functions: which public keys verify it (`keys`), what one
//! stored round must satisfy (`check`). No SQL, no clock, no network: `audit` reads the
//! store and hands the rows here, and anyone holding the public keys can run the same checks.

pub mod chain;
pub mod check;
pub mod checkpoint;
pub mod incident;
pub mod keys;
pub mod replay;

/// Signed sample rounds for tests and `quorate-bench-history`; not part of the API.
#[doc(hidden)]
pub mod fixtures;

pub use check::{RoundCheck, VoteStatus, check_round, check_spell, check_vote};
pub use keys::{KeySet, PublicKey};
