#include "app/fuse_adapter.h"

#include "core/log.h"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

namespace netfs {

namespace {

// The request size the kernel may send (max_write, max_pages) and read ahead
// in one go, and the st_blksize we report so that cp, cat and friends use
// buffers of that size too: 1 MiB is what remotes serve best, and each FUSE
// round trip costs the same whatever its size.
constexpr unsigned kIoSize = 1u << 20;

FuseAdapter& adapter_of(fuse_req_t req) { return *static_cast<FuseAdapter*>(fuse_req_userdata(req)); }
Engine& engine_of(fuse_req_t req) { return adapter_of(req).engine(); }

// The errno a program sees for e. A transient error still there after the
// engine's retries (the server unreachable, no answer within the timeout,
// the server asking to be asked again) is EIO, as on an NFS soft mount:
// EAGAIN from a blocking read or EHOSTUNREACH from open(2) is nothing
// programs expect of a file system. The daemon logs the cause of a failed
// read or write and each change of the connection's state.
int errno_for_program(Errc e) { return is_transient(e) ? EIO : to_errno(e); }

// The one place an Errc becomes a reply; Errc::ok replies success (for the
// operations whose only answer is "done").
void reply_error(fuse_req_t req, Errc e) { fuse_reply_err(req, errno_for_program(e)); }

double seconds(std::chrono::milliseconds ms) { return std::chrono::duration<double>(ms).count(); }

// The one place an Attr becomes what the kernel sees: the mount's uid=, gid=
// and umask= apply here, and only here.
struct stat to_stat(const MountOptions& options, Ino ino, const Attr& attr) {
    struct stat st {};
    st.st_ino = ino;
    st.st_mode = (attr.mode & S_IFMT) | (attr.mode & 07777 & ~options.umask);
    st.st_nlink = attr.nlink;
    st.st_uid = options.uid.value_or(attr.uid);
    st.st_gid = options.gid.value_or(attr.gid);
    st.st_rdev = attr.rdev;
    st.st_size = static_cast<off_t>(attr.size);
    st.st_blocks = static_cast<blkcnt_t>(attr.blocks);
    st.st_blksize = kIoSize;
    st.st_atim = attr.atime;
    st.st_mtim = attr.mtime;
    st.st_ctim = attr.ctime;
    return st;
}

fuse_entry_param to_entry_param(const MountOptions& options, const Entry& entry) {
    fuse_entry_param p{};
    p.ino = entry.ino;  // 0: a negative entry, cached for entry_timeout
    p.attr = to_stat(options, entry.ino, entry.attr);
    p.attr_timeout = entry.attr_timeout;
    p.entry_timeout = entry.entry_timeout;
    return p;
}

// Replies with a new lookup reference; if the kernel never gets it (the
// request was interrupted), the engine must not keep it either.
void reply_entry(fuse_req_t req, const Entry& entry) {
    const fuse_entry_param p = to_entry_param(adapter_of(req).options(), entry);
    if (fuse_reply_entry(req, &p) != 0 && entry.ino != 0)
        engine_of(req).forget(entry.ino, 1);
}

Caller caller_of(fuse_req_t req) {
    const fuse_ctx* ctx = fuse_req_ctx(req);
    return Caller{ctx->uid, ctx->gid};
}

// With a write-back cache the kernel reads partial pages of files opened
// write-only, and appends by itself (it knows the size).
int open_flags(const MountOptions& options, int flags) {
    if (!options.writeback_cache)
        return flags;
    if ((flags & O_ACCMODE) == O_WRONLY)
        flags = (flags & ~O_ACCMODE) | O_RDWR;
    return flags & ~O_APPEND;
}

void fill_open_reply(fuse_file_info* fi, const OpenResult& result) {
    fi->fh = result.handle;
    fi->keep_cache = result.keep_cache;
    fi->direct_io = result.direct_io;
}

// ---- lifecycle --------------------------------------------------------------

void on_init(void* userdata, fuse_conn_info* conn) {
    auto& adapter = *static_cast<FuseAdapter*>(userdata);
    const unsigned offered_readahead = conn->max_readahead;

    auto want = [conn](unsigned capability) {
        if (conn->capable & capability)
            conn->want |= capability;
    };
    auto refuse = [conn](unsigned capability) { conn->want &= ~capability; };

    want(FUSE_CAP_AUTO_INVAL_DATA);
    want(FUSE_CAP_READDIRPLUS);
    refuse(FUSE_CAP_READDIRPLUS_AUTO);  // always plus: ls -l is one round trip
    want(FUSE_CAP_PARALLEL_DIROPS);
    want(FUSE_CAP_ASYNC_DIO);
    want(FUSE_CAP_ASYNC_READ);
    want(FUSE_CAP_ATOMIC_O_TRUNC);  // open(O_TRUNC) is one engine call, not open + setattr
    refuse(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
    refuse(FUSE_CAP_HANDLE_KILLPRIV);  // the kernel clears set-id bits on write, not us
    refuse(FUSE_CAP_EXPORT_SUPPORT);
    if (adapter.options().writeback_cache)
        want(FUSE_CAP_WRITEBACK_CACHE);
    else
        refuse(FUSE_CAP_WRITEBACK_CACHE);

    // libfuse sizes its receive buffer before init: never ask for more.
    conn->max_write = std::min(conn->max_write, kIoSize);
    // The kernel takes the smaller of this and its block device readahead
    // window (mount_command raises that window when it may).
    conn->max_readahead = kIoSize;

    LOG_INFO("kernel FUSE protocol %u.%u: max_write %u KiB, max_readahead %u KiB (window at mount %u KiB), "
             "writeback cache %s, readdirplus %s, auto_inval_data %s",
             conn->proto_major, conn->proto_minor, conn->max_write >> 10, conn->max_readahead >> 10,
             offered_readahead >> 10,
             (conn->want & FUSE_CAP_WRITEBACK_CACHE) ? "on" : "off",
             (conn->want & FUSE_CAP_READDIRPLUS) ? "on" : "off",
             (conn->want & FUSE_CAP_AUTO_INVAL_DATA) ? "on" : "off");
    if (conn->max_write < kIoSize)
        LOG_WARN("the kernel accepts writes of at most %u KiB, not %u KiB: expect more round trips",
                 conn->max_write >> 10, kIoSize >> 10);
}

void on_destroy(void*) { LOG_DEBUG("FUSE session ended"); }

// ---- namespace --------------------------------------------------------------

void on_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    Entry entry;
    Errc e = engine_of(req).lookup(parent, name, entry);
    if (e != Errc::ok)
        return reply_error(req, e);
    reply_entry(req, entry);
}

void on_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
    engine_of(req).forget(ino, nlookup);
    fuse_reply_none(req);
}

void on_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
    Engine& engine = engine_of(req);
    for (size_t i = 0; i < count; ++i)
        engine.forget(forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

void on_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    Engine& engine = engine_of(req);
    Attr attr;
    Errc e = engine.getattr(ino, attr, fi ? fi->fh : 0);
    if (e != Errc::ok)
        return reply_error(req, e);
    const struct stat st = to_stat(adapter_of(req).options(), ino, attr);
    fuse_reply_attr(req, &st, seconds(engine.options().attr_timeout));
}

void on_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
    SetAttr change;
    if (to_set & FUSE_SET_ATTR_MODE) {
        change.mask |= SetAttr::kMode;
        change.mode = attr->st_mode & 07777;
    }
    if (to_set & FUSE_SET_ATTR_UID) {
        change.mask |= SetAttr::kUid;
        change.uid = attr->st_uid;
    }
    if (to_set & FUSE_SET_ATTR_GID) {
        change.mask |= SetAttr::kGid;
        change.gid = attr->st_gid;
    }
    if (to_set & FUSE_SET_ATTR_SIZE) {
        change.mask |= SetAttr::kSize;
        change.size = static_cast<std::uint64_t>(attr->st_size);
    }
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
        change.mask |= SetAttr::kAtimeNow;
    } else if (to_set & FUSE_SET_ATTR_ATIME) {
        change.mask |= SetAttr::kAtime;
        change.atime = attr->st_atim;
    }
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
        change.mask |= SetAttr::kMtimeNow;
    } else if (to_set & FUSE_SET_ATTR_MTIME) {
        change.mask |= SetAttr::kMtime;
        change.mtime = attr->st_mtim;
    }
    // ftruncate() comes with the handle, which works after the name is gone.
    const std::uint64_t handle = fi ? fi->fh : 0;
    Engine& engine = engine_of(req);
    Attr after;
    Errc e = engine.setattr(ino, change, handle, after);
    if (e != Errc::ok)
        return reply_error(req, e);
    const struct stat st = to_stat(adapter_of(req).options(), ino, after);
    fuse_reply_attr(req, &st, seconds(engine.options().attr_timeout));
}

