// A randomized operation checker in the spirit of fsx: random writes (also
// past the end, making holes), reads, truncates, reopens, fsyncs, mmap and
// O_DIRECT reads on a file through the mount, each checked against an
// in-memory model; the whole file is compared through the mount every few
// hundred operations, and in the backing directory after each fsync.
//
//   NETFS_FSX_SEED=1234 NETFS_FSX_OPS=200000 ./build/tests/test_fsx
//
// replays a run (the seed is printed at the start) or runs longer. On a
// mismatch it prints the offset, the bytes around it and the last operations.
#include "tests/support/mount_fixture.h"

#include <QTest>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <sstream>

using namespace netfs::test;

namespace {

constexpr std::size_t kMaxSize = 4 << 20;   // the file stays below this
constexpr std::size_t kMaxOp = 256 << 10;   // the largest write or read

std::uint64_t seed_from_env() {
    if (const char* s = std::getenv("NETFS_FSX_SEED"))
        return std::strtoull(s, nullptr, 10);
    return std::uint64_t(std::chrono::steady_clock::now().time_since_epoch().count()) % 1000000007;
}

int ops_from_env(int fallback) {
    if (const char* s = std::getenv("NETFS_FSX_OPS"))
        return std::max(1, std::atoi(s));
    return fallback;
}

class Fsx {
public:
    Fsx(MountFixture& m, std::uint64_t seed) : m_(m), rng_(seed), seed_(seed) {}

    // Runs `ops` operations; returns an empty string or what went wrong.
    std::string run(int ops) {
        path_ = m_.at("fsx.data").toStdString();
        if (!reopen())
            return failure("open failed: " + std::string(std::strerror(errno)));
        for (int i = 0; i < ops; ++i) {
            const unsigned pick = rng_() % 100;
            std::string problem;
            if (pick < 35)
                problem = do_write();
            else if (pick < 63)
                problem = do_read();
            else if (pick < 71)
                problem = do_truncate();
            else if (pick < 76)
                problem = reopen() ? "" : "reopen failed: " + std::string(std::strerror(errno));
            else if (pick < 82)
                problem = do_fsync();
            else if (pick < 90)
                problem = do_mmap_read();
            else
                problem = do_direct_read();
            if (problem.empty() && (i + 1) % 500 == 0)
                problem = compare_all();
            if (!problem.empty())
                return failure(problem);
        }
        std::string problem = do_fsync();
        if (problem.empty())
            problem = compare_all();
        ::close(fd_);
        return problem.empty() ? "" : failure(problem);
    }

private:
    void note(std::string op) {
        log_.push_back(std::move(op));
        if (log_.size() > 20)
            log_.pop_front();
    }

    std::string failure(const std::string& what) {
        std::ostringstream out;
        out << "fsx seed " << seed_ << ": " << what << "\nlast operations:\n";
        for (const auto& op : log_)
            out << "  " << op << "\n";
        return out.str();
    }

    bool reopen() {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT, 0644);
        note("reopen");
        return fd_ >= 0;
    }

    // Compares `got` with the model at `offset`; describes the first difference.
    std::string check(const char* what, std::uint64_t offset, const std::uint8_t* got, std::size_t n) {
        for (std::size_t i = 0; i < n; ++i)
            if (got[i] != model_[offset + i]) {
                std::ostringstream out;
                out << what << " mismatch at offset " << offset + i << " (file size " << model_.size()
                    << "): expected";
                for (std::size_t j = i; j < std::min(n, i + 8); ++j)
                    out << " " << int(model_[offset + j]);
                out << ", got";
                for (std::size_t j = i; j < std::min(n, i + 8); ++j)
                    out << " " << int(got[j]);
                return out.str();
            }
        return {};
    }

    std::string do_write() {
        const std::size_t len = 1 + rng_() % (rng_() % 4 == 0 ? kMaxOp : 16384);
        const std::uint64_t off = rng_() % (std::min(kMaxSize - len, model_.size() + 65536));
        std::vector<std::uint8_t> data(len);
        for (auto& b : data)
            b = std::uint8_t(rng_());
        note("write " + std::to_string(off) + " +" + std::to_string(len));
        if (::pwrite(fd_, data.data(), len, off_t(off)) != ssize_t(len))
            return "write failed: " + std::string(std::strerror(errno));
        if (off + len > model_.size())
            model_.resize(off + len, 0);  // a gap reads as zeros
        std::copy(data.begin(), data.end(), model_.begin() + off);
        return {};
    }

    std::string do_read() {
        const std::size_t len = 1 + rng_() % kMaxOp;
        const std::uint64_t off = rng_() % (model_.size() + 4096);
        note("read " + std::to_string(off) + " +" + std::to_string(len));
        std::vector<std::uint8_t> buf(len);
        const ssize_t n = ::pread(fd_, buf.data(), len, off_t(off));
        const std::size_t want = off >= model_.size() ? 0 : std::min<std::size_t>(len, model_.size() - off);
        if (n != ssize_t(want))
            return "read returned " + std::to_string(n) + ", expected " + std::to_string(want);
        return check("read", off, buf.data(), want);
    }

