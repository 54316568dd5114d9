/*
 * The compiled backend of alchemy_gym.core.batch.GameBatch: the same operations as its
 * NumpyKernel, over the same arrays, one game (row) at a time in C.
 *
 * Kernel(state, spec, settings) reads everything by name, once, at start:
 *   state     the batch's arrays (batch.BatchState: rng_key, ..., obs) and num_games;
 *   spec      the game's description (alchemy_gym.core.spec.SPEC): its numbers (slots, stones, potions, maps,
 *             rotations, features, codes, the chemistry row's columns) and its tables (transitions, observation
 *             features, what an empty slot shows);
 *   settings  the batch's settings (batch.KernelSettings): trials, step limit, the action table of its action
 *             space, stone values, the level's graphs and prior, threads.
 * No number of the game is typed here: the kernel is compiled with the description's numbers from _spec.h,
 * which scripts/headers.py generates from SPEC (a test checks it is current), and checks at start that the
 * description it is given is of the version it reads and has each of those numbers, and that each table has
 * the dtype, size and contiguity they give and values in range; a description that does not fit fails here
 * with a message naming the field. The kernel keeps buffer views of the state and the tables, so they must not
 * be replaced or resized while it lives (GameBatch shows them read-only).
 *
 * Random draws are dm_alchemy's numpy.random.RandomState draws, bit for bit: MT19937
 * (init_genrand seeding, the standard twist and tempering), the legacy masked rejection
 * randint(0, high) and the 53-bit random_sample(). MT_N, MT_M and the tempering masks are
 * MT19937's own constants, not the game's.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define ALCHEMY_THREADS 1
#endif

/* The game's numbers, generated from the description (alchemy_gym.core.spec.SPEC) by scripts/headers.py: the
 * kernel is compiled with them, and checks at start that the description it is given has each of them. */
#include "_spec.h"
#define MAX_STONES SPEC_MAX_STONES
#define MAX_POTIONS SPEC_MAX_POTIONS
#define ITEM_SLOTS SPEC_ITEM_SLOTS
#define STONE_BLOCK SPEC_STONE_BLOCK
#define CAULDRON SPEC_CAULDRON
#define END_TRIAL SPEC_END_TRIAL
#define NUM_LATENT_STONES SPEC_NUM_LATENT_STONES
#define NUM_POTION_TYPES SPEC_NUM_POTION_TYPES
#define NUM_STONE_MAPS SPEC_NUM_STONE_MAPS
#define NUM_POTION_MAPS SPEC_NUM_POTION_MAPS
#define NUM_ROTATIONS SPEC_NUM_ROTATIONS
#define NUM_GRAPH_MASKS SPEC_NUM_GRAPH_MASKS
#define FEATURES SPEC_STONE_FEATURE_SIZE
#define CHEM_WIDTH SPEC_CHEM_WIDTH
#define CHEM_PM SPEC_CHEM_POTION_MAP
#define CHEM_SM SPEC_CHEM_STONE_MAP
#define CHEM_GRAPH SPEC_CHEM_GRAPH
#define CHEM_ROT SPEC_CHEM_ROTATION
#define SAMPLED SPEC_SAMPLED
#define GIVEN SPEC_GIVEN
/* a transition table's row: the stone after each (latent stone, latent potion) */
#define TRANS_ROW (NUM_LATENT_STONES * NUM_POTION_TYPES)

#if STONE_BLOCK != MAX_POTIONS + 1 || CAULDRON != MAX_POTIONS || ITEM_SLOTS != MAX_STONES + MAX_POTIONS
#error "_spec.h: a stone's block of actions is the cauldron and each potion slot; a trial's items its stones, then its potions"
#endif
#if CHEM_PM == CHEM_SM || CHEM_PM == CHEM_GRAPH || CHEM_PM == CHEM_ROT || CHEM_SM == CHEM_GRAPH || \
    CHEM_SM == CHEM_ROT || CHEM_GRAPH == CHEM_ROT
#error "_spec.h: the chemistry row's columns must be distinct"
#endif

#define MT_N 624
#define MT_M 397
/* games ahead whose rows Kernel_step prefetches */
#define PREFETCH_DISTANCE 8
/* the fewest rows worth a thread of their own (the most threads is settings.max_threads) */
#define MIN_ROWS_PER_THREAD 1024

enum { SOURCE_NONE = 0, SOURCE_SAMPLED = 1, SOURCE_FIXED = 2 };


/* ------------------------------------------------------------------------- MT19937 */

static void mt_twist(uint32_t *mt) {
    int i;
    uint32_t y;
    for (i = 0; i < MT_N - MT_M; i++) {
        y = (mt[i] & 0x80000000U) | (mt[i + 1] & 0x7fffffffU);
        mt[i] = mt[i + MT_M] ^ (y >> 1) ^ ((0U - (y & 1U)) & 0x9908b0dfU);
    }
    for (; i < MT_N - 1; i++) {
        y = (mt[i] & 0x80000000U) | (mt[i + 1] & 0x7fffffffU);
        mt[i] = mt[i + (MT_M - MT_N)] ^ (y >> 1) ^ ((0U - (y & 1U)) & 0x9908b0dfU);
    }
    y = (mt[MT_N - 1] & 0x80000000U) | (mt[0] & 0x7fffffffU);
    mt[MT_N - 1] = mt[MT_M - 1] ^ (y >> 1) ^ ((0U - (y & 1U)) & 0x9908b0dfU);
}

