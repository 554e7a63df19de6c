// CPU runtime for zo's CUDA kernels: lets csrc/*.cu compile unmodified as C++20 on the host.
//
// Execution model. A launch runs its blocks on a few OS worker threads; each worker runs one
// block at a time, and every CUDA thread of that block is a fiber (its own stack) on the worker.
// Fibers are switched only at __syncthreads, __syncwarp and warp shuffles, so a block runs
// deterministically: all runnable threads are resumed in thread order (reversed on every other
// phase and block, so that a read of another thread's write with no barrier in between sees
// the unwritten value in one of the two orders), and a phase ends when every live thread waits
// at a barrier. A barrier nobody can pass (threads of one warp split between a warp barrier
// and __syncthreads, or a shuffle in divergent code) is reported and aborts instead of hanging.
//
// Shared memory: `__shared__` is `static thread_local`, so a worker's blocks (which run one
// after another) share the one copy, like consecutive blocks on an SM, while blocks running
// on different workers do not. Dynamic shared memory (ZO_DYNAMIC_SMEM) is a per-worker buffer
// that ends at a guard page and is filled with 0xff bytes (NaN as float) before every block.
//
// Only the subset of CUDA the kernels are allowed to use is provided (see README.md): a kernel
// that uses anything else fails to compile here rather than silently diverging.
#pragma once

#ifndef ZO_EMU
#define ZO_EMU 1
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdarg>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "zo_emu_abi.h"

// ---------------------------------------------------------------------------------------------
// Qualifiers
// ---------------------------------------------------------------------------------------------

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __shared__ static thread_local
// __restrict__ is a GCC keyword already.

// ---------------------------------------------------------------------------------------------
// Built-in variables and vector types
// ---------------------------------------------------------------------------------------------

struct uint3 {
    unsigned int x, y, z;
};

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1)
        : x(x_), y(y_), z(z_) {}
    constexpr dim3(ZoEmuDim d) : x(d.x), y(d.y), z(d.z) {}
    constexpr dim3(uint3 d) : x(d.x), y(d.y), z(d.z) {}
};

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;
inline constexpr int warpSize = 32;

struct __align__(8) float2 { float x, y; };
struct __align__(16) float4 { float x, y, z, w; };
struct __align__(8) int2 { int x, y; };
struct __align__(16) int4 { int x, y, z, w; };
struct __align__(8) uint2 { unsigned int x, y; };
struct __align__(16) uint4 { unsigned int x, y, z, w; };

inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline int2 make_int2(int x, int y) { return int2{x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

// ---------------------------------------------------------------------------------------------
// The runtime
// ---------------------------------------------------------------------------------------------

namespace zo_emu {

// Largest dynamic shared memory request an H100 accepts (227 KiB): kernels that need more
// must fail here as they would on the device.
inline constexpr size_t MAX_DYNAMIC_SMEM = 227 * 1024;

[[noreturn]] inline void fail(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("zo_emu: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    abort();
}

namespace detail {

// Fiber context switch. On x86-64 a minimal switch of the callee-saved registers (swapcontext
// also saves the signal mask, a system call per switch, and dominates the run time of
// barrier-heavy kernels); elsewhere ucontext. Define ZO_EMU_UCONTEXT to force ucontext.
#if defined(__x86_64__) && !defined(ZO_EMU_UCONTEXT)
#define ZO_EMU_FAST_SWITCH 1
extern "C" void zo_emu_switch(void** save_sp, void* load_sp);
// Weak, so every translation unit that includes this header may carry the definition.
asm(R"(
    .text
    .weak zo_emu_switch
    .type zo_emu_switch, @function
zo_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size zo_emu_switch, .-zo_emu_switch
)");

struct Context {
    void* sp;
};

inline void switch_context(Context& save, Context& load) { zo_emu_switch(&save.sp, load.sp); }

// A fresh stack that "returns" into entry with the alignment of a function entry.
inline void make_context(Context& c, void* stack, size_t size, void (*entry)()) {
    uintptr_t top = ((uintptr_t)stack + size) & ~(uintptr_t)15;
    void** sp = (void**)top;
    *--sp = nullptr;         // entry's return address: never used, entry does not return
    *--sp = (void*)entry;    // popped by ret
    for (int r = 0; r < 6; r++) *--sp = nullptr; // rbp rbx r12 r13 r14 r15
    c.sp = sp;
}
#else
struct Context {
    ucontext_t uc;
};

inline void switch_context(Context& save, Context& load) { swapcontext(&save.uc, &load.uc); }

inline void make_context(Context& c, void* stack, size_t size, void (*entry)()) {
    if (getcontext(&c.uc) != 0) fail("getcontext failed");
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = size;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, entry, 0);
}
#endif

enum class State : unsigned char { Ready, WaitWarp, WaitBlock, Done };

struct Fiber {
    Context ctx;
    uint3 tid;
    unsigned lin;    // linear thread index in the block
    unsigned parity; // which half of the warp's exchange buffer the next shuffle uses
    State state;
};

struct Worker {
    Context sched;
    Fiber* fibers = nullptr;
    unsigned n = 0;
    unsigned cur = 0;
    uint64_t (*slots)[2][32] = nullptr; // per warp, double-buffered shuffle exchange
    unsigned char* smem = nullptr;
    size_t smem_size = 0;
    void (*invoke)(void*) = nullptr;
    void* body = nullptr;
};

inline thread_local Worker* tl_worker = nullptr;

inline std::mutex& launch_mutex() {
    static std::mutex m;
    return m;
}

inline size_t page_size() {
    static const size_t p = (size_t)sysconf(_SC_PAGESIZE);
    return p;
}

inline size_t env_size(const char* name, size_t fallback) {
    const char* v = getenv(name);
    if (!v || !*v) return fallback;
    char* end = nullptr;
    const unsigned long long x = strtoull(v, &end, 10);
    if (*end != '\0' || x == 0) fail("%s=%s is not a positive integer", name, v);
    return (size_t)x;
}

// Fiber stacks: `stack_bytes()` usable bytes above a PROT_NONE guard page, so an overflow
// faults instead of corrupting a neighbour. Pooled across launches (under the launch mutex).
inline size_t stack_bytes() {
    static const size_t b = env_size("ZO_EMU_STACK_KIB", 256) * 1024;
    return b;
}

inline std::vector<void*>& stack_pool() {
    static std::vector<void*> pool;
    return pool;
}

inline void* take_stack() {
    auto& pool = stack_pool();
    if (!pool.empty()) {
        void* s = pool.back();
        pool.pop_back();
        return s;
    }
    const size_t guard = page_size();
    void* base = mmap(nullptr, guard + stack_bytes(), PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (base == MAP_FAILED) fail("mmap of a %zu-byte fiber stack failed", stack_bytes());
    if (mprotect(base, guard, PROT_NONE) != 0) fail("mprotect of a stack guard page failed");
    return (unsigned char*)base + guard;
}

// A dynamic shared memory buffer of `size` bytes that ends exactly at a PROT_NONE page, so
// reading or writing past the launch's request faults. 16-byte aligned as on the device
// (requests are rounded up to 16 bytes).
struct SmemBuffer {
    void* map = nullptr;
    size_t map_len = 0;
    unsigned char* data = nullptr;
    size_t size = 0;

    explicit SmemBuffer(size_t request) {
        size = (request + 15) & ~(size_t)15;
        const size_t ps = page_size();
        const size_t body = (size + ps - 1) / ps * ps;
        map_len = body + ps;
        map = mmap(nullptr, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (map == MAP_FAILED) fail("mmap of %zu bytes of dynamic shared memory failed", size);
        if (mprotect((unsigned char*)map + body, ps, PROT_NONE) != 0)
            fail("mprotect of the shared memory guard page failed");
        data = (unsigned char*)map + body - size;
    }
    SmemBuffer(const SmemBuffer&) = delete;
    SmemBuffer& operator=(const SmemBuffer&) = delete;
    ~SmemBuffer() { munmap(map, map_len); }
};

inline Worker& worker(const char* what) {
    Worker* w = tl_worker;
    if (!w) fail("%s called outside an emulated launch", what);
    return *w;
}

inline Fiber& current(Worker& w) { return w.fibers[w.cur]; }

// Suspends the calling CUDA thread until the scheduler releases it.
inline void wait(Worker& w, State s) {
    Fiber& f = current(w);
    f.state = s;
    switch_context(f.ctx, w.sched);
}

inline void fiber_main() {
    for (;;) {
        Worker& w = *tl_worker;
        w.invoke(w.body);
        // The thread has left the kernel: it no longer counts at any barrier. Poison the slot
        // its warp's next shuffle would read from it (the current half may still be read by
        // lanes released from the last shuffle but not yet resumed).
        Fiber& f = current(w);
        w.slots[f.lin / 32][f.parity][f.lin % 32] = ~(uint64_t)0;
        f.state = State::Done;
        switch_context(f.ctx, w.sched);
    }
}

inline const char* state_name(State s) {
    switch (s) {
    case State::Ready: return "running";
    case State::WaitWarp: return "at __syncwarp/shuffle";
    case State::WaitBlock: return "at __syncthreads";
    default: return "returned";
    }
}

[[noreturn]] inline void deadlock(const Worker& w) {
    fprintf(stderr,
            "zo_emu: deadlock in block (%u, %u, %u): no barrier can be passed. Per warp, the "
            "first lane in each state:\n",
            blockIdx.x, blockIdx.y, blockIdx.z);
    for (unsigned warp = 0; warp * 32 < w.n; warp++) {
        fprintf(stderr, "  warp %u:", warp);
        State last = State::Ready;
        for (unsigned l = 0; l < 32; l++) {
            const State s = w.fibers[warp * 32 + l].state;
            if (l == 0 || s != last) fprintf(stderr, " lane %u %s;", l, state_name(s));
            last = s;
        }
        fputc('\n', stderr);
    }
    fail("deadlock (a barrier or shuffle reached by only part of the block or warp)");
}

inline void run_block(Worker& w, uint64_t linear) {
    const uint64_t gx = gridDim.x, gy = gridDim.y;
    blockIdx = uint3{(unsigned)(linear % gx), (unsigned)(linear / gx % gy), (unsigned)(linear / gx / gy)};
    for (unsigned i = 0; i < w.n; i++) {
        w.fibers[i].state = State::Ready;
        w.fibers[i].parity = 0;
    }
    memset(w.smem, 0xff, w.smem_size);
    memset(w.slots, 0xff, sizeof(*w.slots) * (w.n / 32));
    const unsigned warps = w.n / 32;
    for (uint64_t phase = linear;; phase++) {
        const bool reverse = phase & 1;
        for (unsigned k = 0; k < w.n; k++) {
            const unsigned i = reverse ? w.n - 1 - k : k;
            Fiber& f = w.fibers[i];
            if (f.state != State::Ready) continue;
            w.cur = i;
            threadIdx = f.tid;
            switch_context(w.sched, f.ctx);
        }
        bool live = false, released = false, all_at_block = true;
        for (unsigned warp = 0; warp < warps; warp++) {
            Fiber* lanes = w.fibers + warp * 32;
            unsigned alive = 0, at_warp = 0;
            for (unsigned l = 0; l < 32; l++) {
                alive += lanes[l].state != State::Done;
                at_warp += lanes[l].state == State::WaitWarp;
                all_at_block &= lanes[l].state == State::Done || lanes[l].state == State::WaitBlock;
            }
            live |= alive != 0;
            if (alive != 0 && at_warp == alive) {
                for (unsigned l = 0; l < 32; l++)
                    if (lanes[l].state == State::WaitWarp) lanes[l].state = State::Ready;
                released = true;
            }
        }
        if (!live) return;
        if (released) continue;
        if (!all_at_block) deadlock(w);
        for (unsigned i = 0; i < w.n; i++)
            if (w.fibers[i].state == State::WaitBlock) w.fibers[i].state = State::Ready;
    }
}

struct Launch {
    dim3 grid, block;
    size_t smem;
    uint64_t blocks;
    std::atomic<uint64_t> next{0};
    void (*invoke)(void*);
    void* body;
};

// Out of line: getcontext returns twice, which would make every local of the caller suspect.
__attribute__((noinline)) inline void init_fiber(Fiber& f, void* stack) {
    make_context(f.ctx, stack, stack_bytes(), fiber_main);
}

inline void run_worker(Launch& L, void** stacks) {
    Worker w;
    w.n = L.block.x * L.block.y * L.block.z;
    std::unique_ptr<Fiber[]> fibers(new Fiber[w.n]);
    std::unique_ptr<uint64_t[][2][32]> slots(new uint64_t[w.n / 32][2][32]);
    SmemBuffer smem(L.smem);
    w.fibers = fibers.get();
    w.slots = slots.get();
    w.smem = smem.data;
    w.smem_size = smem.size;
    w.invoke = L.invoke;
    w.body = L.body;
    blockDim = L.block;
    gridDim = L.grid;
    for (unsigned i = 0; i < w.n; i++) {
        Fiber& f = w.fibers[i];
        f.lin = i;
        f.tid = uint3{i % L.block.x, i / L.block.x % L.block.y, i / L.block.x / L.block.y};
        init_fiber(f, stacks[i]);
    }
    Worker* const saved = tl_worker;
    tl_worker = &w;
    for (uint64_t b; (b = L.next.fetch_add(1)) < L.blocks;) run_block(w, b);
    tl_worker = saved;
}

template <class F> void invoke_body(void* body) { (*static_cast<F*>(body))(); }

inline void check_launch(dim3 grid, dim3 block, size_t smem) {
    const uint64_t threads = (uint64_t)block.x * block.y * block.z;
    if (block.x == 0 || block.y == 0 || block.z == 0 || grid.x == 0 || grid.y == 0 || grid.z == 0)
        fail("launch with an empty grid (%u, %u, %u) or block (%u, %u, %u)", grid.x, grid.y,
             grid.z, block.x, block.y, block.z);
    if (threads > 1024 || threads % 32 != 0 || block.z > 64)
        fail("block (%u, %u, %u) is not a multiple of 32 threads, at most 1024 (z at most 64)",
             block.x, block.y, block.z);
    if (grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
        fail("grid (%u, %u, %u) exceeds the device limits (2^31 - 1, 65535, 65535)", grid.x,
             grid.y, grid.z);
    if (smem > MAX_DYNAMIC_SMEM)
        fail("dynamic shared memory request of %zu bytes exceeds the %zu-byte limit", smem,
             MAX_DYNAMIC_SMEM);
}

inline void run_launch(dim3 grid, dim3 block, size_t smem, void (*invoke)(void*), void* body) {
    check_launch(grid, block, smem);
    std::lock_guard<std::mutex> lock(launch_mutex());
    Launch L;
    L.grid = grid;
    L.block = block;
    L.smem = smem;
    L.blocks = (uint64_t)grid.x * grid.y * grid.z;
    L.invoke = invoke;
    L.body = body;
    const unsigned threads = block.x * block.y * block.z;
    static const size_t max_workers =
        env_size("ZO_EMU_WORKERS", std::min(8u, std::max(1u, std::thread::hardware_concurrency())));
    const size_t workers = (size_t)std::min<uint64_t>(max_workers, L.blocks);

    std::vector<void*> stacks(workers * threads);
    for (void*& s : stacks) s = take_stack();
    std::vector<std::thread> pool;
    for (size_t k = 1; k < workers; k++)
        pool.emplace_back(run_worker, std::ref(L), stacks.data() + k * threads);
    run_worker(L, stacks.data());
    for (auto& t : pool) t.join();
    for (void* s : stacks) stack_pool().push_back(s);
}

// One lane's view of a warp exchange: publish `v`, wait for the warp, read lane `src`'s value
// (`src` computed from this lane's index).
template <class T, class Src> T exchange(unsigned mask, T v, Src src) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>,
                  "warp shuffles move values of at most 8 bytes");
    if (mask != 0xffffffffu) fail("warp shuffle with mask %#x: only the full mask is supported", mask);
    Worker& w = worker("a warp shuffle");
    Fiber& f = current(w);
    const unsigned lane = f.lin % 32;
    uint64_t* buf = w.slots[f.lin / 32][f.parity];
    f.parity ^= 1;
    uint64_t raw = 0;
    memcpy(&raw, &v, sizeof v);
    buf[lane] = raw;
    wait(w, State::WaitWarp);
    T out;
    memcpy(&out, &buf[src(lane)], sizeof out);
    return out;
}

inline unsigned check_width(int width) {
    if (width <= 0 || width > 32 || (width & (width - 1)) != 0)
        fail("shuffle width %d is not a power of two in [1, 32]", width);
    return (unsigned)width;
}

} // namespace detail

// The launch's dynamic shared memory (ZO_DYNAMIC_SMEM).
inline unsigned char* dynamic_smem() { return detail::worker("dynamic_smem").smem; }

// Runs `body` (a callable that invokes the kernel) as every thread of every block of the grid,
// and returns when all have finished. Launches are serialised process-wide.
template <class F> void launch(dim3 grid, dim3 block, size_t smem, F&& body) {
    using B = std::remove_reference_t<F>;
    detail::run_launch(grid, block, smem, &detail::invoke_body<B>,
                       const_cast<void*>(static_cast<const void*>(&body)));
}

// launch_kernel(kernel, grid, block, smem, args...): launches `kernel(args...)`; each thread
// gets its own copies of the arguments, as on the device.
template <class... P, class... A>
void launch_kernel(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, A&&... args) {
    static_assert(sizeof...(P) == sizeof...(A), "argument count differs from the kernel's");
    launch(grid, block, smem, [&] { kernel(args...); });
}

// A kernel launchable by name: what the device seam's emulated device passes to
// zo_emu_launch, as cuLaunchKernel takes a function, the params struct and the pointers.
struct KernelEntry {
    const char* name;
    size_t params_size;
    size_t n_ptrs;
    void (*run)(dim3 grid, dim3 block, size_t smem, const void* params, const uint64_t* ptrs);
};

namespace detail {

// Every zo kernel takes (params struct by value, device pointers...): the signature says how to
// unpack an argument list of raw addresses.
template <class F> struct kernel_sig;
template <class P, class... Ptr> struct kernel_sig<void (*)(P, Ptr...)> {
    static_assert((std::is_pointer_v<Ptr> && ...), "kernel arguments after the params are pointers");
    using params = P;
    static constexpr size_t n_ptrs = sizeof...(Ptr);

    template <auto K, size_t... I>
    static void call(dim3 g, dim3 b, size_t smem, const P& p, const uint64_t* ptrs,
                     std::index_sequence<I...>) {
        launch_kernel(K, g, b, smem, p, reinterpret_cast<Ptr>(static_cast<uintptr_t>(ptrs[I]))...);
    }

    template <auto K>
    static void run(dim3 g, dim3 b, size_t smem, const void* params, const uint64_t* ptrs) {
        P p;
        memcpy(static_cast<void*>(&p), params, sizeof(P));
        call<K>(g, b, smem, p, ptrs, std::index_sequence_for<Ptr...>{});
    }
};

} // namespace detail

template <auto K> constexpr KernelEntry kernel_entry(const char* name) {
    using S = detail::kernel_sig<decltype(K)>;
    return KernelEntry{name, sizeof(typename S::params), S::n_ptrs, &S::template run<K>};
}

} // namespace zo_emu

// ZO_EMU_KERNEL(zo_norm_bf16): the registry entry of one kernel instance.
#define ZO_EMU_KERNEL(k) zo_emu::kernel_entry<&k>(#k)

// ZO_EMU_FAMILY(ops, entries...): the table of a family's kernels, which emu/csrc/registry.cpp
// searches by name. One per emu/csrc/<family>.cpp.
#define ZO_EMU_FAMILY(family, ...)                                                             \
    extern "C" const zo_emu::KernelEntry* zo_emu_kernels_##family(size_t* n) {                \
        static const zo_emu::KernelEntry entries[] = {__VA_ARGS__};                            \
        *n = sizeof(entries) / sizeof(entries[0]);                                             \
        return entries;                                                                        \
    }

// ---------------------------------------------------------------------------------------------
// Synchronisation and warp shuffles
// ---------------------------------------------------------------------------------------------

inline void __syncthreads() {
    auto& w = zo_emu::detail::worker("__syncthreads");
    zo_emu::detail::wait(w, zo_emu::detail::State::WaitBlock);
}

inline void __syncwarp(unsigned mask = 0xffffffffu) {
    if (mask != 0xffffffffu) zo_emu::fail("__syncwarp with mask %#x: only the full mask is supported", mask);
    auto& w = zo_emu::detail::worker("__syncwarp");
    zo_emu::detail::wait(w, zo_emu::detail::State::WaitWarp);
}

inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
[[noreturn]] inline void __trap() { zo_emu::fail("__trap()"); }

template <class T> T __shfl_sync(unsigned mask, T v, int src_lane, int width = warpSize) {
    const unsigned w = zo_emu::detail::check_width(width);
    return zo_emu::detail::exchange(mask, v, [&](unsigned lane) {
        return (lane & ~(w - 1)) + ((unsigned)src_lane & (w - 1));
    });
}

template <class T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = warpSize) {
    const unsigned w = zo_emu::detail::check_width(width);
    return zo_emu::detail::exchange(mask, v, [&](unsigned lane) {
        const unsigned src = lane ^ (unsigned)lane_mask;
        return src >= (lane & ~(w - 1)) + w ? lane : src;
    });
}

template <class T> T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
    const unsigned w = zo_emu::detail::check_width(width);
    return zo_emu::detail::exchange(mask, v, [&](unsigned lane) {
        return (lane & (w - 1)) + delta >= w ? lane : lane + delta;
    });
}

