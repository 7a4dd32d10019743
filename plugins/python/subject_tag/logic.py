"""Pure logic of the py-subject-tag plugin (no WIT imports: unit-testable
with a plain `python3 -m unittest` in this folder)."""

import json

DEFAULT_WORD = "python"


def parse_config(text: str) -> str:
    """The configured word from the plugin's JSON config (default "python").

    Raises ValueError when the config is not a JSON object or `word` is not a
    non-empty string.
    """
    try:
        cfg = json.loads(text or "{}")
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid plugin config: {e}") from None
    if not isinstance(cfg, dict):
        raise ValueError("invalid plugin config: not an object")
    word = cfg.get("word", DEFAULT_WORD)
    if not isinstance(word, str) or not word.strip():
        raise ValueError("invalid plugin config: 'word' must be a non-empty string")
    return word


def matches(subject: "str | None", word: str) -> bool:
    """Whether `subject` contains `word`, case-insensitively."""
    return subject is not None and word.casefold() in subject.casefold()
