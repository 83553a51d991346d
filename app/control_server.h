// The control API of a running mount: a Unix socket owned by the user (mode
// 0600) at $XDG_RUNTIME_DIR/netfs/<escaped mount point>.sock, next to the
// daemon's pid file, so that clients (the CLI, the tray) find every mount.
// Messages are JSON objects, one per line, documented in docs/control_api.md.
//
// The daemon has no Qt event loop (its data path is plain C++ threads), so
// the server is one thread of its own that accepts clients, and each client
// gets a thread that reads request lines and writes reply lines. Most
// requests are answered from memory and the cache's metadata; `sync` waits
// for a reintegration pass.
#pragma once

#include <functional>
#include <mutex>
#include <set>
#include <vector>
#include <string>
#include <thread>

namespace netfs {

class ControlServer {
public:
    // Answers one request (a JSON object) with one JSON object; both are
    // single lines of UTF-8.
    using Handler = std::function<std::string(const std::string& request)>;

    ControlServer() = default;
    ~ControlServer();  // stops and removes the socket
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;

    // Binds `path` (replacing a stale socket of a dead daemon) and starts
    // serving. False and `error` when the socket cannot be made.
    bool start(const std::string& path, Handler handler, std::string& error);
    void stop();

private:
    void serve();
    void serve_client(int fd);

    std::string path_;
    Handler handler_;
    int listen_fd_ = -1;
    int wake_fd_[2] = {-1, -1};  // a byte here ends serve()
    std::thread thread_;
    std::mutex clients_mu_;
    std::set<int> client_fds_;
    std::vector<std::pair<int, std::thread>> clients_;  // by descriptor; a finished one is gone from client_fds_
};

// The socket path of the mount at `mountpoint` (absolute, canonical).
std::string control_socket_path(const std::string& mountpoint);

// Sends one request to the daemon at `socket_path` and returns its reply.
// False and `error` when no daemon answers within `timeout_ms`.
bool control_request(const std::string& socket_path, const std::string& request, std::string& reply,
                     std::string& error, int timeout_ms = 5000);

} // namespace netfs
