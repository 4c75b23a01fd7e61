"""Sources: each side of a comparison, and what it saw of each probe batch.

A *source* stands for one side, baseline or candidate. Before the batches it resolves and checks
the probes and is opened (placement, eval mode, attention implementation). Then, batch by
batch, ``source.observe(batch, blocks, attentions)`` returns an *observation* holding what the
source can give, and nothing it cannot:

==================  ======================================  ==========================================
                    live model (:mod:`.module`)             snapshot (:mod:`.snapshot`)
==================  ======================================  ==========================================
outputs             every logit (or the output tensor)      recorded top-k, tail samples, target log-probs
blocks              block outputs                           block sketches, read when compared
attention           probabilities (eager attention)         none
==================  ======================================  ==========================================

The engine pairs two observations and never asks which kind of source made them: the
baseline's observation measures the candidate's against itself, dispatching on what the
candidate's carries (every logit today; top-k with tail information for runtimes that give no
more)::

    base_obs.token_metrics(cand_obs, topk, device)      # language models: per scored token
    base_obs.output_sums(cand_obs, mask, device)        # other outputs: per probe
    base_obs.layer_sums(names, cand_obs, mask, device)  # per block
    base_obs.attention_sums(cand_obs, mask, device)     # per attention layer

:func:`.pairing.pair_sources` turns what a user passed (a model, a :class:`DecodedModel`, a
snapshot) into the two sources and runs the checks of the pair. A new kind of side (llama.cpp,
ONNX Runtime, a server that returns top-k log-probabilities) is a :class:`Source` with its own
observation; the engine does not change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ContextManager, Mapping, Protocol, Sequence

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..probes import ProbeBatch, Probes

__all__ = ["Source", "Observation"]


class Observation(Protocol):
    """What one source saw of one probe batch."""

    batch: "ProbeBatch"
    #: "lm" (next-token logits), "classifier" or "tensor".
    kind: str
    #: Every output value (all logits of a language model), or None for a source without them.
    outputs: "torch.Tensor | None"
    #: Block outputs by name (empty for a source that has none, or compares recorded sketches).
    blocks: "dict[str, torch.Tensor]"
    #: Attention probabilities per layer, or None.
    attentions: "tuple | None"
    #: The side's DecodingConfig (the distribution tokens are drawn from), or None for the model's own.
    decoding: Any

    @property
    def block_names(self) -> Sequence[str]:
        """The blocks this observation can be compared on."""

    def token_metrics(self, candidate: "Observation", topk: int,
                      device: "torch.device") -> "tuple[torch.Tensor, dict[str, torch.Tensor]] | None":
        """Per scored token: its probe index and the output metrics of ``candidate`` against this side."""

    def output_sums(self, candidate: "Observation", mask: "torch.Tensor | None", device: "torch.device") -> tuple:
        """``(probe indices, [n, 4] sums, labels or None)`` for outputs that are not next-token logits."""

    def layer_sums(self, names: Sequence[str], candidate: "Observation", mask: "torch.Tensor | None",
                   device: "torch.device") -> "torch.Tensor":
        """``[len(names), 4]`` float64 sums (signal, error, cosine sum, tokens) of the blocks ``names``."""

    def attention_sums(self, candidate: "Observation", mask: "torch.Tensor | None",
                       device: "torch.device") -> "Mapping[int, torch.Tensor]":
        """Per attention layer index, per-head sums (Jensen-Shannon, entropy shift, rows)."""


class Source(Protocol):
    """One side of a comparison."""

    #: "baseline" or "candidate", for messages.
    role: str
    #: What the side reads, as the user passed it unwrapped: a model, or a recording.
    origin: Any
    #: The live torch model behind the side (generation, diagnosis, mitigations), or None.
    model: "nn.Module | None"
    #: The DecodingConfig the side samples with, or None.
    decoding: Any
    #: Whether :meth:`observe` can return attention probabilities.
    attentions: bool
    #: The most top-k tokens the side can compare on (a snapshot records so many), or None for no limit.
    topk_limit: int | None

    @property
    def label(self) -> str:
        """What the report names this side: a class name, or where a recording came from."""

    @property
    def parameters(self) -> int | None:
        """Parameter count, or None when the side holds no weights."""

    @property
    def modification(self) -> str | None:
        """The description of the modification applied to the side, or None."""

    @property
    def device(self) -> "torch.device | None":
        """Where the side's outputs appear, or None when it runs nowhere."""

    @property
    def kind(self) -> str | None:
        """"lm", "classifier" or "tensor" once known, else None."""

    @property
    def pad_id(self) -> int | None:
        """The token id to pad probe batches with, or None for no preference."""

    @property
    def layer_names(self) -> list[str]:
        """The blocks the side can report, in order."""

    def paired_with(self, candidate: "Source", generation: int) -> "Source":
        """Check that ``candidate`` can be compared against this (baseline) side; the candidate to use."""

    def probes_for(self, probes: Any) -> "Probes":
        """The probe set of a comparison against this (baseline) side, from what the user passed."""

    def check(self, probes: "Probes") -> None:
        """Raise when the side cannot run ``probes`` (too long, unknown token ids)."""

    def opened(self, device: Any, attention: bool) -> ContextManager[None]:
        """The side ready to observe: placed on ``device``, in eval mode, attention switched when wanted."""

    def observe(self, batch: "ProbeBatch", blocks: Sequence[str], attentions: bool) -> Observation:
        """Run (or read) one batch, keeping the outputs of ``blocks`` and, if asked, attention."""
