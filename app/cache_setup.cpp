#include "app/cache_setup.h"

#include "app/keyring.h"
#include "core/log.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace netfs {

namespace {

std::string env_dir(const char* variable, const char* fallback_below_home) {
    if (const char* v = std::getenv(variable); v && *v == '/')
        return v;
    const char* home = std::getenv("HOME");
    return std::string(home && *home ? home : "/root") + "/" + fallback_below_home;
}

} // namespace

std::string cache_dir(const CacheRequest& request, const std::string& id) {
    return request.dir.empty() ? env_dir("XDG_CACHE_HOME", ".cache") + "/netfs/" + id : request.dir;
}

std::string cache_id(const std::string& remote) {
    const std::string base = remote.substr(0, remote.find('?'));
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(base.data(), base.size(), md, &len, EVP_sha256(), nullptr);
    static const char* hex = "0123456789abcdef";
    std::string id = base.substr(0, base.find("://")) + "-";
    for (int i = 0; i < 8; ++i) {
        id += hex[md[i] >> 4];
        id += hex[md[i] & 15];
    }
    return id;
}

namespace {

bool make_dirs(const std::string& path) {
    for (std::size_t i = 1; i <= path.size(); ++i)
        if (i == path.size() || path[i] == '/') {
            const std::string part = path.substr(0, i);
            if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST)
                return false;
        }
    return true;
}

bool read_secret_file(const std::string& path, std::string& out, std::string& message) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        message = "cannot read key file " + path + ": " + std::strerror(errno);
        return false;
    }
    struct stat st;
    if (::fstat(fd, &st) != 0 || (st.st_mode & 077) != 0) {
        ::close(fd);
        message = "key file " + path + " must be readable by its owner only (chmod 600 " + path + ")";
        return false;
    }
    out.clear();
    char buf[4096];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;)
        out.append(buf, std::size_t(n));
    ::close(fd);
    if (out.empty()) {
        message = "key file " + path + " is empty";
        return false;
    }
    return true;
}

// The generated secret for remotes without a key file or passphrase.
bool generated_file_secret(const std::string& path, std::string& out, std::string& message) {
    const std::string dir = path.substr(0, path.rfind('/'));
    if (!make_dirs(dir)) {
        message = "cannot create " + dir + ": " + std::strerror(errno);
        return false;
    }
    unsigned char secret[32];
    RAND_bytes(secret, sizeof secret);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    const bool ok = fd >= 0 && ::write(fd, secret, sizeof secret) == ssize_t(sizeof secret) && ::fsync(fd) == 0;
    if (fd >= 0)
        ::close(fd);
    if (!ok) {
        message = "cannot write the cache key file " + path + ": " + std::strerror(errno);
        return false;
    }
    out.assign(reinterpret_cast<const char*>(secret), sizeof secret);
    OPENSSL_cleanse(secret, sizeof secret);
    return true;
}

// The secret of a cache when the user named none: the desktop keyring's
// entry "cache-<id>", created on first use; where no keyring answers, a
// generated file $XDG_CONFIG_HOME/netfs/keys/<id>.key (0600) -- the weaker
// choice, as the key then sits on the same disk as the cache. A file made
// that way keeps being used, so the cache stays readable when a keyring
// appears later.
bool default_secret(const std::string& id, const std::string& cache_dir, bool create, std::string& out,
                    std::string& message) {
    const std::string path = env_dir("XDG_CONFIG_HOME", ".config") + "/netfs/keys/" + id + ".key";
    if (::access(path.c_str(), F_OK) == 0)
        return read_secret_file(path, out, message);
    std::string why;
    switch (keyring_secret("cache-" + id, create, out, why)) {
    case KeyringOutcome::found:
        return true;
    case KeyringOutcome::created:
        LOG_INFO("created the cache's secret in the desktop keyring (netfs, cache-%s)", id.c_str());
        return true;
    case KeyringOutcome::missing:
        message = "no secret for this cache in the desktop keyring or in " + path +
                  " (give --key-file or --ask-passphrase)";
        return false;
    case KeyringOutcome::failed:
        message = "the desktop keyring refused the cache's secret: " + why +
                  " (unlock the keyring, or give --key-file or --ask-passphrase)";
        return false;
    case KeyringOutcome::unavailable:
        break;
    }
    // An existing cache without a key file got its secret from a keyring
    // (or from the user): a new key would only lock it out.
    if (!create || ::access((cache_dir + "/cache.db").c_str(), F_OK) == 0) {
        message = "the secret of the cache in " + cache_dir + " is in the desktop keyring, which does not answer here (" +
                  why + "): mount from your desktop session, or give the --key-file or --ask-passphrase it was made with";
        return false;
    }
    LOG_INFO("no desktop keyring (%s): the cache's secret goes to %s (0600)", why.c_str(), path.c_str());
    return generated_file_secret(path, out, message);
}

} // namespace

bool ask_on_terminal(int tty, const std::string& prompt, std::string& out) {
    termios old{};
    const bool is_tty = ::tcgetattr(tty, &old) == 0;
    if (is_tty) {
        termios quiet = old;
        quiet.c_lflag &= ~tcflag_t(ECHO);
        ::tcsetattr(tty, TCSAFLUSH, &quiet);
    }
    (void)!::write(tty, prompt.data(), prompt.size());
    out.clear();
    char c;
    while (::read(tty, &c, 1) == 1 && c != '\n')
        out += c;
    if (is_tty)
        ::tcsetattr(tty, TCSAFLUSH, &old);
    (void)!::write(tty, "\n", 1);
    return !out.empty();
}

bool read_passphrase(std::string& out, std::string& error) {
    const int tty = ::open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (tty < 0) {
        error = "--ask-passphrase needs a terminal (use --key-file for unattended mounts)";
        return false;
    }
    const bool ok = ask_on_terminal(tty, "netfs cache passphrase: ", out);
    ::close(tty);
    if (!ok) {
        error = "an empty passphrase was given";
        return false;
    }
    return true;
}

Errc open_cache(const CacheRequest& request, const std::string& id, std::shared_ptr<CacheStore>& out,
                std::string& message, bool metadata_only, bool create_key) {
    CacheOptions options;
    options.metadata_only = metadata_only;
    options.owner = id;
    options.dir = cache_dir(request, id);
    if (!make_dirs(options.dir)) {
        message = "cannot create the cache directory " + options.dir + ": " + std::strerror(errno);
        return from_errno(errno);
    }
    options.granule_size = request.granule_size;
    options.size_limit = request.size_limit;
    options.free_run_percent = request.free_run_percent;
    options.free_cull_percent = request.free_cull_percent;
    options.free_stop_percent = request.free_stop_percent;
    options.codec.encrypt = request.encrypt;
    options.codec.compress = request.compress;
    if (request.encrypt && !metadata_only) {
        std::string secret;
        if (!request.key_file.empty()) {
            if (!read_secret_file(request.key_file, secret, message))
                return Errc::access;
        } else if (request.ask_passphrase) {
            secret = request.passphrase;
        } else if (!default_secret(id, options.dir, create_key, secret, message)) {
            return Errc::io;
        }
        options.secret = std::move(secret);
    }
    std::unique_ptr<CacheStore> store;
    Errc e = CacheStore::open(options, store, message);
    if (options.secret)
        OPENSSL_cleanse(options.secret->data(), options.secret->size());
    if (e != Errc::ok)
        return e;
    out = std::move(store);
    return Errc::ok;
}

} // namespace netfs
