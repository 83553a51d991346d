#include "core/backend/faulty_backend.h"

#include "core/log.h"

#include <sys/stat.h>

#include <charconv>
#include <fstream>
#include <sstream>

namespace netfs {

namespace {

bool parse_number(std::string_view text, std::uint64_t& out) {
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && end == text.data() + text.size();
}

} // namespace

bool FaultRule::parse(std::string_view line, FaultRule& out, std::string& problem) {
    std::istringstream words{std::string(line)};
    std::string op, outcome, word;
    if (!(words >> op >> outcome)) {
        problem = "a rule needs an operation and an outcome";
        return false;
    }
    out = FaultRule{};
    if (op != "any") {
        Op o;
        if (!op_from_name(op, o)) {
            problem = "unknown operation '" + op + "'";
            return false;
        }
        out.op = o;
    }
    if (outcome == "short") {
        out.short_transfer = true;
    } else if (!errc_from_name(outcome, out.error) || out.error == Errc::ok) {
        problem = "unknown outcome '" + outcome + "'";
        return false;
    }
    while (words >> word) {
        const auto eq = word.find('=');
        const std::string key = word.substr(0, eq);
        const std::string value = eq == std::string::npos ? "" : word.substr(eq + 1);
        if (key == "path" && !value.empty()) {
            out.path = value;
        } else if ((key == "after" && parse_number(value, out.after)) ||
                   (key == "count" && parse_number(value, out.count))) {
        } else {
            problem = "bad option '" + word + "'";
            return false;
        }
    }
    return true;
}

FaultyBackend::FaultyBackend(std::unique_ptr<Backend> inner, std::string rules_file)
    : WrappedBackend(std::move(inner)), rules_file_(std::move(rules_file)) {}

void FaultyBackend::add_rule(const FaultRule& rule) {
    std::lock_guard lock(mu_);
    rules_.push_back({rule});
}

void FaultyBackend::clear_rules() {
    std::lock_guard lock(mu_);
    rules_.clear();
}

std::uint64_t FaultyBackend::injected() const {
    std::lock_guard lock(mu_);
    return injected_;
}

void FaultyBackend::reload_locked() {
    struct stat st;
    const bool exists = ::stat(rules_file_.c_str(), &st) == 0;
    const std::int64_t size = exists ? st.st_size : -1;
    const timespec mtime = exists ? st.st_mtim : timespec{};
    if (size == file_size_ && mtime.tv_sec == file_mtime_.tv_sec && mtime.tv_nsec == file_mtime_.tv_nsec)
        return;
    file_size_ = size;
    file_mtime_ = mtime;
    rules_.clear();
    if (!exists)
        return;
    std::ifstream in(rules_file_);
    std::string line;
    while (std::getline(in, line)) {
        const auto first = line.find_first_not_of(" \t");
        if (first == std::string::npos || line[first] == '#')
            continue;
        FaultRule rule;
        std::string problem;
        if (FaultRule::parse(line, rule, problem))
            rules_.push_back({rule});
        else
            LOG_WARN("fault rules %s: ignoring '%s': %s", rules_file_.c_str(), line.c_str(), problem.c_str());
    }
}

Errc FaultyBackend::before(Op op, const std::string& path, std::size_t& length) {
    std::lock_guard lock(mu_);
    if (!rules_file_.empty())
        reload_locked();
    for (auto& active : rules_) {
        const FaultRule& r = active.rule;
        if ((r.op && *r.op != op) || (!r.path.empty() && path.find(r.path) == std::string::npos))
            continue;
        if (r.short_transfer && op != Op::read && op != Op::write)
            continue;
        if (active.seen++ < r.after || active.fired >= r.count)
            continue;
        active.fired++;
        injected_++;
        if (r.short_transfer) {
            if (length > 1)
                length /= 2;
            return Errc::ok;
        }
        return r.error;
    }
    return Errc::ok;
}

} // namespace netfs
