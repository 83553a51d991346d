#include "core/backend/file_backend.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

namespace netfs {

namespace {

// "/" -> ".", "/a/b" -> "a/b": relative to the root descriptor.
std::string rel(const std::string& path) {
    if (path.empty() || path == "/")
        return ".";
    return path[0] == '/' ? path.substr(1) : path;
}

Errc last_error() { return from_errno(errno); }

// `root_dev`: the device of the served directory (see file_id_on).
Attr to_attr(const struct stat& st, dev_t root_dev) {
    Attr a;
    a.file_id = file_id_on(st.st_dev, root_dev, st.st_ino);
    a.mode = st.st_mode;
    a.nlink = static_cast<std::uint32_t>(st.st_nlink);
    a.uid = st.st_uid;
    a.gid = st.st_gid;
    a.rdev = st.st_rdev;
    a.size = static_cast<std::uint64_t>(st.st_size);
    a.blocks = static_cast<std::uint64_t>(st.st_blocks);
    a.atime = st.st_atim;
    a.mtime = st.st_mtim;
    a.ctime = st.st_ctim;
    return a;
}

class LocalFile : public BackendFile {
public:
    LocalFile(int fd, dev_t root_dev) : fd_(fd), root_dev_(root_dev) {}
    ~LocalFile() override {
        if (fd_ >= 0)
            ::close(fd_);
    }

    Errc read(std::uint64_t offset, std::span<std::byte> buf, std::size_t& transferred) override {
        ssize_t n;
        do
            n = ::pread(fd_, buf.data(), buf.size(), static_cast<off_t>(offset));
        while (n < 0 && errno == EINTR);
        if (n < 0)
            return last_error();
        transferred = static_cast<std::size_t>(n);
        return Errc::ok;
    }

    Errc write(std::uint64_t offset, std::span<const std::byte> data, std::size_t& transferred) override {
        ssize_t n;
        do
            n = ::pwrite(fd_, data.data(), data.size(), static_cast<off_t>(offset));
        while (n < 0 && errno == EINTR);
        if (n < 0)
            return last_error();
        transferred = static_cast<std::size_t>(n);
        return Errc::ok;
    }

    Errc fsync(bool datasync) override {
        return (datasync ? ::fdatasync(fd_) : ::fsync(fd_)) == 0 ? Errc::ok : last_error();
    }

    Errc getattr(Attr& out) override {
        struct stat st;
        if (::fstat(fd_, &st) != 0)
            return last_error();
        out = to_attr(st, root_dev_);
        return Errc::ok;
    }

    // The descriptor describes what was opened: no path to look up again.
    bool opened_attr(Attr& out) const override {
        struct stat st;
        if (::fstat(fd_, &st) != 0)
            return false;
        out = to_attr(st, root_dev_);
        return true;
    }

    Errc truncate(std::uint64_t size) override {
        return ::ftruncate(fd_, static_cast<off_t>(size)) == 0 ? Errc::ok : last_error();
    }

