/* The search of the ideal observer, the search oracle and the ideal explorer (alchemy_gym.agents.ideal_observer):
 * exhaustive expectimax over one trial on a set-of-world-states belief, exact, with the pruning described in the
 * module docstring of ideal_observer.py (memo, symmetry keys, colour classes, static and perfect-information
 * bounds, floors with fail-low upper bounds, action ordering, closed form for the last potion). Its values,
 * expected potion counts and decisions are those of the plain expectimax (ideal_observer.reference_search), which
 * the tests compare it with on small states.
 *
 * The memo is one table holding exact values (with more than two potions left, with two) and upper bounds (one
 * probe finds a node's entry, whichever it is) within a byte budget; once full, it replaces the entries of nodes
 * with the fewest potions left (see Table): values and decisions never depend on the budget, only the nodes
 * searched do. Beliefs are bitsets of 64-bit words over the trial's frame; memo keys are 128-bit hashes.
 *
 * Inputs are named (see "named inputs" below): Kernel(tables) reads the attributes of a KernelTables,
 * Kernel.search(request) those of a SearchRequest and returns a SearchResult; PiTable takes keyword arguments.
 *
 * One Kernel object per trial: it holds the per-bit tables of the frame (graph, latent potion of each colour,
 * latent stone of each perceived stone, perceived stone of each latent stone), computes outcome partitions
 * and bound masks lazily, and keeps its memos across the decisions of the trial. The perfect-information values
 * live in a PiTable owned by the world model, shared by the kernels of all trials and episodes: they depend only
 * on the graph, the latent stones and the potion counts.
 *
 * Compile without floating point contraction (setup.py passes -ffp-contract=off): fused multiply-adds
 * would change the last bits of the sums.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

/* The game's shape this kernel is compiled for, generated from the search description (ideal_observer.SEARCH_SPEC,
 * built from alchemy_gym.core.spec.SPEC) by scripts/headers.py. The algorithm is specialised to it (colour pairs,
 * the symmetries of the stone cube held in a 64-bit mask, latent stones packed 3 bits each, the reward levels), so
 * its sizes are compile-time constants; Kernel(tables) and PiTable(spec=...) read the description by name at start
 * and refuse one that differs (check_spec). */
#include "_search_spec.h"
#define NLAT SEARCH_NUM_LATENT_STONES
#define NPOT SEARCH_NUM_POTION_TYPES /* (perceived colours too) */
#define NOBS SEARCH_NUM_PERCEIVED_STONES
#define NSYM SEARCH_NUM_SYMMETRIES /* of the stone cube, and of the colours */
#define MAX_PATH SEARCH_MAX_PATH /* the longest useful path of a stone */
#define REWARD_LEVELS SEARCH_REWARD_LEVELS /* a perceived stone's index % REWARD_LEVELS is its reward level */
/* What follows from them: the reward indicator of a perceived stone (-3, -1, 1, 3), the best stone's (GOLD) and
 * the other positive one's (ONE); the sets of colours; the steps of a path bound. */
#define GOLD (REWARD_LEVELS - 1)
#define ONE (GOLD - 2)
#define REWARD(o) (2 * ((o) % REWARD_LEVELS) - GOLD)
#define COLOUR_SETS (1 << NPOT)
#define PATH_STEPS (MAX_PATH + 1)
#define LAT_BITS 3 /* bits of a latent stone in a packed multiset: NLAT <= 1 << LAT_BITS */
/* The colour pair of a perceived colour (2 x dimension + direction, items.potion_index): bit PAIR(p) of touched. */
#define PAIR(p) ((p) >> 1)
#define PARTNER(p) ((p) ^ 1)
#if NLAT > (1 << LAT_BITS) || NSYM > 64
#error "the compiled shape does not fit the kernel's packing"
#endif
/* Capacities of the kernel (not the game's): */
#define MAXST 16
#define MAXLEFT 48 /* potions at the root of a search (the depth of its scratch buffers) */
#define MAXKIDS 32 /* outcomes of a move whose trimmed belief span refinement keeps (more are recomputed) */
#define TIE_TOLERANCE 1e-9
/* The perfect-information bound (pi_bound) of an outcome with at least spec.pi_eager potions left is computed with
 * the candidates (it orders them); with spec.pi_lazy to spec.pi_eager - 1 left, only when its candidate is about to
 * be searched; below spec.pi_lazy, never (cheaper to search). Both are the search description's (Kernel.pi_eager,
 * Kernel.pi_lazy). */

/* Portable builds (no -march): the bit loops get a POPCNT clone chosen at load time where GCC and glibc allow
 * it (ifunc), else the compiler's generic popcount. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__)
#define HOT __attribute__((target_clones("popcnt", "default")))
#else
#define HOT
#endif

#if defined(__GNUC__) || defined(__clang__)
#define POPCNT(x) ((uint64_t)__builtin_popcountll(x))
#else
static inline uint64_t POPCNT(uint64_t x) {
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return (x * 0x0101010101010101ULL) >> 56;
}
#endif

/* ------------------------------------------------------------------ hashing (128 bits, two lanes) */

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0xD6E8FEB86659FD93ULL
#define P5 0xA0761D6478BD642FULL

typedef struct {
    uint64_t a, b, n;
} Hasher;

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t fmix64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xFF51AFD7ED558CCDULL;
    k ^= k >> 33;
    k *= 0xC4CEB9FE1A85EC53ULL;
    k ^= k >> 33;
    return k;
}

static inline void h_init(Hasher *h, uint64_t domain) {
    h->a = P5 ^ (domain * P1);
    h->b = P4 + (domain * P3);
    h->n = 0;
}

static inline void h_add(Hasher *h, uint64_t w) {
    h->a = rotl64(h->a + w * P2, 31) * P1;
    h->b = (rotl64(h->b ^ (w * P4), 27) + P5) * P3;
    h->n++;
}

static inline void h_final(Hasher *h, uint64_t *k0, uint64_t *k1) {
    uint64_t a = fmix64(h->a ^ (h->n * P3));
    uint64_t b = fmix64(h->b + rotl64(a, 17) + h->n);
    *k0 = a;
    *k1 = b | 1; /* never the empty key (0, 0) */
}

/* ------------------------------------------------------------------ memo tables (open addressing) */

/* A memo entry. The low byte of k1 holds the entry's priority + 1 (the potions left at the node: the more,
 * the costlier to search again); keys compare on k0 and the other 56 bits of k1 (120 bits in all). k1 == 0
 * marks an empty slot. An exact entry holds the node's value and expected potions used (d >= 0); an upper
 * entry (d = UPPER, or PI_UPPER for a perfect-information bound) only an upper bound on the value, returned under
 * a floor the node did not reach. */
typedef struct {
    uint64_t k0, k1;
    double v, d;
} Entry;

/* Open addressing with a bounded probe window: an entry lives within WINDOW slots of its home slot. A table
 * doubles (at load 0.7) up to ``max_cap`` slots; once there, a new key whose window is full replaces the
 * window's entry of lowest priority (the oldest of those, first in the window, on ties). Entries are never
 * removed otherwise, so a lookup stops at the first empty slot. Bounded memory; values stay exact (a lost entry
 * only means a node is searched again). */
#define WINDOW 16
#define KEYMASK (~(uint64_t)0xFF)

#define UPPER (-1.0)
#define PI_UPPER (-2.0) /* an upper bound that is the node's perfect-information bound (not computed again) */

/* Entries of each kind (for stats): exact with more than two potions left, exact with two, upper. */
static inline int entry_kind(const Entry *e) { return e->d < 0 ? 2 : ((e->k1 & 0xFF) - 1 > 2 ? 0 : 1); }

typedef struct {
    Entry *t;
    size_t cap, count, max_cap, replaced;
    size_t kinds[3];
} Table;

/* Zeroed memory for a memo table, committed by the kernel as it is written (mmap); large tables ask Linux for
 * transparent huge pages (the memos are probed at random: fewer TLB misses). */
static void *table_mem(size_t bytes) {
#if defined(__linux__) && defined(MAP_ANONYMOUS)
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
#if defined(MADV_HUGEPAGE)
    if (bytes >= ((size_t)4 << 20)) madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
#else
    return calloc(1, bytes);
#endif
}

static void table_mem_free(void *p, size_t bytes) {
    if (!p) return;
#if defined(__linux__) && defined(MAP_ANONYMOUS)
    munmap(p, bytes);
#else
    (void)bytes;
    free(p);
#endif
}

static int table_alloc(Table *t, size_t cap, size_t max_cap) {
    if (cap > max_cap) cap = max_cap;
    t->t = (Entry *)table_mem(cap * sizeof(Entry));
    if (!t->t) return -1;
    t->cap = cap;
    t->max_cap = max_cap;
    t->count = 0;
    t->replaced = 0;
    memset(t->kinds, 0, sizeof t->kinds);
    return 0;
}

static void table_free(Table *t) {
    table_mem_free(t->t, t->cap * sizeof(Entry));
    t->t = NULL;
    t->cap = t->count = 0;
}

static inline size_t table_home(uint64_t k0, uint64_t k1, size_t mask) { return (size_t)(k0 ^ (k1 >> 9)) & mask; }

static Entry *table_find(Table *t, uint64_t k0, uint64_t k1) {
    size_t mask = t->cap - 1, i = table_home(k0, k1, mask);
    k1 &= KEYMASK;
    for (int j = 0; j < WINDOW; j++) {
        Entry *e = &t->t[i];
        if (e->k1 == 0) return NULL;
        if (e->k0 == k0 && (e->k1 & KEYMASK) == k1) return e;
        i = (i + 1) & mask;
    }
    return NULL;
}

/* Place an entry (key not present): the first empty slot of its window, else over the window's lowest priority
 * if ``replace``; returns 0 when placed, 1 when the window is full and ``replace`` is 0. */
static int table_place(Table *t, const Entry *n, int replace) {
    size_t mask = t->cap - 1, i = table_home(n->k0, n->k1, mask), worst = i;
    for (int j = 0; j < WINDOW; j++) {
        Entry *e = &t->t[i];
        if (e->k1 == 0) {
            *e = *n;
            t->count++;
            t->kinds[entry_kind(n)]++;
            return 0;
        }
        if ((e->k1 & 0xFF) < (t->t[worst].k1 & 0xFF)) worst = i;
        i = (i + 1) & mask;
    }
    if (!replace) return 1;
    t->kinds[entry_kind(&t->t[worst])]--;
    t->kinds[entry_kind(n)]++;
    t->t[worst] = *n;
    t->replaced++;
    return 0;
}

static int table_grow(Table *t) {
    size_t ocap = t->cap, ncap = ocap * 2;
    Entry *old = t->t, *n = (Entry *)table_mem(ncap * sizeof(Entry));
    if (!n) return -1;
    t->t = n;
    t->cap = ncap;
    t->count = 0;
    memset(t->kinds, 0, sizeof t->kinds);
    for (size_t j = 0; j < ocap; j++)
        if (old[j].k1 != 0) table_place(t, &old[j], 1);
    table_mem_free(old, ocap * sizeof(Entry));
    return 0;
}

/* Insert or overwrite (an upper entry by the exact one). ``prio``: potions left at the node. */
static int table_put(Table *t, uint64_t k0, uint64_t k1, int prio, double v, double d) {
    Entry *e = table_find(t, k0, k1);
    if (e) {
        t->kinds[entry_kind(e)]--;
        e->v = v;
        e->d = d;
        t->kinds[entry_kind(e)]++;
        return 0;
    }
    Entry n = {k0, (k1 & KEYMASK) | (uint64_t)(prio < 0 ? 1 : prio > 254 ? 255 : prio + 1), v, d};
    for (;;) {
        int grow = (t->count + 1) * 10 > t->cap * 7 && t->cap < t->max_cap;
        if (!grow && table_place(t, &n, 0) == 0) return 0;
        if (t->cap < t->max_cap) {
            if (table_grow(t) < 0) return -1;
            continue;
        }
        return table_place(t, &n, 1);
    }
}

/* Small exact map: 128-bit key -> three 64-bit values (caches of canonical forms and joint gains). */
typedef struct {
    uint64_t k0, k1, x, y, z;
    int used;
} SEntry;

typedef struct {
    SEntry *t;
    size_t cap, count;
} SMap;

static int smap_alloc(SMap *m, size_t cap) {
    m->t = (SEntry *)calloc(cap, sizeof(SEntry));
    if (!m->t) return -1;
    m->cap = cap;
    m->count = 0;
    return 0;
}

static inline size_t smap_slot(uint64_t k0, uint64_t k1, size_t mask) {
    return (size_t)fmix64(k0 * P1 ^ k1) & mask;
}

