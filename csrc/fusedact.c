/* The extension's entry points: CPU feature detection and the choice of kernels (once, at
 * load), the thread pool, and the functions of fusedact.h that split work across it. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fa_internal.h"
#include "fusedact.h"

#define FA_ABI_VERSION 3

int fa_abi_version(void) { return FA_ABI_VERSION; }

/* ---- CPU features and the kernel table --------------------------------------------------- */

static const fa_kernels *const fa_tables[3] = {
    &fa_kernels_baseline,
#if defined(FA_X86_DISPATCH)
    &fa_kernels_avx2,
    &fa_kernels_avx512,
#else
    NULL,
    NULL,
#endif
};
static const char *const fa_level_names[3] = {"baseline", "avx2", "avx512"};

static int fa_detect_max_level(void)
{
#if defined(FA_X86_DISPATCH)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c"))
        return 1;
#endif
    return 0;
}

static int fa_max_level = -1;
static _Atomic(const fa_kernels *) fa_kern = NULL;
static atomic_int fa_level = 0;

static const fa_kernels *kern(void)
{
    const fa_kernels *k = atomic_load_explicit(&fa_kern, memory_order_acquire);
    if (k == NULL) {
        fa_simd_set_level(2);
        k = atomic_load_explicit(&fa_kern, memory_order_acquire);
    }
    return k;
}

int fa_simd_max_level(void)
{
    if (fa_max_level < 0)
        fa_max_level = fa_detect_max_level();
    return fa_max_level;
}

int fa_simd_set_level(int level)
{
    int max = fa_simd_max_level();
    if (level > max)
        level = max;
    if (level < 0)
        level = 0;
    atomic_store(&fa_level, level);
    atomic_store_explicit(&fa_kern, fa_tables[level], memory_order_release);
    return level;
}

int fa_simd_level(void)
{
    (void)kern();
    return atomic_load(&fa_level);
}

const char *fa_simd_name(int level)
{
    return (level >= 0 && level < 3) ? fa_level_names[level] : "unknown";
}

const char *fa_cpu_features(void)
{
    static char text[160];
    if (text[0])
        return text;
#if defined(FA_X86_DISPATCH)
    __builtin_cpu_init();
    snprintf(text, sizeof text, "sse2%s%s%s%s%s%s",
             __builtin_cpu_supports("avx2") ? " avx2" : "",
             __builtin_cpu_supports("fma") ? " fma" : "",
             __builtin_cpu_supports("avx512f") ? " avx512f" : "",
             __builtin_cpu_supports("avx512dq") ? " avx512dq" : "",
             __builtin_cpu_supports("avx512vl") ? " avx512vl" : "",
             __builtin_cpu_supports("avx512bw") ? " avx512bw" : "");
#else
    snprintf(text, sizeof text, "portable build (no runtime SIMD dispatch on this platform)");
#endif
    return text;
}

static const char *const fa_names[] = {
#define FA_NAME(name) #name,
    FA_ELEMENTWISE_OPS(FA_NAME)
#undef FA_NAME
};

int fa_op_count(void) { return FA_OP_COUNT; }

const char *fa_op_name(int op) { return (op >= 0 && op < FA_OP_COUNT) ? fa_names[op] : NULL; }

/* ---- thread pool ----------------------------------------------------------------------------
 * Persistent workers; a job is a range [0, n) cut into chunks that the caller's thread and the
 * workers claim with an atomic counter. After a job a worker spins for a while (about 100 us)
 * before it sleeps on a condition variable: waking a sleeping thread took 30-45 us here,
 * longer than a 65,536-element kernel, while back-to-back calls (a training loop) find a
 * spinning worker within a microsecond. One job runs at a time: a call that finds the pool
 * busy (another Python thread's job) runs its work on its own thread instead of waiting, so
 * concurrent calls never deadlock and stay correct.
 *
 * The caller waits only for the workers that joined its job, never for one that has not woken
 * yet: a worker joins by incrementing the job's ticket while it is open, and the caller, once
 * the chunks are all claimed, closes the ticket and waits for those inside to leave. A worker
 * late to wake (its core busy with another library's spinning OpenMP threads, or idle and
 * slow to resume) then costs nothing: the caller has run the chunks itself. Waiting for every
 * worker instead, float32 sigmoid backward on 262,144 elements with two threads took 83 us a
 * call interleaved with numba's calls and 203 us interleaved with PyTorch's (25 us alone). */

#define FA_MAX_THREADS 256
#define FA_SPIN_ROUNDS 4000
#define FA_TICKET_CLOSED 0x10000UL
#define FA_TICKET_INSIDE 0xFFFFUL

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FA_CPU_RELAX() _mm_pause()
#else
#define FA_CPU_RELAX() ((void)0)
#endif

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t done;
    int started;
    int sleepers;
    atomic_ulong generation;
    /* The job: written by the submitter before it publishes a new generation (release),
     * read by workers after they see it (acquire). */
    fa_range_fn fn;
    void *ctx;
    int64_t n, grain;
    int wanted;
    atomic_llong next;
    /* The job's ticket: FA_TICKET_CLOSED while no worker may join, and below it the number of
     * workers inside the job (at most FA_MAX_THREADS). */
    atomic_ulong ticket;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER, .ticket = FA_TICKET_CLOSED};

