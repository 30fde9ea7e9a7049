/* fusedact._fastpath: the c backend's entry for plain elementwise calls (and softmax and
 * log_softmax along the last axis, bias_act and softmax_cross_entropy), written in the
 * CPython C API.
 *
 * Why it exists: through cffi a call on 1024 float32 elements cost 2.6 us, of which the
 * kernel is 0.26; the rest is Python: two ffi.from_buffer (0.17 us each), the cffi call
 * (0.28), np.empty_like (0.29), the dispatcher and the checks. PyTorch's torch.sigmoid on the
 * same array takes 1.5 us. This module does, in C, exactly what the Python fast path did for
 * the most common call (an aligned, native float32/float64 ndarray, C-contiguous or for the
 * elementwise ops in any layout (see run), parameters at their defaults or given as Python
 * floats or ints, no out= or an out= it can write directly) and answers None for anything
 * else,
 * which the caller then sends down the general Python path. Large calls come here too: the
 * Python path cost 6-7 us more a call at 262,144 float32 elements, a quarter of a
 * memory-bound op (relu forward: 30.4 us through it, 23.5 us here, the speed of a copy).
 *
 * It holds no kernel code: it calls fa_elementwise_f32/f64 of the cffi extension through
 * pointers that the c backend hands over with bind(), so both entries run the same code.
 * A "slot" is a public elementwise function (numbered by fusedact._api); bind_slot() gives it
 * the op id and parameter block that the dispatcher chose for it, and only once the
 * dispatcher has chosen the c backend for that op on its own ('auto' or FUSEDACT_BACKEND=c).
 * While any use_backend() block is open, suspend() turns every such slot off. The same
 * function called with backend="c" uses slot + KEYWORD_BASE, bound the first time the
 * dispatcher resolves that keyword for the op; the keyword outranks use_backend(), so these
 * slots are never suspended. Without them, backend="c" (as every benchmark calls it) took
 * the Python path unless some plain call had bound the op first: float32 relu at 262,144,
 * 30.5 us a call in bench/targets.py against 23.4 for the plain call.
 *
 * softmax and log_softmax (axis=-1) come here the same way, through fa_rows_f32/f64 (a slot
 * bound by bind_row_slot): through the Python layers their calls cost 8.5 us more at 256 x
 * 1024 float32 (softmax backward 63.2 us against 54.5 for the bare cffi call) and 5.6 us a
 * call at 4 x 64. An exact int axis other than the last (given after out=, as a parameter)
 * runs fa_axis_f32/f64 on C-contiguous arrays: 32 x 32 float32 along axis 0 took 9-12 us a
 * call through the Python layers, PyTorch 4.0-4.8.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>
#include <stdint.h>
#include <stdlib.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

typedef int (*ew_f32_fn)(int op, int mode, const float *a, const float *b, float *o1,
                         float *o2, int64_t n, const double *params, int threads);
typedef int (*ew_f64_fn)(int op, int mode, const double *a, const double *b, double *o1,
                         double *o2, int64_t n, const double *params, int threads);
typedef int (*ew_f16_fn)(int op, int mode, const uint16_t *a, const uint16_t *b, uint16_t *o1,
                         uint16_t *o2, int64_t n, const double *params, int threads);

typedef int (*rows_f32_fn)(int kind, const float *x, const float *g, float *y, int64_t rows,
                           int64_t cols, int threads);
typedef int (*rows_f64_fn)(int kind, const double *x, const double *g, double *y,
                           int64_t rows, int64_t cols, int threads);
typedef int (*axis_f32_fn)(int kind, const float *x, const float *g, float *y, int64_t outer,
                           int64_t n, int64_t inner, int threads);
typedef int (*axis_f64_fn)(int kind, const double *x, const double *g, double *y,
                           int64_t outer, int64_t n, int64_t inner, int threads);

/* The fused ops (bias_act and its backward, softmax_cross_entropy) and maxout, as fusedact.h
 * has them. */
typedef int (*bias_f32_fn)(int op, const float *x, const float *bias, float *y, int64_t rows,
                           int64_t cols, const double *params, int threads);
typedef int (*bias_f64_fn)(int op, const double *x, const double *bias, double *y,
                           int64_t rows, int64_t cols, const double *params, int threads);
typedef int (*bias_bwd_f32_fn)(int op, const float *g, const float *x, const float *bias,
                               float *gx, float *gb, int64_t rows, int64_t cols,
                               const double *params, int threads);
typedef int (*bias_bwd_f64_fn)(int op, const double *g, const double *x, const double *bias,
                               double *gx, double *gb, int64_t rows, int64_t cols,
                               const double *params, int threads);
typedef int (*xent_f32_fn)(const float *z, const int64_t *labels, int64_t ignore, float *loss,
                           float *grad, int64_t rows, int64_t cols, int threads);
typedef int (*xent_f64_fn)(const double *z, const int64_t *labels, int64_t ignore,
                           double *loss, double *grad, int64_t rows, int64_t cols, int threads);

typedef int (*maxout_f32_fn)(const float *x, float *y, int64_t rows, int64_t groups,
                             int64_t pieces, int threads);
typedef int (*maxout_f64_fn)(const double *x, double *y, int64_t rows, int64_t groups,
                             int64_t pieces, int threads);
typedef int (*maxout_bwd_f32_fn)(const float *g, const float *x, float *gx, int64_t rows,
                                 int64_t groups, int64_t pieces, int threads);
typedef int (*maxout_bwd_f64_fn)(const double *g, const double *x, double *gx, int64_t rows,
                                 int64_t groups, int64_t pieces, int threads);

#define SLOT_COUNT 256
#define MAX_GIVEN 2 /* the most numeric parameters an elementwise op takes (hardtanh, softplus) */
#define BLOCK_DOUBLES 4 /* the parameter block the kernels read (fusedact.h) */
#define KEYWORD_BASE 128 /* slots from here on serve backend="c" */

enum slot_kind { SLOT_ELEMENTWISE, SLOT_ROWS, SLOT_BIAS, SLOT_XENT, SLOT_MAXOUT };

typedef struct {
    int op; /* -1: unbound, the call goes the Python way */
    int kind; /* enum slot_kind */
    int rows_kind; /* SLOT_ROWS: 0 softmax, 1 log_softmax (the forward's kind) */
    int act; /* SLOT_BIAS: the activation's op id, -1 for the identity */
    const double *params; /* SLOT_ELEMENTWISE and SLOT_BIAS: the default parameters' block */
    /* SLOT_ELEMENTWISE and SLOT_BIAS calls that give their parameters (see given_params) */
    int nparams;  /* how many numeric parameters the op takes, 0..2 */
    int param_op; /* the kernel for given values; -1: such calls go the Python way */
    int unit_op;  /* the kernel when the one parameter is 1.0 (swish's silu), else -1 */
    int nonzero;  /* bit i: parameter i must not be 0 (celu's alpha, softplus's beta) */
} slot_t;

