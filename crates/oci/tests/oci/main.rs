//! Integration tests for kiln-oci. They need root (mknod, chown, trusted.* xattrs).

mod apply_semantics;
mod archive;
mod hostile;
mod roundtrip;
mod util;