static inline uint32_t mt_next(uint32_t *key, int32_t *pos) {
    if (*pos >= MT_N) {
        mt_twist(key);
        *pos = 0;
    }
    uint32_t y = key[(*pos)++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680U;
    y ^= (y << 15) & 0xefc60000U;
    y ^= y >> 18;
    return y;
}

static void mt_seed(uint32_t *key, int32_t *pos, uint32_t s) {
    key[0] = s;
    for (uint32_t j = 1; j < MT_N; j++) {
        s = 1812433253U * (s ^ (s >> 30)) + j;
        key[j] = s;
    }
    *pos = MT_N;
}

/* RandomState.randint(0, high): the output masked to the smallest covering mask, redrawn while too big. */
static inline int mt_randint(uint32_t *key, int32_t *pos, uint32_t high) {
    uint32_t limit = high - 1, mask = limit, val;
    if (limit == 0) return 0;
    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    mask |= mask >> 16;
    while ((val = (mt_next(key, pos) & mask)) > limit) {
    }
    return (int)val;
}

static inline double mt_random_sample(uint32_t *key, int32_t *pos) {
    uint32_t a = mt_next(key, pos) >> 5, b = mt_next(key, pos) >> 6;
    return (a * 67108864.0 + b) / 9007199254740992.0;
}

/* ----------------------------------------------------------------------------- kernel */

enum {
    A_RNG_KEY, A_RNG_POS, A_CHEM, A_EPISODE, A_NEXT_EPISODE, A_TRIAL, A_STEPS, A_ENDING, A_STONES, A_POTIONS,
    A_ITEMS, A_TRIAL_REWARDS, A_MATRIX_EVENTS, A_EVENT_COUNT, A_OBS, NUM_STATE,
    T_TRANS = NUM_STATE, T_STONE_FEAT, T_POTION_FEAT, T_STONE_DEFAULT, T_POTION_DEFAULT, T_VALUES, T_GRAPHS, T_CDF,
    T_ACTION_STONE, T_ACTION_COLUMN, F_CHEM, F_ITEMS, NUM_VIEWS
};

static const char *STATE_NAMES[NUM_STATE] = {
    "rng_key", "rng_pos", "chem", "episode", "next_episode", "trial", "steps", "ending", "stones", "potions",
    "items", "trial_rewards", "matrix_events", "event_count", "obs",
};

/* Settings, sizes and pointers of one batch: the rule functions take a copy on the stack, so that byte stores
 * through the state pointers cannot make the compiler reload them. */
typedef struct {
    Py_ssize_t n, fixed_count;
    /* the batch's settings */
    int T, max_steps, k, S, P, F, n_stones, n_potions, stride, randomize_maps, rotation, source, G, bound, A;
    uint32_t *rng_key;
    int32_t *rng_pos, *episode, *next_episode, *steps;
    int16_t *chem, *trial;
    uint8_t *ending;
    int8_t *stones, *potions, *items, *matrix_events, *event_count;
    double *trial_rewards;
    float *obs;
    const int8_t *trans;
    const float *stone_feat, *potion_feat, *stone_default, *potion_default;
    const double *values, *cdf;
    const uint16_t *graphs;
    const int16_t *fixed_chem;
    const int8_t *fixed_items;
    /* (stone slot, column) of each action: potion slot, the cauldron, the no-op or the end-trial column */
    const int8_t *action_stone, *action_column;
} ctx_t;

/* One step of the rows [start, stop): the body of Kernel_step, run by one thread per range. */
typedef struct {
    const ctx_t *c;
    const int64_t *actions;
    const uint8_t *begin;
    double *reward;
    uint8_t *terminated;
    int16_t *trial_ended;
    float *obs_out;
    Py_ssize_t start, stop, ends, terms;
} step_job_t;

typedef struct {
    PyObject_HEAD
    Py_buffer views[NUM_VIEWS];
    char held[NUM_VIEWS];
    int threads, max_threads;
    step_job_t *jobs;
#ifdef ALCHEMY_THREADS
    pthread_t *ids;
    int *started;
#endif
    ctx_t c;
} Kernel;

/* Element kinds of buffer formats: 'i' signed int, 'u' unsigned int, 'f' float, 'b' bool. */
static char format_kind(const char *format) {
    char c = format ? format[strlen(format) - 1] : 'B';
    if (strchr("bhilqn", c)) return 'i';
    if (strchr("BHILQN", c)) return 'u';
    if (strchr("fd", c)) return 'f';
    if (c == '?') return 'b';
    return '?';
}

/* A C-contiguous buffer of `kind` and `itemsize` with `count` elements (count < 0: any). */
static int get_view(Py_buffer *view, PyObject *obj, const char *name, char kind, Py_ssize_t itemsize,
                    Py_ssize_t count, int writable) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous%s array", name, writable ? " writable" : "");
        return -1;
    }
    if (format_kind(view->format) != kind || view->itemsize != itemsize ||
        (count >= 0 && view->len != count * itemsize)) {
        PyErr_Format(PyExc_ValueError,
                     "%s has the wrong dtype or size (format %s, itemsize %zd, %zd bytes; expected kind '%c', "
                     "itemsize %zd, %zd items)",
                     name, view->format ? view->format : "B", view->itemsize, view->len, kind, itemsize, count);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int hold(Kernel *K, int slot, PyObject *obj, const char *name, char kind, Py_ssize_t itemsize, Py_ssize_t count,
                int writable) {
    if (get_view(&K->views[slot], obj, name, kind, itemsize, count, writable) < 0) return -1;
    K->held[slot] = 1;
    return 0;
}

/* Attribute `name` of `obj` (called `owner` in errors) held as a view (see get_view). */
static int hold_attr(Kernel *K, int slot, PyObject *obj, const char *owner, const char *name, char kind,
                     Py_ssize_t itemsize, Py_ssize_t count) {
    char what[96];
    snprintf(what, sizeof what, "game kernel: %s.%s", owner, name);
    PyObject *a = PyObject_GetAttrString(obj, name);
    if (!a) return -1;
    int rc = hold(K, slot, a, what, kind, itemsize, count, 0);
    Py_DECREF(a);
    return rc;
}

/* Integer attribute `name` of `obj` (called `owner` in errors), which must be in lo..hi. */
static int int_attr(PyObject *obj, const char *owner, const char *name, long lo, long hi, int *out) {
    PyObject *a = PyObject_GetAttrString(obj, name);
    if (!a) return -1;
    long v = PyLong_AsLong(a);
    Py_DECREF(a);
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Format(PyExc_TypeError, "game kernel: %s.%s must be an int", owner, name);
        return -1;
    }
    if (v < lo || v > hi) {
        PyErr_Format(PyExc_ValueError, "game kernel: %s.%s = %ld does not fit this kernel: allowed %ld..%ld", owner,
                     name, v, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* A table entry out of range (`what` names it): a ValueError saying what is allowed. */
static int out_of_range(const char *what, long got, long low, long high) {
    PyErr_Format(PyExc_ValueError, "game kernel: %s is %ld, out of range: allowed %ld..%ld", what, got, low, high);
    return -1;
}

static void Kernel_dealloc(Kernel *K) {
    for (int i = 0; i < NUM_VIEWS; i++)
        if (K->held[i]) PyBuffer_Release(&K->views[i]);
    PyMem_Free(K->jobs);
#ifdef ALCHEMY_THREADS
    PyMem_Free(K->ids);
    PyMem_Free(K->started);
#endif
    Py_TYPE(K)->tp_free((PyObject *)K);
}

/* The description's numbers, as compiled (alchemy_gym/core/_spec.h): each is checked against the description. */
static const struct {
    const char *name;
    long value;
} COMPILED[] = {
    {"max_stones", SPEC_MAX_STONES}, {"max_potions", SPEC_MAX_POTIONS}, {"item_slots", SPEC_ITEM_SLOTS},
    {"stone_block", SPEC_STONE_BLOCK}, {"cauldron", SPEC_CAULDRON}, {"end_trial", SPEC_END_TRIAL},
    {"no_op", SPEC_NO_OP}, {"num_latent_stones", SPEC_NUM_LATENT_STONES},
    {"num_potion_types", SPEC_NUM_POTION_TYPES}, {"num_stone_maps", SPEC_NUM_STONE_MAPS},
    {"num_potion_maps", SPEC_NUM_POTION_MAPS}, {"num_rotations", SPEC_NUM_ROTATIONS},
    {"num_graph_masks", SPEC_NUM_GRAPH_MASKS}, {"fixed_potion_map", SPEC_FIXED_POTION_MAP},
    {"fixed_stone_map", SPEC_FIXED_STONE_MAP}, {"chem_width", SPEC_CHEM_WIDTH},
    {"chem_potion_map", SPEC_CHEM_POTION_MAP}, {"chem_stone_map", SPEC_CHEM_STONE_MAP},
    {"chem_graph", SPEC_CHEM_GRAPH}, {"chem_rotation", SPEC_CHEM_ROTATION}, {"sampled", SPEC_SAMPLED},
    {"given", SPEC_GIVEN}, {"nothing", SPEC_NOTHING}, {"potion_used", SPEC_POTION_USED},
    {"stone_cashed", SPEC_STONE_CASHED}, {"stone_feature_size", SPEC_STONE_FEATURE_SIZE},
};

/* The transition table last checked (a reference is kept, so that the address cannot be reused): the
 * description's table is shared by every batch, and its 196,608 entries need checking once. */
static PyObject *checked_transitions;

/* The description (spec): of the version this kernel reads, with the numbers it is compiled with, and tables of
 * the sizes and dtypes these give, with values in range. */
static int read_spec(Kernel *K, PyObject *spec) {
    int version;
    if (int_attr(spec, "spec", "version", 0, 1L << 30, &version) < 0) return -1;
    if (version != SPEC_VERSION) {
        PyErr_Format(PyExc_ValueError,
                     "game kernel: spec.version is %d, this kernel reads version %d of the game description: "
                     "rebuild it (python setup.py build_ext --inplace, or reinstall alchemy-gym)",
                     version, SPEC_VERSION);
        return -1;
    }
    for (size_t f = 0; f < sizeof COMPILED / sizeof COMPILED[0]; f++) {
        int value;
        if (int_attr(spec, "spec", COMPILED[f].name, -(1L << 30), 1L << 30, &value) < 0) return -1;
        if (value != COMPILED[f].value) {
            PyErr_Format(PyExc_ValueError,
                         "game kernel: spec.%s is %d, this kernel is compiled for %ld: the game description changed "
                         "since the kernel was built (python scripts/headers.py, then rebuild it: python setup.py "
                         "build_ext --inplace, or reinstall alchemy-gym)",
                         COMPILED[f].name, value, COMPILED[f].value);
            return -1;
        }
    }
    ctx_t *c = &K->c;
    if (hold_attr(K, T_TRANS, spec, "spec", "transitions", 'i', 1, (Py_ssize_t)NUM_GRAPH_MASKS * TRANS_ROW) < 0 ||
        hold_attr(K, T_STONE_FEAT, spec, "spec", "stone_features", 'f', 4,
                  NUM_STONE_MAPS * NUM_ROTATIONS * NUM_LATENT_STONES * FEATURES) < 0 ||
        hold_attr(K, T_POTION_FEAT, spec, "spec", "potion_features", 'f', 4, NUM_POTION_MAPS * NUM_POTION_TYPES) < 0 ||
        hold_attr(K, T_STONE_DEFAULT, spec, "spec", "stone_default", 'f', 4, FEATURES + 1) < 0 ||
        hold_attr(K, T_POTION_DEFAULT, spec, "spec", "potion_default", 'f', 4, 2) < 0)
        return -1;
    c->trans = K->views[T_TRANS].buf;
    if (K->views[T_TRANS].obj != checked_transitions) {
        for (Py_ssize_t i = 0; i < (Py_ssize_t)NUM_GRAPH_MASKS * TRANS_ROW; i++)
            if (c->trans[i] < 0 || c->trans[i] >= NUM_LATENT_STONES)
                return out_of_range("an entry of spec.transitions (a latent stone)", c->trans[i], 0,
                                    NUM_LATENT_STONES - 1);
        Py_XDECREF(checked_transitions);
        checked_transitions = K->views[T_TRANS].obj;
        Py_INCREF(checked_transitions);
    }
    c->stone_feat = K->views[T_STONE_FEAT].buf;
    c->potion_feat = K->views[T_POTION_FEAT].buf;
    c->stone_default = K->views[T_STONE_DEFAULT].buf;
    c->potion_default = K->views[T_POTION_DEFAULT].buf;
    return 0;
}

/* The batch's settings, checked against the description. */
static int read_settings(Kernel *K, PyObject *settings) {
    ctx_t *c = &K->c;
    const char *S = "settings";
    int observe_used;
    if (int_attr(settings, S, "num_trials", 1, 127, &c->T) < 0 ||
        int_attr(settings, S, "max_steps_per_trial", 1, 2147483647L, &c->max_steps) < 0 ||
        int_attr(settings, S, "action_offset", 1, -END_TRIAL, &c->k) < 0 ||
        int_attr(settings, S, "observe_used", 0, 1, &observe_used) < 0 ||
        int_attr(settings, S, "num_stones_per_trial", 0, MAX_STONES, &c->n_stones) < 0 ||
        int_attr(settings, S, "num_potions_per_trial", 0, MAX_POTIONS, &c->n_potions) < 0 ||
        int_attr(settings, S, "stride", 1, 2147483647L, &c->stride) < 0 ||
        int_attr(settings, S, "randomize_maps", 0, 1, &c->randomize_maps) < 0 ||
        int_attr(settings, S, "rotation", 0, 1, &c->rotation) < 0 ||
        int_attr(settings, S, "max_threads", 1, 1024, &K->max_threads) < 0)
        return -1;
    PyObject *source = PyObject_GetAttrString(settings, "source");
    if (!source) return -1;
    c->source = -1;
    if (PyUnicode_Check(source)) {
        if (PyUnicode_CompareWithASCIIString(source, "none") == 0) c->source = SOURCE_NONE;
        if (PyUnicode_CompareWithASCIIString(source, "sampled") == 0) c->source = SOURCE_SAMPLED;
        if (PyUnicode_CompareWithASCIIString(source, "fixed") == 0) c->source = SOURCE_FIXED;
    }
    Py_DECREF(source);
    if (c->source < 0) {
        PyErr_SetString(PyExc_ValueError, "game kernel: settings.source must be 'none', 'sampled' or 'fixed'");
        return -1;
    }
    c->S = FEATURES + (observe_used ? 1 : 0);
    c->P = observe_used ? 2 : 1;
    c->F = MAX_STONES * c->S + MAX_POTIONS * c->P;
    c->A = MAX_STONES * STONE_BLOCK + c->k;
    if (hold_attr(K, T_VALUES, settings, S, "values", 'f', 8, NUM_LATENT_STONES) < 0 ||
        hold_attr(K, T_GRAPHS, settings, S, "graph_masks", 'u', 2, -1) < 0 ||
        hold_attr(K, T_CDF, settings, S, "graph_cdf", 'f', 8, -1) < 0 ||
        hold_attr(K, T_ACTION_STONE, settings, S, "action_stone", 'i', 1, c->A) < 0 ||
        hold_attr(K, T_ACTION_COLUMN, settings, S, "action_column", 'i', 1, c->A) < 0)
        return -1;
    c->G = (int)(K->views[T_GRAPHS].len / 2);
    if (K->views[T_CDF].len != c->G * 8 || c->G < 1) {
        PyErr_SetString(PyExc_ValueError, "game kernel: settings.graph_masks and graph_cdf must have the same positive "
                                          "length");
        return -1;
    }
    c->values = K->views[T_VALUES].buf;
    c->graphs = K->views[T_GRAPHS].buf;
    c->cdf = K->views[T_CDF].buf;
    c->action_stone = K->views[T_ACTION_STONE].buf;
    c->action_column = K->views[T_ACTION_COLUMN].buf;
    int graphs = (int)(K->views[T_TRANS].len / TRANS_ROW);
    for (int g = 0; g < c->G; g++)
        if (c->graphs[g] >= graphs) return out_of_range("an entry of settings.graph_masks", c->graphs[g], 0, graphs - 1);
    for (int a = 0; a < c->A; a++) {
        int s = c->action_stone[a], column = c->action_column[a];
        if (s < 0 || s >= MAX_STONES) return out_of_range("an entry of settings.action_stone (a stone slot)", s, 0, MAX_STONES - 1);
        if (column != END_TRIAL && (column < -1 || column > CAULDRON))
            return out_of_range("an entry of settings.action_column (end_trial, -1, a potion slot or the cauldron)",
                                column, END_TRIAL, CAULDRON);
    }
    return 0;
}

/* Room for the jobs of `threads` threads (allocated as threads are set: most batches use one). */
static int set_threads(Kernel *K, int threads) {
    step_job_t *jobs = PyMem_Realloc(K->jobs, (size_t)threads * sizeof(step_job_t));
    if (!jobs) {
        PyErr_NoMemory();
        return -1;
    }
    K->jobs = jobs;
#ifdef ALCHEMY_THREADS
    pthread_t *ids = PyMem_Realloc(K->ids, (size_t)threads * sizeof(pthread_t));
    if (!ids) {
        PyErr_NoMemory();
        return -1;
    }
    K->ids = ids;
    int *started = PyMem_Realloc(K->started, (size_t)threads * sizeof(int));
    if (!started) {
        PyErr_NoMemory();
        return -1;
    }
    K->started = started;
#endif
    K->threads = threads;
    return 0;
}

static int Kernel_init(Kernel *K, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"state", "spec", "settings", NULL};
    PyObject *state, *spec, *settings;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO:Kernel", kwlist, &state, &spec, &settings)) return -1;
    for (int i = 0; i < NUM_VIEWS; i++) {
        if (K->held[i]) {
            PyErr_SetString(PyExc_RuntimeError, "a Kernel is initialised once");
            return -1;
        }
    }
    ctx_t *c = &K->c;
    if (read_spec(K, spec) < 0 || read_settings(K, settings) < 0) return -1;
    PyObject *num = PyObject_GetAttrString(state, "num_games");
    if (!num) return -1;
    c->n = PyLong_AsSsize_t(num);
    Py_DECREF(num);
    if (c->n < 1) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "game kernel: state.num_games must be positive");
        return -1;
    }
    Py_ssize_t n = c->n, T = c->T;
    struct {
        char kind;
        Py_ssize_t itemsize, count;
    } shape[NUM_STATE] = {
        {'u', 4, n * MT_N}, {'i', 4, n}, {'i', 2, n * CHEM_WIDTH}, {'i', 4, n}, {'i', 4, n}, {'i', 2, n},
        {'i', 4, n}, {'b', 1, n}, {'i', 1, n * MAX_STONES}, {'i', 1, n * MAX_POTIONS}, {'i', 1, n * T * ITEM_SLOTS},
        {'f', 8, n * T}, {'i', 1, n * T * MAX_STONES * STONE_BLOCK}, {'i', 1, n}, {'f', 4, n * c->F},
    };
    for (int i = 0; i < NUM_STATE; i++) {
        char what[64];
        snprintf(what, sizeof what, "game kernel: state.%s", STATE_NAMES[i]);
        PyObject *array = PyObject_GetAttrString(state, STATE_NAMES[i]);
        if (!array) return -1;
        int rc = hold(K, i, array, what, shape[i].kind, shape[i].itemsize, shape[i].count, 1);
        Py_DECREF(array);
        if (rc < 0) return -1;
    }
    if (set_threads(K, 1) < 0) return -1;
    c->rng_key = K->views[A_RNG_KEY].buf;
    c->rng_pos = K->views[A_RNG_POS].buf;
    c->chem = K->views[A_CHEM].buf;
    c->episode = K->views[A_EPISODE].buf;
    c->next_episode = K->views[A_NEXT_EPISODE].buf;
    c->trial = K->views[A_TRIAL].buf;
    c->steps = K->views[A_STEPS].buf;
    c->ending = K->views[A_ENDING].buf;
    c->stones = K->views[A_STONES].buf;
    c->potions = K->views[A_POTIONS].buf;
    c->items = K->views[A_ITEMS].buf;
    c->trial_rewards = K->views[A_TRIAL_REWARDS].buf;
    c->matrix_events = K->views[A_MATRIX_EVENTS].buf;
    c->event_count = K->views[A_EVENT_COUNT].buf;
    c->obs = K->views[A_OBS].buf;
    c->bound = 0;
    return 0;
}