static pthread_mutex_t submit_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
/* The job generation current when each worker was created: a worker started for a job must
 * not take that job's generation as already seen (it would sleep through it and the caller
 * would wait forever). */
static unsigned long worker_start_generation[FA_MAX_THREADS];

static void run_chunks(fa_range_fn fn, void *ctx, int64_t n, int64_t grain)
{
    for (;;) {
        int64_t begin = (int64_t)atomic_fetch_add(&pool.next, (long long)grain);
        if (begin >= n)
            return;
        int64_t end = begin + grain < n ? begin + grain : n;
        fn(ctx, begin, end);
    }
}

static void *worker_main(void *arg)
{
    int id = (int)(intptr_t)arg;
    pthread_mutex_lock(&pool.lock);
    unsigned long seen = worker_start_generation[id];
    pthread_mutex_unlock(&pool.lock);
    for (;;) {
        unsigned long g = atomic_load_explicit(&pool.generation, memory_order_acquire);
        for (int spin = 0; g == seen && spin < FA_SPIN_ROUNDS; spin++) {
            FA_CPU_RELAX();
            g = atomic_load_explicit(&pool.generation, memory_order_acquire);
        }
        if (g == seen) {
            pthread_mutex_lock(&pool.lock);
            pool.sleepers++;
            while ((g = atomic_load_explicit(&pool.generation, memory_order_acquire)) == seen)
                pthread_cond_wait(&pool.wake, &pool.lock);
            pool.sleepers--;
            pthread_mutex_unlock(&pool.lock);
        }
        seen = g;
        /* Join the job if it is still open; the job's fields are read only from inside it
         * (the caller publishes them before opening the ticket and changes them only after
         * every worker inside has left). */
        unsigned long t = atomic_load_explicit(&pool.ticket, memory_order_acquire);
        int joined = 0;
        while (!(t & FA_TICKET_CLOSED) && !joined)
            joined = atomic_compare_exchange_weak_explicit(&pool.ticket, &t, t + 1,
                                                           memory_order_acq_rel,
                                                           memory_order_acquire);
        if (!joined)
            continue;
        if (id < pool.wanted)
            run_chunks(pool.fn, pool.ctx, pool.n, pool.grain);
        t = atomic_fetch_sub_explicit(&pool.ticket, 1, memory_order_acq_rel);
        if ((t & FA_TICKET_CLOSED) && (t & FA_TICKET_INSIDE) == 1) {
            pthread_mutex_lock(&pool.lock);
            pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.lock);
        }
    }
    return NULL;
}

/* In a forked child only the forking thread exists: forget the workers and start afresh. */
static void pool_after_fork_child(void)
{
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.done, NULL);
    pthread_mutex_init(&submit_lock, NULL);
    pool.started = 0;
    pool.sleepers = 0;
    pool.wanted = 0;
    atomic_store(&pool.ticket, FA_TICKET_CLOSED);
}

static void install_atfork(void) { pthread_atfork(NULL, NULL, pool_after_fork_child); }

/* Start workers until `want` exist; returns how many there are. Called with pool.lock held. */
static int ensure_workers(int want)
{
    while (pool.started < want) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        worker_start_generation[pool.started] = atomic_load(&pool.generation);
        int rc = pthread_create(&t, &attr, worker_main, (void *)(intptr_t)pool.started);
        pthread_attr_destroy(&attr);
        if (rc != 0)
            break;
        pool.started++;
    }
    return pool.started;
}

void fa_parallel_for(int64_t n, int64_t grain, int threads, fa_range_fn fn, void *ctx)
{
    if (n <= 0)
        return;
    if (grain < 1)
        grain = 1;
    int64_t chunks = (n + grain - 1) / grain;
    int t = threads;
    if (t > FA_MAX_THREADS)
        t = FA_MAX_THREADS;
    if ((int64_t)t > chunks)
        t = (int)chunks;
    if (t <= 1 || pthread_mutex_trylock(&submit_lock) != 0) {
        fn(ctx, 0, n);
        return;
    }
    pthread_once(&atfork_once, install_atfork);
    pthread_mutex_lock(&pool.lock);
    int workers = ensure_workers(t - 1);
    if (workers < t - 1)
        t = workers + 1;
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n = n;
    pool.grain = grain;
    pool.wanted = t - 1;
    atomic_store(&pool.next, 0);
    atomic_store_explicit(&pool.ticket, 0, memory_order_release); /* open, nobody inside */
    atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
    if (pool.sleepers > 0)
        pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    run_chunks(fn, ctx, n, grain);
    /* Every chunk is claimed: close the job to late workers, wait for those inside. */
    atomic_fetch_or_explicit(&pool.ticket, FA_TICKET_CLOSED, memory_order_acq_rel);
#define FA_INSIDE() (atomic_load_explicit(&pool.ticket, memory_order_acquire) & FA_TICKET_INSIDE)
    for (int spin = 0; FA_INSIDE() > 0 && spin < FA_SPIN_ROUNDS; spin++)
        FA_CPU_RELAX();
    if (FA_INSIDE() > 0) {
        pthread_mutex_lock(&pool.lock);
        while (FA_INSIDE() > 0)
            pthread_cond_wait(&pool.done, &pool.lock);
        pthread_mutex_unlock(&pool.lock);
    }
#undef FA_INSIDE
    pthread_mutex_unlock(&submit_lock);
}

