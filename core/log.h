// One logging facility for the whole daemon.
//
// Lines go to stderr until the daemon chooses a log file (set_log_file).
// Messages say what happened and what to do about it; they never contain
// secrets (passwords, passphrases, keys): callers pass none.
#pragma once

#include <cstdio>

namespace netfs {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
// Takes ownership of `file`; nullptr returns to stderr.
void set_log_file(std::FILE* file);

void log_line(LogLevel level, const char* format, ...) __attribute__((format(printf, 2, 3)));

} // namespace netfs

#define NETFS_LOG(level, ...)                                          \
    do {                                                               \
        if (static_cast<int>(level) >= static_cast<int>(::netfs::log_level())) \
            ::netfs::log_line(level, __VA_ARGS__);                     \
    } while (0)
#define LOG_DEBUG(...) NETFS_LOG(::netfs::LogLevel::debug, __VA_ARGS__)
#define LOG_INFO(...) NETFS_LOG(::netfs::LogLevel::info, __VA_ARGS__)
#define LOG_WARN(...) NETFS_LOG(::netfs::LogLevel::warn, __VA_ARGS__)
#define LOG_ERROR(...) NETFS_LOG(::netfs::LogLevel::error, __VA_ARGS__)