/* ------------------------------------------------------------------------ game rules */

/* Start trial t of row i: draw its items (a sampled episode), reset the counters, rebuild the observation. */
static void start_trial(const ctx_t *c, Py_ssize_t i, int t) {
    int8_t *it = c->items + (i * c->T + t) * ITEM_SLOTS;
    if (c->episode[i] == SAMPLED) {
        /* the stream position in a local: stores of the drawn bytes cannot alias it */
        uint32_t *key = c->rng_key + i * MT_N;
        int32_t pos = c->rng_pos[i];
        int8_t drawn[ITEM_SLOTS];
        for (int s = 0; s < c->n_stones; s++) drawn[s] = (int8_t)mt_randint(key, &pos, NUM_LATENT_STONES);
        for (int p = 0; p < c->n_potions; p++) drawn[p + MAX_STONES] = (int8_t)mt_randint(key, &pos, NUM_POTION_TYPES);
        c->rng_pos[i] = pos;
        memcpy(it, drawn, (size_t)c->n_stones);
        memcpy(it + MAX_STONES, drawn + MAX_STONES, (size_t)c->n_potions);
    }
    c->trial[i] = (int16_t)t;
    c->steps[i] = 0;
    c->ending[i] = 0;
    c->event_count[i] = 0;
    memcpy(c->stones + i * MAX_STONES, it, MAX_STONES);
    memcpy(c->potions + i * MAX_POTIONS, it + MAX_STONES, MAX_POTIONS);
    const int16_t *ch = c->chem + CHEM_WIDTH * i;
    const float *sf = c->stone_feat + ((ch[CHEM_SM] * NUM_ROTATIONS + ch[CHEM_ROT]) * NUM_LATENT_STONES) * FEATURES;
    const float *pf = c->potion_feat + ch[CHEM_PM] * NUM_POTION_TYPES;
    float *o = c->obs + i * c->F;
    int S = c->S, P = c->P;
    /* what an empty slot shows (the description's), in locals: the float stores below cannot change them */
    float stone_default[FEATURES + 1], empty_colour = c->potion_default[0], empty_used = c->potion_default[1];
    memcpy(stone_default, c->stone_default, sizeof stone_default);
    for (int s = 0; s < MAX_STONES; s++) {
        float *os = o + s * S;
        int latent = it[s];
        if (latent >= 0) {
            memcpy(os, sf + latent * FEATURES, FEATURES * sizeof(float));
            if (S > FEATURES) os[FEATURES] = 0.0f; /* not used */
        } else {
            memcpy(os, stone_default, FEATURES * sizeof(float));
            if (S > FEATURES) os[FEATURES] = stone_default[FEATURES];
        }
    }
    float *op = o + MAX_STONES * S;
    for (int p = 0; p < MAX_POTIONS; p++, op += P) {
        int latent = it[MAX_STONES + p];
        op[0] = latent >= 0 ? pf[latent] : empty_colour;
        if (P > 1) op[1] = latent >= 0 ? 0.0f : empty_used;
    }
}

