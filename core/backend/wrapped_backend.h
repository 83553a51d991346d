// A backend that forwards every call to another one, after asking a hook.
//
// The wrappers that simulate a network (ShapedBackend) and inject faults
// (FaultyBackend) are this plus one function: before() sees each operation,
// its path and its byte count, and may wait, fail it, or shorten it. Fault
// injection lives in wrappers like these, never in the real remotes.
#pragma once

#include "core/backend/backend.h"

namespace netfs {

enum class Op {
    getattr, readdir, open, create, mknod, mkdir, symlink, link, readlink, unlink, rmdir, rename,
    setattr, statfs,
    // on an open file
    read, write, fsync, fgetattr, truncate, close,
};

// "read", "getattr"...; nullptr-free: every Op has a name.
const char* op_name(Op op);
// The Op with that name; false if none.
bool op_from_name(std::string_view name, Op& out);

class WrappedBackend : public Backend {
public:
    explicit WrappedBackend(std::unique_ptr<Backend> inner) : inner_(std::move(inner)) {}

    ConnectionState connection_state() const override { return inner_->connection_state(); }
    std::string describe() const override { return inner_->describe(); }
    BackendLimits limits() const override { return inner_->limits(); }

    Errc getattr(const std::string& path, Attr& out) override;
    Errc readdir(const std::string& path, std::vector<DirEntry>& out) override;
    Errc open(const std::string& path, int flags, std::unique_ptr<BackendFile>& out) override;
    Errc create(const std::string& path, std::uint32_t mode, int flags, std::unique_ptr<BackendFile>& out,
                Attr& attr) override;
    Errc mknod(const std::string& path, std::uint32_t mode, std::uint64_t rdev, Attr& attr) override;
    Errc mkdir(const std::string& path, std::uint32_t mode, Attr& attr) override;
    Errc symlink(const std::string& target, const std::string& path, Attr& attr) override;
    Errc link(const std::string& existing, const std::string& path, Attr& attr) override;
    Errc readlink(const std::string& path, std::string& target) override;
    Errc unlink(const std::string& path) override;
    Errc rmdir(const std::string& path) override;
    Errc rename(const std::string& from, const std::string& to, unsigned flags) override;
    Errc setattr(const std::string& path, const SetAttr& change, Attr& out) override;
    Errc statfs(StatFs& out) override;
    Errc sync_namespace() override { return inner_->sync_namespace(); }
    bool changes_stay_local() const override { return inner_->changes_stay_local(); }
    bool offline_by_request() const override { return inner_->offline_by_request(); }

    // Called before each operation, from any thread. `length` is the byte
    // count of a read or write (0 otherwise) and may be lowered to make the
    // transfer short. A result other than ok is returned instead of the call.
    virtual Errc before(Op op, const std::string& path, std::size_t& length) = 0;

private:
    std::unique_ptr<Backend> inner_;
};

} // namespace netfs