static SEntry *smap_find(SMap *m, uint64_t k0, uint64_t k1) {
    size_t mask = m->cap - 1, i = smap_slot(k0, k1, mask);
    for (;;) {
        SEntry *e = &m->t[i];
        if (!e->used) return NULL;
        if (e->k0 == k0 && e->k1 == k1) return e;
        i = (i + 1) & mask;
    }
}

static SEntry *smap_insert(SMap *m, uint64_t k0, uint64_t k1) {
    if ((m->count + 1) * 2 > m->cap) {
        size_t ncap = m->cap * 2, mask = ncap - 1;
        SEntry *n = (SEntry *)calloc(ncap, sizeof(SEntry));
        if (!n) return NULL;
        for (size_t j = 0; j < m->cap; j++) {
            if (!m->t[j].used) continue;
            size_t i = smap_slot(m->t[j].k0, m->t[j].k1, mask);
            while (n[i].used) i = (i + 1) & mask;
            n[i] = m->t[j];
        }
        free(m->t);
        m->t = n;
        m->cap = ncap;
    }
    size_t mask = m->cap - 1, i = smap_slot(k0, k1, mask);
    while (m->t[i].used) i = (i + 1) & mask;
    SEntry *e = &m->t[i];
    e->used = 1;
    e->k0 = k0;
    e->k1 = k1;
    m->count++;
    return e;
}

/* ------------------------------------------------------------------ kernel */

typedef struct {
    int n;           /* outcomes */
    int res[NOBS];   /* resulting perceived stone of each outcome (unchanged stone first, then by index) */
    int lo[NOBS], hi[NOBS];
    uint64_t *masks; /* n * nw words */
} Outc;

typedef struct {
    double neg_ub, key;
    int order, o, p, nk, kid0, new_touched;
} Cand;

typedef struct {
    uint8_t st[MAXST];
    int res, oc, keyed; /* keyed: k0, k1 hold the child's memo key (computed when its bound was refined) */
    int64_t w;
    double b, ev; /* ev: value of cashing now */
    int trivial;  /* cashing now reaches the bound: the value is ev, no potion used (never searched nor keyed) */
    uint64_t k0, k1;
} Kid;

typedef struct {
    Cand *c;
    int ccap;
    Kid *k;
    int kcap;
} Scratch;

typedef struct {
    double v, d;
    int upper;    /* v is only an upper bound (d meaningless) */
    int has_action;
    int ao, ap;   /* action (-1, -1) = END */
} Res;

typedef struct {
    PyObject_HEAD
    int n, nw, ngraphs;
    int32_t *graph;
    uint8_t *latpot;  /* n x NPOT */
    int8_t *latent;   /* n x NOBS */
    uint8_t *obs;     /* n x NLAT */
    int8_t *trans;    /* G x NLAT x NPOT */
    int8_t *reach;    /* G x NLAT x COLOUR_SETS x PATH_STEPS */
    double bonus, gold;
    Py_ssize_t memo_bytes;
    int has_sym;
    int stone_sym[NSYM][NOBS];
    int colour_sym[NSYM][NPOT];
    int ns0;
    int s0[NOBS];
    Outc *outc[NOBS * NPOT];
    uint64_t **bmask; /* NOBS * COLOUR_SETS * PATH_STEPS */
    Table memo; /* exact values and upper bounds of the trial's nodes (one probe finds either) */
    SMap canon_st, canon_pot, joint;
    int sym_mode;
    int colour_order[NPOT];
    long long nodes;
    int ncls;          /* world-state classes (see WorldModel.symmetries) */
    int32_t *bitcls;   /* class of each bit (n) */
    int32_t *scperm, *ccperm; /* class permutation of each stone map, of each colour map (NSYM x ncls each) */
    int *clbuf;        /* scratch: the classes of a belief */
    uint64_t *mixa, *mixb; /* the two mixes of each class id summed by a belief's digest */
    int minimise;    /* the ideal explorer: value -(world states left at trial end); no bounds, floors or pruning */
    int pi;          /* tighten outcome bounds with the perfect-information value (see pi_bound) */
    int pi_eager, pi_lazy; /* from how many potions left the bound is computed eagerly, lazily (see above) */
    int32_t *copies; /* bits (prior weight) of the world state starting at each first bit */
    int lcode[NLAT]; /* value of cashing each latent stone, coded (see PiTable) */
    struct PiTable *pit; /* the world model's perfect-information values (a reference; see pi_bound) */
    uint8_t *bit_sr, *bit_pm; /* per bit: which latent row (stone map and rotation), which potion map */
    int nsr, npm;
    const int8_t **sr_row;    /* nsr: the latent stone of each perceived stone (rows of latent) */
    const uint8_t **pm_row;   /* npm: the latent potion of each colour (rows of latpot) */
    uint32_t pi_stamp, *sr_stamp, *pm_stamp; /* per pi_bound call: what sr_off / pm_blk hold */
    size_t *sr_off;           /* rank of the call's latent stones x G, per latent row */
    const uint8_t **pm_blk;   /* the call's block, per potion map */
    uint64_t *first; /* nw words: the first bit of each world state (to count world states, and to list them) */
    int maxdepth;
    uint64_t *bel; /* maxdepth * nw */
    Scratch *scr;
    int err;
} Kernel;

static double end_value(const Kernel *K, const uint8_t *st, int nst) {
    double total = 0.0;
    for (int i = 0; i < nst; i++) {
        int r = REWARD(st[i]);
        if (r == GOLD)
            total += K->gold;
        else if (r > 0)
            total += (double)r;
    }
    return total;
}

static int replace_stone(const uint8_t *s, int n, int i, int nw, uint8_t *out) {
    uint8_t rest[MAXST];
    int m = 0, last = -1;
    for (int k = 0; k < n; k++)
        if (k != i) rest[m++] = s[k];
    for (int k = 0; k < m; k++)
        if (rest[k] == nw) last = k;
    if (last >= 0) {
        int j = last + 1, q = 0;
        for (int k = 0; k < j; k++) out[q++] = rest[k];
        out[q++] = (uint8_t)nw;
        for (int k = j; k < m; k++) out[q++] = rest[k];
    } else {
        memcpy(out, rest, m);
        out[m] = (uint8_t)nw;
    }
    return n;
}

static double cash(const Kernel *K, int r) { return r >= GOLD ? K->gold : (r == ONE ? (double)ONE : 0.0); }

static double joint_gain(Kernel *K, const uint8_t *st, int nst, int moves) {
    int cnt[REWARD_LEVELS] = {0};
    for (int i = 0; i < nst; i++) cnt[st[i] % REWARD_LEVELS]++;
    uint64_t k0 = (uint64_t)cnt[0] | (uint64_t)cnt[1] << 8 | (uint64_t)cnt[2] << 16 | (uint64_t)cnt[3] << 24;
    uint64_t k1 = (uint64_t)moves;
    SEntry *e = smap_find(&K->joint, k0, k1);
    if (e) {
        double g;
        memcpy(&g, &e->x, sizeof g);
        return g;
    }
    double *best = (double *)calloc((size_t)moves + 1, sizeof(double));
    double *nb = (double *)calloc((size_t)moves + 1, sizeof(double));
    double *gains = (double *)calloc((size_t)moves + 1, sizeof(double));
    if (!best || !nb || !gains) {
        free(best); free(nb); free(gains);
        K->err = 1;
        return 0.0;
    }
    for (int ri = 0; ri < REWARD_LEVELS; ri++) {
        int r = REWARD(ri); /* sorted rewards: ascending */
        for (int c = 0; c < cnt[ri]; c++) {
            for (int k = 0; k <= moves; k++) {
                int t = r + 2 * k;
                gains[k] = cash(K, t < GOLD ? t : GOLD) - cash(K, r);
            }
            for (int k = 0; k <= moves; k++) {
                double m = best[k] + gains[0];
                for (int j = 1; j <= k; j++) {
                    double x = best[k - j] + gains[j];
                    if (x > m) m = x;
                }
                nb[k] = m;
            }
            memcpy(best, nb, sizeof(double) * ((size_t)moves + 1));
        }
    }
    double g = best[moves];
    free(best); free(nb); free(gains);
    e = smap_insert(&K->joint, k0, k1);
    if (!e) {
        K->err = 1;
        return g;
    }
    memcpy(&e->x, &g, sizeof g);
    return g;
}

static Outc *get_outc(Kernel *K, int o, int p) {
    Outc *oc = K->outc[o * NPOT + p];
    if (oc) return oc;
    int n = K->n, nw = K->nw;
    int16_t *rb = (int16_t *)malloc(sizeof(int16_t) * (size_t)(n ? n : 1));
    oc = (Outc *)calloc(1, sizeof(Outc));
    if (!rb || !oc) {
        free(rb); free(oc);
        K->err = 1;
        return NULL;
    }
    int present[NOBS];
    memset(present, 0, sizeof present);
    for (int b = 0; b < n; b++) {
        int lat = K->latent[(size_t)b * NOBS + o];
        if (lat < 0) {
            rb[b] = -1;
            continue;
        }
        int g = K->graph[b];
        int nl = K->trans[(g * NLAT + lat) * NPOT + K->latpot[(size_t)b * NPOT + p]];
        int r = K->obs[(size_t)b * NLAT + nl];
        rb[b] = (int16_t)r;
        present[r] = 1;
    }
    int idx[NOBS], m = 0;
    if (present[o]) {
        idx[o] = m;
        oc->res[m++] = o;
    }
    for (int r = 0; r < NOBS; r++)
        if (present[r] && r != o) {
            idx[r] = m;
            oc->res[m++] = r;
        }
    oc->n = m;
    oc->masks = (uint64_t *)calloc((size_t)(m ? m : 1) * nw, sizeof(uint64_t));
    if (!oc->masks) {
        free(rb); free(oc);
        K->err = 1;
        return NULL;
    }
    for (int b = 0; b < n; b++)
        if (rb[b] >= 0) oc->masks[(size_t)idx[rb[b]] * nw + (b >> 6)] |= 1ULL << (b & 63);
    for (int j = 0; j < m; j++) {
        const uint64_t *mk = oc->masks + (size_t)j * nw;
        int lo = 0, hi = nw;
        while (lo < hi && !mk[lo]) lo++;
        while (hi > lo && !mk[hi - 1]) hi--;
        oc->lo[j] = lo;
        oc->hi[j] = hi;
    }
    free(rb);
    K->outc[o * NPOT + p] = oc;
    return oc;
}

/* (r == ONE, r == GOLD) masks of the best indicator stone o can reach with these colours in at most steps moves. */
static const uint64_t *get_bmask(Kernel *K, int o, int colours, int steps) {
    size_t key = ((size_t)o * COLOUR_SETS + (size_t)colours) * PATH_STEPS + (size_t)steps;
    uint64_t *m = K->bmask[key];
    if (m) return m;
    int n = K->n, nw = K->nw;
    m = (uint64_t *)calloc((size_t)2 * nw, sizeof(uint64_t));
    if (!m) {
        K->err = 1;
        return NULL;
    }
    for (int b = 0; b < n; b++) {
        int lat = K->latent[(size_t)b * NOBS + o];
        if (lat < 0) continue;
        int s = 0;
        for (int p = 0; p < NPOT; p++)
            if (colours >> p & 1) s |= 1 << K->latpot[(size_t)b * NPOT + p];
        int r = K->reach[(((size_t)K->graph[b] * NLAT + lat) * COLOUR_SETS + s) * PATH_STEPS + steps];
        if (r == ONE) m[b >> 6] |= 1ULL << (b & 63);
        else if (r == GOLD) m[nw + (b >> 6)] |= 1ULL << (b & 63);
    }
    K->bmask[key] = m;
    return m;
}

/* ------------------------------------------------------------------ bit loops */

HOT static uint64_t pc_and(const uint64_t *a, const uint64_t *b, int lo, int hi) {
    uint64_t c = 0;
    for (int i = lo; i < hi; i++) c += POPCNT(a[i] & b[i]);
    return c;
}

/* For each of nm stones: popcount(bel & mask & m1[s]) and popcount(bel & mask & m3[s]). */
HOT static void pc_bound(const uint64_t *bel, const uint64_t *mask, int lo, int hi, const uint64_t *const *m, int nm,
                         int nw, uint64_t *a1, uint64_t *a3) {
    if (nm == 3) {
        const uint64_t *x0 = m[0], *x1 = m[1], *x2 = m[2];
        const uint64_t *y0 = m[0] + nw, *y1 = m[1] + nw, *y2 = m[2] + nw;
        uint64_t s0 = 0, s1 = 0, s2 = 0, t0 = 0, t1 = 0, t2 = 0;
        for (int i = lo; i < hi; i++) {
            uint64_t c = bel[i] & mask[i];
            if (!c) continue;
            s0 += POPCNT(c & x0[i]);
            t0 += POPCNT(c & y0[i]);
            s1 += POPCNT(c & x1[i]);
            t1 += POPCNT(c & y1[i]);
            s2 += POPCNT(c & x2[i]);
            t2 += POPCNT(c & y2[i]);
        }
        a1[0] = s0; a1[1] = s1; a1[2] = s2;
        a3[0] = t0; a3[1] = t1; a3[2] = t2;
        return;
    }
    for (int s = 0; s < nm; s++) a1[s] = a3[s] = 0;
    for (int i = lo; i < hi; i++) {
        uint64_t c = bel[i] & mask[i];
        if (!c) continue;
        for (int s = 0; s < nm; s++) {
            a1[s] += POPCNT(c & m[s][i]);
            a3[s] += POPCNT(c & m[s][nw + i]);
        }
    }
}