static int bisect_right(const double *cdf, int n, double u) {
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (u < cdf[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo < n ? lo : n - 1;
}

/* Start an episode in row i: given (chemistry and items already written), the fixed episode ep >= 0 or the
 * cursor's next (ep < 0) of a fixed source, or a sampled one. */
static void begin_episode(const ctx_t *c, Py_ssize_t i, int ep) {
    int T = c->T;
    if (ep == GIVEN) {
    } else if (c->source == SOURCE_SAMPLED) {
        uint32_t *key = c->rng_key + i * MT_N;
        int32_t *pos = c->rng_pos + i;
        int16_t *ch = c->chem + CHEM_WIDTH * i;
        if (c->randomize_maps) {
            ch[CHEM_PM] = (int16_t)mt_randint(key, pos, NUM_POTION_MAPS);
            ch[CHEM_SM] = (int16_t)mt_randint(key, pos, NUM_STONE_MAPS);
        } else {
            ch[CHEM_PM] = (int16_t)SPEC_FIXED_POTION_MAP;
            ch[CHEM_SM] = (int16_t)SPEC_FIXED_STONE_MAP;
        }
        double u = mt_random_sample(key, pos);
        ch[CHEM_GRAPH] = (int16_t)c->graphs[bisect_right(c->cdf, c->G, u)];
        ch[CHEM_ROT] = c->rotation ? (int16_t)mt_randint(key, pos, NUM_ROTATIONS) : 0;
        memset(c->items + i * T * ITEM_SLOTS, 0xff, (size_t)T * ITEM_SLOTS);
        c->episode[i] = SAMPLED;
    } else {
        int e = ep >= 0 ? ep : c->next_episode[i];
        memcpy(c->chem + CHEM_WIDTH * i, c->fixed_chem + CHEM_WIDTH * e, (size_t)CHEM_WIDTH * sizeof(int16_t));
        memcpy(c->items + i * T * ITEM_SLOTS, c->fixed_items + (Py_ssize_t)e * T * ITEM_SLOTS, (size_t)T * ITEM_SLOTS);
        c->episode[i] = e;
        c->next_episode[i] = (int32_t)((e + c->stride) % c->fixed_count);
    }
    memset(c->trial_rewards + i * T, 0, (size_t)T * sizeof(double));
    memset(c->matrix_events + i * T * MAX_STONES * STONE_BLOCK, 0xff, (size_t)T * MAX_STONES * STONE_BLOCK);
    start_trial(c, i, 0);
}

typedef struct {
    double reward;
    int kind, stone_slot, potion_slot, old, potion, new_;
} outcome_t;

/* Apply one action (in range) to row i (in an episode); the trial is ended by advance(). The common paths
 * are written with selects rather than branches: random actions make branches unpredictable. */
static inline double apply(const ctx_t *c, Py_ssize_t i, int64_t action, outcome_t *out) {
    int s = c->action_stone[action], column = c->action_column[action];
    int8_t *stone_slot = c->stones + i * MAX_STONES + s;
    int stone = *stone_slot;
    int touched = column >= 0 && stone >= 0;        /* a stone goes somewhere */
    int cash = touched && column == CAULDRON;       /* ... into the cauldron */
    int p = column >= 0 && column < CAULDRON ? column : 0;
    int8_t *potion_slot = c->potions + i * MAX_POTIONS + p;
    int potion = *potion_slot;
    int dip = touched && !cash && potion >= 0;      /* ... into an unused potion */
    int t = c->trial[i];
    int steps = ++c->steps[i];
    double reward = 0.0;
    int moved = stone;
    if (cash | dip) {
        float *os = c->obs + i * c->F + s * c->S;
        int8_t *events = c->matrix_events + ((i * c->T + t) * MAX_STONES + s) * STONE_BLOCK;
        events[column] = c->event_count[i]++;
        if (cash) {
            reward = c->values[stone];
            moved = -1;
            memcpy(os, c->stone_default, (size_t)c->S * sizeof(float));
            c->trial_rewards[i * c->T + t] += reward;
        } else {
            const int16_t *ch = c->chem + CHEM_WIDTH * i;
            moved = c->trans[(uint16_t)ch[CHEM_GRAPH] * TRANS_ROW + stone * NUM_POTION_TYPES + potion];
            *potion_slot = -1;
            float *op = c->obs + i * c->F + MAX_STONES * c->S + p * c->P;
            op[0] = c->potion_default[0];
            if (c->P > 1) op[1] = c->potion_default[1];
            memcpy(os, c->stone_feat + ((ch[CHEM_SM] * NUM_ROTATIONS + ch[CHEM_ROT]) * NUM_LATENT_STONES + moved) * FEATURES,
                   FEATURES * sizeof(float));
        }
        *stone_slot = (int8_t)moved;
    }
    c->ending[i] = column == END_TRIAL || steps >= c->max_steps;
    if (out) {
        out->reward = reward;
        out->kind = cash ? SPEC_STONE_CASHED : dip ? SPEC_POTION_USED : SPEC_NOTHING;
        out->stone_slot = s;
        out->potion_slot = column >= 0 && column < CAULDRON ? column : -1;
        out->old = column >= 0 ? stone : -1; /* the no-op and the end-trial action touch no stone */
        out->potion = dip ? potion : -1;
        out->new_ = column >= 0 ? moved : -1;
    }
    return reward;
}

/* End row i's trial if the applied action ended it: the trial ended (or -1); *over set at the episode end. */
static inline int advance(const ctx_t *c, Py_ssize_t i, int *over) {
    *over = 0;
    if (!c->ending[i]) return -1;
    c->ending[i] = 0;
    int t = c->trial[i];
    if (t >= c->T - 1) {
        c->trial[i] = -1;
        *over = 1;
    } else {
        start_trial(c, i, t + 1);
    }
    return t;
}

/* ----------------------------------------------------------------------- the methods */

static int check_row(const ctx_t *c, Py_ssize_t row) {
    if (row < 0 || row >= c->n) {
        PyErr_Format(PyExc_IndexError, "row %zd out of range: the batch holds %zd games", row, c->n);
        return -1;
    }
    return 0;
}

static int check_source(const ctx_t *c) {
    if (c->source == SOURCE_FIXED && !c->bound) {
        PyErr_SetString(PyExc_RuntimeError, "the fixed episodes are not bound (GameBatch._bind_source)");
        return -1;
    }
    if (c->source == SOURCE_NONE) {
        PyErr_SetString(PyExc_ValueError, "this batch has no episode source: start episodes with begin_given()");
        return -1;
    }
    return 0;
}

static PyObject *Kernel_seed(Kernel *K, PyObject *args) {
    PyObject *rows_obj, *seeds_obj;
    if (!PyArg_ParseTuple(args, "OO", &rows_obj, &seeds_obj)) return NULL;
    Py_buffer rows, seeds;
    if (get_view(&rows, rows_obj, "rows", 'i', sizeof(Py_ssize_t), -1, 0) < 0) return NULL;
    if (get_view(&seeds, seeds_obj, "seeds", 'u', 4, rows.len / (Py_ssize_t)sizeof(Py_ssize_t), 0) < 0) {
        PyBuffer_Release(&rows);
        return NULL;
    }
    const Py_ssize_t *r = rows.buf;
    const uint32_t *s = seeds.buf;
    Py_ssize_t m = rows.len / (Py_ssize_t)sizeof(Py_ssize_t);
    PyObject *result = NULL;
    for (Py_ssize_t j = 0; j < m; j++)
        if (check_row(&K->c, r[j]) < 0) goto done;
    for (Py_ssize_t j = 0; j < m; j++) mt_seed(K->c.rng_key + r[j] * MT_N, K->c.rng_pos + r[j], s[j]);
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&rows);
    PyBuffer_Release(&seeds);
    return result;
}

static PyObject *Kernel_bind_fixed(Kernel *K, PyObject *args) {
    PyObject *chem, *items;
    if (!PyArg_ParseTuple(args, "OO", &chem, &items)) return NULL;
    ctx_t *c = &K->c;
    if (c->source != SOURCE_FIXED) {
        PyErr_SetString(PyExc_ValueError, "bind_fixed: the batch's source is not fixed");
        return NULL;
    }
    for (int slot = F_CHEM; slot <= F_ITEMS; slot++) {
        if (K->held[slot]) {
            PyBuffer_Release(&K->views[slot]);
            K->held[slot] = 0;
        }
    }
    c->bound = 0;
    if (hold(K, F_CHEM, chem, "fixed chemistries", 'i', 2, -1, 0) < 0) return NULL;
    Py_ssize_t count = K->views[F_CHEM].len / (2 * CHEM_WIDTH);
    if (K->views[F_CHEM].len != count * 2 * CHEM_WIDTH) {
        PyErr_SetString(PyExc_ValueError, "bind_fixed: the fixed chemistries are not rows of spec.chem_width");
        return NULL;
    }
    if (hold(K, F_ITEMS, items, "fixed items", 'i', 1, count * c->T * ITEM_SLOTS, 0) < 0) return NULL;
    if (count < 1) {
        PyErr_SetString(PyExc_ValueError, "bind_fixed: no episodes");
        return NULL;
    }
    c->fixed_chem = K->views[F_CHEM].buf;
    c->fixed_items = K->views[F_ITEMS].buf;
    c->fixed_count = count;
    c->bound = 1;
    Py_RETURN_NONE;
}

static PyObject *Kernel_begin(Kernel *K, PyObject *args) {
    PyObject *rows_obj, *eps_obj;
    if (!PyArg_ParseTuple(args, "OO", &rows_obj, &eps_obj)) return NULL;
    Py_buffer rows, eps;
    int have_eps = eps_obj != Py_None;
    if (get_view(&rows, rows_obj, "rows", 'i', sizeof(Py_ssize_t), -1, 0) < 0) return NULL;
    Py_ssize_t m = rows.len / (Py_ssize_t)sizeof(Py_ssize_t);
    if (have_eps && get_view(&eps, eps_obj, "episodes", 'i', 4, m, 0) < 0) {
        PyBuffer_Release(&rows);
        return NULL;
    }
    const ctx_t c = K->c;
    const Py_ssize_t *r = rows.buf;
    const int32_t *e = have_eps ? eps.buf : NULL;
    PyObject *result = NULL;
    for (Py_ssize_t j = 0; j < m; j++) {
        if (check_row(&c, r[j]) < 0) goto done;
        if (e && e[j] != GIVEN && (e[j] < 0 || !c.bound || e[j] >= c.fixed_count)) {
            PyErr_Format(PyExc_ValueError, "episode %d out of range", (int)e[j]);
            goto done;
        }
        if ((!e || e[j] != GIVEN) && check_source(&c) < 0) goto done;
    }
    for (Py_ssize_t j = 0; j < m; j++) begin_episode(&c, r[j], e ? e[j] : -1);
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&rows);
    if (have_eps) PyBuffer_Release(&eps);
    return result;
}

