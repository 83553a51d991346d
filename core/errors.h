// The one error type of the data path.
//
// Backends return an Errc from a small closed set; the engine passes it on
// or acts on it (retries a transient one); the FUSE adapter turns it into an
// errno in exactly one place (errno_for_program, through to_errno). Nothing
// else in the code base maps errors.
#pragma once

#include <cstdint>
#include <string_view>

namespace netfs {

enum class Errc : std::uint8_t {
    ok = 0,
    not_found,      // ENOENT
    exists,         // EEXIST
    not_dir,        // ENOTDIR
    is_dir,         // EISDIR
    not_empty,      // ENOTEMPTY
    access,         // EACCES: permission bits say no
    perm,           // EPERM: operation not permitted (ownership, sticky bit)
    name_too_long,  // ENAMETOOLONG
    no_space,       // ENOSPC
    read_only,      // EROFS
    cross_device,   // EXDEV
    too_many_links, // EMLINK
    loop,           // ELOOP
    invalid,        // EINVAL
    not_supported,  // EOPNOTSUPP: the remote cannot store this
    too_big,        // EFBIG
    busy,           // EBUSY
    bad_handle,     // ESTALE: the remote object went away under an open handle
    io,             // EIO: anything the remote reported that fits nothing else

    // Transient: the engine retries these with back-off before giving up;
    // what is left reaches programs as EIO (the errno here is for logs and
    // for the file:// remote's mapping).
    again,          // EAGAIN: try again (server busy, short of resources)
    timed_out,      // ETIMEDOUT: no answer within the configured time
    unreachable,    // EHOSTUNREACH: the connection to the server is down
    // EHOSTUNREACH too, and more: the connection was down before the request
    // left, so the server never saw it. Only this lets the engine ask again
    // for a request that is not idempotent (a create, mkdir, rename...): one
    // lost in flight (`unreachable`) may have been carried out.
    not_sent,
};

// True for the errors that a later attempt may not repeat.
constexpr bool is_transient(Errc e) {
    return e == Errc::again || e == Errc::timed_out || e == Errc::unreachable || e == Errc::not_sent;
}

// True when the connection to the server is down (whether or not the
// request was sent).
constexpr bool is_connection_down(Errc e) { return e == Errc::unreachable || e == Errc::not_sent; }

// The errno for e (0 for ok). Programs see it, but for a transient error,
// which reaches them as EIO (app/fuse_adapter.cpp errno_for_program).
int to_errno(Errc e);

// The Errc for an errno reported by a local system call (file:// remote).
Errc from_errno(int err);

// A short lower-case description, for logs and one-line messages.
std::string_view describe(Errc e);

// The identifier ("not_found", "io"...), and back: for fault rules and tests.
std::string_view name(Errc e);
bool errc_from_name(std::string_view name, Errc& out);

} // namespace netfs