HOT static uint64_t and_into(uint64_t *dst, const uint64_t *a, const uint64_t *b, int lo, int hi, int *nlo, int *nhi) {
    uint64_t c = 0;
    int first = -1, last = -1;
    for (int i = lo; i < hi; i++) {
        uint64_t x = a[i] & b[i];
        dst[i] = x;
        if (x) {
            if (first < 0) first = i;
            last = i;
        }
    }
    *nlo = first < 0 ? lo : first;
    *nhi = first < 0 ? lo : last + 1;
    return c;
}

/* ------------------------------------------------------------------ perfect-information bound */

/* Insertion sort of a few stones (latent here; perceived for the memo keys below). */
static inline void sort_stones(const uint8_t *stones, int nst, uint8_t *sorted) {
    memcpy(sorted, stones, nst);
    for (int i = 1; i < nst; i++) {
        uint8_t x = sorted[i];
        int j = i - 1;
        while (j >= 0 && sorted[j] > x) {
            sorted[j + 1] = sorted[j];
            j--;
        }
        sorted[j + 1] = x;
    }
}

/* The most a trial can still pay with the world state known (the perfect-information value) depends only on the
 * graph, the multiset of latent stones and the potion count of each latent type. A PiTable holds these values for
 * one world model in blocks: one block per (number of stones, count vector), nms x G codes (multiset rank major,
 * graph minor), computed on first use from the blocks of the count vectors one potion smaller (a deterministic
 * game: the best of cashing now and of every (stone, potion) move), and kept across trials and episodes within a
 * byte budget (all blocks are dropped, at the start of a bound, when it is exceeded). A world state's value is
 * then one byte read: block(count vector under its potion map)[rank(latent stones under its stone map) x G + its
 * graph]; the frame's bits run over graphs within a (potion map, stone map), so consecutive reads are adjacent.
 * Codes are (number of stones worth 1) | (number worth gold) << 4. */

static void *copy_bytes(const char *src, Py_ssize_t len);
static int int_seq(PyObject *seq, int *out, int maxn, const char *what);

/* ------------------------------------------------------------------ named inputs
 * The kernel's inputs are objects with named attributes (the dataclasses KernelTables, Symmetry and SearchRequest
 * of ideal_observer.py) and keyword arguments. Each array is a C-contiguous buffer (a numpy array, or bytes for a
 * bitset) whose item kind, item size and shape are checked here, by name, when it is read. */

static const char *int_type_name(char kind, int itemsize) {
    if (kind == 'i') return itemsize == 1 ? "int8" : (itemsize == 4 ? "int32" : "signed int");
    return itemsize == 1 ? "uint8" : (itemsize == 8 ? "uint64" : "unsigned int");
}

/* A copy (malloc'd) of the integer array ``a`` (called ``what`` in errors): items of kind 'i' (signed) or 'u'
 * (unsigned) of ``itemsize`` bytes, ``ndim`` dimensions of sizes ``shape`` (-1: any size, which is written
 * back). NULL with an exception set if it does not fit. */
static void *array_copy(PyObject *a, const char *what, char kind, int itemsize, int ndim, Py_ssize_t *shape) {
    Py_buffer v;
    if (PyObject_GetBuffer(a, &v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous integer array (numpy.ascontiguousarray), got %.100s",
                     what, Py_TYPE(a)->tp_name);
        return NULL;
    }
    const char *f = v.format ? v.format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    int ok = f[0] && !f[1] && strchr(kind == 'i' ? "bhilq" : "BHILQ", f[0]) && v.itemsize == itemsize &&
             v.ndim == ndim;
    for (int d = 0; ok && d < ndim; d++)
        if (shape[d] >= 0 && v.shape[d] != shape[d]) ok = 0;
    if (!ok) {
        char want[160];
        int k = snprintf(want, sizeof want, "(");
        for (int d = 0; d < ndim && k < 120; d++)
            k += shape[d] >= 0 ? snprintf(want + k, sizeof want - k, d ? ", %zd" : "%zd", shape[d])
                               : snprintf(want + k, sizeof want - k, d ? ", *" : "*");
        snprintf(want + k, sizeof want - k, ndim == 1 ? ",)" : ")");
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous %s array of shape %s (format %s, %d dimensions)",
                     what, int_type_name(kind, itemsize), want, v.format ? v.format : "B", v.ndim);
        PyBuffer_Release(&v);
        return NULL;
    }
    for (int d = 0; d < ndim; d++) shape[d] = v.shape[d];
    void *out = copy_bytes((const char *)v.buf, v.len);
    PyBuffer_Release(&v);
    if (!out) PyErr_NoMemory();
    return out;
}

/* Attribute ``name`` of ``obj`` (``owner`` in errors) read by array_copy. */
static void *array_attr(PyObject *obj, const char *owner, const char *name, char kind, int itemsize, int ndim,
                        Py_ssize_t *shape) {
    char what[96];
    snprintf(what, sizeof what, "%s.%s", owner, name);
    PyObject *a = PyObject_GetAttrString(obj, name);
    if (!a) return NULL;
    void *out = array_copy(a, what, kind, itemsize, ndim, shape);
    Py_DECREF(a);
    return out;
}

/* A bitset attribute: ``nw`` 64-bit words as 8 * nw little-endian bytes (``int.to_bytes(8 * nw, "little")``). */
static int bits_attr(PyObject *obj, const char *owner, const char *name, int nw, uint64_t *out) {
    Py_ssize_t shape[1] = {(Py_ssize_t)nw * 8};
    unsigned char *raw = (unsigned char *)array_attr(obj, owner, name, 'u', 1, 1, shape);
    if (!raw) return -1;
    for (int i = 0; i < nw; i++) {
        uint64_t w = 0;
        for (int j = 7; j >= 0; j--) w = w << 8 | raw[i * 8 + j];
        out[i] = w;
    }
    free(raw);
    return 0;
}

static int long_attr(PyObject *obj, const char *owner, const char *name, long long *out) {
    PyObject *a = PyObject_GetAttrString(obj, name);
    if (!a) return -1;
    *out = PyLong_AsLongLong(a);
    Py_DECREF(a);
    if (*out == -1 && PyErr_Occurred()) {
        PyErr_Format(PyExc_TypeError, "%s.%s must be an int", owner, name);
        return -1;
    }
    return 0;
}

static int double_attr(PyObject *obj, const char *owner, const char *name, double *out) {
    PyObject *a = PyObject_GetAttrString(obj, name);
    if (!a) return -1;
    *out = PyFloat_AsDouble(a);
    Py_DECREF(a);
    if (*out == -1.0 && PyErr_Occurred()) {
        PyErr_Format(PyExc_TypeError, "%s.%s must be a float", owner, name);
        return -1;
    }
    return 0;
}

static int bool_attr(PyObject *obj, const char *name, int *out) {
    PyObject *a = PyObject_GetAttrString(obj, name);
    if (!a) return -1;
    *out = PyObject_IsTrue(a);
    Py_DECREF(a);
    return *out < 0 ? -1 : 0;
}

/* A sequence of at most ``maxn`` ints in [0, bound) (``owner.name`` in errors); returns its length or -1. */
static int seq_attr(PyObject *obj, const char *owner, const char *name, int *out, int maxn, int bound) {
    char what[96];
    snprintf(what, sizeof what, "%s.%s", owner, name);
    PyObject *a = PyObject_GetAttrString(obj, name);
    if (!a) return -1;
    int m = int_seq(a, out, maxn, what);
    Py_DECREF(a);
    for (int i = 0; i < m; i++)
        if (out[i] < 0 || out[i] >= bound) {
            PyErr_Format(PyExc_ValueError, "%s: %d is out of range [0, %d)", what, out[i], bound);
            return -1;
        }
    return m;
}

/* The search description ``spec`` (``owner`` in errors): the game's shape must be the one compiled (see the top of
 * the file), field by field; returns its pi_eager and pi_lazy. */
static int check_spec(PyObject *spec, const char *owner, int *pi_eager, int *pi_lazy) {
    static const struct {
        const char *name;
        long compiled;
    } shape[] = {
        {"num_latent_stones", NLAT}, {"num_potion_types", NPOT}, {"num_perceived_stones", NOBS},
        {"num_symmetries", NSYM},    {"max_path", MAX_PATH},     {"reward_levels", REWARD_LEVELS},
    };
    for (size_t i = 0; i < sizeof shape / sizeof shape[0]; i++) {
        long long v;
        if (long_attr(spec, owner, shape[i].name, &v) < 0) return -1;
        if (v != shape[i].compiled) {
            PyErr_Format(PyExc_ValueError,
                         "%s.%s is %lld, the search kernel is compiled for %ld: the game description changed, "
                         "rebuild the kernel (alchemy_gym/agents/_search.c) for it",
                         owner, shape[i].name, v, shape[i].compiled);
            return -1;
        }
    }
    long long eager, lazy;
    if (long_attr(spec, owner, "pi_eager", &eager) < 0 || long_attr(spec, owner, "pi_lazy", &lazy) < 0) return -1;
    if (lazy < 0 || eager < lazy || eager > 1 << 20) {
        PyErr_Format(PyExc_ValueError, "%s: pi_lazy and pi_eager must satisfy 0 <= pi_lazy <= pi_eager, got %lld, %lld",
                     owner, lazy, eager);
        return -1;
    }
    *pi_eager = (int)eager;
    *pi_lazy = (int)lazy;
    return 0;
}

#define PI_MAXST 5   /* stones */
#define PI_MAXS 15   /* potions */
/* Codes of a perfect-information value: (stones worth ONE) | (stones worth gold) << CODE_SHIFT. */
#define CODE_SHIFT 4
#define CODE_ONE 1
#define CODE_GOLD (1 << CODE_SHIFT)
#define CODE_OF(r) ((r) >= GOLD ? CODE_GOLD : ((r) == ONE ? CODE_ONE : 0))

static int pi_nvec[NPOT + 1][PI_MAXS + 1];          /* k-vectors summing to s */
static int pi_cum[NPOT][PI_MAXS + 1][PI_MAXS + 1];  /* vectors of a layer before value c at position i */
static int pi_layer[PI_MAXS + 2];                   /* rank of the first vector summing to s */
static int pi_nlc; /* count vectors of NPOT latent types with at most PI_MAXS potions: C(PI_MAXS + NPOT, NPOT) */

static void pi_rank_tables(void) {
    for (int k = 0; k <= NPOT; k++)
        for (int s = 0; s <= PI_MAXS; s++) {
            if (k == 0) pi_nvec[k][s] = s == 0;
            else {
                int t = 0;
                for (int v = 0; v <= s; v++) t += pi_nvec[k - 1][s - v];
                pi_nvec[k][s] = t;
            }
        }
    for (int i = 0; i < NPOT; i++)
        for (int r = 0; r <= PI_MAXS; r++) {
            int t = 0;
            for (int c = 0; c <= PI_MAXS; c++) {
                pi_cum[i][r][c] = t;
                if (c <= r) t += pi_nvec[NPOT - 1 - i][r - c];
            }
        }
    pi_layer[0] = 0;
    for (int s = 0; s <= PI_MAXS; s++) pi_layer[s + 1] = pi_layer[s] + pi_nvec[NPOT][s];
    pi_nlc = pi_layer[PI_MAXS + 1];
}

/* Rank of a count vector c summing to S (0 <= S <= PI_MAXS) among all vectors: by sum, then lexicographic. */
static inline int lc_rank(const int *c, int S) {
    int r = pi_layer[S], rem = S;
    for (int i = 0; i < NPOT - 1; i++) {
        r += pi_cum[i][rem][c[i]];
        rem -= c[i];
    }
    return r;
}

