// What a running mount reports through its control API (docs/control_api.md).
#pragma once

#include "core/engine/engine.h"

#include <memory>
#include <string>

namespace netfs {

class CacheStore;
class ReplicaBackend;

struct DaemonInfo {
    std::string mountpoint;
    std::string remote;
    std::string cache_dir;             // empty without a cache
    Engine* engine = nullptr;
    std::shared_ptr<CacheStore> cache;  // may be null
    ReplicaBackend* sync = nullptr;     // disconnected operation; null without a cache
};

// Answers one control request (a JSON object on one line) with one line.
std::string answer_control_request(const DaemonInfo& daemon, const std::string& request);

} // namespace netfs
