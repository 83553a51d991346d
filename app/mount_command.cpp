#include "app/mount_command.h"

#include "app/control_server.h"
#include "app/daemon_status.h"
#include "app/fuse_adapter.h"
#include "app/runtime_dirs.h"
#include "core/backend/remote_url.h"
#include "core/log.h"
#include "sync/replica_backend.h"

#include <dirent.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

extern char** environ;

namespace netfs {

namespace {

using namespace std::chrono_literals;

// How long `netfs unmount` waits for the daemon to write back and exit.
constexpr auto kUnmountWait = 60s;
// The kernel readahead window asked for (see FuseAdapter's init()).
constexpr unsigned kReadaheadKiB = 1024;

void print_error(const std::string& message) {
    std::fprintf(stderr, "netfs: %s\n", message.c_str());
    std::fflush(stderr);
}

std::string errno_text(int err) { return std::strerror(err); }

// ---- where things live ------------------------------------------------------

std::string home_dir() {
    if (const char* home = std::getenv("HOME"); home && *home == '/')
        return home;
    if (const passwd* pw = getpwuid(getuid()); pw && pw->pw_dir)
        return pw->pw_dir;
    return "/";
}

std::string default_log_path(const std::string& mountpoint) {
    std::string state;
    if (const char* xdg = std::getenv("XDG_STATE_HOME"); xdg && *xdg == '/')
        state = xdg;
    else
        state = home_dir() + "/.local/state";
    return state + "/netfs/" + escape_path(mountpoint) + ".log";
}

std::string dirname_of(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

// Creates `dir` and its missing parents with mode 0700, and checks that the
// directory is ours alone: in /tmp anyone could have made it first.
bool make_private_dir(const std::string& dir, std::string& error) {
    for (std::size_t slash = dir.find('/', 1);; slash = dir.find('/', slash + 1)) {
        const std::string prefix = dir.substr(0, slash);
        if (mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
            error = "cannot create directory " + prefix + ": " + errno_text(errno);
            return false;
        }
        if (slash == std::string::npos)
            break;
    }
    struct stat st {};
    if (lstat(dir.c_str(), &st) != 0) {
        error = "cannot use directory " + dir + ": " + errno_text(errno);
        return false;
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
        error = dir + " is not a private directory of this user (remove it and try again)";
        return false;
    }
    return true;
}

// Absolute, with "." and ".." and symbolic links of the directories above it
// resolved, without touching `path` itself: it may be a mount whose daemon
// is gone or hangs.
std::string absolute_path(const std::string& path) {
    std::string abs = path;
    if (abs.empty() || abs[0] != '/') {
        char cwd[PATH_MAX];
        abs = std::string(getcwd(cwd, sizeof cwd) ? cwd : "/") + "/" + abs;
    }
    while (abs.size() > 1 && abs.back() == '/')
        abs.pop_back();
    const auto slash = abs.rfind('/');
    std::string parent = slash == 0 ? "/" : abs.substr(0, slash);
    std::string name = abs.substr(slash + 1);
    if (char* real = realpath(parent.c_str(), nullptr)) {
        parent = real;
        std::free(real);
    }
    if (name == "." || name == "..") {
        // Rare enough to resolve fully.
        if (char* real = realpath(abs.c_str(), nullptr)) {
            abs = real;
            std::free(real);
            return abs;
        }
    }
    return parent == "/" ? "/" + name : parent + "/" + name;
}

// ---- the mount point --------------------------------------------------------

bool is_mount_root(const std::string& path) {
    struct statx stx {};
    if (statx(AT_FDCWD, path.c_str(), AT_NO_AUTOMOUNT, STATX_BASIC_STATS, &stx) == 0 &&
        (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT))
        return (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
    // Kernels before 5.8: a mount root sits on another device than its parent.
    struct stat self {}, parent {};
    return stat(path.c_str(), &self) == 0 && stat((path + "/..").c_str(), &parent) == 0 &&
           (self.st_dev != parent.st_dev || self.st_ino == parent.st_ino);
}

bool check_mountpoint(const std::string& given, bool allow_nonempty, std::string& canonical,
                      std::string& error) {
    struct stat st {};
    if (stat(given.c_str(), &st) != 0) {
        const int err = errno;
        if (err == ENOENT)
            error = "mount point " + given + " does not exist (create it first)";
        else if (err == ENOTCONN)
            error = "mount point " + given + " is a mount whose daemon is gone (run 'netfs unmount " +
                    given + "' first)";
        else
            error = "cannot use mount point " + given + ": " + errno_text(err);
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        error = "mount point " + given + " is not a directory";
        return false;
    }
    char* real = realpath(given.c_str(), nullptr);
    if (!real) {
        error = "cannot use mount point " + given + ": " + errno_text(errno);
        return false;
    }
    canonical = real;
    std::free(real);
    if (is_mount_root(canonical)) {
        error = "mount point " + given + " is already a mount (unmount it first)";
        return false;
    }
    if (allow_nonempty)
        return true;
    DIR* dir = opendir(canonical.c_str());
    if (!dir) {
        error = "cannot read mount point " + given + ": " + errno_text(errno);
        return false;
    }
    bool empty = true;
    while (const dirent* entry = readdir(dir)) {
        if (std::strcmp(entry->d_name, ".") != 0 && std::strcmp(entry->d_name, "..") != 0) {
            empty = false;
            break;
        }
    }
    closedir(dir);
    if (!empty) {
        error = "mount point " + given + " is not empty (use -o nonempty to mount over its contents)";
        return false;
    }
    return true;
}

// ---- libfuse's messages -----------------------------------------------------

// libfuse reports mount failures through its log, not its return values: the
// last message is kept so that the one line we print can say what happened.
std::mutex g_fuse_log_mutex;
std::string g_fuse_last_message;  // guarded by g_fuse_log_mutex

void fuse_log_to_ours(enum fuse_log_level level, const char* format, va_list args) {
    char message[1024];
    std::vsnprintf(message, sizeof message, format, args);
    std::size_t length = std::strlen(message);
    while (length > 0 && (message[length - 1] == '\n' || message[length - 1] == '\r'))
        message[--length] = '\0';
    if (level <= FUSE_LOG_WARNING) {
        std::lock_guard lock(g_fuse_log_mutex);
        g_fuse_last_message = message;
    }
    // Warnings and errors during the mount become part of our error line.
    if (level <= FUSE_LOG_ERR)
        LOG_DEBUG("libfuse: %s", message);
    else if (level <= FUSE_LOG_NOTICE)
        LOG_INFO("libfuse: %s", message);
    else
        LOG_DEBUG("libfuse: %s", message);
}

void clear_fuse_message() {
    std::lock_guard lock(g_fuse_log_mutex);
    g_fuse_last_message.clear();
}

std::string fuse_message(const std::string& fallback) {
    std::lock_guard lock(g_fuse_log_mutex);
    return g_fuse_last_message.empty() ? fallback : g_fuse_last_message;
}

// Catches what a helper program (fusermount3) writes to our stderr, so that
// its complaint becomes part of our one error line instead of a line of its own.
class StderrCapture {
public:
    StderrCapture() {
        file_ = memfd_create("netfs-stderr", MFD_CLOEXEC);
        saved_ = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
        if (file_ < 0 || saved_ < 0 || dup2(file_, STDERR_FILENO) < 0)
            restore();
    }
    ~StderrCapture() { finish(); }

    // Restores stderr; returns the last line written meanwhile.
    std::string finish() {
        if (file_ < 0)
            return {};
        restore();
        std::string text;
        char buf[1024];
        ssize_t n;
        for (off_t offset = 0; (n = pread(file_, buf, sizeof buf, offset)) > 0; offset += n)
            text.append(buf, static_cast<std::size_t>(n));
        close(file_);
        file_ = -1;
        while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
            text.pop_back();
        const auto newline = text.rfind('\n');
        return newline == std::string::npos ? text : text.substr(newline + 1);
    }

private:
    void restore() {
        if (saved_ >= 0) {
            dup2(saved_, STDERR_FILENO);
            close(saved_);
            saved_ = -1;
        }
    }

    int file_ = -1;
    int saved_ = -1;
};

// libfuse splits -o lists on commas; a comma inside a value is "\,".
std::string escape_fuse_option(const std::string& value) {
    std::string out;
    for (char c : value) {
        if (c == ',' || c == '\\')
            out += '\\';
        out += c;
    }
    return out;
}

std::vector<std::string> fuse_arguments(const MountRequest& request) {
    const MountOptions& o = request.options;
    std::string list = "fsname=" + escape_fuse_option(o.fsname.empty() ? request.remote : o.fsname) +
                       ",subtype=netfs";
    if (o.allow_other)
        list += ",allow_other";
    if (o.default_permissions)
        list += ",default_permissions";
    if (o.read_only)
        list += ",ro";
    for (const auto& flag : o.mount_flags)
        list += "," + flag;
    std::vector<std::string> args = {"netfs", "-o", list};
    if (o.debug)
        args.emplace_back("-d");  // libfuse traces every request (to our log at debug level)
    return args;
}

// ---- the kernel's readahead window ------------------------------------------

// "MAJOR:MINOR" of the filesystem mounted at `mountpoint`, from mountinfo:
// stat() on the mount would wait for the FUSE loop, which has not started.
std::string device_of_mount(const std::string& mountpoint) {
    std::ifstream mountinfo("/proc/self/mountinfo");
    std::string line, device;
    while (std::getline(mountinfo, line)) {
        std::istringstream fields(line);
        std::string id, parent, dev, root, point;
        fields >> id >> parent >> dev >> root >> point;
        if (point == mountpoint)
            device = dev;  // the last one is the top of the stack
    }
    return device;
}

// The kernel never reads ahead more than the mount's bdi window, which
// starts at 128 KiB whatever max_readahead says. Root may raise it (before
// the INIT reply, which takes the smaller of the two).
void raise_readahead(const std::string& mountpoint) {
    const std::string device = device_of_mount(mountpoint);
    const std::string knob = "/sys/class/bdi/" + device + "/read_ahead_kb";
    if (device.empty())
        return;
    if (geteuid() == 0) {
        std::ofstream out(knob);
        out << kReadaheadKiB << "\n";
        out.flush();
        if (!out)
            LOG_WARN("could not raise the kernel readahead window (%s) to %u KiB", knob.c_str(), kReadaheadKiB);
    }
    std::ifstream in(knob);
    unsigned kib = 0;
    if (in >> kib)
        LOG_INFO("kernel readahead window: %u KiB (%s)%s", kib, knob.c_str(),
                 kib < kReadaheadKiB && geteuid() != 0 ? "; only root can raise it" : "");
}

// ---- pid file and exit status -----------------------------------------------

bool write_file(const std::string& path, const std::string& text, std::string& error) {
    const std::string temp = path + ".tmp";
    const int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        error = "cannot write " + temp + ": " + errno_text(errno);
        return false;
    }
    const bool written = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    const int err = errno;
    close(fd);
    if (!written || rename(temp.c_str(), path.c_str()) != 0) {
        error = "cannot write " + path + ": " + errno_text(written ? errno : err);
        unlink(temp.c_str());
        return false;
    }
    return true;
}

// Next to the pid file: what the daemon could not write back, for unmount to report.
std::string failure_path(const std::string& pid_path) {
    return pid_path.substr(0, pid_path.size() - 4) + ".failed";
}

// ---- the report pipe --------------------------------------------------------

// How the daemon tells the waiting parent that the mount is up or why it
// failed. Without a parent (--foreground), failures go straight to stderr.
class Report {
public:
    explicit Report(int fd) : fd_(fd) {}
    ~Report() { close_pipe(); }

    // Returns the exit code of a failed mount.
    int fail(const std::string& message) {
        if (fd_ < 0) {
            print_error(message);
            return 1;
        }
        if (logging_)
            LOG_ERROR("%s", message.c_str());
        send("E" + message + "\n");
        return 1;
    }

    // From now on failures also go to the log (it is a file, not the terminal).
    void log_failures() { logging_ = true; }

    void mounted() {
        if (fd_ >= 0)
            send("M\n");
    }

private:
    void send(const std::string& line) {
        for (std::size_t done = 0; done < line.size();) {
            const ssize_t n = write(fd_, line.data() + done, line.size() - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            done += static_cast<std::size_t>(n);
        }
        close_pipe();
    }
    void close_pipe() {
        if (fd_ >= 0)
            close(fd_);
        fd_ = -1;
    }

    int fd_;
    bool logging_ = false;
};

int wait_for_daemon(pid_t child, int fd, const std::string& log_path) {
    std::string reply;
    char buf[512];
    while (reply.find('\n') == std::string::npos) {
        const ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        reply.append(buf, static_cast<std::size_t>(n));
    }
    close(fd);
    if (reply == "M\n")
        return 0;
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    if (!reply.empty() && reply[0] == 'E') {
        print_error(reply.substr(1, reply.find('\n') - 1));
        return 1;
    }
    if (WIFSIGNALED(status))
        print_error("the mount daemon was killed by signal " + std::to_string(WTERMSIG(status)) +
                    " before mounting (see " + log_path + ")");
    else
        print_error("the mount daemon exited with status " + std::to_string(WEXITSTATUS(status)) +
                    " before mounting (see " + log_path + ")");
    return 1;
}

int thread_count() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("Threads:", 0) == 0)
            return std::atoi(line.c_str() + 8);
    return 1;
}

// ---- the daemon -------------------------------------------------------------

struct Paths {
    std::string mountpoint;  // canonical
    std::string log;
    std::string pid;
};

// The engine's last writeback. What fails here is lost: say so loudly, in
// the log and to `netfs unmount` (through a file next to the pid file).
Errc write_back(Engine& engine, const MountRequest& request, const Paths& paths) {
    const unsigned long long dirty = engine.stats().dirty_bytes;
    LOG_INFO("writing back %llu dirty bytes to %s", dirty, request.remote.c_str());
    const Errc e = engine.shutdown();
    if (e == Errc::ok)
        return e;
    const unsigned long long lost = engine.stats().dirty_bytes;
    const std::string what = "writeback to " + request.remote + " failed (" + std::string(describe(e)) +
                             "): " + std::to_string(lost) + " bytes written through " + paths.mountpoint +
                             " are lost (see " + paths.log + ")";
    LOG_ERROR("%s", what.c_str());
    std::string ignored;
    write_file(failure_path(paths.pid), what + "\n", ignored);
    return e;
}

int serve(const MountRequest& request, const Paths& paths, Report& report, bool daemon) {
    const MountOptions& options = request.options;
    if (options.debug)
        set_log_level(LogLevel::debug);
    fuse_set_log_func(fuse_log_to_ours);

    int log_fd = -1;
    if (daemon || !request.log_file.empty()) {  // an explicit --log-file wins in the foreground too
        std::string error;
        if (request.log_file.empty() && !make_private_dir(dirname_of(paths.log), error))
            return report.fail(error);
        log_fd = open(paths.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (log_fd < 0)
            return report.fail("cannot open log file " + paths.log + ": " + errno_text(errno));
        set_log_file(fdopen(fcntl(log_fd, F_DUPFD_CLOEXEC, 3), "a"));
        if (daemon)
            report.log_failures();
    } else {
        // Logs go to the terminal through their own descriptor, so that they
        // never mix with a helper's output caught on fd 2 (StderrCapture).
        set_log_file(fdopen(fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3), "w"));
    }
    LOG_INFO("mounting %s on %s", request.remote.c_str(), paths.mountpoint.c_str());

    std::string error;
    const std::string pid_dir = dirname_of(paths.pid);
    if (!make_private_dir(pid_dir, error))
        return report.fail(error);

    std::unique_ptr<Backend> backend;
    std::string message;
    // A key's passphrase or a password is asked on the terminal the mount
    // was started from: opened before the daemon left it (setsid), closed
    // once the remote is open, so the daemon never holds a terminal.
    RemoteOptions remote_options = options.remote;
    const int tty = request.terminal;
    if (tty >= 0)
        remote_options.ask_secret = [tty](const std::string& prompt, std::string& answer) {
            return ask_on_terminal(tty, prompt, answer);
        };
    const Errc opened = open_remote(request.remote, remote_options, backend, message);
    if (tty >= 0)
        close(tty);
    EngineOptions engine_opts = engine_options(options, geteuid() == 0);
    if (!request.remote.starts_with("file:"))  // a network remote: ride out a reconnect, never hang
        engine_opts.retry_timeout =
            std::chrono::milliseconds(static_cast<std::int64_t>(options.remote.op_timeout * 1000));
    const std::string remote_error =
        message.empty() ? request.remote + ": " + std::string(describe(opened)) : message;
    // Wrong credentials, an unknown host key, a missing path: said first.
    // Only a server out of reach may leave the mount to the cache.
    if (opened != Errc::ok && !is_transient(opened))
        return report.fail(remote_error);
    std::shared_ptr<Replica> replica;
    if (request.cache.enabled) {
        std::string cache_message;
        if (Errc e = open_cache(request.cache, cache_id(request.remote), engine_opts.cache, cache_message);
            e != Errc::ok)
            return report.fail(opened != Errc::ok ? remote_error : cache_message);
        replica = Replica::open(cache_dir(request.cache, cache_id(request.remote)) + "/cache.db", cache_message);
        if (!replica)
            return report.fail(opened != Errc::ok ? remote_error : cache_message);
    }
    // A server that cannot be reached is no reason to refuse the mount when
    // the replica knows the tree: it starts disconnected and connects later.
    const bool start_disconnected =
        opened != Errc::ok && is_transient(opened) && replica && replica->name("/").has_value();
    if (opened != Errc::ok && !start_disconnected)
        return report.fail(remote_error);
    if (start_disconnected)
        LOG_WARN("%s; starting disconnected: cached files are readable, changes are kept and sent later",
                 message.c_str());
    ReplicaBackend* sync = nullptr;
    if (replica) {
        RemoteOptions reconnect_options = options.remote;
        reconnect_options.ask_secret = nullptr;  // nobody to ask any more
        auto connect = [url = request.remote, reconnect_options](std::unique_ptr<Backend>& out, std::string& why) {
            return open_remote(url, reconnect_options, out, why);
        };
        char host[256] = "";
        gethostname(host, sizeof host - 1);
        const std::string description = backend ? backend->describe() : request.remote;
        auto wrapped = std::make_unique<ReplicaBackend>(std::move(backend), connect, replica, engine_opts.cache,
                                                        description, host);
        sync = wrapped.get();
        backend = std::move(wrapped);
    }
    auto engine = std::make_unique<Engine>(std::move(backend), engine_opts);
    if (Errc e = engine->start(); e != Errc::ok)
        return report.fail(request.remote + ": " + std::string(describe(e)));
    if (sync)
        sync->start(std::chrono::milliseconds(static_cast<std::int64_t>(options.pin_refresh * 1000)));
    auto adapter = std::make_unique<FuseAdapter>(*engine, options);
    if (sync && options.state_xattr)
        adapter->set_state_reader(
            [sync](const std::string& path, std::string& state) { return sync->file_state(path, state); });

    const std::vector<std::string> arguments = fuse_arguments(request);
    std::vector<char*> argv;
    for (const auto& a : arguments)
        argv.push_back(const_cast<char*>(a.c_str()));
    clear_fuse_message();
    fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
    fuse_session* session =
        fuse_session_new(&args, &FuseAdapter::operations(), sizeof(fuse_lowlevel_ops), adapter.get());
    fuse_opt_free_args(&args);
    if (!session)
        return report.fail("cannot start a FUSE session: " + fuse_message("libfuse refused the options"));
    if (fuse_set_signal_handlers(session) != 0) {
        fuse_session_destroy(session);
        return report.fail("cannot install signal handlers");
    }
    clear_fuse_message();
    StderrCapture fusermount_output;  // without root, libfuse mounts through fusermount3
    const bool mounted = fuse_session_mount(session, paths.mountpoint.c_str()) == 0;
    const std::string helper_message = fusermount_output.finish();
    if (!mounted) {
        fuse_remove_signal_handlers(session);
        fuse_session_destroy(session);
        return report.fail("cannot mount " + request.remote + " on " + paths.mountpoint + ": " +
                           (helper_message.empty() ? fuse_message("mount failed") : helper_message));
    }
    if (!helper_message.empty())
        LOG_WARN("%s", helper_message.c_str());
    adapter->attach(session);
    raise_readahead(paths.mountpoint);

    unlink(failure_path(paths.pid).c_str());
    if (!write_file(paths.pid, std::to_string(getpid()) + "\n" + paths.log + "\n", error)) {
        adapter->detach();
        fuse_session_unmount(session);
        fuse_remove_signal_handlers(session);
        fuse_session_destroy(session);
        return report.fail(error);
    }
    LOG_INFO("mounted %s on %s (pid %d)", request.remote.c_str(), paths.mountpoint.c_str(), getpid());
    report.mounted();
    if (daemon) {
        const int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        dup2(null_fd, STDIN_FILENO);
        dup2(null_fd, STDOUT_FILENO);
        // Whatever still writes to stderr (a crash, a helper program) lands in the log.
        dup2(log_fd, STDERR_FILENO);
        close(null_fd);
        close(log_fd);
        // Never hold on to the directory we were started in.
        if (chdir("/") != 0)
            LOG_WARN("cannot change to /: %s", errno_text(errno).c_str());
    }
    // The control API: `netfs status`, the tray.
    DaemonInfo info{paths.mountpoint, request.remote, request.cache.enabled ? cache_dir(request.cache, cache_id(request.remote)) : std::string(),
                    engine.get(), engine_opts.cache, sync};
    ControlServer control;
    if (std::string control_error; !control.start(
            control_socket_path(paths.mountpoint),
            [&info](const std::string& line) { return answer_control_request(info, line); }, control_error))
        LOG_WARN("no control API for this mount (netfs status will not see it): %s", control_error.c_str());

    // Modes of new files arrive from the kernel with the caller's umask applied.
    umask(0);

    fuse_loop_config* loop = fuse_loop_cfg_create();
    fuse_loop_cfg_set_clone_fd(loop, 1);  // one /dev/fuse descriptor per thread: no contention on reads
    const int loop_result = fuse_session_loop_mt(session, loop);
    fuse_loop_cfg_destroy(loop);
    if (loop_result > 0)
        LOG_INFO("signal %d: unmounting %s", loop_result, paths.mountpoint.c_str());
    else if (loop_result < 0)
        LOG_ERROR("the FUSE loop failed: %s", errno_text(-loop_result).c_str());

    // The signal handlers stay until the writeback is done: a second Ctrl-C
    // or SIGTERM must not throw away data the kernel was told is written.
    if (sync)
        sync->stop();  // no reintegration during the final writeback; `netfs sync` callers are answered
    control.stop();
    const Errc shutdown_error = write_back(*engine, request, paths);
    // The engine drains its I/O pool (and any queued kernel invalidation)
    // while the session still exists.
    adapter.reset();
    engine.reset();
    fuse_session_unmount(session);
    fuse_remove_signal_handlers(session);
    fuse_session_destroy(session);
    unlink(paths.pid.c_str());
    LOG_INFO("unmounted %s", paths.mountpoint.c_str());
    return shutdown_error == Errc::ok ? 0 : 1;
}

// ---- unmount ----------------------------------------------------------------

// Runs `fusermount3 -u mountpoint` without a shell; its error line, if any,
// becomes part of ours.
bool run_fusermount(const std::string& mountpoint, std::string& error) {
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
        error = "cannot run fusermount3: " + errno_text(errno);
        return false;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
    const char* argv[] = {"fusermount3", "-u", mountpoint.c_str(), nullptr};
    pid_t pid = 0;
    const int spawn_error =
        posix_spawnp(&pid, "fusermount3", &actions, nullptr, const_cast<char* const*>(argv), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(pipe_fds[1]);
    if (spawn_error != 0) {
        close(pipe_fds[0]);
        error = "cannot run fusermount3: " + errno_text(spawn_error) + " (is fuse3 installed?)";
        return false;
    }
    std::string output;
    char buf[512];
    for (;;) {
        const ssize_t n = read(pipe_fds[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        output.append(buf, static_cast<std::size_t>(n));
    }
    close(pipe_fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return true;
    while (!output.empty() && (output.back() == '\n' || output.back() == ' '))
        output.pop_back();
    if (const auto newline = output.rfind('\n'); newline != std::string::npos)
        output = output.substr(newline + 1);  // the last line says why
    error = "cannot unmount " + mountpoint + ": " + (output.empty() ? "fusermount3 failed" : output);
    return false;
}

// Alive and still a netfs: after a crash the pid may belong to someone else.
bool daemon_alive(pid_t pid) {
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return false;
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    if (std::getline(comm, name) && name != "netfs")
        return false;
    // A zombie has exited: it only waits for its parent to notice.
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line))
        return false;
    const auto paren = line.rfind(')');
    return paren == std::string::npos || paren + 2 >= line.size() || line[paren + 2] != 'Z';
}

} // namespace

std::string runtime_dir() { return runtime_dirs().front(); }

std::string escape_path(std::string_view path) {
    while (!path.empty() && path.front() == '/')
        path.remove_prefix(1);
    while (!path.empty() && path.back() == '/')
        path.remove_suffix(1);
    if (path.empty())
        return "-";
    std::string out;
    for (std::size_t i = 0; i < path.size(); ++i) {
        const unsigned char c = static_cast<unsigned char>(path[i]);
        if (c == '/') {
            if (path[i - 1] != '/')
                out += '-';
        } else if (std::isalnum(c) || c == '_' || c == ':' || (c == '.' && i != 0)) {
            out += static_cast<char>(c);
        } else {
            char hex[5];
            std::snprintf(hex, sizeof hex, "\\x%02x", c);
            out += hex;
        }
    }
    return out;
}

int run_mount(const MountRequest& request) {
    Paths paths;
    std::string error;
    if (!check_mountpoint(request.mountpoint, request.options.nonempty, paths.mountpoint, error)) {
        print_error(error);
        return 1;
    }
    paths.log = request.log_file.empty() ? default_log_path(paths.mountpoint) : absolute_path(request.log_file);
    paths.pid = runtime_dir() + "/" + escape_path(paths.mountpoint) + ".pid";

    MountRequest with_terminal = request;
    with_terminal.terminal = ::open("/dev/tty", O_RDWR | O_CLOEXEC);  // -1: nobody to ask
    if (request.foreground) {
        Report report(-1);
        return serve(with_terminal, paths, report, false);
    }

    // [!] Nothing before this point may start a thread: the child would
    // inherit its memory (locks included) but not the thread.
    if (const int threads = thread_count(); threads != 1) {
        print_error("internal error: " + std::to_string(threads) + " threads before fork (use --foreground)");
        return 1;
    }
    int report_pipe[2];
    if (pipe2(report_pipe, O_CLOEXEC) != 0) {
        print_error("cannot create a pipe: " + errno_text(errno));
        return 1;
    }
    std::fflush(stdout);
    std::fflush(stderr);
    const pid_t child = fork();
    if (child < 0) {
        print_error("cannot start the mount daemon: " + errno_text(errno));
        return 1;
    }
    if (child > 0) {
        close(report_pipe[1]);
        if (with_terminal.terminal >= 0)
            close(with_terminal.terminal);  // the daemon asks, if anyone does
        return wait_for_daemon(child, report_pipe[0], paths.log);
    }
    close(report_pipe[0]);
    setsid();
    Report report(report_pipe[1]);
    return serve(with_terminal, paths, report, true);
}

int run_unmount(const std::string& given) {
    const std::string mountpoint = absolute_path(given);
    const std::string name = escape_path(mountpoint) + ".pid";
    // The pid file: the daemon's pid, then its log file.
    std::string pid_path, log_path = default_log_path(mountpoint);
    pid_t pid = 0;
    for (const auto& dir : runtime_dirs()) {
        std::ifstream in(dir + "/" + name);
        if (in >> pid && pid > 0) {
            pid_path = dir + "/" + name;
            in >> std::ws;
            std::getline(in, log_path);
            break;
        }
        pid = 0;
    }

    // From mountinfo: asking the mount itself could hang on a stuck daemon.
    if (device_of_mount(mountpoint).empty()) {
        print_error(mountpoint + " is not mounted");
        return 1;
    }
    std::string error;
    if (!run_fusermount(mountpoint, error)) {
        print_error(error);
        return 1;
    }
    if (pid == 0)
        return 0;  // not mounted by us, or by a netfs too old to say: nothing to wait for

    const std::string failed = failure_path(pid_path);
    const auto deadline = std::chrono::steady_clock::now() + kUnmountWait;
    for (;;) {
        if (access(pid_path.c_str(), F_OK) != 0)
            break;  // the daemon has finished its writeback
        if (!daemon_alive(pid)) {
            // It may have removed its pid file and exited since we looked.
            if (access(pid_path.c_str(), F_OK) != 0)
                break;
            unlink(pid_path.c_str());
            print_error("the daemon of " + mountpoint + " (pid " + std::to_string(pid) +
                        ") died before writing back: data written shortly before may be lost (see " +
                        log_path + ")");
            return 1;
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            print_error(mountpoint + " is unmounted, but its daemon (pid " + std::to_string(pid) +
                        ") is still writing back after 60 s (see " + log_path + ")");
            return 1;
        }
        std::this_thread::sleep_for(50ms);
    }
    std::ifstream failure(failed);
    std::string line;
    if (std::getline(failure, line)) {
        unlink(failed.c_str());
        print_error(line);
        return 1;
    }
    return 0;
}

} // namespace netfs