template <class T> T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
    const unsigned w = zo_emu::detail::check_width(width);
    return zo_emu::detail::exchange(mask, v, [&](unsigned lane) {
        return (lane & (w - 1)) < delta ? lane : lane - delta;
    });
}

// ---------------------------------------------------------------------------------------------
// Atomics (blocks on different workers really run concurrently)
// ---------------------------------------------------------------------------------------------

namespace zo_emu::detail {
template <class T> std::atomic_ref<T> aref(T* p) { return std::atomic_ref<T>(*p); }
template <class T, class F> T cas_loop(T* p, F f) {
    auto a = aref(p);
    T old = a.load();
    while (!a.compare_exchange_weak(old, f(old))) {
    }
    return old;
}
} // namespace zo_emu::detail

#define ZO_EMU_ATOMIC_ARITH(T)                                                                  \
    inline T atomicAdd(T* p, T v) { return zo_emu::detail::aref(p).fetch_add(v); }              \
    inline T atomicExch(T* p, T v) { return zo_emu::detail::aref(p).exchange(v); }
ZO_EMU_ATOMIC_ARITH(int)
ZO_EMU_ATOMIC_ARITH(unsigned int)
ZO_EMU_ATOMIC_ARITH(unsigned long long)
ZO_EMU_ATOMIC_ARITH(float)
ZO_EMU_ATOMIC_ARITH(double)
#undef ZO_EMU_ATOMIC_ARITH

