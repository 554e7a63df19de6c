/* A C client of the kernel level on a GPU (ZO_KERNEL_CUDA) that owns everything zo runs on:
 * it loads the CUDA driver itself (dlopen: no CUDA headers, nothing linked), allocates the
 * device buffers, creates a stream of the primary context and captures a CUDA graph. Every
 * result is compared bit for bit with the same call on the host twin (ZO_KERNEL_HOST) on host
 * copies of the same inputs. Without a usable GPU it prints "skipped: <reason>" and exits 0.
 * With --host both sides are the host twin: where there is no GPU that still runs every call
 * and comparison of this client. Driven by tests/ffi_kernels.rs; prints one "ok" line per
 * check, then "kernels_gpu: ok". */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* The driver API as cuda.h declares it on 64-bit hosts, for the few entry points used. */
typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUstream_st *CUstream;
typedef struct CUgraph_st *CUgraph;
typedef struct CUgraphExec_st *CUgraphExec;
typedef struct CUgraphNode_st *CUgraphNode;

enum { CUDA_SUCCESS = 0, CU_STREAM_NON_BLOCKING = 1, CU_STREAM_CAPTURE_MODE_GLOBAL = 0 };

static struct {
    CUresult (*cuGetErrorName)(CUresult, const char **);
    CUresult (*cuInit)(unsigned);
    CUresult (*cuDeviceGetCount)(int *);
    CUresult (*cuDeviceGet)(CUdevice *, int);
    CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
    CUresult (*cuDevicePrimaryCtxRelease)(CUdevice);
    CUresult (*cuCtxSetCurrent)(CUcontext);
    CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
    CUresult (*cuMemFree)(CUdeviceptr);
    CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr, const void *, size_t, CUstream);
    CUresult (*cuMemcpyDtoHAsync)(void *, CUdeviceptr, size_t, CUstream);
    CUresult (*cuStreamCreate)(CUstream *, unsigned);
    CUresult (*cuStreamSynchronize)(CUstream);
    CUresult (*cuStreamDestroy)(CUstream);
    CUresult (*cuStreamBeginCapture)(CUstream, int);
    CUresult (*cuStreamEndCapture)(CUstream, CUgraph *);
    CUresult (*cuGraphGetNodes)(CUgraph, CUgraphNode *, size_t *);
    CUresult (*cuGraphInstantiateWithFlags)(CUgraphExec *, CUgraph, unsigned long long);
    CUresult (*cuGraphInstantiate)(CUgraphExec *, CUgraph, CUgraphNode *, char *, size_t);
    CUresult (*cuGraphLaunch)(CUgraphExec, CUstream);
    CUresult (*cuGraphExecDestroy)(CUgraphExec);
    CUresult (*cuGraphDestroy)(CUgraph);
} cu;

static const char *cu_name(CUresult r) {
    const char *name = NULL;
    if (cu.cuGetErrorName == NULL || cu.cuGetErrorName(r, &name) != CUDA_SUCCESS || !name)
        return "unknown CUresult";
    return name;
}

#define CU(call)                                                                              \
    do {                                                                                      \
        CUresult r_ = (call);                                                                 \
        if (r_ != CUDA_SUCCESS) {                                                             \
            fprintf(stderr, "%s:%d: %s failed: %s (%d)\n", __FILE__, __LINE__, #call,         \
                    cu_name(r_), r_);                                                         \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

/* dlsym hands back an object pointer; copying its bytes into the function pointer is the
 * conversion POSIX guarantees, without the cast C leaves undefined. */
_Static_assert(sizeof(void *) == sizeof(CUresult (*)(void)), "function pointers");

static int resolve(void *lib, const char *name, void *fn) {
    void *p = dlsym(lib, name);
    if (p) memcpy(fn, &p, sizeof p);
    return p != NULL;
}

/* The versioned symbol where the driver exports one: the plain name is the CUDA 3.x ABI
 * (32-bit sizes) or absent. */
static void require(void *lib, const char *name, const char *fallback, void *fn) {
    if (resolve(lib, name, fn)) return;
    EXPECT(fallback && resolve(lib, fallback, fn), "libcuda has no %s%s%s", name,
           fallback ? " nor " : "", fallback ? fallback : "");
}

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes);
    EXPECT(p, "out of memory (%zu bytes)", bytes);
    return p;
}

