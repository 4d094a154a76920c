//! Frontends: dockerfile.v0 (built in)
