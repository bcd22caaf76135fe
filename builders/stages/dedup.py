"""Stage 2: drop prompts that share a long common prefix (the paper's heuristic dedup).

Each prompt's normalised prefix (lower case, whitespace collapsed, first `prefix_chars` characters) is compared:
identical prefixes are grouped exactly (fast path); the remaining representatives get datasketch MinHash
signatures over word shingles, LSH band keys group candidates, and candidates whose estimated Jaccard reaches
the threshold are joined. Only prompts with the same earlier chat turns can be duplicates. Each duplicate
cluster keeps one representative: earliest `created_at`, then smallest `prompt_id`.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import polars as pl
from datasketch import MinHash
from xxhash import xxh3_128_digest, xxh32_intdigest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from builders.memory import release_memory
from builders.schema import Tables
from builders.stages import Context, Stage, StageResult, drop_rows, follow_prompts

NAME = "dedup"


def normalised_prefix(text: pl.Expr, prefix_chars: int) -> pl.Expr:
    """Lower case, whitespace runs collapsed to one space, trimmed, cut to `prefix_chars` characters."""
    return text.str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars().str.slice(0, prefix_chars)


def shingles(prefix: str, k: int) -> list[bytes]:
    words = prefix.split(" ")
    if len(words) <= k:
        return [prefix.encode("utf-8")]
    return [" ".join(words[i : i + k]).encode("utf-8") for i in range(len(words) - k + 1)]


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, as datasketch applies it before its affine permutations."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def signatures(prefixes: list[str], k: int, num_perm: int, seed: int = 1) -> np.ndarray:
    """datasketch MinHash signatures (n × num_perm, uint32) of the prefixes' word shingles, for a whole batch at
    once: the values `MinHash.bulk(..., num_perm, seed, hashfunc=xxhash.xxh32_intdigest)` gives (tested), from
    datasketch's own permutations, in one numpy pass instead of one per prompt."""
    if not prefixes:
        return np.zeros((0, num_perm), dtype=np.uint32)
    a, b = MinHash(num_perm=num_perm, seed=seed, hashfunc=xxh32_intdigest).permutations
    sh = [shingles(p, k) for p in prefixes]
    counts = np.fromiter((len(x) for x in sh), dtype=np.int64, count=len(sh))
    hv = _fmix32(np.fromiter((xxh32_intdigest(x) for row in sh for x in row), dtype=np.uint32, count=int(counts.sum())))
    starts = np.concatenate([[0], np.cumsum(counts)])
    out = np.empty((len(prefixes), num_perm), dtype=np.uint32)
    a, b = a[:, None], b[:, None]
    for i in range(0, len(prefixes), 1_000):  # permutations × shingles of 1,000 prompts: a few MB, cache-friendly
        j = min(i + 1_000, len(prefixes))
        lo = starts[i]
        out[i:j] = np.minimum.reduceat(a * hv[None, lo : starts[j]] + b, starts[i:j] - lo, axis=1).T
    return out


_MIX = np.array([pow(0x9E3779B97F4A7C15, j + 1, 2**64) for j in range(64)], dtype=np.uint64)


def band_keys(band: np.ndarray) -> np.ndarray:
    """One uint64 key per row of a signature band (a multiplicative mix, wrapping mod 2**64)."""
    return (band.astype(np.uint64) * _MIX[: band.shape[1]]).sum(axis=1, dtype=np.uint64)


def _band_keys_of(prefixes: list[str], *, bands: int, k: int, num_perm: int) -> np.ndarray:
    """LSH band keys (n × bands, uint64) of the prefixes' MinHash signatures."""
    sig = signatures(prefixes, k, num_perm)
    rows = num_perm // bands
    out = np.empty((len(prefixes), bands), dtype=np.uint64)
    for b in range(bands):
        out[:, b] = band_keys(sig[:, b * rows : (b + 1) * rows])
    return out


def digests(prefixes: list[str]) -> np.ndarray:
    """The 128-bit xxh3 digest of each prefix as two uint64 (n × 2): the exact fast path groups numbers, not bytes."""
    if not prefixes:
        return np.zeros((0, 2), dtype=np.uint64)
    return np.frombuffer(b"".join(xxh3_128_digest(p.encode("utf-8")) for p in prefixes), dtype="<u8").reshape(-1, 2).astype(np.uint64)