/* One side of a comparison: the host twin on host memory, or the GPU on device buffers and the
 * stream this client created. */
typedef struct {
    const char *name;
    zo_kernel_target target;
    CUstream stream; /* NULL on the host */
} side;

static CUdeviceptr dptr(const void *p) { return (CUdeviceptr)(uintptr_t)p; }

/* Copies go on the client's own stream: a synchronous cuMemcpy from pageable memory may return
 * before its DMA lands and is not ordered with a non-blocking stream. */
static void overwrite(const side *s, void *dst, const void *src, size_t bytes) {
    if (!s->stream) {
        memcpy(dst, src, bytes);
        return;
    }
    CU(cu.cuMemcpyHtoDAsync(dptr(dst), src, bytes, s->stream));
    CU(cu.cuStreamSynchronize(s->stream));
}

static void *put(const side *s, const void *src, size_t bytes) {
    void *p;
    if (!s->stream) {
        p = xmalloc(bytes);
    } else {
        CUdeviceptr d;
        CU(cu.cuMemAlloc(&d, bytes));
        p = (void *)(uintptr_t)d;
    }
    overwrite(s, p, src, bytes);
    return p;
}

/* A host copy of `bytes` at `src`, after the stream's work so far. */
static void *get(const side *s, const void *src, size_t bytes) {
    void *out = xmalloc(bytes);
    if (!s->stream) {
        memcpy(out, src, bytes);
    } else {
        CU(cu.cuMemcpyDtoHAsync(out, dptr(src), bytes, s->stream));
        CU(cu.cuStreamSynchronize(s->stream));
    }
    return out;
}

static void release(const side *s, void *p) {
    if (!s->stream)
        free(p);
    else
        CU(cu.cuMemFree(dptr(p)));
}

/* `got` (of side `s`) equals `want` (the host twin's) bit for bit: n elements of elem bytes. */
static void same(const side *s, const char *what, const void *got, const void *want, size_t n,
                 size_t elem) {
    for (size_t i = 0; i < n; i++) {
        const unsigned char *g = (const unsigned char *)got + i * elem;
        const unsigned char *w = (const unsigned char *)want + i * elem;
        if (memcmp(g, w, elem) == 0) continue;
        if (elem == 4) {
            uint32_t gb, wb;
            float gf, wf;
            memcpy(&gb, g, 4);
            memcpy(&wb, w, 4);
            memcpy(&gf, g, 4);
            memcpy(&wf, w, 4);
            EXPECT(0, "%s: element %zu differs: %s 0x%08x (%.9g), host 0x%08x (%.9g)", what, i,
                   s->name, gb, gf, wb, wf);
        }
        uint16_t gh, wh;
        memcpy(&gh, g, 2);
        memcpy(&wh, w, 2);
        EXPECT(0, "%s: element %zu differs: %s 0x%04x, host 0x%04x", what, i, s->name, gh, wh);
    }
    printf("ok %s: %s == host bit for bit (%zu elements)\n", what, s->name, n);
}

static uint64_t splitmix(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-scale, scale), exactly representable. */
static float uniform(uint64_t *state, float scale) {
    return scale * ((float)(splitmix(state) >> 40) / 8388608.0f - 1.0f);
}

/* Random finite 16-bit values near 1 in magnitude: the bits themselves, so that both sides
 * start from the same values without a conversion to trust. */
static uint16_t bits16(uint64_t *state, int32_t dtype) {
    uint64_t r = splitmix(state);
    uint16_t sign = (uint16_t)((r & 1u) << 15);
    if (dtype == ZO_DTYPE_BF16) /* exponent 124..127, 7 mantissa bits */
        return (uint16_t)(sign | ((124u + ((r >> 1) & 3u)) << 7) | ((r >> 3) & 0x7fu));
    /* f16: exponent 12..15, 10 mantissa bits */
    return (uint16_t)(sign | ((12u + ((r >> 1) & 3u)) << 10) | ((r >> 3) & 0x3ffu));
}

