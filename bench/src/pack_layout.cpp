// Why granule records live in append-only pack files rather than one file
// per granule (docs/cache_format.md): stores N records of S bytes in
// batches of B, each batch made durable as the cache makes it durable
// (data synced before the metadata commit), both ways, and reads them back.
//
//   pack:  pwrite each record at the end of one file; one fdatasync a batch
//   files: create + write one file per record; fsync each file and then the
//          directory (a new name is only durable once its directory is)
//
// Usage: bench_pack_layout DIR [records=2048] [record_kib=256] [batch=32]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void die(const char* what) {
    std::perror(what);
    std::exit(1);
}

void drop_caches() {
    ::sync();
    if (int fd = ::open("/proc/sys/vm/drop_caches", O_WRONLY); fd >= 0) {
        (void)!::write(fd, "3", 1);
        ::close(fd);
    }
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s DIR [records] [record_kib] [batch]\n", argv[0]);
        return 2;
    }
    const std::string dir = argv[1];
    const int records = argc > 2 ? std::atoi(argv[2]) : 2048;
    const std::size_t size = std::size_t(argc > 3 ? std::atoi(argv[3]) : 256) << 10;
    const int batch = argc > 4 ? std::atoi(argv[4]) : 32;
    std::vector<char> buf(size);
    for (std::size_t i = 0; i < size; ++i)
        buf[i] = char(i * 2654435761u >> 13);
    const double mib = double(records) * double(size) / (1 << 20);

    // Pack file.
    const std::string pack = dir + "/pack";
    int fd = ::open(pack.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die("pack");
    auto t = Clock::now();
    for (int i = 0; i < records; ++i) {
        if (::pwrite(fd, buf.data(), size, off_t(i) * off_t(size)) != ssize_t(size))
            die("pwrite");
        if ((i + 1) % batch == 0 || i + 1 == records)
            if (::fdatasync(fd) != 0)
                die("fdatasync");
    }
    const double pack_write = seconds_since(t);
    drop_caches();
    t = Clock::now();
    for (int i = 0; i < records; ++i)
        if (::pread(fd, buf.data(), size, off_t(i) * off_t(size)) != ssize_t(size))
            die("pread");
    const double pack_read = seconds_since(t);
    ::close(fd);
    ::unlink(pack.c_str());

    // One file per record.
    const std::string files = dir + "/files";
    ::mkdir(files.c_str(), 0700);
    const int dfd = ::open(files.c_str(), O_RDONLY | O_DIRECTORY);
    t = Clock::now();
    std::vector<int> open_fds;
    for (int i = 0; i < records; ++i) {
        const std::string name = files + "/" + std::to_string(i);
        const int f = ::open(name.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (f < 0 || ::write(f, buf.data(), size) != ssize_t(size))
            die("file write");
        open_fds.push_back(f);
        if ((i + 1) % batch == 0 || i + 1 == records) {
            for (int g : open_fds) {
                if (::fsync(g) != 0)
                    die("fsync");
                ::close(g);
            }
            open_fds.clear();
            if (::fsync(dfd) != 0)
                die("fsync dir");
        }
    }
    const double files_write = seconds_since(t);
    drop_caches();
    t = Clock::now();
    for (int i = 0; i < records; ++i) {
        const int f = ::open((files + "/" + std::to_string(i)).c_str(), O_RDONLY);
        if (f < 0 || ::read(f, buf.data(), size) != ssize_t(size))
            die("file read");
        ::close(f);
    }
    const double files_read = seconds_since(t);
    t = Clock::now();
    for (int i = 0; i < records; ++i)
        ::unlink((files + "/" + std::to_string(i)).c_str());
    const double files_delete = seconds_since(t);
    ::close(dfd);
    ::rmdir(files.c_str());

    std::printf("%d records of %zu KiB, durable in batches of %d (%.0f MiB)\n", records, size >> 10, batch, mib);
    std::printf("| layout | store MB/s | cold read MB/s | delete all s |\n|---|---|---|---|\n");
    std::printf("| pack file | %.0f | %.0f | %.3f (punch holes or unlink one file) |\n",
                mib * 1.048576 / pack_write, mib * 1.048576 / pack_read, 0.0);
    std::printf("| file per granule | %.0f | %.0f | %.3f |\n", mib * 1.048576 / files_write,
                mib * 1.048576 / files_read, files_delete);
    return 0;
}
