#include "sync/reintegrator.h"

#include "core/cache/cache_store.h"
#include "core/log.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <map>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <system_error>
#include <thread>

namespace netfs {

namespace {

std::int64_t ns(const timespec& t) { return std::int64_t(t.tv_sec) * 1000000000 + t.tv_nsec; }

struct Pass {
    explicit Pass(const Reintegration& j) : job(j) {}
    const Reintegration& job;
    SyncOutcome outcome;
    SyncProgress progress;
    std::mutex mu;       // outcome and progress: stores run in parallel
    std::mutex copy_mu;  // choosing a free conflicted-copy name and taking it is one step
    // Pending operations were rewritten to a conflicted copy's name: the
    // ones this pass read before are stale (it moved the server's file, not
    // ours, when a later rename still named the taken path).
    std::atomic<bool> repathed{false};
    // Files whose removal here conflicted, by path (guarded by mu). An
    // editor saves by putting a new file in the old one's place (a
    // temporary renamed over it; vim's NAME to NAME~, a new NAME, NAME~
    // removed): when the new one conflicts at that path too, the two are
    // one update/update.
    std::map<std::string, Conflict> replaced;
    // What removals of this pass left on the server for a conflict, and
    // the directories kept for them (guarded by mu).
    std::set<std::string> kept;
    // Removals that are half of an editor's save: vim's (the row keeps the
    // backup name) and a rename over the file (logged right before it).
    // Set before the pass runs.
    std::set<std::int64_t> editor_saves;
    void find_editor_saves(const std::vector<LoggedOp>& ops) {
        for (std::size_t i = 0; i < ops.size(); ++i) {
            const LoggedOp& op = ops[i];
            const bool removal = op.kind == OpKind::unlink || (op.kind == OpKind::rename && is_set_aside(op.path2));
            const bool vim = op.kind == OpKind::unlink && !op.path2.empty() && !is_set_aside(op.path2);
            const bool renamed_over = i + 1 < ops.size() && ops[i + 1].kind == OpKind::rename &&
                                      ops[i + 1].path2 == op.path && ops[i + 1].seq == op.seq + 1;
            if (removal && (vim || renamed_over))
                editor_saves.insert(op.seq);
        }
    }
    // Files an editor's save removed that the server had removed already
    // (guarded by mu). The new file put in the same place is the local
    // update of one the server deleted: an update/delete, as a store of
    // the file itself would be, not a creation that quietly brings it
    // back. (A removal and a new file at the path otherwise, `make clean;
    // make` while the server did the same, is no conflict.)
    std::set<std::string> vanished;
    bool take_vanished(const std::string& path) {
        std::lock_guard lock(mu);
        return vanished.erase(path) != 0;
    }

    // The upload buffers of all parallel stores together: many small files
    // in flight at once, but not many large ones' 8 MiB batches.
    static constexpr std::uint64_t kBufferBudget = 64ull << 20;
    std::mutex buffer_mu;
    std::condition_variable buffer_cv;
    std::uint64_t buffers = 0;
    struct Buffer {
        Pass& pass;
        std::uint64_t bytes;
        Buffer(Pass& p, std::uint64_t n) : pass(p), bytes(n) {
            std::unique_lock lock(pass.buffer_mu);
            pass.buffer_cv.wait(lock, [&] { return pass.buffers == 0 || pass.buffers + bytes <= kBufferBudget; });
            pass.buffers += bytes;
        }
        ~Buffer() {
            std::lock_guard lock(pass.buffer_mu);
            pass.buffers -= bytes;
            pass.buffer_cv.notify_all();
        }
    };

    // The base `op` is checked against: its object's, as the earlier
    // operations of this pass left it (a file made here is made by its
    // store, then linked, before one name goes); the op's own once the
    // object is gone.
    BaseVersion base_of(const LoggedOp& op) {
        auto object = job.replica.object(op.oid);
        return object ? object->base : op.base;
    }

    // Whether `on_server` is the local version already: an earlier pass
    // uploaded it and stopped before its commit.
    static bool uploaded(const Attr& on_server, const Attr& local) {
        return S_ISREG(on_server.mode) && on_server.size == local.size && ns(on_server.mtime) == ns(local.mtime);
    }

    // The local attributes of an object (its first name), if it still has one.
    std::optional<Attr> local_attr(std::int64_t oid) {
        for (const std::string& p : job.replica.paths_of(oid))
            if (auto n = job.replica.name(p))
                return n->attr;
        return std::nullopt;
    }

