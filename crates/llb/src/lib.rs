//! The LLB graph in Rust: build vertices, marshal them to a `pb::Definition` whose op digests
//! are BuildKit's, and load any Definition back into a validated graph.

mod builder;
mod load;

pub use builder::{Output, Vertex, marshal, merge_metadata, op_digest};
pub use kiln_proto::pb;
pub use load::{LoadError, LoadedGraph, LoadedOp, load};

/// The platform every op of this host defaults to.
pub fn host_platform() -> pb::Platform {
    pb::Platform {
        architecture: host_arch().into(),
        os: "linux".into(),
        ..Default::default()
    }
}

/// The GOARCH-style name of this machine's architecture.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}
