// The nfs:// remote over libnfs's asynchronous interface (docs/remotes.md).
//
//   engine threads ──submit (under Connection::mu_)──▶ nfs_context ◀── service thread
//        ▲                                                  │         poll(fd) / nfs_service()
//        └──────── Call::cv (result copied in the callback) ◀┘         (takes mu_ only to service)
//
// A Connection is one nfs_context: one TCP connection and one mount. The
// backend keeps a few (RemoteOptions::connections, 1 to 4) and hands each
// request to the next one that is up; an open file stays on the connection
// it was opened on, because a libnfs file handle belongs to one context.
//
// libnfs contexts are not thread-safe, so every call on a context happens
// under its Connection::mu_; the service thread drops mu_ while it polls, so
// engine threads queue requests while others are in flight. Callbacks run
// inside nfs_service(), nfs_destroy_context() or (some, NFSv3 close) the
// submitting call itself: always with mu_ held.
// Lock order: NfsFile::mu_, then Connection::open_owner_mu_, then Connection::mu_.
//
// Liveness is ours, not libnfs's: libnfs's auto-reconnect is off (after a
// reconnect an NFSv4 server has forgotten the open state, and libnfs 4.0
// would replay requests with dead stateids). A connection is declared down
// when the socket fails, or when nothing has been received for `dead_after_`
// (3 s at most) while something is pending. After 1 s of silence a NULL ping
// goes out, so a dead server is noticed even when nobody asks, and a slow
// request (a live server answers the ping meanwhile) is told from a hung
// server. Then every pending request fails with Errc::unreachable (the
// engine retries), the context is destroyed and the service thread mounts
// again with back-off. Open files re-open by path on the new context and
// check that the file id is unchanged (else bad_handle), so a reconnect
// never makes a handle read another file's bytes.
//
// Every wait is bounded by op_timeout: a request whose answer does not come
// in time is abandoned (its Call is freed by whichever side lets go last).
#include "core/backend/nfs_backend.h"

#include "core/log.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <poll.h>
#include <pwd.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <unistd.h>

#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-nfs.h>
#include <nfsc/libnfs-raw-nfs4.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <random>
#include <map>
#include <memory>
#include <set>
#include <thread>

namespace netfs {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::uint32_t kNfsProgram = 100003;
// A connection that heard nothing for this long sends a NULL ping, so that a
// server that died while we were idle is noticed before the next request
// needs it, and a slow request is told from a hung server.
constexpr auto kPingAfter = 1s;
// The service thread wakes at least this often: libnfs checks its own RPC
// timeouts inside nfs_service(), and we check liveness.
constexpr int kServiceTickMs = 100;
// How long a request waits for a connection that is being re-established
// before it fails with Errc::not_sent (the engine asks again).
constexpr auto kWaitForReconnect = 2s;
// Read and write size when the server does not say (NFSv4 through libnfs 4.0).
constexpr std::uint64_t kDefaultTransfer = 1u << 20;
// libnfs 4.0 encodes an NFSv4 WRITE into a fixed 4 KiB buffer and fails
// ("Failed to encode COMPOUND4args") for anything longer than about 3.9 KiB
// of data; the rest of the buffer holds the RPC header, credentials and file
// handle. Later libnfs versions size the buffer to the write.
constexpr std::uint64_t kNfs4WriteMax = 3072;
// At most this many WRITEs in flight for one BackendFile::write (1 MiB in
// NFSv4's 3 KiB pieces is 342).
constexpr std::uint64_t kMaxPieces = 512;

// Writes are FILE_SYNC (libnfs: O_SYNC on the handle). libnfs does not
// expose the write verifier, so after UNSTABLE writes and a server restart
// a COMMIT would report success for data the server lost. Stable writes make
// every acknowledged write durable, which is what BackendFile::fsync promises.
constexpr int kStableWrites = O_SYNC;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

Clock::time_point after(double seconds) {
    return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// The outcome of a request's later step, once an earlier one reached the
// server: the request as a whole was sent, whatever the later step says,
// and must not be asked again as if it had not been (Errc::not_sent).
Errc after_sent(Errc e) { return e == Errc::not_sent ? Errc::unreachable : e; }

// libnfs reports -errno; -EINTR means it cancelled or timed out the request.
Errc from_status(int status) {
    if (status >= 0)
        return Errc::ok;
    if (status == -EINTR || status == -ETIMEDOUT)
        return Errc::timed_out;
    if (status == -ECONNRESET || status == -ENOTCONN || status == -EPIPE || status == -ECONNREFUSED)
        return Errc::unreachable;
    return from_errno(-status);
}

timespec make_ts(std::uint64_t sec, std::uint64_t nsec) {
    timespec t;
    t.tv_sec = static_cast<time_t>(sec);
    t.tv_nsec = static_cast<long>(nsec);
    return t;
}

// `root_fs`: Target::Root::fs. libnfs 4.0 reports the fsid (nfs_dev) over
// NFSv3 only: 0 over NFSv4, where every file id is the server's fileid.
Attr to_attr(const nfs_stat_64& st, std::uint64_t root_fs) {
    Attr a;
    a.file_id = file_id_on(st.nfs_dev, root_fs, st.nfs_ino);
    a.mode = static_cast<std::uint32_t>(st.nfs_mode);
    a.nlink = static_cast<std::uint32_t>(st.nfs_nlink);
    a.uid = static_cast<std::uint32_t>(st.nfs_uid);
    a.gid = static_cast<std::uint32_t>(st.nfs_gid);
    a.rdev = st.nfs_rdev;
    a.size = st.nfs_size;
    a.blocks = st.nfs_blocks ? st.nfs_blocks : (st.nfs_used + 511) / 512;
    a.atime = make_ts(st.nfs_atime, st.nfs_atime_nsec);
    a.mtime = make_ts(st.nfs_mtime, st.nfs_mtime_nsec);
    a.ctime = make_ts(st.nfs_ctime, st.nfs_ctime_nsec);
    // libnfs 4.0 does not return the NFSv4 change attribute (nfs_stat_64 has
    // no field for it); Version falls back on size, mtime and ctime.
    a.change = 0;
    return a;
}

// A directory entry's type comes as an NFS file type (NF3REG.., the same
// numbers for NFSv4), separate from the permission bits.
std::uint32_t type_bits(std::uint32_t nfs_type) {
    switch (nfs_type) {
    case NF3REG: return S_IFREG;
    case NF3DIR: return S_IFDIR;
    case NF3BLK: return S_IFBLK;
    case NF3CHR: return S_IFCHR;
    case NF3LNK: return S_IFLNK;
    case NF3SOCK: return S_IFSOCK;
    case NF3FIFO: return S_IFIFO;
    default: return 0;
    }
}

Attr to_attr(const nfsdirent& d, std::uint64_t root_fs) {
    Attr a;
    a.file_id = file_id_on(d.dev, root_fs, d.inode);
    a.mode = (d.mode & 07777) | ((d.mode & S_IFMT) ? (d.mode & S_IFMT) : type_bits(d.type));
    a.nlink = d.nlink;
    a.uid = d.uid;
    a.gid = d.gid;
    a.rdev = d.rdev;
    a.size = d.size;
    a.blocks = d.blocks ? d.blocks : (d.used + 511) / 512;
    a.atime = make_ts(static_cast<std::uint64_t>(d.atime.tv_sec), d.atime_nsec);
    a.mtime = make_ts(static_cast<std::uint64_t>(d.mtime.tv_sec), d.mtime_nsec);
    a.ctime = make_ts(static_cast<std::uint64_t>(d.ctime.tv_sec), d.ctime_nsec);
    return a;
}

// Where the server is and how to reach it: constant after open_nfs.
struct Target {
    std::string shown;  // the URL, for log lines
    std::string host;
    std::string libnfs_url;  // nfs://host/?nfsport=..: carries the ports and options to each context
    std::string export_path; // what nfs_mount mounts
    std::string subpath;     // below the export: prefixed to every remote path ("" or "/a/b")
    int version = 3;
    std::uint16_t probe_port = 0;  // a TCP port that must accept before a mount is tried
    double connect_timeout = 10;
    double op_timeout = 30;
    // What the backend knows of the remote root, shared with the connections.
    struct Root {
        // Its file system (fsid), for file ids (file_id_on): asked again
        // after each reconnect, before the connection serves, since a server
        // may report another fsid after a restart.
        std::atomic<std::uint64_t> fs{0};
        // NFSv4: the backend's own GETATTR works on this export (see
        // NfsBackend::start); else attributes come from libnfs's stat.
        std::atomic<bool> by_getattr{false};
    };
    std::shared_ptr<Root> root = std::make_shared<Root>();
};

// A TCP connect to host:port within `timeout` seconds; on failure a short
// reason ("connection refused", "no answer within 10 s").
bool probe_tcp(const std::string& host, std::uint16_t port, double timeout, std::string& why) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const std::string service = std::to_string(port);
    if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res); rc != 0) {
        why = std::string("cannot resolve host name: ") + gai_strerror(rc);
        return false;
    }
    bool ok = false;
    for (addrinfo* ai = res; ai && !ok; ai = ai->ai_next) {
        int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc == 0) {
            ok = true;
        } else if (errno == EINPROGRESS) {
            pollfd p{fd, POLLOUT, 0};
            rc = ::poll(&p, 1, static_cast<int>(timeout * 1000));
            if (rc == 0) {
                why = "no answer within " + std::to_string(static_cast<int>(timeout)) + " s";
            } else {
                int err = 0;
                socklen_t len = sizeof err;
                ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err == 0)
                    ok = true;
                else
                    why = std::strerror(err);
            }
        } else {
            why = std::strerror(errno);
        }
        ::close(fd);
    }
    ::freeaddrinfo(res);
    if (!ok && why.empty())
        why = "cannot connect";
    for (char& c : why)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return ok;
}

// A new context set up from `t` and mounted on `export_path`. On failure
// returns null, `status` the -errno and `why` libnfs's explanation.
nfs_context* mount_context(const Target& t, const std::string& export_path, const std::string& client_name,
                           int& status, std::string& why) {
    nfs_context* nfs = nfs_init_context();
    if (!nfs) {
        status = -ENOMEM;
        why = "out of memory";
        return nullptr;
    }
    // Ports, version, uid/gid and the like from the URL's query, the way libnfs reads them.
    nfs_url* parsed = nfs_parse_url_dir(nfs, t.libnfs_url.c_str());
    if (!parsed) {
        const char* e = nfs_get_error(nfs);
        why = e ? e : "libnfs cannot parse " + t.libnfs_url;
        status = -EINVAL;
        nfs_destroy_context(nfs);
        return nullptr;
    }
    nfs_destroy_url(parsed);
    nfs_set_version(nfs, t.version);
    // Caching and retrying are the engine's job; libnfs must answer from the server.
    nfs_set_autoreconnect(nfs, 0);
    nfs_set_dircache(nfs, 0);
    nfs_set_pagecache(nfs, 0);  // not off in libnfs 4.0: see NfsFile::read
    nfs_set_readahead(nfs, 0);
    // Whole seconds, says libnfs.
    nfs_set_timeout(nfs, std::max(1, static_cast<int>(t.connect_timeout)) * 1000);
    if (t.version == 4) {
        // Each context is its own NFSv4 client: with a shared name, a new
        // context's SETCLIENTID would make the server drop the others' state.
        nfs4_set_client_name(nfs, client_name.c_str());
        char verifier[8];
        std::random_device rd;
        for (char& c : verifier)
            c = static_cast<char>(rd());
        nfs4_set_verifier(nfs, verifier);
    }
    status = nfs_mount(nfs, t.host.c_str(), export_path.c_str());
    if (status != 0) {
        const char* e = nfs_get_error(nfs);
        why = e ? e : "";
        nfs_destroy_context(nfs);
        return nullptr;
    }
    return nfs;
}

class Connection;

// One request in flight. Two owners: the waiting engine thread and libnfs
// (until the callback comes or the context is destroyed); the last to let go
// frees it. All fields are guarded by the connection's mu_.
struct Call {
    // Copies the callback's result to the waiter; called only while the
    // waiter still waits, so it may write to the waiter's locals.
    std::function<void(nfs_context*, int status, void* data)> take;
    // What to undo when the answer comes after the waiter left (an open
    // handle nobody will close): called with the context.
    void (*orphan)(nfs_context*, int status, void* data) = nullptr;
    Connection* conn = nullptr;
    std::condition_variable cv;
    int refs = 2;
    bool settled = false;  // the waiter's result is decided
    Errc result = Errc::ok;
    std::string error_text;  // libnfs's explanation of a failure, for the debug log
    bool server_waits = false;  // the server asked to be asked again later (server_asks_to_wait)
};

void close_orphan_file(nfs_context* nfs, int status, void* data) {
    if (status == 0 && data)
        nfs_close_async(nfs, static_cast<nfsfh*>(data), [](int, nfs_context*, void*, void*) {}, nullptr);
}

