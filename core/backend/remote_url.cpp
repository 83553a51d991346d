#include "core/backend/remote_url.h"

#include "core/backend/faulty_backend.h"
#include "core/backend/file_backend.h"
#include "core/backend/nfs_backend.h"
#include "core/backend/sftp_backend.h"
#include "core/backend/shaped_backend.h"

#include <charconv>
#include <map>

namespace netfs {

namespace {

constexpr std::string_view kUsage = "use file:///path, sftp://[user@]host/path or nfs://host/export";

int hex_value(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

// Percent-decoding; false on a malformed escape or an embedded NUL.
bool percent_decode(std::string_view in, std::string& out) {
    out.clear();
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] != '%') {
            out += in[i];
            continue;
        }
        const int hi = i + 1 < in.size() ? hex_value(in[i + 1]) : -1;
        const int lo = i + 2 < in.size() ? hex_value(in[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            return false;
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
    }
    return true;
}

bool parse_u64(std::string_view text, std::uint64_t& out) {
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return !text.empty() && ec == std::errc() && end == text.data() + text.size();
}

Errc fail(Errc e, std::string& message, std::string text) {
    message = std::move(text);
    return e;
}

} // namespace

bool parse_remote_url(std::string_view url, RemoteUrl& out, std::string& message) {
    out = RemoteUrl{};
    out.shown = std::string(url);
    const std::string& shown = out.shown;
    const auto scheme_end = url.find("://");
    if (scheme_end == std::string_view::npos || scheme_end == 0) {
        message = "'" + shown + "' is not a remote URL: " + std::string(kUsage);
        return false;
    }
    out.scheme = std::string(url.substr(0, scheme_end));
    std::string_view rest = url.substr(scheme_end + 3);
    if (const auto q = rest.find('?'); q != std::string_view::npos) {
        std::string_view query = rest.substr(q + 1);
        rest = rest.substr(0, q);
        while (!query.empty()) {
            const auto amp = query.find('&');
            const std::string_view item = query.substr(0, amp);
            query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
            if (item.empty())
                continue;
            const auto eq = item.find('=');
            std::string key, value;
            if (!percent_decode(item.substr(0, eq), key) || eq == std::string_view::npos ||
                !percent_decode(item.substr(eq + 1), value)) {
                message = "'" + shown + "': option '" + key + "' needs a value (" + key + "=...)";
                return false;
            }
            out.query[key] = value;
        }
    }
    const auto slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
        if (!percent_decode(authority.substr(0, at), out.user) || out.user.empty() ||
            out.user.find(':') != std::string::npos) {
            // Not echoed: what follows a ':' there may be a password.
            message = out.scheme + "://: bad user name in the URL (a password never goes in the URL; "
                                   "use ssh-agent or -o identity=FILE)";
            return false;
        }
        authority = authority.substr(at + 1);
    }
    std::string_view host = authority, port;
    bool has_port = false;
    if (authority.starts_with('[')) {  // [::1]:22
        const auto close = authority.find(']');
        if (close == std::string_view::npos) {
            message = "'" + shown + "': unterminated [ in the host";
            return false;
        }
        host = authority.substr(1, close - 1);
        const std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after[0] != ':') {
                message = "'" + shown + "': unexpected text after the host";
                return false;
            }
            port = after.substr(1);
            has_port = true;
        }
    } else if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
        host = authority.substr(0, colon);
        port = authority.substr(colon + 1);
        has_port = true;
    }
    if (!percent_decode(host, out.host)) {
        message = "'" + shown + "': malformed %-escape in the host";
        return false;
    }
    if (has_port) {
        std::uint64_t n = 0;
        if (!parse_u64(port, n) || n == 0 || n > 65535) {
            message = "'" + shown + "': bad port '" + std::string(port) + "' (1 to 65535)";
            return false;
        }
        out.port = static_cast<std::uint16_t>(n);
    }
    if (slash == std::string_view::npos) {
        out.path = "/";
    } else if (!percent_decode(rest.substr(slash), out.path)) {
        message = "'" + shown + "': malformed %-escape in the path";
        return false;
    }
    while (out.path.size() > 1 && out.path.back() == '/')
        out.path.pop_back();
    return true;
}

