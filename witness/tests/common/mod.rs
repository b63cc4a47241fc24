//! Helpers shared by the witness's integration tests that run the real binary.

/// A free loopback TCP port (bound and released, so the binary can take it).
#[allow(dead_code)] // not every test binary uses every helper
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The value of `key = "value"` in `quorate-witness init`'s printed identity block.
pub fn printed(stdout: &str, key: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{key} not printed by init:\n{stdout}"))
        .to_string()
}