void close_orphan_dir(nfs_context* nfs, int status, void* data) {
    if (status == 0 && data)
        nfs_closedir(nfs, static_cast<nfsdir*>(data));
}

// XDR, for the attributes of a raw SETATTR (NfsBackend::setattr_v4).
void put_u32(std::string& out, std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8)
        out.push_back(static_cast<char>((v >> shift) & 0xff));
}

void put_string(std::string& out, const std::string& text) {
    put_u32(out, static_cast<std::uint32_t>(text.size()));
    out += text;
    out.append((4 - text.size() % 4) % 4, '\0');
}

void put_settime(std::string& out, bool now, const timespec& t) {
    if (now) {
        put_u32(out, SET_TO_SERVER_TIME4);
        return;
    }
    put_u32(out, SET_TO_CLIENT_TIME4);
    const auto seconds = static_cast<std::uint64_t>(static_cast<std::int64_t>(t.tv_sec));
    put_u32(out, static_cast<std::uint32_t>(seconds >> 32));
    put_u32(out, static_cast<std::uint32_t>(seconds));
    put_u32(out, static_cast<std::uint32_t>(t.tv_nsec));
}

// XDR, for the attributes of a raw GETATTR (NfsBackend::getattr_v4_request).
class XdrReader {
public:
    XdrReader(const char* data, std::size_t size) : p_(reinterpret_cast<const unsigned char*>(data)), left_(size) {}
    bool ok() const { return ok_; }
    std::uint32_t u32() {
        if (left_ < 4) {
            ok_ = false;
            return 0;
        }
        const std::uint32_t v = (std::uint32_t(p_[0]) << 24) | (std::uint32_t(p_[1]) << 16) |
                                (std::uint32_t(p_[2]) << 8) | std::uint32_t(p_[3]);
        p_ += 4;
        left_ -= 4;
        return v;
    }
    std::uint64_t u64() {
        const std::uint64_t high = u32();
        return (high << 32) | u32();
    }
    std::string text() {
        const std::uint32_t n = u32();
        const std::size_t padded = (std::size_t(n) + 3) & ~std::size_t(3);
        if (!ok_ || left_ < padded) {
            ok_ = false;
            return {};
        }
        std::string out(reinterpret_cast<const char*>(p_), n);
        p_ += padded;
        left_ -= padded;
        return out;
    }
    timespec time() {
        timespec t{};
        t.tv_sec = static_cast<time_t>(static_cast<std::int64_t>(u64()));
        t.tv_nsec = static_cast<long>(u32());
        return t;
    }

private:
    const unsigned char* p_;
    std::size_t left_;
    bool ok_ = true;
};

// An NFSv4 owner or group ("1000", or "name@domain" from a server that maps
// names) as a number: a name known here by its part before the '@', else
// nobody (65534). Answers are remembered: the lookup runs in a connection's
// service thread, and a directory service may be slow.
std::uint32_t owner_id(const std::string& owner, bool user) {
    if (!owner.empty() && owner.find_first_not_of("0123456789") == std::string::npos)
        return static_cast<std::uint32_t>(std::strtoul(owner.c_str(), nullptr, 10));
    static std::mutex mu;
    static std::map<std::pair<bool, std::string>, std::uint32_t> known;
    {
        std::lock_guard lock(mu);
        if (auto it = known.find({user, owner}); it != known.end())
            return it->second;
    }
    const std::string name = owner.substr(0, owner.find('@'));
    std::uint32_t id = 65534;
    int rc = 0;
    for (std::vector<char> buf(4096); buf.size() <= (1u << 20); buf.resize(buf.size() * 4)) {
        if (user) {
            passwd pw, *found = nullptr;
            rc = ::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
            if (rc == 0 && found)
                id = found->pw_uid;
        } else {
            group gr, *found = nullptr;
            rc = ::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found);
            if (rc == 0 && found)
                id = found->gr_gid;
        }
        if (rc != ERANGE)
            break;
    }
    if (rc == 0) {  // known, or known not to exist; a failed lookup is asked again next time
        std::lock_guard lock(mu);
        known[{user, owner}] = id;
    }
    return id;
}

// What the backend's own GETATTRs ask for, in the two words of an NFSv4
// bitmap. Not the change attribute: when those cannot be used (see
// NfsBackend::start) libnfs's stat, which has none, stands in, and the
// cached Versions must not all change with it.
constexpr std::uint32_t kGetattrMask[2] = {
    (1u << FATTR4_TYPE) | (1u << FATTR4_SIZE) | (1u << FATTR4_FSID) | (1u << FATTR4_FILEID),
    (1u << (FATTR4_MODE - 32)) | (1u << (FATTR4_NUMLINKS - 32)) | (1u << (FATTR4_OWNER - 32)) |
        (1u << (FATTR4_OWNER_GROUP - 32)) | (1u << (FATTR4_RAWDEV - 32)) | (1u << (FATTR4_SPACE_USED - 32)) |
        (1u << (FATTR4_TIME_ACCESS - 32)) | (1u << (FATTR4_TIME_METADATA - 32)) |
        (1u << (FATTR4_TIME_MODIFY - 32))};

// An fsid (major, minor) as one number, as file_id_on takes it.
std::uint64_t fs_number(std::uint64_t major, std::uint64_t minor) { return major * 0x9e3779b97f4a7c15ull ^ minor; }

// Decodes the attributes of a GETATTR for kGetattrMask: in the order of
// their numbers, only those the server's mask says it sent. `fs`: the
// file's file system (fs_number of its fsid); file_id is the raw fileid.
bool decode_fattr4(const fattr4& f, Attr& a, std::uint64_t& fs) {
    std::uint64_t mask = 0;
    for (u_int i = 0; i < f.attrmask.bitmap4_len && i < 2; ++i)
        mask |= std::uint64_t(f.attrmask.bitmap4_val[i]) << (32 * i);
    if (!(mask & (1ull << FATTR4_TYPE)) || !(mask & (1ull << FATTR4_FILEID)) || !(mask & (1ull << FATTR4_FSID)))
        return false;  // nothing to go by
    XdrReader r(f.attr_vals.attrlist4_val, f.attr_vals.attrlist4_len);
    a = Attr{};
    std::uint32_t type = 0, perms = 0;
    std::uint64_t used = 0;
    for (int bit = 0; bit < 64; ++bit) {
        if (!(mask & (1ull << bit)))
            continue;
        switch (bit) {
        case FATTR4_TYPE: type = r.u32(); break;
        case FATTR4_SIZE: a.size = r.u64(); break;
        case FATTR4_FSID: {
            const std::uint64_t major = r.u64();
            fs = fs_number(major, r.u64());
            break;
        }
        case FATTR4_FILEID: a.file_id = r.u64(); break;
        case FATTR4_MODE: perms = r.u32() & 07777; break;
        case FATTR4_NUMLINKS: a.nlink = r.u32(); break;
        case FATTR4_OWNER: a.uid = owner_id(r.text(), true); break;
        case FATTR4_OWNER_GROUP: a.gid = owner_id(r.text(), false); break;
        case FATTR4_RAWDEV: {
            const std::uint32_t major = r.u32();
            a.rdev = makedev(major, r.u32());
            break;
        }
        case FATTR4_SPACE_USED: used = r.u64(); break;
        case FATTR4_TIME_ACCESS: a.atime = r.time(); break;
        case FATTR4_TIME_METADATA: a.ctime = r.time(); break;
        case FATTR4_TIME_MODIFY: a.mtime = r.time(); break;
        default: return false;  // not asked for: its length is unknown here
        }
    }
    a.mode = type_bits(type) | perms;
    a.blocks = (used + 511) / 512;
    return r.ok();
}

// The names from the root of the server's pseudo file system to `p`
// (export-relative, as libnfs names it), for the LOOKUPs of a raw COMPOUND.
std::vector<std::string> components_v4(const Target& t, const std::string& p) {
    std::vector<std::string> names;
    const std::string whole = (t.export_path == "/" ? "" : t.export_path) + (p == "/" ? "" : p);
    for (std::size_t at = 0; at < whole.size();) {
        const std::size_t next = whole.find('/', at);
        const std::size_t end = next == std::string::npos ? whole.size() : next;
        if (end > at)
            names.push_back(whole.substr(at, end - at));
        at = end + 1;
    }
    return names;
}

// PUTROOTFH and a LOOKUP per name (pointing into `names`), and one more
// operation for the caller to fill in last.
std::vector<nfs_argop4> lookup_ops_v4(const std::vector<std::string>& names) {
    std::vector<nfs_argop4> ops(names.size() + 2);
    ops[0].argop = OP_PUTROOTFH;
    for (std::size_t i = 0; i < names.size(); ++i) {
        ops[i + 1].argop = OP_LOOKUP;
        ops[i + 1].nfs_argop4_u.oplookup.objname.utf8string_len = static_cast<u_int>(names[i].size());
        ops[i + 1].nfs_argop4_u.oplookup.objname.utf8string_val = const_cast<char*>(names[i].data());
    }
    return ops;
}

// Sends `ops` as one NFSv4.0 COMPOUND. Encoded when queued: `ops`, and
// what its arguments point into, may go once this returns.
int send_compound_v4(nfs_context* nfs, std::vector<nfs_argop4>& ops, rpc_cb cb, void* d) {
    COMPOUND4args args{};
    args.minorversion = 0;
    args.argarray.argarray_len = static_cast<u_int>(ops.size());
    args.argarray.argarray_val = ops.data();
    return rpc_nfs4_compound_async(nfs_get_rpc_context(nfs), cb, &args, d);
}

// Sends `ops` (which put the current file handle) with a GETATTR of
// kGetattrMask after them, as a raw COMPOUND: libnfs 4.0's stat leaves out
// the fsid, which file ids need (file_id_on) where the export spans file
// systems.
int send_getattr_v4(nfs_context* nfs, std::vector<nfs_argop4>& ops, rpc_cb cb, void* d) {
    ops.back().argop = OP_GETATTR;
    ops.back().nfs_argop4_u.opgetattr.attr_request.bitmap4_len = 2;
    ops.back().nfs_argop4_u.opgetattr.attr_request.bitmap4_val = const_cast<std::uint32_t*>(kGetattrMask);
    return send_compound_v4(nfs, ops, cb, d);
}

// The attributes in the answer to send_getattr_v4, and the file's file
// system; false when the answer lacks them.
bool getattr_v4_reply(const void* data, Attr& a, std::uint64_t& fs) {
    const auto* res = static_cast<const COMPOUND4res*>(data);
    const u_int n = res ? res->resarray.resarray_len : 0;
    return n > 0 && res->resarray.resarray_val[n - 1].resop == OP_GETATTR &&
           decode_fattr4(res->resarray.resarray_val[n - 1].nfs_resop4_u.opgetattr.GETATTR4res_u.resok4.obj_attributes,
                         a, fs);
}

// A GETATTR of `names` walked from the server's root (PUTROOTFH, LOOKUPs),
// asked on a context that does not serve yet (nothing else polls it).
// Unanswered at the deadline, the request stays queued: `answer` must
// outlive the context, whose destruction runs the callback.
struct PathAnswer {
    bool replied = false;
    nfsstat4 status = NFS4_OK;
    bool ok = false;  // NFS4_OK, with the attributes
    Attr attr;
    std::uint64_t fs = 0;
    // Answered, whatever it says; but "ask again later" (a grace period
    // after a restart) is no answer about the path.
    bool settled() const {
        return replied && status != NFS4ERR_DELAY && status != NFS4ERR_GRACE && status != NFS4ERR_RESOURCE;
    }
};
bool ask_path_v4(nfs_context* nfs, const std::vector<std::string>& names, Clock::time_point deadline,
                 PathAnswer& answer) {
    std::vector<nfs_argop4> ops = lookup_ops_v4(names);
    const rpc_cb on_reply = [](rpc_context*, int status, void* data, void* private_data) {
        auto* a = static_cast<PathAnswer*>(private_data);
        a->replied = true;
        a->status = status == RPC_STATUS_SUCCESS ? static_cast<COMPOUND4res*>(data)->status : NFS4ERR_DELAY;
        a->ok = status == RPC_STATUS_SUCCESS && a->status == NFS4_OK && getattr_v4_reply(data, a->attr, a->fs);
    };
    if (send_getattr_v4(nfs, ops, on_reply, &answer) != 0)
        return false;
    while (!answer.replied && Clock::now() < deadline) {
        pollfd p{nfs_get_fd(nfs), static_cast<short>(nfs_which_events(nfs)), 0};
        if (::poll(&p, 1, kServiceTickMs) < 0 || nfs_service(nfs, p.revents) < 0)
            break;
    }
    return answer.replied;
}

// The file handle of a libnfs handle, as nfs_get_fh() returns it: libnfs
// 4.0 declares the function (libnfs-raw.h) but keeps the struct in
// libnfs-private.h. Its layout has not changed since libnfs 1.x.
struct LibnfsFh {
    int len;
    char* val;
};