    // A name for the local version beside `path` that the server does not have.
    std::string free_copy_path(const std::string& path) {
        const std::string first = conflicted_copy_path(path, job.hostname, std::time(nullptr));
        std::string candidate = first;
        for (int n = 2; n < 100; ++n) {
            Attr a;
            if (job.remote.getattr(candidate, a) == Errc::not_found)
                return candidate;
            const auto dot = first.rfind(')');
            candidate = first.substr(0, dot) + " " + std::to_string(n) + first.substr(dot);
        }
        return candidate;
    }

    void conflict(ConflictKind kind, const LoggedOp& op, const std::string& path, const std::string& copy,
                  const std::optional<Attr>& local, const Attr* remote) {
        Conflict c;
        c.kind = kind;
        c.path = path;
        c.copy = copy;
        if (local) {
            c.local_size = local->size;
            c.local_mtime_ns = ns(local->mtime);
        }
        if (remote) {
            c.remote_exists = true;
            c.remote_size = remote->size;
            c.remote_mtime_ns = ns(remote->mtime);
        }
        c.ops = std::string(op_name(op.kind)) + " #" + std::to_string(op.seq);
        std::unique_lock lock(mu);
        if (auto it = replaced.find(path); it != replaced.end() &&
                                           (kind == ConflictKind::create_create || kind == ConflictKind::rename_taken) &&
                                           local && S_ISREG(local->mode) && remote && S_ISREG(remote->mode)) {
            // The new file is the local version of the one removed: one
            // update/update, not a deletion and a creation.
            // This record, both versions as they are now, under the removal's.
            Conflict merged = c;
            merged.kind = ConflictKind::update_update;
            merged.id = it->second.id;
            merged.ops = it->second.ops + ", " + c.ops;
            replaced.erase(it);
            lock.unlock();
            if (job.replica.update_conflict(merged) == Errc::not_found) {
                merged.id = 0;  // resolved meanwhile: recorded anew
                job.replica.add_conflict(merged);
                std::lock_guard count(mu);
                outcome.conflicts++;
            }
            LOG_WARN("conflict (%s) on %s: the server's version stays, the local one is kept as %s",
                     conflict_name(merged.kind), path.c_str(), copy.c_str());
            return;
        }
        lock.unlock();
        job.replica.add_conflict(c);
        lock.lock();
        outcome.conflicts++;
        if (kind == ConflictKind::delete_update && op.kind == OpKind::unlink && remote && S_ISREG(remote->mode))
            replaced[path] = c;
        lock.unlock();
        LOG_WARN("conflict (%s) on %s: the server's version stays%s%s", conflict_name(kind), path.c_str(),
                 copy.empty() ? "" : ", the local one is kept as ", copy.c_str());
    }