static slot_t slots[SLOT_COUNT];
static ew_f32_fn ew_f32;
static ew_f64_fn ew_f64;
static ew_f16_fn ew_f16; /* NULL: float16 calls go the Python way */
static rows_f32_fn rows_f32;
static rows_f64_fn rows_f64;
static axis_f32_fn axis_f32;
static axis_f64_fn axis_f64;
static struct {
    bias_f32_fn f32;
    bias_f64_fn f64;
    bias_bwd_f32_fn bwd_f32;
    bias_bwd_f64_fn bwd_f64;
    xent_f32_fn xent_f32;
    xent_f64_fn xent_f64;
    maxout_f32_fn maxout_f32;
    maxout_f64_fn maxout_f64;
    maxout_bwd_f32_fn maxout_bwd_f32;
    maxout_bwd_f64_fn maxout_bwd_f64;
} fused;
static npy_intp align_min = -1; /* outputs of this many elements or more are aligned */
static int threads = 1;         /* fusedact.set_num_threads(), passed on by _threads */
static long suspended;          /* open use_backend() blocks */

static PyObject *bind(PyObject *self, PyObject *args)
{
    unsigned long long f32, f64, f16 = 0;
    Py_ssize_t min_aligned;
    if (!PyArg_ParseTuple(args, "KKn|K:bind", &f32, &f64, &min_aligned, &f16))
        return NULL;
    ew_f32 = (ew_f32_fn)(uintptr_t)f32;
    ew_f64 = (ew_f64_fn)(uintptr_t)f64;
    ew_f16 = (ew_f16_fn)(uintptr_t)f16;
    align_min = min_aligned;
    Py_RETURN_NONE;
}

static PyObject *bind_rows(PyObject *self, PyObject *args)
{
    unsigned long long f32, f64, a32, a64;
    if (!PyArg_ParseTuple(args, "KKKK:bind_rows", &f32, &f64, &a32, &a64))
        return NULL;
    rows_f32 = (rows_f32_fn)(uintptr_t)f32;
    rows_f64 = (rows_f64_fn)(uintptr_t)f64;
    axis_f32 = (axis_f32_fn)(uintptr_t)a32;
    axis_f64 = (axis_f64_fn)(uintptr_t)a64;
    Py_RETURN_NONE;
}

static PyObject *bind_fused(PyObject *self, PyObject *args)
{
    unsigned long long a[10];
    if (!PyArg_ParseTuple(args, "KKKKKKKKKK:bind_fused", &a[0], &a[1], &a[2], &a[3], &a[4],
                          &a[5], &a[6], &a[7], &a[8], &a[9]))
        return NULL;
    fused.f32 = (bias_f32_fn)(uintptr_t)a[0];
    fused.f64 = (bias_f64_fn)(uintptr_t)a[1];
    fused.bwd_f32 = (bias_bwd_f32_fn)(uintptr_t)a[2];
    fused.bwd_f64 = (bias_bwd_f64_fn)(uintptr_t)a[3];
    fused.xent_f32 = (xent_f32_fn)(uintptr_t)a[4];
    fused.xent_f64 = (xent_f64_fn)(uintptr_t)a[5];
    fused.maxout_f32 = (maxout_f32_fn)(uintptr_t)a[6];
    fused.maxout_f64 = (maxout_f64_fn)(uintptr_t)a[7];
    fused.maxout_bwd_f32 = (maxout_bwd_f32_fn)(uintptr_t)a[8];
    fused.maxout_bwd_f64 = (maxout_bwd_f64_fn)(uintptr_t)a[9];
    Py_RETURN_NONE;
}

static PyObject *set_threads(PyObject *self, PyObject *arg)
{
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 1 || n > 4096) {
        PyErr_Format(PyExc_ValueError, "set_threads: expected 1..4096, got %ld", n);
        return NULL;
    }
    threads = (int)n;
    Py_RETURN_NONE;
}

/* bind_slot(slot, op, params_address, nparams=0, param_op=-1, unit_op=-1, nonzero=0): an
 * elementwise slot's kernel and default parameters' block, and how calls that give their
 * parameters run (the fields of slot_t). */
static PyObject *bind_slot(PyObject *self, PyObject *args)
{
    int slot, op, nparams = 0, param_op = -1, unit_op = -1, nonzero = 0;
    unsigned long long params;
    if (!PyArg_ParseTuple(args, "iiK|iiii:bind_slot", &slot, &op, &params, &nparams,
                          &param_op, &unit_op, &nonzero))
        return NULL;
    if (nparams < 0 || nparams > MAX_GIVEN) {
        PyErr_Format(PyExc_ValueError, "bind_slot: nparams %d is outside 0..%d", nparams,
                     MAX_GIVEN);
        return NULL;
    }
    if (slot < 0 || slot >= SLOT_COUNT) {
        PyErr_Format(PyExc_ValueError, "bind_slot: slot %d is outside 0..%d", slot,
                     SLOT_COUNT - 1);
        return NULL;
    }
    if (op >= 0 && (!ew_f32 || !ew_f64 || !params)) {
        PyErr_SetString(PyExc_RuntimeError, "bind_slot: call bind() with the kernels first");
        return NULL;
    }
    slots[slot].op = op < 0 ? -1 : op;
    slots[slot].kind = SLOT_ELEMENTWISE;
    slots[slot].params = (const double *)(uintptr_t)params;
    slots[slot].nparams = nparams;
    slots[slot].param_op = param_op < 0 ? -1 : param_op;
    slots[slot].unit_op = unit_op < 0 ? -1 : unit_op;
    slots[slot].nonzero = nonzero;
    Py_RETURN_NONE;
}

static PyObject *bind_row_slot(PyObject *self, PyObject *args)
{
    int slot, kind;
    if (!PyArg_ParseTuple(args, "ii:bind_row_slot", &slot, &kind))
        return NULL;
    if (slot < 0 || slot >= SLOT_COUNT || kind < 0 || kind > 1) {
        PyErr_Format(PyExc_ValueError, "bind_row_slot: slot %d (0..%d) or kind %d (0, 1) "
                     "out of range", slot, SLOT_COUNT - 1, kind);
        return NULL;
    }
    if (!rows_f32 || !rows_f64) {
        PyErr_SetString(PyExc_RuntimeError, "bind_row_slot: call bind_rows() first");
        return NULL;
    }
    slots[slot].op = 0;
    slots[slot].param_op = -1;
    slots[slot].kind = SLOT_ROWS;
    slots[slot].rows_kind = kind;
    slots[slot].params = NULL;
    Py_RETURN_NONE;
}

/* bind_fused_slot(slot, kind, act, params_address, nparams=0, param_op=-1, unit_op=-1,
 * nonzero=0): a bias_act slot for one activation (act its op id, -1 the identity; the block
 * of its default parameters; the rest as bind_slot's, for calls that give the activation's
 * parameters), or the cross-entropy's or maxout's (act and the rest unused). */