// One open of one file on one connection. Over NFSv4 it is shared by every
// NfsFile of that file on the connection: the server keeps one open state
// per (open-owner, file), libnfs 4.0 has one open-owner per context, and a
// second OPEN of the file upgrades that state to a new stateid (the older
// one then gets NFS4ERR_OLD_STATEID) while a CLOSE ends it for every handle.
// So the connection keeps the newest handle here and closes it when the
// last user closes.
struct OpenState {
    nfsfh* fh = nullptr;         // the handle with the newest stateid; guarded by the connection's mu_
    std::uint64_t file_id = 0;
    int users = 1;               // guarded by the connection's mu_
    // Some OPEN of it asked for write access. An upgrade's stateid allows
    // the union of what the OPENs asked, and libnfs never downgrades, so
    // this only ever turns true. Guarded by the connection's mu_.
    bool writable = false;
};

// libnfs 4.0 puts NFSv4 statuses through its NFSv3 errno mapping (most
// NFSv4-only ones come out as ERANGE), so the ones that matter are told by
// the names in its message.
bool mentions_any(const std::string& error_text, std::initializer_list<const char*> statuses) {
    for (const char* status : statuses)
        if (error_text.find(status) != std::string::npos)
            return true;
    return false;
}

// The server asks to be asked again later: it restarted and waits for
// clients to reclaim their state (NFS4ERR_GRACE, up to 90 s by default), or
// is short of something for a moment. Connection::call asks again.
bool server_asks_to_wait(const std::string& error_text) {
    return mentions_any(error_text, {"NFS4ERR_GRACE", "NFS4ERR_DELAY", "NFS4ERR_RESOURCE"});
}

// libnfs's words for a request failed because its connection broke: with
// auto-reconnect off it fails every request in flight with this text
// (rpc_reconnect_requeue). The request is as lost as those drop_context
// fails: transient, not EIO.
bool failed_with_the_socket(const std::string& error_text) {
    return mentions_any(error_text, {"Failed to reconnect"});
}

// The server no longer knows our client id or our open stateids. libnfs
// renews no lease (and exposes no client id to send RENEW with), so a
// connection idle with files open past the lease (60 to 90 s) meets this on
// its next READ or WRITE.
bool forgot_our_state(const std::string& error_text) {
    return mentions_any(error_text, {"NFS4ERR_EXPIRED", "NFS4ERR_STALE_CLIENTID", "NFS4ERR_STALE_STATEID",
                                     "NFS4ERR_BAD_STATEID", "NFS4ERR_ADMIN_REVOKED"});
}

class Connection {
public:
    Connection(const Target& target, int index, nfs_context* mounted)
        : target_(target), index_(index), nfs_(mounted), wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
        last_heard_ = Clock::now();
        // A server that stops answering is declared dead after this long; the
        // request fails over to a reconnect well before op_timeout.
        dead_after_ = std::min(target.connect_timeout, 3.0);
        // libnfs 4.0 learns the sizes from NFSv3's FSINFO only; over NFSv4
        // it reports 0. 1 MiB is what Linux knfsd and ganesha accept by default.
        readmax_ = nfs_get_readmax(nfs_);
        writemax_ = nfs_get_writemax(nfs_);
        if (readmax_ == 0)
            readmax_ = kDefaultTransfer;
        if (writemax_ == 0)
            writemax_ = kDefaultTransfer;
        if (target.version == 4)
            writemax_ = std::min(writemax_, kNfs4WriteMax);
        generation_ = 1;
        thread_ = std::thread([this] { serve(); });
    }

    ~Connection() {
        {
            std::lock_guard lk(mu_);
            stopping_ = true;
        }
        wake();
        stop_cv_.notify_all();
        thread_.join();
        std::lock_guard lk(mu_);
        if (nfs_)
            drop_context("shutting down");
        ::close(wake_fd_);
    }

    // NFSv4.0 numbers the OPENs and CLOSEs of an open-owner, and libnfs 4.0
    // has one open-owner per context: two in flight at once fail with
    // NFS4ERR_BAD_SEQID. Held around each of them (v4 only; taken before mu_).
    std::unique_lock<std::mutex> open_owner_lock() {
        return target_.version == 4 ? std::unique_lock(open_owner_mu_) : std::unique_lock<std::mutex>();
    }

    // After an OPEN that returned `fh` on generation `gen`: the open state
    // of that file on this connection, shared with other opens of it (v4).
    // Null when the context was replaced meanwhile.
    std::shared_ptr<OpenState> adopt_open(nfsfh* fh, std::uint64_t file_id, bool writable, std::uint64_t gen) {
        std::lock_guard lk(mu_);
        if (gen != generation_)
            return nullptr;
        if (target_.version == 3) {
            auto st = std::make_shared<OpenState>();
            st->fh = fh;
            st->file_id = file_id;
            st->writable = writable;
            return st;
        }
        auto& shared = opens_[file_id];
        if (shared) {
            // The OPEN upgraded the shared state: its handle is the newest.
            // The previous nfsfh is left to libnfs (closing it would CLOSE
            // the state every user shares).
            shared->fh = fh;
            shared->writable = shared->writable || writable;
            ++shared->users;
            return shared;
        }
        shared = std::make_shared<OpenState>();
        shared->fh = fh;
        shared->file_id = file_id;
        shared->writable = writable;
        return shared;
    }

    // One user less; true when it was the last, and the handle is to be closed.
    bool release_open(const std::shared_ptr<OpenState>& st) {
        std::lock_guard lk(mu_);
        if (--st->users > 0)
            return false;
        if (auto it = opens_.find(st->file_id); it != opens_.end() && it->second == st)
            opens_.erase(it);
        return true;
    }

    // The open state of a file on this connection that allows writing, if any (v4).
    std::shared_ptr<OpenState> find_writable_open(std::uint64_t file_id) {
        std::lock_guard lk(mu_);
        auto it = opens_.find(file_id);
        return it == opens_.end() || !it->second->writable ? nullptr : it->second;
    }

    std::uint64_t readmax() const { return readmax_; }
    std::uint64_t writemax() const { return writemax_; }

    ConnectionState state() const {
        std::lock_guard lk(mu_);
        return state_;
    }

    bool is_up() const {
        std::lock_guard lk(mu_);
        return nfs_ != nullptr;
    }

    std::uint64_t generation() const {
        std::lock_guard lk(mu_);
        return generation_;
    }

    // Queues one request with `submit` (given the context, the callback and
    // its private data; returns libnfs's queueing status) and waits for the
    // answer until `deadline`. `take` receives the result (under mu_, in the
    // service thread). `generation` != 0: the request uses a file handle of
    // that generation of the context, and fails with not_sent if the
    // context was replaced since. `ask_again`: whether a request the server
    // says to send again later (server_asks_to_wait) is sent again, until
    // the deadline. Never for a CLOSE: libnfs frees the handle at any reply.
    enum class AskAgain { when_told, never };
    Errc call(const std::function<int(nfs_context*, nfs_cb, void*)>& submit,
              const std::function<void(nfs_context*, int, void*)>& take, std::uint64_t generation = 0,
              void (*orphan)(nfs_context*, int, void*) = nullptr, AskAgain ask_again = AskAgain::when_told) {
        const auto deadline = after(target_.op_timeout);
        std::unique_lock lk(mu_);
        for (auto pause = std::chrono::milliseconds(50);; pause = std::min(2 * pause, std::chrono::milliseconds(1000))) {
            // After the first pass the server has seen the request: asked to
            // wait, it did nothing of it, but one status of that kind
            // (NFS4ERR_RESOURCE) can follow operations of the COMPOUND that
            // it did carry out, so the request as a whole was sent.
            const bool first = pause == std::chrono::milliseconds(50);
            if (Errc e = wait_until_up(lk, deadline, generation); e != Errc::ok)
                return first ? e : after_sent(e);
            Call* c = nullptr;
            if (Errc e = submit_locked(submit, take, orphan, c); e != Errc::ok)
                return first ? e : after_sent(e);
            bool server_waits = false;
            const Errc e = wait_locked(lk, c, deadline, &server_waits);
            // Asked to come back later (a grace period after the server
            // restarted): asked again until the operation's deadline, as a
            // kernel client does; the server did nothing of it meanwhile.
            // At the deadline it is a timeout, not EAGAIN for the application.
            if (!server_waits || ask_again == AskAgain::never)
                return e;
            if (Clock::now() + pause >= deadline)
                return Errc::timed_out;
            lk.unlock();
            std::this_thread::sleep_for(pause);
            lk.lock();
        }
    }

    // The callback for a raw NFSv4 COMPOUND (rpc_nfs4_compound_async), as
    // an nfs_cb: its status as -errno, nothing to take.
    static void on_compound_reply(rpc_context*, int status, void* data, void* private_data) {
        int err = -EIO;
        if (status == RPC_STATUS_SUCCESS) {
            const nfsstat4 nfs4 = static_cast<COMPOUND4res*>(data)->status;
            if (nfs4 == NFS4ERR_DELAY || nfs4 == NFS4ERR_GRACE || nfs4 == NFS4ERR_RESOURCE)
                static_cast<Call*>(private_data)->server_waits = true;  // see server_asks_to_wait
            // NFSv4 status codes below 100 are the errno values of old Unix,
            // Linux's but for three; STALE and DELAY are above.
            err = nfs4 == NFS4_OK                          ? 0
                  : nfs4 == NFS4ERR_STALE                  ? -ESTALE
                  : nfs4 == NFS4ERR_DELAY                  ? -EAGAIN
                  : nfs4 == NFS4ERR_NAMETOOLONG            ? -ENAMETOOLONG
                  : nfs4 == NFS4ERR_NOTEMPTY               ? -ENOTEMPTY
                  : nfs4 == NFS4ERR_DQUOT                  ? -EDQUOT
                  : static_cast<int>(nfs4) < 100           ? -static_cast<int>(nfs4)
                                                           : -EIO;
        } else if (status == RPC_STATUS_CANCEL || status == RPC_STATUS_TIMEOUT) {
            err = -EINTR;
        }
        // On RPC_STATUS_ERROR `data` is libnfs's text ("Failed to reconnect
        // async" when the socket broke): on_reply reads the cause from it.
        // On success it is the COMPOUND4res, for the call's `take`.
        on_reply(err, nullptr, status == RPC_STATUS_ERROR || err == 0 ? data : nullptr, private_data);
    }

    // One request per element, all in flight at once; results[i] for requests[i].
    struct Request {
        std::function<int(nfs_context*, nfs_cb, void*)> submit;
        std::function<void(nfs_context*, int, void*)> take;
    };
    void call_batch(std::vector<Request>& requests, std::vector<Errc>& results, std::uint64_t generation = 0) {
        const auto deadline = after(target_.op_timeout);
        results.assign(requests.size(), Errc::ok);
        std::unique_lock lk(mu_);
        if (Errc e = wait_until_up(lk, deadline, generation); e != Errc::ok) {
            results.assign(requests.size(), e);
            return;
        }
        std::vector<Call*> calls(requests.size(), nullptr);
        for (std::size_t i = 0; i < requests.size(); ++i)
            results[i] = submit_locked(requests[i].submit, std::move(requests[i].take), nullptr, calls[i]);
        for (std::size_t i = 0; i < requests.size(); ++i)
            if (calls[i])
                results[i] = wait_locked(lk, calls[i], deadline);
    }

