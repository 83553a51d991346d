#include "errors.h"

#include <cerrno>

namespace netfs {

namespace {

struct Mapping {
    Errc code;
    int err;
    std::string_view name;
    std::string_view text;
};

// One table serves all three directions, so they cannot drift apart.
constexpr Mapping kMappings[] = {
    {Errc::ok, 0, "ok", "success"},
    {Errc::not_found, ENOENT, "not_found", "no such file or directory"},
    {Errc::exists, EEXIST, "exists", "file exists"},
    {Errc::not_dir, ENOTDIR, "not_dir", "not a directory"},
    {Errc::is_dir, EISDIR, "is_dir", "is a directory"},
    {Errc::not_empty, ENOTEMPTY, "not_empty", "directory not empty"},
    {Errc::access, EACCES, "access", "permission denied"},
    {Errc::perm, EPERM, "perm", "operation not permitted"},
    {Errc::name_too_long, ENAMETOOLONG, "name_too_long", "file name too long"},
    {Errc::no_space, ENOSPC, "no_space", "no space left"},
    {Errc::read_only, EROFS, "read_only", "read-only file system"},
    {Errc::cross_device, EXDEV, "cross_device", "cross-device link"},
    {Errc::too_many_links, EMLINK, "too_many_links", "too many links"},
    {Errc::loop, ELOOP, "loop", "too many levels of symbolic links"},
    {Errc::invalid, EINVAL, "invalid", "invalid argument"},
    {Errc::not_supported, EOPNOTSUPP, "not_supported", "operation not supported by the remote"},
    {Errc::too_big, EFBIG, "too_big", "file too large"},
    {Errc::busy, EBUSY, "busy", "resource busy"},
    {Errc::bad_handle, ESTALE, "bad_handle", "stale remote handle"},
    {Errc::io, EIO, "io", "input/output error"},
    {Errc::again, EAGAIN, "again", "resource temporarily unavailable"},
    {Errc::timed_out, ETIMEDOUT, "timed_out", "timed out"},
    {Errc::unreachable, EHOSTUNREACH, "unreachable", "server unreachable"},
    // After `unreachable`, so that from_errno(EHOSTUNREACH) is that one.
    {Errc::not_sent, EHOSTUNREACH, "not_sent", "server unreachable (the request was not sent)"},
};

} // namespace

int to_errno(Errc e) {
    for (const auto& m : kMappings)
        if (m.code == e)
            return m.err;
    return EIO;
}

Errc from_errno(int err) {
    if (err == EDQUOT)
        return Errc::no_space;
    if (err == ENOTSUP)
        return Errc::not_supported;
    if (err == EWOULDBLOCK)
        return Errc::again;
    for (const auto& m : kMappings)
        if (m.err == err)
            return m.code;
    return Errc::io;
}

std::string_view name(Errc e) {
    for (const auto& m : kMappings)
        if (m.code == e)
            return m.name;
    return "unknown";
}

bool errc_from_name(std::string_view text, Errc& out) {
    for (const auto& m : kMappings)
        if (m.name == text) {
            out = m.code;
            return true;
        }
    return false;
}

std::string_view describe(Errc e) {
    for (const auto& m : kMappings)
        if (m.code == e)
            return m.text;
    return "unknown error";
}

} // namespace netfs
