// The -o list of netfs mount: each option's value, the exact error lines,
// the generic options mount(8) and fstab pass, and what the engine gets.
#include "app/mount_command.h"
#include "app/mount_options.h"

#include <QTest>

using netfs::MountOptions;

namespace {

MountOptions parsed(std::string_view list) {
    MountOptions options;
    std::string error;
    if (!netfs::parse_mount_options(list, options, error))
        qFatal("'%s' did not parse: %s", std::string(list).c_str(), error.c_str());
    return options;
}

std::string error_of(std::string_view list) {
    MountOptions options;
    std::string error;
    if (netfs::parse_mount_options(list, options, error))
        return "(parsed)";
    return error;
}

} // namespace

class TestMountOptions : public QObject {
    Q_OBJECT
private slots:
    void defaults() {
        const MountOptions o;
        QVERIFY(!o.allow_other && !o.default_permissions && !o.read_only && !o.direct_io);
        QVERIFY(!o.writeback_cache && !o.nonempty && !o.debug);
        QVERIFY(!o.uid && !o.gid);
        QCOMPARE(o.umask, 0u);
        QCOMPARE(o.readahead, 8ull << 20);
        QCOMPARE(o.memory, 256ull << 20);
        QCOMPARE(o.attr_timeout, 1.0);
        QCOMPARE(o.entry_timeout, 1.0);
        QVERIFY(o.fsname.empty());
    }

    void flags() {
        QVERIFY(parsed("allow_other").allow_other);
        QVERIFY(parsed("default_permissions").default_permissions);
        QVERIFY(parsed("ro").read_only);
        QVERIFY(!parsed("ro,rw").read_only);  // the last one wins
        QVERIFY(parsed("rw,ro").read_only);
        QVERIFY(parsed("direct_io").direct_io);
        QVERIFY(parsed("writeback_cache").writeback_cache);
        QVERIFY(parsed("nonempty").nonempty);
        QVERIFY(parsed("debug").debug);
    }

    void values() {
        const MountOptions o = parsed("uid=1000,gid=100,umask=022,attr_timeout=2.5,entry_timeout=0,"
                                      "readahead=4M,memory=1G,fsname=data");
        QCOMPARE(o.uid.value(), 1000u);
        QCOMPARE(o.gid.value(), 100u);
        QCOMPARE(o.umask, 022u);
        QCOMPARE(o.attr_timeout, 2.5);
        QCOMPARE(o.entry_timeout, 0.0);
        QCOMPARE(o.readahead, 4ull << 20);
        QCOMPARE(o.memory, 1ull << 30);
        QCOMPARE(o.fsname, std::string("data"));
        QCOMPARE(parsed("uid=0").uid.value(), 0u);
        QCOMPARE(parsed("umask=0").umask, 0u);
        QCOMPARE(parsed("umask=777").umask, 0777u);
        QCOMPARE(parsed("readahead=0").readahead, 0ull);
    }

    void sizes() {
        std::uint64_t bytes = 0;
        QVERIFY(netfs::parse_size("123", bytes));
        QCOMPARE(bytes, 123ull);
        QVERIFY(netfs::parse_size("64K", bytes));
        QCOMPARE(bytes, 64ull << 10);
        QVERIFY(netfs::parse_size("64k", bytes));
        QCOMPARE(bytes, 64ull << 10);
        QVERIFY(netfs::parse_size("8M", bytes));
        QCOMPARE(bytes, 8ull << 20);
        QVERIFY(netfs::parse_size("2g", bytes));
        QCOMPARE(bytes, 2ull << 30);
        for (const char* bad : {"", "M", "8X", "8MB", "-1", "1.5M", " 8M", "8 M", "99999999999999999999",
                                "17179869184G"})
            QVERIFY2(!netfs::parse_size(bad, bytes), bad);
    }

    void several_lists_accumulate() {
        MountOptions o;
        std::string error;
        QVERIFY(netfs::parse_mount_options("ro,uid=5", o, error));
        QVERIFY(netfs::parse_mount_options("gid=6", o, error));
        QVERIFY(o.read_only);
        QCOMPARE(o.uid.value(), 5u);
        QCOMPARE(o.gid.value(), 6u);
        // A bad list changes nothing, not even the options before the bad one.
        QVERIFY(!netfs::parse_mount_options("rw,uid=x", o, error));
        QVERIFY(o.read_only);
        QCOMPARE(o.uid.value(), 5u);
    }

    void escaped_comma_in_a_value() {
        QCOMPARE(parsed("fsname=a\\,b,ro").fsname, std::string("a,b"));
        QVERIFY(parsed("fsname=a\\,b,ro").read_only);
    }

    void empty_items_are_harmless() {
        QVERIFY(parsed("ro,,allow_other,").allow_other);
        QVERIFY(!parsed("").read_only);
    }

    void unknown_options() {
        QCOMPARE(error_of("foo"), std::string("unknown mount option 'foo' (see netfs mount --help)"));
        QCOMPARE(error_of("ro,foo=1"), std::string("unknown mount option 'foo' (see netfs mount --help)"));
        // What we could not honour is refused, not ignored.
        QCOMPARE(error_of("sync"), std::string("unknown mount option 'sync' (see netfs mount --help)"));
        QCOMPARE(error_of("max_read=4096"),
                 std::string("unknown mount option 'max_read' (see netfs mount --help)"));
    }