private:
    Errc wait_until_up(std::unique_lock<std::mutex>& lk, Clock::time_point deadline, std::uint64_t generation) {
        if (!nfs_ || state_lost_) {
            if (state_ == ConnectionState::unreachable)
                return Errc::not_sent;
            up_cv_.wait_until(lk, std::min(deadline, Clock::now() + kWaitForReconnect),
                              [&] { return (nfs_ != nullptr && !state_lost_) || stopping_; });
            if (!nfs_ || state_lost_)
                return Errc::not_sent;
        }
        if (generation != 0 && generation != generation_)
            return Errc::not_sent;  // the handle went with its context
        return Errc::ok;
    }

    Errc submit_locked(const std::function<int(nfs_context*, nfs_cb, void*)>& submit,
                       std::function<void(nfs_context*, int, void*)> take,
                       void (*orphan)(nfs_context*, int, void*), Call*& out) {
        out = nullptr;
        if (!nfs_)
            return Errc::not_sent;
        auto* c = new Call;
        c->take = std::move(take);
        c->orphan = orphan;
        c->conn = this;
        // Idle until now: the silence before this request says nothing about the server.
        if (pending() == 0)
            last_heard_ = Clock::now();
        // [!] Listed before it is submitted: libnfs calls some callbacks from
        // inside the submitting call (NFSv3 close needs no RPC), and on_reply
        // must find it there to unlist it.
        outstanding_.insert(c);
        const int rc = submit(nfs_, &Connection::on_reply, c);
        if (rc != 0) {
            // Not queued (libnfs could not encode or allocate it): no callback will come.
            const char* e = nfs_get_error(nfs_);
            LOG_DEBUG("%s: not queued: %s", target_.shown.c_str(), e ? e : "?");
            outstanding_.erase(c);
            delete c;
            return rc < -1 ? from_status(rc) : Errc::io;
        }
        wake();
        out = c;
        return Errc::ok;
    }

    Errc wait_locked(std::unique_lock<std::mutex>& lk, Call* c, Clock::time_point deadline,
                     bool* server_waits = nullptr) {
        c->cv.wait_until(lk, deadline, [&] { return c->settled; });
        if (!c->settled) {
            c->settled = true;
            c->result = Errc::timed_out;
        }
        const Errc result = c->result;
        if (server_waits)
            *server_waits = result == Errc::again && c->server_waits;
        if (result == Errc::io && !c->error_text.empty())
            LOG_WARN("%s: %s", target_.shown.c_str(), c->error_text.c_str());  // unexplained: say what the server said
        else if (result != Errc::ok && !c->error_text.empty())
            LOG_DEBUG("%s: %s", target_.shown.c_str(), c->error_text.c_str());
        release(c);
        return result;
    }

    static void on_reply(int status, nfs_context* nfs, void* data, void* private_data) {
        auto* c = static_cast<Call*>(private_data);
        Connection* self = c->conn;
        self->outstanding_.erase(c);
        if (!c->settled) {
            c->settled = true;
            c->result = from_status(status);
            if (status >= 0 && c->take)
                c->take(nfs, status, data);
            else if (status < 0 && data)
                c->error_text = static_cast<const char*>(data);
            if (status < 0 && c->error_text.find("NFS4ERR_OLD_STATEID") != std::string::npos) {
                // Sent with a handle another OPEN of the file has just
                // superseded (OpenState): the retry uses the new one.
                c->result = Errc::again;
            } else if (c->server_waits ||
                       (status < 0 && self->target_.version == 4 && server_asks_to_wait(c->error_text))) {
                c->result = Errc::again;
                c->server_waits = true;
            } else if (status < 0 && failed_with_the_socket(c->error_text)) {
                // In flight when the socket broke: libnfs (auto-reconnect
                // off) fails it in nfs_service, before drop_context can say
                // "unreachable" of it as of the rest. The same for this one.
                c->result = Errc::unreachable;
            } else if (status < 0 && self->target_.version == 4 && forgot_our_state(c->error_text)) {
                // Fails over like a lost connection: the service thread starts
                // a new client, and open files re-open on it.
                c->result = Errc::unreachable;
                if (!self->state_lost_)
                    self->state_lost_at_ = Clock::now();
                self->state_lost_ = true;
                self->wake();
            }
            c->cv.notify_one();
        } else if (c->orphan) {
            c->orphan(nfs, status, data);
        }
        self->release(c);
    }

    static void on_ping(rpc_context*, int status, void*, void* private_data) {
        auto* self = static_cast<Connection*>(private_data);
        self->ping_in_flight_ = false;
        if (status == RPC_STATUS_SUCCESS)
            self->last_heard_ = Clock::now();
    }

    void release(Call* c) {
        if (--c->refs == 0)
            delete c;
    }

    std::size_t pending() const { return outstanding_.size() + (ping_in_flight_ ? 1 : 0); }

    void wake() {
        const std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
    }

    // Fails every pending request with unreachable and destroys the context.
    // Called with mu_ held.
    void drop_context(const std::string& why) {
        if (!stopping_)
            LOG_WARN("%s: connection %d down (%s); %zu requests fail over, reconnecting", target_.shown.c_str(),
                     index_, why.c_str(), outstanding_.size());
        for (Call* c : outstanding_) {
            if (!c->settled) {
                c->settled = true;
                c->result = Errc::unreachable;
                c->cv.notify_one();
            }
        }
        nfs_context* dying = nfs_;
        nfs_ = nullptr;
        ++generation_;
        // Cancels what libnfs still holds: on_reply runs for those calls.
        nfs_destroy_context(dying);
        for (Call* c : outstanding_)
            release(c);  // libnfs never answered and never will
        outstanding_.clear();
        opens_.clear();  // their handles died with the context
        ping_in_flight_ = false;
        state_ = ConnectionState::reconnecting;
    }

    void serve() {
        std::unique_lock lk(mu_);
        int failed_attempts = 0;
        while (!stopping_) {
            if (!nfs_) {
                lk.unlock();
                std::string why;
                nfs_context* fresh = reconnect(why);
                if (fresh)
                    fresh = learn_root_fs(fresh, why);
                lk.lock();
                if (stopping_) {
                    if (fresh)
                        nfs_destroy_context(fresh);
                    break;
                }
                if (fresh) {
                    LOG_INFO("%s: connection %d back", target_.shown.c_str(), index_);
                    nfs_ = fresh;
                    ++generation_;
                    state_ = ConnectionState::connected;
                    last_heard_ = Clock::now();
                    failed_attempts = 0;
                    up_cv_.notify_all();
                    continue;
                }
                // Two failed attempts in a row: say so, so requests stop waiting.
                if (++failed_attempts >= 2 && state_ != ConnectionState::unreachable) {
                    state_ = ConnectionState::unreachable;
                    LOG_WARN("%s: connection %d: server unreachable (%s); retrying with back-off",
                             target_.shown.c_str(), index_, why.c_str());
                }
                const auto backoff = std::min(5000ms, 250ms * (1 << std::min(failed_attempts, 5)));
                stop_cv_.wait_for(lk, backoff, [&] { return stopping_; });
                continue;
            }
            pollfd p[2] = {{nfs_get_fd(nfs_), static_cast<short>(nfs_which_events(nfs_)), 0},
                           {wake_fd_, POLLIN, 0}};
            lk.unlock();
            ::poll(p, 2, kServiceTickMs);
            if (p[1].revents & POLLIN) {
                std::uint64_t n;
                [[maybe_unused]] auto r = ::read(wake_fd_, &n, sizeof n);
            }
            lk.lock();
            if (stopping_ || !nfs_)
                continue;
            const bool heard = p[0].revents & POLLIN;
            if (heard)
                last_heard_ = Clock::now();
            if (nfs_service(nfs_, p[0].revents) < 0) {
                const char* e = nfs_get_error(nfs_);
                drop_context(std::string("connection lost: ") + (e ? e : "socket error"));
                continue;
            }
            // (Again: the replies' callbacks may have taken a while, and
            // that is no silence of the server's.)
            if (heard)
                last_heard_ = Clock::now();
            // [!] Dropped only once the requests still in flight are answered
            // (or the server falls silent): the server is alive and would
            // still carry out a WRITE we had failed over, after its retry on
            // the new client, possibly over newer data.
            if (state_lost_ && (outstanding_.empty() || seconds_since(state_lost_at_) > dead_after_)) {
                state_lost_ = false;
                drop_context("the server forgot this client's NFSv4 state (lease expired, or it restarted)");
                continue;
            }
            // Silent too long while waiting for something (a request, or the
            // idle ping): the server is gone or hung.
            const double silent = seconds_since(last_heard_);
            const bool pinged = ping_sent_ > last_heard_;
            if ((pending() > 0 || pinged) && silent > dead_after_) {
                drop_context("no answer for " + std::to_string(static_cast<int>(silent)) + " s");
                continue;
            }
            // Pinged also while requests are pending: a server busy with a slow
            // request still answers a NULL, a hung one does not.
            if (!ping_in_flight_ && Clock::now() - std::max(last_heard_, ping_sent_) > kPingAfter) {
                if (rpc_null_async(nfs_get_rpc_context(nfs_), kNfsProgram, target_.version, &Connection::on_ping,
                                   this) == 0) {
                    ping_in_flight_ = true;
                    // Idle until now: the silence is counted from the first
                    // unanswered ping (just before it, so that it counts as sent
                    // since), not from the last answer long ago.
                    ping_sent_ = Clock::now();
                    if (!pinged)
                        last_heard_ = ping_sent_ - 1ms;
                }
            }
        }
    }

    // Asks `fresh`, before it serves, for the file system of the remote root:
    // the file ids of every answer depend on it (file_id_on), and a server
    // may report another fsid after a restart. Returns `fresh`, or null (and
    // `why`) when it did not answer: then `fresh` is destroyed.
    nfs_context* learn_root_fs(nfs_context* fresh, std::string& why) {
        const std::string root = target_.subpath.empty() ? "/" : target_.subpath;
        if (target_.version == 3) {
            nfs_stat_64 st{};
            const int rc = nfs_lstat64(fresh, root.c_str(), &st);
            if (rc == 0) {
                target_.root->fs = st.nfs_dev;
                return fresh;
            }
            const char* e = nfs_get_error(fresh);
            why = std::string("cannot read the attributes of the directory: ") + (e ? e : "?");
            // An NFS error is the server's answer; EIO alone may be a broken socket.
            if (rc == -ENOENT || rc == -ENOTDIR || rc == -EACCES || rc == -EPERM || rc == -ESTALE ||
                (e && std::strstr(e, "NFS3ERR_"))) {
                // The server answered: it serves, and each request will say
                // what is wrong with the directory.
                LOG_WARN("%s: connection %d: %s", target_.shown.c_str(), index_, why.c_str());
                return fresh;
            }
            nfs_destroy_context(fresh);
            return nullptr;
        }
        if (!target_.root->by_getattr)
            return fresh;  // libnfs's stat, which has no fsid
        PathAnswer answer;
        ask_path_v4(fresh, components_v4(target_, root), after(target_.connect_timeout), answer);
        if (answer.ok) {
            target_.root->fs = answer.fs;
            return fresh;
        }
        if (answer.settled()) {  // answered: it serves; each request will say what is wrong
            LOG_WARN("%s: connection %d: the server did not describe the directory", target_.shown.c_str(), index_);
            return fresh;
        }
        why = "no answer about the directory";
        nfs_destroy_context(fresh);  // cancels the request: its callback runs now, while `answer` exists
        return nullptr;
    }

    // Mounts a fresh context; null and `why` when the server is not there.
    nfs_context* reconnect(std::string& why) {
        if (target_.probe_port && !probe_tcp(target_.host, target_.probe_port, target_.connect_timeout, why))
            return nullptr;
        int status = 0;
        const std::string name = "netfs." + std::to_string(::getpid()) + "." + std::to_string(index_) + "." +
                                 std::to_string(++attempts_);
        return mount_context(target_, target_.export_path, name, status, why);
    }

    const Target& target_;
    const int index_;

    std::mutex open_owner_mu_;  // see open_owner_lock()
    mutable std::mutex mu_;  // guards everything below, and every call on nfs_
    nfs_context* nfs_;       // null while down
    std::uint64_t generation_ = 0;  // +1 whenever nfs_ is replaced or dropped
    ConnectionState state_ = ConnectionState::connected;
    std::set<Call*> outstanding_;
    std::map<std::uint64_t, std::shared_ptr<OpenState>> opens_;  // by file id (NFSv4)
    bool ping_in_flight_ = false;
    bool state_lost_ = false;  // a reply said our NFSv4 client or stateids are gone: no new requests
    Clock::time_point state_lost_at_;
    Clock::time_point last_heard_;  // bytes arrived, or the connection became busy
    Clock::time_point ping_sent_;   // the last idle ping went out
    double dead_after_;
    bool stopping_ = false;
    std::condition_variable up_cv_;    // nfs_ came back
    std::condition_variable stop_cv_;  // for the back-off sleep
    std::uint64_t attempts_ = 0;       // service thread only

    std::uint64_t readmax_ = 0, writemax_ = 0;  // constant after construction
    const int wake_fd_;  // makes poll() return when a request was queued
    std::thread thread_;
};

class NfsBackend;

class NfsFile : public BackendFile {
public:
    NfsFile(NfsBackend& backend, std::string full_path, int flags, Connection* conn, std::uint64_t generation,
            std::shared_ptr<OpenState> state)
        : backend_(backend), path_(std::move(full_path)), flags_(flags), file_id_(state->file_id), conn_(conn),
          generation_(generation), state_(std::move(state)) {}
    ~NfsFile() override { close(); }

    Errc read(std::uint64_t offset, std::span<std::byte> buf, std::size_t& transferred) override;
    Errc write(std::uint64_t offset, std::span<const std::byte> data, std::size_t& transferred) override;
    Errc fsync(bool datasync) override;
    Errc getattr(Attr& out) override;
    Errc truncate(std::uint64_t size) override;
    Errc close() override;

private:
    // The open state on a live context, re-opened by path after a reconnect.
    // Its `fh` is read inside the submit functions, under the connection's mu_.
    Errc handle(Connection*& conn, std::uint64_t& generation, std::shared_ptr<OpenState>& state);

    NfsBackend& backend_;
    const std::string path_;  // as libnfs names it (export-relative)
    const int flags_;         // for a re-open: access mode, never O_TRUNC again
    const std::uint64_t file_id_;

    std::mutex mu_;  // guards the three below
    Connection* conn_;
    std::uint64_t generation_;
    std::shared_ptr<OpenState> state_;  // null after close()
};