/* Below this many elements a call runs on the caller's thread alone: waking a worker costs
 * about 5-10 us here, the time an elementwise kernel needs for ~30k elements (PyTorch's grain
 * is 32768 for the same reason). */
#define FA_PARALLEL_MIN 65536
/* Each thread gets about 4 chunks (load balance against a busy core), at least 16384
 * elements each, and chunk starts on 64-element boundaries (whole cache lines). */
static int64_t elem_grain(int64_t n, int threads)
{
    int64_t g = n / ((int64_t)threads * 4);
    if (g < 16384)
        g = 16384;
    return (g + 63) & ~(int64_t)63;
}

/* ---- streaming stores --------------------------------------------------------------------- */

/* Streaming stores. A call whose arrays together span fa_stream_min bytes or more cannot stay
 * in this machine's caches (32 MiB of L3, shared), so every output line a plain store writes
 * is first read from memory (read-for-ownership) and later written back: a fourth array of
 * traffic on a backward, a third on a forward. Non-temporal stores skip that read, as glibc's
 * memcpy does for copies this large. A kernel's stores are spread over many loops, most of
 * them auto-vectorised (where no streaming store can be asked for), so a streaming call has
 * the kernel write each block of FA_STREAM_BLOCK_BYTES to a buffer on the stack, which stays
 * in L1, and the target's stream_store moves the block out.
 *
 * It pays only where the kernel itself is cheap. Measured on one thread, 4,194,304 elements,
 * min of 9 interleaved rounds, plain / streamed: every backward of stream_pays below gained
 * (float32 1.06-1.23x, float64 1.03-1.35x; two threads 1.05-1.41x), and the clamp family's
 * forwards and derivative=True calls too (float64 1.19-1.42x; float32 0.86-1.33x, 1.06 on
 * average); but every op with an exponential lost 7-34 % (float32 sigmoid forward 0.70x, elu
 * backward 0.99x, gelu backward 0.84x), as did derivative=True of sigmoid and tanh: there the
 * memory traffic already overlapped the arithmetic, and the blocking breaks the kernel into
 * short calls. The block size is measured too: 1024 and 2048 bytes gained, 4096 and more
 * lost (float32 sigmoid backward: 1.31x and 1.17x; 0.74x and 0.92x at 4096 and 8192), as the
 * reads of one block and the writes of the one before stop overlapping. The limit is the
 * L3's size with a margin: a float32 forward at 4,194,304 (32 MiB in all) mostly stays in
 * this machine's 32 MiB L3 between calls (its copy ran at 100 GB/s on two threads), and
 * streaming it took relu, leaky_relu, relu6 and hardtanh from 360-480 us to 600 on two
 * threads; a float32 backward at that size (48 MiB) went from 78-88 % of the copy's speed
 * to 93-116 %, and at 2,097,152 (24 MiB) still gained 1.09-1.37x on one thread, but the
 * limit has to clear what a cache holds, not what it misses. */
#define FA_STREAM_MIN_BYTES_DEFAULT ((int64_t)40 << 20)
#ifndef FA_STREAM_BLOCK_BYTES
#define FA_STREAM_BLOCK_BYTES 2048
#endif
static _Atomic int64_t fa_stream_min = FA_STREAM_MIN_BYTES_DEFAULT;

int64_t fa_stream_min_bytes(int64_t bytes)
{
    if (bytes >= 0)
        atomic_store(&fa_stream_min, bytes);
    return atomic_load(&fa_stream_min);
}

/* The ops and modes whose kernels are cheap enough to gain from streaming (measured above).
 * Only x86 builds have a streaming store (fa_kernels.inc); elsewhere the block buffer would
 * only add a copy. */
static int stream_pays(int op, int mode)
{
#if defined(__x86_64__) || defined(__i386__)
    switch (op) {
    case FA_OP_relu: case FA_OP_leaky_relu: case FA_OP_relu6: case FA_OP_hardtanh:
        return 1;
    case FA_OP_sigmoid: case FA_OP_tanh: case FA_OP_hardsigmoid: case FA_OP_hardswish:
    case FA_OP_softsign:
        return mode == FA_BACKWARD;
    default:
        return 0;
    }
#else
    (void)op, (void)mode;
    return 0;
#endif
}

static int stream_limit_reached(int64_t bytes)
{
    return bytes >= atomic_load_explicit(&fa_stream_min, memory_order_relaxed);
}

static int stream_wanted(int op, int mode, int64_t bytes)
{
    return stream_pays(op, mode) && stream_limit_reached(bytes);
}

/* Orders this thread's streaming stores before whatever publishes its results (the pool's
 * release of a finished chunk, or the return to Python): non-temporal stores are weakly
 * ordered even on x86. */
