"""Special token ids shared by tokenizers, models, losses and decoding (seed 001's convention)."""

PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3
SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
