"""IdMap: a Hugging Face vocabulary seen through Treadmill's special ids (PAD 0, UNK 1, BOS 2, EOS 3).

Every part of Treadmill (collation, losses, generate(), metrics, the command line) reads the special
ids from `treadmill.constants`. Rather than teach each of them a model's own ids, an adapter shows
the rest of Treadmill a permuted vocabulary: our ids 0..3 stand for the HF ids of the model's
pad, unk, decoder-start (BOS) and eos tokens, and every other HF id keeps its order from 4 on.

    ours -> HF: `to_hf[ours]`            (ours_vocab,) long, used on every input id
    HF -> ours: `from_hf[hf]`            (hf_vocab,) long, the one live id of each HF id
    logits:     hf_logits[..., to_hf]    with `dead` columns at the dtype's minimum

Several roles may share one HF id (GPT-2: pad = bos = eos = unk = 50256; BART: decoder start =
eos). Each HF id then has exactly one live column (priority EOS, UNK, PAD, BOS) and its aliases
are dead, so a softmax over our columns equals the model's own softmax over its vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from treadmill.constants import BOS_ID, EOS_ID, PAD_ID, UNK_ID

__all__ = ["SpecialIds", "IdMap"]

# The order of our ids 0..3 (treadmill.constants) and which role keeps a shared HF id's column.
_ROLES = ("pad", "unk", "bos", "eos")
_LIVE_PRIORITY = ("eos", "unk", "pad", "bos")


@dataclass(frozen=True)
class SpecialIds:
    """The HF ids that play our PAD, UNK, BOS (the decoder's start token) and EOS."""

    pad: int
    unk: int
    bos: int
    eos: int

    def as_dict(self) -> dict[str, int]:
        """{"pad": id, "unk": id, "bos": id, "eos": id}."""
        return {role: getattr(self, role) for role in _ROLES}


class IdMap:
    """The permutation between an HF vocabulary of `hf_vocab_size` ids and ours."""

    def __init__(self, hf_vocab_size: int, special: SpecialIds) -> None:
        assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)  # the layout _ROLES encodes
        self.special = special
        self.hf_vocab_size = hf_vocab_size
        role_ids = [getattr(special, role) for role in _ROLES]
        used = set(role_ids)
        others = [i for i in range(hf_vocab_size) if i not in used]
        self.to_hf = torch.tensor(role_ids + others, dtype=torch.long)  # (ours_vocab,)
        self.from_hf = torch.empty(hf_vocab_size, dtype=torch.long)
        self.from_hf[torch.tensor(others, dtype=torch.long)] = torch.arange(4, 4 + len(others))
        self.dead = torch.zeros(len(role_ids) + len(others), dtype=torch.bool)
        live: dict[int, int] = {}
        for role in _LIVE_PRIORITY:
            hf_id = getattr(special, role)
            ours = _ROLES.index(role)
            if hf_id in live:
                self.dead[ours] = True
            else:
                live[hf_id] = ours
                self.from_hf[hf_id] = ours

    @property
    def vocab_size(self) -> int:
        """Number of our ids (specials and their aliases included)."""
        return int(self.to_hf.numel())

    def hf_ids(self, ours: Tensor) -> Tensor:
        """Our ids (any shape) as the model's ids."""
        return self.to_hf.to(ours.device)[ours]

    def our_ids(self, hf: Tensor) -> Tensor:
        """The model's ids (any shape) as ours."""
        return self.from_hf.to(hf.device)[hf]

    def our_logits(self, hf_logits: Tensor) -> Tensor:
        """(..., hf_vocab) logits as (..., ours_vocab); alias columns at the dtype's minimum."""
        width = hf_logits.size(-1)
        if width != self.hf_vocab_size:
            raise ValueError(
                f"the model returned logits over {width} ids but its id map covers {self.hf_vocab_size}"
            )
        out = hf_logits.index_select(-1, self.to_hf.to(hf_logits.device))
        # The dtype's minimum rather than -inf: a softmax gives 0 there, and p * log p stays 0.
        return out.masked_fill(self.dead.to(out.device), torch.finfo(out.dtype).min)