    void bad_values() {
        QCOMPARE(error_of("uid=x"), std::string("bad value 'x' for mount option 'uid'"));
        QCOMPARE(error_of("uid="), std::string("bad value '' for mount option 'uid'"));
        QCOMPARE(error_of("uid"), std::string("bad value '' for mount option 'uid'"));
        QCOMPARE(error_of("uid=-1"), std::string("bad value '-1' for mount option 'uid'"));
        QCOMPARE(error_of("uid=4294967295"), std::string("bad value '4294967295' for mount option 'uid'"));
        QCOMPARE(error_of("gid=1e3"), std::string("bad value '1e3' for mount option 'gid'"));
        QCOMPARE(error_of("ro=1"), std::string("bad value '1' for mount option 'ro'"));
        QCOMPARE(error_of("nosuid=yes"), std::string("bad value 'yes' for mount option 'nosuid'"));
        QCOMPARE(error_of("defaults=1"), std::string("bad value '1' for mount option 'defaults'"));
        QCOMPARE(error_of("fsname="), std::string("bad value '' for mount option 'fsname'"));
        QCOMPARE(error_of("umask=999"),
                 std::string("bad value '999' for mount option 'umask' (an octal number up to 777)"));
        QCOMPARE(error_of("umask=1000"),
                 std::string("bad value '1000' for mount option 'umask' (an octal number up to 777)"));
        QCOMPARE(error_of("attr_timeout=-1"),
                 std::string("bad value '-1' for mount option 'attr_timeout' (seconds, e.g. 1 or 0.5)"));
        QCOMPARE(error_of("entry_timeout=nan"),
                 std::string("bad value 'nan' for mount option 'entry_timeout' (seconds, e.g. 1 or 0.5)"));
        QCOMPARE(error_of("readahead=8X"),
                 std::string("bad value '8X' for mount option 'readahead' (a size such as 8M)"));
        QCOMPARE(error_of("memory=lots"),
                 std::string("bad value 'lots' for mount option 'memory' (a size such as 256M)"));
        QCOMPARE(error_of("memory=1M"), std::string("bad value '1M' for mount option 'memory' (at least 4M)"));
    }

    // What mount(8), mount.fuse3, fstab and systemd add: no effect, no error.
    void generic_options_are_ignored() {
        const MountOptions o = parsed("rw,defaults,auto,noauto,user,users,nouser,owner,group,_netdev,nofail,"
                                      "relatime,atime,strictatime,exec,suid,dev,async,"
                                      "x-systemd.automount,x-gvfs-show,comment=systemd.automount");
        QVERIFY(!o.read_only);
        QVERIFY(o.mount_flags.empty());
        QCOMPARE(o.readahead, MountOptions().readahead);
    }

    // Kernel mount flags we can honour go to the kernel as given.
    void kernel_mount_flags_pass_through() {
        const MountOptions o = parsed("nosuid,nodev,noexec,noatime");
        QCOMPARE(o.mount_flags, (std::vector<std::string>{"nosuid", "nodev", "noexec", "noatime"}));
    }

    void engine_options() {
        const MountOptions o = parsed("ro,direct_io,attr_timeout=0.25,entry_timeout=3,dir_cache_time=5,"
                                      "readahead=2M,memory=64M,allow_other");
        const netfs::EngineOptions e = netfs::engine_options(o, false);
        QVERIFY(e.read_only);
        QVERIFY(e.direct_io);
        QCOMPARE(e.attr_timeout, std::chrono::milliseconds(250));
        QCOMPARE(e.entry_timeout, std::chrono::milliseconds(3000));
        QCOMPARE(e.dir_cache_time, std::chrono::milliseconds(5000));
        QCOMPARE(netfs::engine_options(parsed(""), false).dir_cache_time, std::chrono::milliseconds(30000));
        QCOMPARE(e.readahead_max, 2ull << 20);
        QCOMPARE(e.folio_budget, 64ull << 20);
        QVERIFY(!e.set_owner);  // only a root daemon can chown
        QVERIFY(netfs::engine_options(o, true).set_owner);
        QVERIFY(!netfs::engine_options(parsed("ro"), true).set_owner);  // no other users: nothing to chown
    }

    void mountpoint_escaping() {
        QCOMPARE(netfs::escape_path("/tmp/mnt"), std::string("tmp-mnt"));
        QCOMPARE(netfs::escape_path("/"), std::string("-"));
        QCOMPARE(netfs::escape_path("/mnt/my data/"), std::string("mnt-my\\x20data"));
        QCOMPARE(netfs::escape_path("/a-b/.c"), std::string("a\\x2db-.c"));
        QCOMPARE(netfs::escape_path("/.hidden"), std::string("\\x2ehidden"));
    }
};

QTEST_APPLESS_MAIN(TestMountOptions)
#include "test_mount_options.moc"
