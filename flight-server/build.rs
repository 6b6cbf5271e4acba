//! Embeds the run-time search path of the prebuilt `libduckdb.so` into every binary and test of
//! this crate, so `openduck` runs without `LD_LIBRARY_PATH`.
fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