typedef struct PiTable {
    PyObject_HEAD
    int ngraphs;
    int8_t *trans; /* G x NLAT x NPOT */
    int lcode[NLAT];
    double bonus;
    double cval[256];             /* value of each code */
    uint8_t *cash[PI_MAXST + 1];  /* pi_nms[nst]: code of cashing multiset r (allocated with blocks[nst]) */
    uint8_t **blocks[PI_MAXST + 1]; /* pi_nlc pointers each (NULL until computed) */
    uint32_t *used;               /* the blocks computed, as nst << 16 | rank (to drop them all quickly) */
    size_t nused, capused;
    size_t bytes, budget;
    long long computed, clears;
} PiTable;

static inline int ms_pack(const uint8_t *sorted, int nst) {
    int k = 0;
    for (int i = 0; i < nst; i++) k |= sorted[i] << (LAT_BITS * i);
    return k;
}

static void pi_clear(PiTable *P) {
    for (size_t u = 0; u < P->nused; u++) {
        uint8_t **slot = &P->blocks[P->used[u] >> 16][P->used[u] & 0xFFFF];
        free(*slot);
        *slot = NULL;
    }
    P->nused = 0;
    P->bytes = 0;
    P->clears++;
}

/* Sorted multisets of nst latent stones (1 <= nst <= PI_MAXST), the same for every table (built at import). */
static int pi_nms[PI_MAXST + 1];          /* C(nst + NLAT - 1, nst) */
static uint8_t *pi_ms[PI_MAXST + 1];      /* nms x nst: the multisets by rank */
static uint16_t *pi_rankof[PI_MAXST + 1]; /* 2^(LAT_BITS nst): rank of a sorted multiset packed LAT_BITS a stone */
static uint16_t *pi_nxt[PI_MAXST + 1];    /* nms x nst x NLAT: rank after stone i of multiset r becomes latent v */

static int pi_multisets(void) {
    for (int nst = 1; nst <= PI_MAXST; nst++) {
        int nms = 1;
        for (int i = 1; i <= nst; i++) nms = nms * (NLAT - 1 + i) / i;
        pi_ms[nst] = (uint8_t *)malloc((size_t)nms * nst);
        pi_rankof[nst] = (uint16_t *)calloc((size_t)1 << (LAT_BITS * nst), sizeof(uint16_t));
        pi_nxt[nst] = (uint16_t *)malloc(sizeof(uint16_t) * (size_t)nms * nst * NLAT);
        if (!pi_ms[nst] || !pi_rankof[nst] || !pi_nxt[nst]) return -1;
        uint8_t cur[MAXST] = {0};
        for (int r = 0; r < nms; r++) { /* non-decreasing sequences in lexicographic order */
            memcpy(pi_ms[nst] + (size_t)r * nst, cur, nst);
            pi_rankof[nst][ms_pack(cur, nst)] = (uint16_t)r;
            int i = nst - 1;
            while (i >= 0 && cur[i] == NLAT - 1) i--;
            if (i < 0) break;
            cur[i]++;
            memset(cur + i + 1, cur[i], (size_t)(nst - i - 1));
        }
        for (int r = 0; r < nms; r++)
            for (int i = 0; i < nst; i++)
                for (int v = 0; v < NLAT; v++) {
                    uint8_t raw[MAXST], sorted[MAXST];
                    memcpy(raw, pi_ms[nst] + (size_t)r * nst, nst);
                    raw[i] = (uint8_t)v;
                    sort_stones(raw, nst, sorted);
                    pi_nxt[nst][((size_t)r * nst + i) * NLAT + v] = pi_rankof[nst][ms_pack(sorted, nst)];
                }
        pi_nms[nst] = nms;
    }
    return 0;
}

/* A table's blocks of nst stones and the codes of cashing each multiset, allocated on first use. */
static int pi_stones(PiTable *P, int nst) {
    if (P->blocks[nst]) return 0;
    const int nms = pi_nms[nst];
    uint8_t *cash = (uint8_t *)malloc((size_t)nms);
    uint8_t **blocks = (uint8_t **)calloc((size_t)pi_nlc, sizeof(uint8_t *));
    if (!cash || !blocks) {
        free(cash);
        free(blocks);
        return -1;
    }
    for (int r = 0; r < nms; r++) {
        int code = 0;
        for (int i = 0; i < nst; i++) code += P->lcode[pi_ms[nst][(size_t)r * nst + i]];
        cash[r] = (uint8_t)code;
    }
    P->cash[nst] = cash;
    P->blocks[nst] = blocks;
    return 0;
}

/* The block of count vector c (summing to S, rank idx) for nst stones, computed (with the blocks it needs) if
 * missing; NULL when out of memory. */
static const uint8_t *pi_block(PiTable *P, int nst, int *c, int S, int idx) {
    uint8_t *have = P->blocks[nst][idx];
    if (have) return have;
    const int G = P->ngraphs, nms = pi_nms[nst];
    const uint8_t *pred[NPOT];
    for (int k = 0; k < NPOT; k++) {
        pred[k] = NULL;
        if (!c[k]) continue;
        c[k]--;
        pred[k] = pi_block(P, nst, c, S - 1, lc_rank(c, S - 1));
        c[k]++;
        if (!pred[k]) return NULL;
    }
    if (P->nused == P->capused) {
        size_t cap = P->capused ? 2 * P->capused : 1024;
        uint32_t *used = (uint32_t *)realloc(P->used, sizeof(uint32_t) * cap);
        if (!used) return NULL;
        P->used = used;
        P->capused = cap;
    }
    uint8_t *blk = (uint8_t *)malloc((size_t)nms * G);
    if (!blk) return NULL;
    const double *cv = P->cval;
    for (int r = 0; r < nms; r++) {
        const uint8_t *m = pi_ms[nst] + (size_t)r * nst;
        const uint16_t *nx = pi_nxt[nst] + (size_t)r * nst * NLAT;
        const int cash = P->cash[nst][r];
        uint8_t *out = blk + (size_t)r * G;
        for (int g = 0; g < G; g++) {
            const int8_t *tr = P->trans + (size_t)g * NLAT * NPOT;
            int best = cash;
            double bv = cv[cash];
            for (int k = 0; k < NPOT; k++) {
                const uint8_t *pk = pred[k];
                if (!pk) continue;
                for (int i = 0; i < nst; i++) {
                    if (i && m[i] == m[i - 1]) continue;
                    int ns = tr[m[i] * NPOT + k];
                    if (ns == m[i]) continue;
                    int v = pk[(size_t)nx[i * NLAT + ns] * G + g];
                    if (cv[v] > bv) {
                        bv = cv[v];
                        best = v;
                    }
                }
            }
            out[g] = (uint8_t)best;
        }
    }
    P->blocks[nst][idx] = blk;
    P->used[P->nused++] = (uint32_t)nst << 16 | (uint32_t)idx;
    P->bytes += (size_t)nms * G;
    P->computed++;
    return blk;
}

static void PiTable_dealloc(PiTable *P) {
    for (int n = 1; n <= PI_MAXST; n++) {
        if (P->blocks[n]) {
            for (int i = 0; i < pi_nlc; i++) free(P->blocks[n][i]);
            free(P->blocks[n]);
        }
        free(P->cash[n]);
    }
    free(P->used);
    free(P->trans);
    Py_TYPE(P)->tp_free((PyObject *)P);
}

/* PiTable(*, trans: int8 (G, NLAT, NPOT) latent stone after each latent potion type per graph, codes: uint8 (NLAT,)
 *         code of cashing each latent stone, bonus: float, budget: int bytes, spec: the search description, checked
 *         as Kernel checks it (optional)) */
static int PiTable_init(PiTable *P, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"trans", "codes", "bonus", "budget", "spec", NULL};
    PyObject *otrans = NULL, *ocodes = NULL, *spec = NULL;
    double bonus = NAN;
    Py_ssize_t budget = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|$OOdnO:PiTable", kwlist, &otrans, &ocodes, &bonus, &budget, &spec))
        return -1;
    int eager, lazy;
    if (spec && spec != Py_None && check_spec(spec, "_search.PiTable: spec", &eager, &lazy) < 0) return -1;
    if (P->trans) {
        PyErr_SetString(PyExc_RuntimeError, "_search.PiTable: already initialised");
        return -1;
    }
    if (!otrans || !ocodes || isnan(bonus) || budget < 0) {
        PyErr_SetString(PyExc_TypeError, "_search.PiTable needs trans=, codes=, bonus= and budget= (bytes, >= 0)");
        return -1;
    }
    Py_ssize_t tshape[3] = {-1, NLAT, NPOT}, cshape[1] = {NLAT};
    int8_t *trans = (int8_t *)array_copy(otrans, "_search.PiTable: trans", 'i', 1, 3, tshape);
    if (!trans) return -1;
    uint8_t *lcode = (uint8_t *)array_copy(ocodes, "_search.PiTable: codes", 'u', 1, 1, cshape);
    if (!lcode) {
        free(trans);
        return -1;
    }
    int ngraphs = (int)tshape[0], err = ngraphs <= 0;
    for (Py_ssize_t i = 0; !err && i < tshape[0] * NLAT * NPOT; i++)
        if (trans[i] < 0 || trans[i] >= NLAT) err = 2;
    for (int l = 0; !err && l < NLAT; l++) {
        int c = lcode[l];
        if (c != 0 && c != CODE_ONE && c != CODE_GOLD) err = 3;
        P->lcode[l] = c;
    }
    free(lcode);
    if (err) {
        free(trans);
        PyErr_SetString(PyExc_ValueError, err == 1   ? "_search.PiTable: trans holds no graph"
                                          : err == 2 ? "_search.PiTable: latent stone out of range in trans"
                                                     : "_search.PiTable: a latent stone's code must be 0, 1 or 16");
        return -1;
    }
    P->trans = trans;
    P->ngraphs = ngraphs;
    P->bonus = bonus;
    for (int c = 0; c < 256; c++)
        P->cval[c] = (double)ONE * (double)(c & (CODE_GOLD - 1)) + (GOLD + bonus) * (double)(c >> CODE_SHIFT);
    P->budget = (size_t)budget;
    return 0;
}

static PyObject *PiTable_stats(PiTable *P, PyObject *unused) {
    return Py_BuildValue("{s:n,s:L,s:L}", "bytes", (Py_ssize_t)P->bytes, "blocks", P->computed, "clears", P->clears);
}

/* value(graph, stones, counts): the code of one state: graph index, latent stones, count of each latent potion type
 * (for tests). */
static PyObject *PiTable_value(PiTable *P, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"graph", "stones", "counts", NULL};
    int g;
    PyObject *ost, *ocnt;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iOO:value", kwlist, &g, &ost, &ocnt)) return NULL;
    if (!P->trans) {
        PyErr_SetString(PyExc_RuntimeError, "_search.PiTable: not initialised");
        return NULL;
    }
    int st[MAXST], cnt[NPOT];
    int nst = int_seq(ost, st, PI_MAXST, "stones");
    if (nst < 0) return NULL;
    if (int_seq(ocnt, cnt, NPOT, "counts") != NPOT) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "counts: six counts");
        return NULL;
    }
    int S = 0;
    for (int k = 0; k < NPOT; k++) {
        if (cnt[k] < 0) {
            PyErr_SetString(PyExc_ValueError, "counts must be >= 0");
            return NULL;
        }
        S += cnt[k];
    }
    if (nst < 1 || g < 0 || g >= P->ngraphs || S > PI_MAXS) {
        PyErr_SetString(PyExc_ValueError, "1 to 5 stones, a graph of the table and at most 15 potions");
        return NULL;
    }
    uint8_t raw[MAXST], sorted[MAXST];
    for (int i = 0; i < nst; i++) {
        if (st[i] < 0 || st[i] >= NLAT) {
            PyErr_SetString(PyExc_ValueError, "latent stone out of range");
            return NULL;
        }
        raw[i] = (uint8_t)st[i];
    }
    sort_stones(raw, nst, sorted);
    if (pi_stones(P, nst) < 0) return PyErr_NoMemory();
    const uint8_t *blk = pi_block(P, nst, cnt, S, lc_rank(cnt, S));
    if (!blk) return PyErr_NoMemory();
    return PyLong_FromLong(blk[(size_t)pi_rankof[nst][ms_pack(sorted, nst)] * P->ngraphs + g]);
}

