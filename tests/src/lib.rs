//! Test harness shared by Quorate's integration tests.