static PyObject *bind_fused_slot(PyObject *self, PyObject *args)
{
    int slot, kind, act, nparams = 0, param_op = -1, unit_op = -1, nonzero = 0;
    unsigned long long params;
    if (!PyArg_ParseTuple(args, "iiiK|iiii:bind_fused_slot", &slot, &kind, &act, &params,
                          &nparams, &param_op, &unit_op, &nonzero))
        return NULL;
    if (nparams < 0 || nparams > MAX_GIVEN) {
        PyErr_Format(PyExc_ValueError, "bind_fused_slot: nparams %d is outside 0..%d", nparams,
                     MAX_GIVEN);
        return NULL;
    }
    if (slot < 0 || slot >= SLOT_COUNT ||
        (kind != SLOT_BIAS && kind != SLOT_XENT && kind != SLOT_MAXOUT)) {
        PyErr_Format(PyExc_ValueError, "bind_fused_slot: slot %d (0..%d) or kind %d (%d..%d) "
                     "out of range", slot, SLOT_COUNT - 1, kind, SLOT_BIAS, SLOT_MAXOUT);
        return NULL;
    }
    if (!fused.f32 || (kind == SLOT_BIAS && !params)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "bind_fused_slot: call bind_fused() first, and give a bias slot its "
                        "parameters");
        return NULL;
    }
    slots[slot].op = 0;
    slots[slot].kind = kind;
    slots[slot].act = act;
    slots[slot].params = (const double *)(uintptr_t)params;
    slots[slot].nparams = nparams;
    slots[slot].param_op = param_op < 0 || kind != SLOT_BIAS ? -1 : param_op;
    slots[slot].unit_op = unit_op < 0 ? -1 : unit_op;
    slots[slot].nonzero = nonzero;
    Py_RETURN_NONE;
}

static PyObject *unbind_all(PyObject *self, PyObject *unused)
{
    for (int i = 0; i < SLOT_COUNT; i++)
        slots[i].op = -1;
    Py_RETURN_NONE;
}

static PyObject *suspend(PyObject *self, PyObject *arg)
{
    long delta = PyLong_AsLong(arg);
    if (delta == -1 && PyErr_Occurred())
        return NULL;
    suspended += delta;
    return PyLong_FromLong(suspended);
}

/* The array a kernel may read as-is: an exact ndarray (not a subclass, which may override
 * what a result looks like), float32 or float64 in native order, aligned, C-contiguous,
 * at least one dimension and one element. */
static int plain(PyObject *o, int type)
{
    if (!PyArray_CheckExact(o))
        return 0;
    PyArrayObject *a = (PyArrayObject *)o;
    return PyArray_TYPE(a) == type && PyArray_NDIM(a) > 0 && PyArray_SIZE(a) > 0 &&
           PyArray_ISCARRAY_RO(a) && PyArray_ISNOTSWAPPED(a);
}

/* How an elementwise kernel may read a float array of `type` (an exact ndarray, native order,
 * aligned, at least one dimension and one element): LAYOUT_C or LAYOUT_F when its elements
 * lie contiguous in C or (only) Fortran order, which a flat loop reads as they are;
 * LAYOUT_STRIDED for any other view, which the entry copies first; LAYOUT_NONE for what it
 * does not take. A 1-D contiguous array is LAYOUT_C. */
enum { LAYOUT_NONE, LAYOUT_C, LAYOUT_F, LAYOUT_STRIDED };

static int layout(PyObject *o, int type)
{
    if (!PyArray_CheckExact(o))
        return LAYOUT_NONE;
    PyArrayObject *a = (PyArrayObject *)o;
    if (PyArray_TYPE(a) != type || PyArray_NDIM(a) == 0 || PyArray_SIZE(a) == 0 ||
        !PyArray_ISALIGNED(a) || !PyArray_ISNOTSWAPPED(a))
        return LAYOUT_NONE;
    if (PyArray_IS_C_CONTIGUOUS(a))
        return LAYOUT_C;
    return PyArray_IS_F_CONTIGUOUS(a) ? LAYOUT_F : LAYOUT_STRIDED;
}

/* ---- large outputs: a few freed blocks kept for the next call ----------------------------
 * glibc serves an allocation of 32 MiB or more (its largest mmap threshold) with fresh pages
 * every time, and the kernel zeroes them on first touch: float64 sigmoid backward on
 * 4,194,304 elements, one thread, took 8.1 ms a call with a new output (532 page faults a
 * call) and 3.4 ms into out=. So an output of CACHE_MIN_BYTES or more lives in a block whose
 * owner (the array's base, a Block) hands it back to this cache when the array dies, and the
 * next large output of a size it fits takes it again, its pages still mapped. At most
 * CACHE_SLOTS blocks and cache_limit bytes wait here (FUSEDACT_OUTPUT_CACHE_MB, default 128;
 * 0 turns the cache off). Every call on a block happens with the GIL held (allocation here,
 * the array's deallocation), which guards the slots. */
#define CACHE_MIN_BYTES ((size_t)4 << 20)
#define CACHE_SLOTS 4

typedef struct {
    void *ptr;
    size_t size;
} cached_block_t;

static cached_block_t cache[CACHE_SLOTS];
static size_t cache_limit = (size_t)128 << 20, cache_bytes;
static unsigned long long cache_hits, cache_misses;

typedef struct {
    PyObject_HEAD
    void *ptr;
    size_t size;
} Block;

static void block_dealloc(Block *self)
{
    if (self->ptr && self->size <= cache_limit) {
        int slot = -1;
        for (int i = 0; i < CACHE_SLOTS && slot < 0; i++)
            if (!cache[i].ptr)
                slot = i;
        /* make room: free waiting blocks until this one fits (it does once all are gone) */
        for (int i = 0; i < CACHE_SLOTS && (slot < 0 || cache_bytes + self->size > cache_limit);
             i++)
            if (cache[i].ptr) {
                free(cache[i].ptr);
                cache_bytes -= cache[i].size;
                cache[i].ptr = NULL;
                if (slot < 0)
                    slot = i;
            }
        cache[slot].ptr = self->ptr, cache[slot].size = self->size;
        cache_bytes += self->size;
    } else {
        free(self->ptr);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject BlockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fusedact._fastpath.Block",
    .tp_doc = "The memory under a large fusedact output; it goes back to the output cache "
              "when the array is released.",
    .tp_basicsize = sizeof(Block),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)block_dealloc,
};

/* A block of at least size bytes: the smallest cached one not over 5/4 of it (a huge block
 * is not spent on a small output), else a new one. */
static Block *take_block(size_t size)
{
    int best = -1;
    for (int i = 0; i < CACHE_SLOTS; i++)
        if (cache[i].ptr && cache[i].size >= size && cache[i].size - size <= size / 4 &&
            (best < 0 || cache[i].size < cache[best].size))
            best = i;
    Block *block = PyObject_New(Block, &BlockType);
    if (!block)
        return NULL;
    if (best >= 0) {
        block->ptr = cache[best].ptr, block->size = cache[best].size;
        cache[best].ptr = NULL;
        cache_bytes -= block->size;
        cache_hits++;
        return block;
    }
    block->ptr = malloc(size);
    block->size = size;
    if (!block->ptr) {
        block->size = 0;
        Py_DECREF(block);
        PyErr_NoMemory();
        return NULL;
    }
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    /* as NumPy does for data of 4 MiB or more: fewer TLB misses over the block */
    uintptr_t page = 4096, first = ((uintptr_t)block->ptr + page - 1) & ~(page - 1);
    uintptr_t last = ((uintptr_t)block->ptr + size) & ~(page - 1);
    if (last > first)
        madvise((void *)first, last - first, MADV_HUGEPAGE);
#endif
    cache_misses++;
    return block;
}

/* A new array of x's shape and type (whose items are x's size), C-contiguous or, for an x
 * of LAYOUT_F, Fortran-contiguous (as np.empty_like keeps the order). From align_min
 * elements up it starts at x's offset from a 64-byte boundary when place is set, as the c
 * backend's kernels want it: they peel the elements before the output's boundary, and the
 * input is then aligned too. The bytes are 64 more than the array's, in a uint8 array or,
 * from CACHE_MIN_BYTES up, a Block (see above), which the result keeps as its base. */
