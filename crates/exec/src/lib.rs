//! The OCI runtime driver: runc, with BuildKit's container defaults
//!
//! [`build_spec`] turns a [`ContainerRequest`] into config.json as plain values (BuildKit's
//! namespaces, mounts, capabilities, seccomp profile, masked paths); [`resolve_user`] applies
//! BuildKit's `USER` rules against the rootfs; [`Runc`] runs the result and cleans up.

mod error;
mod etc;
mod rootfs;
mod runc;
mod seccomp;
mod spec;
mod user;

pub use error::ExecError;
pub use etc::{DEFAULT_HOSTNAME, hosts_file, resolv_conf};
pub use runc::{ExitStatus, Runc, Stream};
pub use seccomp::{SeccompHost, default_profile};
pub use spec::{
    ContainerRequest, DEFAULT_PATH, ExtraMount, MountKind, Network, SpecHost, build_spec,
    default_caps,
};
pub use user::{ResolvedUser, resolve_user};
