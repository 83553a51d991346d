#include "app/control_server.h"

#include "app/mount_command.h"
#include "core/log.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace netfs {

namespace {

constexpr std::size_t kMaxRequest = 64 << 10;

bool make_address(const std::string& path, sockaddr_un& addr, std::string& error) {
    addr = {};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) {
        error = "socket path too long: " + path;
        return false;
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return true;
}

// Reads up to a newline within the deadline; false on timeout, EOF or overflow.
bool read_line(int fd, std::string& line, int timeout_ms) {
    line.clear();
    char c;
    while (line.size() < kMaxRequest) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, timeout_ms) <= 0)
            return false;
        const ssize_t n = ::read(fd, &c, 1);
        if (n <= 0)
            return false;
        if (c == '\n')
            return true;
        line += c;
    }
    return false;
}

bool write_all(int fd, const std::string& text) {
    for (std::size_t off = 0; off < text.size();) {
        const ssize_t n = ::send(fd, text.data() + off, text.size() - off, MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        off += std::size_t(n);
    }
    return true;
}

} // namespace

std::string control_socket_path(const std::string& mountpoint) {
    return runtime_dir() + "/" + escape_path(mountpoint) + ".sock";
}

ControlServer::~ControlServer() { stop(); }

bool ControlServer::start(const std::string& path, Handler handler, std::string& error) {
    sockaddr_un addr;
    if (!make_address(path, addr, error))
        return false;
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0 || ::pipe2(wake_fd_, O_CLOEXEC) != 0) {
        error = std::string("cannot create the control socket: ") + std::strerror(errno);
        return false;
    }
    // A socket left by a daemon that died: nobody answers on it any more.
    std::string ignored, probe_error;
    if (::access(path.c_str(), F_OK) == 0 && !control_request(path, "{\"op\":\"ping\"}", ignored, probe_error, 500))
        ::unlink(path.c_str());
    // Created 0600 from the start: no moment where others could connect.
    const mode_t old = ::umask(0177);
    const int bound = ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::umask(old);
    if (bound != 0 || ::listen(listen_fd_, 16) != 0) {
        error = "cannot listen on " + path + ": " + std::strerror(errno);
        return false;
    }
    path_ = path;
    handler_ = std::move(handler);
    thread_ = std::thread([this] { serve(); });
    return true;
}

void ControlServer::stop() {
    if (thread_.joinable()) {
        (void)!::write(wake_fd_[1], "x", 1);
        thread_.join();
    }
    // Clients still connected: their next read fails, their threads end.
    std::vector<std::pair<int, std::thread>> clients;
    {
        std::lock_guard lock(clients_mu_);
        for (int fd : client_fds_)
            ::shutdown(fd, SHUT_RDWR);
        clients.swap(clients_);
    }
    for (auto& [fd, t] : clients)
        t.join();
    if (!path_.empty())
        ::unlink(path_.c_str());
    path_.clear();
    for (int* fd : {&listen_fd_, &wake_fd_[0], &wake_fd_[1]})
        if (*fd >= 0) {
            ::close(*fd);
            *fd = -1;
        }
}

void ControlServer::serve() {
    for (;;) {
        pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_[0], POLLIN, 0}};
        if (::poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            LOG_ERROR("control socket: poll failed: %s", std::strerror(errno));
            return;
        }
        if (p[1].revents)
            return;
        const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0)
            continue;
        // Only the user who owns the mount: the socket's mode says so too,
        // the peer's credentials make sure.
        ucred peer{};
        socklen_t len = sizeof peer;
        if (::getsockopt(client, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0 ||
            (peer.uid != ::geteuid() && peer.uid != 0)) {
            ::close(client);
            continue;
        }
        // Each client has a thread: a long request (sync waits for the end of
        // reintegration) never holds up status for the others.
        std::lock_guard lock(clients_mu_);
        for (auto it = clients_.begin(); it != clients_.end();) {  // reap finished ones
            if (client_fds_.count(it->first)) {
                ++it;
                continue;
            }
            it->second.join();
            it = clients_.erase(it);
        }
        client_fds_.insert(client);
        clients_.emplace_back(client, std::thread([this, client] { serve_client(client); }));
    }
}

void ControlServer::serve_client(int client) {
    std::string request;
    // A client may send several requests on one connection.
    while (read_line(client, request, 2000))
        if (!write_all(client, handler_(request) + "\n"))
            break;
    std::lock_guard lock(clients_mu_);
    client_fds_.erase(client);
    ::close(client);
}

bool control_request(const std::string& socket_path, const std::string& request, std::string& reply,
                     std::string& error, int timeout_ms) {
    sockaddr_un addr;
    if (!make_address(socket_path, addr, error))
        return false;
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        error = "no netfs daemon answers on " + socket_path + ": " + std::strerror(errno);
        if (fd >= 0)
            ::close(fd);
        return false;
    }
    const bool ok = write_all(fd, request + "\n") && read_line(fd, reply, timeout_ms);
    ::close(fd);
    if (!ok)
        error = "the netfs daemon on " + socket_path + " did not answer";
    return ok;
}

} // namespace netfs