enum { Q = 3, ROWS = 6, COLS = 200, LD = 203, N = (ROWS - 1) * LD + COLS, TENSOR = 42 };

static void fill_dirs(uint64_t base, float lr, zo_kernel_update_dir *dirs) {
    uint64_t seeds[Q];
    float coefs[Q];
    for (int d = 0; d < Q; d++) {
        seeds[d] = base + (uint64_t)d * 0x9e3779b97f4a7c15ull;
        coefs[d] = -(lr * (2.5f - 1.7f * (float)d)) / (float)Q;
    }
    CHECK(zo_kernel_update_dirs_fill(seeds, coefs, Q, dirs));
}

/* theta0 after one seeded update on side s. */
static void *axpy(const side *s, const zo_kernel_axpy_params *p, const void *theta0,
                  size_t bytes, const zo_kernel_update_dir *dirs) {
    void *t = put(s, theta0, bytes);
    void *d = put(s, dirs, Q * sizeof *dirs);
    CHECK(zo_kernel_seeded_axpy(&s->target, p, t, N, d, Q));
    void *out = get(s, t, bytes);
    release(s, t);
    release(s, d);
    return out;
}

static const char *dtype_name(int32_t dtype) {
    return dtype == ZO_DTYPE_F32 ? "f32" : dtype == ZO_DTYPE_BF16 ? "bf16" : "f16";
}

static void axpy_checks(const side *dev, const side *host) {
    zo_kernel_update_dir dirs[Q];
    fill_dirs(0xabcd00001234ull, 0.25f, dirs);
    const int32_t dtypes[] = {ZO_DTYPE_F32, ZO_DTYPE_BF16, ZO_DTYPE_F16};
    for (size_t k = 0; k < sizeof dtypes / sizeof dtypes[0]; k++) {
        for (int32_t dist = ZO_DIST_GAUSSIAN; dist <= ZO_DIST_RADEMACHER; dist++) {
            int32_t dtype = dtypes[k];
            size_t elem = dtype == ZO_DTYPE_F32 ? 4 : 2, bytes = N * elem;
            uint64_t rng = 7 + (uint64_t)(k * 2 + (size_t)dist);
            /* The padding columns get values too: both sides must leave them alike. */
            unsigned char *theta0 = xmalloc(bytes);
            for (size_t e = 0; e < N; e++) {
                if (dtype == ZO_DTYPE_F32) {
                    float v = uniform(&rng, 1.0f);
                    memcpy(theta0 + 4 * e, &v, 4);
                } else {
                    uint16_t h = bits16(&rng, dtype);
                    memcpy(theta0 + 2 * e, &h, 2);
                }
            }
            zo_kernel_axpy_params p = zo_kernel_axpy_default_params();
            p.dtype = dtype;
            p.dist = dist;
            p.tensor_id = TENSOR;
            p.rows = ROWS;
            p.cols = COLS;
            p.ld = LD;
            p.decay = 0.025f;
            void *want = axpy(host, &p, theta0, bytes, dirs);
            /* Equal outputs would prove nothing if the update left the tensor as it was. */
            EXPECT(memcmp(want, theta0, bytes) != 0, "the host update changed nothing");
            void *got = axpy(dev, &p, theta0, bytes, dirs);
            char what[96];
            snprintf(what, sizeof what, "seeded_axpy %s %s %dx%d ld %d", dtype_name(dtype),
                     dist == ZO_DIST_GAUSSIAN ? "gaussian" : "rademacher", ROWS, COLS, LD);
            same(dev, what, got, want, N, elem);
            free(want);
            free(got);
            free(theta0);
        }
    }
}

enum { LROWS = 5, VOCAB = 1000, LLD = 1003, NQ = 8 };

