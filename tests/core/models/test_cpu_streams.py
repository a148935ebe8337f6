"""Batched CPU inference as parallel streams (core.models.cpu_streams): the same probabilities as one
stream, thread counts kept where they belong, the caller's modes, errors, and the MoE expert
counts that several streams add to at once."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from crossearth_sar.core.models import cpu_streams
from crossearth_sar.core.models.mask2former.head import set_fast_inference


@pytest.mark.parametrize("batch, threads, plan", [
    (4, 2, (2, 1)), (1, 2, (1, 2)), (3, 2, (2, 1)), (4, 16, (4, 4)), (8, 2, (2, 1)),
    (4, 1, (1, 1)), (5, 6, (5, 1)),
])
def test_stream_plan(batch, threads, plan):
    assert cpu_streams.stream_plan(batch, threads) == plan


def _micro_eval(seed: int = 0):
    from _helpers_micro import micro_model

    return micro_model(seed=seed).eval()


def test_streams_give_the_single_stream_probabilities_and_expert_counts():
    """A batch of 3 split 2 + 1 over two streams: the probabilities of one call on the whole
    batch (to float rounding), and the expert counts of one call (none lost to a race)."""
    net = _micro_eval()
    g = torch.Generator().manual_seed(0)
    x, desc = torch.rand(3, 3, 84, 70, generator=g), torch.rand(3, 3, generator=g)
    with torch.inference_mode():
        net.backbone.reset_expert_counts()
        single = net._probabilities(x, desc)
        counts_single = net.backbone.expert_counts().clone()
        net.backbone.reset_expert_counts()
        split = cpu_streams.split_call(net._probabilities, [x, desc], threads=2)
        counts_split = net.backbone.expert_counts().clone()
    assert split.shape == single.shape == (3, 2, 84, 70)
    assert (split - single).abs().max().item() < 1e-5
    assert torch.equal(counts_split, counts_single) and counts_single.sum() > 0
    assert split.is_inference()  # the caller's inference mode reached the streams


def test_predict_proba_takes_the_streams_on_the_inference_path_only(monkeypatch):
    """Eval mode on the CPU splits the batch; the plain path (switch off) makes one call."""
    net = _micro_eval()
    calls = []
    real = cpu_streams.split_call
    monkeypatch.setattr(cpu_streams, "split_call",
                        lambda fn, tensors, threads=None: calls.append(len(tensors)) or real(fn, tensors, 2))
    x = torch.rand(2, 3, 56, 56)
    with torch.inference_mode():
        fast = net.predict_proba(x, torch.zeros(2, 3))
        none_desc = net.predict_proba(x, None)
        set_fast_inference(net, False)
        plain = net.predict_proba(x, torch.zeros(2, 3))
    assert calls == [2, 1]
    assert (fast - plain).abs().max().item() < 1e-5
    assert (none_desc - plain).abs().max().item() < 1e-5


@pytest.mark.parametrize("streams, each", [(3, 1), (2, 3)])
def test_workers_have_their_share_of_threads_and_the_caller_keeps_its_own(streams, each):
    caller = torch.get_num_threads()
    pool = cpu_streams._pool(streams, each)

    def count_after_work():
        torch.ones(64, 64).sum()  # a first ATen op in the thread must not reset the count
        return torch.get_num_threads()

    seen = {f.result() for f in [pool.submit(count_after_work) for _ in range(2 * streams)]}
    assert seen == {each}
    assert torch.get_num_threads() == caller
    later = []
    t = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert later == [caller]  # threads started after the pool get the caller's default
    assert cpu_streams._pool(streams, each) is pool  # started once


def test_a_split_inside_a_stream_is_a_plain_call():
    """Nested: a stream's own split_call runs in place (no wait on its own busy pool)."""
    inner_threads = []

    def inner(x):
        inner_threads.append(threading.current_thread().name)
        return x * 2

    def outer(x):
        return cpu_streams.split_call(inner, [x], threads=2)

    out = cpu_streams.split_call(outer, [torch.arange(4.0)[:, None]], threads=2)
    assert out.flatten().tolist() == [0.0, 2.0, 4.0, 6.0]
    assert len(inner_threads) == 2 and all(n.startswith("ces-stream") for n in inner_threads)


def test_an_error_in_a_stream_reaches_the_caller():
    def fn(x):
        if x.shape[0] != 2:
            raise ValueError(f"stream got {x.shape[0]} rows")
        return x

    with pytest.raises(ValueError, match="stream got 1 rows"):
        cpu_streams.split_call(fn, [torch.zeros(3, 1)], threads=2)


def test_a_stream_of_one_small_window_works():
    """A 32-px window has a 1 x 1 stride-32 map; with one channel per group its GroupNorm
    group holds one value, which torch.nn.functional.group_norm refuses. A stream of one
    such window (batch 3 split 2 + 1) still gives the single call's probabilities."""
    net = _micro_eval()
    x, desc = torch.rand(3, 3, 32, 32), torch.rand(3, 3)
    with torch.inference_mode():
        split = cpu_streams.split_call(net._probabilities, [x, desc], threads=2)
        one = net._probabilities(x[2:], desc[2:])
    assert split.shape == (3, 2, 32, 32)
    assert (split[2:] - one).abs().max().item() < 1e-4  # a one-value group amplifies rounding


def test_the_tilers_predict_computes_descriptors_in_the_streams():
    """pipeline.make_predict on the CPU: descriptors and model per stream; the probabilities of
    one call, and every window's descriptors collected (for the domain-shift check)."""
    from crossearth_sar.core.inference import pipeline

    net = _micro_eval()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 3, 56, 56, generator=g)
    phys, valid = torch.rand(3, 56, 56, generator=g), torch.ones(3, 56, 56, dtype=torch.bool)
    collected = []
    with torch.inference_mode():
        probs = pipeline.make_predict(net, collected)(x, phys, valid)
        desc = net.compute_descriptors(phys, valid)
        single = net._probabilities(x, desc)
    assert (probs - single).abs().max().item() < 1e-5
    got = torch.from_numpy(np.concatenate(collected))
    assert got.shape == (3, 3)
    # in no fixed order: each window's descriptors appear once
    order = torch.cdist(desc, got).argmin(dim=1)
    assert sorted(order.tolist()) == [0, 1, 2]
    assert (got[order] - desc).abs().max().item() < 1e-6
