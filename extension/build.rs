//! Test binaries of this crate link the server (and so the prebuilt `libduckdb.so`); embed the
//! library's run-time search path as the server's build script does.
fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{dir}");
    }
}
