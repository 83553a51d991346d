// Turns the REMOTE a user typed into a backend stack.
//
//   file:///abs/path[?option=value&...]
//
// file:// options, for tests and benchmarks (see README "Simulating a network"):
//   latency_ms=N      added to every operation      (ShapedBackend)
//   bandwidth_mbs=N   cap on data transfer, MB/s    (ShapedBackend)
//   faults=FILE       fault rules read from FILE, re-read when it changes (FaultyBackend)
//   rsize=N, wsize=N, max_in_flight=N   override the remote's limits
//
//   sftp://[user@]host[:port]/path      (core/backend/sftp_backend.h)
//   nfs://host[:port]/export/path       (core/backend/nfs_backend.h)
//
// Options for the network remotes come from the mount's -o list
// (RemoteOptions), never from the URL, so that the URL stays the remote's
// name: the cache of a remote is found by it.
#pragma once

#include "core/backend/backend.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace netfs {

// A remote URL taken apart. Every part is percent-decoded.
struct RemoteUrl {
    std::string scheme;  // "file", "sftp", "nfs"
    std::string user;    // empty: the remote's default (sftp: the local user name)
    std::string host;
    std::uint16_t port = 0;  // 0: the scheme's default
    std::string path;        // absolute, no trailing '/' except the root
    std::map<std::string, std::string> query;  // ?key=value&...
    std::string shown;       // the URL as typed, for messages
};

// False (and `message`, one line) when `url` is not a well-formed remote URL.
bool parse_remote_url(std::string_view url, RemoteUrl& out, std::string& message);

// What a user chooses for a network remote with `netfs mount -o ...`.
struct RemoteOptions {
    // sftp://
    std::string identity;              // -o identity=FILE: a private key file
    bool accept_new_host_key = false;  // -o accept_new_host_key: add an unknown host to known_hosts
    bool password_auth = false;        // -o password_auth: allow password/keyboard-interactive
    std::string known_hosts;           // -o known_hosts=FILE; empty: ~/.ssh/known_hosts
    std::uint32_t connections = 4;     // -o connections=N: SSH connections in the pool
    // nfs://
    std::uint32_t nfs_version = 3;     // -o nfs_version=3|4
    // Both: an operation gets no answer for this long -> the connection is
    // declared down (reconnect) and the operation fails with a transient
    // error the engine retries until `op_timeout`.
    double connect_timeout = 10.0;     // -o connect_timeout=SECONDS
    double op_timeout = 30.0;          // -o timeout=SECONDS: an operation fails with EIO after this
    // Asks the user for a secret (a key's passphrase, a password) on the
    // terminal. Empty, or returning false: nobody can be asked.
    std::function<bool(const std::string& prompt, std::string& answer)> ask_secret;
};

// On failure returns the error and sets `message` to one line that names
// the problem and what to do, e.g.
//   "file:///srv/nope: no such directory (check the path)".
Errc open_remote(std::string_view url, const RemoteOptions& options, std::unique_ptr<Backend>& out,
                 std::string& message);

} // namespace netfs