static void stream_fence(void)
{
#if defined(__x86_64__) || defined(__i386__)
    _mm_sfence();
#endif
}

/* ---- elementwise -------------------------------------------------------------------------- */

typedef struct {
    int op, mode, f64, stream;
    const void *a, *b;
    void *o1, *o2;
    const double *params;
    const fa_kernels *k;
} ew_job;

/* The kernel on elements [begin, begin + n), its results written to o1 and o2 (the job's own
 * outputs at begin, or a streaming buffer). */
static void ew_call(const ew_job *j, int64_t begin, int64_t n, void *o1, void *o2)
{
    if (j->f64) {
        const double *a = j->a, *b = j->b;
        j->k->ew_f64(j->op, j->mode, a + begin, b ? b + begin : NULL, o1, o2, n, j->params);
    } else {
        const float *a = j->a, *b = j->b;
        j->k->ew_f32(j->op, j->mode, a + begin, b ? b + begin : NULL, o1, o2, n, j->params);
    }
}

/* Elements before the output's first 64-byte boundary. NumPy aligns data to 16 bytes, and
 * vector stores that straddle cache lines cost up to 40 % (float32 sigmoid, 256K, one thread,
 * AVX-512: 69 -> 97 us with the output 48 bytes past a line, input aligned; a misaligned
 * input alone costs little), so the head runs as a call of its own and the rest stores
 * aligned. Every element's result is the same wherever a call starts, so this changes no
 * value. */
static int64_t ew_head(const void *out, size_t elem, int64_t n)
{
    uintptr_t off = (uintptr_t)out & 63;
    if (n < 1024 || off == 0 || off % elem)
        return 0;
    return (int64_t)((64 - off) / elem);
}

static void ew_range(void *p, int64_t begin, int64_t end)
{
    const ew_job *j = p;
    size_t elem = j->f64 ? sizeof(double) : sizeof(float);
    char *o1 = j->o1, *o2 = j->o2;
    int64_t head = ew_head(o1 + (size_t)begin * elem, elem, end - begin);
    if (head)
        ew_call(j, begin, head, o1 + (size_t)begin * elem,
                o2 ? o2 + (size_t)begin * elem : NULL);
    begin += head;
    /* Streaming wants both outputs on 64-byte lines (the head aligned o1; o2 is aligned
     * whenever it sits at the same offset, as the outputs fusedact allocates do). */
    int aligned = (((uintptr_t)(o1 + (size_t)begin * elem) |
                    (o2 ? (uintptr_t)(o2 + (size_t)begin * elem) : 0)) & 63) == 0;
    if (!j->stream || !aligned) {
        ew_call(j, begin, end - begin, o1 + (size_t)begin * elem,
                o2 ? o2 + (size_t)begin * elem : NULL);
        return;
    }
    _Alignas(64) char buf1[FA_STREAM_BLOCK_BYTES], buf2[FA_STREAM_BLOCK_BYTES];
    const int64_t block = FA_STREAM_BLOCK_BYTES / (int64_t)elem;
    for (int64_t i = begin; i < end; i += block) {
        int64_t n = end - i < block ? end - i : block;
        ew_call(j, i, n, buf1, o2 ? buf2 : NULL);
        j->k->stream(o1 + (size_t)i * elem, buf1, n * (int64_t)elem);
        if (o2)
            j->k->stream(o2 + (size_t)i * elem, buf2, n * (int64_t)elem);
    }
    stream_fence();
}

static int elementwise(int f64, int op, int mode, const void *a, const void *b, void *o1,
                       void *o2, int64_t n, const double *params, int threads)
{
    if (op < 0 || op >= FA_OP_COUNT || mode < 0 || mode > 2)
        return -1;
    int64_t arrays = 2 + (b != NULL) + (o2 != NULL);
    int stream = stream_wanted(op, mode, arrays * n * (f64 ? 8 : 4));
    ew_job j = {op, mode, f64, stream, a, b, o1, o2, params, kern()};
    if (n < FA_PARALLEL_MIN || threads <= 1)
        ew_range(&j, 0, n);
    else
        fa_parallel_for(n, elem_grain(n, threads), threads, ew_range, &j);
    return 0;
}

int fa_elementwise_f32(int op, int mode, const float *a, const float *b, float *o1, float *o2,
                       int64_t n, const double *params, int threads)
{
    return elementwise(0, op, mode, a, b, o1, o2, n, params, threads);
}

int fa_elementwise_f64(int op, int mode, const double *a, const double *b, double *o1,
                       double *o2, int64_t n, const double *params, int threads)
{
    return elementwise(1, op, mode, a, b, o1, o2, n, params, threads);
}

/* ---- float16 ------------------------------------------------------------------------------
 * float16 data computed in float32 and rounded back (SPEC section 3), in one pass: each block
 * of FA_F16_BLOCK elements is widened into buffers that stay in L1, run through the float32
 * kernel and narrowed into the output. Through NumPy's casts, which convert an element at a
 * time (2.9 ms for 1,048,576 halves to float32 here), float16 sigmoid on 1,048,576 elements
 * cost 7.8 ms a call against PyTorch's 1.3; this way 0.66 ms. 2048 elements a block: four
 * 8 KiB buffers fit a 48 KiB L1 data cache, and the float32 kernel is selected and called
 * once a block. The values are those of the float32 kernel on the widened input, rounded
 * once to float16, as the Python path computes them. */