static PyMethodDef PiTable_methods[] = {
    {"stats", (PyCFunction)PiTable_stats, METH_NOARGS, "Bytes held, blocks computed, clears."},
    {"value", (PyCFunction)(void (*)(void))PiTable_value, METH_VARARGS | METH_KEYWORDS, "The code of one state (graph, latent stones, counts)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PiTableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "alchemy_gym.agents._search.PiTable",
    .tp_basicsize = sizeof(PiTable),
    .tp_dealloc = (destructor)PiTable_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Perfect-information values of a world model, tabulated in blocks (shared by its kernels).",
    .tp_methods = PiTable_methods,
    .tp_init = (initproc)PiTable_init,
    .tp_new = PyType_GenericNew,
};

/* Unnormalised upper bound on an outcome's value: Σ over its world states (bel & mask) of prior weight × the value
 * with the world state known, for stones st (perceived) and potion counts pot (perceived colours). Each stone map
 * and each potion map met gives its multiset rank and its block once per call (stamped); a world state is then
 * one byte read. */
static double pi_bound(Kernel *K, const uint64_t *bel, const uint64_t *mask, int lo, int hi, const uint8_t *st,
                       int nst, const int *pot) {
    PiTable *P = K->pit;
    if (P->bytes > P->budget) pi_clear(P);
    int S = 0;
    for (int p = 0; p < NPOT; p++) S += pot[p];
    const int G = P->ngraphs;
    uint32_t stamp = ++K->pi_stamp;
    if (stamp == 0) { /* wrapped: forget every stamp */
        memset(K->sr_stamp, 0, sizeof(uint32_t) * (size_t)K->nsr);
        memset(K->pm_stamp, 0, sizeof(uint32_t) * (size_t)K->npm);
        stamp = K->pi_stamp = 1;
    }
    if (pi_stones(P, nst) < 0) {
        K->err = 1;
        return 0.0;
    }
    const uint16_t *rank = pi_rankof[nst];
    double total = 0.0;
    for (int i = lo; i < hi; i++) {
        uint64_t c = bel[i] & mask[i] & K->first[i];
        while (c) {
            size_t b = (size_t)i * 64 + (size_t)__builtin_ctzll(c);
            c &= c - 1;
            int sr = K->bit_sr[b], pm = K->bit_pm[b];
            if (K->sr_stamp[sr] != stamp) {
                const int8_t *lat = K->sr_row[sr];
                uint8_t raw[MAXST], ls[MAXST];
                for (int s = 0; s < nst; s++) {
                    int l = lat[st[s]];
                    if (l < 0) {
                        PyErr_SetString(PyExc_RuntimeError, "_search.Kernel: a stone inconsistent with a belief");
                        K->err = 3;
                        return 0.0;
                    }
                    raw[s] = (uint8_t)l;
                }
                sort_stones(raw, nst, ls);
                K->sr_off[sr] = (size_t)rank[ms_pack(ls, nst)] * (size_t)G;
                K->sr_stamp[sr] = stamp;
            }
            if (K->pm_stamp[pm] != stamp) {
                const uint8_t *lp = K->pm_row[pm];
                int lc[NPOT] = {0};
                for (int p = 0; p < NPOT; p++) lc[lp[p]] += pot[p];
                const uint8_t *blk = pi_block(P, nst, lc, S, lc_rank(lc, S));
                if (!blk) {
                    K->err = 1;
                    return 0.0;
                }
                K->pm_blk[pm] = blk;
                K->pm_stamp[pm] = stamp;
            }
            total += (double)K->copies[b] * P->cval[K->pm_blk[pm][K->sr_off[sr] + (size_t)K->graph[b]]];
        }
    }
    return total;
}

/* ------------------------------------------------------------------ canonical (symmetry) keys */

static int cmp_lex(const int *a, const int *b, int n) {
    for (int i = 0; i < n; i++)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
}

static void isort(int *a, int n) {
    for (int i = 1; i < n; i++) {
        int x = a[i], j = i - 1;
        while (j >= 0 && a[j] > x) {
            a[j + 1] = a[j];
            j--;
        }
        a[j + 1] = x;
    }
}

/* The sorted stones (at most 16) and the potion counts packed into words for hashing. */
static inline void pack_stones(const uint8_t *sorted, int nst, uint64_t *a, uint64_t *b) {
    *a = *b = 0;
    for (int i = 0; i < nst; i++) {
        if (i < 8) *a |= (uint64_t)(sorted[i] + 1) << (8 * i);
        else *b |= (uint64_t)(sorted[i] + 1) << (8 * (i - 8));
    }
}

static inline uint64_t pack_potions(const int *pot) {
    uint64_t pk = 0;
    for (int p = 0; p < NPOT; p++) pk |= (uint64_t)(pot[p] & 0xFF) << (8 * p);
    return pk;
}

/* Least image so far (``best``) and the group elements reaching it (bit g of ``elements``). */
static inline void keep_least(const int *img, int *best, int len, int g, int *have, uint64_t *elements) {
    int c = *have ? cmp_lex(img, best, len) : -1;
    if (c < 0) {
        memcpy(best, img, sizeof(int) * (size_t)len);
        *elements = 1ULL << g;
        *have = 1;
    } else if (c == 0) {
        *elements |= 1ULL << g;
    }
}

/* Symmetry key of a node: among the group elements giving the least image of the sorted
 * stones (then of the stones seen) and of the potion counts, the image of the belief (``bel & mask`` when mask
 * is given, words lo..hi-1) with the least order-free digest of its world-state classes. */
static int canonical(Kernel *K, const uint8_t *sorted, int nst, const int *pot, const uint64_t *bel,
                     const uint64_t *mask, int lo, int hi, uint64_t *k0, uint64_t *k1) {
    uint64_t sk0, sk1;
    pack_stones(sorted, nst, &sk0, &sk1);
    SEntry *es = smap_find(&K->canon_st, sk0, sk1);
    if (!es) {
        int best[MAXST + NOBS], img[MAXST + NOBS], len = nst + K->ns0, have = 0;
        uint64_t elements = 0;
        for (int g = 0; g < NSYM; g++) {
            const int *t = K->stone_sym[g];
            for (int i = 0; i < nst; i++) img[i] = t[sorted[i]];
            isort(img, nst);
            for (int i = 0; i < K->ns0; i++) img[nst + i] = t[K->s0[i]];
            isort(img + nst, K->ns0);
            keep_least(img, best, len, g, &have, &elements);
        }
        Hasher h;
        h_init(&h, 11);
        h_add(&h, (uint64_t)nst);
        h_add(&h, (uint64_t)K->ns0);
        for (int i = 0; i < len; i++) h_add(&h, (uint64_t)best[i]);
        es = smap_insert(&K->canon_st, sk0, sk1);
        if (!es) {
            K->err = 1;
            return -1;
        }
        h_final(&h, &es->x, &es->y);
        es->z = elements;
    }
    uint64_t pk = pack_potions(pot);
    SEntry *ep = smap_find(&K->canon_pot, pk, 0);
    if (!ep) {
        int best[NPOT], img[NPOT], have = 0;
        uint64_t elements = 0;
        for (int g = 0; g < NSYM; g++) {
            for (int p = 0; p < NPOT; p++) img[K->colour_sym[g][p]] = pot[p];
            keep_least(img, best, NPOT, g, &have, &elements);
        }
        Hasher h;
        h_init(&h, 12);
        for (int p = 0; p < NPOT; p++) h_add(&h, (uint64_t)best[p]);
        ep = smap_insert(&K->canon_pot, pk, 0);
        if (!ep) {
            K->err = 1;
            return -1;
        }
        h_final(&h, &ep->x, &ep->y);
        ep->z = elements;
    }
    Hasher h;
    h_init(&h, 13);
    h_add(&h, es->x);
    h_add(&h, es->y);
    h_add(&h, ep->x);
    h_add(&h, ep->y);
    /* the belief's classes (one bit per world state: the first of its copies) */
    int nc = 0;
    int *cl = K->clbuf;
    for (int i = lo; i < hi; i++) {
        uint64_t x = bel[i] & K->first[i];
        if (mask) x &= mask[i];
        while (x) {
            cl[nc++] = K->bitcls[(size_t)i * 64 + (size_t)__builtin_ctzll(x)];
            x &= x - 1;
        }
    }
    uint64_t ga = 0, gb = 0;
    int have = 0;
    int *sc = cl + nc; /* the classes' images under the stone map */
    for (int g = 0; g < NSYM; g++) {
        if (!(es->z >> g & 1)) continue;
        const int32_t *sp = K->scperm + (size_t)g * K->ncls;
        for (int j = 0; j < nc; j++) sc[j] = sp[cl[j]];
        for (int hh = 0; hh < NSYM; hh++) {
            if (!(ep->z >> hh & 1)) continue;
            const int32_t *cp = K->ccperm + (size_t)hh * K->ncls;
            /* the first mix decides unless it ties: the second is summed only then */
            uint64_t a = 0;
            for (int j = 0; j < nc; j++) a += K->mixa[cp[sc[j]]];
            if (have && a > ga) continue;
            uint64_t b = 0;
            for (int j = 0; j < nc; j++) b += K->mixb[cp[sc[j]]];
            if (!have || a < ga || b < gb) {
                ga = a;
                gb = b;
                have = 1;
            }
        }
    }
    h_add(&h, ga);
    h_add(&h, gb);
    h_final(&h, k0, k1);
    return 0;
}

/* ------------------------------------------------------------------ search */

/* Whether the stone at ``i`` already appeared earlier (each stone type is tried once, at its first slot). */
static inline int seen_before(const uint8_t *stones, int i) {
    for (int j = 0; j < i; j++)
        if (stones[j] == stones[i]) return 1;
    return 0;
}

static void last_potion(Kernel *K, const uint8_t *st, int nst, const int *pot, const uint64_t *bel, int lo, int hi,
                        int64_t total, Res *out) {
    double best_value = end_value(K, st, nst), best_depth = 0.0;
    int ao = -1, ap = -1, p = 0;
    while (pot[p] != 1) p++;
    double tol = TIE_TOLERANCE * fmax(1.0, fabs(best_value));
    uint8_t tmp[MAXST];
    for (int i = 0; i < nst; i++) {
        int o = st[i];
        if (seen_before(st, i)) continue;
        Outc *oc = get_outc(K, o, p);
        if (!oc) return;
        double value = 0.0;
        int moved = 0;
        for (int j = 0; j < oc->n; j++) {
            int l = lo > oc->lo[j] ? lo : oc->lo[j], h = hi < oc->hi[j] ? hi : oc->hi[j];
            uint64_t w = l < h ? pc_and(bel, oc->masks + (size_t)j * K->nw, l, h) : 0;
            if (w) {
                int res = oc->res[j];
                double ev;
                if (res != o) {
                    moved = 1;
                    replace_stone(st, nst, i, res, tmp);
                    ev = end_value(K, tmp, nst);
                } else {
                    ev = end_value(K, st, nst);
                }
                value += (double)w * ev;
            }
        }
        if (!moved) continue;
        value /= (double)total;
        if (value > best_value + tol) {
            best_value = value;
            best_depth = 1.0;
            ao = o;
            ap = p;
            tol = TIE_TOLERANCE * fmax(1.0, fabs(best_value));
        }
    }
    out->v = best_value;
    out->d = best_depth;
    out->upper = 0;
    out->has_action = 1;
    out->ao = ao;
    out->ap = ap;
}

static int ensure_scratch(Kernel *K, int depth, int ncand, int nkids) {
    Scratch *s = &K->scr[depth];
    if (ncand > s->ccap) {
        Cand *c = (Cand *)realloc(s->c, sizeof(Cand) * (size_t)ncand);
        if (!c) return -1;
        s->c = c;
        s->ccap = ncand;
    }
    if (nkids > s->kcap) {
        int cap = s->kcap ? s->kcap : 64;
        while (cap < nkids) cap *= 2;
        Kid *k = (Kid *)realloc(s->k, sizeof(Kid) * (size_t)cap);
        if (!k) return -1;
        s->k = k;
        s->kcap = cap;
    }
    return 0;
}

/* Digest of a node: the belief's words lo..hi-1 (``bel & mask`` when ``mask`` is given, else ``bel``), its
 * sorted stones and its potion counts. */
static inline void node_key(const uint64_t *bel, const uint64_t *mask, int lo, int hi, const uint8_t *sorted, int nst,
                            const int *pot, uint64_t *k0, uint64_t *k1) {
    Hasher h;
    h_init(&h, 1);
    h_add(&h, (uint64_t)lo << 32 | (uint64_t)hi);
    if (mask)
        for (int i = lo; i < hi; i++) h_add(&h, bel[i] & mask[i]);
    else
        for (int i = lo; i < hi; i++) h_add(&h, bel[i]);
    uint64_t a, b;
    pack_stones(sorted, nst, &a, &b);
    h_add(&h, a);
    h_add(&h, b);
    h_add(&h, pack_potions(pot));
    h_final(&h, k0, k1);
}

static void search(Kernel *K, int depth, const uint8_t *stones, int nst, const int *pot, int lo, int hi,
                   int64_t total, int touched, int root, double floor, const uint64_t *key, Res *out) {
    const int nw = K->nw;
    const uint64_t *bel = K->bel + (size_t)depth * nw;
    int left = 0;
    for (int p = 0; p < NPOT; p++) left += pot[p];
    out->has_action = 0;
    out->upper = 0;
    if (left <= 1 && !K->minimise) {
        if (left) {
            last_potion(K, stones, nst, pot, bel, lo, hi, total, out);
        } else {
            out->v = end_value(K, stones, nst);
            out->d = 0.0;
            out->has_action = 1;
            out->ao = out->ap = -1;
        }
        return;
    }
    uint64_t k0, k1;
    int sym = K->sym_mode;
    if (key) { /* computed by the caller */
        k0 = key[0];
        k1 = key[1];
    } else {
        uint8_t sorted[MAXST];
        sort_stones(stones, nst, sorted);
        if (!sym) node_key(bel, NULL, lo, hi, sorted, nst, pot, &k0, &k1);
        else if (canonical(K, sorted, nst, pot, bel, NULL, lo, hi, &k0, &k1) < 0) return;
    }
    if (!root) {
        Entry *e = table_find(&K->memo, k0, k1);
        if (e && e->d >= 0) {
            out->v = e->v;
            out->d = e->d;
            return;
        }
        if (e && floor > -INFINITY && e->v < floor) {
            out->v = e->v;
            out->upper = 1;
            return;
        }
    }
    if ((++K->nodes & 0xFFFF) == 0 && PyErr_CheckSignals() < 0) {
        K->err = 3; /* e.g. KeyboardInterrupt: the memos keep only finished nodes, so they stay valid */
        return;
    }
    double best_value = K->minimise ? -(double)pc_and(bel, K->first, lo, hi) : end_value(K, stones, nst);
    double best_depth = 0.0;
    int best_order = -1, bao = -1, bap = -1;

    int avail[NPOT], navail = 0, classes[NPOT][2], ncls = 0;
    for (int q = 0; q < NPOT; q++) {
        int p = K->colour_order[q];
        if (!pot[p]) continue;
        if (!(touched >> PAIR(p) & 1)) {
            int a = pot[p], b = pot[PARTNER(p)], found = 0;
            for (int c = 0; c < ncls; c++)
                if (classes[c][0] == a && classes[c][1] == b) found = 1;
            if (found) continue;
            classes[ncls][0] = a;
            classes[ncls][1] = b;
            ncls++;
        }
        avail[navail++] = p;
    }
    if (ensure_scratch(K, depth, nst * navail, 64) < 0) {
        K->err = 1;
        return;
    }
    Scratch *S = &K->scr[depth];
    int ncand = 0, nkids = 0, order = 0;
    const int steps = left - 1 < MAX_PATH ? left - 1 : MAX_PATH;
    int new_pot[NPOT];
    for (int i = 0; i < nst; i++) {
        int o = stones[i];
        if (seen_before(stones, i)) continue;
        for (int ai = 0; ai < navail; ai++) {
            int p = avail[ai];
            order++;
            Outc *oc = get_outc(K, o, p);
            if (!oc) return;
            if (ensure_scratch(K, depth, 0, nkids + oc->n) < 0) {
                K->err = 1;
                return;
            }
            S = &K->scr[depth];
            int kid0 = nkids, nch = 0;
            for (int j = 0; j < oc->n; j++) {
                int l = lo > oc->lo[j] ? lo : oc->lo[j], h = hi < oc->hi[j] ? hi : oc->hi[j];
                uint64_t w = l < h ? pc_and(bel, oc->masks + (size_t)j * nw, l, h) : 0;
                if (w) {
                    Kid *kd = &S->k[kid0 + nch++];
                    kd->res = oc->res[j];
                    kd->oc = j;
                    kd->w = (int64_t)w;
                }
            }
            if (nch == 1 && S->k[kid0].res == o) continue; /* certainly no effect */
            memcpy(new_pot, pot, sizeof new_pot);
            new_pot[p]--;
            int colours = 0;
            for (int q = 0; q < NPOT; q++)
                if (new_pot[q]) colours |= 1 << q;
            double ub = 0.0, my = 0.0;
            const uint64_t *m[MAXST];
            uint64_t a1[MAXST], a3[MAXST];
            for (int c = 0; c < nch; c++) {
                Kid *kd = &S->k[kid0 + c];
                if (kd->res == o) memcpy(kd->st, stones, nst);
                else replace_stone(stones, nst, i, kd->res, kd->st);
                if (nch == 1) kd->w = total;
                kd->b = 0.0;
                kd->keyed = 0;
                kd->trivial = 0;
                if (K->minimise) continue; /* no bounds for the explorer */
                int j = kd->oc;
                for (int s = 0; s < nst; s++) {
                    m[s] = get_bmask(K, kd->st[s], colours, steps);
                    if (!m[s]) return;
                }
                int l = lo > oc->lo[j] ? lo : oc->lo[j], h = hi < oc->hi[j] ? hi : oc->hi[j];
                pc_bound(bel, oc->masks + (size_t)j * nw, l, h, m, nst, nw, a1, a3);
                double b = 0.0;
                for (int s = 0; s < nst; s++) b += (double)a1[s] + K->gold * (double)a3[s];
                double ev = end_value(K, kd->st, nst);
                double joint = ev + joint_gain(K, kd->st, nst, left - 1);
                joint *= (double)kd->w;
                if (joint < b) b = joint;
                if (K->pi && left - 1 >= K->pi_eager && (double)kd->w * ev < b && nst <= PI_MAXST &&
                    left - 1 <= PI_MAXS) {
                    /* the value with the world state known, potions counted: often far tighter */
                    double pb = pi_bound(K, bel, oc->masks + (size_t)j * nw, l, h, kd->st, nst, new_pot);
                    if (pb < b) b = pb;
                }
                kd->b = b;
                kd->ev = ev;
                kd->trivial = (double)kd->w * ev >= b;
                ub += b;
                my += (double)kd->w * ev;
            }
            if (nch > 1) { /* stable sort, likeliest outcome first */
                Kid *ks = S->k + kid0;
                for (int a = 1; a < nch; a++) {
                    Kid x = ks[a];
                    int b = a - 1;
                    while (b >= 0 && ks[b].w < x.w) {
                        ks[b + 1] = ks[b];
                        b--;
                    }
                    ks[b + 1] = x;
                }
            }
            Cand *cd = &S->c[ncand++];
            cd->neg_ub = -ub / (double)total;
            cd->key = cd->neg_ub - my / (double)total;
            cd->order = order;
            cd->o = o;
            cd->p = p;
            cd->nk = nch;
            cd->kid0 = kid0;
            cd->new_touched = nch == 1 ? touched : touched | 1 << PAIR(p);
            nkids += nch;
        }
    }
    /* sort candidates by (key, order): the midpoint of the bound and of the value of cashing after the move */
    for (int a = 1; a < ncand; a++) {
        Cand x = S->c[a];
        int b = a - 1;
        while (b >= 0 && (S->c[b].key > x.key || (S->c[b].key == x.key && S->c[b].order > x.order))) {
            S->c[b + 1] = S->c[b];
            b--;
        }
        S->c[b + 1] = x;
    }
    if (K->err) return;
    double pruned_ub = -INFINITY;
    for (int ci = 0; ci < ncand; ci++) {
        S = &K->scr[depth];
        Cand cd = S->c[ci];
        double tol = TIE_TOLERANCE * fmax(1.0, fabs(best_value));
        double level = best_value >= floor ? best_value : floor;
        double ub = -cd.neg_ub;
        if (!K->minimise && ub < level - tol) {
            if (ub >= best_value - tol && ub > pruned_ub) pruned_ub = ub;
            continue;
        }
        /* at best a tie in reward, and never fewer potions (nor an earlier action on equal potions) */
        if (!K->minimise && ub <= best_value + tol &&
            (best_depth < 1.0 - 1e-9 || (best_depth <= 1.0 + 1e-9 && cd.order > best_order)))
            continue;
        double remaining = -cd.neg_ub * (double)total;
        if (!K->minimise && left - 1 >= 2) {
            /* Children already searched give better bounds than the static one: their memoised value, or the
             * upper bound they returned under an earlier floor. The candidate may then be refuted at once. */
            Outc *ocr = get_outc(K, cd.o, cd.p);
            int rp[NPOT];
            memcpy(rp, pot, sizeof rp);
            rp[cd.p]--;
            /* First every child's key (its memo slot prefetched), then the probes: the memo's cache misses overlap
             * the key computations instead of following each. */
            int span[2 * MAXKIDS];
            const int nk = cd.nk < MAXKIDS ? cd.nk : MAXKIDS;
            for (int c = 0; c < cd.nk; c++) {
                Kid *kd = &K->scr[depth].k[cd.kid0 + c];
                if (kd->trivial) continue;
                int j = kd->oc;
                int l = lo > ocr->lo[j] ? lo : ocr->lo[j], h = hi < ocr->hi[j] ? hi : ocr->hi[j];
                const uint64_t *mk = ocr->masks + (size_t)j * nw;
                while (l < h && !(bel[l] & mk[l])) l++;
                while (h > l && !(bel[h - 1] & mk[h - 1])) h--;
                if (c < nk) {
                    span[2 * c] = l;
                    span[2 * c + 1] = h;
                }
                uint8_t cs[MAXST];
                sort_stones(kd->st, nst, cs);
                uint64_t c0, c1;
                if (sym) {
                    if (canonical(K, cs, nst, rp, bel, mk, l, h, &c0, &c1) < 0) return;
                } else {
                    node_key(bel, mk, l, h, cs, nst, rp, &c0, &c1);
                }
                kd->keyed = 1;
                kd->k0 = c0;
                kd->k1 = c1;
                __builtin_prefetch(K->memo.t + table_home(c0, c1, K->memo.cap - 1));
            }
            double nub = 0.0;
            for (int c = 0; c < cd.nk; c++) {
                Kid *kd = &K->scr[depth].k[cd.kid0 + c];
                if (kd->trivial) {
                    nub += kd->b;
                    continue;
                }
                int j = kd->oc, l, h;
                const uint64_t *mk = ocr->masks + (size_t)j * nw;
                if (c < nk) {
                    l = span[2 * c];
                    h = span[2 * c + 1];
                } else {
                    l = lo > ocr->lo[j] ? lo : ocr->lo[j];
                    h = hi < ocr->hi[j] ? hi : ocr->hi[j];
                    while (l < h && !(bel[l] & mk[l])) l++;
                    while (h > l && !(bel[h - 1] & mk[h - 1])) h--;
                }
                const uint64_t c0 = kd->k0, c1 = kd->k1;
                Entry *e = table_find(&K->memo, c0, c1);
                if (e && e->d >= 0) kd->b = (double)kd->w * e->v;
                else {
                    if (e && (double)kd->w * e->v < kd->b) kd->b = (double)kd->w * e->v;
                    if (K->pi && left - 1 < K->pi_eager && left - 1 >= K->pi_lazy && nst <= PI_MAXST &&
                        !(e && e->d == PI_UPPER)) {
                        double pb = pi_bound(K, bel, mk, l, h, kd->st, nst, rp);
                        if (pb < kd->b) kd->b = pb;
                        if ((double)kd->w * kd->ev >= kd->b) kd->trivial = 1;
                        else if (!e && table_put(&K->memo, c0, c1, left - 1, pb / (double)kd->w, PI_UPPER) < 0)
                            K->err = 1; /* kept as the node's upper bound: computed once per node */
                    }
                }
                nub += kd->b;
            }
            remaining = nub;
            double rub = nub / (double)total;
            if (rub < level - tol) {
                if (rub >= best_value - tol && rub > pruned_ub) pruned_ub = rub;
                continue;
            }
        }
        double value = 0.0, dep = 0.0, bound = 0.0;
        int cut = 0;
        double target = (level - tol) * (double)total;
        memcpy(new_pot, pot, sizeof new_pot);
        new_pot[cd.p]--;
        Outc *oc = get_outc(K, cd.o, cd.p);
        for (int c = 0; c < cd.nk; c++) {
            Kid kd = K->scr[depth].k[cd.kid0 + c];
            double w = (double)kd.w;
            double rest = remaining - kd.b;
            Res r;
            if (kd.trivial) { /* solved: cashing now reaches the bound */
                r.v = kd.ev;
                r.d = 0.0;
            } else {
                /* the child belief, in the next depth's buffer */
                int j = kd.oc;
                int l = lo > oc->lo[j] ? lo : oc->lo[j], h = hi < oc->hi[j] ? hi : oc->hi[j];
                int clo, chi;
                and_into(K->bel + (size_t)(depth + 1) * nw, bel, oc->masks + (size_t)j * nw, l, h, &clo, &chi);
                uint64_t kk[2] = {kd.k0, kd.k1};
                search(K, depth + 1, kd.st, nst, new_pot, clo, chi, kd.w, cd.new_touched, 0,
                       K->minimise ? -INFINITY : (target - value * (double)total - rest) / w, kd.keyed ? kk : NULL,
                       &r);
                if (K->err) return;
                if (r.upper) {
                    if (value * (double)total + w * r.v + rest < target) {
                        bound = (value * (double)total + w * r.v + rest) / (double)total;
                        cut = 1;
                        break;
                    }
                    search(K, depth + 1, kd.st, nst, new_pot, clo, chi, kd.w, cd.new_touched, 0, -INFINITY,
                           kd.keyed ? kk : NULL, &r);
                    if (K->err) return;
                }
            }
            double prob = w / (double)total;
            value += prob * r.v;
            dep += prob * (r.d + 1.0);
            if (K->minimise) continue;
            remaining -= kd.b;
            if (value * (double)total + remaining < target) {
                bound = value + remaining / (double)total;
                cut = 1;
                break;
            }
        }
        if (cut) {
            if (bound >= best_value - tol && bound > pruned_ub) pruned_ub = bound;
            continue;
        }
        if (value > best_value + tol ||
            (fabs(value - best_value) <= tol &&
             (dep < best_depth - 1e-9 || (fabs(dep - best_depth) <= 1e-9 && cd.order < best_order)))) {
            best_value = value;
            best_depth = dep;
            best_order = cd.order;
            bao = cd.o;
            bap = cd.p;
        }
    }
    if (pruned_ub >= best_value - TIE_TOLERANCE * fmax(1.0, fabs(best_value))) {
        double upper = pruned_ub > best_value ? pruned_ub : best_value;
        if (table_put(&K->memo, k0, k1, left, upper, UPPER) < 0) K->err = 1;
        out->v = upper;
        out->upper = 1;
        return;
    }
    if (table_put(&K->memo, k0, k1, left, best_value, best_depth) < 0) K->err = 1;
    out->v = best_value;
    out->d = best_depth;
    out->has_action = 1;
    out->ao = bao;
    out->ap = bap;
}

/* ------------------------------------------------------------------ Python type */

static void Kernel_dealloc(Kernel *K) {
    free(K->graph);
    free(K->first);
    free(K->bitcls);
    free(K->scperm);
    free(K->ccperm);
    free(K->clbuf);
    free(K->mixa);
    free(K->mixb);
    Py_XDECREF((PyObject *)K->pit);
    free(K->bit_sr);
    free(K->bit_pm);
    free(K->sr_row);
    free(K->pm_row);
    free(K->sr_stamp);
    free(K->pm_stamp);
    free(K->sr_off);
    free(K->pm_blk);
    free(K->copies);
    free(K->latpot);
    free(K->latent);
    free(K->obs);
    free(K->trans);
    free(K->reach);
    for (int i = 0; i < NOBS * NPOT; i++)
        if (K->outc[i]) {
            free(K->outc[i]->masks);
            free(K->outc[i]);
        }
    if (K->bmask) {
        for (size_t i = 0; i < (size_t)NOBS * COLOUR_SETS * PATH_STEPS; i++) free(K->bmask[i]);
        free(K->bmask);
    }
    table_free(&K->memo);
    free(K->canon_st.t);
    free(K->canon_pot.t);
    free(K->joint.t);
    free(K->bel);
    if (K->scr) {
        for (int d = 0; d < K->maxdepth; d++) {
            free(K->scr[d].c);
            free(K->scr[d].k);
        }
        free(K->scr);
    }
    Py_TYPE(K)->tp_free((PyObject *)K);
}

static void *copy_bytes(const char *src, Py_ssize_t len) {
    void *p = malloc(len ? (size_t)len : 1);
    if (p) memcpy(p, src, (size_t)len);
    return p;
}

/* Kernel(tables): ``tables`` has the attributes of ideal_observer.KernelTables (n bits in the trial's frame, G graphs,
 * C world-state classes):
 *   spec (the search description: the compiled shape, checked by name, and pi_eager, pi_lazy),
 *   graph int32 (n,), latent_potion uint8 (n, 6), latent int8 (n, 108), obs uint8 (n, 8), first (bitset of n bits),
 *   trans int8 (G, 8, 6), reach int8 (G, 8, 64, 8), bonus float, memo_bytes int (budget of the memo table),
 *   seen (perceived stones seen in the episode), minimise bool (the ideal explorer), pi_table PiTable or None,
 *   symmetry None or an object with stone_maps int32 (48, 108), colour_maps int32 (48, 6),
 *   stone_class_perm int32 (48, C), colour_class_perm int32 (48, C); then bit_class int32 (n,) too. */
static int Kernel_init(Kernel *K, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"tables", NULL};
    PyObject *tables;
    const char *T = "_search.Kernel: tables";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O:Kernel", kwlist, &tables)) return -1;
    if (K->graph) {
        PyErr_SetString(PyExc_RuntimeError, "_search.Kernel: already initialised");
        return -1;
    }
    Py_ssize_t shape[4] = {-1};
    if (!(K->graph = (int32_t *)array_attr(tables, T, "graph", 'i', 4, 1, shape))) return -1;
    PyObject *spec = PyObject_GetAttrString(tables, "spec"); /* the shape the tables below must have */
    if (!spec) return -1;
    int rc = check_spec(spec, "_search.Kernel: tables.spec", &K->pi_eager, &K->pi_lazy);
    Py_DECREF(spec);
    if (rc < 0) return -1;
    const Py_ssize_t n = shape[0];
    if (n <= 0 || n > (1 << 30)) {
        PyErr_SetString(PyExc_ValueError, "_search.Kernel: tables.graph must have between 1 and 2**30 bits");
        return -1;
    }
    K->n = (int)n;
    K->nw = (int)((n + 63) / 64);
    shape[0] = n, shape[1] = NPOT;
    if (!(K->latpot = (uint8_t *)array_attr(tables, T, "latent_potion", 'u', 1, 2, shape))) return -1;
    shape[0] = n, shape[1] = NOBS;
    if (!(K->latent = (int8_t *)array_attr(tables, T, "latent", 'i', 1, 2, shape))) return -1;
    shape[0] = n, shape[1] = NLAT;
    if (!(K->obs = (uint8_t *)array_attr(tables, T, "obs", 'u', 1, 2, shape))) return -1;
    shape[0] = -1, shape[1] = NLAT, shape[2] = NPOT;
    if (!(K->trans = (int8_t *)array_attr(tables, T, "trans", 'i', 1, 3, shape))) return -1;
    const int ngraphs = (int)shape[0];
    K->ngraphs = ngraphs;
    shape[0] = ngraphs, shape[1] = NLAT, shape[2] = COLOUR_SETS, shape[3] = PATH_STEPS;
    if (!(K->reach = (int8_t *)array_attr(tables, T, "reach", 'i', 1, 4, shape))) return -1;
    K->first = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)K->nw);
    K->bmask = (uint64_t **)calloc((size_t)NOBS * COLOUR_SETS * PATH_STEPS, sizeof(uint64_t *));
    if (!K->first || !K->bmask) {
        PyErr_NoMemory();
        return -1;
    }
    if (bits_attr(tables, T, "first", K->nw, K->first) < 0) return -1;
    for (Py_ssize_t b = 0; b < n; b++)
        if (K->graph[b] < 0 || K->graph[b] >= ngraphs) {
            PyErr_SetString(PyExc_ValueError, "_search.Kernel: tables.graph: graph index out of range");
            return -1;
        }
    for (Py_ssize_t i = 0; i < n * NPOT; i++)
        if (K->latpot[i] >= NPOT) {
            PyErr_SetString(PyExc_ValueError, "_search.Kernel: tables.latent_potion: latent potion out of range");
            return -1;
        }
    for (Py_ssize_t i = 0; i < n * NLAT; i++)
        if (K->obs[i] >= NOBS) {
            PyErr_SetString(PyExc_ValueError, "_search.Kernel: tables.obs: perceived stone out of range");
            return -1;
        }
    for (Py_ssize_t i = 0; i < n * NOBS; i++)
        if (K->latent[i] < -1 || K->latent[i] >= NLAT) {
            PyErr_SetString(PyExc_ValueError, "_search.Kernel: tables.latent: latent stone out of range");
            return -1;
        }
    for (Py_ssize_t i = 0; i < (Py_ssize_t)ngraphs * NLAT * NPOT; i++)
        if (K->trans[i] < 0 || K->trans[i] >= NLAT) {
            PyErr_SetString(PyExc_ValueError, "_search.Kernel: tables.trans: latent stone out of range");
            return -1;
        }
    long long memo_bytes;
    double bonus;
    int minimise;
    if (double_attr(tables, T, "bonus", &bonus) < 0 || long_attr(tables, T, "memo_bytes", &memo_bytes) < 0 ||
        bool_attr(tables, "minimise", &minimise) < 0)
        return -1;
    if (memo_bytes < 1) {
        PyErr_SetString(PyExc_ValueError, "_search.Kernel: tables.memo_bytes must be positive");
        return -1;
    }
    int seen = seq_attr(tables, T, "seen", K->s0, NOBS, NOBS);
    if (seen < 0) return -1;
    K->ns0 = seen;
    K->minimise = minimise;
    K->bonus = bonus;
    K->gold = GOLD + bonus;
    K->memo_bytes = (Py_ssize_t)memo_bytes;
    PyObject *sym = PyObject_GetAttrString(tables, "symmetry");
    if (!sym) return -1;
    K->has_sym = sym != Py_None;
    if (K->has_sym) {
        const char *S = "_search.Kernel: tables.symmetry";
        int32_t *ss = NULL, *cs = NULL;
        shape[0] = NSYM, shape[1] = NOBS;
        if ((ss = (int32_t *)array_attr(sym, S, "stone_maps", 'i', 4, 2, shape))) {
            shape[0] = NSYM, shape[1] = NPOT;
            cs = (int32_t *)array_attr(sym, S, "colour_maps", 'i', 4, 2, shape);
        }
        if (cs) {
            shape[0] = NSYM, shape[1] = -1;
            K->scperm = (int32_t *)array_attr(sym, S, "stone_class_perm", 'i', 4, 2, shape);
        }
        if (K->scperm) {
            K->ncls = (int)shape[1];
            shape[0] = NSYM;
            K->ccperm = (int32_t *)array_attr(sym, S, "colour_class_perm", 'i', 4, 2, shape);
        }
        Py_DECREF(sym);
        int bad = 0;
        for (int g = 0; ss && cs && g < NSYM; g++) {
            for (int o = 0; o < NOBS; o++) {
                K->stone_sym[g][o] = ss[g * NOBS + o];
                if (ss[g * NOBS + o] < 0 || ss[g * NOBS + o] >= NOBS) bad = 1;
            }
            for (int p = 0; p < NPOT; p++) {
                K->colour_sym[g][p] = cs[g * NPOT + p];
                if (cs[g * NPOT + p] < 0 || cs[g * NPOT + p] >= NPOT) bad = 1;
            }
        }
        free(ss);
        free(cs);
        if (!K->ccperm) return -1;
        if (bad) {
            PyErr_SetString(PyExc_ValueError, "_search.Kernel: tables.symmetry: stone or colour map out of range");
            return -1;
        }
        shape[0] = n;
        if (!(K->bitcls = (int32_t *)array_attr(tables, T, "bit_class", 'i', 4, 1, shape))) return -1;
        K->clbuf = (int *)malloc(sizeof(int) * (size_t)n * 2);
        K->mixa = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)(K->ncls ? K->ncls : 1));
        K->mixb = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)(K->ncls ? K->ncls : 1));
        if (!K->clbuf || !K->mixa || !K->mixb) {
            PyErr_NoMemory();
            return -1;
        }
        for (int c = 0; c < K->ncls; c++) {
            K->mixa[c] = fmix64((uint64_t)c * P1 + P3);
            K->mixb[c] = fmix64((uint64_t)c * P2 + P4);
        }
        for (Py_ssize_t b = 0; b < n; b++)
            if (K->bitcls[b] < 0 || K->bitcls[b] >= K->ncls) {
                PyErr_SetString(PyExc_ValueError, "_search.Kernel: tables.bit_class: class index out of range");
                return -1;
            }
        for (size_t i = 0; i < (size_t)NSYM * K->ncls; i++)
            if (K->scperm[i] < 0 || K->scperm[i] >= K->ncls || K->ccperm[i] < 0 || K->ccperm[i] >= K->ncls) {
                PyErr_SetString(PyExc_ValueError, "_search.Kernel: tables.symmetry: class permutation out of range");
                return -1;
            }
    } else {
        Py_DECREF(sym);
    }
    size_t slots = 1 << 14; /* the largest power of two within the budget */
    while (slots * 2 * sizeof(Entry) <= (size_t)memo_bytes) slots *= 2;
    if (table_alloc(&K->memo, 1 << 14, slots) < 0 || smap_alloc(&K->canon_st, 64) < 0 ||
        smap_alloc(&K->canon_pot, 64) < 0 || smap_alloc(&K->joint, 64) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    for (int p = 0; p < NPOT; p++) K->colour_order[p] = p;
    /* The perfect-information bound needs the value of each latent stone to be the same in every world state,
     * and the world model's PiTable (None: no bound). */
    PyObject *pi_cache = PyObject_GetAttrString(tables, "pi_table");
    if (!pi_cache) return -1;
    for (int l = 0; l < NLAT; l++) {
        K->lcode[l] = CODE_OF(REWARD(K->obs[l]));
    }
    K->pi = !minimise && pi_cache != Py_None;
    for (Py_ssize_t b = 0; b < n && K->pi; b++)
        for (int l = 0; l < NLAT; l++) {
            if (CODE_OF(REWARD(K->obs[(size_t)b * NLAT + l])) != K->lcode[l]) K->pi = 0;
        }
    if (K->pi) {
        if (!PyObject_TypeCheck(pi_cache, &PiTableType) || !((PiTable *)pi_cache)->trans) {
            Py_DECREF(pi_cache);
            PyErr_SetString(PyExc_TypeError, "_search.Kernel: tables.pi_table must be an initialised PiTable or None");
            return -1;
        }
        PiTable *P = (PiTable *)pi_cache;
        if (P->ngraphs != ngraphs || memcmp(P->trans, K->trans, (size_t)ngraphs * NLAT * NPOT) ||
            memcmp(P->lcode, K->lcode, sizeof K->lcode) || P->bonus != bonus) {
            Py_DECREF(pi_cache);
            PyErr_SetString(PyExc_ValueError, "_search.Kernel: tables.pi_table is of another world model or bonus");
            return -1;
        }
        K->pit = P; /* keeps the reference */
        K->copies = (int32_t *)calloc((size_t)n, sizeof(int32_t));
        K->bit_sr = (uint8_t *)malloc((size_t)n);
        K->bit_pm = (uint8_t *)malloc((size_t)n);
        K->sr_row = (const int8_t **)malloc(sizeof(int8_t *) * 256);
        K->pm_row = (const uint8_t **)malloc(sizeof(uint8_t *) * 256);
        if (!K->copies || !K->bit_sr || !K->bit_pm || !K->sr_row || !K->pm_row) {
            PyErr_NoMemory();
            return -1;
        }
        int last = -1;
        for (int b = 0; b <= n; b++)
            if (b == n || (K->first[b / 64] >> (b % 64) & 1)) {
                if (last >= 0) K->copies[last] = b - last;
                last = b;
            }
        /* the distinct latent rows and potion maps of the frame (consecutive bits mostly share both) */
        for (int b = 0; b < n; b++) {
            const int8_t *lat = K->latent + (size_t)b * NOBS;
            const uint8_t *lp = K->latpot + (size_t)b * NPOT;
            int sr = b ? K->bit_sr[b - 1] : -1, pm = b ? K->bit_pm[b - 1] : -1;
            if (sr < 0 || memcmp(K->sr_row[sr], lat, NOBS)) {
                for (sr = 0; sr < K->nsr && memcmp(K->sr_row[sr], lat, NOBS); sr++) {
                }
                if (sr == K->nsr) {
                    if (K->nsr == 256) break;
                    K->sr_row[K->nsr++] = lat;
                }
            }
            if (pm < 0 || memcmp(K->pm_row[pm], lp, NPOT)) {
                for (pm = 0; pm < K->npm && memcmp(K->pm_row[pm], lp, NPOT); pm++) {
                }
                if (pm == K->npm) {
                    if (K->npm == 256) break;
                    K->pm_row[K->npm++] = lp;
                }
            }
            K->bit_sr[b] = (uint8_t)sr;
            K->bit_pm[b] = (uint8_t)pm;
        }
        if (K->nsr == 256 || K->npm == 256) {
            PyErr_SetString(PyExc_ValueError, "_search.Kernel: more than 255 stone or potion maps");
            return -1;
        }
        K->sr_stamp = (uint32_t *)calloc((size_t)K->nsr, sizeof(uint32_t));
        K->pm_stamp = (uint32_t *)calloc((size_t)K->npm, sizeof(uint32_t));
        K->sr_off = (size_t *)calloc((size_t)K->nsr, sizeof(size_t));
        K->pm_blk = (const uint8_t **)calloc((size_t)K->npm, sizeof(uint8_t *));
        if (!K->sr_stamp || !K->pm_stamp || !K->sr_off || !K->pm_blk) {
            PyErr_NoMemory();
            return -1;
        }
    } else {
        Py_DECREF(pi_cache);
    }
    return 0;
}

