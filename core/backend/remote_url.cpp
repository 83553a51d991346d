#include "core/backend/remote_url.h"

#include "core/backend/faulty_backend.h"
#include "core/backend/file_backend.h"
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

Errc open_remote(std::string_view url, std::unique_ptr<Backend>& out, std::string& message) {
    const std::string shown(url);
    const auto scheme_end = url.find("://");
    if (scheme_end == std::string_view::npos || scheme_end == 0)
        return fail(Errc::invalid, message, "'" + shown + "' is not a remote URL: " + std::string(kUsage));
    const std::string_view scheme = url.substr(0, scheme_end);
    if (scheme == "sftp" || scheme == "nfs")
        return fail(Errc::not_supported, message,
                    std::string(scheme) + ":// remotes are not supported by this build yet (file:// is)");
    if (scheme != "file")
        return fail(Errc::invalid, message,
                    "'" + shown + "': unknown scheme '" + std::string(scheme) + "': " + std::string(kUsage));

    std::string_view rest = url.substr(scheme_end + 3);
    std::string_view query;
    if (const auto q = rest.find('?'); q != std::string_view::npos) {
        query = rest.substr(q + 1);
        rest = rest.substr(0, q);
    }
    // file://host/path: only an empty host or localhost names this machine.
    const auto slash = rest.find('/');
    const std::string_view host = rest.substr(0, slash);
    if (!host.empty() && host != "localhost")
        return fail(Errc::invalid, message,
                    "'" + shown + "': a file:// URL names a local directory; host '" + std::string(host) +
                        "' is not this machine (use file:///path)");
    if (slash == std::string_view::npos)
        return fail(Errc::invalid, message, "'" + shown + "': the path must be absolute, as in file:///srv/data");
    std::string path;
    if (!percent_decode(rest.substr(slash), path))
        return fail(Errc::invalid, message, "'" + shown + "': malformed %-escape in the path");
    while (path.size() > 1 && path.back() == '/')
        path.pop_back();

    BackendLimits limits;
    std::uint64_t latency_ms = 0, bandwidth_mbs = 0;
    std::string faults;
    while (!query.empty()) {
        const auto amp = query.find('&');
        const std::string_view item = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        if (item.empty())
            continue;
        const auto eq = item.find('=');
        const std::string key(item.substr(0, eq));
        std::string value;
        if (eq == std::string_view::npos || !percent_decode(item.substr(eq + 1), value))
            return fail(Errc::invalid, message, "'" + shown + "': option '" + key + "' needs a value (" + key + "=...)");
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