#define FA_F16_BLOCK 2048

typedef struct {
    int op, mode;
    const uint16_t *a, *b;
    uint16_t *o1, *o2;
    const double *params;
    const fa_kernels *k;
} f16_job;

static void f16_range(void *p, int64_t begin, int64_t end)
{
    const f16_job *j = p;
    _Alignas(64) float a[FA_F16_BLOCK], b[FA_F16_BLOCK], y[FA_F16_BLOCK], d[FA_F16_BLOCK];
    for (int64_t i = begin; i < end; i += FA_F16_BLOCK) {
        int64_t n = end - i < FA_F16_BLOCK ? end - i : FA_F16_BLOCK;
        j->k->f16_to_f32(j->a + i, a, n);
        if (j->b)
            j->k->f16_to_f32(j->b + i, b, n);
        /* the outputs are written only after both inputs are read: o1 may be a or b */
        j->k->ew_f32(j->op, j->mode, a, j->b ? b : NULL, y, j->o2 ? d : NULL, n, j->params);
        j->k->f32_to_f16(y, j->o1 + i, n);
        if (j->o2)
            j->k->f32_to_f16(d, j->o2 + i, n);
    }
}

int fa_elementwise_f16(int op, int mode, const uint16_t *a, const uint16_t *b, uint16_t *o1,
                       uint16_t *o2, int64_t n, const double *params, int threads)
{
    if (op < 0 || op >= FA_OP_COUNT || mode < 0 || mode > 2)
        return -1;
    f16_job j = {op, mode, a, b, o1, o2, params, kern()};
    if (n < FA_PARALLEL_MIN || threads <= 1)
        f16_range(&j, 0, n);
    else
        fa_parallel_for(n, elem_grain(n, threads), threads, f16_range, &j);
    return 0;
}

void fa_f16_to_f32(const uint16_t *src, float *dst, int64_t n) { kern()->f16_to_f32(src, dst, n); }
void fa_f32_to_f16(const float *src, uint16_t *dst, int64_t n) { kern()->f32_to_f16(src, dst, n); }

/* ---- row kernels -------------------------------------------------------------------------- */

static int64_t row_grain(int64_t rows, int64_t cols, int threads)
{
    int64_t per_thread = rows / ((int64_t)threads * 4);
    int64_t min_rows = 16384 / (cols > 0 ? cols : 1);
    if (per_thread < min_rows)
        per_thread = min_rows;
    return per_thread < 1 ? 1 : per_thread;
}

static int rows_parallel(int64_t rows, int64_t cols, int threads, fa_range_fn fn, void *ctx)
{
    if (rows * cols < FA_PARALLEL_MIN || threads <= 1)
        fn(ctx, 0, rows);
    else
        fa_parallel_for(rows, row_grain(rows, cols, threads), threads, fn, ctx);
    return 0;
}

typedef struct {
    int kind, f64, stream;
    const void *x, *g;
    void *y;
    int64_t cols;
    const fa_kernels *k;
} rows_job;

static void rows_call(const rows_job *j, int64_t begin, int64_t rows, void *y)
{
    int64_t off = begin * j->cols;
    if (j->f64)
        j->k->rows_f64(j->kind, (const double *)j->x + off,
                       j->g ? (const double *)j->g + off : NULL, y, rows, j->cols);
    else
        j->k->rows_f32(j->kind, (const float *)j->x + off,
                       j->g ? (const float *)j->g + off : NULL, y, rows, j->cols);
}

/* Streaming stores for the rows (above, "Streaming stores"), past the same limit: softmax's
 * backward only, the one row pass as cheap as the elementwise backwards that gain (y (g - dot)
 * after a dot product). Each row is computed into a stack buffer at the same offset from a
 * 64-byte line as its destination; its head before the first line is copied, the rest
 * streamed. Measured on one thread, float32, plain / streamed, medians of 25 (the middle of
 * five interleaved rounds): 4096 rows of 1024, 2007-2126 -> 1449-1515 us (two threads 1708 ->
 * 1163; float64 4491 -> 4145); 1024 rows of 4096, 2179 -> 1925; 512 rows of 8192 (32 KiB, the
 * largest row streamed, a whole L1 of buffer), 2573 -> 2154. */
#define FA_ROW_STREAM_MAX_BYTES 32768

static int rows_stream_wanted(int kind, int f64, int64_t rows, int64_t cols, const void *y)
{
#if defined(__x86_64__) || defined(__i386__)
    size_t elem = f64 ? sizeof(double) : sizeof(float);
    return kind == FA_ROWS_SOFTMAX_BWD && (uintptr_t)y % elem == 0 &&
           cols * (int64_t)elem <= FA_ROW_STREAM_MAX_BYTES &&
           stream_limit_reached(3 * rows * cols * (int64_t)elem);
#else
    (void)kind, (void)f64, (void)rows, (void)cols, (void)y;
    return 0;
#endif
}

