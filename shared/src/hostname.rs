//! DNS host-name syntax, the one check shared by probe specs (`host`, `name`), certificate
//! generation (`tls::self_signed`) and the coordinator's zone and name validation.
//!
//! Pure: no I/O. Lives on its own so that neither `probe` nor `tls` has to import the other.

/// A text that is not a host name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostnameError {
    #[error("must be 1..=253 characters")]
    Length,
    /// One of its labels is empty, too long or has a character other than a letter, a digit,
    /// '-' or '_'; holds the whole name.
    #[error("{0:?} is not a host name (labels of 1..=63 letters, digits, '-' or '_')")]
    Label(String),
}

/// A DNS host name: 1..=253 bytes, labels of 1..=63 letters, digits, '-' or '_'.
pub fn check_hostname(h: &str) -> Result<(), HostnameError> {
    if h.is_empty() || h.len() > 253 {
        return Err(HostnameError::Length);
    }
    for label in h.split('.') {
        if label.is_empty()
            || label.len() > 63
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(HostnameError::Label(h.to_string()));
        }
    }
    Ok(())
}