#define ZO_EMU_ATOMIC_INT(T)                                                                    \
    inline T atomicSub(T* p, T v) { return zo_emu::detail::aref(p).fetch_sub(v); }              \
    inline T atomicAnd(T* p, T v) { return zo_emu::detail::aref(p).fetch_and(v); }              \
    inline T atomicOr(T* p, T v) { return zo_emu::detail::aref(p).fetch_or(v); }                \
    inline T atomicXor(T* p, T v) { return zo_emu::detail::aref(p).fetch_xor(v); }              \
    inline T atomicMax(T* p, T v) {                                                             \
        return zo_emu::detail::cas_loop(p, [v](T o) { return o < v ? v : o; });                 \
    }                                                                                           \
    inline T atomicMin(T* p, T v) {                                                             \
        return zo_emu::detail::cas_loop(p, [v](T o) { return v < o ? v : o; });                 \
    }                                                                                           \
    inline T atomicCAS(T* p, T expected, T desired) {                                           \
        zo_emu::detail::aref(p).compare_exchange_strong(expected, desired);                    \
        return expected;                                                                        \
    }
ZO_EMU_ATOMIC_INT(int)
ZO_EMU_ATOMIC_INT(unsigned int)
ZO_EMU_ATOMIC_INT(unsigned long long)
#undef ZO_EMU_ATOMIC_INT

