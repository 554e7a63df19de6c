// Kernels by name: the emulated device's cuLaunchKernel. The host passes the kernel's name, the
// launch geometry, the params struct's bytes and one device address per pointer argument; the
// entry checks the params size and the pointer count against the kernel's signature, so an
// argument list that does not match the kernel is an error here, never a garbled launch.
#include "zo_emu.h"

#include <string_view>
#include <unordered_map>

#define ZO_EMU_FAMILIES(X) X(adapter) X(attention) X(decode) X(init) X(loss) X(ops) X(rng) X(update)

#define ZO_EMU_DECLARE(f) extern "C" const zo_emu::KernelEntry* zo_emu_kernels_##f(size_t* n);
ZO_EMU_FAMILIES(ZO_EMU_DECLARE)

namespace {

using Table = std::unordered_map<std::string_view, const zo_emu::KernelEntry*>;

const Table& table() {
    static const Table t = [] {
        Table t;
        auto add = [&](const zo_emu::KernelEntry* (*family)(size_t*)) {
            size_t n = 0;
            const zo_emu::KernelEntry* e = family(&n);
            for (size_t i = 0; i < n; i++) t.emplace(e[i].name, &e[i]);
        };
#define ZO_EMU_ADD(f) add(&zo_emu_kernels_##f);
        ZO_EMU_FAMILIES(ZO_EMU_ADD)
        return t;
    }();
    return t;
}

int error(char* msg, size_t len, int code, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (len > 0) vsnprintf(msg, len, fmt, ap);
    va_end(ap);
    return code;
}

bool valid(ZoEmuDim d) { return d.x > 0 && d.y > 0 && d.z > 0; }

} // namespace

// Number of registered kernels; with `names`, writes up to `cap` of their names.
extern "C" size_t zo_emu_kernel_names(const char** names, size_t cap) {
    size_t i = 0;
    for (auto& [name, e] : table()) {
        if (names && i < cap) names[i] = e->name;
        i++;
    }
    return i;
}

// 0 on success; otherwise a code and a message in `msg`: 1 unknown kernel, 2 params size, 3
// pointer count, 4 launch geometry (the checks cuLaunchKernel makes).
extern "C" int zo_emu_launch(const char* name, ZoEmuDim grid, ZoEmuDim block, size_t smem,
                             const void* params, size_t params_size, const uint64_t* ptrs,
                             size_t n_ptrs, char* msg, size_t msg_len) {
    auto it = table().find(name);
    if (it == table().end())
        return error(msg, msg_len, 1, "no emulated kernel named %s", name);
    const zo_emu::KernelEntry& e = *it->second;
    if (params_size != e.params_size)
        return error(msg, msg_len, 2, "%s takes a %zu-byte params struct, not %zu bytes", name,
                     e.params_size, params_size);
    if (n_ptrs != e.n_ptrs)
        return error(msg, msg_len, 3, "%s takes %zu pointers after its params, not %zu", name,
                     e.n_ptrs, n_ptrs);
    const uint64_t threads = uint64_t(block.x) * block.y * block.z;
    if (!valid(grid) || !valid(block) || threads > 1024 || block.z > 64 || grid.y > 65535 ||
        grid.z > 65535)
        return error(msg, msg_len, 4, "%s: invalid launch grid (%u, %u, %u) block (%u, %u, %u)",
                     name, grid.x, grid.y, grid.z, block.x, block.y, block.z);
    if (smem > zo_emu::MAX_DYNAMIC_SMEM)
        return error(msg, msg_len, 4, "%s: %zu bytes of dynamic shared memory exceed the %zu a "
                     "block may have", name, smem, zo_emu::MAX_DYNAMIC_SMEM);
    e.run(grid, block, smem, params, ptrs);
    return 0;
}