Errc open_remote(std::string_view url, const RemoteOptions& options, std::unique_ptr<Backend>& out,
                 std::string& message) {
    RemoteUrl parsed;
    if (!parse_remote_url(url, parsed, message))
        return Errc::invalid;
    const std::string& shown = parsed.shown;
    if (parsed.scheme == "sftp")
        return open_sftp(parsed, options, out, message);
    if (parsed.scheme == "nfs")
        return open_nfs(parsed, options, out, message);
    if (parsed.scheme != "file")
        return fail(Errc::invalid, message,
                    "'" + shown + "': unknown scheme '" + parsed.scheme + "': " + std::string(kUsage));

    // file://host/path: only an empty host or localhost names this machine.
    if (!parsed.host.empty() && parsed.host != "localhost")
        return fail(Errc::invalid, message,
                    "'" + shown + "': a file:// URL names a local directory; host '" + parsed.host +
                        "' is not this machine (use file:///path)");
    if (!parsed.user.empty() || parsed.port != 0)
        return fail(Errc::invalid, message, "'" + shown + "': a file:// URL has no user or port (use file:///path)");
    const std::string_view location = url.substr(parsed.scheme.size() + 3);
    if (location.substr(0, location.find('?')).find('/') == std::string_view::npos)
        return fail(Errc::invalid, message, "'" + shown + "': the path must be absolute, as in file:///srv/data");
    const std::string& path = parsed.path;

    BackendLimits limits;
    std::uint64_t latency_ms = 0, bandwidth_mbs = 0;
    std::string faults;
    for (const auto& [key, value] : parsed.query) {
        std::uint64_t n = 0;
        auto number = [&](std::uint64_t lo, std::uint64_t hi) {
            return parse_u64(value, n) && n >= lo && n <= hi;
        };
        auto bad = [&](const std::string& range) {
            return fail(Errc::invalid, message,
                        "bad value '" + value + "' for option '" + key + "' in file:// URL (" + range + ")");
        };
        if (key == "latency_ms") {
            if (!number(0, 60000))
                return bad("milliseconds, 0 to 60000");
            latency_ms = n;
        } else if (key == "bandwidth_mbs") {
            if (!number(1, 1000000))
                return bad("MB/s, 1 to 1000000");
            bandwidth_mbs = n;
        } else if (key == "faults") {
            if (value.empty() || value[0] != '/')
                return bad("an absolute path to a rules file");
            faults = value;
        } else if (key == "rsize" || key == "wsize") {
            if (!number(4096, 4u << 20))
                return bad("bytes, 4096 to 4194304");
            auto& size = key == "rsize" ? limits.rsize : limits.wsize;
            auto& max = key == "rsize" ? limits.rsize_max : limits.wsize_max;
            size = static_cast<std::uint32_t>(n);
            max = std::max<std::uint32_t>(max, size);
        } else if (key == "max_in_flight") {
            if (!number(1, 256))
                return bad("1 to 256");
            limits.max_in_flight = static_cast<std::uint32_t>(n);
        } else {
            return fail(Errc::invalid, message,
                        "unknown option '" + key +
                            "' in file:// URL (known: latency_ms, bandwidth_mbs, faults, rsize, wsize, max_in_flight)");
        }
    }

    std::unique_ptr<FileBackend> file;
    Errc e = FileBackend::make(path, limits, file);
    if (e == Errc::not_found)
        return fail(e, message, "file://" + path + ": no such directory (check the path)");
    if (e == Errc::not_dir)
        return fail(e, message, "file://" + path + ": not a directory");
    if (e == Errc::access || e == Errc::perm)
        return fail(e, message, "file://" + path + ": permission denied (the directory must be readable and searchable)");
    if (e != Errc::ok)
        return fail(e, message, "file://" + path + ": " + std::string(describe(e)));

    std::unique_ptr<Backend> stack = std::move(file);
    if (latency_ms || bandwidth_mbs)
        stack = std::make_unique<ShapedBackend>(std::move(stack), std::chrono::milliseconds(latency_ms),
                                                bandwidth_mbs * 1000000);
    if (!faults.empty())
        stack = std::make_unique<FaultyBackend>(std::move(stack), faults);
    out = std::move(stack);
    return Errc::ok;
}

} // namespace netfs
