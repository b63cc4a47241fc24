//! TLS helpers: self-signed certificates for witnesses, certificate fingerprints, and rustls
//! client configs (normal validation, or pinned to one certificate's SHA-256).
