// Sizes for people: "512 B", "3.4 MiB". Shared by the CLI's status and cache
// commands and netfs-tray; header-only, like runtime_dirs.h, so netfs-tray
// links nothing of the daemon.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace netfs {

inline std::string human_bytes(std::uint64_t bytes) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = double(bytes);
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        ++u;
    }
    char out[32];
    std::snprintf(out, sizeof out, u ? "%.1f %s" : "%.0f %s", v, units[u]);
    return out;
}

} // namespace netfs