    // Writes the local content of `oid` to `target` on the server through a
    // temporary name, with the local mode and modification time.
    Errc upload(const LoggedOp& op, std::uint64_t content, const Attr& local, const std::string& target, Attr& after) {
        const std::string tmp = join_path(parent_of(target), ".netfs-upload-" + std::to_string(op.oid) + "-" +
                                                                 std::to_string(op.seq));
        std::unique_ptr<BackendFile> file;
        Attr created;
        if (Errc e = job.replica.note_upload(tmp); e != Errc::ok)
            return e;
        // O_EXCL, not O_TRUNC: a truncating open is a size change, which a
        // remote may order against every other file's I/O (sftp does); a
        // leftover of an earlier attempt is removed first.
        Errc e = job.remote.create(tmp, local.mode & 07777, O_WRONLY | O_CREAT | O_EXCL, file, created);
        if (e == Errc::exists && job.remote.unlink(tmp) == Errc::ok)
            e = job.remote.create(tmp, local.mode & 07777, O_WRONLY | O_CREAT | O_EXCL, file, created);
        if (e != Errc::ok)
            return e;
        // Granules go out gathered into writes of the remote's largest size:
        // a remote pipelines the requests of one write, so a long round trip
        // is paid per write, not per granule. Up to kInFlight writes go out
        // at once, each from a thread of its own, which a remote with several
        // connections spreads over them (one SSH connection's flow-control
        // window held a 1 GiB upload at 20 ms to 65 MB/s).
        constexpr std::uint64_t kBatch = 8ull << 20;
        constexpr std::size_t kInFlight = 4;
        const std::uint64_t granule = job.cache.granule_size();
        // The writes in flight and the batch being filled. (Two files this
        // large do not upload side by side under kBufferBudget; one keeps
        // every connection busy.)
        const Buffer buffer(*this, std::min(kBatch * (kInFlight + 1), local.size) + granule);
        std::vector<std::byte> plain;
        auto batch = std::make_shared<std::vector<std::byte>>();
        std::uint64_t batch_at = 0;
        // No write longer than the remote accepts (its wsize_max): both
        // remotes pipeline the requests of one such write.
        const std::uint64_t piece = std::max<std::uint64_t>(job.remote.limits().wsize_max, 4096);
        // The first failure of any write; the others then stop.
        std::atomic<bool> failed = false;
        Errc failure = Errc::ok;  // under mu
        const auto write_batch = [&](std::uint64_t at, const std::vector<std::byte>& bytes) {
            Errc w = Errc::ok;
            for (std::uint64_t done = 0; done < bytes.size() && w == Errc::ok && !failed;) {
                std::size_t n = 0;
                const auto chunk = std::span(bytes).subspan(done, std::min<std::uint64_t>(piece, bytes.size() - done));
                w = file->write(at + done, chunk, n);
                if (w == Errc::ok && n == 0)
                    w = Errc::io;
                done += n;
            }
            std::lock_guard lock(mu);
            if (w != Errc::ok) {
                failed = true;
                if (failure == Errc::ok)
                    failure = w;
            } else if (!failed) {
                progress.bytes_left -= std::min<std::uint64_t>(progress.bytes_left, bytes.size());
                job.progress(progress);
            }
        };
        // Each write hands its buffer back for a later batch.
        using Sent = std::shared_ptr<std::vector<std::byte>>;
        std::deque<std::future<Sent>> sending;
        std::vector<Sent> spare;
        const auto settle = [&](std::size_t keep) {  // until at most `keep` are in flight
            while (sending.size() > keep) {
                spare.push_back(sending.front().get());
                sending.pop_front();
            }
            std::lock_guard lock(mu);
            return failure;
        };
        const auto send = [&]() -> Errc {
            if (Errc w = settle(kInFlight - 1); w != Errc::ok)
                return w;
            const std::uint64_t at = batch_at;
            batch_at += batch->size();
            try {
                sending.push_back(std::async(std::launch::async, [&, at, bytes = batch] {
                    write_batch(at, *bytes);
                    return bytes;
                }));
            } catch (const std::system_error&) {
                write_batch(at, *batch);  // no thread to be had: this one writes
            }
            if (!spare.empty()) {
                batch = std::move(spare.back());
                spare.pop_back();
                batch->clear();
            } else {
                batch = std::make_shared<std::vector<std::byte>>();
            }
            return Errc::ok;
        };
        for (std::uint64_t index = 0; index * granule < local.size && e == Errc::ok; ++index) {
            if (job.stop())
                e = Errc::unreachable;
            else if ((e = job.cache.get(content, index, plain)) != Errc::ok) {
                LOG_ERROR("local content of %s is damaged at granule %llu: it stays in the log", op.path.c_str(),
                          static_cast<unsigned long long>(index));
                e = Errc::io;
            }
            if (e != Errc::ok)
                break;
            const std::uint64_t want = std::min<std::uint64_t>(granule, local.size - index * granule);
            plain.resize(want);
            batch->insert(batch->end(), plain.begin(), plain.end());
            if (batch->size() >= kBatch)
                e = send();
        }
        if (e == Errc::ok && !batch->empty())
            e = send();
        // Every write has ended before the file is synced, closed or dropped.
        if (e != Errc::ok)
            failed = true;  // stopped or failed: what is in flight ends early
        if (Errc w = settle(0); e == Errc::ok)
            e = w;
        if (e == Errc::ok)
            e = file->fsync(false);
        if (e == Errc::ok)
            e = file->close();
        file.reset();
        if (e == Errc::ok) {
            SetAttr times;
            times.mask = SetAttr::kMtime | SetAttr::kAtime;
            times.mtime = local.mtime;
            times.atime = local.atime;
            e = job.remote.setattr(tmp, times, after);
        }
        if (e == Errc::ok)
            e = job.remote.rename(tmp, target, 0);
        if (e != Errc::ok && !is_transient(e))
            job.remote.unlink(tmp);
        if (e == Errc::ok || !is_transient(e))
            job.replica.upload_done(tmp);  // else removed by a later pass (remove_stale_uploads)
        // [!] Once renamed it is there, whatever happens next: a failure to
        // read its attributes back must not leave the operation pending (the
        // next pass would take our own upload for a server change and make a
        // conflicted copy of it, or a second copy). The attributes the
        // setattr returned stand in for them (all but the ctime the rename
        // moved).
        if (e == Errc::ok) {
            Attr renamed;
            if (job.remote.getattr(target, renamed) == Errc::ok)
                after = renamed;
        }
        return e;
    }