void on_readlink(fuse_req_t req, fuse_ino_t ino) {
    std::string target;
    Errc e = engine_of(req).readlink(ino, target);
    if (e != Errc::ok)
        return reply_error(req, e);
    fuse_reply_readlink(req, target.c_str());
}

void on_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
    Entry entry;
    Errc e = engine_of(req).mknod(caller_of(req), parent, name, mode, rdev, entry);
    if (e != Errc::ok)
        return reply_error(req, e);
    reply_entry(req, entry);
}

void on_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
    Entry entry;
    Errc e = engine_of(req).mkdir(caller_of(req), parent, name, mode, entry);
    if (e != Errc::ok)
        return reply_error(req, e);
    reply_entry(req, entry);
}

void on_symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
    Entry entry;
    Errc e = engine_of(req).symlink(caller_of(req), target, parent, name, entry);
    if (e != Errc::ok)
        return reply_error(req, e);
    reply_entry(req, entry);
}

void on_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t new_parent, const char* new_name) {
    Entry entry;
    Errc e = engine_of(req).link(ino, new_parent, new_name, entry);
    if (e != Errc::ok)
        return reply_error(req, e);
    reply_entry(req, entry);
}

void on_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
    reply_error(req, engine_of(req).unlink(parent, name));
}

void on_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
    reply_error(req, engine_of(req).rmdir(parent, name));
}