class NfsBackend : public Backend {
public:
    NfsBackend(Target target, std::string shown) : target_(std::move(target)), shown_(std::move(shown)) {}

    // Takes the first, already mounted context; mounts the others.
    Errc start(nfs_context* first, std::uint32_t connections, std::string& message) {
        conns_.push_back(std::make_unique<Connection>(target_, 0, first));
        for (std::uint32_t i = 1; i < connections; ++i) {
            int status = 0;
            std::string why;
            nfs_context* nfs = mount_context(target_, target_.export_path, client_name(i), status, why);
            if (!nfs) {
                message = shown_ + ": connection " + std::to_string(i + 1) + " could not mount: " + why;
                return from_status(status);
            }
            conns_.push_back(std::make_unique<Connection>(target_, static_cast<int>(i), nfs));
        }
        std::uint64_t rmax = UINT64_MAX, wmax = UINT64_MAX;
        for (auto& c : conns_) {
            rmax = std::min(rmax, c->readmax());
            wmax = std::min(wmax, c->writemax());
        }
        limits_.rsize = limits_.rsize_max = static_cast<std::uint32_t>(std::clamp<std::uint64_t>(rmax, 4096, 1u << 20));
        // NfsFile::write sends a longer write as pieces in flight at once, so
        // the engine may write 1 MiB even where one WRITE carries 3 KiB (NFSv4).
        limits_.wsize = limits_.wsize_max =
            static_cast<std::uint32_t>(std::clamp<std::uint64_t>(std::max(wmax, kDefaultTransfer), 4096, 1u << 20));
        limits_.max_in_flight = 16 * static_cast<std::uint32_t>(conns_.size());
        limits_.has_file_id = true;
        limits_.has_change_attr = false;
        if (target_.version == 4) {
            // The root's file system, which libnfs's stat did not report.
            // The backend's own requests walk the path from the server's
            // root (open_nfs found one without symbolic links); where the
            // server does not let them, attributes come from libnfs, which
            // cannot tell file systems apart.
            Attr root;
            const std::string root_path = target_.subpath.empty() ? "/" : target_.subpath;
            const auto deadline = after(target_.op_timeout);
            Errc e;
            std::uint64_t fs = 0;
            while (is_transient(e = ask_attributes(*conns_[0], getattr_v4_request(root_path, root, &fs), root)) &&
                   Clock::now() < deadline)
                std::this_thread::sleep_for(std::chrono::milliseconds(250));
            if (is_transient(e)) {
                message = shown_ + ": cannot read the attributes of the directory: " + std::string(netfs::describe(e));
                return e;
            }
            if (e == Errc::ok)
                target_.root->fs = fs;
            target_.root->by_getattr = e == Errc::ok;
            if (e != Errc::ok)
                LOG_WARN("%s: cannot ask for attributes by path (%s): file ids of files below other file systems "
                         "in the export may collide",
                         shown_.c_str(), std::string(netfs::describe(e)).c_str());
        }
        // The server forgets an unlinked file at once (ganesha: STALE), so the
        // engine renames an open file aside instead, as the kernel's client does.
        limits_.open_files_survive_unlink = false;
        return Errc::ok;
    }

    std::string client_name(std::uint32_t i) const {
        return "netfs." + std::to_string(::getpid()) + "." + std::to_string(i) + ".0";
    }

    ConnectionState connection_state() const override {
        bool reconnecting = false;
        for (auto& c : conns_) {
            const ConnectionState s = c->state();
            if (s == ConnectionState::connected)
                return s;
            reconnecting |= s == ConnectionState::reconnecting;
        }
        return reconnecting ? ConnectionState::reconnecting : ConnectionState::unreachable;
    }

    std::string describe() const override { return shown_; }
    BackendLimits limits() const override { return limits_; }

    // The next connection that is up (any, when none is).
    Connection& pick() {
        const std::size_t n = conns_.size();
        const std::size_t start = next_.fetch_add(1, std::memory_order_relaxed);
        for (std::size_t i = 0; i < n; ++i) {
            Connection& c = *conns_[(start + i) % n];
            if (c.is_up())
                return c;
        }
        return *conns_[start % n];
    }

    // The remote path as libnfs names it: below the mounted export.
    std::string full(const std::string& path) const {
        if (target_.subpath.empty())
            return path.empty() ? "/" : path;
        return path == "/" || path.empty() ? target_.subpath : target_.subpath + path;
    }

    // A request that returns nothing but its status.
    Errc simple(const std::function<int(nfs_context*, nfs_cb, void*)>& submit) {
        return pick().call(submit, nullptr);
    }

    // The attributes of path `p`, not following a final symbolic link.
    Connection::Request lstat_request(const std::string& p, Attr& out) {
        if (target_.version == 4 && target_.root->by_getattr)
            return getattr_v4_request(p, out);
        return {[p](nfs_context* nfs, nfs_cb cb, void* d) { return nfs_lstat64_async(nfs, p.c_str(), cb, d); },
                [&out, root = target_.root](nfs_context*, int, void* data) {
                    out = to_attr(*static_cast<nfs_stat_64*>(data), root->fs);
                }};
    }

    Errc lstat_full(Connection& conn, const std::string& p, Attr& out) {
        return ask_attributes(conn, lstat_request(p, out), out);
    }

    // Sends `r`, which fills `out`; an answer without the attributes asked
    // for (all zero: see take_getattr_v4) is EIO.
    static Errc ask_attributes(Connection& conn, const Connection::Request& r, Attr& out,
                               std::uint64_t generation = 0) {
        out = Attr{};
        Errc e = conn.call(r.submit, r.take, generation);
        if (e == Errc::ok && out.mode == 0)
            e = Errc::io;
        return e;
    }

    Errc getattr(const std::string& path, Attr& out) override {
        const std::string p = full(path);
        return lstat_full(pick(), p, out);
    }

    Errc readdir(const std::string& path, std::vector<DirEntry>& out) override {
        // ganesha answers a listing with STALE when an entry vanishes while
        // it collects the attributes (seen with renames racing a listing);
        // the directory itself is fine, and a new listing succeeds.
        // Over NFSv4 an entry renamed in between can also fail it with NOENT.
        Errc e = Errc::bad_handle;
        for (int attempt = 0; attempt < 5 && (e == Errc::bad_handle || (attempt > 0 && e == Errc::not_found));
             ++attempt)
            e = list(full(path), out);
        return e;
    }

    Errc list(const std::string& p, std::vector<DirEntry>& out) {
        std::vector<DirEntry> entries;
        std::vector<std::size_t> mount_points;  // entries on another file system than the directory
        Connection& conn = pick();
        Errc e = conn.call(
            [&](nfs_context* nfs, nfs_cb cb, void* d) { return nfs_opendir_async(nfs, p.c_str(), cb, d); },
            [&](nfs_context* nfs, int, void* data) {
                // The whole listing arrived with the reply; nfs_readdir() only walks it.
                auto* dir = static_cast<nfsdir*>(data);
                std::optional<std::uint64_t> dir_fs;
                std::vector<std::uint64_t> fs;
                while (nfsdirent* d = nfs_readdir(nfs, dir)) {
                    const std::string_view name = d->name;
                    if (name == ".")
                        dir_fs = d->dev;
                    if (name != "." && name != "..") {
                        entries.push_back({std::string(name), to_attr(*d, target_.root->fs)});
                        fs.push_back(d->dev);
                    }
                }
                nfs_closedir(nfs, dir);
                for (std::size_t i = 0; dir_fs && i < fs.size(); ++i)
                    if (fs[i] != *dir_fs)
                        mount_points.push_back(i);
            },
            0, &close_orphan_dir);
        if (e != Errc::ok)
            return e;
        if (target_.version == 3 && !mount_points.empty()) {
            // A directory with another file system mounted on it: knfsd
            // lists it with the fileid of the directory underneath and the
            // fsid of the one on top (libnfs looks the entry up for the
            // rest), so its file id is asked for as a lookup does.
            std::vector<Connection::Request> requests;
            for (const std::size_t i : mount_points) {
                Attr* attr = &entries[i].attr;
                requests.push_back({[child = p == "/" ? "/" + entries[i].name : p + "/" + entries[i].name](
                                        nfs_context* nfs, nfs_cb cb, void* d) {
                                        return nfs_lstat64_async(nfs, child.c_str(), cb, d);
                                    },
                                    [attr, root = target_.root](nfs_context*, int, void* data) {
                                        *attr = to_attr(*static_cast<nfs_stat_64*>(data), root->fs);
                                    }});
            }
            std::vector<Errc> results;
            conn.call_batch(requests, results);
            for (const Errc r : results)
                if (r != Errc::ok)
                    return r == Errc::not_found ? Errc::bad_handle : after_sent(r);  // (renamed meanwhile: list again)
        }
        if (target_.version == 4) {
            // libnfs 4.0 lists NFSv4 entries without their fileid (inode 0)
            // nor fsid: ask for each entry's attributes, all at once.
            std::vector<Connection::Request> requests;
            requests.reserve(entries.size());
            for (auto& entry : entries) {
                entry.attr = Attr{};
                requests.push_back(lstat_request(p == "/" ? "/" + entry.name : p + "/" + entry.name, entry.attr));
            }
            std::vector<Errc> results;
            conn.call_batch(requests, results);
            for (Errc& r : results)
                r = after_sent(r);  // the listing was asked for already
            std::vector<DirEntry> kept;
            for (std::size_t i = 0; i < entries.size(); ++i) {
                if (results[i] == Errc::not_found || results[i] == Errc::bad_handle)
                    continue;  // removed or renamed while we listed
                if (results[i] != Errc::ok)
                    return results[i];
                if (entries[i].attr.mode == 0)
                    return Errc::io;  // an answer without the attributes asked for
                kept.push_back(std::move(entries[i]));
            }
            entries = std::move(kept);
        }
        out = std::move(entries);
        return Errc::ok;
    }

    Errc open_full(const std::string& p, int flags, std::unique_ptr<BackendFile>& out) {
        const int nfs_flags = (flags & (O_ACCMODE | O_TRUNC)) | O_NOFOLLOW |
                              ((flags & O_ACCMODE) != O_RDONLY ? kStableWrites : 0);
        return open_with(p, flags, out, nullptr, [&](nfs_context* nfs, nfs_cb cb, void* d) {
            return nfs_open_async(nfs, p.c_str(), nfs_flags, cb, d);
        });
    }

    // Opens (or creates) with `submit` on the next connection and reads the
    // attributes through the new handle; a directory is refused.
    Errc open_with(const std::string& p, int flags, std::unique_ptr<BackendFile>& out, Attr* attr_out,
                   const std::function<int(nfs_context*, nfs_cb, void*)>& submit) {
        Connection& conn = pick();
        const std::uint64_t gen = conn.generation();
        nfsfh* fh = nullptr;
        // One OPEN at a time per connection (open_owner_lock), and the
        // handle adopted before the next OPEN of the file can supersede it.
        auto serial = conn.open_owner_lock();
        // An open whose answer comes after we gave up is closed then, over
        // NFSv3 (no RPC); over NFSv4 that CLOSE could end an open state
        // other users share, so the handle is left to the server's lease.
        Errc e = conn.call(submit, [&](nfs_context*, int, void* data) { fh = static_cast<nfsfh*>(data); }, gen,
                           target_.version == 3 ? &close_orphan_file : nullptr);
        if (e != Errc::ok)
            return e;
        Attr attr;
        e = after_sent(fstat_with(conn, gen, [fh] { return fh; }, attr));
        if (e == Errc::ok && S_ISDIR(attr.mode))
            e = Errc::is_dir;
        std::shared_ptr<OpenState> state;
        if (e == Errc::ok) {
            state = conn.adopt_open(fh, attr.file_id, (flags & O_ACCMODE) != O_RDONLY, gen);
            if (!state)
                return Errc::unreachable;  // the context went away; the engine retries
        } else {
            // Over NFSv4 another user of the file may share this open: leave it.
            if (target_.version == 3)
                conn.call([&](nfs_context* nfs, nfs_cb cb, void* d) { return nfs_close_async(nfs, fh, cb, d); },
                          nullptr, gen, nullptr, Connection::AskAgain::never);
            return e;
        }
        if (attr_out)
            *attr_out = attr;
        out = std::make_unique<NfsFile>(*this, p, flags & O_ACCMODE, &conn, gen, std::move(state));
        return Errc::ok;
    }

    // One user of `state` less; the last one closes it on the server.
    static Errc close_open(Connection& conn, std::uint64_t gen, const std::shared_ptr<OpenState>& state) {
        auto serial = conn.open_owner_lock();
        if (!conn.release_open(state))
            return Errc::ok;
        return conn.call(
            [&](nfs_context* nfs, nfs_cb cb, void* d) { return nfs_close_async(nfs, state->fh, cb, d); }, nullptr,
            gen, nullptr, Connection::AskAgain::never);
    }

