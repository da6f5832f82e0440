"""Your own classification data without code: columns, a prompt template and label words from the CLI or YAML.

``zotune train --task custom --data-dir reviews/ --text-column review --label-column stars
--label-words "1=terrible,5=great" --template "{review} It was"`` builds a task like the built-in ones (the same
sampling, encoding, evaluation and error paths), from ``reviews/{train,validation}.{csv,jsonl,json}``, a
``datasets`` folder saved with ``save_to_disk``, or a hub dataset (``--dataset NAME``, where the network allows).
"""

from __future__ import annotations

import string

from zotune.errors import ConfigError, DataError
from zotune.tasks.base import Task

__all__ = ["CUSTOM", "custom_task"]

CUSTOM = "custom"


def _label_words(spec: str) -> tuple[tuple[str, ...], dict[str, int]]:
    """``"terrible,great"`` (labels are indices 0, 1, ...) or ``"1=terrible,5=great"`` (labels are the values on
    the left, as the data holds them): the words, and each label value's index among them."""
    entries = [entry.strip() for entry in spec.split(",") if entry.strip()]
    if len(entries) < 2:
        raise ConfigError(f"Invalid label_words {spec!r}: give at least two, comma-separated (e.g. terrible,great "
                          "or 1=terrible,5=great)")
    pairs = [entry.split("=", 1) if "=" in entry else [str(i), entry] for i, entry in enumerate(entries)]
    words = tuple(word.strip() for _, word in pairs)
    values = {value.strip(): i for i, (value, _) in enumerate(pairs)}
    if len(values) != len(pairs) or len(set(words)) != len(words) or not all(words):
        raise ConfigError(f"Invalid label_words {spec!r}: label values and words must be distinct and non-empty")
    return words, values


def custom_task(*, text_column: str, label_column: str, template: str | None, label_words: str,
                dataset: str | None = None) -> Task:
    """A classification task over the given columns.

    Args:
        text_column: the column the default template reads (``"{<text_column>}"``).
        label_column: the column holding the label: an index into ``label_words``, or one of its ``value=``s.
        template: the prompt, with ``{column}`` fields; the label word follows it after a space.
        label_words: see :func:`_label_words`.
        dataset: a ``datasets`` hub name to load when no data folder is given (where the network allows).

    Raises:
        ConfigError: a template that does not parse, or bad label words.
    """
    words, values = _label_words(label_words)
    template = template if template is not None else "{" + text_column + "}"
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as exc:
        raise ConfigError(f"Invalid template {template!r}: {exc}") from exc
    columns = [name for name, _, _ in fields]
    if not columns or any(not name.isidentifier() for name in columns):
        raise ConfigError(f"Invalid template {template!r}: it needs {{column}} fields naming the data's columns "
                          "(plain names, no indexing)")
    if any(spec or conversion for _, spec, conversion in fields):
        # "{review:>300000000}" would pad every prompt to 300 M characters (an 8 GB allocation).
        raise ConfigError(f"Invalid template {template!r}: fields take no format spec or conversion "
                          "(write {column}, not {column:...} or {column!r})")

    def label_of(row: dict) -> int:
        value = row.get(label_column)
        key = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else None
        if key is None or key.strip() not in values:
            raise DataError(f"{CUSTOM}: label {value!r} in column {label_column!r} is not one of "
                            f"{', '.join(repr(v) for v in values)} (--label-words)")
        return values[key.strip()]

    return Task(
        name=CUSTOM,
        description=f"your data: {template!r} -> {', '.join(words)}",
        template=lambda row: template.format_map(row),
        verbalizers=tuple(" " + word for word in words),
        fields=(*dict.fromkeys(columns), label_column),
        label_of=label_of,
        label_field=label_column,
        hub=None if dataset is None else (dataset, None),
    )
