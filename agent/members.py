"""Several seeds of one configuration as one model: the member dimension.

A *member* is one seed's copy of a network. ``K`` members of the same architecture are
stacked into one module whose parameters carry a leading ``(K, ...)`` dimension. Tensors
keep the shapes the single-seed code uses, with the members folded into the first axis:
a batch ``(K * B, T, ...)`` holds member ``k``'s rows at ``[k * B, (k + 1) * B)``. Everything
that works row by row (activations, the RSSM's recurrence, imagination, lambda-returns) is
then unchanged; only the layers with weights, the random draws and the reductions over a
batch know about members, and they live here.

Why folding rather than ``torch.func.vmap``: the random draws. Each member draws from its
own generator, exactly the numbers its single-seed run would draw (the same calls, shapes and
order), so a member of a seed batch *is* its single-seed run up to float rounding; ``vmap``
has no per-member generators. Layers with weights run as one batched matmul per layer
(``baddbmm`` over the member axis), which is where the saving is: one kernel launch and one
autograd node for ``K`` small matmuls.

``K = 1`` never comes here: a single run uses the plain ``torch.nn`` layers, unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _member_rows(x: torch.Tensor, members: int) -> torch.Tensor:
    """``(K * M, ..., F) -> (K, M * ..., F)``: each member's rows as one block."""
    assert x.shape[0] % members == 0, (x.shape, members)
    return x.reshape(members, -1, x.shape[-1])


def _stacked(layers: Sequence[nn.Module], name: str) -> nn.Parameter | None:
    """The layers' parameter ``name`` stacked ``(K, ...)``, or ``None`` where they have none."""
    if getattr(layers[0], name) is None:
        return None
    return nn.Parameter(torch.stack([getattr(layer, name).detach() for layer in layers]))


class MemberLinear(nn.Module):
    """``K`` linear layers: ``(K * M, ..., in) -> (K * M, ..., out)``, member ``k``'s rows
    through its own ``weight (K, out, in)`` and ``bias (K, out)``."""

    def __init__(self, layers: Sequence[nn.Linear]):
        super().__init__()
        self.members = len(layers)
        self.weight = _stacked(layers, "weight")
        self.bias = _stacked(layers, "bias")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = _member_rows(x, self.members)  # (K, R, in)
        weight = self.weight.transpose(1, 2)  # (K, in, out)
        if self.bias is None:
            out = torch.bmm(rows, weight)
        else:
            out = torch.baddbmm(self.bias[:, None, :], rows, weight)
        return out.reshape(*x.shape[:-1], out.shape[-1])


class MemberLayerNorm(nn.Module):
    """``K`` LayerNorms over the last axis, each with its own affine ``(K, F)``."""

    def __init__(self, layers: Sequence[nn.LayerNorm]):
        super().__init__()
        self.members = len(layers)
        self.normalized_shape = layers[0].normalized_shape
        self.eps = layers[0].eps
        self.weight = _stacked(layers, "weight")
        self.bias = _stacked(layers, "bias")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = _member_rows(F.layer_norm(x, self.normalized_shape, eps=self.eps), self.members)
        out = torch.addcmul(self.bias[:, None, :], normed, self.weight[:, None, :])
        return out.reshape(x.shape)