def sketch(prefixes: list[str], *, bands: int, k: int, num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """What dedup needs of each normalised prefix: its 128-bit digest (n × 2 uint64, the exact fast path) and its
    LSH band keys (n × bands)."""
    return digests(prefixes), _band_keys_of(prefixes, bands=bands, k=k, num_perm=num_perm)


def sketch_all(prefixes: list[str], engine, *, bands: int, k: int, num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """`sketch` of every prefix on the engine: (digests n × 2, band keys n × bands)."""
    parts = engine.map_batches(partial(sketch, bands=bands, k=k, num_perm=num_perm), prefixes, batch_size=5_000,
                               desc="dedup: MinHash")
    if not parts:
        return np.zeros((0, 2), dtype=np.uint64), np.zeros((0, bands), dtype=np.uint64)
    return np.vstack([part[0] for part in parts]), np.vstack([part[1] for part in parts])


class PrefixSketches:
    """Digests, band keys and MinHash signatures of prompts' normalised prefixes, by row (`_row`), held in memory
    and computed on the engine. The executor's `builders.executor.SpilledSketches` offers the same three
    methods over what it wrote to disk."""

    def __init__(self, prefixes: list[str], engine, *, bands: int, k: int, num_perm: int):
        self.prefixes, self.engine, self.k, self.num_perm = prefixes, engine, k, num_perm
        self.digests, self.keys = sketch_all(prefixes, engine, bands=bands, k=k, num_perm=num_perm)

    def exact(self, rows: np.ndarray) -> np.ndarray:
        return self.digests[rows]

    def band_keys(self, rows: np.ndarray, band: int) -> np.ndarray:
        return self.keys[rows, band]

    def signatures(self, rows: np.ndarray) -> np.ndarray:
        return signatures_on(self.engine, [self.prefixes[r] for r in rows], k=self.k, num_perm=self.num_perm)


def signatures_on(engine, prefixes: list[str], *, k: int, num_perm: int) -> np.ndarray:
    """`signatures` of the prefixes, computed on the engine."""
    if not prefixes:
        return np.zeros((0, num_perm), dtype=np.uint32)
    return np.vstack(engine.map_batches(partial(signatures, k=k, num_perm=num_perm), prefixes, batch_size=5_000,
                                        desc="dedup: candidates"))


def _clusters(n: int, edges_a: np.ndarray, edges_b: np.ndarray) -> np.ndarray:
    graph = coo_matrix((np.ones(len(edges_a), dtype=np.int8), (edges_a, edges_b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def dedup(tables: Tables, *, prefix_chars: int = 200, shingle_words: int = 3, num_perm: int = 128,
          threshold: float = 0.8, bands: int = 16, engine=None, sketches=None) -> tuple[Tables, StageResult]:
    """`sketches` (default: a `PrefixSketches` of the prompts' text) gives each prompt's prefix digest, band keys
    and signatures by its `_row`; when it is given, the prompts table must have a `_row` column."""
    from builders.engine import IN_PROCESS

    engine = engine or IN_PROCESS
    counts_in = tables.counts()
    if sketches is None:
        prefixes = tables.prompts.select(normalised_prefix(pl.col("text"), prefix_chars))["text"].to_list()
        sketches = PrefixSketches(prefixes, engine, bands=bands, k=shingle_words, num_perm=num_perm)
        del prefixes
        rows = pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row")
    else:
        rows = pl.col("_row")
    # Representative order: earliest created_at (unknown times last), then prompt_id. The decisions are made on
    # numbers only (prompt ids and chat contexts by their rank, `_at` a row's position in the prompts table): the
    # sorts and joins below copy a few bytes a prompt, not its strings. The kept rows are gathered once at the end.
    prompts = tables.prompts
    pid_rank = prompts["prompt_id"].rank("ordinal")  # ids are unique: the kept rows are put in id order by it at the end
    p = pl.DataFrame([prompts["created_at"], pid_rank.alias("_pid"), prompts["context_key"].rank("dense").alias("_ctx"),
                      prompts.select(rows)["_row"], pl.Series("_at", np.arange(prompts.height, dtype=np.uint32))])
    pid_rank = pid_rank.to_numpy()
    p = p.sort(["created_at", "_pid"], nulls_last=True).drop("created_at", "_pid")
    release_memory()

    # Exact fast path: identical (context, prefix digest) -> the first in representative order. A stable sort of
    # the rows (already in that order) by context and digest puts each group's representative first.
    n_all = p.height
    ctx_all = p["_ctx"].fill_null(0).to_numpy()  # ranks start at 1: 0 is the null context's group
    e = sketches.exact(p["_row"].to_numpy())
    order = np.lexsort((e[:, 1], e[:, 0], ctx_all))
    e, ctx_all = e[order], ctx_all[order]
    starts = np.flatnonzero(np.r_[True, (ctx_all[1:] != ctx_all[:-1]) | (e[1:, 0] != e[:-1, 0]) | (e[1:, 1] != e[:-1, 1])])
    del e, ctx_all
    rep = np.empty(n_all, dtype=np.uint32)
    rep[order] = np.repeat(order[starts].astype(np.uint32), np.diff(np.r_[starts, n_all]))
    distinct_exact = len(starts)
    del order, starts
    p = p.with_columns(pl.Series("_pos", np.arange(n_all, dtype=np.uint32)), pl.Series("_rep", rep))
    del rep
    reps = p.filter(pl.col("_pos") == pl.col("_rep"))
    release_memory()  # each step's temporaries go back before the next allocates (else the peak is their sum)

    # MinHash + LSH over the exact-path representatives: rows sharing a band key (within one chat context) are
    # candidates; a candidate pair is joined when its estimated Jaccard reaches the threshold. Band keys are read
    # one band at a time; the signatures (128 numbers a prompt) only for the rows in candidate pairs.
    n = reps.height
    rep_rows = reps["_row"].to_numpy()
    ctx = reps["_ctx"].fill_null(0).to_numpy()
    index = np.arange(n, dtype=np.int64)
    keys = (pl.DataFrame({"band": np.full(n, b, dtype=np.uint8), "ctx": ctx, "h": sketches.band_keys(rep_rows, b), "i": index})
            for b in range(bands))
    pairs = engine.pairs(keys)
    a, c = pairs["first"].to_numpy(), pairs["i"].to_numpy()
    del pairs
    cand = np.unique(np.concatenate([a, c]))  # every row in a candidate pair, sorted
    sig = sketches.signatures(rep_rows[cand])
    a_at, c_at = np.searchsorted(cand, a), np.searchsorted(cand, c)
    del cand
    ok = np.zeros(len(a), dtype=bool)
    for lo in range(0, len(a), 50_000):  # bounded memory: 50,000 pairs' signatures (2 × 25 MB) at a time
        hi = lo + 50_000
        ok[lo:hi] = (sig[a_at[lo:hi]] == sig[c_at[lo:hi]]).mean(axis=1) >= threshold
    del sig, a_at, c_at
    release_memory()
    comp = _clusters(n, a[ok], c[ok]) if n else np.zeros(0, dtype=np.int64)
    del a, c, ok
    release_memory()

    # Each cluster keeps its smallest position (reps are in position order: a cluster's first member); every row
    # follows its exact-path representative's cluster. Decided in numpy over positions, a few bytes a prompt.
    rep_pos = reps["_pos"].to_numpy()
    clusters, first = np.unique(comp, return_index=True)
    keep_of_rep = rep_pos[first][comp]
    del reps, comp, first
    rep_all, at = p["_rep"].to_numpy(), p["_at"].to_numpy()
    del p
    pos = np.arange(n_all, dtype=np.uint32)
    is_kept = keep_of_rep[np.searchsorted(rep_pos, rep_all)] == pos
    exact_dup = rep_all[~is_kept] != pos[~is_kept]
    del rep_all, pos, keep_of_rep
    gone = pl.DataFrame([prompts["prompt_id"].gather(at[~is_kept]), pl.Series("_exact", exact_dup)])
    reason = pl.when(pl.col("_exact")).then(pl.lit("exact_prefix_duplicate")).otherwise(pl.lit("near_duplicate_prefix"))
    dropped = [drop_rows(gone, "prompt_id", "prompt", NAME, reason)]
    kept = at[is_kept]
    del gone, at, is_kept
    release_memory()
    # the kept rows in prompt id order, gathered once (a filter then a sort by the id strings held ~70 bytes a
    # prompt more at once)
    prompts = prompts[kept[np.argsort(pid_rank[kept])]]
    del kept, pid_rank
    demos, rankings, d2 = follow_prompts(tables, prompts["prompt_id"], NAME, "prompt_was_duplicate")
    out = Tables(prompts, demos, rankings)
    notes = {"distinct_exact_prefixes": int(distinct_exact), "clusters": len(clusters)}
    return out, StageResult(NAME, counts_in, out.counts(), pl.concat(dropped + [d2]), notes)


def _run(tables: Tables, ctx: Context) -> tuple[Tables, StageResult]:
    s = ctx.settings
    return dedup(tables, prefix_chars=s.dedup_prefix_chars, shingle_words=s.dedup_shingle_words, num_perm=s.dedup_num_perm,
                 threshold=s.dedup_threshold, bands=s.dedup_bands, engine=ctx.engine, sketches=ctx.sketches)


STAGE = Stage(NAME, _run)
