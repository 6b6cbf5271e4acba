//! Compiles the remote-SQL guard (`cpp/guard.cpp`, C++ over DuckDB's headers: the C API cannot
//! inspect a plan) and embeds the run-time search path of the prebuilt `libduckdb.so` into every
//! binary and test of this crate, so `openduck` runs without `LD_LIBRARY_PATH`.
fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    println!("cargo:rerun-if-env-changed=DUCKDB_INCLUDE_DIR");
    println!("cargo:rerun-if-changed=cpp/guard.cpp");
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    let Ok(include) = std::env::var("DUCKDB_INCLUDE_DIR") else {
        panic!("DUCKDB_INCLUDE_DIR is not set: source scripts/env.sh and run scripts/setup.sh (it fetches DuckDB's headers)");
    };
    if !std::path::Path::new(&include).join("duckdb.hpp").exists() {
        panic!("DuckDB's headers are missing from {include}: run scripts/setup.sh");
    }
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .include(&include)
        .define("NDEBUG", None)
        .flag("-fvisibility=hidden")
        .warnings(false)
        .file("cpp/guard.cpp")
        .compile("openduck_guard");
}
