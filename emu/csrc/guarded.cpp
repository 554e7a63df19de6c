// Host buffers that end at a PROT_NONE page (zo_emu::GuardedVec): a kernel that writes or
// reads one element past a buffer faults at once instead of corrupting the heap.
#include "zo_emu.h"

extern "C" void* zo_emu_guarded_alloc(size_t bytes, void** map, size_t* map_len) {
    const size_t ps = zo_emu::detail::page_size();
    const size_t body = (bytes + ps - 1) / ps * ps;
    *map_len = body + ps;
    *map = mmap(nullptr, *map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (*map == MAP_FAILED) zo_emu::fail("mmap of a %zu-byte guarded buffer failed", bytes);
    if (mprotect((unsigned char*)*map + body, ps, PROT_NONE) != 0)
        zo_emu::fail("mprotect of a guard page failed");
    return (unsigned char*)*map + body - bytes;
}

extern "C" void zo_emu_guarded_free(void* map, size_t map_len) { munmap(map, map_len); }
