//! Frontends turn a build description into LLB. `dockerfile.v0` is built in; it reads the
//! Dockerfile and ignore file from the client's directories and converts them.

pub mod dockerfile;

pub use dockerfile::{DockerfileInputs, FrontendError, build_dockerfile};
