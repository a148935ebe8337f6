"""Physics-guided sparse mixture-of-experts FFN (paper §3.3, docs/contracts.md §2).

Router: pi = softmax(W_r [Z || S] + b_r) over ``n`` experts, S = the tile's 3 scaled descriptors
repeated over its tokens. Each token goes to its top-k experts; gates are renormalized over
the selected experts (Eq. 9). At k=1 Eq. 9 is always exactly 1, so the task loss never reaches
the router: with ``straight_through=True`` (default) the gate is pi_k / stopgrad(pi_k) (value 1,
gradient d pi_k). ``straight_through=False`` is the paper-literal constant gate.

Dispatch: the (token, expert) pairs are sorted by expert and gathered once (index_select);
each expert runs once on its own contiguous slice; the results are scattered back once
(index_copy for top-1, index_add for top-k). No expert ever sees tokens
that were not routed to it, so top-1 costs about one dense FFN.

Balancing loss (Eq. 11): L_BC = lambda * n * sum_k f_k p_k, f_k the fraction of routed
(token, expert) pairs that went to expert k, p_k the mean router probability of expert k.
Its value is lambda under perfectly uniform routing and lambda * n when every token goes to
one expert with probability 1.
"""
from __future__ import annotations

import threading
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

BALANCE_WEIGHT = 0.005  # lambda_BC of Eq. 11
DESCRIPTOR_DIM = 3
_COUNTS_LOCK = threading.Lock()  # expert_counts from parallel inference streams (core.models.cpu_streams)


class Mlp(nn.Module):
    """The DINOv2 FFN: fc1 -> GELU -> fc2, hidden = 4 * dim. Parameter names as DINOv2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """fc2(gelu(fc1(x))): [.., C] -> [.., C]."""
        return self.fc2(F.gelu(self.fc1(x)))


class SwiGLU(nn.Module):
    """The DINOv2 ViT-g FFN (SwiGLUFFNFused): w12 -> silu(x1) * x2 -> w3."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """w3(silu(x1) * x2) with (x1, x2) = w12(x): [.., C] -> [.., C]."""
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


FFN_TYPES = {"mlp": Mlp, "swiglu": SwiGLU}


def ffn_hidden(dim: int, ffn: str, mlp_ratio: float = 4.0) -> int:
    """Hidden width of the DINOv2 FFN: 4*dim for mlp; SwiGLUFFNFused's rounding for swiglu."""
    hidden = int(dim * mlp_ratio)
    if ffn == "swiglu":
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
    return hidden