/* lse and the log-probs, one after the other, on side s. */
static float *logprobs(const side *s, const float *logits, const uint32_t *queries) {
    float init[LROWS + NQ];
    uint32_t sentinel = 0x7fe5a5a5u; /* a NaN neither side writes */
    for (size_t i = 0; i < LROWS + NQ; i++) memcpy(&init[i], &sentinel, 4);
    float *dl = put(s, logits, sizeof(float) * LROWS * LLD);
    uint32_t *dq = put(s, queries, sizeof(uint32_t) * 2 * NQ);
    float *dlse = put(s, init, sizeof(float) * LROWS);
    float *dlp = put(s, init, sizeof(float) * NQ);
    zo_kernel_logprob_params p = zo_kernel_logprob_default_params();
    p.rows = LROWS;
    p.vocab = VOCAB;
    p.ld = LLD;
    CHECK(zo_kernel_candidate_logprobs(&s->target, &p, dl, LROWS * LLD, dq, NQ, dlse, LROWS,
                                       dlp, NQ));
    float *lse = get(s, dlse, sizeof(float) * LROWS);
    float *lp = get(s, dlp, sizeof(float) * NQ);
    float *out = xmalloc(sizeof(float) * (LROWS + NQ));
    memcpy(out, lse, sizeof(float) * LROWS);
    memcpy(out + LROWS, lp, sizeof(float) * NQ);
    free(lse);
    free(lp);
    release(s, dl);
    release(s, dq);
    release(s, dlse);
    release(s, dlp);
    return out;
}

static void logprob_check(const side *dev, const side *host) {
    uint64_t rng = 99;
    float *logits = xmalloc(sizeof(float) * LROWS * LLD);
    for (size_t e = 0; e < (size_t)LROWS * LLD; e++) logits[e] = uniform(&rng, 8.0f);
    /* (row, token) pairs: the vocabulary's ends, a repeat, and two out of range (NaN). */
    const uint32_t queries[2 * NQ] = {0, 0,   0, VOCAB - 1, 2, 500, 4, 17,
                                      4, 17,  3, 999,       1, VOCAB, LROWS, 0};
    float *want = logprobs(host, logits, queries);
    float *got = logprobs(dev, logits, queries);
    for (int q = 0; q < NQ; q++) {
        int in_range = queries[2 * q] < LROWS && queries[2 * q + 1] < VOCAB;
        float v = want[LROWS + q];
        EXPECT(in_range ? v <= 0.0f : v != v, "host log-prob %d is %.9g", q, v);
    }
    char what[96];
    snprintf(what, sizeof what, "candidate_logprobs lse+logprobs %dx%d ld %d, %d queries",
             LROWS, VOCAB, LLD, NQ);
    same(dev, what, got, want, LROWS + NQ, 4);
    free(want);
    free(got);
    free(logits);
}

/* One f32 update captured into a CUDA graph, replayed twice, then once more after new
 * directions are written into the table the graph reads. */
