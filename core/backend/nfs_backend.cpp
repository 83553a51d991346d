#include "core/backend/nfs_backend.h"

namespace netfs {

Errc open_nfs(const RemoteUrl& url, const RemoteOptions&, std::unique_ptr<Backend>&, std::string& message) {
    message = url.shown + ": nfs:// remotes are not supported by this build yet";
    return Errc::not_supported;
}

} // namespace netfs