class MoEFFN(nn.Module):
    """Sparse MoE FFN: ``forward(x [B, N, C], descriptors [B, 3]) -> (y [B, N, C], L_BC scalar)``.

    Parameters: ``router`` (Linear C+3 -> n, with bias) and ``experts`` (ModuleList of FFNs).
    ``expert_counts`` (buffer [n], not saved) accumulates how many tokens each expert took.
    """

    def __init__(self, dim: int, hidden: int, experts: int = 6, top_k: int = 1,
                 straight_through: bool = True, ffn: str = "mlp",
                 balance_weight: float = BALANCE_WEIGHT, descriptor_dim: int = DESCRIPTOR_DIM):
        super().__init__()
        if experts < 1 or not 1 <= top_k <= experts:
            raise ValueError(f"need experts >= 1 and 1 <= top_k <= experts, got {experts}, {top_k}")
        self.num_experts = experts
        self.top_k = top_k
        self.straight_through = straight_through
        self.balance_weight = balance_weight
        self.descriptor_dim = descriptor_dim
        self.router = nn.Linear(dim + descriptor_dim, experts)
        self.experts = nn.ModuleList(FFN_TYPES[ffn](dim, hidden) for _ in range(experts))
        self.register_buffer("expert_counts", torch.zeros(experts, dtype=torch.long), persistent=False)
        nn.init.trunc_normal_(self.router.weight, std=0.02)
        nn.init.zeros_(self.router.bias)

    @torch.no_grad()
    def upcycle_from(self, dense: nn.Module) -> None:
        """Copy one dense FFN's weights into every expert (the paper's initialization)."""
        state = dense.state_dict()
        for expert in self.experts:
            expert.load_state_dict(state)

    def route(self, x: torch.Tensor, descriptors: torch.Tensor):
        """Router probabilities [T, n] (float32), selected experts [T, k] and gates [T, k]."""
        b, n, c = x.shape
        # W_r [Z || S] + b_r without materializing the concatenation: the descriptor part
        # is the same for all tokens of a tile, computed once per tile.
        w = self.router.weight
        per_tile = F.linear(descriptors.to(x.dtype), w[:, c:], self.router.bias)  # [B, n]
        logits = (F.linear(x, w[:, :c]) + per_tile[:, None, :]).reshape(b * n, -1)
        probs = logits.float().softmax(dim=-1)
        top_p, top_i = probs.topk(self.top_k, dim=-1)
        if self.top_k == 1:
            if self.straight_through:
                gates = top_p / top_p.detach()  # value 1, gradient reaches the router
            else:
                gates = torch.ones_like(top_p).detach()  # Eq. 9 literally: constant 1
        else:
            gates = top_p / top_p.sum(dim=-1, keepdim=True)
        return probs, top_i, gates

    def balance_loss(self, probs: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Eq. 11 from router probabilities [T, n] and per-expert assignment counts [n]."""
        f = counts.to(probs.dtype) / counts.sum().clamp_min(1)
        p = probs.mean(dim=0)
        return self.balance_weight * self.num_experts * (f * p).sum()

    def forward(self, x: torch.Tensor, descriptors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, N, C] through each token's top-k experts (router sees the tokens and the SAR
        descriptors [B, 3]) -> (y [B, N, C], balance loss, a scalar)."""
        b, n, c = x.shape
        tokens = x.reshape(b * n, c)
        probs, top_i, gates = self.route(x, descriptors)
        flat_expert = top_i.reshape(-1)  # [T*k]: (token, slot) pairs, token-major
        order = torch.argsort(flat_expert, stable=True)
        counts = torch.bincount(flat_expert, minlength=self.num_experts)
        token_of_pair = order // self.top_k if self.top_k > 1 else order
        # one gather puts the tokens in expert order; each expert then runs once on its own
        # contiguous slice (a view) and one scatter puts the results back: few, large ops
        grouped = tokens.index_select(0, token_of_pair)
        per_expert = counts.tolist()
        outputs, start = [], 0
        for e, count in enumerate(per_expert):
            if count:
                outputs.append(self.experts[e](grouped[start:start + count]))
            start += count
        if not outputs:  # no token at all
            return torch.zeros_like(x), probs.sum() * 0.0
        y = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        if self.top_k > 1 or gates.requires_grad:  # a top-1 gate is exactly 1 in value
            y = y * gates.reshape(-1)[order].to(y.dtype)[:, None]
        if self.top_k == 1:
            out = y.new_empty(tokens.shape).index_copy_(0, token_of_pair, y)
        else:
            out = y.new_zeros(tokens.shape).index_add_(0, token_of_pair, y)
        idle = [e for e, count in enumerate(per_expert) if count == 0]
        if idle and self.training and torch.is_grad_enabled():
            # idle experts stay in the autograd graph with a zero gradient, so that DDP works
            # without find_unused_parameters
            out = out + 0.0 * sum(p.reshape(-1)[0] for e in idle for p in self.experts[e].parameters())
        with torch.no_grad(), _COUNTS_LOCK:
            self.expert_counts += counts.to(self.expert_counts.device)
        return out.reshape(b, n, c), self.balance_loss(probs, counts)

    def reset_expert_counts(self) -> None:
        """Zero the per-expert token counts."""
        self.expert_counts.zero_()

    def expert_parameters(self) -> int:
        """Parameters of one expert (all experts have the same size)."""
        return sum(p.numel() for p in self.experts[0].parameters())


def dense_ffn(dim: int, hidden: int, ffn: str = "mlp") -> nn.Module:
    """A plain DINOv2 FFN (the ``experts=0`` backbone and the upcycling source)."""
    return FFN_TYPES[ffn](dim, hidden)


def descriptor_tensor(descriptors: Optional[torch.Tensor], batch: int,
                      like: torch.Tensor) -> torch.Tensor:
    """``descriptors`` [B, 3] on ``like``'s device, or zeros (the neutral value) when None."""
    if descriptors is None:
        return torch.zeros(batch, DESCRIPTOR_DIM, device=like.device, dtype=like.dtype)
    descriptors = torch.as_tensor(descriptors, device=like.device).to(like.dtype)
    if descriptors.shape != (batch, DESCRIPTOR_DIM):
        raise ValueError(f"descriptors must be [{batch}, {DESCRIPTOR_DIM}], "
                         f"got {tuple(descriptors.shape)}")
    return descriptors
