//! Writes the Rust code for OpenDuck's `.proto` files into `proto/src/generated/`.
fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = root.join("src/generated");
    std::fs::create_dir_all(&out)?;
    prost_build::Config::new().out_dir(&out).compile_protos(&[root.join("openduck/v1/ticket.proto"), root.join("openduck/v1/hybrid.proto")], &[root])?;
    println!("wrote {}", out.display());
    Ok(())
}