void on_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent,
               const char* new_name, unsigned int flags) {
    reply_error(req, engine_of(req).rename(parent, name, new_parent, new_name, flags));
}

void on_statfs(fuse_req_t req, fuse_ino_t) {
    StatFs fs;
    Errc e = engine_of(req).statfs(fs);
    if (e != Errc::ok)
        return reply_error(req, e);
    struct statvfs st {};
    st.f_bsize = fs.block_size;
    st.f_frsize = fs.block_size;
    st.f_blocks = fs.blocks;
    st.f_bfree = fs.blocks_free;
    st.f_bavail = fs.blocks_avail;
    st.f_files = fs.files;
    st.f_ffree = fs.files_free;
    st.f_favail = fs.files_free;
    st.f_namemax = fs.name_max;
    fuse_reply_statfs(req, &st);
}

// ---- directories ------------------------------------------------------------

void on_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    Engine& engine = engine_of(req);
    std::uint64_t handle = 0;
    Errc e = engine.opendir(ino, handle);
    if (e != Errc::ok)
        return reply_error(req, e);
    fi->fh = handle;
    if (fuse_reply_open(req, fi) != 0)
        engine.releasedir(handle);  // interrupted: no releasedir will come
}

// Entries without a node ("." and "..", and all of a plain readdir) still
// need a non-zero d_ino: some programs skip entries whose d_ino is 0. Where
// the node id is not known, the placeholder is the one libfuse's high-level
// API uses for the same purpose.
Ino dirent_ino(Ino dir, const DirListEntry& entry) {
    constexpr Ino kUnknownIno = 0xffffffff;
    if (entry.ino != 0)
        return entry.ino;
    return entry.name == "." ? dir : kUnknownIno;
}

void fill_directory(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi,
                    bool plus) {
    const MountOptions& options = adapter_of(req).options();
    const double attr_timeout = seconds(engine_of(req).options().attr_timeout);
    const double entry_timeout = seconds(engine_of(req).options().entry_timeout);
    std::vector<char> buf(size);
    size_t used = 0;
    auto accept = [&](const DirListEntry& entry, std::uint64_t next_offset) {
        const off_t next = static_cast<off_t>(next_offset);
        size_t needed;
        if (plus) {
            fuse_entry_param p{};
            if (entry.ino != 0) {
                p = to_entry_param(options, Entry{entry.ino, entry.attr, attr_timeout, entry_timeout});
            } else {
                // No node and no lookup reference: the kernel only lists it.
                p.attr.st_ino = dirent_ino(ino, entry);
                p.attr.st_mode = entry.attr.mode & S_IFMT;
            }
            needed = fuse_add_direntry_plus(req, buf.data() + used, size - used, entry.name.c_str(), &p,
                                            next);
        } else {
            struct stat st {};
            st.st_ino = dirent_ino(ino, entry);
            st.st_mode = entry.attr.mode & S_IFMT;
            needed = fuse_add_direntry(req, buf.data() + used, size - used, entry.name.c_str(), &st, next);
        }
        if (needed > size - used)
            return false;  // full: the engine keeps this entry for the next call
        used += needed;
        return true;
    };
    Errc e = engine_of(req).readdir(ino, fi->fh, static_cast<std::uint64_t>(offset), plus, accept);
    // Entries already added carry lookup references: they must reach the kernel.
    if (e != Errc::ok && used == 0)
        return reply_error(req, e);
    fuse_reply_buf(req, buf.data(), used);
}