static PyArrayObject *output_in(PyArrayObject *x, int type, int place, int fortran);
static PyArrayObject *output_like(PyArrayObject *x, int type, int place)
{
    return output_in(x, type, place, 0);
}

static PyArrayObject *output_in(PyArrayObject *x, int type, int place, int fortran)
{
    int nd = PyArray_NDIM(x);
    if (PyArray_SIZE(x) < align_min)
        return (PyArrayObject *)PyArray_EMPTY(nd, PyArray_DIMS(x), type, fortran);
    npy_intp strides[NPY_MAXDIMS], step = PyArray_ITEMSIZE(x);
    for (int i = 0; fortran && i < nd; i++) {
        strides[i] = step;
        step *= PyArray_DIM(x, i);
    }
    npy_intp nbytes = PyArray_NBYTES(x) + 64;
    PyObject *owner;
    char *data;
    if (cache_limit > 0 && (size_t)nbytes >= CACHE_MIN_BYTES) {
        Block *block = take_block((size_t)nbytes);
        if (!block)
            return NULL;
        owner = (PyObject *)block, data = block->ptr;
    } else {
        PyArrayObject *raw = (PyArrayObject *)PyArray_EMPTY(1, &nbytes, NPY_UINT8, 0);
        if (!raw)
            return NULL;
        owner = (PyObject *)raw, data = PyArray_DATA(raw);
    }
    uintptr_t start = place ? ((uintptr_t)PyArray_DATA(x) - (uintptr_t)data) & 63 : 0;
    PyArrayObject *out = (PyArrayObject *)PyArray_NewFromDescr(
        &PyArray_Type, PyArray_DescrFromType(type), nd, PyArray_DIMS(x),
        fortran ? strides : NULL, data + start, fortran ? NPY_ARRAY_FARRAY : NPY_ARRAY_CARRAY,
        NULL);
    if (!out || PyArray_SetBaseObject(out, owner) < 0) { /* steals owner */
        Py_XDECREF(out);
        if (!out)
            Py_DECREF(owner);
        return NULL;
    }
    return out;
}

static PyObject *cache_info(PyObject *self, PyObject *unused)
{
    int blocks = 0;
    for (int i = 0; i < CACHE_SLOTS; i++)
        blocks += cache[i].ptr != NULL;
    return Py_BuildValue("{s:i,s:n,s:n,s:K,s:K}", "blocks", blocks, "bytes",
                         (Py_ssize_t)cache_bytes, "limit", (Py_ssize_t)cache_limit, "hits",
                         cache_hits, "misses", cache_misses);
}

static PyObject *cache_clear(PyObject *self, PyObject *unused)
{
    for (int i = 0; i < CACHE_SLOTS; i++)
        if (cache[i].ptr) {
            free(cache[i].ptr);
            cache[i].ptr = NULL;
        }
    cache_bytes = 0;
    Py_RETURN_NONE;
}

static int float_type(PyObject *o)
{
    if (!PyArray_CheckExact(o))
        return -1;
    int type = PyArray_TYPE((PyArrayObject *)o);
    return type == NPY_FLOAT || type == NPY_DOUBLE ? type : -1;
}

/* empty(like, placed): a new array of like's shape and dtype (a C-contiguous float32 or
 * float64 ndarray), from the large-output cache when it is large enough, at like's offset
 * from a 64-byte boundary when placed is true: the Python layers' new outputs of 4 MiB or
 * more, so that the other backends and the calls this entry does not take (derivative=True,
 * parameters, the row and fused ops) keep their pages too. */
static PyObject *empty(PyObject *self, PyObject *args)
{
    PyObject *like;
    int placed;
    if (!PyArg_ParseTuple(args, "Op:empty", &like, &placed))
        return NULL;
    int type = float_type(like);
    if (type < 0 || !plain(like, type)) {
        PyErr_SetString(PyExc_TypeError, "empty: expected a C-contiguous, aligned, native "
                                         "float32 or float64 ndarray with elements");
        return NULL;
    }
    return (PyObject *)output_like((PyArrayObject *)like, type, placed);
}

/* Whether the kernel may write into out directly: an exact ndarray of x's type and shape,
 * of the inputs' layout lay (C or F), aligned, writeable and native, that is each input's own
 * memory (the same
 * view, both being C-contiguous of one shape: an in-place call, which every kernel here
 * allows) or apart from it. Anything else goes the Python way, which copies through a
 * scratch array on a partial overlap and words the error for a wrong out=. Through the
 * Python path out= cost 2.1 us more a call than no out= at 1024 float32 elements (2.6 us
 * against 0.5) and 3.8 us more at 262,144 (relu: 26.5 against 22.7). */
static int direct_target(PyObject *o, PyArrayObject *x, PyArrayObject *saved, int type,
                         int lay)
{
    if (layout(o, type) != lay || !PyArray_ISWRITEABLE((PyArrayObject *)o))
        return 0;
    PyArrayObject *out = (PyArrayObject *)o;
    if (!PyArray_SAMESHAPE(out, x))
        return 0;
    uintptr_t start = (uintptr_t)PyArray_DATA(out), size = (uintptr_t)PyArray_NBYTES(out);
    PyArrayObject *inputs[2] = {x, saved};
    for (int i = 0; i < 2 && inputs[i]; i++) {
        uintptr_t in = (uintptr_t)PyArray_DATA(inputs[i]);
        if (in != start && in < start + size && start < in + size)
            return 0;
    }
    return 1;
}

/* A call that gives the elementwise op's (or bias_act's activation's) numeric parameters
 * (count values at given): their
 * block and the kernel for them, as the Python layers would pick them (Param.coerce and
 * _layout.kernel_name); 1, or 0 when the Python way must take the call: a value that is not
 * an exact int or float (bool, str, NumPy scalars...), an int beyond a double, a 0 where the
 * op divides by it, so that its error is worded there. Through the Python layers such a
 * call cost 4.7-7.5 us on 1,024 float32 elements (leaky_relu(x, 0.2), softplus(x, beta=2),
 * one thread), against 0.7 for the defaults here and 2.1-4.3 for PyTorch's functions. */
static int given_params(const slot_t *s, PyObject *const *given, Py_ssize_t count,
                        double block[BLOCK_DOUBLES], int *op)
{
    if ((s->kind != SLOT_ELEMENTWISE && s->kind != SLOT_BIAS) || s->param_op < 0 ||
        count != s->nparams)
        return 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        double v;
        if (PyFloat_CheckExact(given[i])) {
            v = PyFloat_AS_DOUBLE(given[i]);
        } else if (PyLong_CheckExact(given[i])) {
            v = PyLong_AsDouble(given[i]);
            if (v == -1.0 && PyErr_Occurred()) {
                PyErr_Clear();
                return 0;
            }
        } else {
            return 0;
        }
        if ((s->nonzero >> i & 1) && v == 0.0)
            return 0;
        block[i] = v;
    }
    *op = s->unit_op >= 0 && block[0] == 1.0 ? s->unit_op : s->param_op;
    return 1;
}

/* Runs slot's kernel in mode 0 (a = x) or 1 (a = grad_out, b = saved) into out_obj (None:
 * a new array), or in mode 2 (a = x, out_obj None) into two new arrays, returned as the pair
 * (y, dy/dx); None if the call is not one this entry takes. ngiven > 0: the call gave the
 * op's parameters (see given_params), else its slot's defaults apply. */