    Errc store(const LoggedOp& op) {
        if (is_set_aside(op.path))
            return job.replica.applied(op.seq, op.oid, base_of(op));  // written after its removal: nobody's
        auto object = job.replica.object(op.oid);
        auto local = local_attr(op.oid);
        // Nothing left to send (a file made here and never written has no
        // content object: it is sent empty).
        if (!object || !local || (!object->content && local->size != 0))
            return job.replica.applied(op.seq, op.oid, object ? object->base : BaseVersion{});
        if (job.busy(op.oid))
            return Errc::busy;
        const std::uint64_t generation = object->content_gen;
        Attr now;
        const Errc g = job.remote.getattr(op.path, now);
        if (g != Errc::ok && g != Errc::not_found)
            return g;
        if (g == Errc::ok && uploaded(now, *local))
            return job.replica.applied(op.seq, op.oid, BaseVersion::of(now));
        const BaseVersion& base = object->base;
        std::optional<ConflictKind> kind;
        if (base.exists && g == Errc::not_found)
            kind = ConflictKind::update_delete;
        else if (base.exists && !base.matches(now))
            kind = ConflictKind::update_update;
        else if (!base.exists && g == Errc::ok)
            kind = ConflictKind::create_create;
        else if (!base.exists && S_ISREG(local->mode) && take_vanished(op.path))
            kind = ConflictKind::update_delete;
        std::unique_lock copy_lock(copy_mu, std::defer_lock);
        if (kind)
            copy_lock.lock();
        std::string target = kind ? free_copy_path(op.path) : op.path;
        Attr after;
        Errc e = upload(op, object->content, *local, target, after);
        if (e == Errc::not_found) {
            // The directory it was in is gone from the server: keep it at the top.
            if (!copy_lock.owns_lock())
                copy_lock.lock();
            kind = ConflictKind::parent_removed;
            target = free_copy_path("/" + base_name(op.path));
            e = upload(op, object->content, *local, target, after);
        }
        if (copy_lock.owns_lock())
            copy_lock.unlock();
        if (e != Errc::ok)
            return e;
        if (kind) {
            conflict(*kind, op, op.path, target, local, g == Errc::ok ? &now : nullptr);
            // From here on the local object is the conflicted copy on the
            // server: later operations of it logged under its old name
            // (a rename, a chmod, a second store, an unlink) apply to the
            // copy, never to the server's version at the name, and its base
            // is the copy as uploaded.
            job.replica.repath_pending(op.oid, op.path, target);
            repathed = true;
            return job.replica.applied(op.seq, op.oid, BaseVersion::of(after));
        }
        if (job.replica.pending_for(op.oid) == 0 && job.replica.paths_of(op.oid).empty()) {
            // Made here and removed here while it was uploading (its
            // operations went with it): what was just sent goes too.
            if (Errc u = job.remote.unlink(target); u != Errc::ok && u != Errc::not_found)
                return u;
            return Errc::ok;
        }
        if (auto now_object = job.replica.object(op.oid); now_object && now_object->content_gen != generation) {
            // Written again while uploading: the newer content goes next pass.
            return job.replica.set_base(op.oid, BaseVersion::of(after));
        }
        return job.replica.applied(op.seq, op.oid, BaseVersion::of(after));
    }

    Errc make(const LoggedOp& op) {  // mkdir, symlink
        Attr now;
        const Errc g = job.remote.getattr(op.path, now);
        if (g != Errc::ok && g != Errc::not_found)
            return g;
        const bool want_dir = op.kind == OpKind::mkdir;
        if (g == Errc::ok) {
            std::string target;
            const bool same = want_dir ? S_ISDIR(now.mode)
                                       : S_ISLNK(now.mode) && job.remote.readlink(op.path, target) == Errc::ok &&
                                             target == op.path2;
            if (same)  // made by an earlier pass, or the same on both sides
                return job.replica.applied(op.seq, op.oid, BaseVersion::of(now));
        }
        std::string at = op.path;
        std::optional<ConflictKind> kind;
        if (g == Errc::ok) {
            kind = ConflictKind::create_create;
            at = free_copy_path(op.path);
        }
        Attr made;
        Errc e = want_dir ? job.remote.mkdir(at, op.mode & 07777, made) : job.remote.symlink(op.path2, at, made);
        if (e == Errc::not_found) {
            kind = ConflictKind::parent_removed;
            at = free_copy_path("/" + base_name(op.path));
            e = want_dir ? job.remote.mkdir(at, op.mode & 07777, made) : job.remote.symlink(op.path2, at, made);
        }
        if (e != Errc::ok)
            return e;
        if (kind) {
            conflict(*kind, op, op.path, at, local_attr(op.oid), g == Errc::ok ? &now : nullptr);
            job.replica.repath_pending(op.oid, op.path, at);  // with what was made inside it
            repathed = true;
        }
        return job.replica.applied(op.seq, op.oid, BaseVersion::of(made));
    }

