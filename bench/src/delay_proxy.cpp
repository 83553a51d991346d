// A TCP relay that delays every byte by a fixed time in each direction:
// the round-trip latency of a distant server, on loopback. This kernel has
// no netem (docs: ../shared reference test-network.md), so benchmarks put
// this between a client and a server instead.
//
//   bench_delay_proxy LISTEN_PORT TARGET_PORT ONE_WAY_MS
//
// Listens on 127.0.0.1:LISTEN_PORT; each connection is relayed to
// 127.0.0.1:TARGET_PORT. Data read at time t is written at t + ONE_WAY_MS,
// in order, so a request/response exchange takes 2 x ONE_WAY_MS longer.
// Bandwidth is not limited. Runs until killed.
#include "delay_pump.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
namespace {

int connect_to(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(std::uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s LISTEN_PORT TARGET_PORT ONE_WAY_MS\n", argv[0]);
        return 2;
    }
    const int listen_port = std::atoi(argv[1]), target = std::atoi(argv[2]);
    const std::chrono::milliseconds delay(std::atoi(argv[3]));
    const int ls = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(std::uint16_t(listen_port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(ls, 64) != 0) {
        std::perror("listen");
        return 1;
    }
    for (;;) {
        const int client = ::accept(ls, nullptr, nullptr);
        if (client < 0)
            continue;
        std::thread([client, target, delay] {
            const int server = connect_to(target);
            if (server < 0) {
                ::close(client);
                return;
            }
            const int nodelay = 1;  // the delay is ours alone: no Nagle on top
            for (int fd : {client, server})
                ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof nodelay);
            std::thread up(netfs::delay_pump, client, server, delay);
            netfs::delay_pump(server, client, delay);
            up.join();
            ::close(client);
            ::close(server);
        }).detach();
    }
}