static PyObject *Kernel_first_bad_action(Kernel *K, PyObject *args) {
    (void)K;
    PyObject *obj;
    long long limit;
    if (!PyArg_ParseTuple(args, "OL", &obj, &limit)) return NULL;
    Py_buffer view;
    if (get_view(&view, obj, "actions", 'i', 8, -1, 0) < 0) return NULL;
    const int64_t *a = view.buf;
    Py_ssize_t m = view.len / 8, bad = -1;
    uint64_t ulimit = (uint64_t)limit;
    for (Py_ssize_t j = 0; j < m; j++) {
        if ((uint64_t)a[j] >= ulimit) {
            bad = j;
            break;
        }
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(bad);
}

static void step_rows(step_job_t *job) {
    const ctx_t c = *job->c;
    const int64_t *actions = job->actions;
    const uint8_t *begin = job->begin;
    double *reward = job->reward;
    uint8_t *terminated = job->terminated;
    int16_t *trial_ended = job->trial_ended;
    float *obs_out = job->obs_out;
    Py_ssize_t n = job->stop, ends = 0, terms = 0;
    int F = c.F;
    for (Py_ssize_t i = job->start; i < n; i++) {
        if (i + PREFETCH_DISTANCE < n) {
            /* the rows a later game's action will touch: their misses overlap this game's work */
            Py_ssize_t j = i + PREFETCH_DISTANCE;
            int sj = c.action_stone[actions[j]], tj = c.trial[j] < 0 ? 0 : c.trial[j];
            __builtin_prefetch(c.matrix_events + ((j * c.T + tj) * MAX_STONES + sj) * STONE_BLOCK, 1);
            __builtin_prefetch(c.trial_rewards + j * c.T + tj, 1);
            if (c.steps[j] + 1 >= c.max_steps && c.episode[j] == SAMPLED) {
                /* its trial ends at this step: the next items come from its stream */
                const uint32_t *next = c.rng_key + j * MT_N + (c.rng_pos[j] < MT_N ? c.rng_pos[j] : 0);
                __builtin_prefetch(next, 0);
                __builtin_prefetch(next + 16, 0);
            }
        }
        if (begin && begin[i]) {
            begin_episode(&c, i, -1);
            reward[i] = 0.0;
            terminated[i] = 0;
            trial_ended[i] = -1;
        } else {
            int over;
            reward[i] = apply(&c, i, actions[i], NULL);
            int t = advance(&c, i, &over);
            terminated[i] = (uint8_t)over;
            trial_ended[i] = (int16_t)t;
            ends += t >= 0;
            terms += over;
        }
        if (obs_out) memcpy(obs_out + i * F, c.obs + i * F, (size_t)F * sizeof(float));
    }
    job->ends = ends;
    job->terms = terms;
}

#ifdef ALCHEMY_THREADS
static void *step_thread(void *job) {
    step_rows(job);
    return NULL;
}
#endif

/* Run the jobs: the first on this thread, the others on threads of their own (where pthreads exist). */
static void run_jobs(Kernel *K, int count) {
    step_job_t *jobs = K->jobs;
#ifdef ALCHEMY_THREADS
    pthread_t *ids = K->ids;
    int *started = K->started;
    for (int j = 1; j < count; j++) started[j] = pthread_create(&ids[j], NULL, step_thread, &jobs[j]) == 0;
    step_rows(&jobs[0]);
    for (int j = 1; j < count; j++) {
        if (started[j])
            pthread_join(ids[j], NULL);
        else
            step_rows(&jobs[j]);
    }
#else
    for (int j = 0; j < count; j++) step_rows(&jobs[j]);
#endif
}

static PyObject *Kernel_step(Kernel *K, PyObject *args) {
    PyObject *o_actions, *o_begin, *o_reward, *o_term, *o_ended, *o_obs;
    if (!PyArg_ParseTuple(args, "OOOOOO", &o_actions, &o_begin, &o_reward, &o_term, &o_ended, &o_obs)) return NULL;
    const ctx_t c = K->c;
    Py_ssize_t n = c.n;
    Py_buffer v[6];
    int got[6] = {0};
    PyObject *result = NULL;
    if (get_view(&v[0], o_actions, "actions", 'i', 8, n, 0) < 0) goto done;
    got[0] = 1;
    if (o_begin != Py_None) {
        if (get_view(&v[1], o_begin, "begin", 'b', 1, n, 0) < 0) goto done;
        got[1] = 1;
    }
    if (get_view(&v[2], o_reward, "reward", 'f', 8, n, 1) < 0) goto done;
    got[2] = 1;
    if (get_view(&v[3], o_term, "terminated", 'b', 1, n, 1) < 0) goto done;
    got[3] = 1;
    if (get_view(&v[4], o_ended, "trial_ended", 'i', 2, n, 1) < 0) goto done;
    got[4] = 1;
    if (o_obs != Py_None) {
        if (get_view(&v[5], o_obs, "obs_out", 'f', 4, n * c.F, 1) < 0) goto done;
        got[5] = 1;
    }
    const int64_t *actions = v[0].buf;
    const uint8_t *begin = got[1] ? v[1].buf : NULL;
    double *reward = v[2].buf;
    uint8_t *terminated = v[3].buf;
    int16_t *trial_ended = v[4].buf;
    float *obs_out = got[5] ? v[5].buf : NULL;
    int any_begin = 0, limit = c.A;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (begin && begin[i]) {
            any_begin = 1;
        } else if (c.trial[i] < 0) {
            PyErr_Format(PyExc_RuntimeError, "game %zd is not in an episode: start one before stepping it", i);
            goto done;
        } else if ((uint64_t)actions[i] >= (uint64_t)limit) {
            PyErr_Format(PyExc_ValueError, "action %lld of game %zd out of range 0..%d", (long long)actions[i], i,
                         limit - 1);
            goto done;
        }
    }
    if (any_begin && check_source(&c) < 0) goto done;
    step_job_t *jobs = K->jobs;
    int threads = K->threads;
    if (threads > n / MIN_ROWS_PER_THREAD) threads = n / MIN_ROWS_PER_THREAD > 1 ? (int)(n / MIN_ROWS_PER_THREAD) : 1;
    for (int j = 0; j < threads; j++) {
        jobs[j] = (step_job_t){&c, actions, begin, reward, terminated, trial_ended, obs_out, n * j / threads,
                               n * (j + 1) / threads, 0, 0};
    }
    Py_ssize_t ends = 0, terms = 0;
    Py_BEGIN_ALLOW_THREADS
    run_jobs(K, threads);
    Py_END_ALLOW_THREADS
    for (int j = 0; j < threads; j++) {
        ends += jobs[j].ends;
        terms += jobs[j].terms;
    }
    result = Py_BuildValue("(nn)", ends, terms);
done:
    for (int j = 0; j < 6; j++)
        if (got[j]) PyBuffer_Release(&v[j]);
    return result;
}