void on_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi) {
    fill_directory(req, ino, size, offset, fi, false);
}

void on_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi) {
    fill_directory(req, ino, size, offset, fi, true);
}

void on_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
    engine_of(req).releasedir(fi->fh);
    fuse_reply_err(req, 0);
}

// Online, directory changes reach the remote before they are answered;
// offline, they are logged and synced at the latest here.
void on_fsyncdir(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) {
    const Errc e = engine_of(req).fsyncdir();
    if (e != Errc::ok)
        return reply_error(req, e);
    fuse_reply_err(req, 0);
}

// ---- files ------------------------------------------------------------------

void on_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    Engine& engine = engine_of(req);
    OpenResult result;
    Errc e = engine.open(ino, open_flags(adapter_of(req).options(), fi->flags), result);
    if (e != Errc::ok)
        return reply_error(req, e);
    fill_open_reply(fi, result);
    if (result.remote_changed)
        adapter_of(req).invalidate_attributes(ino);  // before the reply: the next read must see the new size
    if (fuse_reply_open(req, fi) != 0)
        engine.release(ino, result.handle);  // interrupted: no release will come
}

void on_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
    Engine& engine = engine_of(req);
    Entry entry;
    OpenResult result;
    Errc e = engine.create(caller_of(req), parent, name, mode, open_flags(adapter_of(req).options(), fi->flags),
                           entry, result);
    if (e != Errc::ok)
        return reply_error(req, e);
    fill_open_reply(fi, result);
    const fuse_entry_param p = to_entry_param(adapter_of(req).options(), entry);
    if (fuse_reply_create(req, &p, fi) != 0) {
        engine.release(entry.ino, result.handle);
        engine.forget(entry.ino, 1);
    }
}

void on_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* fi) {
    // One buffer per FUSE thread, grown to the largest read it has served.
    thread_local std::vector<std::byte> buffer;
    if (buffer.size() < size)
        buffer.resize(size);
    std::size_t transferred = 0;
    Errc e = engine_of(req).read(ino, fi->fh, static_cast<std::uint64_t>(offset),
                                 std::span<std::byte>(buffer.data(), size), transferred);
    if (e != Errc::ok)
        return reply_error(req, e);
    fuse_reply_buf(req, reinterpret_cast<const char*>(buffer.data()), transferred);
}

void on_write(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t offset, fuse_file_info* fi) {
    std::size_t transferred = 0;
    Errc e = engine_of(req).write(ino, fi->fh, static_cast<std::uint64_t>(offset),
                                  std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size),
                                  transferred);
    if (e != Errc::ok)
        return reply_error(req, e);
    fuse_reply_write(req, transferred);
}

void on_flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    reply_error(req, engine_of(req).flush(ino, fi->fh));
}

void on_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
    reply_error(req, engine_of(req).fsync(ino, fi->fh, datasync != 0));
}

void on_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    engine_of(req).release(ino, fi->fh);
    fuse_reply_err(req, 0);
}

// ---- extended attributes ----------------------------------------------------

// Only user.netfs.state is answered: netfs stores no extended attributes.
// Other names get ENOTSUP, not ENODATA: ENODATA would tell cp -a, rsync -X
// and friends that xattrs work here and this file merely has none. The
// state is never listed (listxattr stays ENOSYS, which the kernel remembers):
// a copy must not carry it along.
constexpr char kStateXattr[] = "user.netfs.state";