    // The attributes of an open file: `handle` gives its libnfs handle,
    // read inside the request under the connection's lock (an OpenState's
    // changes with each OPEN of the file). Over NFSv4 through a GETATTR of
    // its file handle, as getattr_v4_request asks for paths: libnfs 4.0's fstat
    // leaves out the fsid and maps owners and blocks its own way, and the
    // same file must have the same attributes either way.
    template <class Handle>
    Errc fstat_with(Connection& conn, std::uint64_t gen, Handle handle, Attr& out) {
        if (target_.version == 4 && target_.root->by_getattr) {
            const Connection::Request r{[&](nfs_context* nfs, nfs_cb, void* d) {
                                            const auto* fh = reinterpret_cast<const LibnfsFh*>(nfs_get_fh(handle()));
                                            std::vector<nfs_argop4> ops(2);
                                            ops[0].argop = OP_PUTFH;
                                            ops[0].nfs_argop4_u.opputfh.object.nfs_fh4_len =
                                                static_cast<u_int>(fh->len);
                                            ops[0].nfs_argop4_u.opputfh.object.nfs_fh4_val = fh->val;
                                            return send_getattr_v4(nfs, ops, &Connection::on_compound_reply, d);
                                        },
                                        take_getattr_v4(out)};
            return ask_attributes(conn, r, out, gen);
        }
        return conn.call(
            [&](nfs_context* nfs, nfs_cb cb, void* d) { return nfs_fstat64_async(nfs, handle(), cb, d); },
            [&](nfs_context*, int, void* data) { out = to_attr(*static_cast<nfs_stat_64*>(data), target_.root->fs); },
            gen);
    }
    Errc fstat(Connection& conn, std::uint64_t gen, const std::shared_ptr<OpenState>& st, Attr& out) {
        return fstat_with(conn, gen, [&st] { return st->fh; }, out);
    }

    Errc open(const std::string& path, int flags, std::unique_ptr<BackendFile>& out) override {
        return open_full(full(path), flags, out);
    }

    Errc create(const std::string& path, std::uint32_t mode, int flags, std::unique_ptr<BackendFile>& out,
                Attr& attr) override {
        const std::string p = full(path);
        auto create_with = [&](int nfs_flags) {
            return open_with(p, flags, out, &attr, [&](nfs_context* nfs, nfs_cb cb, void* d) {
                return nfs_create_async(nfs, p.c_str(), nfs_flags, static_cast<int>(mode & 07777), cb, d);
            });
        };
        const int nfs_flags = (flags & (O_ACCMODE | O_TRUNC | O_EXCL)) | O_NOFOLLOW | kStableWrites;
        if (target_.version == 3 || (flags & O_EXCL))
            return create_with(nfs_flags);
        // libnfs 4.0 gives a file created without O_EXCL mode 0600 whatever
        // was asked (only its exclusive create sets attributes): create
        // exclusively, and open the file when it exists already.
        for (int attempt = 0; attempt < 3; ++attempt) {
            Errc e = create_with((nfs_flags & ~O_TRUNC) | O_EXCL);
            if (e != Errc::exists)
                return e;
            e = open_with(p, flags, out, &attr, [&](nfs_context* nfs, nfs_cb cb, void* d) {
                return nfs_open_async(nfs, p.c_str(), (nfs_flags & ~O_EXCL), cb, d);
            });
            if (e != Errc::not_found)
                return e;  // (not_found: removed in between; try again)
        }
        return Errc::again;
    }

    // The attributes of what a change has just made at `path`. The change is
    // done: a connection lost now must not fail it (the program would try
    // again and get EEXIST), so the lookup, safe to repeat, is asked again
    // until the operation's timeout.
    Errc attr_of_made(const std::string& path, Attr& attr) {
        const auto deadline = after(target_.op_timeout);
        for (auto pause = std::chrono::milliseconds(50);; pause = std::min(2 * pause, std::chrono::milliseconds(1000))) {
            const Errc e = getattr(path, attr);
            if (!is_transient(e) || Clock::now() + pause >= deadline)
                return after_sent(e);
            std::this_thread::sleep_for(pause);
        }
    }

    Errc mknod(const std::string& path, std::uint32_t mode, std::uint64_t rdev, Attr& attr) override {
        const std::string p = full(path);
        if (S_ISREG(mode)) {
            std::unique_ptr<BackendFile> f;
            Errc e = create(path, mode, O_WRONLY | O_EXCL, f, attr);
            if (e == Errc::ok)
                e = after_sent(f->close());
            return e;
        }
        // libnfs 4.0 makes no FIFOs or sockets over NFSv4 ("Invalid file
        // type for MKNOD call"), and device nodes with device number 0.
        if (target_.version == 4)
            return Errc::not_supported;
        Errc e = simple([&](nfs_context* nfs, nfs_cb cb, void* d) {
            return nfs_mknod_async(nfs, p.c_str(), static_cast<int>(mode), static_cast<int>(rdev), cb, d);
        });
        return e == Errc::ok ? attr_of_made(path, attr) : e;
    }

    Errc mkdir(const std::string& path, std::uint32_t mode, Attr& attr) override {
        const std::string p = full(path);
        Errc e = simple([&](nfs_context* nfs, nfs_cb cb, void* d) {
            return nfs_mkdir2_async(nfs, p.c_str(), static_cast<int>(mode & 07777), cb, d);
        });
        return e == Errc::ok ? attr_of_made(path, attr) : e;
    }

    Errc symlink(const std::string& target, const std::string& path, Attr& attr) override {
        const std::string p = full(path);
        Errc e = simple([&](nfs_context* nfs, nfs_cb cb, void* d) {
            return nfs_symlink_async(nfs, target.c_str(), p.c_str(), cb, d);
        });
        return e == Errc::ok ? attr_of_made(path, attr) : e;
    }

    Errc link(const std::string& existing, const std::string& path, Attr& attr) override {
        const std::string from = full(existing), to = full(path);
        Errc e = simple(
            [&](nfs_context* nfs, nfs_cb cb, void* d) { return nfs_link_async(nfs, from.c_str(), to.c_str(), cb, d); });
        return e == Errc::ok ? attr_of_made(path, attr) : e;
    }

    Errc readlink(const std::string& path, std::string& target) override {
        const std::string p = full(path);
        Connection& conn = pick();
        if (target_.version == 4 && target_.root->by_getattr) {
            // libnfs 4.0 hands an NFSv4 target on without its length, and it
            // ends only where XDR's padding happens to end it: one of 4 or 8
            // bytes came back with whatever followed it in the reply. The
            // backend's own READLINK keeps the length.
            return conn.call(
                [names = components_v4(target_, p)](nfs_context* nfs, nfs_cb, void* d) {
                    std::vector<nfs_argop4> ops = lookup_ops_v4(names);
                    ops.back().argop = OP_READLINK;
                    return send_compound_v4(nfs, ops, &Connection::on_compound_reply, d);
                },
                [&](nfs_context*, int, void* data) {
                    const auto* res = static_cast<const COMPOUND4res*>(data);
                    const u_int n = res ? res->resarray.resarray_len : 0;
                    if (n > 0 && res->resarray.resarray_val[n - 1].resop == OP_READLINK) {
                        const utf8str_cs& link =
                            res->resarray.resarray_val[n - 1].nfs_resop4_u.opreadlink.READLINK4res_u.resok4.link;
                        target.assign(link.utf8string_val, link.utf8string_len);
                    }
                });
        }
        Errc e = conn.call(
            [&](nfs_context* nfs, nfs_cb cb, void* d) { return nfs_readlink_async(nfs, p.c_str(), cb, d); },
            [&](nfs_context*, int, void* data) { target = static_cast<const char*>(data); });
        if (e == Errc::ok && target_.version == 4) {
            // (The path cannot be walked by the backend's own requests: the
            // link's size, which is its target's length, tells where it ends.)
            Attr link;
            if (Errc a = after_sent(lstat_full(conn, p, link)); a != Errc::ok)
                return a;
            if (link.size > 0 && link.size < target.size())
                target.resize(link.size);
        }
        return e;
    }

    Errc unlink(const std::string& path) override {
        const std::string p = full(path);
        return simple([&](nfs_context* nfs, nfs_cb cb, void* d) { return nfs_unlink_async(nfs, p.c_str(), cb, d); });
    }

    Errc rmdir(const std::string& path) override {
        const std::string p = full(path);
        return simple([&](nfs_context* nfs, nfs_cb cb, void* d) { return nfs_rmdir_async(nfs, p.c_str(), cb, d); });
    }

    Errc rename(const std::string& from, const std::string& to, unsigned flags) override {
        // NFS RENAME always replaces; no-replace or exchange cannot be done atomically.
        if (flags != 0)
            return Errc::not_supported;
        const std::string a = full(from), b = full(to);
        return simple(
            [&](nfs_context* nfs, nfs_cb cb, void* d) { return nfs_rename_async(nfs, a.c_str(), b.c_str(), cb, d); });
    }

    Errc setattr(const std::string& path, const SetAttr& change, Attr& out) override {
        const std::string p = full(path);
        Connection& conn = pick();
        Attr before;
        if (Errc e = lstat_full(conn, p, before); e != Errc::ok)
            return e;
        if (target_.version == 4) {
            SetAttr rest = change;
            if (change.mask & SetAttr::kSize) {
                if (S_ISDIR(before.mode))
                    return Errc::is_dir;
                Errc e = Errc::ok;
                if (truncate_through_writer(before.file_id, change.size, e)) {
                    if (e != Errc::ok)
                        return e;
                    rest.mask &= ~SetAttr::kSize;
                } else if (!(change.mask & (SetAttr::kMtime | SetAttr::kMtimeNow))) {
                    // mtime moves with the size, as libnfs's own truncate
                    // asks on the other paths (NFSv3, a writable open) and
                    // as Linux's truncate(2) does.
                    rest.mask |= SetAttr::kMtimeNow;
                }
            }
            if (S_ISLNK(before.mode))
                rest.mask &= ~SetAttr::kMode;  // a symbolic link has no mode of its own on Linux
            if (Errc e = setattr_v4(conn, p, rest); e != Errc::ok)
                return e;
            return after_sent(lstat_full(conn, p, out));
        }
        // NFSv3. The l- variants only for a symbolic link. `before` says
        // what the path is; a swap between the two requests is followed.
        const bool is_link = S_ISLNK(before.mode);
        if (change.mask & SetAttr::kMode) {
            // A symbolic link has no mode of its own on Linux; leave it.
            if (!S_ISLNK(before.mode)) {
                Errc e = conn.call([&](nfs_context* nfs, nfs_cb cb, void* d) {
                    return nfs_chmod_async(nfs, p.c_str(), static_cast<int>(change.mode & 07777), cb, d);
                }, nullptr);
                if (e != Errc::ok)
                    return e;
            }
        }
        if (change.mask & (SetAttr::kUid | SetAttr::kGid)) {
            const int uid = static_cast<int>((change.mask & SetAttr::kUid) ? change.uid : before.uid);
            const int gid = static_cast<int>((change.mask & SetAttr::kGid) ? change.gid : before.gid);
            Errc e = conn.call(
                [&](nfs_context* nfs, nfs_cb cb, void* d) {
                    return is_link ? nfs_lchown_async(nfs, p.c_str(), uid, gid, cb, d)
                                   : nfs_chown_async(nfs, p.c_str(), uid, gid, cb, d);
                },
                nullptr);
            if (e != Errc::ok)
                return e;
        }
        if (change.mask & SetAttr::kSize) {
            if (S_ISDIR(before.mode))
                return Errc::is_dir;
            Errc e = conn.call([&](nfs_context* nfs, nfs_cb cb, void* d) {
                return nfs_truncate_async(nfs, p.c_str(), change.size, cb, d);
            }, nullptr);
            if (e != Errc::ok)
                return e;
        }
        const std::uint32_t time_bits = SetAttr::kAtime | SetAttr::kAtimeNow | SetAttr::kMtime | SetAttr::kMtimeNow;
        if (change.mask & time_bits) {
            // libnfs takes both times as timevals (microseconds); null sets
            // both to the server's clock.
            timeval now;
            ::gettimeofday(&now, nullptr);
            auto tv = [](const timespec& t) { return timeval{t.tv_sec, t.tv_nsec / 1000}; };
            timeval times[2] = {tv(before.atime), tv(before.mtime)};
            if (change.mask & SetAttr::kAtimeNow)
                times[0] = now;
            else if (change.mask & SetAttr::kAtime)
                times[0] = tv(change.atime);
            if (change.mask & SetAttr::kMtimeNow)
                times[1] = now;
            else if (change.mask & SetAttr::kMtime)
                times[1] = tv(change.mtime);
            const bool both_now = (change.mask & SetAttr::kAtimeNow) && (change.mask & SetAttr::kMtimeNow);
            Errc e = conn.call(
                [&](nfs_context* nfs, nfs_cb cb, void* d) {
                    timeval* t = both_now ? nullptr : times;
                    return is_link ? nfs_lutimes_async(nfs, p.c_str(), t, cb, d) : nfs_utimes_async(nfs, p.c_str(), t, cb, d);
                },
                nullptr);
            if (e != Errc::ok)
                return e;
        }
        return after_sent(lstat_full(conn, p, out));
    }