static PyObject *run(PyObject *slot_obj, int mode, PyObject *a, PyObject *b, PyObject *out_obj,
                     PyObject *const *given, Py_ssize_t ngiven)
{
    long slot = PyLong_AsLong(slot_obj);
    if (slot == -1 && PyErr_Occurred())
        return NULL;
    if (slot < 0 || slot >= SLOT_COUNT || slots[slot].op < 0 ||
        (slots[slot].kind != SLOT_ELEMENTWISE &&
         (slots[slot].kind != SLOT_ROWS || mode == 2)) ||
        (suspended && slot < KEYWORD_BASE))
        Py_RETURN_NONE;
    /* read by the kernels, which return before this function does */
    double block[BLOCK_DOUBLES] = {0.0};
    int op = slots[slot].op;
    const double *params = slots[slot].params;
    long axis = -1; /* SLOT_ROWS: the one parameter a call may give */
    if (slots[slot].kind == SLOT_ROWS && ngiven > 0) {
        if (ngiven != 1 || !PyLong_CheckExact(given[0]))
            Py_RETURN_NONE; /* a NumPy integer, a bool: the Python way */
        axis = PyLong_AsLong(given[0]);
        if (axis == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
    } else if (ngiven > 0) {
        if (!given_params(&slots[slot], given, ngiven, block, &op))
            Py_RETURN_NONE;
        params = block;
    }
    int type = float_type(a);
    if (type < 0 && PyArray_CheckExact(a) && PyArray_TYPE((PyArrayObject *)a) == NPY_HALF &&
        ew_f16 && slots[slot].kind == SLOT_ELEMENTWISE)
        type = NPY_HALF; /* computed in float32 by the kernels (fa_elementwise_f16) */
    if (type < 0)
        Py_RETURN_NONE;
    int lay = layout(a, type), lay_b = b ? layout(b, type) : lay;
    if (lay == LAYOUT_NONE || lay_b == LAYOUT_NONE ||
        (slots[slot].kind == SLOT_ROWS && (lay != LAYOUT_C || lay_b != LAYOUT_C)))
        Py_RETURN_NONE; /* rows run along the last axis of C-contiguous arrays only */
    PyArrayObject *x = (PyArrayObject *)a, *saved = (PyArrayObject *)b, *saved_copy = NULL;
    if (saved && !PyArray_SAMESHAPE(x, saved))
        Py_RETURN_NONE; /* the Python path says what is wrong */
    int nd = PyArray_NDIM(x);
    if (axis < -nd || axis >= nd)
        Py_RETURN_NONE; /* out of range (an elementwise slot never sets it): AxisError there */
    axis = axis < 0 ? axis + nd : axis;
    PyArrayObject *out, *in; /* in: what the kernel reads as a (x, or its copy) */
    if (lay == LAYOUT_STRIDED || lay_b != lay) {
        /* a strided view (x[::2], a swapaxes view of a 3-D array) or inputs in two orders:
         * the result is a C-contiguous copy of the first input, computed in place (every
         * kernel takes o1 == a), the saved array copied too unless it is C-contiguous, as the
         * Python path copies them. 1,024 float32 elements of a stride of two, sigmoid: 13.1
         * us a call through the Python layers, PyTorch 9.7. */
        if (out_obj != Py_None)
            Py_RETURN_NONE;
        if (!(out = (PyArrayObject *)PyArray_NewCopy(x, NPY_CORDER)))
            return NULL;
        if (saved && lay_b != LAYOUT_C &&
            !(saved = saved_copy = (PyArrayObject *)PyArray_NewCopy(saved, NPY_CORDER))) {
            Py_DECREF(out);
            return NULL;
        }
        in = out;
        lay = LAYOUT_C;
    } else if (out_obj == Py_None) {
        /* Fortran order kept, as np.empty_like keeps it: a transposed 32 x 32 float32
         * array took 11.4-12.4 us through the Python layers (PyTorch 3.7) */
        if (!(out = output_in(x, type, 1, lay == LAYOUT_F)))
            return NULL;
        in = x;
    } else if (direct_target(out_obj, x, saved, type, lay)) {
        out = (PyArrayObject *)Py_NewRef(out_obj);
        in = x;
    } else {
        Py_RETURN_NONE;
    }
    PyArrayObject *dydx = NULL;
    if (mode == 2 && !(dydx = output_in(in, type, 1, lay == LAYOUT_F))) {
        Py_DECREF(out);
        Py_XDECREF(saved_copy);
        return NULL;
    }
    const slot_t s = slots[slot];
    int64_t n = (int64_t)PyArray_SIZE(x);
    int rc, nthreads = threads;
    if (s.kind == SLOT_ROWS) {
        /* rows of cols along the last axis, else (outer, n, inner) around the given one;
         * backward reads g and the saved y */
        int kind = s.rows_kind + (saved ? 2 : 0);
        void *xs = saved ? PyArray_DATA(saved) : PyArray_DATA(x);
        void *gs = saved ? PyArray_DATA(x) : NULL;
        int64_t along = (int64_t)PyArray_DIM(x, (int)axis), outer = 1, inner = 1;
        for (int d = 0; d < nd; d++)
            if (d < axis)
                outer *= (int64_t)PyArray_DIM(x, d);
            else if (d > axis)
                inner *= (int64_t)PyArray_DIM(x, d);
        Py_BEGIN_ALLOW_THREADS
        if (inner == 1 && type == NPY_FLOAT)
            rc = rows_f32(kind, xs, gs, PyArray_DATA(out), outer, along, nthreads);
        else if (inner == 1)
            rc = rows_f64(kind, xs, gs, PyArray_DATA(out), outer, along, nthreads);
        else if (type == NPY_FLOAT)
            rc = axis_f32(kind, xs, gs, PyArray_DATA(out), outer, along, inner, nthreads);
        else
            rc = axis_f64(kind, xs, gs, PyArray_DATA(out), outer, along, inner, nthreads);
        Py_END_ALLOW_THREADS
        if (rc != 0) {
            Py_DECREF(out);
            PyErr_Format(PyExc_RuntimeError, "fusedact row kernel %d refused its arguments", kind);
            return NULL;
        }
        return (PyObject *)out;
    }
    void *o2 = dydx ? PyArray_DATA(dydx) : NULL;
    Py_BEGIN_ALLOW_THREADS
    if (type == NPY_FLOAT)
        rc = ew_f32(op, mode, PyArray_DATA(in), saved ? PyArray_DATA(saved) : NULL,
                    PyArray_DATA(out), o2, n, params, nthreads);
    else if (type == NPY_HALF)
        rc = ew_f16(op, mode, PyArray_DATA(in), saved ? PyArray_DATA(saved) : NULL,
                    PyArray_DATA(out), o2, n, params, nthreads);
    else
        rc = ew_f64(op, mode, PyArray_DATA(in), saved ? PyArray_DATA(saved) : NULL,
                    PyArray_DATA(out), o2, n, params, nthreads);
    Py_END_ALLOW_THREADS
    Py_XDECREF(saved_copy);
    if (rc != 0) {
        Py_DECREF(out);
        Py_XDECREF(dydx);
        PyErr_Format(PyExc_RuntimeError, "fusedact kernel %d refused its arguments", op);
        return NULL;
    }
    return dydx ? Py_BuildValue("(NN)", out, dydx) : (PyObject *)out;
}

/* derivative(slot, x): (y, dy/dx) of an elementwise slot in one pass (mode 2), or None.
 * Through the Python layers derivative=True cost 8.7-10.9 us a call on 1,024 float32
 * elements (sigmoid, one thread), here 1.0-1.1 (PyTorch's sigmoid and y (1 - y): 8.0-8.4). */
static PyObject *derivative(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2 || nargs > 2 + MAX_GIVEN) {
        PyErr_SetString(PyExc_TypeError, "derivative(slot, x, *params)");
        return NULL;
    }
    return run(args[0], 2, args[1], NULL, Py_None, args + 2, nargs - 2);
}

