"""Neural building blocks: attention with a KV cache, masks, positions, norms, Transformer and RNN pieces.

Mask convention (see treadmill.nn.masks): padding masks are True at PADDING; attention masks are
True where a query MAY ATTEND to a key.
"""

from treadmill.nn.attention import AttentionOutput, KVCache, MultiHeadAttention
from treadmill.nn.feedforward import ACTIVATIONS, FeedForward
from treadmill.nn.masks import (
    and_masks,
    causal_mask,
    lengths_from_padding_mask,
    or_masks,
    padding_mask,
    padding_to_attention_mask,
    positions_from_padding_mask,
    prefix_causal_mask,
)
from treadmill.nn.norms import LayerNorm, LayerScale, RMSNorm, build_norm
from treadmill.nn.pooling import AttentionPooling, CrossAttentionBlock, LatentQueryEncoder
from treadmill.nn.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
)
from treadmill.nn.rnn import RNN_ATTENTIONS, RNN_CELLS, RNNDecoder, RNNEncoder, RNNState
from treadmill.nn.rnn_attention import BahdanauAttention, LuongAttention
from treadmill.nn.transformer import (
    Decoder,
    DecoderBlock,
    DecoderOutput,
    Encoder,
    EncoderBlock,
    decoder_block,
    encoder_block,
)

__all__ = [
    "ACTIVATIONS",
    "AttentionOutput",
    "AttentionPooling",
    "BahdanauAttention",
    "CrossAttentionBlock",
    "Decoder",
    "DecoderBlock",
    "DecoderOutput",
    "Encoder",
    "EncoderBlock",
    "FeedForward",
    "KVCache",
    "LatentQueryEncoder",
    "LayerNorm",
    "LayerScale",
    "LearnedPositionalEmbedding",
    "LuongAttention",
    "MultiHeadAttention",
    "RMSNorm",
    "RNNDecoder",
    "RNNEncoder",
    "RNNState",
    "RNN_ATTENTIONS",
    "RNN_CELLS",
    "RotaryEmbedding",
    "SinusoidalPositionalEncoding",
    "and_masks",
    "build_norm",
    "causal_mask",
    "decoder_block",
    "encoder_block",
    "lengths_from_padding_mask",
    "or_masks",
    "padding_mask",
    "padding_to_attention_mask",
    "positions_from_padding_mask",
    "prefix_causal_mask",
]