static int one_args(const ctx_t *c, PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, Py_ssize_t *row,
                    long long *value) {
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "expected %zd arguments, got %zd", want, nargs);
        return -1;
    }
    *row = PyLong_AsSsize_t(args[0]);
    if (*row == -1 && PyErr_Occurred()) return -1;
    if (check_row(c, *row) < 0) return -1;
    if (want == 2) {
        *value = PyLong_AsLongLong(args[1]);
        if (*value == -1 && PyErr_Occurred()) return -1;
    }
    return 0;
}

/* The row is in an episode and the action in range (single-game calls validate here too). */
static int playable(const ctx_t *c, Py_ssize_t row, long long action) {
    if (c->trial[row] < 0) {
        PyErr_Format(PyExc_RuntimeError, "game %zd is not in an episode: start one before stepping it", row);
        return 0;
    }
    if (action < 0 || action >= c->A) {
        PyErr_Format(PyExc_ValueError, "action %lld out of range 0..%d", action, c->A - 1);
        return 0;
    }
    return 1;
}

static PyObject *Kernel_step_one(Kernel *K, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t row;
    long long action;
    const ctx_t *c = &K->c;
    if (one_args(c, args, nargs, 2, &row, &action) < 0 || !playable(c, row, action)) return NULL;
    int over;
    double reward = apply(c, row, action, NULL);
    int t = advance(c, row, &over);
    PyObject *result = PyTuple_New(3);
    if (!result) return NULL;
    PyTuple_SET_ITEM(result, 0, PyFloat_FromDouble(reward));
    PyTuple_SET_ITEM(result, 1, PyLong_FromLong(t));
    PyTuple_SET_ITEM(result, 2, PyBool_FromLong(over));
    return result;
}

