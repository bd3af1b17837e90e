"""The PaliGemma SentencePiece tokenizer as π₀ and π0.5 use it, padded or cut to a fixed length: BOS + prompt +
"\\n" (π₀, and π0.5 without the state), or BOS + `Task: <prompt>, State: <bins>;\\nAction: ` (π0.5 with the state:
each normalised state value as its bin among 256 over [-1, 1])."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dagger_cli.core.errors import CheckpointError

TOKENIZER_FILE = "big_vision/paligemma_tokenizer.model"
"""where openpi keeps the PaliGemma tokenizer, under its data home"""
DEFAULT_TOKENIZER_PATH = f"~/.cache/openpi/{TOKENIZER_FILE}"
"""the default `pi0.tokenizer_path`: openpi's place (under $OPENPI_DATA_HOME when that is set)"""


BUNDLED = "bundled:"
"""prefix of a tokenizer shipped inside the package (dagger_cli/policies/pi0/assets/)"""


def openpi_home() -> Path:
    """openpi's data folder: $OPENPI_DATA_HOME, else ~/.cache/openpi (`dagger fetch openpi-tokenizer` fills it)."""
    return Path(os.environ.get("OPENPI_DATA_HOME") or "~/.cache/openpi").expanduser()


def resolve_tokenizer_path(path: str | Path) -> Path:
    """A tokenizer file: `bundled:NAME` (shipped with dagger, e.g. `bundled:instructions.model`, a small BPE model
    of robot instructions for models trained from scratch); the default path, under $OPENPI_DATA_HOME when set;
    else the path (`~` expanded)."""
    text = str(path)
    if text.startswith(BUNDLED):
        from importlib.resources import files

        return Path(str(files("dagger_cli.policies.pi0").joinpath("assets", text[len(BUNDLED):])))
    if text == DEFAULT_TOKENIZER_PATH:
        return openpi_home() / TOKENIZER_FILE
    return Path(text).expanduser()


def clean_prompt(text: str) -> str:
    """openpi's cleaning: strip, underscores and newlines to spaces."""
    return text.strip().replace("_", " ").replace("\n", " ")


STATE_BINS = 256


def state_bins(state: np.ndarray) -> np.ndarray:
    """A normalised state's bins among STATE_BINS equal ones over [-1, 1] (below -1: -1; from 1 - 2/256 up: 255)."""
    return np.digitize(state, np.linspace(-1.0, 1.0, STATE_BINS + 1)[:-1]) - 1


def state_prompt(prompt: str, state: np.ndarray) -> str:
    """π0.5's prompt with the state in it (openpi's and LeRobot's format)."""
    return f"Task: {clean_prompt(prompt)}, State: {' '.join(map(str, state_bins(state)))};\nAction: "


class PromptTokenizer:
    """Tokenises task prompts to `max_len` ids with a validity mask."""

    def __init__(self, path: str | Path, max_len: int = 48):
        import sentencepiece

        path = resolve_tokenizer_path(path)
        if not path.is_file():
            raise CheckpointError(
                f"{path}: PaliGemma tokenizer not found (fetch it with `dagger fetch openpi-tokenizer` "
                "or set actor.model.pi0.tokenizer_path)"
            )
        try:
            self._sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
        except Exception as e:  # sentencepiece raises plain RuntimeError/OSError for bad files
            raise CheckpointError(f"{path}: not a SentencePiece model ({str(e).splitlines()[0]})") from None
        self.path = path
        self.max_len = max_len
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, prompt: str, state: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 (max_len,), mask bool (max_len,)); longer prompts are cut to max_len. `state`: π0.5's
        normalised state, written into the prompt."""
        if state is not None:
            return self._padded(self._sp.encode(state_prompt(prompt, state), add_bos=True))
        if prompt not in self._cache:
            self._cache[prompt] = self._padded(self._sp.encode(clean_prompt(prompt), add_bos=True) + self._sp.encode("\n"))
        return self._cache[prompt]

    def _padded(self, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        ids = ids[: self.max_len]
        tokens = np.zeros(self.max_len, dtype=np.int64)
        mask = np.zeros(self.max_len, dtype=bool)
        tokens[: len(ids)] = ids
        mask[: len(ids)] = True
        return tokens, mask

    def encode_batch(self, prompts, states: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        pairs = [self.encode(str(p), None if states is None else states[i]) for i, p in enumerate(prompts)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