static void graph_check(const side *dev, const side *host) {
    zo_kernel_update_dir dirs[Q], dirs2[Q];
    fill_dirs(0x5eed0000ull, 0.5f, dirs);
    fill_dirs(0x0dd5eed0ull, 0.125f, dirs2);
    float theta0[N];
    uint64_t rng = 1234;
    for (size_t e = 0; e < N; e++) theta0[e] = uniform(&rng, 0.5f);
    zo_kernel_axpy_params p = zo_kernel_axpy_default_params();
    p.tensor_id = TENSOR + 1;
    p.rows = ROWS;
    p.cols = COLS;
    p.ld = LD;
    p.decay = 0.01f;

    /* The host twin applied three times. */
    float *h = put(host, theta0, sizeof theta0);
    CHECK(zo_kernel_seeded_axpy(&host->target, &p, h, N, dirs, Q));
    CHECK(zo_kernel_seeded_axpy(&host->target, &p, h, N, dirs, Q));
    float *want2 = get(host, h, sizeof theta0);
    CHECK(zo_kernel_seeded_axpy(&host->target, &p, h, N, dirs2, Q));
    float *want3 = get(host, h, sizeof theta0);
    release(host, h);
    EXPECT(memcmp(want2, theta0, sizeof theta0) != 0 && memcmp(want3, want2, sizeof theta0) != 0,
           "a host update changed nothing");

    float *t = put(dev, theta0, sizeof theta0);
    zo_kernel_update_dir *d = put(dev, dirs, sizeof dirs);
    float *got2, *got3;
    if (!dev->stream) {
        CHECK(zo_kernel_seeded_axpy(&dev->target, &p, t, N, d, Q));
        CHECK(zo_kernel_seeded_axpy(&dev->target, &p, t, N, d, Q));
        got2 = get(dev, t, sizeof theta0);
        overwrite(dev, d, dirs2, sizeof dirs2);
        CHECK(zo_kernel_seeded_axpy(&dev->target, &p, t, N, d, Q));
        got3 = get(dev, t, sizeof theta0);
    } else {
        CUgraph graph;
        CUgraphExec exec;
        /* Global mode: any call zo made that a capture forbids, from any thread, fails it. */
        CU(cu.cuStreamBeginCapture(dev->stream, CU_STREAM_CAPTURE_MODE_GLOBAL));
        zo_status s = zo_kernel_seeded_axpy(&dev->target, &p, t, N, d, Q);
        CUresult end = cu.cuStreamEndCapture(dev->stream, &graph);
        CHECK(s);
        CU(end);
        size_t nodes = 0;
        CU(cu.cuGraphGetNodes(graph, NULL, &nodes));
        EXPECT(nodes >= 1, "the captured graph is empty: the launch escaped the capture");
        /* A launch that escaped the capture (another stream) would have run by now. */
        float *after = get(dev, t, sizeof theta0);
        char what[96];
        snprintf(what, sizeof what, "graph capture recorded %zu node(s) and ran nothing", nodes);
        same(dev, what, after, theta0, N, 4);
        free(after);
        if (cu.cuGraphInstantiateWithFlags)
            CU(cu.cuGraphInstantiateWithFlags(&exec, graph, 0));
        else
            CU(cu.cuGraphInstantiate(&exec, graph, NULL, NULL, 0));
        overwrite(dev, t, theta0, sizeof theta0);
        CU(cu.cuGraphLaunch(exec, dev->stream));
        CU(cu.cuGraphLaunch(exec, dev->stream));
        got2 = get(dev, t, sizeof theta0);
        overwrite(dev, d, dirs2, sizeof dirs2);
        CU(cu.cuGraphLaunch(exec, dev->stream));
        got3 = get(dev, t, sizeof theta0);
        CU(cu.cuGraphExecDestroy(exec));
        CU(cu.cuGraphDestroy(graph));
    }
    same(dev, "graph replayed twice == two host updates", got2, want2, N, 4);
    same(dev, "graph replayed with new directions == a third host update", got3, want3, N, 4);
    release(dev, t);
    release(dev, d);
    free(want2);
    free(want3);
    free(got2);
    free(got3);
}

static char reason[1024];

/* Opens GPU 0 for this client and zo: NULL, or why there is no usable GPU. Failures of a GPU
 * that is there exit. */