static PyObject *forward(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2 || nargs > 3 + MAX_GIVEN) {
        PyErr_SetString(PyExc_TypeError, "forward(slot, x, out=None, *params)");
        return NULL;
    }
    return run(args[0], 0, args[1], NULL, nargs >= 3 ? args[2] : Py_None, args + 3,
               nargs > 3 ? nargs - 3 : 0);
}

static PyObject *backward(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 3 || nargs > 4 + MAX_GIVEN) {
        PyErr_SetString(PyExc_TypeError, "backward(slot, grad_out, saved, out=None, *params)");
        return NULL;
    }
    return run(args[0], 1, args[1], args[2], nargs >= 4 ? args[3] : Py_None, args + 4,
               nargs > 4 ? nargs - 4 : 0);
}

/* ---- the fused ops -------------------------------------------------------------------------
 * bias_act (forward and backward) and softmax_cross_entropy: the Python path validates and
 * converts for 5-20 us a call, more than the kernels take on small batches, so their plain
 * calls come here too. float32, one thread, against PyTorch's unfused ops timed in the same
 * run (torch.relu(t + b); cross_entropy(reduction='none') and softmax), through the Python
 * path / here: 16 x 1024, bias_act with relu 12.5 / 2.4 us (torch 7.2 / 6.6), its backward
 * 23.7 / 8.0 (43.7 / 39.2), cross-entropy 28.9 / 10.1 (34.9 / 27.4); 1 x 1024, bias_act 15.4
 * / 0.6 (6.4 / 3.0), cross-entropy 24.4 / 1.1 (10.4 / 6.5). Every check below only decides
 * whether this entry takes the call: a call it does not take (a wrong shape, a label out of
 * range) goes the Python way, which words the error. */

/* The prologue of the entries below: lo..hi arguments (else a TypeError that shows usage),
 * the first naming a slot bound to `kind` and not suspended. 1: go on (*s set); 0: the
 * Python way; -1: an error is set. */
static int fused_slot(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t lo, Py_ssize_t hi,
                      const char *usage, int kind, const slot_t **s)
{
    if (nargs < lo || nargs > hi) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    long slot = PyLong_AsLong(args[0]);
    if (slot == -1 && PyErr_Occurred())
        return -1;
    if (slot < 0 || slot >= SLOT_COUNT || slots[slot].op < 0 || slots[slot].kind != kind ||
        (suspended && slot < KEYWORD_BASE))
        return 0;
    *s = &slots[slot];
    return 1;
}

/* Whether the bytes of a and b are apart. */
static int apart(PyArrayObject *a, PyArrayObject *b)
{
    uintptr_t pa = (uintptr_t)PyArray_DATA(a), pb = (uintptr_t)PyArray_DATA(b);
    return pa + (uintptr_t)PyArray_NBYTES(a) <= pb || pb + (uintptr_t)PyArray_NBYTES(b) <= pa;
}

/* A 1-D bias of x's type with one entry per column of x. */
static int bias_fits(PyObject *bias, PyArrayObject *x, int type)
{
    return plain(bias, type) && PyArray_NDIM((PyArrayObject *)bias) == 1 &&
           PyArray_DIM((PyArrayObject *)bias, 0) == PyArray_DIM(x, PyArray_NDIM(x) - 1);
}

/* The prologue of the two bias entries: fused_slot's (lo..4 + MAX_GIVEN arguments, a bias
 * slot), then the activation and parameter block of the call: the slot's own, or those of
 * the values given from args[4] on (given_params, into block). 1: go on; 0: the Python way;
 * -1: an error is set. */
static int bias_slot(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t lo, const char *usage,
                     double block[BLOCK_DOUBLES], int *act, const double **params)
{
    const slot_t *s;
    int open = fused_slot(args, nargs, lo, 4 + MAX_GIVEN, usage, SLOT_BIAS, &s);
    if (open <= 0)
        return open;
    *act = s->act;
    *params = s->params;
    if (nargs <= 4)
        return 1;
    *params = block;
    return given_params(s, args + 4, nargs - 4, block, act);
}

/* bias_forward(slot, x, bias, out=None, *params): act(x + bias), or None. out may be x itself (the
 * kernel reads each element before writing it) but nothing else of x or bias: every row
 * reads the whole bias. */
static PyObject *bias_forward(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    double block[BLOCK_DOUBLES] = {0.0};
    int act;
    const double *params;
    int open = bias_slot(args, nargs, 3, "bias_forward(slot, x, bias, out=None, *params)",
                         block, &act, &params);
    if (open <= 0)
        return open < 0 ? NULL : Py_NewRef(Py_None);
    int type = float_type(args[1]);
    if (type < 0 || !plain(args[1], type) || !bias_fits(args[2], (PyArrayObject *)args[1], type))
        Py_RETURN_NONE;
    PyArrayObject *x = (PyArrayObject *)args[1], *bias = (PyArrayObject *)args[2], *out;
    PyObject *out_obj = nargs >= 4 ? args[3] : Py_None;
    if (out_obj == Py_None) {
        out = output_like(x, type, 1);
        if (!out)
            return NULL;
    } else if (plain(out_obj, type) && PyArray_ISWRITEABLE((PyArrayObject *)out_obj) &&
               PyArray_SAMESHAPE((PyArrayObject *)out_obj, x) &&
               (out_obj == (PyObject *)x || apart((PyArrayObject *)out_obj, x)) &&
               apart((PyArrayObject *)out_obj, bias)) {
        out = (PyArrayObject *)Py_NewRef(out_obj);
    } else {
        Py_RETURN_NONE;
    }
    int64_t cols = PyArray_DIM(bias, 0), rows = (int64_t)PyArray_SIZE(x) / cols;
    int rc, nthreads = threads;
    Py_BEGIN_ALLOW_THREADS
    if (type == NPY_FLOAT)
        rc = fused.f32(act, PyArray_DATA(x), PyArray_DATA(bias), PyArray_DATA(out), rows, cols,
                       params, nthreads);
    else
        rc = fused.f64(act, PyArray_DATA(x), PyArray_DATA(bias), PyArray_DATA(out), rows, cols,
                       params, nthreads);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        Py_DECREF(out);
        PyErr_Format(PyExc_RuntimeError, "fusedact bias_act kernel %d refused its arguments",
                     act);
        return NULL;
    }
    return (PyObject *)out;
}