static int ensure_depth(Kernel *K, int need) {
    if (need <= K->maxdepth) return 0;
    uint64_t *bel = (uint64_t *)realloc(K->bel, sizeof(uint64_t) * (size_t)need * K->nw);
    if (!bel) return -1;
    K->bel = bel;
    Scratch *s = (Scratch *)realloc(K->scr, sizeof(Scratch) * (size_t)need);
    if (!s) return -1;
    memset(s + K->maxdepth, 0, sizeof(Scratch) * (size_t)(need - K->maxdepth));
    K->scr = s;
    K->maxdepth = need;
    return 0;
}

static int int_seq(PyObject *seq, int *out, int maxn, const char *what) {
    PyObject *f = PySequence_Fast(seq, what);
    if (!f) return -1;
    Py_ssize_t m = PySequence_Fast_GET_SIZE(f);
    if (m > maxn) {
        Py_DECREF(f);
        PyErr_Format(PyExc_ValueError, "too many %s", what);
        return -1;
    }
    for (Py_ssize_t i = 0; i < m; i++) {
        long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(f, i));
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(f);
            return -1;
        }
        out[i] = (int)v;
    }
    Py_DECREF(f);
    return (int)m;
}

/* search(request) -> SearchResult(value, depth, action, nodes). ``request`` has the attributes of
 * ideal_observer.SearchRequest: stones (perceived, in the order actions are tried), potions (six counts), belief
 * (bitset over the frame's bits), touched (colour pairs observed, bit k for colours 2k, 2k + 1), root (always
 * search, never answer from the memo: the action is then the node's own), symmetric (symmetry keys),
 * colour_order (the order colours are tried). The belief's weight is its number of bits. */
