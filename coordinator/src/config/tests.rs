//! Unit tests of config validation: the bugs it now catches, one test each.