static void rows_range(void *p, int64_t begin, int64_t end)
{
    const rows_job *j = p;
    size_t row_bytes = (size_t)j->cols * (j->f64 ? sizeof(double) : sizeof(float));
    char *y = (char *)j->y + (size_t)begin * row_bytes;
    if (!j->stream) {
        rows_call(j, begin, end - begin, y);
        return;
    }
    _Alignas(64) char buf[FA_ROW_STREAM_MAX_BYTES + 64];
    for (int64_t r = begin; r < end; r++, y += row_bytes) {
        size_t off = (uintptr_t)y & 63, head = off ? 64 - off : 0;
        char *row = buf + off;
        rows_call(j, r, 1, row);
        if (head > row_bytes)
            head = row_bytes;
        memcpy(y, row, head);
        j->k->stream(y + head, row + head, (int64_t)(row_bytes - head));
    }
    stream_fence();
}

int fa_rows_f32(int kind, const float *x, const float *g, float *y, int64_t rows, int64_t cols,
                int threads)
{
    if (kind < 0 || kind > 3)
        return -1;
    rows_job j = {kind, 0, rows_stream_wanted(kind, 0, rows, cols, y), x, g, y, cols, kern()};
    return rows_parallel(rows, cols, threads, rows_range, &j);
}

int fa_rows_f64(int kind, const double *x, const double *g, double *y, int64_t rows,
                int64_t cols, int threads)
{
    if (kind < 0 || kind > 3)
        return -1;
    rows_job j = {kind, 1, rows_stream_wanted(kind, 1, rows, cols, y), x, g, y, cols, kern()};
    return rows_parallel(rows, cols, threads, rows_range, &j);
}

/* ---- along a middle axis ------------------------------------------------------------------ */

/* A C-contiguous (outer, n, inner) array reduced along n, in blocks of `width` columns of one
 * outer index (fa_loops.inc, M(cols)). A block's n x width elements are read two or three
 * times (maximum, sums, scaling), so the width is chosen for the block to stay in L2 between
 * the passes (32 Ki elements: 128 KiB of float) but at least 16 columns, a 64-byte row piece.
 * 8 Ki and 128 Ki elements measured within this machine's noise of it (1024 x 1024 along
 * axis 0, 8 x 21 x 64 x 64 and 64 x 1000 x 49 along axis 1, float32, one thread). */
#define FA_COLS_BLOCK_ELEMS 32768

typedef struct {
    int kind, f64;
    const void *x, *g;
    void *y;
    int64_t n, inner, width, blocks;
    const fa_kernels *k;
} cols_job;

static void cols_range(void *p, int64_t begin, int64_t end)
{
    const cols_job *j = p;
    for (int64_t item = begin; item < end; item++) {
        int64_t o = item / j->blocks, first = item % j->blocks * j->width;
        int64_t width = j->inner - first < j->width ? j->inner - first : j->width;
        int64_t off = o * j->n * j->inner + first;
        if (j->f64)
            j->k->cols_f64(j->kind, (const double *)j->x + off,
                           j->g ? (const double *)j->g + off : NULL, (double *)j->y + off, j->n,
                           j->inner, width);
        else
            j->k->cols_f32(j->kind, (const float *)j->x + off,
                           j->g ? (const float *)j->g + off : NULL, (float *)j->y + off, j->n,
                           j->inner, width);
    }
}

static int along_axis(int kind, int f64, const void *x, const void *g, void *y, int64_t outer,
                      int64_t n, int64_t inner, int threads)
{
    if (kind < 0 || kind > 3 || outer < 0 || n < 0 || inner < 0 || ((kind & 2) && !g))
        return -1;
    if (outer == 0 || n == 0 || inner == 0)
        return 0;
    int64_t width = FA_COLS_BLOCK_ELEMS / n / 16 * 16;
    width = width < 16 ? 16 : width > FA_COLS_BLOCK ? FA_COLS_BLOCK : width;
    width = width > inner ? inner : width;
    int64_t blocks = (inner + width - 1) / width, items = outer * blocks;
    cols_job j = {kind, f64, x, g, y, n, inner, width, blocks, kern()};
    if (outer * n * inner < FA_PARALLEL_MIN || threads <= 1 || items < 2) {
        cols_range(&j, 0, items);
        return 0;
    }
    int64_t grain = items / ((int64_t)threads * 4), min_items = 16384 / (n * width);
    grain = grain < min_items ? min_items : grain;
    fa_parallel_for(items, grain < 1 ? 1 : grain, threads, cols_range, &j);
    return 0;
}

int fa_axis_f32(int kind, const float *x, const float *g, float *y, int64_t outer, int64_t n,
                int64_t inner, int threads)
{
    return along_axis(kind, 0, x, g, y, outer, n, inner, threads);
}

int fa_axis_f64(int kind, const double *x, const double *g, double *y, int64_t outer,
                int64_t n, int64_t inner, int threads)
{
    return along_axis(kind, 1, x, g, y, outer, n, inner, threads);
}

