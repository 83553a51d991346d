// Injects failures in front of any remote, for tests: an operation fails
// with a chosen error, or a read or write transfers only half of its bytes.
//
// Rules come from code (add_rule) or from a rules file that is re-read
// whenever it changes, so a test can turn faults on and off while the
// filesystem is mounted (file:///dir?faults=FILE). One rule per line:
//
//   OP OUTCOME [after=N] [count=M] [path=SUBSTR]
//
//   OP       an operation (read, write, fsync, open, getattr, ...; see
//            op_name in wrapped_backend.h) or `any`
//   OUTCOME  an error name from errors.h (io, no_space, again, timed_out,
//            unreachable, ...) or `short` (read/write transfer half)
//   after=N  the first N matching calls pass untouched
//   count=M  then M calls fail, and the rule is spent (default: all)
//   path=S   only calls whose path contains S (data calls carry the path
//            their file was opened with)
//
// Empty lines and lines starting with # are ignored; a malformed line is
// logged and ignored. An empty or missing file means no faults.
#pragma once

#include "core/backend/wrapped_backend.h"

#include <ctime>
#include <mutex>
#include <optional>
#include <vector>

namespace netfs {

struct FaultRule {
    std::optional<Op> op;  // empty: any operation
    bool short_transfer = false;
    Errc error = Errc::io;
    std::uint64_t after = 0;
    std::uint64_t count = UINT64_MAX;
    std::string path;

    // Parses one rule line; false (and `problem`) when it is malformed.
    static bool parse(std::string_view line, FaultRule& out, std::string& problem);
};

class FaultyBackend : public WrappedBackend {
public:
    // rules_file empty: rules come from add_rule only.
    FaultyBackend(std::unique_ptr<Backend> inner, std::string rules_file = {});

    void add_rule(const FaultRule& rule);
    void clear_rules();
    std::uint64_t injected() const;  // faults injected so far

    Errc before(Op op, const std::string& path, std::size_t& length) override;

private:
    struct ActiveRule {
        FaultRule rule;
        std::uint64_t seen = 0;
        std::uint64_t fired = 0;
    };
    void reload_locked();

    const std::string rules_file_;
    mutable std::mutex mu_;
    std::vector<ActiveRule> rules_;  // guarded by mu_
    std::uint64_t injected_ = 0;     // guarded by mu_
    // The rules file as last read: size and mtime, to notice changes.
    std::int64_t file_size_ = -1;
    timespec file_mtime_{};
};

} // namespace netfs
