#include "log.h"

#include <atomic>
#include <cstdarg>
#include <ctime>
#include <mutex>

namespace netfs {

namespace {
std::atomic<LogLevel> g_level{LogLevel::info};
std::mutex g_mutex;
std::FILE* g_file = nullptr;  // nullptr: stderr

const char* level_name(LogLevel level) {
    switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warning";
    case LogLevel::error: return "error";
    }
    return "?";
}
} // namespace

void set_log_level(LogLevel level) { g_level = level; }
LogLevel log_level() { return g_level; }

void set_log_file(std::FILE* file) {
    std::lock_guard lock(g_mutex);
    if (g_file)
        std::fclose(g_file);
    g_file = file;
}

void log_line(LogLevel level, const char* format, ...) {
    char message[2048];
    va_list args;
    va_start(args, format);
    std::vsnprintf(message, sizeof message, format, args);
    va_end(args);

    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    tm local{};
    localtime_r(&now.tv_sec, &local);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &local);

    std::lock_guard lock(g_mutex);
    std::FILE* out = g_file ? g_file : stderr;
    std::fprintf(out, "%s.%03ld netfs %s: %s\n", stamp, now.tv_nsec / 1000000, level_name(level), message);
    std::fflush(out);
}

} // namespace netfs
