// The desktop keyring (Secret Service, KWallet...) through QtKeychain: where
// a cache's secret lives by default.
//
// QtKeychain needs a Qt event loop and a D-Bus connection, which a mount
// must not have before it forks its daemon (threads do not survive fork).
// So each request runs in a short-lived child process that owns both and
// hands the secret back through a pipe; the caller stays single-threaded.
#pragma once

#include <string>

namespace netfs {

enum class KeyringOutcome {
    found,        // the secret was in the keyring
    created,      // there was none: a new random one was stored and is returned
    missing,      // there was none, and `create` was false
    unavailable,  // no keyring answers here (no session bus, no service, timeout)
    failed,       // the keyring answered with an error: `message` says which
};

// The secret stored under `name` for netfs, created (32 random bytes) when
// absent and `create`. Waits at most `timeout_ms` for the keyring.
KeyringOutcome keyring_secret(const std::string& name, bool create, std::string& secret, std::string& message,
                              int timeout_ms = 10000);

// Removes the secret stored under `name` (for tests and `cache clear`).
bool keyring_forget(const std::string& name);

} // namespace netfs