/* bias_backward(slot, grad_out, x, bias, *params): (grad_x, grad_bias), or None. */
static PyObject *bias_backward(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    double block[BLOCK_DOUBLES] = {0.0};
    int act;
    const double *params;
    int open = bias_slot(args, nargs, 4, "bias_backward(slot, grad_out, x, bias, *params)",
                         block, &act, &params);
    if (open <= 0)
        return open < 0 ? NULL : Py_NewRef(Py_None);
    int type = float_type(args[2]);
    if (type < 0 || !plain(args[1], type) || !plain(args[2], type) ||
        !PyArray_SAMESHAPE((PyArrayObject *)args[1], (PyArrayObject *)args[2]) ||
        !bias_fits(args[3], (PyArrayObject *)args[2], type))
        Py_RETURN_NONE;
    PyArrayObject *g = (PyArrayObject *)args[1], *x = (PyArrayObject *)args[2];
    PyArrayObject *bias = (PyArrayObject *)args[3];
    npy_intp cols = PyArray_DIM(bias, 0);
    PyArrayObject *gx = output_like(x, type, 1);
    if (!gx)
        return NULL;
    PyArrayObject *gb = (PyArrayObject *)PyArray_EMPTY(1, &cols, type, 0);
    if (!gb) {
        Py_DECREF(gx);
        return NULL;
    }
    int64_t rows = (int64_t)PyArray_SIZE(x) / (int64_t)cols;
    int rc, nthreads = threads;
    Py_BEGIN_ALLOW_THREADS
    if (type == NPY_FLOAT)
        rc = fused.bwd_f32(act, PyArray_DATA(g), PyArray_DATA(x), PyArray_DATA(bias),
                           PyArray_DATA(gx), PyArray_DATA(gb), rows, (int64_t)cols, params,
                           nthreads);
    else
        rc = fused.bwd_f64(act, PyArray_DATA(g), PyArray_DATA(x), PyArray_DATA(bias),
                           PyArray_DATA(gx), PyArray_DATA(gb), rows, (int64_t)cols, params,
                           nthreads);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        Py_DECREF(gx);
        Py_DECREF(gb);
        PyErr_Format(PyExc_RuntimeError,
                     "fusedact bias_act backward kernel %d refused its arguments", act);
        return NULL;
    }
    return Py_BuildValue("(NN)", gx, gb);
}

/* xent(slot, logits, labels, ignore_index): (loss, grad_logits), or None. The labels must
 * be an int64 array of logits' shape without its last axis, each a class or ignore_index:
 * the kernel indexes the row by them. */
static PyObject *xent(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    const slot_t *s;
    int open = fused_slot(args, nargs, 4, 4,
                          "xent(slot, logits, labels, ignore_index)", SLOT_XENT, &s);
    if (open <= 0)
        return open < 0 ? NULL : Py_NewRef(Py_None);
    int type = float_type(args[1]);
    if (type < 0 || !plain(args[1], type) || !PyArray_CheckExact(args[2]) || !PyLong_Check(args[3]))
        Py_RETURN_NONE;
    PyArrayObject *z = (PyArrayObject *)args[1], *labels = (PyArrayObject *)args[2];
    int nd = PyArray_NDIM(z);
    if (PyArray_TYPE(labels) != NPY_INT64 || !PyArray_ISCARRAY_RO(labels) ||
        !PyArray_ISNOTSWAPPED(labels) || PyArray_NDIM(labels) != nd - 1 ||
        !PyArray_CompareLists(PyArray_DIMS(labels), PyArray_DIMS(z), nd - 1))
        Py_RETURN_NONE;
    int overflow;
    long long ignore = PyLong_AsLongLongAndOverflow(args[3], &overflow);
    if (ignore == -1 && PyErr_Occurred())
        return NULL;
    if (overflow)
        Py_RETURN_NONE;
    int64_t cols = PyArray_DIM(z, nd - 1), rows = (int64_t)PyArray_SIZE(z) / cols;
    const int64_t *lab = PyArray_DATA(labels);
    for (int64_t r = 0; r < rows; r++)
        if (lab[r] != ignore && (lab[r] < 0 || lab[r] >= cols))
            Py_RETURN_NONE;
    PyArrayObject *loss = (PyArrayObject *)PyArray_EMPTY(nd - 1, PyArray_DIMS(z), type, 0);
    if (!loss)
        return NULL;
    PyArrayObject *grad = output_like(z, type, 1);
    if (!grad) {
        Py_DECREF(loss);
        return NULL;
    }
    int rc, nthreads = threads;
    Py_BEGIN_ALLOW_THREADS
    if (type == NPY_FLOAT)
        rc = fused.xent_f32(PyArray_DATA(z), lab, (int64_t)ignore, PyArray_DATA(loss),
                            PyArray_DATA(grad), rows, cols, nthreads);
    else
        rc = fused.xent_f64(PyArray_DATA(z), lab, (int64_t)ignore, PyArray_DATA(loss),
                            PyArray_DATA(grad), rows, cols, nthreads);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        Py_DECREF(loss);
        Py_DECREF(grad);
        PyErr_SetString(PyExc_RuntimeError, "fusedact cross-entropy kernel refused its arguments");
        return NULL;
    }
    return Py_BuildValue("(NN)", loss, grad);
}

/* The group count of a maxout over x's last axis in groups of pieces (an exact int), or 0
 * where the call is not one for this entry. */
static int64_t maxout_groups(PyArrayObject *x, PyObject *pieces_obj, int64_t *pieces)
{
    if (!PyLong_CheckExact(pieces_obj))
        return 0;
    int overflow;
    long long p = PyLong_AsLongLongAndOverflow(pieces_obj, &overflow);
    if (p == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    int64_t cols = PyArray_DIM(x, PyArray_NDIM(x) - 1);
    if (overflow || p < 1 || cols % p)
        return 0;
    *pieces = p;
    return cols / p;
}

/* maxout_forward(slot, x, pieces): maxout along the last axis (a new array), or None.
 * Pairs of 1,024 float32 elements, one thread: 6.3 us a call through the Python layers,
 * 0.5 here (backward 9.3 and 0.7; PyTorch's view and amax took 8.9). */
static PyObject *maxout_forward(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    const slot_t *s;
    int open = fused_slot(args, nargs, 3, 3,
                          "maxout_forward(slot, x, pieces)", SLOT_MAXOUT, &s);
    if (open <= 0)
        return open < 0 ? NULL : Py_NewRef(Py_None);
    int type = float_type(args[1]);
    if (type < 0 || !plain(args[1], type))
        Py_RETURN_NONE;
    PyArrayObject *x = (PyArrayObject *)args[1];
    int64_t pieces, groups = maxout_groups(x, args[2], &pieces);
    if (!groups)
        Py_RETURN_NONE;
    int nd = PyArray_NDIM(x);
    npy_intp dims[NPY_MAXDIMS];
    for (int i = 0; i < nd; i++)
        dims[i] = PyArray_DIM(x, i);
    dims[nd - 1] = (npy_intp)groups;
    PyArrayObject *y = (PyArrayObject *)PyArray_EMPTY(nd, dims, type, 0);
    if (!y)
        return NULL;
    int64_t rows = (int64_t)PyArray_SIZE(x) / (groups * pieces);
    int rc, nthreads = threads;
    Py_BEGIN_ALLOW_THREADS
    if (type == NPY_FLOAT)
        rc = fused.maxout_f32(PyArray_DATA(x), PyArray_DATA(y), rows, groups, pieces, nthreads);
    else
        rc = fused.maxout_f64(PyArray_DATA(x), PyArray_DATA(y), rows, groups, pieces, nthreads);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        Py_DECREF(y);
        PyErr_SetString(PyExc_RuntimeError, "fusedact maxout kernel refused its arguments");
        return NULL;
    }
    return (PyObject *)y;
}

