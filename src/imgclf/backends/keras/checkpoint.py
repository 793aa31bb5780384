"""Keras checkpoints: .keras archives written atomically, carrying runs.fingerprint inside."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import keras

FINGERPRINT_MEMBER = "imgclf_fingerprint.json"


def save_checkpoint(model: keras.Model, path: Path, fingerprint: dict[str, Any]) -> Path:
    """Keras insists on the .keras suffix, so save beside the target, then rename (atomic).
    A .keras file is a zip and Keras reads only its own members, so the fingerprint travels
    inside it (as it does in a .pt) and the rename publishes both at once."""
    tmp = path.with_name(f".{path.name}.tmp.keras")
    model.save(tmp)
    with zipfile.ZipFile(tmp, "a") as z:
        z.writestr(FINGERPRINT_MEMBER, json.dumps(fingerprint))
    os.replace(tmp, path)
    return path


def read_fingerprint(path: Path) -> dict[str, Any] | None:
    """The fingerprint save_checkpoint put inside a .keras file (None in older runs' files)."""
    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read(FINGERPRINT_MEMBER))
    except KeyError:
        return None
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise ValueError(f"{path}: not a readable .keras checkpoint ({e})") from None