inline long long atomicMax(long long* p, long long v) {
    return zo_emu::detail::cas_loop(p, [v](long long o) { return o < v ? v : o; });
}
inline long long atomicMin(long long* p, long long v) {
    return zo_emu::detail::cas_loop(p, [v](long long o) { return v < o ? v : o; });
}

// ---------------------------------------------------------------------------------------------
// Arithmetic intrinsics. x86-64 and aarch64 float arithmetic is IEEE single precision with
// round-to-nearest-even, and the kernels are compiled with -ffp-contract=off, so these are the
// correctly rounded operations the device performs.
// ---------------------------------------------------------------------------------------------

inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __dsqrt_rn(double a) { return sqrt(a); }
inline float rsqrtf(float a) { return 1.0f / sqrtf(a); }
inline double rsqrt(double a) { return 1.0 / sqrt(a); }
inline float __saturatef(float a) { return a >= 1.0f ? 1.0f : (a > 0.0f ? a : 0.0f); }

inline float __int2float_rn(int a) { return (float)a; }
inline float __uint2float_rn(unsigned a) { return (float)a; }
inline float __ll2float_rn(long long a) { return (float)a; }
inline float __ull2float_rn(unsigned long long a) { return (float)a; }
inline float __double2float_rn(double a) { return (float)a; }

