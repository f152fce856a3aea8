"""Speed options that leave the maths unchanged: compiled hot steps, mixed precision and
CUDA graphs of whole update steps.

Only the deterministic, per-step pieces are compiled (the RSSM transition, the posterior
step and the actor's distribution), because they run ``T`` or ``H`` times per update as many
small kernels; random draws stay eager, so every sample still comes from the run's seeded
generator and the compiled path draws exactly the same numbers as the plain one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from agent.actor_critic import ActorCritic
from agent.world_model import WorldModel


def use_compile(mode: str, device: torch.device) -> bool:
    """Whether ``train.compile`` turns compilation on for ``device`` (``auto``: CUDA only)."""
    return mode == "on" or (mode == "auto" and device.type == "cuda")


def compile_steps(world_model: WorldModel, actor_critic: ActorCritic) -> None:
    """Replace the per-step methods with ``torch.compile``-d versions, in place."""
    rssm = world_model.rssm
    rssm.img_step = torch.compile(rssm.img_step, dynamic=False)
    rssm.posterior_step = torch.compile(rssm.posterior_step, dynamic=False)
    actor_critic.policy = torch.compile(actor_critic.policy, dynamic=False)


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether ``train.precision`` means bf16 autocast on ``device`` (``auto``: CUDA only)."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def autocast(
    device: torch.device, enabled: bool, cache: bool = True
) -> contextlib.AbstractContextManager:
    """bf16 autocast for network layers on ``device``; a no-op context when not enabled.

    ``cache=False`` casts the weights afresh at every use: a CUDA graph must record those
    casts, not read a cache filled (and emptied) outside it."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache)


def use_graphs(mode: str, device: torch.device) -> bool:
    """Whether ``train.cuda_graphs`` turns CUDA graphs on for ``device`` (``auto``: CUDA)."""
    return device.type == "cuda" and mode in ("on", "auto")


Tensors = dict[str, torch.Tensor]


class GraphedStep:
    """``step(*inputs) -> outputs``, run eagerly ``warmup`` times, then captured once into a
    CUDA graph and replayed.

    A Dreamer update is thousands of small kernels (a GRU step per time step, forward and
    backward), so on a GPU its speed is set by launching them, not by their arithmetic. A
    graph launches them all at once. ``inputs`` are dicts of device tensors (or ``None``)
    of the same shapes at every call: they are copied into the captured buffers. The
    returned outputs are the captured ones, overwritten by the next replay, so the caller
    must use or copy them before calling again. Random draws from ``generator`` stay in the
    generator's stream: a replay advances it as the eager step would.

    ``step`` may hold no host synchronisation (``.item()``, a CPU tensor from the device)
    and must keep every piece of state it updates in tensors it updates in place (Adam
    with ``capturable=True``, buffers): the Python code runs once, at capture.
    """

    def __init__(
        self, step: Callable[..., Any], generator: torch.Generator, warmup: int = 3
    ) -> None:
        self.step = step
        self.generator = generator
        self.warmup = warmup
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_inputs: tuple[Tensors | None, ...] = ()
        self.static_outputs: Any = None
        self._side_stream: torch.cuda.Stream | None = None

    def __call__(self, *inputs: Tensors | None) -> Any:
        if self.graph is None and self.calls < self.warmup:
            self.calls += 1
            return self._eager(*inputs)
        if self.graph is None:
            self._capture(inputs)
        for static, given in zip(self.static_inputs, inputs, strict=True):
            if static is not None:
                assert given is not None and static.keys() == given.keys()
                for key, buffer in static.items():
                    buffer.copy_(given[key], non_blocking=True)
        assert self.graph is not None
        self.graph.replay()
        return self.static_outputs

    def _eager(self, *inputs: Tensors | None) -> Any:
        # Warm-up on a side stream, as PyTorch asks before a capture (lazy initialisation of
        # libraries, compilation); each use of it first waits for the main stream, so memory
        # freed there is not reused while the main stream may still read it.
        if self._side_stream is None:
            self._side_stream = torch.cuda.Stream()
        main = torch.cuda.current_stream()
        self._side_stream.wait_stream(main)
        with torch.cuda.stream(self._side_stream):
            outputs = self.step(*inputs)
        main.wait_stream(self._side_stream)
        return outputs

    def _capture(self, inputs: tuple[Tensors | None, ...]) -> None:
        self.static_inputs = tuple(
            None if given is None else {key: value.clone() for key, value in given.items()}
            for given in inputs
        )
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(self.generator)
        # thread_local: work of other threads (loggers, the env) must not break the capture.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self.static_outputs = self.step(*self.static_inputs)
        self.graph = graph

    def reset(self) -> None:
        """Forget the captured graph (after state tensors were replaced, e.g. a checkpoint
        load): the next call captures afresh."""
        self.graph, self.static_inputs, self.static_outputs = None, (), None


def maybe_graphed(
    step: Callable[..., Any], enabled: bool, generator: torch.Generator
) -> Callable[..., Any]:
    """``step`` as a :class:`GraphedStep` when ``enabled``, else ``step`` itself."""
    return GraphedStep(step, generator) if enabled else step
