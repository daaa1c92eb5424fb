"""Tiny random transformers models and tokenizers saved into a directory, as a user's download would be.

Each builder writes config.json, generation_config.json, the weights and a word-level tokenizer.json
into `directory` and returns it. The generation configs are neutral (no forced BOS/EOS, no min
length, no n-gram blocking) so that transformers' generate() and ours search the same space.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

WORDS = [f"w{i}" for i in range(40)]


def word_tokenizer(directory: Path, specials: dict[int, str], vocab_size: int, post: str | None = None) -> None:
    """tokenizer.json: `specials` at their ids, then words, filling `vocab_size` ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = dict((token, i) for i, token in specials.items())
    words = iter(WORDS)
    for i in range(vocab_size):
        if i not in specials:
            vocab[next(words)] = i
    unk = next((t for t in specials.values() if "unk" in t), None)
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(list(specials.values()))
    if post is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=post, special_tokens=[(t, i) for i, t in specials.items() if t in post]
        )
    tok.save(str(directory / "tokenizer.json"))


def _neutral(model) -> None:  # type: ignore[no-untyped-def]
    g = getattr(model, "generation_config", None)
    if g is None:  # a classifier: nothing generates
        return
    for name in ("forced_bos_token_id", "forced_eos_token_id"):
        setattr(g, name, None)
    g.min_length, g.no_repeat_ngram_size, g.num_beams, g.max_length = 0, 0, 1, 20


def teach_eos(model, pad: int, eos: int, start: int | None, steps: int = 25) -> None:  # type: ignore[no-untyped-def]
    """A few Adam steps on short random sequences that end in EOS, so that searches end before
    their length cap (where transformers truncates and we close with EOS) and beams differ."""
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    words = [i for i in range(vocab) if i not in {pad, eos, start, 0, 1, 2, 3}]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        rows = []
        for _ in range(8):
            n = int(torch.randint(3, 8, (1,), generator=g))
            rows.append([words[int(i)] for i in torch.randint(len(words), (n,), generator=g)])
        width = max(map(len, rows)) + 1
        ids = torch.full((len(rows), width), pad)
        labels = torch.full((len(rows), width), -100)
        for i, row in enumerate(rows):
            ids[i, : len(row) + 1] = torch.tensor(row + [eos])
            labels[i, : len(row) + 1] = torch.tensor(row[::-1] + [eos] if start is not None else row + [eos])
        if start is not None:  # encoder-decoder: reverse the source
            loss = model(input_ids=ids, attention_mask=(ids != pad).long(), labels=labels).loss
        else:
            loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def _save(model, directory: Path) -> Path:  # type: ignore[no-untyped-def]
    _neutral(model)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory))
    return directory


def tiny_bart(directory: Path, seed: int = 0) -> Path:
    """BART (pad 1, bos 0, eos 2 = decoder start), vocab 24, d_model 16."""
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(seed)
    config = BartConfig(vocab_size=24, d_model=16, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64)
    model = BartForConditionalGeneration(config)
    teach_eos(model, pad=1, eos=2, start=2)
    path = _save(model, directory)
    word_tokenizer(path, {0: "<s>", 1: "<pad>", 2: "</s>", 3: "<unk>"}, 24, post="<s> $A </s>")
    return path


def tiny_t5(directory: Path, seed: int = 0) -> Path:
    """T5 (pad 0 = decoder start, eos 1, unk 2), vocab 24."""
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    config = T5Config(vocab_size=24, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_decoder_layers=2, num_heads=2,
                      relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    model = T5ForConditionalGeneration(config)
    teach_eos(model, pad=0, eos=1, start=0)
    path = _save(model, directory)
    word_tokenizer(path, {0: "<pad>", 1: "</s>", 2: "<unk>"}, 24, post="$A </s>")
    return path


def tiny_marian(directory: Path, seed: int = 0) -> Path:
    """Marian (eos 0, unk 1, pad 23 = decoder start), vocab 24."""
    from transformers import MarianConfig, MarianMTModel

    torch.manual_seed(seed)
    config = MarianConfig(vocab_size=24, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                          decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
                          pad_token_id=23, eos_token_id=0, decoder_start_token_id=23, forced_eos_token_id=None)
    model = MarianMTModel(config)
    teach_eos(model, pad=23, eos=0, start=23)
    path = _save(model, directory)
    word_tokenizer(path, {0: "</s>", 1: "<unk>", 23: "<pad>"}, 24, post="$A </s>")
    return path


def tiny_gpt2(directory: Path, seed: int = 0, num_labels: int | None = None) -> Path:
    """GPT-2 (bos = eos = pad = 23, as the real one's 50256), vocab 24; a classifier with num_labels."""
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=24, n_embd=16, n_layer=2, n_head=2, n_positions=64, bos_token_id=23,
                        eos_token_id=23, pad_token_id=23)
    if num_labels is not None:
        config.num_labels = num_labels
        model = GPT2ForSequenceClassification(config)
    else:
        model = GPT2LMHeadModel(config)
        teach_eos(model, pad=23, eos=23, start=None)
    path = _save(model, directory)
    word_tokenizer(path, {23: "<|endoftext|>"}, 24)
    return path


def tiny_llama(directory: Path, seed: int = 0) -> Path:
    """Llama (unk 0, bos 1, eos 2, no pad), vocab 24."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=24, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                         bos_token_id=1, eos_token_id=2, pad_token_id=None)
    model = LlamaForCausalLM(config)
    teach_eos(model, pad=2, eos=2, start=None)
    path = _save(model, directory)
    word_tokenizer(path, {0: "<unk>", 1: "<s>", 2: "</s>"}, 24)
    return path


def write_json(path: Path, data: dict) -> None:  # type: ignore[type-arg]
    path.write_text(json.dumps(data))