namespace zo_emu::detail {
// Device float-to-integer conversions saturate and map NaN to 0.
template <class I> I f2i(float r) {
    if (std::isnan(r)) return 0;
    if (r <= (float)std::numeric_limits<I>::min()) return std::numeric_limits<I>::min();
    if (r >= std::ldexp(1.0f, std::numeric_limits<I>::digits)) return std::numeric_limits<I>::max();
    return (I)r;
}
} // namespace zo_emu::detail

inline int __float2int_rn(float a) { return zo_emu::detail::f2i<int>(rintf(a)); }
inline int __float2int_rz(float a) { return zo_emu::detail::f2i<int>(truncf(a)); }
inline int __float2int_rd(float a) { return zo_emu::detail::f2i<int>(floorf(a)); }
inline int __float2int_ru(float a) { return zo_emu::detail::f2i<int>(ceilf(a)); }
inline unsigned __float2uint_rn(float a) { return zo_emu::detail::f2i<unsigned>(rintf(a)); }
inline unsigned __float2uint_rz(float a) { return zo_emu::detail::f2i<unsigned>(truncf(a)); }

inline unsigned __float_as_uint(float a) { return std::bit_cast<unsigned>(a); }
inline float __uint_as_float(unsigned a) { return std::bit_cast<float>(a); }
inline int __float_as_int(float a) { return std::bit_cast<int>(a); }
inline float __int_as_float(int a) { return std::bit_cast<float>(a); }
inline long long __double_as_longlong(double a) { return std::bit_cast<long long>(a); }
inline double __longlong_as_double(long long a) { return std::bit_cast<double>(a); }

inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((uint64_t)a * b) >> 32); }
inline int __mulhi(int a, int b) { return (int)(((int64_t)a * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline int __popc(unsigned a) { return std::popcount(a); }
inline int __popcll(unsigned long long a) { return std::popcount(a); }
inline int __clz(int a) { return std::countl_zero((unsigned)a); }
inline int __clzll(long long a) { return std::countl_zero((unsigned long long)a); }
inline int __ffs(int a) { return a == 0 ? 0 : std::countr_zero((unsigned)a) + 1; }
inline int __ffsll(long long a) { return a == 0 ? 0 : std::countr_zero((unsigned long long)a) + 1; }
inline unsigned __brev(unsigned a) {
    a = ((a >> 1) & 0x55555555u) | ((a & 0x55555555u) << 1);
    a = ((a >> 2) & 0x33333333u) | ((a & 0x33333333u) << 2);
    a = ((a >> 4) & 0x0f0f0f0fu) | ((a & 0x0f0f0f0fu) << 4);
    a = ((a >> 8) & 0x00ff00ffu) | ((a & 0x00ff00ffu) << 8);
    return (a >> 16) | (a << 16);
}

// Device min/max: overloads for every pair of arithmetic types, in their common type (as the
// CUDA overloads resolve); floating point follows fminf/fmaxf (a NaN operand loses).
template <class A, class B,
          std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>, int> = 0>
inline std::common_type_t<A, B> min(A a, B b) {
    using C = std::common_type_t<A, B>;
    if constexpr (std::is_floating_point_v<C>) return std::fmin((C)a, (C)b);
    else return (C)b < (C)a ? (C)b : (C)a;
}
template <class A, class B,
          std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>, int> = 0>
inline std::common_type_t<A, B> max(A a, B b) {
    using C = std::common_type_t<A, B>;
    if constexpr (std::is_floating_point_v<C>) return std::fmax((C)a, (C)b);
    else return (C)a < (C)b ? (C)b : (C)a;
}

// The device's approximate intrinsics differ from the exact host functions, so a kernel using
// them would pass here and diverge on the GPU; glibc declares same-named internals, hence the
// explicit refusal.
template <class... A> void zo_emu_approximate_intrinsics_are_not_supported(A...) = delete;
#define ZO_EMU_REFUSE(name) zo_emu_approximate_intrinsics_are_not_supported
#define __expf(...) ZO_EMU_REFUSE(__expf)(__VA_ARGS__)
#define __exp10f(...) ZO_EMU_REFUSE(__exp10f)(__VA_ARGS__)
#define __logf(...) ZO_EMU_REFUSE(__logf)(__VA_ARGS__)
#define __log2f(...) ZO_EMU_REFUSE(__log2f)(__VA_ARGS__)
#define __log10f(...) ZO_EMU_REFUSE(__log10f)(__VA_ARGS__)
#define __powf(...) ZO_EMU_REFUSE(__powf)(__VA_ARGS__)
#define __sinf(...) ZO_EMU_REFUSE(__sinf)(__VA_ARGS__)
#define __cosf(...) ZO_EMU_REFUSE(__cosf)(__VA_ARGS__)
#define __tanf(...) ZO_EMU_REFUSE(__tanf)(__VA_ARGS__)
#define __sincosf(...) ZO_EMU_REFUSE(__sincosf)(__VA_ARGS__)
#define __fdividef(...) ZO_EMU_REFUSE(__fdividef)(__VA_ARGS__)

// ---------------------------------------------------------------------------------------------
// 16-bit floats: bit-exact conversions, round to nearest even, subnormals, inf and NaN.
// ---------------------------------------------------------------------------------------------

namespace zo_emu {

inline float bf16_bits_to_f32(uint16_t h) { return std::bit_cast<float>((uint32_t)h << 16); }

inline uint16_t f32_to_bf16_bits(float f) {
    const uint32_t x = std::bit_cast<uint32_t>(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x0040u); // quiet NaN
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

inline float f16_bits_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (m ? 0x00400000u | (m << 13) : 0));
    if (e == 0) {
        const float v = (float)m * 0x1p-24f; // exact
        return sign ? -v : v;
    }
    return std::bit_cast<float>(sign | ((e + 112) << 23) | (m << 13));
}

inline uint16_t f32_to_f16_bits(float f) {
    const uint32_t x = std::bit_cast<uint32_t>(f);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    const uint32_t a = x & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u | (uint16_t)((a >> 13) & 0x3ffu); // quiet NaN
    if (a >= 0x477ff000u) return sign | 0x7c00u; // >= 65520 (ties to even go up) and inf
    if (a >= 0x38800000u) {                       // normal half: >= 2^-14
        const uint32_t r = a - ((uint32_t)(127 - 15) << 23);
        return sign | (uint16_t)((r + 0xfffu + ((r >> 13) & 1u)) >> 13);
    }
    if (a <= 0x33000000u) return sign; // <= 2^-25: rounds to zero (2^-25 is a tie to even 0)
    // Subnormal half: the value in units of 2^-24, rounded to nearest even.
    const uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e; // 14 ..= 24
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    q += rem > half || (rem == half && (q & 1u));
    return sign | (uint16_t)q;
}

} // namespace zo_emu

struct __nv_bfloat16 {
    uint16_t __x;
    __nv_bfloat16() = default;
    __nv_bfloat16(float f) : __x(zo_emu::f32_to_bf16_bits(f)) {}
    operator float() const { return zo_emu::bf16_bits_to_f32(__x); }
};

struct __half {
    uint16_t __x;
    __half() = default;
    __half(float f) : __x(zo_emu::f32_to_f16_bits(f)) {}
    operator float() const { return zo_emu::f16_bits_to_f32(__x); }
};

inline float __bfloat162float(__nv_bfloat16 h) { return zo_emu::bf16_bits_to_f32(h.__x); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    __nv_bfloat16 h;
    h.__x = zo_emu::f32_to_bf16_bits(f);
    return h;
}
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short x) {
    __nv_bfloat16 h;
    h.__x = x;
    return h;
}

inline float __half2float(__half h) { return zo_emu::f16_bits_to_f32(h.__x); }
inline __half __float2half_rn(float f) {
    __half h;
    h.__x = zo_emu::f32_to_f16_bits(f);
    return h;
}
inline __half __float2half(float f) { return __float2half_rn(f); }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __ushort_as_half(unsigned short x) {
    __half h;
    h.__x = x;
    return h;
}

static_assert(sizeof(__nv_bfloat16) == 2 && std::is_trivially_copyable_v<__nv_bfloat16> &&
              std::is_trivially_default_constructible_v<__nv_bfloat16>);
static_assert(sizeof(__half) == 2 && std::is_trivially_copyable_v<__half> &&
              std::is_trivially_default_constructible_v<__half>);