static PyTypeObject *ResultType;

static PyObject *Kernel_search(Kernel *K, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"request", NULL};
    PyObject *req;
    const char *R = "_search.Kernel.search: request";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O:search", kwlist, &req)) return NULL;
    if (!K->memo.t) {
        PyErr_SetString(PyExc_RuntimeError, "_search.Kernel: not initialised");
        return NULL;
    }
    int st[MAXST], pot[NPOT], col[NPOT];
    int nst = seq_attr(req, R, "stones", st, MAXST, NOBS);
    if (nst < 0) return NULL;
    int npot = seq_attr(req, R, "potions", pot, NPOT, 256);
    if (npot < 0) return NULL;
    int ncol = seq_attr(req, R, "colour_order", col, NPOT, NPOT);
    if (ncol < 0) return NULL;
    if (npot != NPOT || ncol != NPOT) {
        PyErr_Format(PyExc_ValueError, "%s.%s must hold six items", R, npot != NPOT ? "potions" : "colour_order");
        return NULL;
    }
    long long touched;
    int root, sym_mode;
    if (long_attr(req, R, "touched", &touched) < 0 || bool_attr(req, "root", &root) < 0 ||
        bool_attr(req, "symmetric", &sym_mode) < 0)
        return NULL;
    uint8_t stones[MAXST];
    int left = 0;
    for (int i = 0; i < nst; i++) stones[i] = (uint8_t)st[i];
    for (int p = 0; p < NPOT; p++) left += pot[p];
    if (left > MAXLEFT) {
        PyErr_Format(PyExc_ValueError, "%s.potions: more than %d potions", R, MAXLEFT);
        return NULL;
    }
    if (sym_mode && !K->has_sym) {
        PyErr_Format(PyExc_ValueError, "%s.symmetric without symmetry tables", R);
        return NULL;
    }
    if (ensure_depth(K, left + 2) < 0) return PyErr_NoMemory();
    uint64_t *bel = K->bel;
    if (bits_attr(req, R, "belief", K->nw, bel) < 0) return NULL;
    int lo = -1, hi = 0;
    int64_t total = 0;
    for (int i = 0; i < K->nw; i++)
        if (bel[i]) {
            if (lo < 0) lo = i;
            hi = i + 1;
            total += (int64_t)POPCNT(bel[i]);
        }
    if (lo < 0) {
        PyErr_Format(PyExc_ValueError, "%s.belief is empty", R);
        return NULL;
    }
    K->sym_mode = sym_mode;
    for (int p = 0; p < NPOT; p++) K->colour_order[p] = col[p];
    K->err = 0;
    long long before = K->nodes;
    Res r;
    search(K, 0, stones, nst, pot, lo, hi, total, (int)touched, root, -INFINITY, NULL, &r);
    if (K->err) {
        if (K->err != 3 || !PyErr_Occurred()) PyErr_NoMemory();
        return NULL;
    }
    PyObject *out = PyStructSequence_New(ResultType);
    if (!out) return NULL;
    PyObject *v = PyFloat_FromDouble(r.v), *d, *a, *nodes = PyLong_FromLongLong(K->nodes - before);
    if (r.upper) {
        d = Py_None;
        Py_INCREF(d);
    } else {
        d = PyFloat_FromDouble(r.d);
    }
    if (r.has_action && !r.upper) a = Py_BuildValue("(ii)", r.ao, r.ap);
    else {
        a = Py_None;
        Py_INCREF(a);
    }
    if (!v || !d || !a || !nodes) {
        Py_XDECREF(v);
        Py_XDECREF(d);
        Py_XDECREF(a);
        Py_XDECREF(nodes);
        Py_DECREF(out);
        return NULL;
    }
    PyStructSequence_SET_ITEM(out, 0, v);
    PyStructSequence_SET_ITEM(out, 1, d);
    PyStructSequence_SET_ITEM(out, 2, a);
    PyStructSequence_SET_ITEM(out, 3, nodes);
    return out;
}

