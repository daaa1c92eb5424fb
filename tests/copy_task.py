"""Copy-task batches for seq2seq tests: tgt = BOS src EOS, random lengths, right-padded."""

from __future__ import annotations

import torch

from treadmill.constants import BOS_ID, EOS_ID, PAD_ID


def copy_batches(n_batches: int = 6, batch: int = 16, seed: int = 0, vocab: int = 12,
                 max_len: int = 6) -> list[dict[str, torch.Tensor]]:
    """Batches of sources of 2..max_len ids in [4, vocab), with dataset rows in `index`."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for b in range(n_batches):
        lengths = torch.randint(2, max_len + 1, (batch,), generator=g)
        src = torch.full((batch, max_len), PAD_ID)
        tgt = torch.full((batch, max_len + 2), PAD_ID)
        for i, n in enumerate(lengths.tolist()):
            seq = torch.randint(4, vocab, (n,), generator=g)
            src[i, :n] = seq
            tgt[i, : n + 2] = torch.cat([torch.tensor([BOS_ID]), seq, torch.tensor([EOS_ID])])
        batches.append({"src": src, "tgt": tgt, "src_padding_mask": src == PAD_ID,
                        "index": torch.arange(b * batch, (b + 1) * batch)})
    return batches
