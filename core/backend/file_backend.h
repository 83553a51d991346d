// The file:// remote: a local directory served as if it were a server.
//
// Useful on its own (caching a slow kernel mount) and as the reference
// remote for tests and benchmarks, where ShapedBackend and FaultyBackend
// wrap it to simulate a network.
//
// Every call works relative to one directory descriptor opened at start
// (*at() system calls), so the tree is reached the same way whatever the
// process's working directory, and a remote path never leaves it through
// "..": the engine never sends such components.
#pragma once

#include <sys/types.h>

#include "core/backend/backend.h"

namespace netfs {

class FileBackend : public Backend {
public:
    // Opens `root` (an absolute path to a directory). On failure returns the
    // error and leaves `out` empty.
    static Errc make(const std::string& root, BackendLimits limits, std::unique_ptr<FileBackend>& out);
    ~FileBackend() override;

    std::string describe() const override;
    BackendLimits limits() const override { return limits_; }

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

private:
    FileBackend(int root_fd, dev_t root_dev, std::string root, BackendLimits limits)
        : root_fd_(root_fd), root_dev_(root_dev), root_(std::move(root)), limits_(limits) {}

    const int root_fd_;       // O_PATH descriptor of the served directory
    const dev_t root_dev_;    // its file system (file ids: see file_id_on)
    const std::string root_;  // for describe()
    const BackendLimits limits_;
};

} // namespace netfs