    Errc link(const LoggedOp& op) {
        Attr now, existing;
        const Errc g = job.remote.getattr(op.path2, now);
        if (g != Errc::ok && g != Errc::not_found)
            return g;
        const Errc ge = job.remote.getattr(op.path, existing);
        if (ge != Errc::ok && ge != Errc::not_found)
            return ge;
        auto object = job.replica.object(op.oid);
        const BaseVersion base = base_of(op);
        // As rename: a change made on the server since the base was taken is
        // one nobody here has seen, so the base stays (a later store or
        // unlink of the object is then a conflict, not an overwrite).
        auto next_base = [&](const Attr& after) { return base.matches(existing) ? BaseVersion::of(after) : base; };
        if (g == Errc::ok && ge == Errc::ok && now.file_id == existing.file_id && now.file_id != 0)
            return job.replica.applied(op.seq, op.oid, next_base(now));  // linked by an earlier pass
        if (ge == Errc::not_found) {
            // The file was removed on the server. The new name keeps the
            // local copy, where there is one: never dropped with the name.
            auto local = local_attr(op.oid);
            if (!object || !object->content || !local) {
                conflict(ConflictKind::update_delete, op, op.path, {}, local, nullptr);
                return job.replica.applied(op.seq, op.oid, BaseVersion{});
            }
            if (g == Errc::ok && uploaded(now, *local))
                return job.replica.applied(op.seq, op.oid, BaseVersion::of(now));
            std::unique_lock copy_lock(copy_mu, std::defer_lock);
            if (g == Errc::ok)
                copy_lock.lock();
            const std::string at = g == Errc::ok ? free_copy_path(op.path2) : op.path2;
            Attr after;
            if (Errc e = upload(op, object->content, *local, at, after); e != Errc::ok)
                return e;
            if (copy_lock.owns_lock())
                copy_lock.unlock();
            conflict(ConflictKind::update_delete, op, op.path, at, local, nullptr);
            if (at != op.path2) {
                job.replica.repath_pending(op.oid, op.path2, at);  // see store
                repathed = true;
            }
            return job.replica.applied(op.seq, op.oid, BaseVersion::of(after));
        }
        std::string at = g == Errc::ok ? free_copy_path(op.path2) : op.path2;
        Attr made;
        const Errc e = job.remote.link(op.path, at, made);
        if (e != Errc::ok)
            return e;
        if (g == Errc::ok)
            conflict(ConflictKind::create_create, op, op.path2, at, local_attr(op.oid), &now);
        return job.replica.applied(op.seq, op.oid, next_base(made));
    }

    // The version of `oid` under a name other than `removed`, for a file
    // that stays under another of its hard links (nothing when it has no
    // other name here): the base of what comes next. The file there is
    // this one by its file id, where the remote has them, else by its size
    // and mtime, compared with `was` (the file as last seen): never another
    // client's file at that name. A name not found on the server (made here,
    // not sent yet) keeps `was` as the base.
    BaseVersion surviving_base(std::int64_t oid, const std::string& removed, const BaseVersion& was) {
        bool others = false;
        for (const std::string& p : job.replica.paths_of(oid)) {
            if (p == removed)
                continue;
            others = true;
            Attr a;
            if (job.remote.getattr(p, a) != Errc::ok || !S_ISREG(a.mode))
                continue;
            if (a.file_id && was.file_id ? a.file_id == was.file_id
                                         : a.size == was.size && ns(a.mtime) == was.mtime_ns)
                return BaseVersion::of(a);
        }
        return others ? was : BaseVersion{};
    }

