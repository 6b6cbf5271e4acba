// Loader stub for the DuckDB Python package (the DuckDB 2.0.0 build).
//
// Why: the extension is compiled against DuckDB's headers only; DuckDB's C++ symbols have to come
// from the DuckDB already running in the process. Python loads its DuckDB module (_duckdb*.so)
// with RTLD_LOCAL, so those symbols are invisible to anything loaded later, and an extension
// that needs them fails with "undefined symbol". This stub is what DuckDB loads
// (openduck.duckdb_extension). Its entry point
//   1. re-opens the already-loaded DuckDB module with RTLD_NOLOAD | RTLD_GLOBAL, which makes
//      its symbols global (nothing is loaded twice),
//   2. loads the real extension (openduck_impl.so, next to this file), whose undefined DuckDB
//      symbols now resolve against the running DuckDB,
//   3. forwards the call to the real entry point.
// A host that links DuckDB as an ordinary shared library (its symbols are global already) needs
// no promotion: when no Python module is found, the stub goes straight to step 2.
//
// The stub itself uses no DuckDB code, so it needs no DuckDB headers or symbols.

#include <dlfcn.h>
#include <link.h>

#include <cstring>
#include <stdexcept>
#include <string>

#ifndef OPENDUCK_LOADER_IMPL
#define OPENDUCK_LOADER_IMPL "openduck_impl.so"
#endif

namespace duckdb {
class ExtensionLoader;
}

// The entry point DuckDB calls; defined at the end of this file.
extern "C" __attribute__((visibility("default"))) void openduck_duckdb_cpp_init(duckdb::ExtensionLoader &loader);

namespace {

// DuckDB looks up "<file name>_duckdb_cpp_init" (DUCKDB_CPP_EXTENSION_ENTRY) in a C++ extension.
constexpr const char *kEntry = "openduck_duckdb_cpp_init";
using entry_t = void (*)(duckdb::ExtensionLoader &);

std::string dl_error() {
	const char *e = dlerror();
	return e ? e : "unknown error";
}

// The path of the loaded DuckDB Python module (_duckdb*.so), or "" when there is none.
std::string find_duckdb_module() {
	std::string found;
	dl_iterate_phdr(
	    [](struct dl_phdr_info *info, size_t, void *data) -> int {
		    const char *path = info->dlpi_name;
		    if (!path || !*path) {
			    return 0;
		    }
		    const char *slash = std::strrchr(path, '/');
		    const char *base = slash ? slash + 1 : path;
		    if (std::strncmp(base, "_duckdb", 7) == 0 && std::strstr(base, ".so")) {
			    *static_cast<std::string *>(data) = path;
			    return 1;
		    }
		    return 0;
	    },
	    &found);
	return found;
}

// The directory this stub was loaded from, with a trailing slash.
std::string own_directory() {
	Dl_info info;
	if (!dladdr(reinterpret_cast<void *>(&find_duckdb_module), &info) || !info.dli_fname) {
		throw std::runtime_error("openduck loader: cannot find its own file (dladdr failed)");
	}
	std::string path = info.dli_fname;
	auto slash = path.rfind('/');
	return slash == std::string::npos ? std::string("./") : path.substr(0, slash + 1);
}

entry_t load_impl() {
	std::string module = find_duckdb_module();
	if (!module.empty() && !dlopen(module.c_str(), RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL)) {
		throw std::runtime_error("openduck loader: cannot make the symbols of the DuckDB module " + module +
		                         " global: " + dl_error());
	}
	std::string impl = own_directory() + OPENDUCK_LOADER_IMPL;
	// RTLD_LOCAL: the extension's own symbols stay private to it, as for any DuckDB extension.
	void *handle = dlopen(impl.c_str(), RTLD_NOW | RTLD_LOCAL);
	if (!handle) {
		std::string hint = module.empty() ? " (no DuckDB Python module (_duckdb*.so) found in this process; DuckDB's "
		                                    "symbols must be global)"
		                                  : "";
		throw std::runtime_error("openduck loader: cannot load " + impl + ": " + dl_error() + hint);
	}
	// dlsym on the extension's own handle: this stub exports the same name, and a global lookup
	// could find the stub instead.
	auto sym = reinterpret_cast<entry_t>(dlsym(handle, kEntry));
	if (!sym) {
		throw std::runtime_error(std::string("openduck loader: ") + impl + " has no entry point " + kEntry + ": " +
		                         dl_error());
	}
	if (sym == &openduck_duckdb_cpp_init) {
		throw std::runtime_error("openduck loader: " + impl + " is the loader itself, not the extension");
	}
	return sym;
}

} // namespace

extern "C" __attribute__((visibility("default"))) void openduck_duckdb_cpp_init(duckdb::ExtensionLoader &loader) {
	// Once per process (a thread-safe static; a failed attempt is retried on the next LOAD).
	static entry_t entry = load_impl();
	entry(loader);
}