typedef struct {
    int f64;
    const void *z;
    const int64_t *labels;
    int64_t ignore;
    void *loss, *grad;
    int64_t cols;
    const fa_kernels *k;
} xent_job;

static void xent_range(void *p, int64_t begin, int64_t end)
{
    const xent_job *j = p;
    int64_t off = begin * j->cols;
    if (j->f64)
        j->k->xent_f64((const double *)j->z + off, j->labels + begin, j->ignore,
                       (double *)j->loss + begin, (double *)j->grad + off, end - begin, j->cols);
    else
        j->k->xent_f32((const float *)j->z + off, j->labels + begin, j->ignore,
                       (float *)j->loss + begin, (float *)j->grad + off, end - begin, j->cols);
}

int fa_softmax_xent_f32(const float *z, const int64_t *labels, int64_t ignore, float *loss,
                        float *grad, int64_t rows, int64_t cols, int threads)
{
    xent_job j = {0, z, labels, ignore, loss, grad, cols, kern()};
    return rows_parallel(rows, cols, threads, xent_range, &j);
}

int fa_softmax_xent_f64(const double *z, const int64_t *labels, int64_t ignore, double *loss,
                        double *grad, int64_t rows, int64_t cols, int threads)
{
    xent_job j = {1, z, labels, ignore, loss, grad, cols, kern()};
    return rows_parallel(rows, cols, threads, xent_range, &j);
}

/* ---- bias + activation -------------------------------------------------------------------- */

typedef struct {
    int op, f64;
    const void *g, *x, *bias;
    void *y;
    int64_t rows, cols, grain;
    const double *params;
    double *acc; /* backward: one row of cols doubles per chunk, summed in chunk order */
    const fa_kernels *k;
} bias_job;

static void bias_range(void *p, int64_t begin, int64_t end)
{
    const bias_job *j = p;
    int64_t off = begin * j->cols;
    if (j->f64)
        j->k->bias_f64(j->op, (const double *)j->x + off, j->bias, (double *)j->y + off,
                       end - begin, j->cols, j->params);
    else
        j->k->bias_f32(j->op, (const float *)j->x + off, j->bias, (float *)j->y + off,
                       end - begin, j->cols, j->params);
}

/* [begin, end) starts on a chunk boundary; each chunk of `grain` rows sums into its own row
 * of acc, however many chunks one call covers (the pool's fallback runs them all at once). */
static void bias_bwd_range(void *p, int64_t begin, int64_t end)
{
    const bias_job *j = p;
    for (int64_t r0 = begin; r0 < end; r0 += j->grain) {
        int64_t r1 = r0 + j->grain < end ? r0 + j->grain : end;
        int64_t off = r0 * j->cols;
        double *acc = j->acc + (r0 / j->grain) * j->cols;
        if (j->f64)
            j->k->bias_bwd_f64(j->op, (const double *)j->g + off, (const double *)j->x + off,
                               j->bias, (double *)j->y + off, acc, r1 - r0, j->cols,
                               j->params);
        else
            j->k->bias_bwd_f32(j->op, (const float *)j->g + off, (const float *)j->x + off,
                               j->bias, (float *)j->y + off, acc, r1 - r0, j->cols,
                               j->params);
    }
}

static int bias_act(int f64, int op, const void *x, const void *bias, void *y, int64_t rows,
                    int64_t cols, const double *params, int threads)
{
    if (op < -1 || op >= FA_OP_COUNT)
        return -1;
    bias_job j = {op, f64, NULL, x, bias, y, rows, cols, 0, params, NULL, kern()};
    return rows_parallel(rows, cols, threads, bias_range, &j);
}

int fa_bias_act_f32(int op, const float *x, const float *bias, float *y, int64_t rows,
                    int64_t cols, const double *params, int threads)
{
    return bias_act(0, op, x, bias, y, rows, cols, params, threads);
}

int fa_bias_act_f64(int op, const double *x, const double *bias, double *y, int64_t rows,
                    int64_t cols, const double *params, int threads)
{
    return bias_act(1, op, x, bias, y, rows, cols, params, threads);
}

static int bias_act_backward(int f64, int op, const void *g, const void *x, const void *bias,
                             void *gx, void *gb, int64_t rows, int64_t cols,
                             const double *params, int threads)
{
    if (op < -1 || op >= FA_OP_COUNT)
        return -1;
    int parallel = rows * cols >= FA_PARALLEL_MIN && threads > 1;
    /* Chunks of about 32K elements whatever the thread count, each with its own row of
     * column sums, added in chunk order below: grad_bias comes out bit for bit the same on
     * any number of threads (with the chunks sized by thread count, float64 results moved in
     * the last digits between 1 and 2 threads). The sums cost 8 bytes per 32K elements. */
    int64_t grain = 32768 / (cols > 0 ? cols : 1);
    grain = grain < 1 ? 1 : grain;
    int64_t chunks = (rows + grain - 1) / grain;
    if (chunks < 1)
        chunks = 1;
    double *acc = calloc((size_t)(chunks * cols > 0 ? chunks * cols : 1), sizeof(double));
    if (acc == NULL)
        return -2;
    bias_job j = {op, f64, g, x, bias, gx, rows, cols, grain, params, acc, kern()};
    if (parallel)
        fa_parallel_for(rows, grain, threads, bias_bwd_range, &j);
    else
        bias_bwd_range(&j, 0, rows);
    for (int64_t c = 1; c < chunks; c++)
        for (int64_t k = 0; k < cols; k++)
            acc[k] += acc[c * cols + k];
    for (int64_t k = 0; k < cols; k++) {
        if (f64)
            ((double *)gb)[k] = acc[k];
        else
            ((float *)gb)[k] = (float)acc[k];
    }
    free(acc);
    return 0;
}

