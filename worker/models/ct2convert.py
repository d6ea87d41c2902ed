"""Convert a CTranslate2 Whisper model (faster-whisper's format) into an openai-whisper checkpoint.

CTranslate2 stores every tensor in one little-endian ``model.bin``; ``config.json`` beside it carries the
alignment heads used for word timestamps. The result is the ``{"dims", "model_state_dict"}`` dict that
``whisper.load_model`` reads, so the same engine serves both families of weights.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

SUPPORTED_BINARY_VERSION = 6
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class ConversionError(ValueError):
    """The directory does not hold a CTranslate2 Whisper model this converter understands."""


def _read(stream: BinaryIO, fmt: str) -> tuple:
    size = struct.calcsize("<" + fmt)
    data = stream.read(size)
    if len(data) != size:
        raise ConversionError("model.bin ends early")
    return struct.unpack("<" + fmt, data)


def _read_string(stream: BinaryIO) -> str:
    (length,) = _read(stream, "H")
    return stream.read(length)[:-1].decode("utf-8")


def read_variables(model_bin: Path) -> dict[str, np.ndarray]:
    """Every named tensor of a CTranslate2 ``model.bin``, aliases resolved."""
    variables: dict[str, np.ndarray] = {}
    with open(model_bin, "rb") as stream:
        (version,) = _read(stream, "I")
        if version != SUPPORTED_BINARY_VERSION:
            raise ConversionError(f"model.bin version {version} is not supported (expected 6)")
        spec = _read_string(stream)
        if spec != "WhisperSpec":
            raise ConversionError(f"model.bin holds a {spec!r}, not a Whisper model")
        _read(stream, "I")  # spec revision
        (count,) = _read(stream, "I")
        for _ in range(count):
            name = _read_string(stream)
            (rank,) = _read(stream, "B")
            shape = _read(stream, "I" * rank) if rank else ()
            (dtype_id,) = _read(stream, "B")
            (nbytes,) = _read(stream, "I")
            if dtype_id not in _DTYPES:
                raise ConversionError(f"{name}: unsupported dtype id {dtype_id}")
            raw = stream.read(nbytes)
            variables[name] = np.frombuffer(raw, dtype=_DTYPES[dtype_id]).reshape(shape)
        (alias_count,) = _read(stream, "I")
        for _ in range(alias_count):
            alias, target = _read_string(stream), _read_string(stream)
            variables[alias] = variables[target]
    return variables


def _layer_count(variables: dict[str, np.ndarray], side: str) -> int:
    pattern = re.compile(rf"^{side}/layer_(\d+)/")
    indices = {int(m.group(1)) for name in variables if (m := pattern.match(name))}
    return max(indices) + 1


def _linear(state: dict, target: str, variables: dict, source: str, *, bias: bool = True) -> None:
    state[f"{target}.weight"] = variables[f"{source}/weight"]
    if bias:
        state[f"{target}.bias"] = variables[f"{source}/bias"]


def _norm(state: dict, target: str, variables: dict, source: str) -> None:
    state[f"{target}.weight"] = variables[f"{source}/gamma"]
    state[f"{target}.bias"] = variables[f"{source}/beta"]


def _self_attention(state: dict, target: str, variables: dict, source: str) -> None:
    query, key, value = np.split(variables[f"{source}/linear_0/weight"], 3)
    q_bias, _key_bias_is_zero, v_bias = np.split(variables[f"{source}/linear_0/bias"], 3)
    state.update(
        {
            f"{target}.query.weight": query,
            f"{target}.query.bias": q_bias,
            f"{target}.key.weight": key,
            f"{target}.value.weight": value,
            f"{target}.value.bias": v_bias,
        }
    )
    _linear(state, f"{target}.out", variables, f"{source}/linear_1")


def _cross_attention(state: dict, target: str, variables: dict, source: str) -> None:
    _linear(state, f"{target}.query", variables, f"{source}/linear_0")
    key, value = np.split(variables[f"{source}/linear_1/weight"], 2)
    _key_bias_is_zero, v_bias = np.split(variables[f"{source}/linear_1/bias"], 2)
    state.update({f"{target}.key.weight": key, f"{target}.value.weight": value, f"{target}.value.bias": v_bias})
    _linear(state, f"{target}.out", variables, f"{source}/linear_2")


def _block(state: dict, target: str, variables: dict, source: str, *, cross: bool) -> None:
    _self_attention(state, f"{target}.attn", variables, f"{source}/self_attention")
    _norm(state, f"{target}.attn_ln", variables, f"{source}/self_attention/layer_norm")
    if cross:
        _cross_attention(state, f"{target}.cross_attn", variables, f"{source}/attention")
        _norm(state, f"{target}.cross_attn_ln", variables, f"{source}/attention/layer_norm")
    _linear(state, f"{target}.mlp.0", variables, f"{source}/ffn/linear_0")
    _linear(state, f"{target}.mlp.2", variables, f"{source}/ffn/linear_1")
    _norm(state, f"{target}.mlp_ln", variables, f"{source}/ffn/layer_norm")


def convert(model_dir: Path) -> dict:
    """An openai-whisper checkpoint dict (numpy arrays) plus the model's alignment heads."""
    model_bin = Path(model_dir) / "model.bin"
    if not model_bin.is_file():
        raise ConversionError(f"{model_dir} has no model.bin")
    variables = read_variables(model_bin)
    n_audio_layer = _layer_count(variables, "encoder")
    n_text_layer = _layer_count(variables, "decoder")
    conv1 = variables["encoder/conv1/weight"]
    dims = {
        "n_mels": int(conv1.shape[1]),
        "n_audio_ctx": int(variables["encoder/position_encodings/encodings"].shape[0]),
        "n_audio_state": int(conv1.shape[0]),
        "n_audio_head": int(variables["encoder/num_heads"]),
        "n_audio_layer": n_audio_layer,
        "n_vocab": int(variables["decoder/embeddings/weight"].shape[0]),
        "n_text_ctx": int(variables["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(variables["decoder/embeddings/weight"].shape[1]),
        "n_text_head": int(variables["decoder/num_heads"]),
        "n_text_layer": n_text_layer,
    }
    state: dict[str, np.ndarray] = {}
    _linear(state, "encoder.conv1", variables, "encoder/conv1")
    _linear(state, "encoder.conv2", variables, "encoder/conv2")
    state["encoder.positional_embedding"] = variables["encoder/position_encodings/encodings"]
    for i in range(n_audio_layer):
        _block(state, f"encoder.blocks.{i}", variables, f"encoder/layer_{i}", cross=False)
    _norm(state, "encoder.ln_post", variables, "encoder/layer_norm")
    state["decoder.token_embedding.weight"] = variables["decoder/embeddings/weight"]
    state["decoder.positional_embedding"] = variables["decoder/position_encodings/encodings"]
    for i in range(n_text_layer):
        _block(state, f"decoder.blocks.{i}", variables, f"decoder/layer_{i}", cross=True)
    _norm(state, "decoder.ln", variables, "decoder/layer_norm")

    config_path = Path(model_dir) / "config.json"
    heads: list[list[int]] = []
    if config_path.is_file():
        heads = [list(map(int, pair)) for pair in json.loads(config_path.read_text()).get("alignment_heads", [])]
    return {"dims": dims, "model_state_dict": state, "alignment_heads": heads}