    Errc remove(const LoggedOp& op) {  // unlink, rmdir
        const bool dir = op.kind == OpKind::rmdir;
        Attr now;
        Errc g = job.remote.getattr(op.path, now);
        const BaseVersion base = base_of(op);
        if (g == Errc::not_found && !dir && !op.path2.empty()) {
            // Moved aside here before it was removed (Replica::append joins
            // the two): a pass that sent the move and stopped before
            // recording it left the file at the second name.
            Attr moved;
            const Errc gm = job.remote.getattr(op.path2, moved);
            if (gm != Errc::ok && gm != Errc::not_found)
                return gm;
            // The move changed its ctime (and so, on some servers, its
            // change attribute): its id, size and mtime say it is the file.
            if (gm == Errc::ok && (base.matches(moved) || (base.file_id && base.file_id == moved.file_id &&
                                                           base.size == moved.size && base.mtime_ns == ns(moved.mtime)))) {
                LoggedOp at_second = op;
                at_second.path = op.path2;
                at_second.path2.clear();
                at_second.base = BaseVersion::of(moved);
                if (job.replica.object(op.oid))
                    job.replica.set_base(op.oid, at_second.base);
                return remove(at_second);
            }
        }
        if (g == Errc::not_found) {
            if (!dir && base.exists && editor_saves.count(op.seq)) {
                std::lock_guard lock(mu);
                vanished.insert(op.path);
            }
            return job.replica.applied(op.seq, op.oid, dir ? BaseVersion{} : surviving_base(op.oid, op.path, base));
        }
        if (g != Errc::ok)
            return g;
        if (!base.matches(now) || S_ISDIR(now.mode) != dir) {
            conflict(ConflictKind::delete_update, op, op.path, {}, std::nullopt, &now);
            std::lock_guard lock(mu);
            kept.insert(op.path);
            return job.replica.applied(op.seq, op.oid, BaseVersion::of(now));
        }
        const Errc e = dir ? job.remote.rmdir(op.path) : job.remote.unlink(op.path);
        if (e == Errc::not_empty || e == Errc::exists) {
            // Files were added to it on the server, or changed there, or
            // kept by a conflict: they stay, and so does it. Where all of
            // them are conflicts of this pass, it is no conflict of its own
            // (`rm -r` of a folder with one file the server changed: that
            // file's delete/update says it all).
            std::vector<DirEntry> entries;
            const bool explained = job.remote.readdir(op.path, entries) == Errc::ok &&
                                   std::all_of(entries.begin(), entries.end(), [&](const DirEntry& d) {
                                       std::lock_guard lock(mu);
                                       return kept.count(join_path(op.path, d.name)) != 0;
                                   });
            if (!explained)
                conflict(ConflictKind::delete_update, op, op.path, {}, std::nullopt, &now);
            std::lock_guard lock(mu);
            kept.insert(op.path);
            return job.replica.applied(op.seq, op.oid, BaseVersion::of(now));
        }
        if (e != Errc::ok && e != Errc::not_found)
            return e;
        // One of its hard links: the file stays under its other names.
        const BaseVersion after = dir ? BaseVersion{} : surviving_base(op.oid, op.path, BaseVersion::of(now));
        if (!after.exists)
            job.replica.copy_removed(op.path);  // a conflicted copy the user deleted: settled
        return job.replica.applied(op.seq, op.oid, after);
    }

