// The file:// remote and the wrappers that simulate a network and inject
// faults: what tests and benchmarks rely on them to do.
#include "core/backend/faulty_backend.h"
#include "core/backend/file_backend.h"
#include "core/backend/remote_url.h"
#include "core/backend/shaped_backend.h"

#include <QDir>
#include <QElapsedTimer>
#include <QTemporaryDir>
#include <QTest>

#include <fcntl.h>
#include <sys/stat.h>

#include <thread>

using namespace netfs;

namespace {

std::unique_ptr<FileBackend> file_backend(const QTemporaryDir& dir) {
    std::unique_ptr<FileBackend> b;
    if (FileBackend::make(dir.path().toStdString(), {}, b) != Errc::ok)
        qFatal("cannot open %s", qPrintable(dir.path()));
    return b;
}

} // namespace

class TestBackendWrappers : public QObject {
    Q_OBJECT
private slots:
    void file_backend_reports_what_stat_reports() {
        QTemporaryDir dir;
        auto b = file_backend(dir);
        Attr a;
        std::unique_ptr<BackendFile> f;
        QCOMPARE(b->create("/x", 0640, O_RDWR | O_EXCL, f, a), Errc::ok);
        std::size_t n = 0;
        const std::byte data[3] = {std::byte(1), std::byte(2), std::byte(3)};
        QCOMPARE(f->write(10, data, n), Errc::ok);
        QCOMPARE(n, 3u);
        QCOMPARE(f->close(), Errc::ok);
        QCOMPARE(b->getattr("/x", a), Errc::ok);
        struct stat st;
        QCOMPARE(::stat(qPrintable(dir.path() + "/x"), &st), 0);
        QCOMPARE(a.size, 13u);
        QCOMPARE(a.file_id, std::uint64_t(st.st_ino));
        QCOMPARE(a.mode, std::uint32_t(st.st_mode));
        QCOMPARE(a.mtime.tv_nsec, st.st_mtim.tv_nsec);
        QCOMPARE(b->create("/x", 0640, O_RDWR | O_EXCL, f, a), Errc::exists);
        QCOMPARE(b->getattr("/nope", a), Errc::not_found);
        QCOMPARE(b->mkdir("/" + std::string(300, 'n'), 0755, a), Errc::name_too_long);
        QCOMPARE(b->symlink("x", "/l", a), Errc::ok);
        QCOMPARE(b->getattr("/l", a), Errc::ok);
        QVERIFY(S_ISLNK(a.mode));  // reported, not followed
        std::vector<DirEntry> entries;
        QCOMPARE(b->readdir("/", entries), Errc::ok);
        QCOMPARE(entries.size(), 2u);
    }

    void latency_applies_per_operation_in_parallel() {
        QTemporaryDir dir;
        ShapedBackend b(file_backend(dir), std::chrono::milliseconds(100), 0);
        QElapsedTimer t;
        t.start();
        Attr a;
        QCOMPARE(b.getattr("/", a), Errc::ok);
        QVERIFY(t.elapsed() >= 100);
        t.restart();
        std::vector<std::thread> threads;
        for (int i = 0; i < 8; ++i)
            threads.emplace_back([&] {
                Attr x;
                b.getattr("/", x);
            });
        for (auto& th : threads)
            th.join();
        QVERIFY2(t.elapsed() < 400, "8 parallel operations at 100 ms take about 100 ms, not 800");
    }

    void bandwidth_cap_is_shared_by_all_transfers() {
        QTemporaryDir dir;
        ShapedBackend b(file_backend(dir), std::chrono::milliseconds(0), 20'000'000);  // 20 MB/s
        Attr a;
        std::unique_ptr<BackendFile> f;
        QCOMPARE(b.create("/big", 0644, O_RDWR, f, a), Errc::ok);
        std::vector<std::byte> chunk(1'000'000);
        QElapsedTimer t;
        t.start();
        std::vector<std::thread> threads;
        for (int i = 0; i < 4; ++i)
            threads.emplace_back([&, i] {
                std::size_t n;
                f->write(std::uint64_t(i) * chunk.size(), chunk, n);
            });
        for (auto& th : threads)
            th.join();
        // 4 MB at 20 MB/s: 200 ms however many threads share the link.
        QVERIFY2(t.elapsed() >= 180, qPrintable(QString::number(t.elapsed())));
        QVERIFY2(t.elapsed() < 600, qPrintable(QString::number(t.elapsed())));
    }

