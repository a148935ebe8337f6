"""The MoE FFN and the ViT: dispatch correctness, gates, router gradients, L_BC, counts, shapes."""
from __future__ import annotations

import pytest
import torch

from crossearth_sar.core.models.moe import BALANCE_WEIGHT, MoEFFN
from crossearth_sar.core.models.vit import VARIANTS, build_backbone, build_backbone_from_config

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: one intra-op thread




def distinct_experts(dim=16, hidden=32, experts=4, top_k=2, seed=0, **kw) -> MoEFFN:
    torch.manual_seed(seed)
    moe = MoEFFN(dim, hidden, experts=experts, top_k=top_k, **kw)
    with torch.no_grad():
        moe.router.weight.normal_(0, 1.0)
        for e in moe.experts:  # every expert different
            for p in e.parameters():
                p.normal_(0, 0.3)
    return moe


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_dispatch_equals_per_token_mixture_and_runs_each_expert_once(top_k):
    moe = distinct_experts(top_k=top_k)
    x, s = torch.randn(3, 10, 16), torch.randn(3, 3)
    calls: list[int] = []
    hooks = [e.register_forward_hook(lambda m, inp, out: calls.append(inp[0].shape[0]))
             for e in moe.experts]
    y, _ = moe(x, s)
    for h in hooks:
        h.remove()
    # each expert ran at most once, on exactly the tokens routed to it
    assert len(calls) <= 4 and sum(calls) == 30 * top_k
    # reference: the explicit per-token sum of Eq. 9/10 over the selected experts
    z = torch.cat([x, s[:, None, :].expand(3, 10, 3)], dim=-1).reshape(30, 19)
    probs = (z @ moe.router.weight.T + moe.router.bias).softmax(-1)
    tokens = x.reshape(30, 16)
    expected = torch.zeros(30, 16)
    for t in range(30):
        top_p, top_i = probs[t].topk(top_k)
        gates = top_p / top_p.sum()
        for g, i in zip(gates, top_i):
            expected[t] += g * moe.experts[int(i)](tokens[t:t + 1])[0]
    assert torch.allclose(y.reshape(30, 16), expected, atol=1e-5)
    assert moe.expert_counts.sum() == 30 * top_k


def test_router_gradient_straight_through_vs_paper_literal():
    x, s = torch.randn(2, 12, 16), torch.randn(2, 3)
    st = distinct_experts(top_k=1, straight_through=True)
    y, _ = st(x, s)
    y.pow(2).mean().backward()
    assert st.router.weight.grad is not None and st.router.weight.grad.abs().sum() > 0
    # the descriptor columns of the router are trained too
    assert st.router.weight.grad[:, 16:].abs().sum() > 0

    literal = distinct_experts(top_k=1, straight_through=False)
    y2, _ = literal(x, s)
    assert torch.allclose(y, y2)  # same value: the straight-through gate is exactly 1
    y2.pow(2).mean().backward()
    # Eq. 9 at k=1: the gate is the constant 1, the task loss never reaches the router
    grad = literal.router.weight.grad
    assert grad is None or grad.abs().sum() == 0
    assert literal.experts[0].fc1.weight.grad is not None


def test_backbone_router_gets_gradient_from_a_loss_on_its_output():
    torch.manual_seed(0)
    backbone = build_backbone("ti", experts=3)
    out = backbone.forward_features(torch.randn(1, 3, 56, 56), torch.randn(1, 3))
    out["x_norm_patchtokens"].pow(2).mean().backward()
    for blk in backbone.blocks:
        assert blk.mlp.router.weight.grad.abs().sum() > 0
    literal = build_backbone("ti", experts=3, straight_through=False)
    out = literal.forward_features(torch.randn(1, 3, 56, 56), torch.randn(1, 3))
    out["x_norm_patchtokens"].pow(2).mean().backward()
    for blk in literal.blocks:
        g = blk.mlp.router.weight.grad
        assert g is None or g.abs().sum() == 0


def test_balance_loss_uniform_is_lambda_and_grows_with_imbalance():
    """Eq. 11 with fractions: lambda under perfectly uniform routing, up to lambda*n collapsed."""
    torch.manual_seed(0)
    moe = MoEFFN(8, 16, experts=2, top_k=1)
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[0, 0], moe.router.weight[1, 0] = 2.0, -2.0
    half = torch.randn(1, 50, 8)
    half[..., 0] = half[..., 0].abs() + 0.1
    x = torch.cat([half, -half], dim=1)  # symmetric tokens: f = p = (1/2, 1/2)
    s = torch.zeros(1, 3)
    _, loss = moe(x, s)
    assert torch.isclose(loss, torch.tensor(BALANCE_WEIGHT), atol=1e-7)
    previous = loss.item()
    for bias in (0.5, 1.5, 3.0, 20.0):  # favour expert 0 more and more
        with torch.no_grad():
            moe.router.bias[0] = bias
        _, loss = moe(x, s)
        assert loss.item() > previous
        previous = loss.item()
    assert abs(previous - BALANCE_WEIGHT * 2) < 1e-4  # collapsed: lambda * n
    # the loss trains the router towards balance
    loss.backward()
    assert moe.router.bias.grad[0] > 0


