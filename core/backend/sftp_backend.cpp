// sftp://: the remote reached over SSH through libssh2 1.10.
//
//   engine threads ──> SftpBackend ──> Pool ──> Connection 0: TCP + SSH session + one SFTP channel
//                        SftpFile ─┘      │
//                                         ├──> Connection 1 ...
//                                         └──> maintenance thread: connects, reconnects with
//                                              back-off, heartbeats idle connections
//
// libssh2 carries the SSH session (handshake, host key, login, channels);
// netfs speaks SFTP v3 on the channel itself (SftpChannel), because
// libssh2's SFTP API waits for each request's answers before another
// request can go out: a connection served one stat, rename or create at a
// time, and one file's reads were one 1 MiB request per round trip (41
// MB/s at 20 ms, against 99 MB/s for `ssh cat`; 26 small files stored per
// second at 20 ms). On the channel, any number of requests of any threads
// are in flight at once:
//
//   thread A:  LSTAT ─────────────────────────> (answer handed to A)
//   thread B:     OPEN+LSTAT ───────────────────────> (both answers to B)
//   thread C:        WRITE x16 ─────────────────────────────> (to C)
//
// A request goes out in blocking mode under the connection's mutex (one
// libssh2 session is not thread-safe); its thread then lets the mutex go
// while it waits: answers are taken in non-blocking mode by whichever
// waiter holds the mutex and handed to the thread they belong to
// (Pool::await). A file request is split into 64 KiB READs or WRITEs sent
// at once; a path request is one packet, or a few sent back to back when
// a later one does not need the earlier one's answer (OpenSSH's server
// answers one channel's requests in order: OPEN then LSTAT of the same
// name describes the file just made). The channel asks for a 16 MiB
// receive window and a connection keeps at most 8 MiB of reads asked for,
// so the server can always send its answers and never stops reading
// requests (a sender blocked on the server's window under the mutex relies
// on that).
//
// With many requests in flight, size changes are ordered against file I/O
// by a gate in the pool (SizeGate: why is told there).
//
// An open file has a handle on the connection it was opened on, and a
// large file one more on each connection its I/O is spread over (SftpFile::
// connection_for), opened by its path when first needed. SFTP has no inode
// numbers: a handle is the only thing that names *this* file, and opening
// the path again after a rename or an unlink would reach another file. So
// the pool keeps open files' paths current through this mount's renames and
// unlinks (OpenPaths), and a reader checks its second handle against its
// first; after a reconnect every handle is gone and the file is reopened by
// its path, where a change made on the server meanwhile cannot be told.
#include "core/backend/sftp_backend.h"

#include "core/log.h"

#include <libssh2.h>
#include <libssh2_sftp.h>
#include <openssl/evp.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <thread>
#include <utility>