    void fault_rules_parse_and_count() {
        FaultRule r;
        std::string problem;
        QVERIFY(FaultRule::parse("write no_space after=2 count=3 path=/data", r, problem));
        QVERIFY(r.op && *r.op == Op::write);
        QCOMPARE(r.error, Errc::no_space);
        QCOMPARE(r.after, 2u);
        QCOMPARE(r.count, 3u);
        QCOMPARE(r.path, std::string("/data"));
        QVERIFY(!FaultRule::parse("explode io", r, problem));
        QVERIFY(problem.find("explode") != std::string::npos);
        QVERIFY(!FaultRule::parse("read sometimes", r, problem));
        QVERIFY(!FaultRule::parse("read io after=x", r, problem));

        QTemporaryDir dir;
        FaultyBackend b(file_backend(dir));
        FaultRule rule;
        QVERIFY(FaultRule::parse("getattr timed_out after=1 count=2", rule, problem));
        b.add_rule(rule);
        Attr a;
        QCOMPARE(b.getattr("/", a), Errc::ok);         // after=1: the first passes
        QCOMPARE(b.getattr("/", a), Errc::timed_out);  // then count=2 fail
        QCOMPARE(b.getattr("/", a), Errc::timed_out);
        QCOMPARE(b.getattr("/", a), Errc::ok);         // spent
        QCOMPARE(b.injected(), 2u);
    }

    void short_transfers_and_a_rules_file_that_changes() {
        QTemporaryDir dir;
        const std::string rules = (dir.path() + "/rules").toStdString();
        QDir().mkpath(dir.path() + "/remote");
        std::unique_ptr<FileBackend> inner;
        QCOMPARE(FileBackend::make((dir.path() + "/remote").toStdString(), {}, inner), Errc::ok);
        FaultyBackend b(std::move(inner), rules);
        Attr a;
        std::unique_ptr<BackendFile> f;
        QCOMPARE(b.create("/f", 0644, O_RDWR, f, a), Errc::ok);  // no file: no faults
        std::vector<std::byte> data(1000);
        std::size_t n = 0;
        QCOMPARE(f->write(0, data, n), Errc::ok);
        QCOMPARE(n, 1000u);
        auto set = [&](const char* text) {
            FILE* out = std::fopen(rules.c_str(), "w");
            std::fputs(text, out);
            std::fclose(out);
        };
        set("write short\n# a comment\nbogus line\n");
        QCOMPARE(f->write(0, data, n), Errc::ok);
        QCOMPARE(n, 500u);
        set("write io path=/f\nread unreachable path=/other\n");
        QCOMPARE(f->write(0, data, n), Errc::io);
        QCOMPARE(f->read(0, data, n), Errc::ok);  // path does not match
        set("");
        QCOMPARE(f->write(0, data, n), Errc::ok);
        QCOMPARE(n, 1000u);
    }

    void remote_urls_are_taken_apart() {
        RemoteUrl u;
        std::string message;
        QVERIFY(parse_remote_url("sftp://me@server.example:2222/home/me/", u, message));
        QCOMPARE(u.scheme, std::string("sftp"));
        QCOMPARE(u.user, std::string("me"));
        QCOMPARE(u.host, std::string("server.example"));
        QCOMPARE(u.port, std::uint16_t(2222));
        QCOMPARE(u.path, std::string("/home/me"));
        QVERIFY(parse_remote_url("nfs://[::1]:2049/export/a%20b?version=4", u, message));
        QCOMPARE(u.host, std::string("::1"));
        QCOMPARE(u.port, std::uint16_t(2049));
        QCOMPARE(u.path, std::string("/export/a b"));
        QCOMPARE(u.query.at("version"), std::string("4"));
        QVERIFY(parse_remote_url("sftp://host", u, message));
        QCOMPARE(u.path, std::string("/"));
        QCOMPARE(u.port, std::uint16_t(0));
        QVERIFY(!parse_remote_url("sftp://host:99999/x", u, message));
        QVERIFY(message.find("bad port") != std::string::npos);
        QVERIFY(!parse_remote_url("sftp://me:secret@host/x", u, message));
        QVERIFY(message.find("secret") == std::string::npos);  // never echo a password back
        QVERIFY(!parse_remote_url("server:/x", u, message));
    }

    void remote_url_builds_the_stack() {
        QTemporaryDir dir;
        std::unique_ptr<Backend> b;
        std::string message;
        QCOMPARE(open_remote(("file://" + dir.path() + "?latency_ms=5&rsize=65536&max_in_flight=3").toStdString(), {}, b,
                             message),
                 Errc::ok);
        QCOMPARE(b->limits().rsize, 65536u);
        QCOMPARE(b->limits().max_in_flight, 3u);
        QVERIFY(b->describe().find("5 ms latency") != std::string::npos);
        QCOMPARE(open_remote(("file://" + dir.path() + "/a%20b").toStdString(), {}, b, message), Errc::not_found);
        QVERIFY(message.find("/a b") != std::string::npos);  // percent-decoded
        QCOMPARE(open_remote("file://" + dir.path().toStdString() + "?rsize=1", {}, b, message), Errc::invalid);
        QCOMPARE(open_remote("file://elsewhere/x", {}, b, message), Errc::invalid);
        QVERIFY(message.find("not this machine") != std::string::npos);
        QCOMPARE(open_remote("file:///x%zz", {}, b, message), Errc::invalid);
    }
};

QTEST_APPLESS_MAIN(TestBackendWrappers)
#include "test_backend_wrappers.moc"