def test_backbone_balance_loss_and_expert_counts():
    torch.manual_seed(0)
    backbone = build_backbone("ti", experts=4, top_k=2)
    assert backbone.balance_loss().item() == 0.0
    backbone.forward_features(torch.randn(2, 3, 42, 56), torch.randn(2, 3))
    layers = [blk.last_balance_loss for blk in backbone.blocks]
    assert torch.isclose(backbone.balance_loss(), torch.stack(layers).mean())
    assert backbone.balance_loss().item() >= BALANCE_WEIGHT * 0.999  # minimum of Eq. 11
    counts = backbone.expert_counts()
    assert counts.shape == (12, 4)
    assert (counts.sum(1) == 2 * (1 + 3 * 4) * 2).all()  # tokens x top_k
    backbone.reset_expert_counts()
    assert backbone.expert_counts().sum() == 0


def test_dense_backbone_and_config_roundtrip():
    torch.manual_seed(0)
    dense = build_backbone("ti", experts=0)
    assert not dense.moe_layers() and dense.expert_counts().numel() == 0
    moe = build_backbone_from_config(build_backbone("ti", experts=3, top_k=2,
                                                    num_register_tokens=2).config)
    assert moe.config["experts"] == 3 and moe.num_register_tokens == 2
    moe.upcycle_from_dense(build_backbone("ti", experts=0, num_register_tokens=2))
    assert torch.equal(moe.blocks[5].mlp.experts[2].fc2.weight, moe.blocks[5].mlp.experts[0].fc2.weight)


def test_intermediate_layers_shapes_and_registers_excluded():
    torch.manual_seed(0)
    backbone = build_backbone("ti", experts=2, num_register_tokens=4).eval()
    x, d = torch.randn(2, 3, 70, 98), torch.randn(2, 3)
    with torch.no_grad():
        feats = backbone.get_intermediate_layers(x, d, n=VARIANTS["ti"]["feature_layers"],
                                                 reshape=True, return_class_token=True)
        last = backbone.get_intermediate_layers(x, d, n=1)
        out = backbone.forward_features(x, d)
    assert len(feats) == 4
    for fmap, cls in feats:
        assert fmap.shape == (2, 192, 5, 7) and cls.shape == (2, 192)
    assert torch.allclose(last[0], out["x_norm_patchtokens"], atol=1e-5)
    assert out["x_norm_regtokens"].shape == (2, 4, 192)
    assert torch.allclose(feats[-1][1], out["x_norm_clstoken"], atol=1e-5)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        backbone.forward_features(torch.randn(1, 3, 50, 56))
    with pytest.raises(ValueError, match="out of range"):
        backbone.get_intermediate_layers(x, d, n=[12])


def test_idle_experts_get_a_zero_gradient_in_training():
    """An expert that received no token still gets a (zero) gradient: DDP needs no
    find_unused_parameters."""
    moe = distinct_experts(top_k=1, experts=3)
    with torch.no_grad():
        moe.router.bias.copy_(torch.tensor([50.0, 0.0, 0.0]))  # everything to expert 0
    y, loss = moe(torch.randn(2, 5, 16), torch.randn(2, 3))
    (y.sum() + loss).backward()
    assert moe.expert_counts.tolist() == [10, 0, 0]
    for e in (1, 2):
        for p in moe.experts[e].parameters():
            assert p.grad is not None and p.grad.abs().sum() == 0
    assert moe.experts[0].fc1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("top_k", [1, 2])
def test_bf16_autocast_forward_and_backward(top_k):
    torch.manual_seed(0)
    backbone = build_backbone("ti", experts=3, top_k=top_k)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = backbone.forward_features(torch.randn(1, 3, 42, 42), torch.randn(1, 3))
        loss = out["x_norm_patchtokens"].float().pow(2).mean() + backbone.balance_loss()
    loss.backward()
    assert torch.isfinite(loss)
    assert backbone.blocks[0].mlp.router.weight.grad.abs().sum() > 0
