#include "core/backend/sftp_backend.h"

namespace netfs {

Errc open_sftp(const RemoteUrl& url, const RemoteOptions&, std::unique_ptr<Backend>&, std::string& message) {
    message = url.shown + ": sftp:// remotes are not supported by this build yet";
    return Errc::not_supported;
}

} // namespace netfs
