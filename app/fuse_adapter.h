// The FUSE adapter: libfuse's low-level API on one side, Engine on the other.
//
// Goal: be thin enough that everything worth testing can be tested on the
// Engine without FUSE in the loop. Each handler unpacks its arguments, calls
// one Engine method and replies exactly once; errors become errnos in one
// helper (errno_for_program), attributes become a struct stat in one helper (which
// applies the uid=, gid= and umask= mount options). Nothing here decides
// about data, caching or consistency beyond telling the kernel what the
// engine decided.
//
// Kernel caching, negotiated in init():
//   - Page cache with close-to-open: every open asks the engine, which
//     revalidates against the remote and says in OpenResult::keep_cache
//     whether the kernel's pages of the file are still valid. direct_io
//     (O_DIRECT, -o direct_io) bypasses the page cache.
//   - AUTO_INVAL_DATA: the kernel also drops pages when a getattr shows a
//     new mtime or size, so attr_timeout bounds how stale a read can be.
//   - Write-back cache only with -o writeback_cache. It makes the kernel
//     authoritative for size and mtime and lets it keep dirty pages, so
//     changes made by other clients of the remote would go unseen: the
//     wrong default for a network filesystem. With it on, the kernel may
//     read from a file opened write-only (to fill partial pages) and does
//     O_APPEND itself, so opens are widened to O_RDWR and lose O_APPEND.
//   - READDIRPLUS always: one readdir fills the dentry and attribute caches,
//     which makes `ls -l` one round trip instead of one per entry.
//   - 1 MiB reads and writes (max_write, max_pages, max_readahead), the size
//     remotes serve best; PARALLEL_DIROPS; ASYNC_DIO. Splice is off: the
//     engine copies through folios anyway, so splicing /dev/fuse would only
//     add a pipe.
//
// Kernel invalidations the engine asks for (after a direct write, or when a
// revalidation finds the remote changed) go through
// fuse_lowlevel_notify_inval_inode once a session is attached.
#pragma once

#include "app/mount_options.h"
#include "core/engine/engine.h"

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <atomic>
#include <functional>
#include <string>
#include <memory>

namespace netfs {

class FuseAdapter {
public:
    // `engine` and `options` must outlive the adapter.
    FuseAdapter(Engine& engine, const MountOptions& options);
    ~FuseAdapter();
    FuseAdapter(const FuseAdapter&) = delete;
    FuseAdapter& operator=(const FuseAdapter&) = delete;

    // The handler table for fuse_session_new(); the userdata must be `this`.
    static const fuse_lowlevel_ops& operations();

    // From here on the engine's invalidations reach the kernel through `session`.
    void attach(fuse_session* session);
    // Call before the session is destroyed: invalidations are dropped again.
    // Invalidations the engine queued earlier may run later (its I/O pool
    // drains at destruction), so they hold the session slot, not the adapter.
    void detach();

    // The kernel's cached attributes of `ino` are stale. Only attributes:
    // safe to call from within a request handler for the same inode, which
    // dropping pages is not.
    void invalidate_attributes(Ino ino);

    // Answers getxattr of user.netfs.state (disconnected operation's view of
    // a file: cached, pinned, dirty, conflict) for a remote path.
    using StateReader = std::function<Errc(const std::string& path, std::string& state)>;
    void set_state_reader(StateReader reader) { state_reader_ = std::move(reader); }
    const StateReader& state_reader() const { return state_reader_; }

    Engine& engine() { return engine_; }
    const MountOptions& options() const { return options_; }

private:
    using SessionSlot = std::atomic<fuse_session*>;
    static void invalidate(SessionSlot& slot, Ino ino, std::uint64_t offset, std::uint64_t length);

    Engine& engine_;
    StateReader state_reader_;
    const MountOptions& options_;
    std::shared_ptr<SessionSlot> session_ = std::make_shared<SessionSlot>(nullptr);
};

} // namespace netfs
