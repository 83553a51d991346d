#include "folio_cache.h"

namespace netfs {

void FolioCache::insert(Folio* folio) {
    used_ += folio->size;
    push_newest(folio);
}

void FolioCache::erase(Folio* folio) {
    unlink(folio);
    used_ -= folio->size;
}

void FolioCache::touch(Folio* folio) {
    if (newest_ == folio)
        return;
    unlink(folio);
    push_newest(folio);
}

void FolioCache::push_newest(Folio* folio) {
    folio->lru_older = newest_;
    folio->lru_newer = nullptr;
    if (newest_)
        newest_->lru_newer = folio;
    newest_ = folio;
    if (!oldest_)
        oldest_ = folio;
}

void FolioCache::unlink(Folio* folio) {
    if (folio->lru_newer)
        folio->lru_newer->lru_older = folio->lru_older;
    else
        newest_ = folio->lru_older;
    if (folio->lru_older)
        folio->lru_older->lru_newer = folio->lru_newer;
    else
        oldest_ = folio->lru_newer;
    folio->lru_newer = folio->lru_older = nullptr;
}

} // namespace netfs