    Errc rename(const LoggedOp& op) {
        if (is_set_aside(op.path2) && !is_set_aside(op.path)) {
            // Removed (or replaced) here while open: the engine keeps it
            // under a hidden name until its last close. On the server that
            // is its removal, checked against its base like any other: a
            // version changed there stays, as a delete/update.
            LoggedOp removal = op;
            removal.kind = OpKind::unlink;
            removal.path2.clear();
            return remove(removal);
        }
        Attr from, to;
        const Errc gf = job.remote.getattr(op.path, from);
        if (gf != Errc::ok && gf != Errc::not_found)
            return gf;
        const Errc gt = job.remote.getattr(op.path2, to);
        if (gt != Errc::ok && gt != Errc::not_found)
            return gt;
        const BaseVersion base = base_of(op);
        // The same object, maybe changed on the server since.
        auto same_object = [&](const Attr& a) { return base.matches(a) || (base.file_id && base.file_id == a.file_id); };
        if (gf == Errc::not_found) {
            if (gt == Errc::ok && same_object(to))  // moved by an earlier pass
                return job.replica.applied(op.seq, op.oid, base.matches(to) ? BaseVersion::of(to) : base);
            conflict(ConflictKind::update_delete, op, op.path, {}, local_attr(op.oid), nullptr);
            return job.replica.applied(op.seq, op.oid, BaseVersion{});
        }
        std::optional<ConflictKind> kind;
        std::string at = op.path2;
        if (gt == Errc::ok && !(op.base2.exists && op.base2.matches(to))) {
            kind = ConflictKind::rename_taken;
            at = free_copy_path(op.path2);
        } else if (gt == Errc::not_found && S_ISREG(from.mode) && take_vanished(op.path2)) {
            kind = ConflictKind::update_delete;
            at = free_copy_path(op.path2);
        }
        Errc e = job.remote.rename(op.path, at, 0);
        if (e == Errc::not_found) {
            // The directory it was moving to is gone from the server: keep it at the top.
            kind = ConflictKind::parent_removed;
            at = free_copy_path("/" + base_name(op.path2));
            e = job.remote.rename(op.path, at, 0);
        }
        if (e != Errc::ok)
            return e;
        // Moved: from here on the pass must record it whatever the server
        // answers (see upload); its attributes are those it had before.
        Attr after = from;
        if (Attr moved; job.remote.getattr(at, moved) == Errc::ok)
            after = moved;
        job.replica.copy_moved(op.path, at);  // a conflicted copy renamed here: its record follows
        if (kind) {
            conflict(*kind, op, op.path2, at, local_attr(op.oid), gt == Errc::ok ? &to : nullptr);
            job.replica.repath_pending(op.oid, op.path2, at);
            repathed = true;
        }
        // A rename moves what the server has, changed or not; but a change
        // made there since the base was taken is still one nobody here has
        // seen: the base stays, so that a later store or unlink of the
        // object is a conflict rather than an overwrite of that change.
        return job.replica.applied(op.seq, op.oid, base.matches(from) ? BaseVersion::of(after) : base);
    }

    Errc setattr(const LoggedOp& op) {
        Attr now;
        const Errc g = job.remote.getattr(op.path, now);
        if (g == Errc::not_found) {
            conflict(ConflictKind::update_delete, op, op.path, {}, local_attr(op.oid), nullptr);
            return job.replica.applied(op.seq, op.oid, BaseVersion{});
        }
        if (g != Errc::ok)
            return g;
        const BaseVersion base = base_of(op);
        if (!base.matches(now)) {
            // Its content changed on the server: the server's version keeps
            // its own attributes, and the base stays (see store).
            conflict(ConflictKind::update_update, op, op.path, {}, local_attr(op.oid), &now);
            return job.replica.applied(op.seq, op.oid, base);
        }
        SetAttr change = op.attrs;
        change.mask &= ~SetAttr::kSize;
        Attr after;
        const Errc e = job.remote.setattr(op.path, change, after);
        if (e != Errc::ok)
            return e;
        // The cache holds the content under the local attributes (see
        // ReplicaBackend::setattr); it stands for the server's now.
        if (auto local = local_attr(op.oid); local && S_ISREG(after.mode))
            job.cache.carry_over(op.path, Version::of(*local), Version::of(after));
        return job.replica.applied(op.seq, op.oid, BaseVersion::of(after));
    }

    Errc apply(const LoggedOp& op) {
        switch (op.kind) {
        case OpKind::store: return store(op);
        case OpKind::mkdir:
        case OpKind::symlink: return make(op);
        case OpKind::link: return link(op);
        case OpKind::unlink:
        case OpKind::rmdir: return remove(op);
        case OpKind::rename: return rename(op);
        case OpKind::setattr: return setattr(op);
        }
        return Errc::invalid;
    }
};

} // namespace

std::string conflicted_copy_path(const std::string& path, const std::string& hostname, std::time_t when) {
    std::tm local{};
    localtime_r(&when, &local);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H%M%S", &local);
    const std::string name = base_name(path);
    // The extension stays last so the copy opens in the same application;
    // a leading dot (".bashrc") is not one.
    auto dot = name.rfind('.');
    if (dot == 0 || dot == std::string::npos)
        dot = name.size();
    return join_path(parent_of(path),
                     name.substr(0, dot) + " (conflicted copy " + stamp + " " + hostname + ")" + name.substr(dot));
}

namespace {

// Consecutive stores change one file each, at distinct paths (anything that
// could free a path for another store is an operation between them): they
// are independent, and run in parallel so that a log of many small files
// costs round trips per batch, not per file. A store is ~8 round trips;
// with 32 at a time 10,000 small files took 76 s at 20 ms, with 128 29 s
// (bench/RESULTS.md). Their buffers share Pass::kBufferBudget.
constexpr unsigned kParallelStores = 128;

// Applies ops[first, last) of one batch; returns the first failure (its
// index in `failed_at`), later ones in the batch still run.
Errc run_batch(Pass& pass, const std::vector<LoggedOp>& ops, std::size_t first, std::size_t last,
               std::size_t& failed_at) {
    const Reintegration& job = pass.job;
    std::atomic<std::size_t> next{first};
    std::mutex mu;
    Errc first_error = Errc::ok;
    failed_at = last;
    auto work = [&] {
        for (std::size_t i; (i = next++) < last;) {
            if (job.stop()) {
                std::lock_guard lock(mu);
                if (i < failed_at) {
                    failed_at = i;
                    first_error = Errc::unreachable;
                }
                return;
            }
            const Errc e = pass.apply(ops[i]);
            std::lock_guard lock(mu);
            if (e != Errc::ok) {
                if (i < failed_at) {
                    failed_at = i;
                    first_error = e;
                }
                continue;
            }
            std::lock_guard progress_lock(pass.mu);
            pass.outcome.applied++;
            pass.progress.ops_done++;
            job.progress(pass.progress);
        }
    };
    const unsigned threads = unsigned(std::min<std::size_t>(kParallelStores, last - first));
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < threads; ++t)
        pool.emplace_back(work);
    work();
    for (auto& t : pool)
        t.join();
    return first_error;
}

} // namespace

