"""Write a tiny Hugging Face Llama as a GGUF file that llama.cpp runs, in F32, with a byte tokenizer.

The tokenizer is a byte-level BPE ("gpt2" model in llama.cpp) whose token ``i`` is the single byte
``i``: no token spans two bytes, so llama.cpp tokenizes any ASCII text back into exactly the ids
it was decoded from. Ids 0..127 (ASCII) therefore round-trip through ``detokenize``/``tokenize`` in
any order; ids 128..255 are lone non-ASCII bytes, which are not valid UTF-8 text on their own.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from transformers import LlamaForCausalLM

from pytest_hemorrhage.gguf_model import rope_rows_to_llama_cpp

#: The most ids the byte tokenizer has: one per byte value.
MAX_VOCAB = 256
#: The ids whose text is ASCII, which round-trip in any sequence.
ROUND_TRIP_VOCAB = 128


def byte_symbols() -> list[str]:
    """The printable character a byte-level BPE stores for each byte value (index = byte).

    Bytes that print as themselves (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) keep their own code
    point; the others (controls, space, soft hyphen...) take the code points from 256 upwards in
    byte order. llama.cpp decodes token texts through the same table.
    """
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAC + 1)) | set(range(0xAE, 0xFF + 1))
    symbols, spare = [], 256
    for byte in range(MAX_VOCAB):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(spare))
            spare += 1
    return symbols


def _rope_theta(config) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def write_tiny_gguf(model: LlamaForCausalLM, path: str | os.PathLike[str], *, rope_order: bool = True) -> None:
    """Write ``model`` (a Llama of at most 256 ids) to ``path`` as an F32 GGUF file llama.cpp runs.

    ``rope_order=False`` leaves the query and key rows in Hugging Face's order: the classic
    conversion bug, which llama.cpp runs without complaint and gets wrong.

    The file is written beside ``path`` and moved there when complete, so a reader never sees half a file.
    """
    import gguf

    config = model.config
    vocab = config.vocab_size
    if not 1 <= vocab <= MAX_VOCAB:
        raise ValueError(f"vocab_size {vocab}: the byte tokenizer has at most {MAX_VOCAB} ids (one per byte)")
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    layers = config.num_hidden_layers

    partial = os.fspath(path) + ".partial"
    writer = gguf.GGUFWriter(partial, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_name("tiny-llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")  # the pre-tokenizer of SmolLM2, the default model
    writer.add_token_list(byte_symbols()[:vocab])
    writer.add_token_types([gguf.TokenType.NORMAL] * vocab)
    # llama.cpp requires a merges list and the writer refuses an empty array: this one merge joins
    # two-character symbols that no other merge builds, so it never applies.
    writer.add_token_merges(["ab cd"])
    writer.add_add_bos_token(False)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, layers)
    for name, tensor in model.state_dict().items():
        if name.endswith("rotary_emb.inv_freq"):
            continue
        if rope_order and name.endswith("q_proj.weight"):
            tensor = rope_rows_to_llama_cpp(tensor, heads)
        elif rope_order and name.endswith("k_proj.weight"):
            tensor = rope_rows_to_llama_cpp(tensor, kv_heads)
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ValueError(f"no GGUF name for the model's tensor {name!r}")
        writer.add_tensor(gguf_name, tensor.detach().to(torch.float32).contiguous().numpy().astype(np.float32))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(partial, path)


def requantise_gguf(source: str | os.PathLike[str], target: str | os.PathLike[str], types) -> None:
    """Write ``source`` (an F32 GGUF) to ``target`` with each 2-D tensor quantised by gguf's own quantiser
    to ``types(name)`` (a ``gguf.GGMLQuantizationType``, or None to keep it as it is)."""
    import gguf

    from pytest_hemorrhage.gguf_files import rewrite_gguf

    replaced = {}
    for tensor in gguf.GGUFReader(source).tensors:
        kind = types(tensor.name) if len(tensor.data.shape) == 2 else None
        if kind is None:
            continue
        data = gguf.quants.quantize(np.asarray(tensor.data, dtype=np.float32), kind)
        replaced[tensor.name] = tensor._replace(tensor_type=kind, data=data, n_bytes=data.nbytes)
    rewrite_gguf(source, target, tensors_from=replaced)


def save_byte_tokenizer(folder: str | os.PathLike[str], vocab: int = ROUND_TRIP_VOCAB) -> None:
    """Save beside a tiny model the Hugging Face twin of the files' byte tokenizer: id ``i`` is byte ``i``
    (the first ``vocab`` bytes; the built-in corpus is ASCII), so a model folder's probes are read by
    llama.cpp as the same ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(vocab={s: i for i, s in enumerate(byte_symbols()[:vocab])}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer).save_pretrained(folder)
