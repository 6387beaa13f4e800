"""Tests for the pure epoch planner (pygestor.loaders.plan) and the topology resolver."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pygestor.errors import ConfigError, IntegrityError
from pygestor.loaders import plan as P
from pygestor.loaders.topology import Topology, resolve_topology

FAST = settings(max_examples=120, deadline=None)

sizes_st = st.lists(st.integers(0, 7), min_size=0, max_size=12)
world_st = st.integers(1, 9)
workers_st = st.integers(0, 5)
block_st = st.integers(1, 4)
seed_st = st.integers(0, 3)
shuffle_st = st.sampled_from(["none", "rowgroup"])


# --------------------------------------------------------------------------------------------
# Reference helpers (explicit, per-sample; only for tiny inputs)


def expand(slices: list[P.Slice]) -> list[tuple[int, int]]:
    """Samples (row_group, row) of a slice list, in delivery order."""
    return [(s.row_group, row) for s in slices for row in range(s.start, s.stop)]


def plan_slices(sizes, *, rank, world_size, worker, num_workers, seed=0, epoch=0,
                shuffle="none", drop_last=False, block=1, consumed=0) -> list[P.Slice]:
    """What piece ``worker`` of ``num_workers`` (one piece per worker) still delivers."""
    layout = P.epoch_layout(sizes, seed=seed, epoch=epoch, shuffle=shuffle)
    return P.plan_piece(layout, rank=rank, world_size=world_size, piece=worker,
                        num_pieces=num_workers, drop_last=drop_last, block=block,
                        skip=consumed).rest()


def reference_sequence(sizes, seed, epoch, shuffle) -> list[tuple[int, int]]:
    order = P.epoch_layout(sizes, seed=seed, epoch=epoch, shuffle=shuffle).order
    return [(int(g), row) for g in order for row in range(sizes[g])]


def reference_rank(sizes, world, rank, seed, epoch, shuffle, drop_last) -> list[tuple[int, int]]:
    sequence = reference_sequence(sizes, seed, epoch, shuffle)
    total = len(sequence)
    if total == 0:
        return []
    n = total // world if drop_last else -(-total // world)
    return [sequence[(rank * n + i) % total] for i in range(n)]


def rank_samples(sizes, world, rank, workers, **kw) -> list[list[tuple[int, int]]]:
    """Per-worker delivered samples of one rank."""
    return [
        expand(
            plan_slices(sizes, rank=rank, world_size=world, worker=k, num_workers=workers, **kw)
        )
        for k in range(max(workers, 1))
    ]


def positions(ranges) -> list[int]:
    return [p for a, b in ranges for p in range(a, b)]


# --------------------------------------------------------------------------------------------
# Global properties


@FAST
@given(sizes_st, world_st, workers_st, st.booleans(), shuffle_st, seed_st, st.integers(0, 3))
def test_ranks_and_workers_cover_the_epoch(sizes, world, workers, drop_last, shuffle, seed, epoch):
    kw = {"seed": seed, "epoch": epoch, "shuffle": shuffle, "drop_last": drop_last}
    total = sum(sizes)
    n = P.samples_per_rank(total, world, drop_last)
    delivered: list[tuple[int, int]] = []
    for rank in range(world):
        per_worker = rank_samples(sizes, world, rank, workers, **kw)
        flat = [s for worker in per_worker for s in worker]
        assert len(flat) == n
        assert flat == reference_rank(sizes, world, rank, seed, epoch, shuffle, drop_last)
        delivered.extend(flat)
    everything = {(g, row) for g, size in enumerate(sizes) for row in range(size)}
    counts = Counter(delivered)
    if drop_last:
        assert len(delivered) == world * (total // world)
        assert all(c == 1 for c in counts.values())
    else:
        assert len(delivered) == (world * -(-total // world) if total else 0)
        assert set(counts) == everything
        assert sum(c - 1 for c in counts.values()) == len(delivered) - total  # only the pad


@FAST
@given(sizes_st, world_st, st.booleans(), shuffle_st, seed_st, block_st)
def test_worker_count_does_not_change_a_ranks_samples(
    sizes, world, drop_last, shuffle, seed, block
):
    kw = {"seed": seed, "epoch": 1, "shuffle": shuffle, "drop_last": drop_last, "block": block}
    for rank in range(world):
        sequences = {
            workers: [s for w in rank_samples(sizes, world, rank, workers, **kw) for s in w]
            for workers in (0, 1, 2, 3)
        }
        assert all(seq == sequences[0] for seq in sequences.values())


def test_determinism_and_epoch_changes_order():
    sizes = [3, 0, 5, 2, 7, 1, 4, 6]
    kw = {
        "rank": 1,
        "world_size": 3,
        "worker": 1,
        "num_workers": 2,
        "seed": 7,
        "shuffle": "rowgroup",
    }
    assert plan_slices(sizes, epoch=2, **kw) == plan_slices(sizes, epoch=2, **kw)
    assert plan_slices(sizes, epoch=2, **kw) != plan_slices(sizes, epoch=3, **kw)
    orders = {tuple(P.epoch_layout(sizes, seed=7, epoch=e, shuffle="rowgroup").order)
              for e in range(5)}
    assert len(orders) == 5
    assert P.epoch_layout(sizes, seed=7, epoch=3).order.tolist() == list(range(len(sizes)))
    expected = np.random.Generator(np.random.PCG64(np.random.SeedSequence([7, 3])))
    assert (
        P.epoch_layout(sizes, seed=7, epoch=3, shuffle="rowgroup").order.tolist()
        == expected.permutation(len(sizes)).tolist()
    )


def test_slices_are_merged_and_compact():
    slices = plan_slices([4, 0, 3], rank=0, world_size=1, worker=0, num_workers=0)
    assert slices == [P.Slice(0, 0, 4), P.Slice(2, 0, 3)]
    # Wrap-around with one row group: two slices of the same group, not merged.
    wrapped = plan_slices([5], rank=1, world_size=2, worker=0, num_workers=0)
    assert wrapped == [P.Slice(0, 3, 5), P.Slice(0, 0, 1)]
    # More ranks than samples: repeated wrapping.
    assert [
        plan_slices([2], rank=r, world_size=5, worker=0, num_workers=1) for r in range(5)
    ] == [[P.Slice(0, i % 2, i % 2 + 1)] for i in range(5)]


def test_empty_epoch_gives_nothing():
    for drop_last in (True, False):
        assert plan_slices([], rank=2, world_size=3, worker=0, num_workers=2) == []
        assert (
            plan_slices(
                [0, 0], rank=0, world_size=1, worker=0, num_workers=0, drop_last=drop_last
            )
            == []
        )


def test_invalid_settings():
    with pytest.raises(ConfigError, match="unknown shuffle"):
        P.epoch_layout([1], shuffle="bogus")
    with pytest.raises(ConfigError, match="rank"):
        plan_slices([1], rank=2, world_size=2, worker=0, num_workers=0)
    with pytest.raises(ConfigError, match="piece"):
        plan_slices([1], rank=0, world_size=1, worker=1, num_workers=0)
    with pytest.raises(ConfigError, match="block"):
        P.worker_pieces(5, 2, block=0)
    with pytest.raises(ConfigError):
        P.as_sizes([1, -1])


# --------------------------------------------------------------------------------------------
# Worker split


@FAST
@given(st.integers(0, 60), workers_st, block_st)
def test_worker_pieces_rule(n, workers, block):
    pieces = P.worker_pieces(n, workers, block)
    assert len(pieces) == max(workers, 1)
    assert positions(pieces) == list(range(n))
    sizes = [b - a for a, b in pieces]
    end_holder = max((k for k, s in enumerate(sizes) if s), default=0)
    assert all(s % block == 0 for k, s in enumerate(sizes) if k != end_holder)
    full = [s for k, s in enumerate(sizes) if k != end_holder or s % block == 0]
    assert not full or max(full) - min(full) <= block
    if block == 1:
        assert max(sizes) - min(sizes) <= 1


# --------------------------------------------------------------------------------------------
# Resume


@FAST
@given(sizes_st, world_st, workers_st, workers_st, block_st, st.booleans(), st.data())
def test_resumed_pieces_deliver_exactly_the_rest(sizes, world, workers0, workers, block, drop,
                                                 data):
    kw = {"seed": 1, "epoch": 2, "shuffle": "rowgroup", "drop_last": drop, "block": block}
    rank = data.draw(st.integers(0, world - 1))
    original = rank_samples(sizes, world, rank, workers0, **kw)  # one piece per worker
    consumed = [data.draw(st.integers(0, len(w))) for w in original]
    done = [s for w, c in zip(original, consumed, strict=True) for s in w[:c]]
    # the pieces dealt to another number of workers, each read from its count
    resumed = [[s for k in share for s in piece_samples(sizes, world, rank, k, workers0,
                                                        consumed[k], **kw)]
               for share in P.pieces_of_workers(workers, len(original))]
    rest = [s for w in resumed for s in w]
    full = [s for w in original for s in w]
    assert Counter(done + rest) == Counter(full)
    if max(workers, 1) == max(workers0, 1):  # continuation: each worker resumes its own piece
        assert resumed == [w[c:] for w, c in zip(original, consumed, strict=True)]


def piece_samples(sizes, world, rank, piece, pieces, skip, **kw) -> list[tuple[int, int]]:
    return expand(plan_slices(sizes, rank=rank, world_size=world, worker=piece,
                              num_workers=pieces, consumed=skip, **kw))


def test_bad_resume_state_is_an_integrity_error():
    layout = P.epoch_layout([4, 6])
    with pytest.raises(IntegrityError, match="piece 0 consumed 6 samples but it holds 5"):
        P.plan_piece(layout, rank=0, world_size=1, piece=0, num_pieces=2, skip=6)
    with pytest.raises(IntegrityError):
        P.consumed_per_worker_from_batches(10, [2, 3])


# --------------------------------------------------------------------------------------------
# DataLoader batches


def simulate_dataloader(batches_consumed: int, per_worker: list[int]) -> list[int]:
    """Explicit in-order round robin over workers, skipping exhausted ones."""
    taken = [0] * len(per_worker)
    worker = 0
    for _ in range(batches_consumed):
        while taken[worker] >= per_worker[worker]:
            worker = (worker + 1) % len(per_worker)
        taken[worker] += 1
        worker = (worker + 1) % len(per_worker)
    return taken


@FAST
@given(st.lists(st.integers(0, 6), min_size=1, max_size=6), st.data())
def test_round_robin_matches_explicit_simulation(per_worker, data):
    batches = data.draw(st.integers(0, sum(per_worker)))
    assert P.consumed_per_worker_from_batches(batches, per_worker) == simulate_dataloader(
        batches, per_worker
    )


def test_batches_and_samples_helpers():
    assert P.batches_per_worker([10, 8, 0], 4) == [3, 2, 0]
    assert P.batches_per_worker([10, 8, 0], 4, drop_incomplete=True) == [2, 2, 0]
    # batches: w0, w1, w2(empty: skipped), w0, w1, w0 ...
    assert P.consumed_per_worker_from_batches(4, [3, 2, 0]) == [2, 2, 0]
    assert P.consumed_per_worker_from_batches(5, [3, 2, 0]) == [3, 2, 0]


# --------------------------------------------------------------------------------------------
# Window shuffle


def read_with_windows(plan: P.PiecePlan, window: int, align: int = 1,
                      strata: int = 3) -> list[tuple[int, int]]:
    """What a reader with an in-buffer window shuffle delivers for a piece plan."""
    out = []
    for w in plan.windows(window, align):
        rows = expand(plan.slices_between(w.offset, w.offset + w.length))
        assert len(rows) == w.length
        order = P.window_order(plan.seed, plan.epoch, w.position, w.length, rank=plan.rank,
                               strata=strata)
        out.extend(rows[i] for i in order[w.discard :])
    return out


@FAST
@given(sizes_st, world_st, workers_st, st.integers(1, 9), st.integers(1, 3), st.data())
def test_window_shuffle_resumes_exactly(sizes, world, workers, window, align, data):
    layout = P.epoch_layout(sizes, seed=3, epoch=1, shuffle="rowgroup")
    rank = data.draw(st.integers(0, world - 1))
    kw = {"rank": rank, "world_size": world, "num_pieces": workers, "block": align}
    window = max(window // align, 1) * align
    full = [
        read_with_windows(P.plan_piece(layout, piece=k, **kw), window, align)
        for k in range(max(workers, 1))
    ]
    for k, f in enumerate(full):
        piece = P.plan_piece(layout, piece=k, **kw)
        assert sorted(f) == sorted(expand(piece.rest())), "a window order is a permutation"
        consumed = data.draw(st.integers(0, len(f)))
        plan = P.plan_piece(layout, piece=k, skip=consumed, **kw)
        assert read_with_windows(plan, window, align) == f[consumed:]
        assert expand(plan.rest()) == expand(piece.rest())[consumed:]


@FAST
@given(st.integers(0, 200), st.integers(1, 60), st.integers(1, 8))
def test_windows_cover_a_piece_in_near_equal_aligned_parts(samples, window, align):
    window = max(window // align, 1) * align
    bounds = P.window_bounds(samples, window, align)
    assert bounds[0] == 0 and bounds[-1] == samples
    sizes = [b - a for a, b in itertools.pairwise(bounds)]
    assert all(0 < size <= window for size in sizes) or samples == 0
    assert all(b % align == 0 for b in bounds[1:-1]), "every inner bound on whole batches"
    assert len(sizes) == max(-(-samples // window), 1) or samples == 0
    if len(sizes) > 1:
        assert max(sizes) - min(sizes) <= 2 * align, "no short tail window"


@FAST
@given(st.integers(1, 400), st.integers(1, 40), st.integers(0, 5), st.integers(0, 1000))
def test_window_order_is_a_stratified_permutation(length, strata, seed, start):
    order = P.window_order(seed, 2, start, length, rank=1, strata=strata)
    assert sorted(order.tolist()) == list(range(length))
    assert order.tolist() == P.window_order(seed, 2, start, length, rank=1,
                                            strata=strata).tolist()
    s = min(strata, length)
    bounds = [(k * length) // s for k in range(s + 1)]
    stratum = np.searchsorted(bounds, order, side="right") - 1
    for r in range(0, length, s):  # every round takes each stratum at most once
        assert len(set(stratum[r:r + s].tolist())) == len(stratum[r:r + s])


def test_window_order_depends_on_seed_epoch_rank_and_position():
    a = P.window_order(1, 2, 100, 50, strata=8)
    assert a.tolist() != P.window_order(1, 2, 150, 50, strata=8).tolist()
    assert a.tolist() != P.window_order(1, 3, 100, 50, strata=8).tolist()
    assert a.tolist() != P.window_order(2, 2, 100, 50, strata=8).tolist()
    assert a.tolist() != P.window_order(1, 2, 100, 50, rank=1, strata=8).tolist()


def test_window_rows_from_a_byte_budget():
    assert P.window_rows(300 * 10**6, 100.0, 256) == (10**6 // 256) * 256
    assert P.window_rows(1000, 100.0, 64) == 64, "at least one batch"
    assert P.window_rows(128 * 10**6, 172.0) == 128 * 10**6 // (3 * 172)


# --------------------------------------------------------------------------------------------
# Fingerprint and summary


@FAST
@given(st.lists(st.integers(0, 1000), min_size=1, max_size=20), st.data())
def test_fingerprint_changes_with_any_size(sizes, data):
    kw = {"seed": 0, "shuffle": "rowgroup", "drop_last": False, "world_size": 4}
    base = P.plan_fingerprint(sizes, **kw)
    index = data.draw(st.integers(0, len(sizes) - 1))
    changed = list(sizes)
    changed[index] += data.draw(st.integers(1, 5))
    assert P.plan_fingerprint(changed, **kw) != base
    assert P.plan_fingerprint([*sizes, 0], **kw) != base
    assert P.plan_fingerprint(np.asarray(sizes), **kw) == base


def test_fingerprint_settings_and_stability():
    kw = {"seed": 0, "shuffle": "rowgroup", "drop_last": False, "world_size": 4}
    base = P.plan_fingerprint([1, 2, 3], **kw)
    assert len(base) == 32 and int(base, 16) >= 0
    for change in ({"seed": 1}, {"shuffle": "none"}, {"drop_last": True}, {"world_size": 3}):
        assert P.plan_fingerprint([1, 2, 3], **{**kw, **change}) != base
    assert base == P.plan_fingerprint([1, 2, 3], **kw)


@FAST
@given(sizes_st, world_st, workers_st, st.booleans(), shuffle_st)
def test_summary_matches_brute_force(sizes, world, workers, drop_last, shuffle):
    summary = P.summarize_plan(sizes, world, workers, 5, 1, shuffle, drop_last)
    total = sum(sizes)
    n = P.samples_per_rank(total, world, drop_last)
    touched = [
        len({g for g, _ in reference_rank(sizes, world, r, 5, 1, shuffle, drop_last)})
        for r in range(world)
    ]
    assert summary["samples_per_rank"] == n
    assert summary["row_groups_per_rank"]["min"] == min(touched)
    assert summary["row_groups_per_rank"]["max"] == max(touched)
    assert summary["row_groups_per_rank"]["median"] == float(np.median(touched))
    assert summary["dropped"] == (total - world * n if drop_last else 0)
    assert summary["padded"] == (0 if drop_last else world * n - total)


# --------------------------------------------------------------------------------------------
# Scale


def test_one_rank_plan_at_a_million_row_groups():
    sizes = np.random.default_rng(0).integers(0, 200, size=1_000_000)
    layout = P.epoch_layout(sizes, seed=1, epoch=0, shuffle="rowgroup")
    n = P.samples_per_rank(layout.total, 1024, False)
    expected = [b - a for a, b in P.worker_pieces(n, 8)]
    plan = P.plan_piece(layout, rank=517, world_size=1024, piece=5, num_pieces=8)
    assert sum(s.rows for s in plan.rest()) == expected[5]
    summary = P.summarize_plan(sizes, 1024, 8, 1, 0, "rowgroup", False)
    assert summary["samples_per_rank"] == n


# --------------------------------------------------------------------------------------------
# Topology


def test_topology_sources_in_order():
    env = {"RANK": "3", "WORLD_SIZE": "8"}
    assert resolve_topology(environ=env, worker_info=(1, 2)) == Topology(3, 8, 1, 2)
    assert resolve_topology(environ=env, captured=(1, 4)) == Topology(1, 4, 0, 0)
    assert resolve_topology(2, 5, environ=env, captured=(1, 4)) == Topology(2, 5, 0, 0)
    assert resolve_topology(environ={}) == Topology(0, 1, 0, 0)
    assert resolve_topology(environ={}).workers == 1


def test_topology_validation():
    with pytest.raises(ConfigError, match="rank"):
        resolve_topology(4, 4, environ={})
    with pytest.raises(ConfigError, match="RANK"):
        resolve_topology(environ={"RANK": "x"})
    with pytest.raises(ConfigError, match="worker"):
        resolve_topology(environ={}, worker_info=(2, 2))


# --------------------------------------------------------------------------------------------
# Resume over the epoch's original pieces (the data loader's form)


def simulate_loader(streams: list[list[int]], batch_size: int, drop_incomplete: bool = False,
                    bundle: int = 1, firsts: list[int] | None = None):
    """Explicit PyTorch in-order round robin over workers that batch their own streams and hand
    them over ``bundle`` batches at a time (worker ``j``'s first bundle holds ``firsts[j]``):
    (delivered batches in order, worker of each batch)."""
    queues = []
    for j, stream in enumerate(streams):
        batches = [stream[i : i + batch_size] for i in range(0, len(stream), batch_size)]
        if drop_incomplete and batches and len(batches[-1]) < batch_size:
            batches.pop()
        first = firsts[j] if firsts else bundle
        items = [batches[:first]] + [batches[i : i + bundle]
                                     for i in range(first, len(batches), bundle)]
        queues.append([item for item in items if item])
    out, sources = [], []
    worker = 0
    while any(queues):
        if queues[worker]:
            for batch in queues[worker].pop(0):
                out.append(batch)
                sources.append(worker)
        worker = (worker + 1) % len(queues)
    return out, sources


@st.composite
def piece_case(draw):
    pieces = draw(st.lists(st.integers(0, 9), min_size=1, max_size=5))
    workers = draw(workers_st)
    batch = draw(st.integers(1, 4))
    return pieces, workers, batch, draw(st.booleans())


def _streams(pieces: list[list[int]], workers: int, rotation: int) -> list[list[int]]:
    return [
        [s for k in share for s in pieces[k]]
        for share in P.pieces_of_workers(workers, len(pieces), rotation)
    ]


@FAST
@given(piece_case(), workers_st, st.data())
def test_resume_after_batches_continues_the_exact_order(case, workers_after, data):
    sizes, workers, batch, drop = case
    ids = iter(range(10_000))
    pieces = [[next(ids) for _ in range(n)] for n in sizes]
    whole, _ = simulate_loader(_streams(pieces, workers, 0), batch, drop)
    taken = data.draw(st.integers(0, len(whole)))
    delivered, rotation = P.resume_after_batches(taken, sizes, workers, batch, drop)
    first = [s for b in whole[:taken] for s in b]
    assert sum(delivered) == len(first)
    rest_pieces = [p[d:] for p, d in zip(pieces, delivered, strict=True)]
    everything = sorted(s for p in pieces for s in p)
    assert sorted(first + [s for p in rest_pieces for s in p]) == everything
    if not drop:
        # the same worker count with the saved rotation: the very same remaining batches
        rest, _ = simulate_loader(_streams(rest_pieces, workers, rotation), batch)
        assert rest == whole[taken:]
    # any other worker count: exactly the rest, in some order
    rest, _ = simulate_loader(_streams(rest_pieces, workers_after, 0), batch)
    assert sorted(s for b in rest for s in b) == sorted(s for p in rest_pieces for s in p)


@FAST
@given(st.lists(st.integers(0, 6), min_size=1, max_size=6), st.data())
def test_next_worker_matches_simulation(per_worker, data):
    batches = data.draw(st.integers(0, sum(per_worker)))
    taken = [0] * len(per_worker)
    worker = 0
    for _ in range(batches):
        while taken[worker] >= per_worker[worker]:
            worker = (worker + 1) % len(per_worker)
        taken[worker] += 1
        worker = (worker + 1) % len(per_worker)
    expected = P.next_worker_after_batches(batches, per_worker)
    active = [k for k in range(len(per_worker)) if taken[k] < per_worker[k]]
    if active:  # the next batch comes from the first active worker from each pointer on
        first_from = lambda start: next(  # noqa: E731
            (start + i) % len(per_worker)
            for i in range(len(per_worker))
            if (start + i) % len(per_worker) in active
        )
        assert first_from(expected) == first_from(worker)


def test_pieces_dealing_and_distribute():
    assert P.pieces_for_worker(1, 2, 5) == [1, 3]
    assert P.pieces_for_worker(0, 0, 3) == [0, 1, 2]
    assert P.pieces_of_workers(2, 4, rotation=1) == [[1, 3], [0, 2]]
    assert P.pieces_of_workers(3, 2) == [[0], [1], []]
    assert P.distribute(7, [3, 0, 5]) == [3, 0, 4]
    with pytest.raises(IntegrityError):
        P.distribute(9, [3, 5])
    with pytest.raises(ConfigError):
        P.pieces_for_worker(2, 2, 4)


def test_fingerprint_extra_salts_only_when_given():
    kw = {"seed": 0, "shuffle": "none", "drop_last": False, "world_size": 2}
    assert P.plan_fingerprint([1, 2], **kw, extra="") == P.plan_fingerprint([1, 2], **kw)
    assert P.plan_fingerprint([1, 2], **kw, extra="a") != P.plan_fingerprint([1, 2], **kw)
    salted = P.plan_fingerprint([1, 2], **kw, extra="a")
    assert salted != P.plan_fingerprint([1, 2], **kw, extra="b")


@FAST
@given(piece_case(), st.integers(1, 4), st.data())
def test_resume_with_bundles_continues_the_exact_order(case, bundle, data):
    sizes, workers, batch, _ = case
    ids = iter(range(10_000))
    pieces = [[next(ids) for _ in range(n)] for n in sizes]
    consumed = [0] * len(sizes)
    rotation = 0
    delivered_all: list[int] = []
    remaining_pieces = pieces
    for _ in range(3):  # chained resumes with the same worker count
        shares = P.pieces_of_workers(workers, len(sizes), rotation)
        firsts = [bundle - (sum(consumed[k] for k in share) // batch) % bundle
                  for share in shares]
        streams = _streams(remaining_pieces, workers, rotation)
        whole, _ = simulate_loader(streams, batch, bundle=bundle, firsts=firsts)
        taken = data.draw(st.integers(0, len(whole)))
        remaining = [len(p) for p in remaining_pieces]
        delivered, rotation = P.resume_after_batches(taken, remaining, workers, batch,
                                                     rotation=rotation, bundle=bundle,
                                                     piece_consumed=consumed)
        got = [s for b in whole[:taken] for s in b]
        assert sorted(got) == sorted(s for p, d in zip(remaining_pieces, delivered, strict=True)
                                     for s in p[:d])
        delivered_all += got
        consumed = [c + d for c, d in zip(consumed, delivered, strict=True)]
        remaining_pieces = [p[d:] for p, d in zip(remaining_pieces, delivered, strict=True)]
        # what an uninterrupted run would deliver next is what the resumed run delivers
        shares = P.pieces_of_workers(workers, len(sizes), rotation)
        firsts = [bundle - (sum(consumed[k] for k in share) // batch) % bundle
                  for share in shares]
        rest, _ = simulate_loader(_streams(remaining_pieces, workers, rotation), batch,
                                  bundle=bundle, firsts=firsts)
        assert rest == whole[taken:]
    flat = sorted(s for p in pieces for s in p)
    assert sorted(delivered_all + [s for p in remaining_pieces for s in p]) == flat


# --------------------------------------------------------------------------------------------
# Mixing


weights_st = st.lists(st.integers(1, 9), min_size=1, max_size=5)


@FAST
@given(weights_st, st.integers(0, 3000))
def test_mix_counts_add_up_grow_and_stay_close_to_the_shares(weights, t):
    counts = P.mix_counts(weights, t)
    assert sum(counts) == t
    nxt = P.mix_counts(weights, t + 1)
    assert sorted(b - a for a, b in zip(counts, nxt, strict=True)) == [0] * (len(weights) - 1) + [1]
    depth = max(1, (len(weights) - 1).bit_length())
    total = sum(weights)
    assert all(abs(c - t * w / total) <= depth / 2 + 1e-9 for c, w in
               zip(counts, weights, strict=True)), "every prefix within a sample or two"
    assert P.mix_counts(weights, total * 7) == [w * 7 for w in weights], "exact at whole rounds"


@FAST
@given(weights_st, st.integers(0, 500), st.integers(0, 500))
def test_mix_sources_agree_with_the_counts(weights, a, length):
    sources = P.mix_sources(weights, a, a + length)
    before, after = P.mix_counts(weights, a), P.mix_counts(weights, a + length)
    assert np.bincount(sources, minlength=len(weights)).tolist() == \
        [y - x for x, y in zip(before, after, strict=True)]


def test_mix_weights_are_exact_integers():
    assert P.mix_weights([0.7, 0.2, 0.1]) == (7, 2, 1)
    assert P.mix_weights([2, 6]) == (1, 3)
    assert P.mix_weights([0.5]) == (1,)
    for bad in ([0.5, 0], [-1], [float("nan")], ["1"], [True]):
        with pytest.raises(ConfigError, match="positive"):
            P.mix_weights(bad)


@FAST
@given(st.lists(st.integers(0, 60), min_size=1, max_size=4), weights_st, world_st,
       st.booleans())
def test_mix_per_rank_stopping_rules(rows, weights, world, drop):
    weights = weights[: len(rows)] + [1] * (len(rows) - len(weights[: len(rows)]))
    kw = {"samples_per_epoch": None, "drop_last": drop}
    first = P.mix_per_rank(rows, weights, world, stopping="first_exhausted", **kw)

    def used(n: int) -> list[int]:
        return [world * c for c in P.mix_counts(weights, n)]

    assert all(u <= r for u, r in zip(used(first), rows, strict=True))
    assert any(u > r for u, r in zip(used(first + 1), rows, strict=True))
    every = P.mix_per_rank(rows, weights, world, stopping="all_exhausted", **kw)
    assert all(u >= r for u, r in zip(used(every), rows, strict=True))
    assert every == 0 or any(u < r for u, r in zip(used(every - 1), rows, strict=True))
    if len(rows) == 1:  # one source: the plain drop/pad rule
        assert first == rows[0] // world and every == -(-rows[0] // world)
    assert P.mix_per_rank(rows, weights, world, stopping="repeat", samples_per_epoch=101,
                          drop_last=drop) == (101 // world if drop else -(-101 // world))
    with pytest.raises(ConfigError, match="samples_per_epoch"):
        P.mix_per_rank(rows, weights, world, stopping="repeat", **kw)


@FAST
@given(st.lists(st.lists(st.integers(0, 6), min_size=1, max_size=4), min_size=1, max_size=3),
       weights_st, st.integers(1, 4), workers_st, st.integers(1, 40), st.data())
def test_a_mixed_epoch_reads_every_source_evenly_over_ranks_and_workers(
        sizes, weights, world, workers, samples, data):
    """Every rank's share of every source is exact; over all ranks a source's rows are read
    as evenly as its demand allows (each row k or k+1 times, the first rows of its order the
    extra ones), whatever the worker count; and a resumed piece gives exactly the rest."""
    sizes = [s for s in sizes if sum(s)] or [[1]]
    weights = (weights * len(sizes))[: len(sizes)]
    n = P.mix_per_rank([sum(s) for s in sizes], weights, world, samples_per_epoch=samples,
                       stopping="repeat")
    per_rank = P.mix_counts(weights, n)
    layouts = [P.epoch_layout(s, seed=2, epoch=1, shuffle="rowgroup") for s in sizes]
    cuts = P.worker_pieces(n, workers, 1)
    got: list[Counter] = [Counter() for _ in sizes]
    for rank in range(world):
        for k, (a, b) in enumerate(cuts):
            for s, layout in enumerate(layouts):
                lo, hi = P.mix_counts(weights, a)[s], P.mix_counts(weights, b)[s]
                plan = P.plan_range(layout, rank=rank, per_rank=per_rank[s], start=lo, stop=hi,
                                    piece=k, source=s)
                rows = expand(plan.rest())
                got[s].update(rows)
                skip = data.draw(st.integers(0, len(rows)))
                again = P.plan_range(layout, rank=rank, per_rank=per_rank[s], start=lo,
                                     stop=hi, skip=skip, piece=k, source=s)
                assert expand(again.rest()) == rows[skip:]
    for s, layout in enumerate(layouts):
        demand, total = world * per_rank[s], layout.total
        assert sum(got[s].values()) == demand
        order = reference_sequence(sizes[s], 2, 1, "rowgroup")
        expected = Counter({row: demand // total + (i < demand % total)
                            for i, row in enumerate(order)})
        assert got[s] == +expected