namespace netfs {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The unit of one engine request: 16 SFTP requests of kChunk (with
// OpenSSH), all in flight at once. Measured on loopback (docs/remotes.md).
constexpr std::uint32_t kIoSize = 1u << 20;
// The largest write taken in one call (wsize_max; the engine's own writes
// are kIoSize): 128 WRITEs in flight keep the server's 2 MiB channel window
// full over a long round trip, where one 1 MiB write per round trip
// uploaded 44 MB/s at 20 ms (reintegration writes what it has in 8 MiB).
constexpr std::uint32_t kMaxWrite = 8u << 20;
// An idle connection is checked this often, with this long to answer, so
// that a server that went away is noticed within 5 seconds.
constexpr auto kHeartbeatIdle = milliseconds(1500);
constexpr auto kHeartbeatTimeout = milliseconds(3000);
// Reconnect attempts back off up to this.
constexpr auto kMaxBackoff = milliseconds(2000);
// For Pool::acquire: no connection preferred.
constexpr std::size_t kAnyConnection = static_cast<std::size_t>(-1);

std::string base64(const unsigned char* data, std::size_t n, bool pad) {
    std::string out(4 * ((n + 2) / 3) + 1, '\0');
    const int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
    out.resize(static_cast<std::size_t>(std::max(len, 0)));
    while (!pad && !out.empty() && out.back() == '=')
        out.pop_back();
    return out;
}

bool unbase64(std::string text, std::string& out) {
    text.erase(std::remove_if(text.begin(), text.end(), [](char c) { return std::isspace(static_cast<unsigned char>(c)); }),
               text.end());
    if (text.empty() || text.size() % 4 != 0)
        return false;
    out.assign(text.size() / 4 * 3, '\0');
    const int len = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                    reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
    if (len < 0)
        return false;
    std::size_t padding = 0;
    while (padding < 2 && text[text.size() - 1 - padding] == '=')
        ++padding;
    out.resize(static_cast<std::size_t>(len) - padding);
    return true;
}

std::string home_dir() {
    if (const char* home = std::getenv("HOME"); home && *home)
        return home;
    if (const passwd* pw = ::getpwuid(::geteuid()))
        return pw->pw_dir;
    return "/";
}

// "/root/.ssh/id_rsa" -> "~/.ssh/id_rsa": how a user recognises it.
std::string shown_path(const std::string& home, const std::string& path) {
    if (home.size() > 1 && path.starts_with(home + "/"))
        return "~" + path.substr(home.size());
    return path;
}

bool read_text(const std::string& path, std::string& out) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return false;
    std::ostringstream s;
    s << in.rdbuf();
    out = s.str();
    return true;
}

// Whether a private key file needs a passphrase: PEM keys say so in a
// header; OpenSSH's own format names its cipher ("none" when clear).
bool key_is_encrypted(const std::string& text) {
    if (text.find("ENCRYPTED") != std::string::npos)
        return true;
    const std::string begin = "-----BEGIN OPENSSH PRIVATE KEY-----";
    const auto b = text.find(begin);
    const auto e = text.find("-----END OPENSSH PRIVATE KEY-----");
    if (b == std::string::npos || e == std::string::npos || e < b)
        return false;
    std::string blob;
    if (!unbase64(text.substr(b + begin.size(), e - b - begin.size()), blob))
        return false;
    const std::string magic("openssh-key-v1\0", 15);
    if (blob.compare(0, magic.size(), magic) != 0 || blob.size() < magic.size() + 4)
        return false;
    const auto* p = reinterpret_cast<const unsigned char*>(blob.data()) + magic.size();
    const std::uint32_t len = (std::uint32_t(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
    if (magic.size() + 4 + len > blob.size())
        return false;
    return blob.compare(magic.size() + 4, len, "none") != 0;
}

void wipe(std::string& secret) {
    std::fill(secret.begin(), secret.end(), '\0');
    secret.clear();
}

Attr to_attr(const LIBSSH2_SFTP_ATTRIBUTES& a) {
    Attr out;
    if (a.flags & LIBSSH2_SFTP_ATTR_PERMISSIONS)
        out.mode = static_cast<std::uint32_t>(a.permissions);
    if (a.flags & LIBSSH2_SFTP_ATTR_UIDGID) {
        out.uid = static_cast<std::uint32_t>(a.uid);
        out.gid = static_cast<std::uint32_t>(a.gid);
    }
    if (a.flags & LIBSSH2_SFTP_ATTR_SIZE) {
        out.size = a.filesize;
        out.blocks = (a.filesize + 511) / 512;
    }
    if (a.flags & LIBSSH2_SFTP_ATTR_ACMODTIME) {
        out.atime.tv_sec = static_cast<time_t>(a.atime);
        out.mtime.tv_sec = static_cast<time_t>(a.mtime);
    }
    // SFTP v3 has no ctime: the mtime is the best stand-in for "changed".
    out.ctime = out.mtime;
    return out;
}

// The libssh2 error codes that leave the session usable. Anything else (a
// socket error, a timeout in the middle of a packet) means the connection
// must be rebuilt.
bool session_survives(int rc) {
    return rc == LIBSSH2_ERROR_SFTP_PROTOCOL || rc == LIBSSH2_ERROR_BUFFER_TOO_SMALL ||
           rc == LIBSSH2_ERROR_INVAL || rc == LIBSSH2_ERROR_BAD_USE || rc == LIBSSH2_ERROR_ALLOC;
}

// An SFTP status code as an Errc. OpenSSH's server speaks SFTP v3 and
// reports most errnos as FAILURE; callers refine that where they can.
Errc from_status(unsigned long status) {
    switch (status) {
    case LIBSSH2_FX_OK: return Errc::ok;
    case LIBSSH2_FX_NO_SUCH_FILE:
    case LIBSSH2_FX_NO_SUCH_PATH: return Errc::not_found;
    case LIBSSH2_FX_PERMISSION_DENIED: return Errc::access;
    case LIBSSH2_FX_FILE_ALREADY_EXISTS: return Errc::exists;
    case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM:
    case LIBSSH2_FX_QUOTA_EXCEEDED: return Errc::no_space;
    case LIBSSH2_FX_WRITE_PROTECT: return Errc::read_only;
    case LIBSSH2_FX_NOT_A_DIRECTORY: return Errc::not_dir;
    case LIBSSH2_FX_DIR_NOT_EMPTY: return Errc::not_empty;
    case LIBSSH2_FX_OP_UNSUPPORTED: return Errc::not_supported;
    case LIBSSH2_FX_INVALID_FILENAME:
    case LIBSSH2_FX_BAD_MESSAGE: return Errc::invalid;
    case LIBSSH2_FX_LINK_LOOP: return Errc::loop;
    case LIBSSH2_FX_INVALID_HANDLE: return Errc::bad_handle;
    case LIBSSH2_FX_LOCK_CONFLICT: return Errc::busy;
    case LIBSSH2_FX_NO_CONNECTION:
    case LIBSSH2_FX_CONNECTION_LOST: return Errc::unreachable;
    default: return Errc::io;
    }
}

const char* key_type_name(int type) {
    switch (type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return "ssh-rsa";
    case LIBSSH2_HOSTKEY_TYPE_DSS: return "ssh-dss";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return "ecdsa-sha2-nistp256";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return "ecdsa-sha2-nistp384";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return "ecdsa-sha2-nistp521";
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return "ssh-ed25519";
    default: return nullptr;
    }
}

int knownhost_key_bit(int type) {
    switch (type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
    case LIBSSH2_HOSTKEY_TYPE_DSS: return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return LIBSSH2_KNOWNHOST_KEY_ED25519;
    default: return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
    }
}

// ---- SFTP v3, as netfs speaks it ----------------------------------------------

// Packet types (draft-ietf-secsh-filexfer-02) and OpenSSH's extensions.
constexpr std::uint8_t kFxpInit = 1, kFxpVersion = 2, kFxpOpen = 3, kFxpClose = 4, kFxpRead = 5, kFxpWrite = 6,
                       kFxpLstat = 7, kFxpFstat = 8, kFxpSetstat = 9, kFxpFsetstat = 10, kFxpOpendir = 11,
                       kFxpReaddir = 12, kFxpRemove = 13, kFxpMkdir = 14, kFxpRmdir = 15, kFxpStat = 17,
                       kFxpRename = 18, kFxpReadlink = 19, kFxpSymlink = 20, kFxpStatus = 101, kFxpHandle = 102,
                       kFxpData = 103, kFxpName = 104, kFxpAttrs = 105, kFxpExtended = 200,
                       kFxpExtendedReply = 201;
constexpr std::uint32_t kFxOk = 0, kFxEof = 1;
constexpr std::uint32_t kAttrSize = 1, kAttrUidGid = 2, kAttrPermissions = 4, kAttrTimes = 8, kAttrExtended = 0x80000000u;
// Status codes, open flags (LIBSSH2_FXF_*) and the attribute structure
// (LIBSSH2_SFTP_ATTRIBUTES) are libssh2_sftp.h's, which match the wire.

struct Packet {
    std::string bytes;
    void u8(std::uint8_t v) { bytes += static_cast<char>(v); }
    void u32(std::uint32_t v) {
        for (int shift = 24; shift >= 0; shift -= 8)
            bytes += static_cast<char>((v >> shift) & 0xff);
    }
    void u64(std::uint64_t v) {
        u32(static_cast<std::uint32_t>(v >> 32));
        u32(static_cast<std::uint32_t>(v));
    }
    void str(std::string_view s) {
        u32(static_cast<std::uint32_t>(s.size()));
        bytes += s;
    }
};

struct Reader {
    std::string_view rest;
    bool ok = true;
    std::uint32_t u32() {
        if (rest.size() < 4) {
            ok = false;
            return 0;
        }
        const auto* p = reinterpret_cast<const unsigned char*>(rest.data());
        rest.remove_prefix(4);
        return (std::uint32_t(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
    }
    std::uint8_t u8() {
        if (rest.empty()) {
            ok = false;
            return 0;
        }
        const auto v = static_cast<std::uint8_t>(rest[0]);
        rest.remove_prefix(1);
        return v;
    }
    std::uint64_t u64() {
        const std::uint64_t hi = u32();
        return (hi << 32) | u32();
    }
    std::string_view str() {
        const std::uint32_t n = u32();
        if (!ok || rest.size() < n) {
            ok = false;
            return {};
        }
        const auto s = rest.substr(0, n);
        rest.remove_prefix(n);
        return s;
    }
};

// ---- the channel: many requests in flight -------------------------------------

// The data of one SFTP READ or WRITE: what the server's limits@openssh.com
// allows (OpenSSH: 255 KiB) up to kChunk, else what every server must take
// (SFTP v3 promises 32768-byte reads; libssh2 writes 30000 bytes).
constexpr std::uint32_t kChunk = 64u << 10;
constexpr std::uint32_t kSafeReadChunk = 32768, kSafeWriteChunk = 30000;
// The receive window of a channel, and how many bytes of reads a
// connection keeps asked for at most: always less than the window, so the
// server can always send every answer and never stops reading requests
// (a blocking write under the connection's mutex waits on exactly that).
constexpr std::uint32_t kChannelWindow = 16u << 20;
constexpr std::size_t kMaxReadsInFlight = 8u << 20;
// A thread waiting for answers wakes this often to look for answers that
// another thread's libssh2 call took off the socket meanwhile.
constexpr auto kPollTick = milliseconds(5);

void put_u32(char* p, std::uint32_t v) {
    p[0] = static_cast<char>(v >> 24);
    p[1] = static_cast<char>(v >> 16);
    p[2] = static_cast<char>(v >> 8);
    p[3] = static_cast<char>(v);
}

std::uint32_t get_u32(const char* p) {
    const auto* u = reinterpret_cast<const unsigned char*>(p);
    return (std::uint32_t(u[0]) << 24) | (u[1] << 16) | (u[2] << 8) | u[3];
}

// The requests one thread waits for: woken when the last is answered.
struct Batch {
    std::condition_variable cv;  // with the connection's mutex
    std::size_t remaining = 0;
};

// What came back for one request. Owned by the thread that waits for it;
// the channel points to it while it is pending.
struct Reply {
    Batch* batch = nullptr;
    char* into = nullptr;       // READ: where the data goes
    std::size_t capacity = 0;   // READ: how much was asked
    bool done = false;
    bool lost = false;          // the connection went away first
    std::uint8_t type = 0;      // kFxpStatus, kFxpData, kFxpHandle, kFxpAttrs, ...
    std::uint32_t status = kFxOk;
    std::size_t got = 0;        // DATA: bytes received
    std::string body;           // HANDLE, ATTRS, NAME, EXTENDED_REPLY: what follows the id
};

Errc status_errc(const Reply& r) {
    if (r.lost)
        return Errc::unreachable;
    if (r.type == kFxpStatus)
        return from_status(r.status);
    return Errc::ok;
}

// An SFTP v3 ATTRS structure as libssh2 would have decoded it.
bool decode_attrs(Reader& r, LIBSSH2_SFTP_ATTRIBUTES& a) {
    a = {};
    const std::uint32_t flags = r.u32();
    if (flags & kAttrSize) {
        a.filesize = r.u64();
        a.flags |= LIBSSH2_SFTP_ATTR_SIZE;
    }
    if (flags & kAttrUidGid) {
        a.uid = r.u32();
        a.gid = r.u32();
        a.flags |= LIBSSH2_SFTP_ATTR_UIDGID;
    }
    if (flags & kAttrPermissions) {
        a.permissions = r.u32();
        a.flags |= LIBSSH2_SFTP_ATTR_PERMISSIONS;
    }
    if (flags & kAttrTimes) {
        a.atime = r.u32();
        a.mtime = r.u32();
        a.flags |= LIBSSH2_SFTP_ATTR_ACMODTIME;
    }
    if (flags & kAttrExtended) {
        for (std::uint32_t n = r.u32(); r.ok && n > 0; --n) {
            r.str();
            r.str();
        }
    }
    return r.ok;
}

void encode_attrs(const LIBSSH2_SFTP_ATTRIBUTES& a, Packet& p) {
    p.u32(static_cast<std::uint32_t>(a.flags));
    if (a.flags & LIBSSH2_SFTP_ATTR_SIZE)
        p.u64(a.filesize);
    if (a.flags & LIBSSH2_SFTP_ATTR_UIDGID) {
        p.u32(static_cast<std::uint32_t>(a.uid));
        p.u32(static_cast<std::uint32_t>(a.gid));
    }
    if (a.flags & LIBSSH2_SFTP_ATTR_PERMISSIONS)
        p.u32(static_cast<std::uint32_t>(a.permissions));
    if (a.flags & LIBSSH2_SFTP_ATTR_ACMODTIME) {
        p.u32(static_cast<std::uint32_t>(a.atime));
        p.u32(static_cast<std::uint32_t>(a.mtime));
    }
}

// The SFTP session of a connection, spoken by netfs itself so that any
// number of requests, of any threads, are in flight on it at once
// (libssh2's own SFTP API waits for each request's answers before the next
// request can go out, and keeps one position per handle). Requests go out
// in blocking mode; answers are taken in non-blocking mode and handed to
// whichever thread waits for them (Pool::await). Every member is used
// under the connection's mutex.
class SftpChannel {
public:
    ~SftpChannel() { close(); }

    bool open(LIBSSH2_SESSION* session) {
        channel_ = libssh2_channel_open_ex(session, "session", sizeof "session" - 1, kChannelWindow,
                                           LIBSSH2_CHANNEL_PACKET_DEFAULT, nullptr, 0);
        if (!channel_)
            return false;
        if (libssh2_channel_subsystem(channel_, "sftp") != 0) {
            close();
            return false;
        }
        std::string init(9, '\0');
        put_u32(init.data(), 5);
        init[4] = static_cast<char>(kFxpInit);
        put_u32(init.data() + 5, 3);
        if (write_all(init) != 0) {
            close();
            return false;
        }
        // The VERSION answer, read blocking (nothing else is in flight yet).
        char header[4];
        std::string reply;
        if (!read_exact(header, 4) || get_u32(header) > (1u << 20)) {
            close();
            return false;
        }
        reply.resize(get_u32(header));
        if (!read_exact(reply.data(), reply.size())) {
            close();
            return false;
        }
        Reader r{reply};
        if (r.u8() != kFxpVersion) {
            close();
            return false;
        }
        r.u32();
        while (r.ok && !r.rest.empty()) {
            const std::string name(r.str());
            r.str();
            if (r.ok)
                extensions_.insert(name);
        }
        read_chunk_ = kSafeReadChunk;
        write_chunk_ = kSafeWriteChunk;
        if (offers("limits@openssh.com") && !learn_limits()) {
            close();
            return false;
        }
        return true;
    }

    std::uint32_t read_chunk() const { return read_chunk_; }
    std::uint32_t write_chunk() const { return write_chunk_; }

    // Fails every pending request: its connection is gone.
    void close() {
        for (auto& [id, reply] : pending_) {
            reply->lost = true;
            finish(*reply);
        }
        pending_.clear();
        if (channel_)
            libssh2_channel_free(channel_);
        channel_ = nullptr;
        rx_.clear();
        rx_at_ = 0;
        polling = false;
    }

    bool is_open() const { return channel_ != nullptr; }
    bool offers(const std::string& name) const { return channel_ && extensions_.count(name); }
    const std::set<std::string>& extensions() const { return extensions_; }

    // Appends one request to `out`, its answer to go to `reply` (nullptr:
    // nobody waits for it). `data_size` bytes of data end the request; the
    // caller sends them right after these (see write_all), from where they are.
    void add(std::string& out, std::uint8_t type, std::string_view arguments, Reply* reply,
             std::size_t data_size = 0) {
        const std::uint32_t id = ++next_id_;
        char header[9];
        put_u32(header, static_cast<std::uint32_t>(5 + arguments.size() + data_size));
        header[4] = static_cast<char>(type);
        put_u32(header + 5, id);
        out.append(header, sizeof header);
        out += arguments;
        if (reply)
            pending_[id] = reply;
    }

    // Sends `pieces` one after the other, blocking: a negative libssh2 error
    // if the channel failed.
    int write_all(std::string_view bytes) { return write_all({&bytes, 1}); }
    int write_all(std::span<const std::string_view> pieces) {
        for (std::string_view bytes : pieces)
            while (!bytes.empty()) {
                const ssize_t n = libssh2_channel_write(channel_, bytes.data(), bytes.size());
                if (n < 0)
                    return static_cast<int>(n);
                bytes.remove_prefix(static_cast<std::size_t>(n));
            }
        return 0;
    }

    // Stops waiting for the replies that are not done (their thread gives up).
    void forget(std::span<Reply> replies) {
        for (auto it = pending_.begin(); it != pending_.end();) {
            const Reply* r = it->second;
            if (r >= replies.data() && r < replies.data() + replies.size())
                it = pending_.erase(it);
            else
                ++it;
        }
    }

    // Takes every answer that has arrived, without waiting, and hands it to
    // its Reply. A negative libssh2 error if the connection failed.
    int pump(LIBSSH2_SESSION* session, int sock, Clock::time_point deadline) {
        libssh2_session_set_blocking(session, 0);
        int result = 0;
        char buf[64 << 10];
        for (;;) {
            const ssize_t n = libssh2_channel_read(channel_, buf, sizeof buf);
            if (n > 0) {
                rx_.append(buf, static_cast<std::size_t>(n));
                continue;
            }
            if (n == 0 && libssh2_channel_eof(channel_)) {
                result = LIBSSH2_ERROR_CHANNEL_CLOSED;
                break;
            }
            if (n == 0 || n == LIBSSH2_ERROR_EAGAIN) {
                // A packet half sent (a window adjustment) must be finished
                // before the mutex goes: libssh2 refuses any other packet until then.
                if (!(libssh2_session_block_directions(session) & LIBSSH2_SESSION_BLOCK_OUTBOUND))
                    break;
                const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
                pollfd p{sock, POLLOUT, 0};
                if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) {
                    result = LIBSSH2_ERROR_TIMEOUT;
                    break;
                }
                continue;
            }
            result = static_cast<int>(n);
            break;
        }
        libssh2_session_set_blocking(session, 1);
        if (!dispatch() && result == 0)
            result = LIBSSH2_ERROR_PROTO;
        return result;
    }

    bool polling = false;          // a thread is waiting on the socket for everyone
    std::vector<Batch*> sleeping;  // the others: one of them polls next

private:
    static void finish(Reply& reply) {
        reply.done = true;
        if (reply.batch && --reply.batch->remaining == 0)
            reply.batch->cv.notify_one();
    }

    // Hands out every whole answer in rx_; false on a malformed one.
    bool dispatch() {
        while (rx_.size() - rx_at_ >= 4) {
            const std::uint32_t len = get_u32(rx_.data() + rx_at_);
            if (len < 5 || len > (1u << 20))
                return false;
            if (rx_.size() - rx_at_ < 4 + std::size_t(len))
                break;
            const char* body = rx_.data() + rx_at_ + 4;
            rx_at_ += 4 + std::size_t(len);
            const auto it = pending_.find(get_u32(body + 1));
            if (it == pending_.end())
                continue;  // an answer nobody waits for (a close sent without waiting)
            Reply& reply = *it->second;
            pending_.erase(it);
            reply.type = static_cast<std::uint8_t>(body[0]);
            Reader r{std::string_view(body + 5, len - 5)};
            if (reply.type == kFxpStatus) {
                reply.status = r.u32();
            } else if (reply.type == kFxpData) {
                const std::string_view data = r.str();
                reply.got = std::min(data.size(), reply.capacity);
                std::memcpy(reply.into, data.data(), reply.got);
            } else {
                reply.body.assign(r.rest);
            }
            if (!r.ok)
                return false;
            finish(reply);
        }
        if (rx_at_ == rx_.size()) {
            rx_.clear();
            rx_at_ = 0;
        } else if (rx_at_ > (1u << 20)) {
            rx_.erase(0, rx_at_);
            rx_at_ = 0;
        }
        return true;
    }

    bool read_exact(char* out, std::size_t n) {
        std::size_t done = 0;
        while (done < n) {
            const ssize_t got = libssh2_channel_read(channel_, out + done, n - done);
            if (got <= 0)
                return false;
            done += static_cast<std::size_t>(got);
        }
        return true;
    }

    // Asks limits@openssh.com for the largest READ and WRITE (blocking:
    // nothing else is in flight yet); 0 means "no limit".
    bool learn_limits() {
        Packet args;
        args.str("limits@openssh.com");
        std::string request;
        add(request, kFxpExtended, args.bytes, nullptr);
        if (write_all(request) != 0)
            return false;
        char header[4];
        if (!read_exact(header, 4) || get_u32(header) > (1u << 20))
            return false;
        std::string answer(get_u32(header), '\0');
        if (!read_exact(answer.data(), answer.size()))
            return false;
        Reader r{answer};
        const std::uint8_t type = r.u8();
        r.u32();  // the id
        if (type != kFxpExtendedReply)
            return r.ok;  // refused: keep the safe sizes
        const auto u64 = [&] {
            const std::uint64_t hi = r.u32();
            return (hi << 32) | r.u32();
        };
        u64();  // largest packet
        const std::uint64_t max_read = u64(), max_write = u64();
        if (!r.ok)
            return false;
        const auto pick = [](std::uint64_t limit) {
            return limit == 0 ? kChunk : static_cast<std::uint32_t>(std::clamp<std::uint64_t>(limit, 1024, kChunk));
        };
        read_chunk_ = pick(max_read);
        write_chunk_ = pick(max_write);
        return true;
    }

    LIBSSH2_CHANNEL* channel_ = nullptr;
    std::uint32_t read_chunk_ = kSafeReadChunk;
    std::uint32_t write_chunk_ = kSafeWriteChunk;
    std::set<std::string> extensions_;
    std::map<std::uint32_t, Reply*> pending_;
    std::uint32_t next_id_ = 0;
    std::string rx_;          // answers received, not yet handed out from rx_at_ on
    std::size_t rx_at_ = 0;
};

// Orders what changes a file's size against the file I/O in flight. The
// engine starts a truncate when no write of the file is in flight, but reads
// (readahead) and other handles' requests may be in flight: with many of
// them at once, test_fsx under memory pressure failed in 5 of 11 runs (a
// read after a truncate met an end of file that was not there, or bytes
// past it). So:
//   - file I/O (Kind::io) runs alongside other file I/O;
//   - size changes (truncate, open with O_TRUNC: Kind::change) run alone.
// Attribute reads (stat, readdir, fstat: Kind::attrs) used to wait for file
// I/O too (a size read while a write was in flight could describe the file
// before it: 1 failure in 21 runs). The engine now ignores attributes from
// a request sent before its own last write or truncate of the file
// completed (Node::own_change_at), so they no longer wait: a lookup of the
// next file does not wait for the previous file's readahead, and many small
// files move in parallel.
// A waiting change holds back new I/O, so it does not starve for long.
class SizeGate {
public:
    enum class Kind { io, attrs, change };

    void enter(Kind kind) {
        if (kind == Kind::attrs)
            return;  // ordered by the engine (see above)
        if (held_ > 0) {  // nested in this thread's own hold: already ordered
            ++held_;
            return;
        }
        std::unique_lock lock(mu_);
        ++waiting_[index(kind)];
        cv_.wait(lock, [&] { return may_enter(kind); });
        --waiting_[index(kind)];
        ++running_[index(kind)];
        held_ = 1;
    }

    void leave(Kind kind) {
        if (kind == Kind::attrs)
            return;
        if (--held_ > 0)
            return;
        std::lock_guard lock(mu_);
        --running_[index(kind)];
        cv_.notify_all();
    }

private:
    static std::size_t index(Kind k) { return static_cast<std::size_t>(k); }
    bool may_enter(Kind kind) const {
        const auto io = index(Kind::io), change = index(Kind::change);
        if (running_[change] > 0)
            return false;
        switch (kind) {
        case Kind::io: return waiting_[change] == 0;
        case Kind::attrs: return true;
        case Kind::change: return running_[io] == 0;
        }
        return false;
    }

    static thread_local int held_;  // this thread's depth inside the gate
    std::mutex mu_;
    std::condition_variable cv_;
    std::size_t running_[3] = {0, 0, 0};
    std::size_t waiting_[3] = {0, 0, 0};
};
thread_local int SizeGate::held_ = 0;

// Holds the gate for its lifetime; taken before any connection's mutex.
class GateHold {
public:
    GateHold(SizeGate& gate, SizeGate::Kind kind) : gate_(gate), kind_(kind) { gate_.enter(kind_); }
    ~GateHold() { gate_.leave(kind_); }
    GateHold(const GateHold&) = delete;
    GateHold& operator=(const GateHold&) = delete;

private:
    SizeGate& gate_;
    const SizeGate::Kind kind_;
};

// ---- connections ------------------------------------------------------------

// What logging in needs, shared by every connection of the pool. Secrets
// typed once at mount time are kept for reconnects, never logged.
struct Login {
    RemoteUrl url;
    RemoteOptions options;
    std::string user;
    std::uint16_t port = 22;
    std::string root;         // url.path
    std::string home;         // the local user's home, for ~/.ssh
    std::string known_hosts;  // the file host keys are checked against
    std::string agent_socket; // SSH_AUTH_SOCK at mount time; empty: no agent
    std::map<std::string, std::string> passphrases;  // key file -> passphrase (guarded: written before threads start)
    std::string password;

    ~Login() {
        for (auto& [file, secret] : passphrases)
            wipe(secret);
        wipe(password);
    }
};

std::once_flag libssh2_initialised;

class Pool;

// One SSH connection with its SFTP channel. Every member but `up` and the
// socket is guarded by `mu`; the lock order is mu, then sock_mu.
struct Connection {
    std::mutex mu;
    LIBSSH2_SESSION* session = nullptr;
    SftpChannel sftp;
    std::uint64_t generation = 0;  // bumped at each connect: handles of an older one are gone
    // When a request last used it; read without `mu` by the heartbeat.
    std::atomic<Clock::rep> last_used{0};
    void touch() { last_used = Clock::now().time_since_epoch().count(); }
    Clock::duration idle() const { return Clock::now().time_since_epoch() - Clock::duration(last_used.load()); }

    // Bytes of reads asked for on `sftp` and not yet answered (at most
    // kMaxReadsInFlight); under reads_mu, never held with `mu`.
    std::mutex reads_mu;
    std::condition_variable reads_cv;
    std::size_t reads_in_flight = 0;

    // Reconnect schedule, guarded by Pool::state_mu_.
    Clock::time_point next_attempt{};
    milliseconds backoff{0};

    // Cleared (without `mu`) by Pool::lose_all when the connection fails.
    std::atomic<bool> up{false};
    // The socket, also reached without `mu` to shut it down under a
    // thread blocked in libssh2.
    std::mutex sock_mu;
    int sock = -1;

    // Frees the session. With `polite`, says goodbye first (only on a
    // working connection: on a dead one that would wait for the timeout).
    void teardown(bool polite) {
        sftp.close();
        if (session) {
            if (polite)
                libssh2_session_disconnect(session, "netfs unmounting");
            libssh2_session_free(session);
        }
        session = nullptr;
        std::lock_guard lock(sock_mu);
        if (sock >= 0)
            ::close(sock);
        sock = -1;
    }
};

// getaddrinfo with a deadline. It has none of its own (a resolver that
// does not answer holds it for retries x timeout), so it runs on a thread of
// its own that is left to finish alone if the deadline passes.
struct Lookup {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    int rc = 0;
    addrinfo* result = nullptr;  // owned until taken
    ~Lookup() {
        if (result)
            ::freeaddrinfo(result);
    }
};

int resolve(const std::string& host, std::uint16_t port, Clock::time_point deadline, addrinfo*& out) {
    auto lookup = std::make_shared<Lookup>();
    std::thread([lookup, host, port] {
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* result = nullptr;
        const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &result);
        std::lock_guard lock(lookup->mu);
        lookup->rc = rc;
        lookup->result = result;
        lookup->done = true;
        lookup->cv.notify_all();
    }).detach();
    std::unique_lock lock(lookup->mu);
    if (!lookup->cv.wait_until(lock, deadline, [&] { return lookup->done; }))
        return EAI_AGAIN;
    out = std::exchange(lookup->result, nullptr);
    return lookup->rc;
}

// Opens a TCP connection within `deadline`; one line in `message` if not.
Errc dial(const Login& login, Clock::time_point deadline, int& out, std::string& message) {
    const std::string& host = login.url.host;
    const std::string where = "port " + std::to_string(login.port) + " of " + host;
    addrinfo* addresses = nullptr;
    if (int rc = resolve(host, login.port, deadline, addresses); rc != 0) {
        message = rc == EAI_AGAIN ? "cannot find host '" + host + "': no answer from the name server (check the network)"
                                  : "cannot find host '" + host + "' (" + ::gai_strerror(rc) + "): check the host name";
        return Errc::unreachable;
    }
    std::string last = "no address";
    bool timed_out = false;
    for (addrinfo* a = addresses; a; a = a->ai_next) {
        int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0)
            continue;
        int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
        int err = rc == 0 ? 0 : errno;
        if (rc != 0 && err == EINPROGRESS) {
            pollfd p{fd, POLLOUT, 0};
            const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
            rc = left > 0 ? ::poll(&p, 1, static_cast<int>(left)) : 0;
            if (rc == 1) {
                socklen_t len = sizeof err;
                ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
            } else {
                err = ETIMEDOUT;
                timed_out = true;
            }
        }
        if (err == 0) {
            ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
            const int one = 1;
            ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
            ::freeaddrinfo(addresses);
            out = fd;
            return Errc::ok;
        }
        ::close(fd);
        if (err == ECONNREFUSED)
            last = "connection refused on " + where + " (is an SSH server running there? check the port)";
        else if (err == ETIMEDOUT)
            last = "no answer from " + where + " within " +
                   std::to_string(static_cast<int>(login.options.connect_timeout)) +
                   " s (check the host and the network, or raise -o connect_timeout)";
        else
            last = "cannot connect to " + where + ": " + std::strerror(err);
        if (timed_out)
            break;  // the deadline is spent
    }
    ::freeaddrinfo(addresses);
    message = last;
    return timed_out ? Errc::timed_out : Errc::unreachable;
}

// The host key against known_hosts: OpenSSH's rules, hashed entries and the
// [host]:port form included.
Errc check_host_key(const Login& login, LIBSSH2_SESSION* session, std::string& message) {
    std::size_t key_len = 0;
    int type = 0;
    const char* key = libssh2_session_hostkey(session, &key_len, &type);
    const char* type_name = key_type_name(type);
    if (!key || !type_name) {
        message = "the server offered a host key of a type netfs does not know";
        return Errc::access;
    }
    const char* hash = libssh2_hostkey_hash(session, LIBSSH2_HOSTKEY_HASH_SHA256);
    const std::string fingerprint =
        "SHA256:" + (hash ? base64(reinterpret_cast<const unsigned char*>(hash), 32, false) : std::string("?"));
    const std::string entry_host =
        login.port == 22 ? login.url.host : "[" + login.url.host + "]:" + std::to_string(login.port);

    LIBSSH2_KNOWNHOSTS* hosts = libssh2_knownhost_init(session);
    if (!hosts) {
        message = "out of memory checking the host key";
        return Errc::io;
    }
    // Line by line rather than libssh2_knownhost_readfile: that gives up
    // on the whole file at the first line it cannot parse (a certificate
    // authority, a key type it does not know).
    std::ifstream in(login.known_hosts);
    std::string line;
    while (std::getline(in, line)) {
        const auto start = line.find_first_not_of(" \t");
        if (start == std::string::npos || line[start] == '#' || line[start] == '@')
            continue;
        libssh2_knownhost_readline(hosts, line.c_str(), line.size(), LIBSSH2_KNOWNHOST_FILE_OPENSSH);
    }
    libssh2_knownhost* found = nullptr;
    const int check = libssh2_knownhost_checkp(
        hosts, login.url.host.c_str(), login.port == 22 ? -1 : login.port, key, key_len,
        LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | knownhost_key_bit(type), &found);
    libssh2_knownhost_free(hosts);

    if (check == LIBSSH2_KNOWNHOST_CHECK_MATCH)
        return Errc::ok;
    if (check == LIBSSH2_KNOWNHOST_CHECK_MISMATCH) {
        message = "WARNING: HOST KEY FOR " + entry_host + " HAS CHANGED (it now offers " + type_name + " " +
                  fingerprint + "): someone may be intercepting the connection; remove the old key from " +
                  login.known_hosts + " if the change is expected";
        return Errc::access;
    }
    if (!login.options.accept_new_host_key) {
        message = "host " + entry_host + " is unknown (" + type_name + " key " + fingerprint + ", not in " +
                  login.known_hosts + "): if that is its key, mount again with -o accept_new_host_key to trust it";
        return Errc::access;
    }
    // Record it as OpenSSH would: "[host]:port type base64".
    const std::string dir = login.known_hosts.substr(0, login.known_hosts.rfind('/'));
    if (!dir.empty() && dir == login.home + "/.ssh")
        ::mkdir(dir.c_str(), 0700);
    const std::string record = entry_host + " " + type_name + " " +
                               base64(reinterpret_cast<const unsigned char*>(key), key_len, true) + "\n";
    const int fd = ::open(login.known_hosts.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0 || ::write(fd, record.data(), record.size()) != static_cast<ssize_t>(record.size())) {
        const int err = errno;
        if (fd >= 0)
            ::close(fd);
        message = "cannot record the host key of " + entry_host + " in " + login.known_hosts + ": " +
                  std::strerror(err);
        return Errc::io;
    }
    ::close(fd);
    LOG_INFO("trusting host %s (%s %s): recorded in %s", entry_host.c_str(), type_name, fingerprint.c_str(),
             login.known_hosts.c_str());
    return Errc::ok;
}

struct InteractiveContext {
    const std::string* password;
};

void answer_prompts(const char*, int, const char*, int, int num_prompts, const LIBSSH2_USERAUTH_KBDINT_PROMPT*,
                    LIBSSH2_USERAUTH_KBDINT_RESPONSE* responses, void** abstract) {
    const auto* context = static_cast<InteractiveContext*>(*abstract);
    for (int i = 0; i < num_prompts; ++i) {
        // libssh2 frees the responses with the session's allocator (free).
        responses[i].text = static_cast<char*>(std::malloc(context->password->size() + 1));
        if (!responses[i].text)
            continue;
        std::memcpy(responses[i].text, context->password->c_str(), context->password->size() + 1);
        responses[i].length = static_cast<unsigned int>(context->password->size());
    }
}

// ssh-agent, then key files, then (only when allowed) a password.
// `may_ask`: the first connection of a mount may ask for secrets through
// options.ask_secret; later ones reuse what was typed then.
Errc authenticate(Login& login, LIBSSH2_SESSION* session, bool may_ask, std::string& message) {
    const std::string& user = login.user;
    const auto user_len = static_cast<unsigned int>(user.size());
    const char* offered = libssh2_userauth_list(session, user.c_str(), user_len);
    if (!offered) {
        if (libssh2_userauth_authenticated(session))
            return Errc::ok;  // the server let us in without credentials
        message = "the server closed the connection before authentication";
        return Errc::unreachable;
    }
    const std::string methods = offered;
    std::vector<std::string> tried;

    if (methods.find("publickey") != std::string::npos && !login.agent_socket.empty()) {
        if (LIBSSH2_AGENT* agent = libssh2_agent_init(session)) {
            libssh2_agent_set_identity_path(agent, login.agent_socket.c_str());
            bool in = false;
            if (libssh2_agent_connect(agent) == 0 && libssh2_agent_list_identities(agent) == 0) {
                libssh2_agent_publickey* identity = nullptr;
                libssh2_agent_publickey* previous = nullptr;
                while (!in && libssh2_agent_get_identity(agent, &identity, previous) == 0) {
                    in = libssh2_agent_userauth(agent, user.c_str(), identity) == 0;
                    previous = identity;
                }
                libssh2_agent_disconnect(agent);
                tried.push_back("agent");
            }
            libssh2_agent_free(agent);
            if (in)
                return Errc::ok;
        }
    }

    std::vector<std::string> keys;
    if (!login.options.identity.empty()) {
        keys.push_back(login.options.identity);
    } else {
        for (const char* name : {"id_ed25519", "id_ecdsa", "id_rsa"}) {
            const std::string path = login.home + "/.ssh/" + name;
            if (::access(path.c_str(), F_OK) == 0)
                keys.push_back(path);
        }
    }
    std::string locked_key;  // an encrypted key nobody could unlock
    if (methods.find("publickey") != std::string::npos) {
        for (const std::string& key : keys) {
            std::string text;
            if (!read_text(key, text)) {
                if (!login.options.identity.empty()) {
                    message = "cannot read key " + key + ": " + std::strerror(errno);
                    return Errc::access;
                }
                continue;
            }
            const bool encrypted = key_is_encrypted(text);
            wipe(text);
            std::string passphrase;
            if (encrypted) {
                if (auto known = login.passphrases.find(key); known != login.passphrases.end()) {
                    passphrase = known->second;
                } else if (!may_ask || !login.options.ask_secret ||
                           !login.options.ask_secret("Passphrase for key " + key + ": ", passphrase)) {
                    locked_key = key;
                    continue;
                }
            }
            tried.push_back(shown_path(login.home, key));
            const int rc = libssh2_userauth_publickey_fromfile_ex(session, user.c_str(), user_len, nullptr,
                                                                  key.c_str(), passphrase.c_str());
            if (rc == 0) {
                if (encrypted && may_ask)
                    login.passphrases[key] = passphrase;
                wipe(passphrase);
                return Errc::ok;
            }
            wipe(passphrase);
            if (rc == LIBSSH2_ERROR_FILE || rc == LIBSSH2_ERROR_KEYFILE_AUTH_FAILED) {
                if (encrypted) {
                    message = "wrong passphrase for key " + key;
                    return Errc::access;
                }
                LOG_WARN("%s: key %s is not in a format libssh2 can read", login.url.shown.c_str(), key.c_str());
            } else if (!session_survives(rc) && rc != LIBSSH2_ERROR_AUTHENTICATION_FAILED &&
                       rc != LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED) {
                message = "the server closed the connection during authentication (too many keys "
                          "offered? it counts them against MaxAuthTries): use -o identity=FILE";
                return Errc::access;
            }
        }
    }

    if (login.options.password_auth) {
        const bool kbd = methods.find("keyboard-interactive") != std::string::npos;
        const bool pwd = methods.find("password") != std::string::npos;
        if ((kbd || pwd) && login.password.empty() && may_ask && login.options.ask_secret)
            login.options.ask_secret("Password for " + user + "@" + login.url.host + ": ", login.password);
        if ((kbd || pwd) && !login.password.empty()) {
            tried.push_back("password");
            int rc = -1;
            if (kbd) {
                InteractiveContext context{&login.password};
                *libssh2_session_abstract(session) = &context;
                rc = libssh2_userauth_keyboard_interactive_ex(session, user.c_str(), user_len, &answer_prompts);
                *libssh2_session_abstract(session) = nullptr;
            }
            if (rc != 0 && pwd)
                rc = libssh2_userauth_password_ex(session, user.c_str(), user_len, login.password.c_str(),
                                                  static_cast<unsigned int>(login.password.size()), nullptr);
            if (rc == 0)
                return Errc::ok;
        }
    }

    if (!locked_key.empty() && tried.empty()) {
        message = "key " + locked_key +
                  " is encrypted and no terminal to ask its passphrase: load it into ssh-agent (ssh-add " +
                  locked_key + ")";
        return Errc::access;
    }
    std::string list;
    for (const auto& t : tried)
        list += (list.empty() ? "" : ", ") + t;
    message = "authentication failed as " + user + " (tried: " + (list.empty() ? "nothing usable" : list) +
              (locked_key.empty() ? "" : "; " + locked_key + " is encrypted and nobody could type its passphrase") +
              "; the server offers: " + methods + "): check the user name and key, or use -o identity=FILE";
    return Errc::access;
}

// ---- the pool ---------------------------------------------------------------

// The remote paths of the open files, kept current through this mount's
// renames and unlinks. A file is opened again by its path (a handle on a
// second connection, or after a reconnect), and that must find the same
// file; a file unlinked or replaced here is not opened again at all. A change
// made on the server by someone else cannot be seen: SFTP v3 has no file
// identity to check an open against (docs/remotes.md).
std::string name_args(std::string_view name);

class OpenPaths {
public:
    struct Entry {
        explicit Entry(std::string p) : path(std::move(p)) {}
        std::string path;
        bool gone = false;
        std::uint64_t epoch = 0;  // bumped as each change touching it begins and ends
    };

    void add(Entry& e) {
        std::lock_guard lock(mu_);
        entries_.emplace(e.path, &e);
    }
    void remove(Entry& e) {
        std::lock_guard lock(mu_);
        remove_locked(e);
    }

    // Where the file is now (empty once it is gone), and the epoch to give
    // settled(): an OPEN of that path reached the file if no rename or
    // unlink of it, or of a directory above it, was in flight from before
    // the OPEN was sent until it was answered.
    std::string path_of(const Entry& e, std::uint64_t& epoch) const {
        std::lock_guard lock(mu_);
        epoch = touched_locked(e.path) ? kUnsettled : e.epoch;
        return e.gone ? std::string() : e.path;
    }
    bool settled(const Entry& e, std::uint64_t epoch) const {
        std::lock_guard lock(mu_);
        return epoch != kUnsettled && epoch == e.epoch;
    }
    // Waits (at most `timeout`) until no change touching the file is in flight.
    void wait_settled(const Entry& e, milliseconds timeout) {
        std::unique_lock lock(mu_);
        settled_cv_.wait_for(lock, timeout, [&] { return !touched_locked(e.path); });
    }

    // What is at `p` (or below it) was unlinked or replaced, or may have
    // been (a change whose outcome is unknown): not opened by path again.
    void forget(const std::string& p) {
        std::lock_guard lock(mu_);
        forget_locked(p);
    }
    void renamed(const std::string& from, const std::string& to) {
        std::lock_guard lock(mu_);
        forget_locked(to);  // replaced (a directory there was empty)
        std::vector<Entry*> moved;
        for_each_at_locked(from, [&](Entry& e) { moved.push_back(&e); });
        for (Entry* e : moved) {
            remove_locked(*e);
            e->path = to + e->path.substr(from.size());
            entries_.emplace(e->path, e);
        }
    }
    // Which file an OPEN crossed by a change reached is not known: such a
    // file is not opened by path again.
    void mark_gone(Entry& e) {
        std::lock_guard lock(mu_);
        e.gone = true;
    }

    // An entry, registered for as long as this lives.
    class Registration {
    public:
        Registration(OpenPaths& paths, std::string path)
            : paths_(&paths), entry_(std::make_unique<Entry>(std::move(path))) {
            paths_->add(*entry_);
        }
        ~Registration() {
            if (entry_)
                paths_->remove(*entry_);
        }
        Registration(Registration&&) = default;
        Registration& operator=(Registration&&) = delete;
        Entry& entry() const { return *entry_; }

    private:
        OpenPaths* paths_;
        std::unique_ptr<Entry> entry_;
    };

    // A rename (from a to b) or unlink (of a, b = a) in flight, whatever
    // its outcome, for as long as it lives.
    class Change {
    public:
        Change(OpenPaths& paths, std::string a, std::string b) : paths_(paths), names_(std::move(a), std::move(b)) {
            std::lock_guard lock(paths_.mu_);
            paths_.changes_.push_back(names_);
            paths_.bump_locked(names_);
        }
        ~Change() {
            {
                std::lock_guard lock(paths_.mu_);
                paths_.changes_.erase(std::find(paths_.changes_.begin(), paths_.changes_.end(), names_));
                paths_.bump_locked(names_);
            }
            paths_.settled_cv_.notify_all();
        }
        Change(const Change&) = delete;
        Change& operator=(const Change&) = delete;

    private:
        OpenPaths& paths_;
        const std::pair<std::string, std::string> names_;
    };

private:
    static constexpr std::uint64_t kUnsettled = ~0ull;

    // `path` is `p` or below it.
    static bool at_or_below(const std::string& path, const std::string& p) {
        return path.starts_with(p) && (path.size() == p.size() || path[p.size()] == '/');
    }
    bool touched_locked(const std::string& path) const {
        return std::any_of(changes_.begin(), changes_.end(), [&](const auto& c) {
            return at_or_below(path, c.first) || at_or_below(path, c.second);
        });
    }
    // Every entry at `p` or below it (what is below a directory sorts together).
    template <class Fn>
    void for_each_at_locked(const std::string& p, Fn&& fn) {
        for (auto [it, end] = entries_.equal_range(p); it != end; ++it)
            fn(*it->second);
        const std::string dir = p + "/";
        for (auto it = entries_.lower_bound(dir); it != entries_.end() && it->first.starts_with(dir); ++it)
            fn(*it->second);
    }
    void forget_locked(const std::string& p) {
        for_each_at_locked(p, [](Entry& e) { e.gone = true; });
    }
    void bump_locked(const std::pair<std::string, std::string>& names) {
        for_each_at_locked(names.first, [](Entry& e) { e.epoch++; });
        if (names.second != names.first)
            for_each_at_locked(names.second, [](Entry& e) { e.epoch++; });
    }
    void remove_locked(Entry& e) {
        for (auto [it, end] = entries_.equal_range(e.path); it != end; ++it)
            if (it->second == &e) {
                entries_.erase(it);
                return;
            }
    }

    mutable std::mutex mu_;
    std::condition_variable settled_cv_;
    std::multimap<std::string, Entry*> entries_;
    std::vector<std::pair<std::string, std::string>> changes_;  // in flight
};

class Pool {
public:
    explicit Pool(std::unique_ptr<Login> login)
        : login_(std::move(login)),
          op_timeout_(milliseconds(static_cast<long long>(std::max(1.0, login_->options.op_timeout) * 1000))) {
        const std::size_t n = std::clamp<std::uint32_t>(login_->options.connections, 1, 64);
        for (std::size_t i = 0; i < n; ++i)
            connections_.push_back(std::make_unique<Connection>());
    }

    ~Pool() { stop(); }

    const Login& login() const { return *login_; }
    SizeGate& size_gate() { return size_gate_; }
    OpenPaths& open_paths() { return open_paths_; }
    std::size_t size() const { return connections_.size(); }
    Connection& at(std::size_t i) { return *connections_[i]; }
    milliseconds op_timeout() const { return op_timeout_; }

    // The first connection, made by open_sftp on the caller's thread so
    // that its errors reach the user; the others follow in the background.
    Errc connect_first(std::string& message) {
        Connection& c = *connections_[0];
        std::lock_guard lock(c.mu);
        const Errc e = connect(c, true, message);
        if (e == Errc::ok)
            state_ = ConnectionState::connected;
        return e;
    }

    void start() { thread_ = std::thread([this] { maintain(); }); }

    void stop() {
        {
            std::lock_guard lock(state_mu_);
            if (stopping_)
                return;
            stopping_ = true;
        }
        state_cv_.notify_all();
        if (thread_.joinable())
            thread_.join();
        for (auto& c : connections_) {
            std::lock_guard lock(c->mu);
            c->teardown(c->up.load());
            c->up = false;
        }
    }

    ConnectionState state() const {
        std::lock_guard lock(state_mu_);
        return state_;
    }

    // Locks a working connection for one request: `preferred` if it is up
    // (an open file's), else whichever is free. Waits while the pool
    // reconnects, never longer than op_timeout after the loss; then the
    // request was not sent (Errc::not_sent).
    Errc acquire(std::size_t preferred, std::unique_lock<std::mutex>& lock, std::size_t& index) {
        for (;;) {
            {
                std::unique_lock state(state_mu_);
                for (;;) {
                    if (stopping_)
                        return Errc::unreachable;
                    // (Before the state: the pool says "connected" again only
                    // after its whole round of reconnects.)
                    if (any_up())
                        break;
                    if (state_ == ConnectionState::unreachable)
                        return Errc::not_sent;
                    if (state_cv_.wait_until(state, lost_at_ + op_timeout_) == std::cv_status::timeout &&
                        !any_up()) {
                        set_state(ConnectionState::unreachable);
                        return Errc::not_sent;
                    }
                }
            }
            const std::size_t n = connections_.size();
            if (preferred < n && connections_[preferred]->up) {
                lock = std::unique_lock(connections_[preferred]->mu);
                if (connections_[preferred]->up) {
                    index = preferred;
                    return Errc::ok;
                }
                lock.unlock();
            }
            const std::size_t start = next_.fetch_add(1) % n;
            for (std::size_t k = 0; k < n; ++k) {
                Connection& c = *connections_[(start + k) % n];
                if (!c.up)
                    continue;
                lock = std::unique_lock(c.mu, std::try_to_lock);
                if (lock.owns_lock() && c.up) {
                    index = (start + k) % n;
                    return Errc::ok;
                }
                if (lock.owns_lock())
                    lock.unlock();
            }
            for (std::size_t k = 0; k < n; ++k) {  // all busy: queue on one that works
                Connection& c = *connections_[(start + k) % n];
                if (!c.up)
                    continue;
                lock = std::unique_lock(c.mu);
                if (c.up) {
                    index = (start + k) % n;
                    return Errc::ok;
                }
                lock.unlock();
            }
        }
    }

    // A libssh2 call on connection `c` failed with `rc`: the Errc for the
    // caller. A failure of the transport takes down the whole pool (all
    // connections go to the same server and share its fate) and returns
    // Errc::unreachable, which the engine retries.
    Errc fail(Connection& c, int rc) {
        if (session_survives(rc))
            return rc == LIBSSH2_ERROR_ALLOC ? Errc::io : Errc::invalid;
        char* text = nullptr;
        libssh2_session_last_error(c.session, &text, nullptr, 0);
        lose_all(text ? text : "connection failed");
        return Errc::unreachable;
    }

    void lose_all(const std::string& why) {
        std::lock_guard state(state_mu_);
        bool was_up = false;
        for (auto& c : connections_) {
            if (c->up.exchange(false)) {
                was_up = true;
                std::lock_guard lock(c->sock_mu);
                if (c->sock >= 0)
                    ::shutdown(c->sock, SHUT_RDWR);  // wakes a request blocked on it
            }
            c->next_attempt = Clock::now();
            c->backoff = milliseconds(0);
        }
        if (was_up && state_ == ConnectionState::connected) {
            lost_at_ = Clock::now();
            set_state(ConnectionState::reconnecting);
            LOG_WARN("%s: connection lost (%s); reconnecting", login_->url.shown.c_str(), why.c_str());
        }
        state_cv_.notify_all();
    }

    // Sends `requests` (built by c.sftp.add for `replies`) on connection c
    // of `generation` and waits for every answer. Returns with `lock` held:
    // ok once all are done (each Reply says how it went), else
    // Errc::unreachable or the error of a failed connection.
    Errc exchange(Connection& c, std::unique_lock<std::mutex>& lock, std::uint64_t generation,
                  std::string_view requests, std::span<Reply> replies) {
        return exchange(c, lock, generation, {&requests, 1}, replies, op_timeout_);
    }
    // The requests in pieces, sent in order (data sent from where it is).
    Errc exchange(Connection& c, std::unique_lock<std::mutex>& lock, std::uint64_t generation,
                  std::span<const std::string_view> requests, std::span<Reply> replies) {
        return exchange(c, lock, generation, requests, replies, op_timeout_);
    }

    // Waits for answers to requests that an exchange sent but did not wait
    // for; `timeout` 0 is the operation timeout. As exchange otherwise.
    Errc await_more(Connection& c, std::unique_lock<std::mutex>& lock, std::uint64_t generation,
                    std::span<Reply> replies, milliseconds timeout) {
        Batch batch;
        for (Reply& r : replies)
            if (!r.done) {
                r.batch = &batch;
                batch.remaining++;
            }
        return await(c, lock, generation, replies, batch, timeout.count() ? timeout : op_timeout_);
    }

    // Closes a handle of c's current session without waiting for the answer.
    void send_close(Connection& c, std::uint64_t generation, const std::string& handle) {
        if (!c.up || c.generation != generation || !c.sftp.is_open())
            return;  // a handle of an older session went with it
        std::string request;
        c.sftp.add(request, kFxpClose, name_args(handle), nullptr);
        if (const int rc = c.sftp.write_all(request); rc < 0)
            fail(c, rc);
    }

    // Sends requests (built by c.sftp.add for `replies`, c.mu held) whose
    // answers are waited for later, with await_more.
    Errc send(Connection& c, std::uint64_t generation, std::span<const std::string_view> requests,
              std::span<Reply> replies) {
        if (!c.up || c.generation != generation || !c.sftp.is_open()) {
            c.sftp.forget(replies);
            return Errc::unreachable;
        }
        if (const int rc = c.sftp.write_all(requests); rc < 0) {
            c.sftp.forget(replies);
            return fail(c, rc);
        }
        c.touch();
        return Errc::ok;
    }

private:
    Errc exchange(Connection& c, std::unique_lock<std::mutex>& lock, std::uint64_t generation,
                  std::span<const std::string_view> requests, std::span<Reply> replies, milliseconds timeout) {
        Batch batch;
        batch.remaining = replies.size();
        for (Reply& r : replies)
            r.batch = &batch;
        if (Errc e = send(c, generation, requests, replies); e != Errc::ok)
            return e;
        return await(c, lock, generation, replies, batch, timeout);
    }

    // c.mu is let go while nothing has arrived, so that other threads send
    // their requests and take their answers meanwhile: one waiter polls the
    // socket for everyone, the others sleep until their last answer is
    // handed to them (or the poller leaves and one of them takes over).
    Errc await(Connection& c, std::unique_lock<std::mutex>& lock, std::uint64_t generation, std::span<Reply> replies,
               Batch& batch, milliseconds timeout) {
        const auto deadline = Clock::now() + timeout;
        Errc result = Errc::ok;
        while (batch.remaining > 0) {
            if (!c.up || c.generation != generation || !c.sftp.is_open()) {
                result = Errc::unreachable;
                break;
            }
            if (const int rc = c.sftp.pump(c.session, c.sock, deadline); rc < 0) {
                c.sftp.forget(replies);
                result = fail(c, rc);
                break;
            }
            c.touch();
            if (batch.remaining == 0)
                break;
            if (Clock::now() >= deadline) {
                c.sftp.forget(replies);
                lose_all("no answer within " + std::to_string(timeout.count()) + " ms");
                result = Errc::unreachable;
                break;
            }
            if (!c.sftp.polling) {
                c.sftp.polling = true;
                pollfd p{c.sock, POLLIN, 0};
                lock.unlock();
                ::poll(&p, 1, static_cast<int>(kPollTick.count()));
                lock.lock();
                if (c.generation == generation)
                    c.sftp.polling = false;
            } else {
                // The tick covers answers another thread's libssh2 call
                // took off the socket.
                c.sftp.sleeping.push_back(&batch);
                batch.cv.wait_for(lock, kPollTick);
                std::erase(c.sftp.sleeping, &batch);
            }
        }
        if (result == Errc::ok && std::any_of(replies.begin(), replies.end(), [](const Reply& r) { return r.lost; }))
            result = Errc::unreachable;  // the channel closed under them
        if (result != Errc::ok)
            c.sftp.forget(replies);
        if (!c.sftp.polling && !c.sftp.sleeping.empty())
            c.sftp.sleeping.front()->cv.notify_one();  // the next poller
        return result;
    }

    bool any_up() const {
        return std::any_of(connections_.begin(), connections_.end(), [](const auto& c) { return c->up.load(); });
    }

    void set_state(ConnectionState s) {
        if (s == state_)
            return;
        state_ = s;
        state_cv_.notify_all();
    }

    // TCP, SSH handshake, host key, login, SFTP: all within connect_timeout.
    // Caller holds c.mu.
    Errc connect(Connection& c, bool may_ask, std::string& message) {
        c.teardown(false);
        const Login& login = *login_;
        const auto budget = milliseconds(static_cast<long long>(std::max(0.1, login.options.connect_timeout) * 1000));
        const auto deadline = Clock::now() + budget;
        int fd = -1;
        if (Errc e = dial(login, deadline, fd, message); e != Errc::ok)
            return e;
        {
            std::lock_guard lock(c.sock_mu);
            c.sock = fd;
        }
        c.session = libssh2_session_init();
        if (!c.session) {
            message = "out of memory";
            return Errc::io;
        }
        libssh2_session_set_blocking(c.session, 1);
        const auto left = [&] {
            return std::max<long long>(1, std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count());
        };
        libssh2_session_set_timeout(c.session, static_cast<long>(left()));
        const std::string where = login.url.host + " port " + std::to_string(login.port);
        if (int rc = libssh2_session_handshake(c.session, fd); rc != 0) {
            char* text = nullptr;
            libssh2_session_last_error(c.session, &text, nullptr, 0);
            message = rc == LIBSSH2_ERROR_TIMEOUT || rc == LIBSSH2_ERROR_SOCKET_TIMEOUT
                          ? "no SSH greeting from " + where + " within " +
                                std::to_string(static_cast<int>(login.options.connect_timeout)) +
                                " s (is that an SSH server? if it is slow, raise -o connect_timeout)"
                          : "SSH handshake with " + where + " failed (" + (text ? text : "?") +
                                "): is that an SSH server?";
            c.teardown(false);
            return Errc::unreachable;
        }
        if (Errc e = check_host_key(login, c.session, message); e != Errc::ok) {
            c.teardown(false);
            return e;
        }
        libssh2_session_set_timeout(c.session, static_cast<long>(left()));
        if (Errc e = authenticate(*login_, c.session, may_ask, message); e != Errc::ok) {
            c.teardown(false);
            return e;
        }
        libssh2_session_set_timeout(c.session, static_cast<long>(left()));
        if (!c.sftp.open(c.session)) {
            message = "the server refused an SFTP session (is its sftp subsystem enabled?)";
            c.teardown(false);
            return Errc::not_supported;
        }
        libssh2_keepalive_config(c.session, 1, 2);
        libssh2_session_set_timeout(c.session, static_cast<long>(op_timeout_.count()));
        c.generation++;
        c.touch();
        c.up = true;
        return Errc::ok;
    }

    // Is the connection still answering? One SFTP round trip with a short
    // timeout (a keepalive alone cannot tell: libssh2 does not wait for its
    // reply); any answer will do. Caller holds c.mu through `lock`.
    bool heartbeat(Connection& c, std::unique_lock<std::mutex>& lock) {
        int next = 0;
        if (libssh2_keepalive_send(c.session, &next) != 0)
            return false;
        Packet args;
        args.str(login_->root);
        Reply reply;
        std::string request;
        c.sftp.add(request, kFxpStat, args.bytes, &reply);
        const std::string_view wire = request;
        return exchange(c, lock, c.generation, {&wire, 1}, {&reply, 1}, kHeartbeatTimeout) == Errc::ok;
    }

    void maintain() {
        std::string last_failure;
        for (;;) {
            {
                std::unique_lock state(state_mu_);
                if (stopping_)
                    return;
            }
            bool dial_failed = false;  // skip the rest of a round when the server is down
            for (auto& cp : connections_) {
                Connection& c = *cp;
                bool due;
                {
                    std::lock_guard state(state_mu_);
                    due = Clock::now() >= c.next_attempt;
                }
                if (!c.up && !dial_failed && due) {
                    std::lock_guard lock(c.mu);
                    std::string message;
                    const Errc e = connect(c, false, message);
                    std::lock_guard state(state_mu_);
                    if (e == Errc::ok) {
                        c.backoff = milliseconds(0);
                        last_failure.clear();
                    } else {
                        dial_failed = true;
                        c.backoff = std::min(kMaxBackoff, std::max(milliseconds(250), c.backoff * 2));
                        c.next_attempt = Clock::now() + c.backoff;
                        if (message != last_failure)
                            LOG_WARN("%s: %s", login_->url.shown.c_str(), message.c_str());
                        last_failure = message;
                    }
                } else if (c.up && c.idle() >= kHeartbeatIdle) {
                    std::unique_lock lock(c.mu, std::try_to_lock);
                    if (lock.owns_lock() && c.up && !heartbeat(c, lock)) {
                        lock.unlock();
                        lose_all("no answer to a heartbeat");
                    }
                }
            }
            std::unique_lock state(state_mu_);
            if (any_up()) {
                if (state_ != ConnectionState::connected && state_ != ConnectionState::unreachable)
                    LOG_INFO("%s: reconnected", login_->url.shown.c_str());
                else if (state_ == ConnectionState::unreachable)
                    LOG_INFO("%s: reachable again", login_->url.shown.c_str());
                set_state(ConnectionState::connected);
            } else if (state_ == ConnectionState::reconnecting && Clock::now() >= lost_at_ + op_timeout_) {
                LOG_WARN("%s: still unreachable after %lld s: requests fail until it is back",
                         login_->url.shown.c_str(), static_cast<long long>(op_timeout_.count() / 1000));
                set_state(ConnectionState::unreachable);
            }
            if (!stopping_)
                state_cv_.wait_for(state, milliseconds(250));
        }
    }

    std::unique_ptr<Login> login_;
    SizeGate size_gate_;
    OpenPaths open_paths_;
    const milliseconds op_timeout_;
    std::vector<std::unique_ptr<Connection>> connections_;  // constant after construction
    std::atomic<std::size_t> next_{0};

    // Lock order: Connection::mu, then state_mu_, then Connection::sock_mu.
    mutable std::mutex state_mu_;
    std::condition_variable state_cv_;
    ConnectionState state_ = ConnectionState::reconnecting;
    Clock::time_point lost_at_ = Clock::now();
    bool stopping_ = false;
    std::thread thread_;
};

// The remote path of a backend path: "/" is the URL's directory.
std::string join(const std::string& root, const std::string& path) {
    if (path.empty() || path == "/")
        return root;
    return root == "/" ? path : root + path;
}

// ---- requests -------------------------------------------------------------------

std::string handle_of(const Reply& reply) {
    Reader r{reply.body};
    return std::string(r.str());
}

// The Errc of a request whose answer was not the one expected.
Errc unexpected(const Reply& reply) {
    const Errc e = status_errc(reply);
    return e == Errc::ok ? Errc::io : e;
}

// The attributes in an ATTRS answer.
Errc attrs_of(const Reply& reply, Attr& out) {
    if (reply.type != kFxpAttrs)
        return unexpected(reply);
    Reader r{reply.body};
    LIBSSH2_SFTP_ATTRIBUTES a{};
    if (!decode_attrs(r, a))
        return Errc::io;
    out = to_attr(a);
    return Errc::ok;
}

// The arguments of a request that names one path or handle.
std::string name_args(std::string_view name) {
    Packet p;
    p.str(name);
    return std::move(p.bytes);
}

// A connection held by one backend call, and the generation it had then.
// The call's requests go out on the connection's channel and it waits for
// their answers without holding the connection (Pool::exchange), so the
// requests of every thread are in flight together. All of one call's
// requests go to one connection: the server answers them in the order
// sent, so requests go out back to back when a later one does not need an
// earlier one's answer (OPEN then LSTAT of the name it creates).
class ConnectionHold {
public:
    explicit ConnectionHold(Pool& pool) : pool_(pool) {}

    Errc acquire() {
        if (Errc e = pool_.acquire(kAnyConnection, lock_, index_); e != Errc::ok)
            return e;
        c_ = &pool_.at(index_);
        generation_ = c_->generation;
        c_->touch();
        return Errc::ok;
    }

    std::size_t index() const { return index_; }
    std::uint64_t generation() const { return generation_; }
    bool offers(const std::string& extension) const { return c_->sftp.offers(extension); }
    const std::set<std::string>& extensions() const { return c_->sftp.extensions(); }

    struct Request {
        std::uint8_t type;
        std::string_view arguments;
    };

    // Sends `requests` back to back and waits for every answer: replies[i]
    // receives the answer to requests[i]. ok once all are answered (each
    // Reply says how), else the failure of the connection.
    Errc exchange(std::span<const Request> requests, std::span<Reply> replies) {
        std::string bytes;
        Reply* reply = replies.data();
        for (const Request& r : requests)
            c_->sftp.add(bytes, r.type, r.arguments, reply++);
        return pool_.exchange(*c_, lock_, generation_, bytes, replies);
    }
    Errc exchange(std::initializer_list<Request> requests, std::span<Reply> replies) {
        return exchange(std::span<const Request>(requests.begin(), requests.size()), replies);
    }

    Errc call(std::uint8_t type, std::string_view arguments, Reply& reply) {
        return exchange({{type, arguments}}, {&reply, 1});
    }

    // Sends `requests` back to back, answered into `first` and then `rest`
    // in order, and waits for the answers of `first` only. The rest must
    // then be waited for with await_rest, before this hold goes.
    Errc exchange_first(std::initializer_list<Request> requests, std::span<Reply> first, std::span<Reply> rest) {
        std::string bytes;
        std::size_t i = 0;
        for (const Request& r : requests) {
            c_->sftp.add(bytes, r.type, r.arguments, i < first.size() ? &first[i] : &rest[i - first.size()]);
            ++i;
        }
        const Errc e = pool_.exchange(*c_, lock_, generation_, bytes, first);
        if (e != Errc::ok)
            c_->sftp.forget(rest);
        return e;
    }

    Errc await_rest(std::span<Reply> rest, milliseconds timeout) {
        return pool_.await_more(*c_, lock_, generation_, rest, timeout);
    }

    // A request answered by a status (or by an extension's reply): its Errc.
    Errc status(std::uint8_t type, std::string_view arguments) {
        Reply reply;
        const Errc e = call(type, arguments, reply);
        return e == Errc::ok ? status_errc(reply) : e;
    }

    // Closes a handle, not waiting for the answer.
    void send_close(const std::string& handle) { pool_.send_close(*c_, generation_, handle); }

private:
    Pool& pool_;
    std::unique_lock<std::mutex> lock_;
    std::size_t index_ = 0;
    Connection* c_ = nullptr;
    std::uint64_t generation_ = 0;
};

// lstat semantics: a symbolic link is described, not followed.
Errc lstat(ConnectionHold& h, const std::string& p, Attr& out) {
    Reply reply;
    if (Errc e = h.call(kFxpLstat, name_args(p), reply); e != Errc::ok)
        return e;
    return attrs_of(reply, out);
}

// statvfs@openssh.com of the file system holding `p`; not_supported
// without the extension.
Errc statvfs(ConnectionHold& h, const std::string& p, StatFs& out) {
    if (!h.offers("statvfs@openssh.com"))
        return Errc::not_supported;
    Packet args;
    args.str("statvfs@openssh.com");
    args.str(p);
    Reply reply;
    if (Errc e = h.call(kFxpExtended, args.bytes, reply); e != Errc::ok)
        return e;
    if (reply.type != kFxpExtendedReply)
        return unexpected(reply);
    Reader r{reply.body};
    const std::uint64_t bsize = r.u64(), frsize = r.u64();
    out.blocks = r.u64();
    out.blocks_free = r.u64();
    out.blocks_avail = r.u64();
    out.files = r.u64();
    out.files_free = r.u64();
    r.u64();  // favail
    r.u64();  // fsid
    r.u64();  // flag
    const std::uint64_t name_max = r.u64();
    if (!r.ok)
        return Errc::io;
    out.block_size = frsize ? frsize : bsize;
    out.name_max = static_cast<std::uint32_t>(name_max ? name_max : 255);
    return Errc::ok;
}

// ---- files ------------------------------------------------------------------

// Holds `bytes` of a connection's reads in flight for its lifetime; waits
// while the connection has kMaxReadsInFlight asked for already.
class ReadBudget {
public:
    ReadBudget(Connection& c, std::size_t bytes) : c_(c), bytes_(bytes) {
        std::unique_lock lock(c.reads_mu);
        c.reads_cv.wait(lock, [&] { return c.reads_in_flight == 0 || c.reads_in_flight + bytes <= kMaxReadsInFlight; });
        c.reads_in_flight += bytes;
    }
    ~ReadBudget() {
        {
            std::lock_guard lock(c_.reads_mu);
            c_.reads_in_flight -= bytes_;
        }
        c_.reads_cv.notify_all();
    }
    ReadBudget(const ReadBudget&) = delete;
    ReadBudget& operator=(const ReadBudget&) = delete;

private:
    Connection& c_;
    const std::size_t bytes_;
};

class SftpFile : public BackendFile {
public:
    SftpFile(std::shared_ptr<Pool> pool, std::size_t index, std::string handle, std::uint64_t generation,
             OpenPaths::Registration where, unsigned long flags)
        : pool_(std::move(pool)), where_(std::move(where)),
          // Another open of the file must not create, truncate or fail on
          // the file the first one made.
          reopen_flags_(flags & ~(LIBSSH2_FXF_CREAT | LIBSSH2_FXF_TRUNC | LIBSSH2_FXF_EXCL)), home_(index),
          handles_(pool_->size()) {
        handles_[index] = {std::move(handle), generation};
    }

    ~SftpFile() override { close(); }

    // What the LSTAT sent with the OPEN found (a regular file, then).
    void set_opened_attr(const Attr& attr) { opened_attr_ = attr; }
    bool opened_attr(Attr& out) const override {
        if (!opened_attr_)
            return false;
        out = *opened_attr_;
        return true;
    }

    Errc read(std::uint64_t offset, std::span<std::byte> buf, std::size_t& transferred) override {
        transferred = 0;
        while (transferred < buf.size()) {
            std::size_t got = 0;
            bool end = false;
            if (Errc e = read_some(offset + transferred, buf.subspan(transferred), got, end); e != Errc::ok)
                return e;
            transferred += got;
            if (end || got == 0)
                break;
        }
        return Errc::ok;
    }

    Errc write(std::uint64_t offset, std::span<const std::byte> data, std::size_t& transferred) override {
        transferred = 0;
        std::size_t chunk = kSafeWriteChunk;  // the connection's, known once it is chosen
        std::vector<Reply> replies;
        const auto piece = [&](std::size_t i) {
            return std::string_view(reinterpret_cast<const char*>(data.data()) + i * chunk,
                                    std::min<std::size_t>(chunk, data.size() - i * chunk));
        };
        Errc e = with_handle(connection_for(offset), [&](Connection& c, std::unique_lock<std::mutex>& lock, const std::string& handle,
                                 std::uint64_t generation) {
            chunk = c.sftp.write_chunk();
            const std::size_t n = (data.size() + chunk - 1) / chunk;
            replies = std::vector<Reply>(n);
            // Each request's header, then its data straight from the caller's
            // buffer: no copy of the data, no fresh pages for one.
            std::string headers;
            std::vector<std::size_t> ends(n);
            for (std::size_t i = 0; i < n; ++i) {
                Packet args;
                args.str(handle);
                args.u64(offset + i * chunk);
                args.u32(static_cast<std::uint32_t>(piece(i).size()));
                c.sftp.add(headers, kFxpWrite, args.bytes, &replies[i], piece(i).size());
                ends[i] = headers.size();
            }
            std::vector<std::string_view> wire;
            wire.reserve(2 * n);
            for (std::size_t i = 0; i < n; ++i) {
                const std::size_t start = i ? ends[i - 1] : 0;
                wire.push_back(std::string_view(headers).substr(start, ends[i] - start));
                wire.push_back(piece(i));
            }
            return pool_->exchange(c, lock, generation, wire, replies);
        });
        if (e != Errc::ok)
            return e;
        // Acknowledged in order from the start: a failed piece ends the run.
        for (std::size_t i = 0; i < replies.size(); ++i) {
            if (Errc s = replies[i].type == kFxpStatus ? status_errc(replies[i]) : Errc::io; s != Errc::ok)
                return s == Errc::io ? write_failure() : s;
            transferred += piece(i).size();
        }
        return Errc::ok;
    }

    Errc fsync(bool) override {
        Reply reply;
        bool supported = true;
        // On the file's first handle: a server's fsync makes the file
        // durable, whichever of its descriptors the writes came through.
        Errc e = with_handle(home_, [&](Connection& c, std::unique_lock<std::mutex>& lock, const std::string& handle,
                                 std::uint64_t generation) {
            if (!c.sftp.offers("fsync@openssh.com")) {
                supported = false;
                return Errc::ok;
            }
            Packet args;
            args.str("fsync@openssh.com");
            args.str(handle);
            std::string request;
            c.sftp.add(request, kFxpExtended, args.bytes, &reply);
            return pool_->exchange(c, lock, generation, request, {&reply, 1});
        });
        if (e == Errc::ok && supported)
            e = status_errc(reply);
        if (e == Errc::not_supported || (e == Errc::ok && !supported)) {
            // Without fsync@openssh.com there is no way to ask: the data
            // is with the server, as far as SFTP can tell.
            static std::once_flag warned;
            std::call_once(warned, [&] {
                LOG_WARN("%s: the server has no fsync@openssh.com: fsync cannot make data durable",
                         pool_->login().url.shown.c_str());
            });
            return Errc::ok;
        }
        return e;
    }

    Errc getattr(Attr& out) override {
        GateHold settled(pool_->size_gate(), SizeGate::Kind::attrs);
        Reply reply;
        Errc e = with_handle(home_, [&](Connection& c, std::unique_lock<std::mutex>& lock, const std::string& handle,
                                 std::uint64_t generation) {
            return fstat(*pool_, c, lock, generation, handle, reply);
        });
        if (e != Errc::ok)
            return e;
        LIBSSH2_SFTP_ATTRIBUTES a{};
        if (reply.type != kFxpAttrs)
            return unexpected(reply);
        Reader r{reply.body};
        if (!decode_attrs(r, a))
            return Errc::io;
        out = to_attr(a);
        return Errc::ok;
    }

    Errc truncate(std::uint64_t size) override {
        GateHold change(pool_->size_gate(), SizeGate::Kind::change);
        Reply reply;
        Errc e = with_handle(home_, [&](Connection& c, std::unique_lock<std::mutex>& lock, const std::string& handle,
                                 std::uint64_t generation) {
            Packet args;
            args.str(handle);
            args.u32(kAttrSize);
            args.u64(size);
            std::string request;
            c.sftp.add(request, kFxpFsetstat, args.bytes, &reply);
            return pool_->exchange(c, lock, generation, request, {&reply, 1});
        });
        return e == Errc::ok ? status_errc(reply) : e;
    }

    Errc close() override {
        std::vector<std::pair<std::size_t, Handle>> open;
        {
            std::lock_guard file(file_mu_);
            if (closed_ || !pool_)
                return Errc::ok;
            closed_ = true;
            for (std::size_t i = 0; i < handles_.size(); ++i)
                if (!handles_[i].id.empty())
                    open.emplace_back(i, std::move(handles_[i]));
        }
        if (open.empty())
            return Errc::ok;
        GateHold io(pool_->size_gate(), SizeGate::Kind::io);
        // Every handle's CLOSE goes out before any answer is waited for:
        // one round trip, however many connections the file was spread over.
        std::vector<Reply> replies(open.size());
        std::vector<bool> sent(open.size());
        Errc result = Errc::ok;
        for (std::size_t k = 0; k < open.size(); ++k) {
            Connection& c = pool_->at(open[k].first);
            std::lock_guard lock(c.mu);
            // A handle of an older session went with it; nothing to close.
            if (!c.up || c.generation != open[k].second.generation)
                continue;
            std::string request;
            c.sftp.add(request, kFxpClose, name_args(open[k].second.id), &replies[k]);
            const std::string_view piece = request;
            const Errc e = pool_->send(c, open[k].second.generation, {&piece, 1}, {&replies[k], 1});
            sent[k] = e == Errc::ok;
            if (e != Errc::ok && e != Errc::unreachable && result == Errc::ok)
                result = e;
        }
        for (std::size_t k = 0; k < open.size(); ++k) {
            if (!sent[k])
                continue;
            Connection& c = pool_->at(open[k].first);
            std::unique_lock lock(c.mu);
            Errc e = pool_->await_more(c, lock, open[k].second.generation, {&replies[k], 1}, milliseconds(0));
            if (e == Errc::unreachable)
                continue;  // the handle is gone with its connection
            if (e == Errc::ok)
                e = status_errc(replies[k]);
            if (result == Errc::ok)
                result = e;
        }
        return result;
    }

    // FSTAT of `handle` on c's channel.
    static Errc fstat(Pool& pool, Connection& c, std::unique_lock<std::mutex>& lock, std::uint64_t generation,
                      const std::string& handle, Reply& reply) {
        Packet args;
        args.str(handle);
        std::string request;
        c.sftp.add(request, kFxpFstat, args.bytes, &reply);
        return pool.exchange(c, lock, generation, request, {&reply, 1});
    }

private:
    // One round of READs, all in flight at once. `end`: the
    // end of the file was met; `got` may be short without it when the
    // server answered a piece short (the caller goes on from there).
    Errc read_some(std::uint64_t offset, std::span<std::byte> buf, std::size_t& got, bool& end) {
        got = 0;
        end = false;
        std::vector<Reply> replies;
        const std::size_t index = connection_for(offset);
        ReadBudget budget(pool_->at(index), buf.size());
        Errc e = with_handle(index, [&](Connection& c, std::unique_lock<std::mutex>& lock, const std::string& handle,
                                 std::uint64_t generation) {
            const std::size_t chunk = c.sftp.read_chunk();
            const std::size_t n = (buf.size() + chunk - 1) / chunk;
            replies = std::vector<Reply>(n);
            std::string requests;
            requests.reserve(n * (32 + handle.size()));
            for (std::size_t i = 0; i < n; ++i) {
                replies[i].into = reinterpret_cast<char*>(buf.data()) + i * chunk;
                replies[i].capacity = std::min<std::size_t>(chunk, buf.size() - i * chunk);
                Packet args;
                args.str(handle);
                args.u64(offset + i * chunk);
                args.u32(static_cast<std::uint32_t>(replies[i].capacity));
                c.sftp.add(requests, kFxpRead, args.bytes, &replies[i]);
            }
            return pool_->exchange(c, lock, generation, requests, replies);
        });
        if (e != Errc::ok)
            return e;
        const std::size_t n = replies.size();
        for (std::size_t i = 0; i < n; ++i) {
            const Reply& r = replies[i];
            if (r.type == kFxpStatus && r.status == kFxEof) {
                end = true;
                return Errc::ok;
            }
            if (r.type != kFxpData)
                return unexpected(r);
            got += r.got;
            if (r.got < r.capacity) {
                // OpenSSH answers short only at the end of the file: when
                // nothing after this piece says otherwise, that is where we are.
                end = i + 1 == n || replies[i + 1].type != kFxpData;
                return Errc::ok;
            }
        }
        return Errc::ok;
    }

    // The connection for I/O at `offset`. A large file's reads and writes are
    // spread over the pool, each request to the next connection in turn,
    // so that one stream is not held to one connection's flow-control
    // window (2 MiB from OpenSSH's sshd: 100 MB/s at 20 ms) nor to one
    // thread's cipher. (In turn, not by offset: reintegration writes 8 MiB
    // at a time, which offsets in megabytes would put all on one.) The
    // file's first megabyte (all of a small file) stays on the connection
    // it was opened on.
    std::size_t connection_for(std::uint64_t offset) {
        if (!spread_ || offset < kIoSize)
            return home_;
        return (home_ + 1 + turn_.fetch_add(1, std::memory_order_relaxed)) % handles_.size();
    }

    // Runs `op` with a handle of this file on connection `want`, or on
    // another working one when it is down. A connection without a handle
    // of the file (a second one, or a rebuilt one) opens the file by its
    // path first; one that cannot (the file was unlinked) falls back to
    // the file's first connection.
    template <class Op>
    Errc with_handle(std::size_t want, Op&& op) {
        {
            std::lock_guard file(file_mu_);
            if (closed_)
                return Errc::bad_handle;
        }
        GateHold io(pool_->size_gate(), SizeGate::Kind::io);
        for (;;) {
            std::unique_lock<std::mutex> lock;
            std::size_t index = 0;
            if (Errc e = pool_->acquire(want, lock, index); e != Errc::ok)
                return e;
            Connection& c = pool_->at(index);
            const std::uint64_t generation = c.generation;
            std::string handle;
            bool reconnected = false;
            {
                std::lock_guard file(file_mu_);
                if (closed_)
                    return Errc::bad_handle;
                const Handle& h = handles_[index];
                if (!h.id.empty() && h.generation == generation)
                    handle = h.id;
                reconnected = !h.id.empty();
            }
            if (handle.empty()) {
                std::uint64_t epoch = 0;
                const std::string path = pool_->open_paths().path_of(where_.entry(), epoch);
                // A rename or unlink of the file (or of a directory above
                // it) in flight, or one that crossed the OPEN, which may
                // then have opened another file: a second handle's request
                // goes to the first handle instead; a reopen (which has no
                // other) waits for the change to end and opens again.
                const auto crossed = [&] {
                    if (want == home_) {
                        lock.unlock();
                        pool_->open_paths().wait_settled(where_.entry(), pool_->op_timeout());
                    }
                    want = home_;
                };
                if (!path.empty() && !pool_->open_paths().settled(where_.entry(), epoch)) {
                    crossed();
                    continue;
                }
                // A reader's second handle must open the file its first did:
                // the LSTAT right behind the OPEN sees what it opened, and
                // a size or mtime other than at the first open means the
                // file was changed or replaced on the server since. The
                // reader then stays on its first handle. (A writer's own
                // writes change both: it cannot be checked this way.)
                const bool check = want != home_ && opened_attr_ && !(reopen_flags_ & LIBSSH2_FXF_WRITE);
                std::array<Reply, 2> replies;
                Errc e = Errc::bad_handle;
                if (!path.empty()) {
                    Packet args;
                    args.str(path);
                    args.u32(static_cast<std::uint32_t>(reopen_flags_));
                    args.u32(0);  // no attributes
                    std::string request;
                    c.sftp.add(request, kFxpOpen, args.bytes, &replies[0]);
                    if (check)
                        c.sftp.add(request, kFxpLstat, name_args(path), &replies[1]);
                    if (e = pool_->exchange(c, lock, generation, request, {replies.data(), check ? 2u : 1u});
                        e != Errc::ok)
                        return e;
                    e = replies[0].type == kFxpHandle ? Errc::ok : unexpected(replies[0]);
                }
                Attr now;
                if (e == Errc::ok && check &&
                    (attrs_of(replies[1], now) != Errc::ok || now.size != opened_attr_->size ||
                     now.mtime.tv_sec != opened_attr_->mtime.tv_sec)) {
                    pool_->send_close(c, generation, handle_of(replies[0]));
                    e = Errc::bad_handle;
                }
                if (e == Errc::ok && !pool_->open_paths().settled(where_.entry(), epoch)) {
                    pool_->send_close(c, generation, handle_of(replies[0]));
                    crossed();
                    continue;
                }
                if (e != Errc::ok) {
                    if (want != home_) {
                        // No second handle for this file: its I/O stays on
                        // the first from now on.
                        spread_ = false;
                        want = home_;
                        continue;
                    }
                    return e == Errc::not_found ? Errc::bad_handle : e;
                }
                handle = handle_of(replies[0]);
                std::lock_guard file(file_mu_);
                Handle& h = handles_[index];
                if (closed_ || (!h.id.empty() && h.generation == generation)) {
                    // Closed meanwhile, or another thread opened it here
                    // meanwhile: this handle is not needed.
                    pool_->send_close(c, generation, handle);
                    if (closed_)
                        return Errc::bad_handle;
                    handle = h.id;
                } else {
                    h = {handle, generation};
                    if (reconnected)
                        LOG_INFO("%s: reopened %s after a reconnect", pool_->login().url.shown.c_str(),
                                 path.c_str());
                }
            }
            c.touch();
            return op(c, lock, handle, generation);
        }
    }

    // OpenSSH reports ENOSPC and EDQUOT as a bare FAILURE.
    Errc write_failure() {
        ConnectionHold h(*pool_);
        if (h.acquire() != Errc::ok)
            return Errc::io;
        StatFs st;
        if (statvfs(h, pool_->login().root, st) == Errc::ok && st.blocks_avail == 0)
            return Errc::no_space;
        return Errc::io;
    }

    struct Handle {
        std::string id;               // empty: none on that connection
        std::uint64_t generation = 0;  // the connection's when it was opened
    };

    std::shared_ptr<Pool> pool_;
    OpenPaths::Registration where_;  // the file's path, kept current
    const unsigned long reopen_flags_;
    const std::size_t home_;  // the connection it was opened on
    // Lock order: Connection::mu, then file_mu_.
    std::mutex file_mu_;
    std::vector<Handle> handles_;  // by connection
    bool closed_ = false;
    std::atomic<bool> spread_ = true;  // false: the file's I/O stays on its first handle
    std::atomic<std::size_t> turn_ = 0;  // connection_for's rotation
    std::optional<Attr> opened_attr_;
};

// ---- the backend --------------------------------------------------------------

class SftpBackend : public Backend {
public:
    explicit SftpBackend(std::shared_ptr<Pool> pool) : pool_(std::move(pool)) {}
    ~SftpBackend() override { pool_->stop(); }

    ConnectionState connection_state() const override { return pool_->state(); }

    std::string describe() const override {
        const Login& l = pool_->login();
        return "sftp://" + l.user + "@" + l.url.host + (l.port == 22 ? "" : ":" + std::to_string(l.port)) + l.root;
    }

    BackendLimits limits() const override {
        BackendLimits limits;
        limits.rsize = limits.rsize_max = kIoSize;
        limits.wsize = kIoSize;
        limits.wsize_max = kMaxWrite;
        // A connection carries many requests at once (SftpChannel): enough
        // threads to keep one stream's reads in flight over a long round trip.
        limits.max_in_flight = static_cast<std::uint32_t>(std::max<std::size_t>(8, 2 * pool_->size()));
        limits.has_file_id = false;     // SFTP v3 has no inode numbers
        limits.has_change_attr = false;
        limits.open_reports_attr = true;  // the LSTAT sent with each OPEN
        return limits;
    }

    Errc getattr(const std::string& path, Attr& out) override {
        GateHold settled(pool_->size_gate(), SizeGate::Kind::attrs);
        return run([&](ConnectionHold& h) { return lstat(h, remote(path), out); });
    }

    Errc readdir(const std::string& path, std::vector<DirEntry>& out) override {
        GateHold settled(pool_->size_gate(), SizeGate::Kind::attrs);
        return run([&](ConnectionHold& h) { return list(h, remote(path), out, false); });
    }

    Errc open(const std::string& path, int flags, std::unique_ptr<BackendFile>& out) override {
        return open_file(path, to_sftp_flags(flags), 0, out, nullptr);
    }

    Errc create(const std::string& path, std::uint32_t mode, int flags, std::unique_ptr<BackendFile>& out,
                Attr& attr) override {
        unsigned long f = to_sftp_flags(flags) | LIBSSH2_FXF_CREAT;
        if (flags & O_EXCL)
            f |= LIBSSH2_FXF_EXCL;
        return open_file(path, f, mode & 07777, out, &attr);
    }

    Errc mknod(const std::string& path, std::uint32_t mode, std::uint64_t, Attr& attr) override {
        if (!S_ISREG(mode))
            return Errc::not_supported;  // SFTP creates only files, directories and links
        std::unique_ptr<BackendFile> file;
        if (Errc e = create(path, mode, O_WRONLY | O_EXCL, file, attr); e != Errc::ok)
            return e;
        return file->close();
    }

    Errc mkdir(const std::string& path, std::uint32_t mode, Attr& attr) override {
        return run([&](ConnectionHold& h) {
            const std::string p = remote(path);
            Packet args;
            args.str(p);
            args.u32(kAttrPermissions);
            args.u32(mode & 07777);
            Errc e = made(h, {kFxpMkdir, args.bytes}, p, attr);
            if (e != Errc::ok)
                return e;
            return undo_server_umask(h, kFxpSetstat, p, mode, attr);
        });
    }

    Errc symlink(const std::string& target, const std::string& path, Attr& attr) override {
        return run([&](ConnectionHold& h) {
            const std::string p = remote(path);
            // OpenSSH swaps SSH_FXP_SYMLINK's arguments against the draft:
            // it reads the target first, then the link.
            Packet args;
            args.str(target);
            args.str(p);
            return made(h, {kFxpSymlink, args.bytes}, p, attr);
        });
    }

    Errc link(const std::string& existing, const std::string& path, Attr& attr) override {
        return run([&](ConnectionHold& h) {
            if (!h.offers("hardlink@openssh.com"))
                return Errc::not_supported;
            const std::string to = remote(path);
            Packet args;
            args.str("hardlink@openssh.com");
            args.str(remote(existing));
            args.str(to);
            return made(h, {kFxpExtended, args.bytes}, to, attr);
        });
    }

    Errc readlink(const std::string& path, std::string& target) override {
        return run([&](ConnectionHold& h) {
            const std::string p = remote(path);
            Reply reply;
            if (Errc e = h.call(kFxpReadlink, name_args(p), reply); e != Errc::ok)
                return e;
            if (reply.type != kFxpName) {
                const Errc e = unexpected(reply);
                if (e == Errc::not_found || e == Errc::io) {
                    Attr a;
                    if (lstat(h, p, a) == Errc::ok && !S_ISLNK(a.mode))
                        return Errc::invalid;  // EINVAL: not a symbolic link
                }
                return e;
            }
            Reader r{reply.body};
            const std::uint32_t count = r.u32();
            const std::string_view text = r.str();
            if (!r.ok || count != 1)
                return Errc::io;
            target.assign(text);
            return Errc::ok;
        });
    }

    Errc unlink(const std::string& path) override {
        const std::string p = remote(path);
        OpenPaths::Change change(pool_->open_paths(), p, p);
        return run([&](ConnectionHold& h) {
            const Errc e = h.status(kFxpRemove, name_args(p));
            if (e == Errc::ok || e == Errc::unreachable)  // gone, or maybe (the connection was lost)
                pool_->open_paths().forget(p);
            Attr a;
            if (e == Errc::io && lstat(h, p, a) == Errc::ok && S_ISDIR(a.mode))
                return Errc::is_dir;
            return e;
        });
    }

    Errc rmdir(const std::string& path) override {
        return run([&](ConnectionHold& h) {
            const std::string p = remote(path);
            const Errc e = h.status(kFxpRmdir, name_args(p));
            if (e != Errc::io && e != Errc::not_found)
                return e;
            // OpenSSH says only FAILURE (or NO_SUCH_FILE for ENOTDIR): find out which.
            Attr a;
            if (lstat(h, p, a) != Errc::ok)
                return e;
            if (!S_ISDIR(a.mode))
                return Errc::not_dir;
            std::vector<DirEntry> entries;
            if (list(h, p, entries, true) == Errc::ok && !entries.empty())
                return Errc::not_empty;
            return e;
        });
    }

    Errc rename(const std::string& from, const std::string& to, unsigned flags) override {
        constexpr unsigned kNoReplace = 1, kExchange = 2;  // RENAME_NOREPLACE, RENAME_EXCHANGE
        if (flags & kExchange)
            return Errc::not_supported;
        const std::string f = remote(from), t = remote(to);
        OpenPaths::Change change(pool_->open_paths(), f, t);
        return run([&](ConnectionHold& h) {
            const bool replaces = !(flags & kNoReplace) && h.offers("posix-rename@openssh.com");
            Packet args;
            if (replaces)
                args.str("posix-rename@openssh.com");
            args.str(f);
            args.str(t);
            // The plain SFTP rename never replaces: what RENAME_NOREPLACE
            // asks for (and all a server without posix-rename can do).
            const Errc e = h.status(replaces ? kFxpExtended : kFxpRename, args.bytes);
            if (e == Errc::ok) {
                pool_->open_paths().renamed(f, t);
            } else if (e == Errc::unreachable) {  // maybe renamed (the connection was lost)
                pool_->open_paths().forget(f);
                pool_->open_paths().forget(t);
            }
            if (e != Errc::io)
                return e;
            Attr af, at;
            if (lstat(h, f, af) != Errc::ok)
                return e;
            if (lstat(h, t, at) != Errc::ok)
                return e;
            if (!replaces)
                return Errc::exists;
            if (S_ISDIR(af.mode) && !S_ISDIR(at.mode))
                return Errc::not_dir;
            if (!S_ISDIR(af.mode) && S_ISDIR(at.mode))
                return Errc::is_dir;
            if (S_ISDIR(at.mode))
                return Errc::not_empty;
            return e;
        });
    }

    Errc setattr(const std::string& path, const SetAttr& change, Attr& out) override {
        std::optional<GateHold> resizing;
        if (change.mask & SetAttr::kSize)
            resizing.emplace(pool_->size_gate(), SizeGate::Kind::change);
        return run([&](ConnectionHold& h) {
            const std::string p = remote(path);
            // Times set together and owners set together (utimens, chown,
            // an upload's times) need nothing of the object as it is:
            // lsetstat@openssh.com sets them on a link or any other object
            // alike, and the attributes afterwards come in the same round trip.
            const std::uint32_t m = change.mask;
            const bool times_whole = !(m & (SetAttr::kAtime | SetAttr::kAtimeNow)) ==
                                     !(m & (SetAttr::kMtime | SetAttr::kMtimeNow));
            const bool owner_whole = !(m & SetAttr::kUid) == !(m & SetAttr::kGid);
            if (m != 0 && !(m & (SetAttr::kMode | SetAttr::kSize)) && times_whole && owner_whole &&
                h.offers("lsetstat@openssh.com"))
                return set(h, p, true, sftp_attrs(change, Attr{}, false), out);
            Attr before;
            if (Errc e = lstat(h, p, before); e != Errc::ok)
                return e;
            const bool is_link = S_ISLNK(before.mode);
            if ((m & SetAttr::kSize) && S_ISDIR(before.mode))
                return Errc::is_dir;
            const LIBSSH2_SFTP_ATTRIBUTES a = sftp_attrs(change, before, is_link);
            if (a.flags == 0) {
                out = before;
                return Errc::ok;
            }
            // setstat follows links; only lsetstat@openssh.com changes the link itself.
            if (is_link && !h.offers("lsetstat@openssh.com"))
                return Errc::not_supported;
            return set(h, p, is_link, a, out);
        });
    }

    Errc statfs(StatFs& out) override {
        return run([&](ConnectionHold& h) {
            const Errc e = statvfs(h, pool_->login().root, out);
            if (e == Errc::not_supported || e == Errc::io) {
                out = StatFs{};  // no statvfs@openssh.com: nothing to report
                return Errc::ok;
            }
            return e;
        });
    }

private:
    std::string remote(const std::string& path) const { return join(pool_->login().root, path); }

    // Runs `op` on a connection held for it.
    template <class Op>
    Errc run(Op&& op) {
        ConnectionHold h(*pool_);
        if (Errc e = h.acquire(); e != Errc::ok)
            return e;
        return op(h);
    }

    static unsigned long to_sftp_flags(int flags) {
        unsigned long f = 0;
        switch (flags & O_ACCMODE) {
        case O_RDONLY: f = LIBSSH2_FXF_READ; break;
        case O_WRONLY: f = LIBSSH2_FXF_WRITE; break;
        default: f = LIBSSH2_FXF_READ | LIBSSH2_FXF_WRITE; break;
        }
        if (flags & O_TRUNC)
            f |= LIBSSH2_FXF_TRUNC;
        return f;
    }

    // Whether an open with `flags` may go on, given what lstat said of the
    // name: SFTP open follows a symbolic link, and the contract says it must not.
    static Errc may_open(Errc exists, const Attr& before, unsigned long flags) {
        if (exists == Errc::ok && S_ISLNK(before.mode))
            return Errc::loop;
        // A FIFO or a device: the server's open could block its channel.
        if (exists == Errc::ok && !S_ISREG(before.mode) && !S_ISDIR(before.mode))
            return Errc::not_supported;
        if (exists == Errc::ok && S_ISDIR(before.mode) && (flags & LIBSSH2_FXF_WRITE))
            return Errc::is_dir;
        if (exists == Errc::ok && (flags & LIBSSH2_FXF_EXCL))
            return Errc::exists;
        if (exists == Errc::not_found && !(flags & LIBSSH2_FXF_CREAT))
            return Errc::not_found;
        if (is_transient(exists))
            return exists;
        return Errc::ok;
    }

    Errc open_file(const std::string& path, unsigned long flags, std::uint32_t mode,
                   std::unique_ptr<BackendFile>& out, Attr* attr) {
        GateHold gate(pool_->size_gate(),
                      (flags & LIBSSH2_FXF_TRUNC) ? SizeGate::Kind::change : SizeGate::Kind::io);
        // The file's first handle is on the connection that was free now
        // (see the file header); acquire starts its search at the next one
        // each time.
        ConnectionHold h(*pool_);
        if (Errc e = h.acquire(); e != Errc::ok)
            return e;
        const std::string p = remote(path);
        // Registered before the first request, so that a rename or unlink
        // of the name crossing this open is seen.
        OpenPaths::Registration where(pool_->open_paths(), p);
        std::uint64_t epoch = 0;
        pool_->open_paths().path_of(where.entry(), epoch);
        // SFTP's OPEN follows a symbolic link, and the contract says it
        // must not; so an LSTAT looks at the name first. [!] Where the open
        // could change what it reaches (a create, a truncate), the OPEN
        // waits for the look's answer: a link could lead it to truncate
        // the link's target. A plain open goes out right behind its LSTAT,
        // one round trip for both: what it reached is closed again if the
        // look found no regular file. The one cost is a FIFO (or a link
        // to one) put at the name just now: the server's open blocks its
        // whole channel, and the pool reconnects once the look has said so.
        // An exclusive create needs no look first: it fails on any object
        // at the name, link or not, and the LSTAT sent right behind the
        // OPEN says what was there.
        const bool exclusive = flags & LIBSSH2_FXF_EXCL;
        const bool look_along = !exclusive && !(flags & (LIBSSH2_FXF_CREAT | LIBSSH2_FXF_TRUNC));
        const std::string stat_args = name_args(p);
        Errc exists = Errc::not_found;
        Attr before;
        if (!exclusive && !look_along) {
            exists = lstat(h, p, before);
            if (Errc e = may_open(exists, before, flags); e != Errc::ok)
                return e;
        }
        Packet args;
        args.str(p);
        args.u32(static_cast<std::uint32_t>(flags));
        if (flags & LIBSSH2_FXF_CREAT) {
            args.u32(kAttrPermissions);
            args.u32(mode);
        } else {
            args.u32(0);
        }
        // The handle lives on the connection's channel (see SftpChannel). A
        // create's attributes: the LSTAT is answered after the OPEN, so it
        // describes the file the OPEN made or opened (it was no link).
        Reply replies[2];
        bool regular = false;  // what the look found, when it went along
        if (look_along) {
            Reply& look = replies[1];
            const Errc sent = h.exchange_first({{kFxpLstat, stat_args}, {kFxpOpen, args.bytes}}, {&look, 1},
                                               {&replies[0], 1});
            if (sent != Errc::ok)
                return sent;
            exists = attrs_of(look, before);
            const Errc refused = may_open(exists, before, flags);
            regular = exists == Errc::ok && S_ISREG(before.mode);
            // A FIFO or device: the OPEN may never be answered, and then
            // the pool reconnects after a short wait, not the operation's.
            const bool may_block = exists == Errc::ok && !regular && !S_ISDIR(before.mode) && !S_ISLNK(before.mode);
            if (Errc e = h.await_rest({&replies[0], 1}, may_block ? kHeartbeatTimeout : milliseconds(0));
                e != Errc::ok) {
                if (refused != Errc::ok)
                    LOG_WARN("%s: %s changed on the server into something an SFTP open blocks on; not opened",
                             pool_->login().url.shown.c_str(), path.c_str());
                return refused != Errc::ok ? refused : e;
            }
            if (refused != Errc::ok) {
                if (replies[0].type == kFxpHandle)
                    h.send_close(handle_of(replies[0]));
                return refused;
            }
        } else {
            const bool describe = attr || exclusive;
            const Errc sent = describe ? h.exchange({{kFxpOpen, args.bytes}, {kFxpLstat, stat_args}}, replies)
                                       : h.call(kFxpOpen, args.bytes, replies[0]);
            if (sent != Errc::ok)
                return sent;
        }
        const Reply& opened = replies[0];
        if (opened.type != kFxpHandle) {
            const Errc e = unexpected(opened);
            Attr there;
            if (exclusive && attrs_of(replies[1], there) == Errc::ok)
                return may_open(Errc::ok, there, flags);  // OpenSSH reports EEXIST as a bare FAILURE
            return e;
        }
        const std::string handle = handle_of(opened);
        if (attr) {
            Errc e = attrs_of(replies[1], *attr);
            if (e == Errc::ok && exists == Errc::not_found)
                e = undo_server_umask(h, kFxpFsetstat, handle, mode, *attr);
            if (e != Errc::ok) {
                h.send_close(handle);
                return e;
            }
        }
        if (!pool_->open_paths().settled(where.entry(), epoch))
            pool_->open_paths().mark_gone(where.entry());
        auto file = std::make_unique<SftpFile>(pool_, h.index(), handle, h.generation(), std::move(where), flags);
        if (look_along && regular)
            file->set_opened_attr(before);  // what the OPEN opened
        out = std::move(file);
        return Errc::ok;
    }

    // Lists a directory; with `first_only`, stops at the first entry.
    Errc list(ConnectionHold& h, const std::string& p, std::vector<DirEntry>& out, bool first_only) {
        Reply opened;
        if (Errc e = h.call(kFxpOpendir, name_args(p), opened); e != Errc::ok)
            return e;
        if (opened.type != kFxpHandle) {
            const Errc e = unexpected(opened);
            // OpenSSH reports ENOTDIR as NO_SUCH_FILE.
            Attr a;
            if ((e == Errc::io || e == Errc::not_found) && lstat(h, p, a) == Errc::ok && !S_ISDIR(a.mode))
                return Errc::not_dir;
            return e;
        }
        const std::string handle = handle_of(opened);
        const std::string handle_args = name_args(handle);
        out.clear();
        Errc e = Errc::ok;
        // READDIRs go out several at a time: the server answers them in
        // order, each with the next names (up to 100 from OpenSSH), then
        // with EOF. Four list most directories in one round trip.
        std::size_t ahead = first_only ? 1 : 4;
        for (bool more = true; more && e == Errc::ok; ahead = std::min<std::size_t>(ahead * 2, 16)) {
            const std::vector<ConnectionHold::Request> requests(ahead, {kFxpReaddir, handle_args});
            std::vector<Reply> batch(ahead);
            if (Errc sent = h.exchange(requests, batch); sent != Errc::ok)
                return sent;  // the handle is gone with its connection
            for (const Reply& names : batch) {
                if (!more || e != Errc::ok)
                    break;
                if (names.type == kFxpStatus && names.status == kFxEof) {
                    more = false;
                    break;
                }
                if (names.type != kFxpName) {
                    e = unexpected(names);
                    break;
                }
                Reader r{names.body};
                for (std::uint32_t n = r.u32(); r.ok && n > 0 && more; --n) {
                    const std::string_view name = r.str();
                    r.str();  // the long name, as ls -l shows it
                    LIBSSH2_SFTP_ATTRIBUTES a{};
                    if (!decode_attrs(r, a))
                        break;
                    if (name == "." || name == "..")
                        continue;
                    out.push_back({std::string(name), to_attr(a)});
                    more = !first_only;
                }
                if (!r.ok)
                    e = Errc::io;
            }
        }
        h.send_close(handle);
        return e;
    }

    // A request that makes the object at `p` (mkdir, symlink, link), with
    // an LSTAT of `p` right behind it: the new object's attributes, or
    // what was at the name already.
    Errc made(ConnectionHold& h, ConnectionHold::Request request, const std::string& p, Attr& attr) {
        Reply replies[2];
        const std::string stat_args = name_args(p);
        if (Errc e = h.exchange({request, {kFxpLstat, stat_args}}, replies); e != Errc::ok)
            return e;
        if (Errc e = status_errc(replies[0]); e != Errc::ok) {
            // OpenSSH reports EEXIST as a bare FAILURE: an object at `p` explains it.
            Attr there;
            return e == Errc::io && attrs_of(replies[1], there) == Errc::ok ? Errc::exists : e;
        }
        return attrs_of(replies[1], attr);
    }

    // The server applies its own umask (sftp-server's, often 022) to a new
    // object; the mode asked for already has the caller's applied. `type`
    // and `name`: SETSTAT of a path or FSETSTAT of a handle.
    Errc undo_server_umask(ConnectionHold& h, std::uint8_t type, const std::string& name, std::uint32_t mode,
                           Attr& attr) {
        if ((attr.mode & 07777) == (mode & 07777))
            return Errc::ok;
        Packet args;
        args.str(name);
        args.u32(kAttrPermissions);
        args.u32(mode & 07777);
        if (Errc e = h.status(type, args.bytes); e != Errc::ok)
            return e;
        attr.mode = (attr.mode & ~07777u) | (mode & 07777);
        return Errc::ok;
    }

    // The SFTP attributes that apply `change`; SFTP v3 sets both times or
    // neither, and owner and group together: `before` fills in the one not
    // asked for. A link has no mode to speak of.
    static LIBSSH2_SFTP_ATTRIBUTES sftp_attrs(const SetAttr& change, const Attr& before, bool is_link) {
        LIBSSH2_SFTP_ATTRIBUTES a{};
        if ((change.mask & SetAttr::kMode) && !is_link) {
            a.flags |= LIBSSH2_SFTP_ATTR_PERMISSIONS;
            a.permissions = change.mode & 07777;
        }
        if (change.mask & (SetAttr::kUid | SetAttr::kGid)) {
            a.flags |= LIBSSH2_SFTP_ATTR_UIDGID;
            a.uid = (change.mask & SetAttr::kUid) ? change.uid : before.uid;
            a.gid = (change.mask & SetAttr::kGid) ? change.gid : before.gid;
        }
        if (change.mask & SetAttr::kSize) {
            a.flags |= LIBSSH2_SFTP_ATTR_SIZE;
            a.filesize = change.size;
        }
        if (change.mask & (SetAttr::kAtime | SetAttr::kAtimeNow | SetAttr::kMtime | SetAttr::kMtimeNow)) {
            // Whole seconds.
            const auto now = static_cast<unsigned long>(::time(nullptr));
            a.flags |= LIBSSH2_SFTP_ATTR_ACMODTIME;
            a.atime = (change.mask & SetAttr::kAtimeNow) ? now
                      : (change.mask & SetAttr::kAtime)  ? static_cast<unsigned long>(change.atime.tv_sec)
                                                         : static_cast<unsigned long>(before.atime.tv_sec);
            a.mtime = (change.mask & SetAttr::kMtimeNow) ? now
                      : (change.mask & SetAttr::kMtime)  ? static_cast<unsigned long>(change.mtime.tv_sec)
                                                         : static_cast<unsigned long>(before.mtime.tv_sec);
        }
        return a;
    }

    // SETSTAT (or lsetstat@openssh.com, which does not follow a link) of
    // `p`, and an LSTAT right behind it for the attributes afterwards.
    Errc set(ConnectionHold& h, const std::string& p, bool link_itself, const LIBSSH2_SFTP_ATTRIBUTES& a, Attr& out) {
        Packet args;
        if (link_itself)
            args.str("lsetstat@openssh.com");
        args.str(p);
        encode_attrs(a, args);
        Reply replies[2];
        const std::string stat_args = name_args(p);
        if (Errc e = h.exchange({{link_itself ? kFxpExtended : kFxpSetstat, args.bytes}, {kFxpLstat, stat_args}},
                                replies);
            e != Errc::ok)
            return e;
        Errc e = status_errc(replies[0]);
        if (e == Errc::io && (a.flags & LIBSSH2_SFTP_ATTR_UIDGID))
            e = Errc::perm;  // chown by someone who may not
        if (e != Errc::ok)
            return e;
        return attrs_of(replies[1], out);
    }

    std::shared_ptr<Pool> pool_;
};

} // namespace

Errc open_sftp(const RemoteUrl& url, const RemoteOptions& options, std::unique_ptr<Backend>& out,
               std::string& message) {
    std::call_once(libssh2_initialised, [] { libssh2_init(0); });
    auto login = std::make_unique<Login>();
    login->url = url;
    login->options = options;
    login->port = url.port ? url.port : 22;
    login->root = url.path.empty() ? "/" : url.path;
    if (url.host.empty()) {
        message = "'" + url.shown + "': no host (use sftp://[user@]host[:port]/path)";
        return Errc::invalid;
    }
    if (!url.query.empty()) {
        message = "'" + url.shown + "': sftp:// takes its options from -o, not from the URL";
        return Errc::invalid;
    }
    login->user = url.user;
    if (login->user.empty()) {
        const passwd* pw = ::getpwuid(::geteuid());
        if (!pw) {
            message = url.shown + ": cannot find the local user name: give one, as in sftp://user@host/path";
            return Errc::invalid;
        }
        login->user = pw->pw_name;
    }
    if (const char* agent = std::getenv("SSH_AUTH_SOCK"))
        login->agent_socket = agent;
    login->home = home_dir();
    login->known_hosts = options.known_hosts.empty() ? login->home + "/.ssh/known_hosts" : options.known_hosts;
    const std::string shown = "sftp://" + login->user + "@" + url.host +
                              (url.port ? ":" + std::to_string(url.port) : "") + login->root;
    login->url.shown = shown;

    auto pool = std::make_shared<Pool>(std::move(login));
    if (Errc e = pool->connect_first(message); e != Errc::ok) {
        message = shown + ": " + message;
        return e;
    }
    // The directory must exist: a typo in the path is a mount error, not an
    // empty file system.
    {
        ConnectionHold h(*pool);
        Reply reply;
        Attr a;
        Errc e = h.acquire();
        if (e == Errc::ok)
            e = h.call(kFxpStat, name_args(pool->login().root), reply);
        if (e == Errc::ok)
            e = attrs_of(reply, a);
        if (e != Errc::ok) {
            if (e == Errc::not_found)
                message = shown + ": no such directory on " + url.host + " (check the path)";
            else if (e == Errc::access)
                message = shown + ": permission denied (the directory must be readable and searchable)";
            else
                message = shown + ": cannot look at the directory: " + std::string(describe(e));
            return e;
        }
        if (!S_ISDIR(a.mode)) {
            message = shown + ": not a directory";
            return Errc::not_dir;
        }
        std::string offered;
        for (const auto& name : h.extensions())
            offered += (offered.empty() ? "" : " ") + name;
        const Connection& c = pool->at(h.index());
        const char* cipher = libssh2_session_methods(c.session, LIBSSH2_METHOD_CRYPT_SC);
        const char* mac = libssh2_session_methods(c.session, LIBSSH2_METHOD_MAC_SC);
        LOG_INFO("%s: connected (%s, %s); server extensions: %s", shown.c_str(), cipher ? cipher : "?",
                 mac ? mac : "?", offered.empty() ? "none" : offered.c_str());
    }
    pool->start();
    out = std::make_unique<SftpBackend>(std::move(pool));
    return Errc::ok;
}

} // namespace netfs