// Temporaries of uploads an outage cut short go first: their operation may
// be gone from the log since (the file was removed here), and nothing else
// would ever remove them.
static Errc remove_stale_uploads(const Reintegration& job) {
    for (const std::string& tmp : job.replica.uploads()) {
        const Errc e = job.remote.unlink(tmp);
        if (e != Errc::ok && e != Errc::not_found) {
            if (is_transient(e))
                return e;
            LOG_WARN("cannot remove the unfinished upload %s from the server (%s)", tmp.c_str(),
                     std::string(describe(e)).c_str());
        }
        job.replica.upload_done(tmp);
    }
    return Errc::ok;
}

SyncOutcome reintegrate(const Reintegration& job) {
    Pass pass(job);
    if (Errc e = remove_stale_uploads(job); e != Errc::ok) {
        pass.outcome.error = e;
        pass.outcome.message = "the server does not answer";
        pass.outcome.pending = job.replica.pending_count();
        return pass.outcome;
    }
    // Local changes go on while the pass runs: the operations it holds are
    // not rewritten under it, until it ends.
    struct Thaw {
        Replica& replica;
        ~Thaw() { replica.freeze_through(0); }
    } thaw{job.replica};
    std::vector<LoggedOp> ops = job.replica.pending(SIZE_MAX, true);
    pass.find_editor_saves(ops);
    pass.progress.ops_total = ops.size();
    for (const LoggedOp& op : ops)
        if (op.kind == OpKind::store)
            if (auto a = pass.local_attr(op.oid))
                pass.progress.bytes_left += a->size;
    job.progress(pass.progress);
    for (std::size_t i = 0; i < ops.size();) {
        std::size_t end = i + 1;
        if (ops[i].kind == OpKind::store)
            while (end < ops.size() && ops[end].kind == OpKind::store)
                ++end;
        std::size_t failed_at = end;
        const Errc e = run_batch(pass, ops, i, end, failed_at);
        if (e != Errc::ok) {
            const LoggedOp& op = ops[failed_at];
            pass.outcome.error = e;
            if (e == Errc::busy)
                pass.outcome.message = op.path + " is open for writing here: it is sent once closed";
            else if (job.stop())
                pass.outcome.message = "stopped";
            else
                pass.outcome.message = std::string(op_name(op.kind)) + " " + op.path + ": " + std::string(describe(e));
            if (!is_transient(e) && e != Errc::busy && !job.stop())
                LOG_ERROR("reintegration of %s %s failed (%s): it stays in the log and is retried",
                          op_name(op.kind), op.path.c_str(), std::string(describe(e)).c_str());
            break;
        }
        i = end;
        if (pass.repathed.exchange(false)) {
            // Carry on with the later operations as the log has them now.
            const std::int64_t done = ops[end - 1].seq;
            std::vector<LoggedOp> rest;
            for (LoggedOp& later : job.replica.pending(SIZE_MAX, true))
                if (later.seq > done)
                    rest.push_back(std::move(later));
            ops = std::move(rest);
            pass.find_editor_saves(ops);
            i = 0;
        }
    }
    pass.outcome.pending = job.replica.pending_count();
    return pass.outcome;
}

} // namespace netfs
