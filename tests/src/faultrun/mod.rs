//! The randomized fault run (issue #19): a seeded schedule of faults ([`schedule`]), the record
//! of everything that happened during a run ([`record`]) and the checker of the run's
//! invariants over that record ([`check`]). All three are pure: the lab test
//! `tests/tests/faultrun.rs` does the I/O (applies the faults, polls DNS, reads the API) and
//! hands the record to [`check::check`].

pub mod check;
pub mod record;
pub mod schedule;