    Errc close() override {
        if (fd_ < 0)
            return Errc::ok;
        int rc = ::close(fd_);
        fd_ = -1;
        return rc == 0 ? Errc::ok : last_error();
    }

private:
    int fd_;
    const dev_t root_dev_;
};

} // namespace

Errc FileBackend::make(const std::string& root, BackendLimits limits, std::unique_ptr<FileBackend>& out) {
    int fd = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return last_error();
    // O_PATH opens a directory we may not read; the remote must be readable.
    if (::faccessat(fd, ".", R_OK | X_OK, AT_EACCESS) != 0) {
        Errc e = last_error();
        ::close(fd);
        return e;
    }
    struct stat st;
    if (::fstat(fd, &st) != 0) {
        Errc e = last_error();
        ::close(fd);
        return e;
    }
    limits.open_reports_attr = true;
    out.reset(new FileBackend(fd, st.st_dev, root, limits));
    return Errc::ok;
}

FileBackend::~FileBackend() { ::close(root_fd_); }

std::string FileBackend::describe() const { return "file://" + root_; }

Errc FileBackend::getattr(const std::string& path, Attr& out) {
    struct stat st;
    if (::fstatat(root_fd_, rel(path).c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
        return last_error();
    out = to_attr(st, root_dev_);
    return Errc::ok;
}

Errc FileBackend::readdir(const std::string& path, std::vector<DirEntry>& out) {
    int fd = ::openat(root_fd_, rel(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return last_error();
    DIR* dir = ::fdopendir(fd);
    if (!dir) {
        Errc e = last_error();
        ::close(fd);
        return e;
    }
    out.clear();
    errno = 0;
    while (dirent* d = ::readdir(dir)) {
        const std::string_view name = d->d_name;
        if (name == "." || name == "..")
            continue;
        struct stat st;
        if (::fstatat(::dirfd(dir), d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;  // removed while we listed
        out.push_back({std::string(name), to_attr(st, root_dev_)});
        errno = 0;
    }
    Errc e = errno ? last_error() : Errc::ok;
    ::closedir(dir);
    return e;
}

Errc FileBackend::open(const std::string& path, int flags, std::unique_ptr<BackendFile>& out) {
    const int allowed = O_ACCMODE | O_TRUNC;
    int fd = ::openat(root_fd_, rel(path).c_str(), (flags & allowed) | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return last_error();
    out = std::make_unique<LocalFile>(fd, root_dev_);
    return Errc::ok;
}

Errc FileBackend::create(const std::string& path, std::uint32_t mode, int flags,
                         std::unique_ptr<BackendFile>& out, Attr& attr) {
    const int allowed = O_ACCMODE | O_TRUNC | O_EXCL;
    int fd = ::openat(root_fd_, rel(path).c_str(), (flags & allowed) | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
                      mode & 07777);
    if (fd < 0)
        return last_error();
    auto file = std::make_unique<LocalFile>(fd, root_dev_);
    if (Errc e = file->getattr(attr); e != Errc::ok)
        return e;
    out = std::move(file);
    return Errc::ok;
}

Errc FileBackend::mknod(const std::string& path, std::uint32_t mode, std::uint64_t rdev, Attr& attr) {
    const std::string r = rel(path);
    if (::mknodat(root_fd_, r.c_str(), mode, static_cast<dev_t>(rdev)) != 0)
        return last_error();
    return getattr(path, attr);
}

Errc FileBackend::mkdir(const std::string& path, std::uint32_t mode, Attr& attr) {
    if (::mkdirat(root_fd_, rel(path).c_str(), mode & 07777) != 0)
        return last_error();
    return getattr(path, attr);
}

Errc FileBackend::symlink(const std::string& target, const std::string& path, Attr& attr) {
    if (::symlinkat(target.c_str(), root_fd_, rel(path).c_str()) != 0)
        return last_error();
    return getattr(path, attr);
}

Errc FileBackend::link(const std::string& existing, const std::string& path, Attr& attr) {
    if (::linkat(root_fd_, rel(existing).c_str(), root_fd_, rel(path).c_str(), 0) != 0)
        return last_error();
    return getattr(path, attr);
}

Errc FileBackend::readlink(const std::string& path, std::string& target) {
    char buf[PATH_MAX + 1];
    ssize_t n = ::readlinkat(root_fd_, rel(path).c_str(), buf, sizeof buf);
    if (n < 0)
        return last_error();
    if (static_cast<std::size_t>(n) >= sizeof buf)
        return Errc::name_too_long;
    target.assign(buf, static_cast<std::size_t>(n));
    return Errc::ok;
}

Errc FileBackend::unlink(const std::string& path) {
    return ::unlinkat(root_fd_, rel(path).c_str(), 0) == 0 ? Errc::ok : last_error();
}

Errc FileBackend::rmdir(const std::string& path) {
    return ::unlinkat(root_fd_, rel(path).c_str(), AT_REMOVEDIR) == 0 ? Errc::ok : last_error();
}

Errc FileBackend::rename(const std::string& from, const std::string& to, unsigned flags) {
    return ::renameat2(root_fd_, rel(from).c_str(), root_fd_, rel(to).c_str(), flags) == 0 ? Errc::ok
                                                                                            : last_error();
}

Errc FileBackend::setattr(const std::string& path, const SetAttr& change, Attr& out) {
    const std::string r = rel(path);
    Attr before;
    if (Errc e = getattr(path, before); e != Errc::ok)
        return e;
    const bool is_link = S_ISLNK(before.mode);
    if (change.mask & SetAttr::kMode) {
        // Linux cannot change a symbolic link's mode; it has none to speak of.
        if (!is_link && ::fchmodat(root_fd_, r.c_str(), change.mode & 07777, 0) != 0)
            return last_error();
    }
    if (change.mask & (SetAttr::kUid | SetAttr::kGid)) {
        const uid_t uid = (change.mask & SetAttr::kUid) ? change.uid : static_cast<uid_t>(-1);
        const gid_t gid = (change.mask & SetAttr::kGid) ? change.gid : static_cast<gid_t>(-1);
        if (::fchownat(root_fd_, r.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW) != 0)
            return last_error();
    }
    if (change.mask & SetAttr::kSize) {
        if (S_ISDIR(before.mode))
            return Errc::is_dir;
        int fd = ::openat(root_fd_, r.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return last_error();
        const int rc = ::ftruncate(fd, static_cast<off_t>(change.size));
        const int err = errno;
        ::close(fd);
        if (rc != 0)
            return from_errno(err);
    }
    if (change.mask & (SetAttr::kAtime | SetAttr::kAtimeNow | SetAttr::kMtime | SetAttr::kMtimeNow)) {
        timespec times[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
        if (change.mask & SetAttr::kAtimeNow)
            times[0] = {0, UTIME_NOW};
        else if (change.mask & SetAttr::kAtime)
            times[0] = change.atime;
        if (change.mask & SetAttr::kMtimeNow)
            times[1] = {0, UTIME_NOW};
        else if (change.mask & SetAttr::kMtime)
            times[1] = change.mtime;
        if (::utimensat(root_fd_, r.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0)
            return last_error();
    }
    return getattr(path, out);
}

Errc FileBackend::statfs(StatFs& out) {
    struct statvfs sv;
    int fd = ::openat(root_fd_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return last_error();
    const int rc = ::fstatvfs(fd, &sv);
    const int err = errno;
    ::close(fd);
    if (rc != 0)
        return from_errno(err);
    out.block_size = sv.f_frsize ? sv.f_frsize : sv.f_bsize;
    out.blocks = sv.f_blocks;
    out.blocks_free = sv.f_bfree;
    out.blocks_avail = sv.f_bavail;
    out.files = sv.f_files;
    out.files_free = sv.f_ffree;
    out.name_max = static_cast<std::uint32_t>(sv.f_namemax);
    return Errc::ok;
}

} // namespace netfs
