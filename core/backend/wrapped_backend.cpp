#include "core/backend/wrapped_backend.h"

namespace netfs {

namespace {

constexpr const char* kOpNames[] = {
    "getattr", "readdir", "open",  "create", "mknod",    "mkdir", "symlink", "link",  "readlink", "unlink",
    "rmdir",   "rename",  "setattr", "statfs", "read",   "write", "fsync",   "fgetattr", "truncate", "close",
};

class WrappedFile : public BackendFile {
public:
    WrappedFile(std::unique_ptr<BackendFile> inner, WrappedBackend& owner, std::string path)
        : inner_(std::move(inner)), owner_(owner), path_(std::move(path)) {}

    Errc read(std::uint64_t offset, std::span<std::byte> buf, std::size_t& transferred) override {
        std::size_t length = buf.size();
        if (Errc e = owner_.before(Op::read, path_, length); e != Errc::ok)
            return e;
        return inner_->read(offset, buf.first(std::min(length, buf.size())), transferred);
    }
    Errc write(std::uint64_t offset, std::span<const std::byte> data, std::size_t& transferred) override {
        std::size_t length = data.size();
        if (Errc e = owner_.before(Op::write, path_, length); e != Errc::ok)
            return e;
        return inner_->write(offset, data.first(std::min(length, data.size())), transferred);
    }
    Errc fsync(bool datasync) override {
        Errc e = hook(Op::fsync);
        return e != Errc::ok ? e : inner_->fsync(datasync);
    }
    Errc getattr(Attr& out) override {
        Errc e = hook(Op::fgetattr);
        return e != Errc::ok ? e : inner_->getattr(out);
    }
    bool opened_attr(Attr& out) const override { return inner_->opened_attr(out); }
    bool before_write() override { return inner_->before_write(); }
    Errc keep_unsent(const Attr& base, std::uint64_t size, const timespec& mtime,
                     const ContentReader& read) override {
        return inner_->keep_unsent(base, size, mtime, read);
    }
    Errc truncate(std::uint64_t size) override {
        Errc e = hook(Op::truncate);
        return e != Errc::ok ? e : inner_->truncate(size);
    }
    Errc close() override {
        Errc e = hook(Op::close);
        Errc c = inner_->close();  // the handle is released whatever the hook says
        return e != Errc::ok ? e : c;
    }

private:
    Errc hook(Op op) {
        std::size_t none = 0;
        return owner_.before(op, path_, none);
    }

    std::unique_ptr<BackendFile> inner_;
    WrappedBackend& owner_;
    const std::string path_;
};

} // namespace

const char* op_name(Op op) { return kOpNames[static_cast<int>(op)]; }

bool op_from_name(std::string_view name, Op& out) {
    for (std::size_t i = 0; i < std::size(kOpNames); ++i)
        if (name == kOpNames[i]) {
            out = static_cast<Op>(i);
            return true;
        }
    return false;
}

#define NETFS_HOOK(op, path)                                   \
    do {                                                       \
        std::size_t none_ = 0;                                 \
        if (Errc e_ = before(op, path, none_); e_ != Errc::ok) \
            return e_;                                         \
    } while (0)

Errc WrappedBackend::getattr(const std::string& path, Attr& out) {
    NETFS_HOOK(Op::getattr, path);
    return inner_->getattr(path, out);
}

Errc WrappedBackend::readdir(const std::string& path, std::vector<DirEntry>& out) {
    NETFS_HOOK(Op::readdir, path);
    return inner_->readdir(path, out);
}

Errc WrappedBackend::open(const std::string& path, int flags, std::unique_ptr<BackendFile>& out) {
    NETFS_HOOK(Op::open, path);
    std::unique_ptr<BackendFile> file;
    Errc e = inner_->open(path, flags, file);
    if (e == Errc::ok)
        out = std::make_unique<WrappedFile>(std::move(file), *this, path);
    return e;
}

Errc WrappedBackend::create(const std::string& path, std::uint32_t mode, int flags,
                            std::unique_ptr<BackendFile>& out, Attr& attr) {
    NETFS_HOOK(Op::create, path);
    std::unique_ptr<BackendFile> file;
    Errc e = inner_->create(path, mode, flags, file, attr);
    if (e == Errc::ok)
        out = std::make_unique<WrappedFile>(std::move(file), *this, path);
    return e;
}

Errc WrappedBackend::mknod(const std::string& path, std::uint32_t mode, std::uint64_t rdev, Attr& attr) {
    NETFS_HOOK(Op::mknod, path);
    return inner_->mknod(path, mode, rdev, attr);
}

Errc WrappedBackend::mkdir(const std::string& path, std::uint32_t mode, Attr& attr) {
    NETFS_HOOK(Op::mkdir, path);
    return inner_->mkdir(path, mode, attr);
}

Errc WrappedBackend::symlink(const std::string& target, const std::string& path, Attr& attr) {
    NETFS_HOOK(Op::symlink, path);
    return inner_->symlink(target, path, attr);
}

Errc WrappedBackend::link(const std::string& existing, const std::string& path, Attr& attr) {
    NETFS_HOOK(Op::link, path);
    return inner_->link(existing, path, attr);
}

Errc WrappedBackend::readlink(const std::string& path, std::string& target) {
    NETFS_HOOK(Op::readlink, path);
    return inner_->readlink(path, target);
}

Errc WrappedBackend::unlink(const std::string& path) {
    NETFS_HOOK(Op::unlink, path);
    return inner_->unlink(path);
}

Errc WrappedBackend::rmdir(const std::string& path) {
    NETFS_HOOK(Op::rmdir, path);
    return inner_->rmdir(path);
}

Errc WrappedBackend::rename(const std::string& from, const std::string& to, unsigned flags) {
    NETFS_HOOK(Op::rename, from);
    return inner_->rename(from, to, flags);
}

Errc WrappedBackend::setattr(const std::string& path, const SetAttr& change, Attr& out) {
    NETFS_HOOK(Op::setattr, path);
    return inner_->setattr(path, change, out);
}

Errc WrappedBackend::statfs(StatFs& out) {
    NETFS_HOOK(Op::statfs, std::string("/"));
    return inner_->statfs(out);
}

} // namespace netfs