void on_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
    FuseAdapter& adapter = adapter_of(req);
    if (!adapter.state_reader()) {
        fuse_reply_err(req, ENOSYS);  // no state to show: the kernel stops asking (see above)
        return;
    }
    if (std::strcmp(name, kStateXattr) != 0) {
        fuse_reply_err(req, EOPNOTSUPP);
        return;
    }
    std::string path, state;
    Errc e = adapter.engine().path_of(ino, path);
    if (e == Errc::ok)
        e = adapter.state_reader()(path, state);
    if (e != Errc::ok)
        fuse_reply_err(req, errno_for_program(e));
    else if (size == 0)
        fuse_reply_xattr(req, state.size());
    else if (size < state.size())
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, state.data(), state.size());
}
void on_listxattr(fuse_req_t req, fuse_ino_t, size_t) { fuse_reply_err(req, ENOSYS); }
void on_setxattr(fuse_req_t req, fuse_ino_t, const char*, const char*, size_t, int) {
    fuse_reply_err(req, ENOSYS);
}
void on_removexattr(fuse_req_t req, fuse_ino_t, const char*) { fuse_reply_err(req, ENOSYS); }

fuse_lowlevel_ops make_operations() {
    fuse_lowlevel_ops ops{};
    ops.init = on_init;
    ops.destroy = on_destroy;
    ops.lookup = on_lookup;
    ops.forget = on_forget;
    ops.forget_multi = on_forget_multi;
    ops.getattr = on_getattr;
    ops.setattr = on_setattr;
    ops.readlink = on_readlink;
    ops.mknod = on_mknod;
    ops.mkdir = on_mkdir;
    ops.unlink = on_unlink;
    ops.rmdir = on_rmdir;
    ops.symlink = on_symlink;
    ops.rename = on_rename;
    ops.link = on_link;
    ops.open = on_open;
    ops.read = on_read;
    ops.write = on_write;
    ops.flush = on_flush;
    ops.release = on_release;
    ops.fsync = on_fsync;
    ops.opendir = on_opendir;
    ops.readdir = on_readdir;
    ops.readdirplus = on_readdirplus;
    ops.releasedir = on_releasedir;
    ops.fsyncdir = on_fsyncdir;
    ops.statfs = on_statfs;
    ops.create = on_create;
    ops.getxattr = on_getxattr;
    ops.listxattr = on_listxattr;
    ops.setxattr = on_setxattr;
    ops.removexattr = on_removexattr;
    return ops;
}

} // namespace

FuseAdapter::FuseAdapter(Engine& engine, const MountOptions& options) : engine_(engine), options_(options) {
    engine_.set_invalidate_hook([slot = session_](Ino ino, std::uint64_t offset, std::uint64_t length) {
        invalidate(*slot, ino, offset, length);
    });
}

FuseAdapter::~FuseAdapter() { engine_.set_invalidate_hook(nullptr); }

const fuse_lowlevel_ops& FuseAdapter::operations() {
    static const fuse_lowlevel_ops ops = make_operations();
    return ops;
}

void FuseAdapter::attach(fuse_session* session) { session_->store(session); }

void FuseAdapter::detach() { session_->store(nullptr); }

void FuseAdapter::invalidate_attributes(Ino ino) {
    // A negative offset asks the kernel to forget attributes and keep pages.
    if (fuse_session* session = session_->load())
        fuse_lowlevel_notify_inval_inode(session, ino, -1, 0);
}

void FuseAdapter::invalidate(SessionSlot& slot, Ino ino, std::uint64_t offset, std::uint64_t length) {
    fuse_session* session = slot.load();
    if (!session)
        return;
    // Length 0 is "to the end" for the kernel; so is anything past off_t.
    const off_t len = length > static_cast<std::uint64_t>(LLONG_MAX) ? 0 : static_cast<off_t>(length);
    const int rc = fuse_lowlevel_notify_inval_inode(session, ino, static_cast<off_t>(offset), len);
    // ENOENT: the kernel holds no pages of that inode, so nothing is stale.
    // ENODEV, ENOTCONN, EBADF: the mount is gone, and its pages with it.
    if (rc != 0 && rc != -ENOENT && rc != -ENODEV && rc != -ENOTCONN && rc != -EBADF)
        LOG_WARN("could not drop the kernel's cached pages of inode %llu: %s (reads may be stale until "
                 "the file is reopened)",
                 static_cast<unsigned long long>(ino), std::strerror(-rc));
}

} // namespace netfs