/* maxout_backward(slot, grad_out, x, pieces): grad_x along the last axis, or None. */
static PyObject *maxout_backward(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    const slot_t *s;
    int open = fused_slot(args, nargs, 4, 4,
                          "maxout_backward(slot, grad_out, x, pieces)", SLOT_MAXOUT, &s);
    if (open <= 0)
        return open < 0 ? NULL : Py_NewRef(Py_None);
    int type = float_type(args[2]);
    if (type < 0 || !plain(args[2], type) || !plain(args[1], type))
        Py_RETURN_NONE;
    PyArrayObject *g = (PyArrayObject *)args[1], *x = (PyArrayObject *)args[2];
    int64_t pieces, groups = maxout_groups(x, args[3], &pieces);
    int nd = PyArray_NDIM(x);
    if (!groups || PyArray_NDIM(g) != nd || !PyArray_CompareLists(PyArray_DIMS(g),
                                                                   PyArray_DIMS(x), nd - 1) ||
        PyArray_DIM(g, nd - 1) != (npy_intp)groups)
        Py_RETURN_NONE;
    PyArrayObject *gx = output_like(x, type, 1);
    if (!gx)
        return NULL;
    int64_t rows = (int64_t)PyArray_SIZE(x) / (groups * pieces);
    int rc, nthreads = threads;
    Py_BEGIN_ALLOW_THREADS
    if (type == NPY_FLOAT)
        rc = fused.maxout_bwd_f32(PyArray_DATA(g), PyArray_DATA(x), PyArray_DATA(gx), rows,
                                  groups, pieces, nthreads);
    else
        rc = fused.maxout_bwd_f64(PyArray_DATA(g), PyArray_DATA(x), PyArray_DATA(gx), rows,
                                  groups, pieces, nthreads);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        Py_DECREF(gx);
        PyErr_SetString(PyExc_RuntimeError, "fusedact maxout kernel refused its arguments");
        return NULL;
    }
    return (PyObject *)gx;
}

static PyMethodDef methods[] = {
    {"bind", bind, METH_VARARGS,
     "bind(f32_address, f64_address, align_min, f16_address=0): the kernels' entry points, "
     "and the size from which outputs are aligned as their inputs"},
    {"set_threads", set_threads, METH_O, "set_threads(n): the most threads a call may use"},
    {"bind_slot", bind_slot, METH_VARARGS,
     "bind_slot(slot, op, params_address, nparams=0, param_op=-1, unit_op=-1, nonzero=0): "
     "route a public function (op -1: unbind)"},
    {"bind_rows", bind_rows, METH_VARARGS,
     "bind_rows(rows_f32, rows_f64, axis_f32, axis_f64): fa_rows_f32/f64 and fa_axis_f32/f64 "
     "(addresses), for the softmax slots"},
    {"bind_row_slot", bind_row_slot, METH_VARARGS,
     "bind_row_slot(slot, kind): route softmax (kind 0) or log_softmax (1) along axis -1"},
    {"bind_fused", bind_fused, METH_VARARGS,
     "bind_fused(bias_f32, bias_f64, bias_bwd_f32, bias_bwd_f64, xent_f32, xent_f64, "
     "maxout_f32, maxout_f64, maxout_bwd_f32, maxout_bwd_f64): the fused and maxout kernels' "
     "addresses"},
    {"bind_fused_slot", bind_fused_slot, METH_VARARGS,
     "bind_fused_slot(slot, kind, act, params_address): route bias_act for one activation "
     "(kind SLOT_BIAS) or softmax_cross_entropy (SLOT_XENT)"},
    {"unbind_all", unbind_all, METH_NOARGS, "every call takes the Python path again"},
    {"empty", empty, METH_VARARGS,
     "empty(like, placed): a new array like `like`, large ones from the output cache"},
    {"cache_info", cache_info, METH_NOARGS,
     "the large-output cache: blocks and bytes waiting, the byte limit, hits and misses"},
    {"cache_clear", cache_clear, METH_NOARGS, "free the blocks waiting in the cache"},
    {"suspend", suspend, METH_O, "suspend(+1 or -1): count open use_backend() blocks"},
    {"forward", (PyCFunction)(void (*)(void))forward, METH_FASTCALL,
     "forward(slot, x, out=None, *params): y (out itself when given), or None when the call "
     "is not one this entry takes; params: the op's numeric parameters, when not the "
     "defaults"},
    {"backward", (PyCFunction)(void (*)(void))backward, METH_FASTCALL,
     "backward(slot, grad_out, saved, out=None, *params): grad_in, or None"},
    {"derivative", (PyCFunction)(void (*)(void))derivative, METH_FASTCALL,
     "derivative(slot, x, *params): (y, dy/dx) from one pass, or None"},
    {"bias_forward", (PyCFunction)(void (*)(void))bias_forward, METH_FASTCALL,
     "bias_forward(slot, x, bias, out=None, *params): act(x + bias), or None"},
    {"bias_backward", (PyCFunction)(void (*)(void))bias_backward, METH_FASTCALL,
     "bias_backward(slot, grad_out, x, bias, *params): (grad_x, grad_bias), or None"},
    {"xent", (PyCFunction)(void (*)(void))xent, METH_FASTCALL,
     "xent(slot, logits, labels, ignore_index): (loss, grad_logits), or None"},
    {"maxout_forward", (PyCFunction)(void (*)(void))maxout_forward, METH_FASTCALL,
     "maxout_forward(slot, x, pieces): maxout along the last axis, or None"},
    {"maxout_backward", (PyCFunction)(void (*)(void))maxout_backward, METH_FASTCALL,
     "maxout_backward(slot, grad_out, x, pieces): grad_x, or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fusedact._fastpath",
    "The c backend's CPython entry for plain elementwise, softmax and fused calls "
    "(see csrc/pyext/fastpath.c).",
    -1,
    methods,
};

PyMODINIT_FUNC PyInit__fastpath(void)
{
    import_array();
    for (int i = 0; i < SLOT_COUNT; i++)
        slots[i].op = -1;
    const char *limit_mb = getenv("FUSEDACT_OUTPUT_CACHE_MB");
    if (limit_mb && *limit_mb) {
        char *end;
        long long mb = strtoll(limit_mb, &end, 10);
        if (*end || mb < 0 || mb > ((long long)1 << 40)) {
            PyErr_Format(PyExc_ValueError,
                         "FUSEDACT_OUTPUT_CACHE_MB=%s: expected a whole number of MiB (0: off)",
                         limit_mb);
            return NULL;
        }
        cache_limit = (size_t)mb << 20;
    }
    if (PyType_Ready(&BlockType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m && (PyModule_AddIntConstant(m, "KEYWORD_BASE", KEYWORD_BASE) < 0 ||
              PyModule_AddIntConstant(m, "SLOT_BIAS", SLOT_BIAS) < 0 ||
              PyModule_AddIntConstant(m, "SLOT_XENT", SLOT_XENT) < 0 ||
              PyModule_AddIntConstant(m, "SLOT_MAXOUT", SLOT_MAXOUT) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