    // Takes the attributes from the answer to send_getattr_v4: `out` (file_id
    // as file_id_on gives it; all zero when the answer lacks them) and, when
    // asked for, `fs`: the file's file system.
    std::function<void(nfs_context*, int, void*)> take_getattr_v4(Attr& out, std::uint64_t* fs = nullptr) const {
        return [&out, fs, root = target_.root](nfs_context*, int, void* data) {
            Attr a;
            std::uint64_t file_fs = 0;
            if (!getattr_v4_reply(data, a, file_fs)) {
                out = Attr{};
                return;
            }
            a.file_id = file_id_on(file_fs, root->fs, a.file_id);
            out = a;
            if (fs)
                *fs = file_fs;
        };
    }

    // A GETATTR of path `p` (not following a final symbolic link, as lstat).
    Connection::Request getattr_v4_request(const std::string& p, Attr& out, std::uint64_t* fs = nullptr) {
        return {[names = components_v4(target_, p)](nfs_context* nfs, nfs_cb, void* d) {
                    std::vector<nfs_argop4> ops = lookup_ops_v4(names);
                    return send_getattr_v4(nfs, ops, &Connection::on_compound_reply, d);
                },
                take_getattr_v4(out, fs)};
    }

    // libnfs 4.0 changes attributes over NFSv4 through an OPEN of the path
    // and a CLOSE: a directory refuses the OPEN (NFS4ERR_ISDIR), and for a
    // file that pair runs outside the connection's open-owner lock, so an
    // open or close of another file in flight on the same connection gets
    // its sequence refused (EIO: seen in reintegration, which sets the
    // times of one upload while others open and close theirs), and the
    // CLOSE would end open state other handles of the file share. So the
    // backend sends the COMPOUND itself: PUTROOTFH, a LOOKUP per component
    // of the path in the server's pseudo file system, SETATTR with the
    // anonymous stateid (which RFC 7530 allows for a size change too) and
    // the size, mode, owner, group and times asked for.
    Errc setattr_v4(Connection& conn, const std::string& p, const SetAttr& change) {
        const std::vector<std::string> names = components_v4(target_, p);
        // Attributes in the order of their numbers, as XDR for fattr4 wants.
        std::uint32_t mask[2] = {0, 0};
        std::string values;
        auto set = [&](int attr) { mask[attr / 32] |= 1u << (attr % 32); };
        if (change.mask & SetAttr::kSize) {
            set(FATTR4_SIZE);
            put_u32(values, static_cast<std::uint32_t>(change.size >> 32));
            put_u32(values, static_cast<std::uint32_t>(change.size));
        }
        if (change.mask & SetAttr::kMode) {
            set(FATTR4_MODE);
            put_u32(values, change.mode & 07777);
        }
        if (change.mask & SetAttr::kUid) {
            set(FATTR4_OWNER);
            put_string(values, std::to_string(change.uid));  // numeric, as libnfs sends owners
        }
        if (change.mask & SetAttr::kGid) {
            set(FATTR4_OWNER_GROUP);
            put_string(values, std::to_string(change.gid));
        }
        if (change.mask & (SetAttr::kAtime | SetAttr::kAtimeNow)) {
            set(FATTR4_TIME_ACCESS_SET);
            put_settime(values, change.mask & SetAttr::kAtimeNow, change.atime);
        }
        if (change.mask & (SetAttr::kMtime | SetAttr::kMtimeNow)) {
            set(FATTR4_TIME_MODIFY_SET);
            put_settime(values, change.mask & SetAttr::kMtimeNow, change.mtime);
        }
        if (mask[0] == 0 && mask[1] == 0)
            return Errc::ok;
        return conn.call(
            [&](nfs_context* nfs, nfs_cb, void* d) {
                std::vector<nfs_argop4> ops = lookup_ops_v4(names);
                SETATTR4args& sa = ops.back().nfs_argop4_u.opsetattr;
                ops.back().argop = OP_SETATTR;
                sa.stateid = {};
                sa.obj_attributes.attrmask.bitmap4_len = 2;
                sa.obj_attributes.attrmask.bitmap4_val = mask;
                sa.obj_attributes.attr_vals.attrlist4_len = static_cast<u_int>(values.size());
                sa.obj_attributes.attr_vals.attrlist4_val = values.data();
                return send_compound_v4(nfs, ops, &Connection::on_compound_reply, d);
            },
            nullptr);
    }

    // NFSv4: a file open for writing on some connection is truncated
    // through that open's stateid, as a kernel client does. An open for
    // reading only will not do: its stateid allows no size change
    // (NFS4ERR_OPENMODE, EIO), and test_fsx's O_DIRECT readers left such
    // opens about. False when there is no writable open; setattr_v4 then
    // sends the size with the anonymous stateid (never libnfs's truncate by
    // path: its OPEN and CLOSE would end the open state that handles of the
    // file share on that connection).
    bool truncate_through_writer(std::uint64_t file_id, std::uint64_t size, Errc& result) {
        for (auto& conn : conns_) {
            auto serial = conn->open_owner_lock();
            const std::uint64_t gen = conn->generation();
            if (auto st = conn->find_writable_open(file_id)) {
                result = conn->call(
                    [&](nfs_context* nfs, nfs_cb cb, void* d) { return nfs_ftruncate_async(nfs, st->fh, size, cb, d); },
                    nullptr, gen);
                return true;
            }
        }
        return false;
    }

    Errc statfs(StatFs& out) override {
        const std::string p = full("/");
        return pick().call(
            [&](nfs_context* nfs, nfs_cb cb, void* d) { return nfs_statvfs64_async(nfs, p.c_str(), cb, d); },
            [&](nfs_context*, int, void* data) {
                const auto& sv = *static_cast<nfs_statvfs_64*>(data);
                out.block_size = sv.f_frsize ? sv.f_frsize : sv.f_bsize;
                out.blocks = sv.f_blocks;
                out.blocks_free = sv.f_bfree;
                out.blocks_avail = sv.f_bavail;
                out.files = sv.f_files;
                out.files_free = sv.f_ffree;
                out.name_max = sv.f_namemax ? static_cast<std::uint32_t>(sv.f_namemax) : 255;
            });
    }

private:
    Target target_;  // referenced by the connections: declared before them
    const std::string shown_;
    BackendLimits limits_;
    std::vector<std::unique_ptr<Connection>> conns_;
    std::atomic<std::size_t> next_{0};
};

Errc NfsFile::handle(Connection*& conn, std::uint64_t& generation, std::shared_ptr<OpenState>& state) {
    std::lock_guard lk(mu_);
    if (!state_)
        return Errc::bad_handle;  // closed
    if (conn_->generation() != generation_) {
        // The context was replaced: the old handle died with it.
        std::unique_ptr<BackendFile> fresh;
        Errc e = backend_.open_full(path_, flags_, fresh);
        if (e != Errc::ok)
            return e == Errc::not_found ? Errc::bad_handle : e;
        auto* f = static_cast<NfsFile*>(fresh.get());
        if (f->file_id_ != file_id_)
            return Errc::bad_handle;  // another file has the name now; `fresh` closes its open
        // Its open is ours now.
        std::lock_guard theirs(f->mu_);
        conn_ = f->conn_;
        generation_ = f->generation_;
        state_ = std::move(f->state_);
    }
    conn = conn_;
    generation = generation_;
    state = state_;
    return Errc::ok;
}

Errc NfsFile::read(std::uint64_t offset, std::span<std::byte> buf, std::size_t& transferred) {
    Connection* conn;
    std::uint64_t gen;
    std::shared_ptr<OpenState> st;
    if (Errc e = handle(conn, gen, st); e != Errc::ok)
        return e;
    const std::uint64_t count = std::min<std::uint64_t>(buf.size(), conn->readmax());
    transferred = 0;
    return conn->call(
        [&](nfs_context* nfs, nfs_cb cb, void* d) {
            // libnfs 4.0 keeps a page cache per opened NFSv3 handle that
            // cannot be turned off (nfs_set_pagecache(0) leaves one page):
            // it holds the pages of a read that was not page-aligned and
            // answers the next read starting in them from that copy, which
            // nothing else (a truncate by path, another client) invalidates.
            // It returned old bytes after a truncate down and up (test_fsx
            // over NFSv3). Emptied before each read, it is never used.
            nfs_pagecache_invalidate(nfs, st->fh);
            return nfs_pread_async(nfs, st->fh, offset, count, cb, d);
        },
        [&](nfs_context*, int status, void* data) {
            const auto n = std::min<std::size_t>(static_cast<std::size_t>(status), buf.size());
            std::memcpy(buf.data(), data, n);
            transferred = n;
        },
        gen);
}

Errc NfsFile::write(std::uint64_t offset, std::span<const std::byte> data, std::size_t& transferred) {
    Connection* conn;
    std::uint64_t gen;
    std::shared_ptr<OpenState> st;
    if (Errc e = handle(conn, gen, st); e != Errc::ok)
        return e;
    transferred = 0;
    // A write longer than the server's (or libnfs's, see kNfs4WriteMax)
    // limit goes out as pieces all in flight at once rather than one round
    // trip after another. libnfs encodes each request, data included, when
    // it is queued.
    const std::uint64_t piece = conn->writemax();
    const std::size_t pieces =
        static_cast<std::size_t>(std::min<std::uint64_t>((data.size() + piece - 1) / piece, kMaxPieces));
    std::vector<std::size_t> written(pieces, 0);
    std::vector<Connection::Request> requests;
    requests.reserve(pieces);
    for (std::size_t i = 0; i < pieces; ++i) {
        const std::uint64_t at = i * piece;
        const std::uint64_t count = std::min<std::uint64_t>(piece, data.size() - at);
        const std::byte* bytes = data.data() + at;
        std::size_t* done = &written[i];
        OpenState* open = st.get();
        requests.push_back({[open, at, count, bytes, offset](nfs_context* nfs, nfs_cb cb, void* d) {
                                return nfs_pwrite_async(nfs, open->fh, offset + at, count, bytes, cb, d);
                            },
                            [done](nfs_context*, int status, void*) { *done = static_cast<std::size_t>(status); }});
    }
    std::vector<Errc> results;
    conn->call_batch(requests, results, gen);
    // What was written without a gap from `offset` counts; a later piece
    // written past a failed or short one is written again by the engine.
    for (std::size_t i = 0; i < pieces; ++i) {
        if (results[i] != Errc::ok)
            return transferred > 0 ? Errc::ok : results[i];
        transferred += written[i];
        if (written[i] < std::min<std::uint64_t>(piece, data.size() - i * piece))
            break;
    }
    return Errc::ok;
}

Errc NfsFile::fsync(bool) {
    Connection* conn;
    std::uint64_t gen;
    std::shared_ptr<OpenState> st;
    if (Errc e = handle(conn, gen, st); e != Errc::ok)
        return e;
    return conn->call([&](nfs_context* nfs, nfs_cb cb, void* d) { return nfs_fsync_async(nfs, st->fh, cb, d); },
                      nullptr, gen);
}

Errc NfsFile::getattr(Attr& out) {
    Connection* conn;
    std::uint64_t gen;
    std::shared_ptr<OpenState> st;
    if (Errc e = handle(conn, gen, st); e != Errc::ok)
        return e;
    return backend_.fstat(*conn, gen, st, out);
}

Errc NfsFile::truncate(std::uint64_t size) {
    Connection* conn;
    std::uint64_t gen;
    std::shared_ptr<OpenState> st;
    if (Errc e = handle(conn, gen, st); e != Errc::ok)
        return e;
    return conn->call(
        [&](nfs_context* nfs, nfs_cb cb, void* d) { return nfs_ftruncate_async(nfs, st->fh, size, cb, d); }, nullptr,
        gen);
}

Errc NfsFile::close() {
    std::lock_guard lk(mu_);
    if (!state_)
        return Errc::ok;
    std::shared_ptr<OpenState> st = std::move(state_);
    if (conn_->generation() != generation_)
        return Errc::ok;  // the handle died with its context
    return NfsBackend::close_open(*conn_, generation_, st);
}

} // namespace