static PyObject *Kernel_apply_one(Kernel *K, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t row;
    long long action;
    const ctx_t *c = &K->c;
    if (one_args(c, args, nargs, 2, &row, &action) < 0 || !playable(c, row, action)) return NULL;
    outcome_t out;
    apply(c, row, action, &out);
    return Py_BuildValue("(diiiiii)", out.reward, out.kind, out.stone_slot, out.potion_slot, out.old, out.potion,
                         out.new_);
}

static PyObject *Kernel_advance_one(Kernel *K, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t row;
    if (one_args(&K->c, args, nargs, 1, &row, NULL) < 0) return NULL;
    int over;
    int t = advance(&K->c, row, &over);
    return Py_BuildValue("(iO)", t, over ? Py_True : Py_False);
}

/* Draws of a row's stream, for tests against numpy.random.RandomState. */
static PyObject *Kernel_randint(Kernel *K, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t row;
    long long high;
    if (one_args(&K->c, args, nargs, 2, &row, &high) < 0) return NULL;
    if (high < 1 || high > 0xffffffffLL) {
        PyErr_SetString(PyExc_ValueError, "high must be in 1..2**32-1");
        return NULL;
    }
    return PyLong_FromLong(mt_randint(K->c.rng_key + row * MT_N, K->c.rng_pos + row, (uint32_t)high));
}

