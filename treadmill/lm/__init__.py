"""Language modelling: token files read through np.memmap, random or contiguous windows, and the
`language_model` objective (next-token loss, perplexity, bits per character). See docs/lm.md."""

from treadmill.lm.dataset import (
           ContiguousWindows,
           RandomWindows,
           TokenFileDataset,
           token_file_loader,
)
from treadmill.lm.metrics import bits_per_char, perplexity_from_loss
from treadmill.lm.token_files import read_meta, write_token_file, write_token_files

__all__ = ["ContiguousWindows", "RandomWindows", "TokenFileDataset", "bits_per_char", "perplexity_from_loss",
           "read_meta", "token_file_loader", "write_token_file", "write_token_files"]
