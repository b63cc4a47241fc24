//! The witness: answers signed vote requests from trusted coordinators with signed votes.
