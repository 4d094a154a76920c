//! Compiles the vendored .proto files with protox (no system protoc needed).
//! Every map is a BTreeMap so encoding is deterministic, as Go's deterministic marshalling is.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = "proto";
    let files = [
        "github.com/moby/buildkit/solver/pb/ops.proto",
        "github.com/moby/buildkit/api/services/control/control.proto",
    ];
    println!("cargo:rerun-if-changed={root}");
    let fds = protox::compile(files, [root])?;
    tonic_prost_build::configure()
        .btree_map(".")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