static const char *open_gpu(side *dev, CUdevice *device, CUcontext *ctx) {
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        char first[512];
        snprintf(first, sizeof first, "%s", dlerror());
        lib = dlopen("libcuda.so", RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            snprintf(reason, sizeof reason, "no CUDA driver: %s; %s", first, dlerror());
            return reason;
        }
    }
    if (!resolve(lib, "cuInit", &cu.cuInit) ||
        !resolve(lib, "cuDeviceGetCount", &cu.cuDeviceGetCount)) {
        snprintf(reason, sizeof reason, "libcuda has no cuInit or cuDeviceGetCount");
        return reason;
    }
    resolve(lib, "cuGetErrorName", &cu.cuGetErrorName);
    CUresult r = cu.cuInit(0);
    if (r != CUDA_SUCCESS) {
        snprintf(reason, sizeof reason, "cuInit failed: %s (%d)", cu_name(r), r);
        return reason;
    }
    int count = 0;
    CU(cu.cuDeviceGetCount(&count));
    if (count < 1) {
        snprintf(reason, sizeof reason, "the CUDA driver reports no GPU");
        return reason;
    }

    require(lib, "cuDeviceGet", NULL, &cu.cuDeviceGet);
    require(lib, "cuDevicePrimaryCtxRetain", NULL, &cu.cuDevicePrimaryCtxRetain);
    require(lib, "cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease",
            &cu.cuDevicePrimaryCtxRelease);
    require(lib, "cuCtxSetCurrent", NULL, &cu.cuCtxSetCurrent);
    require(lib, "cuMemAlloc_v2", NULL, &cu.cuMemAlloc);
    require(lib, "cuMemFree_v2", NULL, &cu.cuMemFree);
    require(lib, "cuMemcpyHtoDAsync_v2", NULL, &cu.cuMemcpyHtoDAsync);
    require(lib, "cuMemcpyDtoHAsync_v2", NULL, &cu.cuMemcpyDtoHAsync);
    require(lib, "cuStreamCreate", NULL, &cu.cuStreamCreate);
    require(lib, "cuStreamSynchronize", NULL, &cu.cuStreamSynchronize);
    require(lib, "cuStreamDestroy_v2", "cuStreamDestroy", &cu.cuStreamDestroy);
    require(lib, "cuStreamBeginCapture_v2", "cuStreamBeginCapture", &cu.cuStreamBeginCapture);
    require(lib, "cuStreamEndCapture", NULL, &cu.cuStreamEndCapture);
    require(lib, "cuGraphGetNodes", NULL, &cu.cuGraphGetNodes);
    /* cuGraphInstantiate of CUDA 12's header is WithFlags; the exported plain and _v2 symbols
     * keep the older five-argument form. */
    if (!resolve(lib, "cuGraphInstantiateWithFlags", &cu.cuGraphInstantiateWithFlags))
        require(lib, "cuGraphInstantiate_v2", "cuGraphInstantiate", &cu.cuGraphInstantiate);
    require(lib, "cuGraphLaunch", NULL, &cu.cuGraphLaunch);
    require(lib, "cuGraphExecDestroy", NULL, &cu.cuGraphExecDestroy);
    require(lib, "cuGraphDestroy", NULL, &cu.cuGraphDestroy);

    CU(cu.cuDeviceGet(device, 0));
    /* zo launches in the primary context, so the stream and buffers must belong to it. */
    CU(cu.cuDevicePrimaryCtxRetain(ctx, *device));
    CU(cu.cuCtxSetCurrent(*ctx));
    CU(cu.cuStreamCreate(&dev->stream, CU_STREAM_NON_BLOCKING));
    dev->name = "cuda";
    dev->target = zo_kernel_target_default_params();
    dev->target.device = ZO_KERNEL_CUDA;
    dev->target.ordinal = 0;
    dev->target.stream = dev->stream;

    /* Before any launch: the graph capture below must find the kernels loaded. */
    zo_status s = zo_kernel_prepare(&dev->target);
    if (s == ZO_ERR_UNSUPPORTED) {
        snprintf(reason, sizeof reason, "%s", zo_last_error());
        return reason;
    }
    CHECK(s);
    printf("ok zo_kernel_prepare on GPU 0\n");
    return NULL;
}

int main(int argc, char **argv) {
    int host_only = argc > 1 && strcmp(argv[1], "--host") == 0;
    EXPECT(argc == 1 || (argc == 2 && host_only), "usage: %s [--host]", argv[0]);
    side host = {"host", zo_kernel_target_default_params(), NULL};
    host.target.device = ZO_KERNEL_HOST;
    side dev = host;
    dev.name = "host-as-device";
    CUdevice device = 0;
    CUcontext ctx = NULL;
    if (!host_only) {
        const char *why = open_gpu(&dev, &device, &ctx);
        if (why) {
            printf("skipped: %s\n", why);
            return 0;
        }
    }

    axpy_checks(&dev, &host);
    logprob_check(&dev, &host);
    graph_check(&dev, &host);

    if (dev.stream) {
        CU(cu.cuStreamDestroy(dev.stream));
        CU(cu.cuDevicePrimaryCtxRelease(device));
    }
    printf("kernels_gpu: ok\n");
    return 0;
}