static PyObject *Kernel_random_sample(Kernel *K, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t row;
    if (one_args(&K->c, args, nargs, 1, &row, NULL) < 0) return NULL;
    return PyFloat_FromDouble(mt_random_sample(K->c.rng_key + row * MT_N, K->c.rng_pos + row));
}

static PyObject *Kernel_get_bound(Kernel *K, void *closure) {
    (void)closure;
    return PyBool_FromLong(K->c.bound);
}

static PyObject *Kernel_get_name(Kernel *K, void *closure) {
    (void)K, (void)closure;
    return PyUnicode_FromString("c");
}

static PyMethodDef Kernel_methods[] = {
    {"seed", (PyCFunction)Kernel_seed, METH_VARARGS, "seed(rows, seeds): RandomState(seed) streams"},
    {"bind_fixed", (PyCFunction)Kernel_bind_fixed, METH_VARARGS, "bind_fixed(chem_table, items_table)"},
    {"begin", (PyCFunction)Kernel_begin, METH_VARARGS, "begin(rows, episodes or None): start episodes"},
    {"first_bad_action", (PyCFunction)Kernel_first_bad_action, METH_VARARGS, "index of the first action out of range"},
    {"step", (PyCFunction)Kernel_step, METH_VARARGS,
     "step(actions, begin, reward, terminated, trial_ended, obs_out) -> (trial ends, terminations)"},
    {"step_one", (PyCFunction)(void (*)(void))Kernel_step_one, METH_FASTCALL, "step_one(row, action)"},
    {"apply_one", (PyCFunction)(void (*)(void))Kernel_apply_one, METH_FASTCALL, "apply_one(row, action)"},
    {"advance_one", (PyCFunction)(void (*)(void))Kernel_advance_one, METH_FASTCALL, "advance_one(row)"},
    {"randint", (PyCFunction)(void (*)(void))Kernel_randint, METH_FASTCALL, "randint(row, high): one draw"},
    {"random_sample", (PyCFunction)(void (*)(void))Kernel_random_sample, METH_FASTCALL, "random_sample(row)"},
    {NULL, NULL, 0, NULL},
};

static PyObject *Kernel_get_threads(Kernel *K, void *closure) {
    (void)closure;
    return PyLong_FromLong(K->threads);
}

static int Kernel_set_threads(Kernel *K, PyObject *value, void *closure) {
    (void)closure;
    long v = value ? PyLong_AsLong(value) : -1;
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < 1 || v > K->max_threads) {
        PyErr_Format(PyExc_ValueError, "threads must be in 1..%d, got %ld", K->max_threads, v);
        return -1;
    }
    return set_threads(K, (int)v);
}

static PyGetSetDef Kernel_getset[] = {
    {"threads", (getter)Kernel_get_threads, (setter)Kernel_set_threads, "threads of one step", NULL},
    {"bound", (getter)Kernel_get_bound, NULL, "fixed episodes bound", NULL},
    {"name", (getter)Kernel_get_name, NULL, "backend name", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject KernelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "alchemy_gym.core._kernel.Kernel",
    .tp_basicsize = sizeof(Kernel),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Kernel(state, spec, settings): the compiled operations of a GameBatch (see the file's header)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Kernel_init,
    .tp_dealloc = (destructor)Kernel_dealloc,
    .tp_methods = Kernel_methods,
    .tp_getset = Kernel_getset,
};

static struct PyModuleDef kernel_module = {
    PyModuleDef_HEAD_INIT, "_kernel", "The compiled backend of alchemy_gym.core.batch.GameBatch.", -1, NULL,
};

PyMODINIT_FUNC PyInit__kernel(void) {
    if (PyType_Ready(&KernelType) < 0) return NULL;
    PyObject *m = PyModule_Create(&kernel_module);
    if (!m) return NULL;
    Py_INCREF(&KernelType);
    if (PyModule_AddObject(m, "Kernel", (PyObject *)&KernelType) < 0) {
        Py_DECREF(&KernelType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