    std::string do_truncate() {
        const std::size_t size = rng_() % kMaxSize;
        note("truncate " + std::to_string(size));
        if (::ftruncate(fd_, off_t(size)) != 0)
            return "truncate failed: " + std::string(std::strerror(errno));
        model_.resize(size, 0);
        return {};
    }

    std::string do_fsync() {
        note("fsync");
        if (::fsync(fd_) != 0)
            return "fsync failed: " + std::string(std::strerror(errno));
        // Acknowledged: the remote holds exactly the model now.
        std::vector<std::byte> remote;
        if (!read_file(m_.direct("fsx.data"), remote))
            return "cannot read the backing file";
        if (remote.size() != model_.size())
            return "after fsync the remote has " + std::to_string(remote.size()) + " bytes, expected " +
                   std::to_string(model_.size());
        return check("remote after fsync", 0, reinterpret_cast<const std::uint8_t*>(remote.data()), remote.size());
    }

    std::string do_mmap_read() {
        if (model_.empty())
            return {};
        const std::uint64_t off = rng_() % model_.size();
        const std::size_t len = std::min<std::size_t>(1 + rng_() % kMaxOp, model_.size() - off);
        note("mmap read " + std::to_string(off) + " +" + std::to_string(len));
        void* map = ::mmap(nullptr, model_.size(), PROT_READ, MAP_SHARED, fd_, 0);
        if (map == MAP_FAILED)
            return "mmap failed: " + std::string(std::strerror(errno));
        std::string problem = check("mmap read", off, static_cast<const std::uint8_t*>(map) + off, len);
        ::munmap(map, model_.size());
        return problem;
    }

    std::string do_direct_read() {
        const std::uint64_t off = (rng_() % (model_.size() / 4096 + 1)) * 4096;
        const std::size_t len = 4096 * (1 + rng_() % 64);
        note("direct read " + std::to_string(off) + " +" + std::to_string(len));
        int dfd = ::open(path_.c_str(), O_RDONLY | O_DIRECT);
        if (dfd < 0)
            return "O_DIRECT open failed: " + std::string(std::strerror(errno));
        void* buf = nullptr;
        if (::posix_memalign(&buf, 4096, len) != 0) {
            ::close(dfd);
            return "out of memory";
        }
        const ssize_t n = ::pread(dfd, buf, len, off_t(off));
        ::close(dfd);
        const std::size_t want = off >= model_.size() ? 0 : std::min<std::size_t>(len, model_.size() - off);
        std::string problem;
        if (n != ssize_t(want))
            problem = "O_DIRECT read returned " + std::to_string(n) + ", expected " + std::to_string(want);
        else
            problem = check("O_DIRECT read", off, static_cast<const std::uint8_t*>(buf), want);
        std::free(buf);
        return problem;
    }

    std::string compare_all() {
        note("compare all");
        struct stat st;
        if (::fstat(fd_, &st) != 0 || std::size_t(st.st_size) != model_.size())
            return "size through the mount is " + std::to_string(st.st_size) + ", expected " +
                   std::to_string(model_.size());
        std::vector<std::uint8_t> all(model_.size());
        if (::pread(fd_, all.data(), all.size(), 0) != ssize_t(all.size()))
            return "full read was short";
        return check("full read", 0, all.data(), all.size());
    }

    MountFixture& m_;
    std::mt19937_64 rng_;
    std::uint64_t seed_;
    std::string path_;
    int fd_ = -1;
    std::vector<std::uint8_t> model_;
    std::deque<std::string> log_;
};

void run_fsx(RemoteSpec remote, QStringList options, int ops) {
    MountFixture m(std::move(remote), std::move(options));
    QVERIFY2(m.mount(), qPrintable(m.error()));
    const std::uint64_t seed = seed_from_env();
    ops = ops_from_env(ops);
    std::printf("fsx seed %llu, %d ops\n", static_cast<unsigned long long>(seed), ops);
    std::fflush(stdout);
    const std::string problem = Fsx(m, seed).run(ops);
    if (!problem.empty()) {
        // What the daemon said (the server's own words for an EIO) tells
        // where to look when a run fails only on another machine. Printed
        // apart: QtTest cuts a failure message short.
        std::fprintf(stderr, "daemon log (tail):\n%s\n", qPrintable(m.log().right(6000)));
    }
    QVERIFY2(problem.empty(), problem.c_str());
    QVERIFY2(m.unmount(), qPrintable(m.error()));
}

} // namespace

class TestFsx : public QObject {
    Q_OBJECT
private slots:
    void plain_mount() { run_fsx({}, {}, 7000); }
    // Small subrequests: every read and write is split and stitched.
    void small_rsize_and_wsize() {
        RemoteSpec remote;
        remote.query = "rsize=65536&wsize=65536";
        run_fsx(remote, {}, 7000);
    }
    // A tiny folio budget: eviction and writeback under memory pressure all the time.
    void under_memory_pressure() { run_fsx({}, {"memory=8M"}, 7000); }
};

QTEST_GUILESS_MAIN(TestFsx)
#include "test_fsx.moc"