class MemberChannelNorm(MemberLayerNorm):
    """:class:`agent.nets.ChannelNorm` for ``K`` members: ``(K * B, C, H, W)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class MemberConv(nn.Module):
    """``K`` convolutions (or transposed convolutions) over ``(K * B, C, H, W)``, member by
    member: a loop of ``K`` calls, since a grouped convolution would need the members moved
    into the channel axis and back, two copies of every feature map."""

    def __init__(self, layers: Sequence[nn.Conv2d | nn.ConvTranspose2d]):
        super().__init__()
        self.members = len(layers)
        self.template = copy.deepcopy(layers[0]).requires_grad_(False)
        self.transposed = isinstance(layers[0], nn.ConvTranspose2d)
        self.weight = _stacked(layers, "weight")
        self.bias = _stacked(layers, "bias")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.template
        conv = F.conv_transpose2d if self.transposed else F.conv2d
        outs = []
        for k, block in enumerate(x.chunk(self.members)):
            bias = None if self.bias is None else self.bias[k]
            outs.append(conv(block, self.weight[k], bias, t.stride, t.padding))
        return torch.cat(outs)


def _member_layer(layers: list[nn.Module]) -> nn.Module | None:
    """The member version of ``K`` leaf layers of one type, or ``None`` for a layer without
    parameters (activations), which the members share as it is."""
    from agent.nets import ChannelNorm

    first = layers[0]
    if isinstance(first, nn.Linear):
        return MemberLinear(layers)
    if isinstance(first, ChannelNorm):
        return MemberChannelNorm(layers)
    if isinstance(first, nn.LayerNorm):
        return MemberLayerNorm(layers)
    if isinstance(first, nn.Conv2d | nn.ConvTranspose2d):
        return MemberConv(layers)
    if any(True for _ in first.parameters(recurse=False)):
        raise TypeError(f"no member version of {type(first).__name__}")
    return None


def stack_members(modules: Sequence[nn.Module]) -> nn.Module:
    """One module that runs ``K`` copies of one architecture, each with its own parameters.

    ``modules`` are ``K`` modules built alike (each from its own seed). The result is a deep
    copy of the first with every layer that holds weights replaced by its member version
    (parameters stacked ``(K, ...)`` in the order given), every persistent buffer (state,
    such as the return normaliser's) stacked the same way while non-persistent ones
    (constants) are shared, and ``members = K`` set on each submodule that defines a
    ``members`` attribute. Tensors through it fold the members into their
    first axis (see the module docstring).
    """
    members = len(modules)
    if members < 2:
        raise ValueError(f"stack_members needs at least 2 modules, got {members}")
    stacked = copy.deepcopy(modules[0])
    names = [name for name, _ in stacked.named_modules()]
    for name in names:
        parts = [m.get_submodule(name) for m in modules]
        if name and list(parts[0].children()):
            pass  # a container: its leaves are replaced one by one
        elif name:
            replacement = _member_layer(parts)
            if replacement is not None:
                parent_name, _, leaf = name.rpartition(".")
                setattr(stacked.get_submodule(parent_name), leaf, replacement)
        target = stacked.get_submodule(name)
        for buffer_name, _ in list(parts[0].named_buffers(recurse=False)):
            if buffer_name in target._non_persistent_buffers_set:
                continue  # constants (the two-hot bins), shared as they are
            values = [p.get_buffer(buffer_name) for p in parts]
            target.register_buffer(buffer_name, torch.stack(values))
        if hasattr(target, "members"):
            target.members = members
    return stacked


def alias_members(stacked: nn.Module, modules: Sequence[nn.Module]) -> None:
    """Make every parameter and stacked buffer of ``modules[k]`` a view of member ``k``'s
    slice of ``stacked`` (see :func:`stack_members`), so that each member module, used by
    its run for acting, evaluation and checkpoints, always holds the weights the batched
    updates wrote, without a copy."""
    for k, module in enumerate(modules):
        for name, part in module.named_modules():
            target = stacked.get_submodule(name)
            for param_name, _ in list(part.named_parameters(recurse=False)):
                whole = target.get_parameter(param_name)
                view = nn.Parameter(whole.detach()[k], requires_grad=False)
                setattr(part, param_name, view)
            for buffer_name, buffer in list(part.named_buffers(recurse=False)):
                whole = target.get_buffer(buffer_name)
                if whole.shape != buffer.shape:  # stacked: (K, ...) against (...)
                    part._buffers[buffer_name] = whole[k]


def member_means(x: torch.Tensor, members: int) -> torch.Tensor:
    """Each member's mean of ``x (K * M, ...)``: ``(K,)``; for ``members == 1`` the plain
    ``x.mean()``, a scalar, so that a single run computes exactly what it always did.

    A loss over a seed batch is the *sum* of its members' means: the gradient each member's
    parameters get is then its own loss's gradient, as in its single-seed run."""
    if members == 1:
        return x.mean()
    return x.reshape(members, -1).mean(1)


def member_sums(x: torch.Tensor, members: int) -> torch.Tensor:
    """Each member's sum of ``x (K * M, ...)``: ``(K,)``, or ``x.sum()`` for one member."""
    if members == 1:
        return x.sum()
    return x.reshape(members, -1).sum(1)


def member_stds(x: torch.Tensor, members: int) -> torch.Tensor:
    """Each member's std of ``x (K * M, ...)``: ``(K,)``, or ``x.std()`` for one member."""
    if members == 1:
        return x.std()
    return x.reshape(members, -1).std(1)


def expand_to_rows(values: torch.Tensor, rows: int, members: int) -> torch.Tensor:
    """Per-member ``values (K,)`` as a column over ``rows`` folded rows: ``(rows, 1)``, member
    ``k``'s value on its block; for one member the scalar as it is."""
    if members == 1:
        return values
    return values.repeat_interleave(rows // members)[:, None]


class MemberGenerators:
    """``K`` torch generators, one per member. A random draw into ``(K * M, ...)`` fills
    member ``k``'s block from generator ``k``: the same call on the same shape as its
    single-seed run makes, so each member draws exactly its run's numbers."""

    def __init__(self, generators: Iterable[torch.Generator]):
        self.generators = list(generators)

    def fill(self, out: torch.Tensor, draw: Callable[[torch.Tensor, torch.Generator], object]):
        """``draw(block, generator)`` in place on each member's block of ``out``; ``out``."""
        for block, generator in zip(out.chunk(len(self.generators)), self.generators, strict=True):
            draw(block, generator)
        return out


def fill_random(
    out: torch.Tensor,
    generator: torch.Generator | MemberGenerators | None,
    draw: Callable[[torch.Tensor, torch.Generator | None], object],
) -> torch.Tensor:
    """``draw(out, generator)`` in place: from one generator, or member by member."""
    if isinstance(generator, MemberGenerators):
        return generator.fill(out, draw)
    draw(out, generator)
    return out


@torch.no_grad()
def clip_grad_norms(
    parameters: Iterable[torch.Tensor], max_norm: float, members: int
) -> torch.Tensor:
    """Clip each member's gradients to a global norm of ``max_norm``, as a single run clips
    its own (a norm over the whole stack would couple the members). Returns the norms before
    clipping: ``(K,)``, or the scalar of ``nn.utils.clip_grad_norm_`` for one member."""
    parameters = list(parameters)
    if members == 1:
        return nn.utils.clip_grad_norm_(parameters, max_norm)
    grads = [p.grad for p in parameters if p.grad is not None]
    # One row per member across every gradient: one norm kernel and one scaling kernel,
    # where a loop over the tensors would launch several per tensor.
    rows = torch.cat([g.reshape(members, -1) for g in grads], dim=1)
    norms = torch.linalg.vector_norm(rows.float(), dim=1)  # (K,)
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, [scale.view(members, *([1] * (g.dim() - 1))) for g in grads])
    return norms
