// A wrapper that records the data RPCs an engine sends to a real backend,
// so unit tests can check how requests were split, gathered and retried.
// It changes nothing: every call goes to the wrapped backend, after an
// optional hook that may hold it (to stage a race).
#pragma once

#include "core/backend/backend.h"

#include <algorithm>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

namespace netfs::test {

struct Rpc {
    enum Kind { read, write, fsync, setattr, getattr } kind;  // getattr: by path
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
};

class RpcLog {
public:
    void add(Rpc rpc) {
        std::function<void(const Rpc&)> hook;
        {
            std::lock_guard lock(mu_);
            rpcs_.push_back(rpc);
            hook = hook_;
        }
        if (hook)
            hook(rpc);  // outside the lock: it may wait
    }
    // Called (on the calling thread) before each recorded call goes on.
    void set_hook(std::function<void(const Rpc&)> hook) {
        std::lock_guard lock(mu_);
        hook_ = std::move(hook);
    }
    std::vector<Rpc> take() {
        std::lock_guard lock(mu_);
        return std::exchange(rpcs_, {});
    }
    std::vector<Rpc> of(Rpc::Kind kind) {
        std::lock_guard lock(mu_);
        std::vector<Rpc> out;
        std::copy_if(rpcs_.begin(), rpcs_.end(), std::back_inserter(out),
                     [&](const Rpc& r) { return r.kind == kind; });
        std::sort(out.begin(), out.end(), [](const Rpc& a, const Rpc& b) { return a.offset < b.offset; });
        return out;
    }
    void clear() { take(); }

private:
    std::mutex mu_;
    std::vector<Rpc> rpcs_;
    std::function<void(const Rpc&)> hook_;
};

class RecordingFile : public BackendFile {
public:
    RecordingFile(std::unique_ptr<BackendFile> inner, RpcLog& log) : inner_(std::move(inner)), log_(log) {}
    Errc read(std::uint64_t offset, std::span<std::byte> buf, std::size_t& n) override {
        log_.add({Rpc::read, offset, buf.size()});
        return inner_->read(offset, buf, n);
    }
    Errc write(std::uint64_t offset, std::span<const std::byte> data, std::size_t& n) override {
        log_.add({Rpc::write, offset, data.size()});
        return inner_->write(offset, data, n);
    }
    Errc fsync(bool datasync) override {
        log_.add({Rpc::fsync, 0, 0});
        return inner_->fsync(datasync);
    }
    Errc getattr(Attr& out) override { return inner_->getattr(out); }
    bool opened_attr(Attr& out) const override { return inner_->opened_attr(out); }
    Errc truncate(std::uint64_t size) override { return inner_->truncate(size); }
    Errc close() override { return inner_->close(); }

private:
    std::unique_ptr<BackendFile> inner_;
    RpcLog& log_;
};

class RecordingBackend : public Backend {
public:
    RecordingBackend(std::unique_ptr<Backend> inner, RpcLog& log) : inner_(std::move(inner)), log_(log) {}

    std::string describe() const override { return inner_->describe(); }
    BackendLimits limits() const override { return inner_->limits(); }
    Errc getattr(const std::string& p, Attr& out) override {
        log_.add({Rpc::getattr, 0, 0});
        return inner_->getattr(p, out);
    }
    Errc readdir(const std::string& p, std::vector<DirEntry>& out) override { return inner_->readdir(p, out); }
    Errc open(const std::string& p, int flags, std::unique_ptr<BackendFile>& out) override {
        std::unique_ptr<BackendFile> f;
        Errc e = inner_->open(p, flags, f);
        if (e == Errc::ok)
            out = std::make_unique<RecordingFile>(std::move(f), log_);
        return e;
    }
    Errc create(const std::string& p, std::uint32_t mode, int flags, std::unique_ptr<BackendFile>& out,
                Attr& attr) override {
        std::unique_ptr<BackendFile> f;
        Errc e = inner_->create(p, mode, flags, f, attr);
        if (e == Errc::ok)
            out = std::make_unique<RecordingFile>(std::move(f), log_);
        return e;
    }
    Errc mknod(const std::string& p, std::uint32_t mode, std::uint64_t rdev, Attr& a) override {
        return inner_->mknod(p, mode, rdev, a);
    }
    Errc mkdir(const std::string& p, std::uint32_t mode, Attr& a) override { return inner_->mkdir(p, mode, a); }
    Errc symlink(const std::string& t, const std::string& p, Attr& a) override { return inner_->symlink(t, p, a); }
    Errc link(const std::string& e, const std::string& p, Attr& a) override { return inner_->link(e, p, a); }
    Errc readlink(const std::string& p, std::string& t) override { return inner_->readlink(p, t); }
    Errc unlink(const std::string& p) override { return inner_->unlink(p); }
    Errc rmdir(const std::string& p) override { return inner_->rmdir(p); }
    Errc rename(const std::string& f, const std::string& t, unsigned flags) override {
        return inner_->rename(f, t, flags);
    }
    Errc setattr(const std::string& p, const SetAttr& c, Attr& out) override {
        log_.add({Rpc::setattr, c.size, 0});
        return inner_->setattr(p, c, out);
    }
    Errc statfs(StatFs& out) override { return inner_->statfs(out); }

private:
    std::unique_ptr<Backend> inner_;
    RpcLog& log_;
};

} // namespace netfs::test