int fa_bias_act_backward_f32(int op, const float *g, const float *x, const float *bias,
                             float *gx, float *gb, int64_t rows, int64_t cols,
                             const double *params, int threads)
{
    return bias_act_backward(0, op, g, x, bias, gx, gb, rows, cols, params, threads);
}

int fa_bias_act_backward_f64(int op, const double *g, const double *x, const double *bias,
                             double *gx, double *gb, int64_t rows, int64_t cols,
                             const double *params, int threads)
{
    return bias_act_backward(1, op, g, x, bias, gx, gb, rows, cols, params, threads);
}

/* ---- maxout (the loops: fa_loops.inc, compiled for each SIMD target) ---------------------- */

#define FA_MAXOUT(T, SUF)                                                                     \
    typedef struct {                                                                          \
        const T *g, *x;                                                                       \
        T *y;                                                                                 \
        int64_t groups, pieces;                                                               \
        const fa_kernels *k;                                                                  \
    } maxout_job_##SUF;                                                                       \
    static void maxout_range_##SUF(void *p, int64_t begin, int64_t end)                       \
    {                                                                                         \
        const maxout_job_##SUF *j = p;                                                        \
        j->k->maxout_##SUF(j->x, j->y, begin * j->groups, end * j->groups, j->pieces);        \
    }                                                                                         \
    static void maxout_bwd_range_##SUF(void *p, int64_t begin, int64_t end)                   \
    {                                                                                         \
        const maxout_job_##SUF *j = p;                                                        \
        j->k->maxout_bwd_##SUF(j->g, j->x, j->y, begin * j->groups, end * j->groups,          \
                               j->pieces);                                                    \
    }                                                                                         \
    int fa_maxout_##SUF(const T *x, T *y, int64_t rows, int64_t groups, int64_t pieces,       \
                        int threads)                                                          \
    {                                                                                         \
        maxout_job_##SUF j = {NULL, x, y, groups, pieces, kern()};                            \
        return rows_parallel(rows, groups * pieces, threads, maxout_range_##SUF, &j);         \
    }                                                                                         \
    int fa_maxout_backward_##SUF(const T *g, const T *x, T *gx, int64_t rows, int64_t groups, \
                                 int64_t pieces, int threads)                                 \
    {                                                                                         \
        maxout_job_##SUF j = {g, x, gx, groups, pieces, kern()};                              \
        return rows_parallel(rows, groups * pieces, threads, maxout_bwd_range_##SUF, &j);     \
    }

FA_MAXOUT(float, f32)
FA_MAXOUT(double, f64)

/* ---- benchmark baselines ------------------------------------------------------------------ */

typedef struct {
    const char *src;
    char *dst;
} copy_job;

static void copy_range(void *p, int64_t begin, int64_t end)
{
    const copy_job *j = p;
    memcpy(j->dst + begin, j->src + begin, (size_t)(end - begin));
}

int fa_copy(const void *src, void *dst, int64_t nbytes, int threads)
{
    copy_job j = {src, dst};
    if (nbytes < (int64_t)FA_PARALLEL_MIN * 4 || threads <= 1)
        copy_range(&j, 0, nbytes);
    else
        fa_parallel_for(nbytes, elem_grain(nbytes / 4, threads) * 4, threads, copy_range, &j);
    return 0;
}

#define FA_ADD(T, SUF)                                                                        \
    typedef struct {                                                                          \
        const T *a, *b;                                                                       \
        T *out;                                                                               \
    } add_job_##SUF;                                                                          \
    static void add_range_##SUF(void *p, int64_t begin, int64_t end)                          \
    {                                                                                         \
        const add_job_##SUF *j = p;                                                           \
        for (int64_t i = begin; i < end; i++)                                                 \
            j->out[i] = j->a[i] + j->b[i];                                                    \
    }                                                                                         \
    int fa_add_##SUF(const T *a, const T *b, T *out, int64_t n, int threads)                  \
    {                                                                                         \
        add_job_##SUF j = {a, b, out};                                                        \
        if (n < FA_PARALLEL_MIN || threads <= 1)                                              \
            add_range_##SUF(&j, 0, n);                                                        \
        else                                                                                  \
            fa_parallel_for(n, elem_grain(n, threads), threads, add_range_##SUF, &j);         \
        return 0;                                                                             \
    }

FA_ADD(float, f32)
FA_ADD(double, f64)