static PyStructSequence_Field result_fields[] = {
    {"value", "expected objective: reward, or minus the world states left at trial end (the ideal explorer)"},
    {"depth", "expected number of potions still used"},
    {"action", "(perceived stone, colour), (-1, -1) to end the trial, or None for a node answered from the memo"},
    {"nodes", "nodes searched by this call"},
    {NULL, NULL},
};

static PyStructSequence_Desc result_desc = {
    "alchemy_gym.agents._search.SearchResult", "The outcome of one Kernel.search.", result_fields, 4,
};

static PyObject *Kernel_stats(Kernel *K, PyObject *unused) {
    const Table *t = &K->memo;
    return Py_BuildValue("{s:n,s:n,s:n,s:n,s:L}", "memo", (Py_ssize_t)t->kinds[0], "memo_shallow",
                         (Py_ssize_t)t->kinds[1], "upper", (Py_ssize_t)t->kinds[2], "replaced", (Py_ssize_t)t->replaced,
                         "nodes", K->nodes);
}

static PyMethodDef Kernel_methods[] = {
    {"search", (PyCFunction)(void (*)(void))Kernel_search, METH_VARARGS | METH_KEYWORDS,
     "search(request) -> SearchResult: expectimax from one node (see ideal_observer.SearchRequest)."},
    {"stats", (PyCFunction)Kernel_stats, METH_NOARGS, "Sizes of the memos and nodes searched."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject KernelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "alchemy_gym.agents._search.Kernel",
    .tp_basicsize = sizeof(Kernel),
    .tp_dealloc = (destructor)Kernel_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Per-trial search kernel of the ideal observer.",
    .tp_methods = Kernel_methods,
    .tp_init = (initproc)Kernel_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_search", "C kernel of the ideal observer's expectimax.", -1, NULL,
};

PyMODINIT_FUNC PyInit__search(void) {
    if (PyType_Ready(&KernelType) < 0 || PyType_Ready(&PiTableType) < 0) return NULL;
    pi_rank_tables();
    if (pi_multisets() < 0) return PyErr_NoMemory();
    ResultType = PyStructSequence_NewType(&result_desc);
    if (!ResultType) return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    Py_INCREF(ResultType);
    if (PyModule_AddObject(m, "SearchResult", (PyObject *)ResultType) < 0) {
        Py_DECREF(ResultType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&PiTableType);
    if (PyModule_AddObject(m, "PiTable", (PyObject *)&PiTableType) < 0) {
        Py_DECREF(&PiTableType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&KernelType);
    if (PyModule_AddObject(m, "Kernel", (PyObject *)&KernelType) < 0) {
        Py_DECREF(&KernelType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
