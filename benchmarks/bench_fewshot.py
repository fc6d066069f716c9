"""Few-shot NCM scoring: 10,000 5-way episodes with 15 queries per class, drawing included.

Side by side on the same episodes, over banks of N = 6,000 and N = 12,000 features (20
classes x 300 or 600 images) of D = 64 (the embedded suite's student) and D = 384 (a
MobileViT-XS-sized backbone), one and five shots:

* ``loop``: :func:`kdbench.fewshot.ncm_accuracy_loop`, one episode at a time, on torch's
  default threads and on one thread (where it is fastest on a busy 2-core machine);
* ``float64``: the batched float64 scorer the float32 one replaced
  (``tests/fewshot_reference.py``);
* ``ncm``: :func:`kdbench.fewshot.ncm_accuracy` (float32 along the cost model's path, the
  float64 guard), on torch's default threads and on one thread;
* ``bound``: the float32 gather path's bare gathers and batched matmuls on the same
  episodes, without preparing the features, deciding or rescoring: a lower bound.

``test_path`` times the Gram and gather paths of ``ncm`` on banks where the cost model's
choice is close, and records the choice and its predictions in ``extra_info``.

Every timed call draws its episodes first. The per-episode accuracies of ``loop``,
``float64`` and ``ncm`` are asserted identical. At the end a table gives, per setting,
``ncm``'s time, the loop's and the float64 scorer's times as multiples of it, ``ncm`` as a
multiple of the bound, the path taken and the queries rescored in float64.

    PYTHONPATH=. python -m pytest benchmarks/bench_fewshot.py --benchmark-only -p no:cacheprovider

Timings on a shared machine move with its load: run it more than once.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from kdbench.fewshot import (
    _ncm_correct,
    ncm_accuracy,
    ncm_accuracy_loop,
    plan_scoring,
    prepare_features,
    sample_episodes,
)
from tests.fewshot_reference import batched_float64_ncm_accuracy

EPISODES = 10_000
WAYS, QUERIES = 5, 15
SETTINGS = [(n, d, shots) for n in (6_000, 12_000) for d in (64, 384) for shots in (1, 5)]
SPREAD = {64: 0.5, 384: 0.32}  # class separation giving about 55% one-shot, 83% five-shot
RESULTS: dict[tuple[int, int, int], dict[str, float]] = {}


def make_bank(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative features (as after a ReLU) with a decaying spectrum, 20 classes."""
    g = np.random.default_rng(seed)
    labels = np.repeat(np.arange(20), n // 20)
    scale = 1 / np.sqrt(1 + np.arange(dim) / 8)
    centres = g.standard_normal((20, dim)) * scale * SPREAD.get(dim, 0.3)
    noise = g.standard_normal((n, dim)) * scale
    return np.maximum(centres[labels] + noise + 0.5, 0).astype(np.float32), labels


@pytest.fixture(scope="module")
def banks():
    return {}


def _bank(banks, n, dim):
    if (n, dim) not in banks:
        features, labels = make_bank(n, dim)
        center = features.mean(0)
        f32 = prepare_features(features, center).numpy().astype(np.float32)
        banks[(n, dim)] = features, labels, center, f32
    return banks[(n, dim)]


@contextlib.contextmanager
def torch_threads(threads: int | None):
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _draw(labels, shots):
    return sample_episodes(labels, WAYS, shots, QUERIES, EPISODES, seed=0)


def gather_matmul_bound(f32: np.ndarray, labels: np.ndarray, shots: int, chunk: int = 64) -> None:
    """Draw, then only what no float32 gather-path scorer can skip: copy every episode's
    support and query rows, sum the shots, one batched matmul per chunk."""
    episodes = _draw(labels, shots)
    d = f32.shape[1]
    support = np.empty((chunk * WAYS * shots, d), np.float32)
    query = np.empty((chunk * WAYS * QUERIES, d), np.float32)
    for start in range(0, EPISODES, chunk):
        sup = episodes.support[start : start + chunk].reshape(-1)
        qry = episodes.query[start : start + chunk].reshape(-1)
        b = len(sup) // (WAYS * shots)
        xs = np.take(f32, sup, axis=0, out=support[: len(sup)], mode="clip")
        xq = np.take(f32, qry, axis=0, out=query[: len(qry)], mode="clip")
        sums = xs.reshape(b, WAYS, shots, d).sum(axis=2) if shots > 1 else xs.reshape(b, WAYS, d)
        np.matmul(sums, xq.reshape(b, WAYS * QUERIES, d).transpose(0, 2, 1))


def _record(benchmark, setting, name):
    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # None under --benchmark-disable
        RESULTS.setdefault(setting, {})[name] = stats.stats.min


def _name(setting):
    n, d, shots = setting
    return f"N={n} D={d} {shots}-shot, {EPISODES:,} episodes"


@pytest.mark.parametrize("threads", [None, 1], ids=["default-threads", "1-thread"])
@pytest.mark.parametrize("setting", SETTINGS, ids=_name)
def test_loop(benchmark, banks, setting, threads):
    n, d, shots = setting
    features, labels, center, _ = _bank(banks, n, d)
    benchmark.group = _name(setting)

    def run():
        return ncm_accuracy_loop(features, labels, _draw(labels, shots), center=center)

    with torch_threads(threads):
        acc = benchmark.pedantic(run, rounds=1)
    banks[("loop", setting)] = acc
    _record(benchmark, setting, f"loop-{threads or 'default'}")


@pytest.mark.parametrize("setting", SETTINGS, ids=_name)
def test_float64(benchmark, banks, setting):
    n, d, shots = setting
    features, labels, center, _ = _bank(banks, n, d)
    benchmark.group = _name(setting)

    def run():
        return batched_float64_ncm_accuracy(features, labels, _draw(labels, shots), center=center)

    acc = benchmark.pedantic(run, rounds=2)
    loop = banks.get(("loop", setting))
    assert loop is None or np.array_equal(acc, loop)
    _record(benchmark, setting, "float64")


@pytest.mark.parametrize("threads", [None, 1], ids=["default-threads", "1-thread"])
@pytest.mark.parametrize("setting", SETTINGS, ids=_name)
def test_ncm(benchmark, banks, setting, threads):
    n, d, shots = setting
    features, labels, center, _ = _bank(banks, n, d)
    benchmark.group = _name(setting)

    def run():
        return ncm_accuracy(features, labels, _draw(labels, shots), center=center)

    with torch_threads(threads):
        acc = benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    loop = banks.get(("loop", setting))
    if loop is None:  # run alone: compare with the loop on the first episodes anyway
        first = _draw(labels, shots)[:500]
        assert np.array_equal(acc[:500], ncm_accuracy_loop(features, labels, first, center=center))
    else:
        assert np.array_equal(acc, loop)
    episodes = _draw(labels, shots)
    plan = plan_scoring(n, d, WAYS, shots, QUERIES, EPISODES)
    f64 = prepare_features(features, center)
    _, rescored = _ncm_correct(f64, episodes, plan.path, 4 * 1024**2)
    info = {"path": plan.path, "rescored": rescored, "accuracy": float(acc.mean())}
    benchmark.extra_info.update(info)
    RESULTS.setdefault(setting, {}).update(info)
    _record(benchmark, setting, f"ncm-{threads or 'default'}")


@pytest.mark.parametrize("setting", SETTINGS, ids=_name)
def test_bound(benchmark, banks, setting):
    n, d, shots = setting
    _, labels, _, f32 = _bank(banks, n, d)
    benchmark.group = _name(setting)
    benchmark.pedantic(gather_matmul_bound, (f32, labels, shots), rounds=5, warmup_rounds=1)
    _record(benchmark, setting, "bound")


PATH_SETTINGS = [(1_200, 768, 1), (1_200, 64, 5), (2_400, 384, 1), (6_000, 384, 5)]


@pytest.mark.parametrize("path", ["gram", "gather"])
@pytest.mark.parametrize("setting", PATH_SETTINGS, ids=lambda s: "N={} D={} {}-shot".format(*s))
def test_path(benchmark, setting, path):
    """Both paths on the same episodes, against the cost model's choice (``extra_info``)."""
    n, d, shots = setting
    features, labels = make_bank(n, d)
    center = features.mean(0)
    episodes = _draw(labels, shots)
    plan = plan_scoring(n, d, WAYS, shots, QUERIES, EPISODES)
    benchmark.group = f"paths: N={n} D={d} {shots}-shot, {EPISODES:,} episodes; model: {plan.path}"
    benchmark.extra_info.update(
        chosen=plan.path, predicted_s={k: round(v, 4) for k, v in plan.seconds.items()}
    )
    kwargs = {"center": center, "path": path}
    benchmark.pedantic(ncm_accuracy, (features, labels, episodes), kwargs, rounds=3)


@pytest.fixture(scope="module", autouse=True)
def ratio_table(request):
    yield
    if not RESULTS:
        return
    lines = [
        "",
        "setting                               ncm ms  loop/ncm  loop1/ncm1  float64/ncm  "
        "ncm/bound  path    rescored",
    ]
    for setting in SETTINGS:
        r = RESULTS.get(setting, {})
        ncm, ncm1 = r.get("ncm-default", np.nan), r.get("ncm-1", np.nan)
        lines.append(
            f"{_name(setting):36}  {1e3 * ncm:6.0f}  {r.get('loop-default', np.nan) / ncm:8.1f}"
            f"  {r.get('loop-1', np.nan) / ncm1:10.1f}  {r.get('float64', np.nan) / ncm:11.1f}"
            f"  {ncm / r.get('bound', np.nan):9.2f}  {r.get('path', '?'):6}  "
            f"{r.get('rescored', '?')}"
        )
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n".join(lines))