namespace {

bool parse_port(const std::string& text, std::uint16_t& out) {
    if (text.empty() || text.size() > 5 || !std::all_of(text.begin(), text.end(), ::isdigit))
        return false;
    const unsigned long n = std::stoul(text);
    if (n == 0 || n > 65535)
        return false;
    out = static_cast<std::uint16_t>(n);
    return true;
}

// "/a/b/c" -> "/a/b", "/a" -> "/".
std::string parent_of(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

// libnfs's error text without its internal function names: "mount_cb: RPC
// error: Mount failed with error MNT3ERR_ACCES(13) ..." -> "Mount failed ...".
std::string tidy(std::string why) {
    for (const char* noise : {"RPC error: ", "mount_cb: ", "nfs_mount_async: "}) {
        if (auto at = why.find(noise); at != std::string::npos)
            why = why.substr(at + std::strlen(noise));
    }
    while (!why.empty() && (why.back() == '\n' || why.back() == ' '))
        why.pop_back();
    return why;
}

// `path` (below the mounted export, "/a/b") with the symbolic links on it
// followed, name by name, as a kernel client's mount follows them: relative
// targets from the link's directory, absolute ones from the server's root,
// which must lead back into the export. A name that does not resolve is
// left as it is, for the caller's check of the path to explain. False and
// `why` for a link that leads nowhere usable.
bool follow_links(nfs_context* nfs, const std::string& export_path, const std::string& path, std::string& real,
                  std::string& why) {
    real = path;
    nfs_stat_64 st{};
    auto names_of = [](const std::string& text) {
        std::vector<std::string> names;
        for (std::size_t at = 0; at <= text.size();) {
            const std::size_t end = std::min(text.find('/', at), text.size());
            if (end > at && text.compare(at, end - at, ".") != 0)
                names.push_back(text.substr(at, end - at));
            at = end + 1;
        }
        return names;
    };
    auto joined = [](const std::vector<std::string>& names) {
        std::string out;
        for (const std::string& n : names)
            out += "/" + n;
        return out.empty() ? std::string("/") : out;
    };
    const std::string export_shown = export_path == "/" ? "the server's root" : "export '" + export_path + "'";
    std::vector<std::string> done;
    std::vector<std::string> todo = names_of(path);
    std::reverse(todo.begin(), todo.end());  // next name last
    for (int links = 0; !todo.empty();) {
        const std::string name = todo.back();
        todo.pop_back();
        if (name == "..") {
            if (done.empty() && export_path != "/") {
                why = "'" + path + "' leads out of " + export_shown + " (through '..')";
                return false;
            }
            if (!done.empty())
                done.pop_back();
            continue;
        }
        done.push_back(name);
        const std::string at = joined(done);
        const int rc = nfs_lstat64(nfs, at.c_str(), &st);
        if (rc != 0 || !S_ISLNK(st.nfs_mode)) {
            if (rc != 0 || (!S_ISDIR(st.nfs_mode) && !todo.empty()))
                break;  // missing, or not a directory: left for the caller's check to explain
            continue;
        }
        if (++links > 40) {
            why = "'" + path + "': too many levels of symbolic links on the server";
            return false;
        }
        char target[4096] = {};
        if (nfs_readlink(nfs, at.c_str(), target, sizeof target - 1) != 0) {
            why = "cannot read the symbolic link '" + at + "' on the server";
            return false;
        }
        done.pop_back();
        // Its size is the target's length: libnfs 4.0's NFSv4 readlink
        // does not end the text where the server's answer ends.
        std::string to = target;
        if (st.nfs_size > 0 && st.nfs_size < to.size())
            to.resize(st.nfs_size);
        std::vector<std::string> more = names_of(to);
        if (!to.empty() && to[0] == '/') {
            const std::vector<std::string> root = names_of(export_path);
            if (more.size() < root.size() || !std::equal(root.begin(), root.end(), more.begin())) {
                why = "'" + at + "' is a symbolic link to '" + to + "', outside " + export_shown +
                      " (mount that path instead)";
                return false;
            }
            done.clear();
            more.erase(more.begin(), more.begin() + static_cast<std::ptrdiff_t>(root.size()));
        }
        todo.insert(todo.end(), more.rbegin(), more.rend());
    }
    std::vector<std::string> rest(todo.rbegin(), todo.rend());
    done.insert(done.end(), rest.begin(), rest.end());
    real = joined(done);
    return true;
}

} // namespace

Errc open_nfs(const RemoteUrl& url, const RemoteOptions& options, std::unique_ptr<Backend>& out, std::string& message) {
    auto fail = [&](Errc e, const std::string& text) {
        message = url.shown + ": " + text;
        return e;
    };
    if (url.host.empty())
        return fail(Errc::invalid, "no server named (use nfs://host/export/path)");
    if (!url.user.empty())
        return fail(Errc::invalid, "an nfs:// URL names no user (the server sees the mounting user's uid, or ?uid=N)");

    Target t;
    t.shown = url.shown;
    t.host = url.host;
    t.version = static_cast<int>(options.nfs_version);
    t.connect_timeout = options.connect_timeout > 0 ? options.connect_timeout : 10;
    t.op_timeout = options.op_timeout > 0 ? options.op_timeout : 30;
    std::uint16_t nfsport = url.port, mountport = 0;
    std::string passed;  // query options libnfs reads itself
    for (const auto& [key, value] : url.query) {
        if (key == "version") {
            if (value != "3" && value != "4")
                return fail(Errc::invalid, "version=" + value + ": NFS version must be 3 or 4");
            t.version = value[0] - '0';
        } else if (key == "nfsport" || key == "mountport") {
            std::uint16_t port = 0;
            if (!parse_port(value, port))
                return fail(Errc::invalid, key + "=" + value + ": not a port (1 to 65535)");
            (key == "nfsport" ? nfsport : mountport) = port;
        } else if (key == "uid" || key == "gid" || key == "tcp-syncnt" || key == "auto-traverse-mounts") {
            passed += "&" + key + "=" + value;
        } else {
            return fail(Errc::invalid, "unknown option '" + key +
                                           "' (nfs:// takes nfsport, mountport, version, uid, gid, tcp-syncnt)");
        }
    }
    if (t.version != 3 && t.version != 4)
        return fail(Errc::invalid, "NFS version " + std::to_string(t.version) + " is not supported (use 3 or 4)");
    std::string query = "version=" + std::to_string(t.version) + passed;
    if (nfsport)
        query += "&nfsport=" + std::to_string(nfsport);
    if (mountport)
        query += "&mountport=" + std::to_string(mountport);
    t.libnfs_url = "nfs://" + t.host + "/?" + query;

    // A port where nothing listens fails here, quickly and clearly, rather
    // than somewhere inside libnfs's mount sequence.
    std::vector<std::pair<std::uint16_t, std::string>> probes;
    if (t.version == 4) {
        probes.push_back({nfsport ? nfsport : 2049, "NFS"});
    } else {
        if (mountport)
            probes.push_back({mountport, "MOUNT"});
        if (nfsport)
            probes.push_back({nfsport, "NFS"});
        if (!mountport || !nfsport)
            probes.push_back({111, "rpcbind (give ?nfsport=N&mountport=M to do without it)"});
    }
    for (const auto& [port, what] : probes) {
        std::string why;
        if (!probe_tcp(t.host, port, t.connect_timeout, why))
            return fail(Errc::unreachable, "cannot reach the " + what + " service at " + t.host + " port " +
                                               std::to_string(port) + ": " + why + " (is the server running?)");
    }
    t.probe_port = probes.front().first;

    // The export is the longest prefix of the path the server lets us mount;
    // the rest is a directory below it. (NFSv4 mounts any path of the
    // server's pseudo file system, so there it is the whole path when that
    // exists and no symbolic link is on the way.)
    const std::string client = "netfs." + std::to_string(::getpid()) + ".0.0";
    std::string path = url.path;
    nfs_context* mounted = nullptr;
    std::string first_why;
    int first_status = 0;
    for (bool followed = false;; followed = true) {
        for (std::string prefix = path; !mounted; prefix = parent_of(prefix)) {
            int status = 0;
            std::string why;
            mounted = mount_context(t, prefix, client, status, why);
            if (mounted) {
                t.export_path = prefix;
                t.subpath = path.size() > prefix.size() && prefix != "/" ? path.substr(prefix.size())
                            : prefix == "/" && path != "/"               ? path
                                                                         : "";
                break;
            }
            if (first_why.empty()) {
                first_why = tidy(why);
                first_status = status;
            }
            if (from_status(status) == Errc::unreachable || from_status(status) == Errc::timed_out)
                return fail(from_status(status), "the server does not answer: " + first_why);
            if (prefix == "/")
                break;
        }
        // NFSv4's LOOKUP stops at a symbolic link: a path through one was
        // mounted only part of the way, and a link at its end was mounted
        // as if it were the directory. The path is followed from the
        // server's root, as a kernel client's mount follows it, and what
        // it leads to is mounted instead.
        if (followed || t.version != 4 || !mounted)
            break;
        if (t.subpath.empty()) {
            // (libnfs's mount followed a link at the end; LOOKUPs do not.)
            PathAnswer answer;
            ask_path_v4(mounted, components_v4(t, "/"), after(t.connect_timeout), answer);
            if (!answer.replied) {
                nfs_destroy_context(mounted);  // (its callback runs now, while `answer` exists)
                return fail(Errc::unreachable, "the server does not answer");
            }
            if (answer.ok && S_ISDIR(answer.attr.mode))
                break;
        }
        int status = 0;
        std::string why, real;
        // (Its own NFSv4 client: a second SETCLIENTID under the name of
        // `mounted` would make the server drop that one's state.)
        nfs_context* root = mount_context(t, "/", client + ".root", status, why);
        if (!root)
            break;  // the path as it is, for the checks below to explain
        const bool ok = follow_links(root, "/", path, real, why);
        nfs_destroy_context(root);
        if (!ok) {
            nfs_destroy_context(mounted);
            return fail(Errc::not_found, why);
        }
        if (real == path)
            break;
        nfs_destroy_context(mounted);
        mounted = nullptr;
        path = real;
        first_why.clear();  // what the server says of this path, if it refuses it
        first_status = 0;
    }
    if (!mounted && first_why.find("Program is not available") != std::string::npos)
        return fail(Errc::unreachable, "rpcbind on " + t.host + " knows no NFS " + std::to_string(t.version) +
                                           " MOUNT service (is the NFS server running? if it uses fixed ports, "
                                           "give them as ?nfsport=N&mountport=M)");
    if (!mounted) {
        const Errc e = first_status == -EACCES || first_status == -EPERM || first_status == -ENOENT
                           ? Errc::not_found
                           : from_status(first_status);
        return fail(e == Errc::ok ? Errc::io : e,
                    "no export at or above '" + url.path + "' that this client may mount (the server says: " +
                        first_why + "); check the export name with 'showmount -e " + t.host +
                        "' and that the export allows this client");
    }
    // NFSv3: the server's MOUNT found the export. Below it libnfs follows
    // links on the way (an absolute one not as a kernel mount does) but not
    // one at the end: the path is followed here, and libnfs never has to.
    if (t.version == 3 && !t.subpath.empty()) {
        std::string real, why;
        if (!follow_links(mounted, t.export_path, t.subpath, real, why)) {
            nfs_destroy_context(mounted);
            return fail(Errc::not_found, why);
        }
        t.subpath = real == "/" ? "" : real;
    }
    // The path below the export must be a directory we may enter.
    const std::string root = t.subpath.empty() ? "/" : t.subpath;
    nfs_stat_64 st{};
    int rc = nfs_lstat64(mounted, root.c_str(), &st);
    if (rc == 0 && !S_ISDIR(st.nfs_mode))
        rc = -ENOTDIR;
    if (rc == 0)
        rc = nfs_access(mounted, root.c_str(), R_OK | X_OK);
    if (rc != 0) {
        nfs_destroy_context(mounted);
        // NFSv4 has no exports to speak of: one tree, the server's pseudo file system.
        const std::string where = "'" + url.path + "'" +
                                  (t.version == 3 ? " (in export '" + t.export_path + "')" : std::string());
        switch (rc) {
        case -ENOENT: return fail(Errc::not_found, where + " does not exist on the server (check the path)");
        case -ENOTDIR: return fail(Errc::not_dir, where + " is not a directory");
        case -EACCES:
        case -EPERM:
        {
            const auto uid = url.query.find("uid"), gid = url.query.find("gid");
            return fail(from_status(rc),
                        "permission denied for " + where + ": the server checks uid " +
                            (uid != url.query.end() ? uid->second : std::to_string(::getuid())) + " gid " +
                            (gid != url.query.end() ? gid->second : std::to_string(::getgid())) +
                            " (another with ?uid=N&gid=M; see docs/remotes.md)");
        }
        default: return fail(from_status(rc), where + ": " + std::string(describe(from_status(rc))));
        }
    }

    t.root->fs = st.nfs_dev;
    const int t_version = t.version;
    const std::string export_path = t.export_path, subpath = t.subpath;
    auto backend = std::make_unique<NfsBackend>(std::move(t), url.shown);
    const std::uint32_t connections = std::clamp<std::uint32_t>(options.connections, 1, 4);
    if (Errc e = backend->start(mounted, connections, message); e != Errc::ok)
        return e;
    const BackendLimits limits = backend->limits();
    LOG_INFO("%s: NFSv%d, export %s%s%s, %u connections, rsize %u, wsize %u", url.shown.c_str(), t_version,
             export_path.c_str(), subpath.empty() ? "" : ", below it ", subpath.c_str(), connections, limits.rsize,
             limits.wsize);
    out = std::move(backend);
    return Errc::ok;
}

} // namespace netfs
