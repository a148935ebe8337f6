"""The model chooser of the dialogs: a list of the models this user has, and a file choice.

Every algorithm that takes a model has two parameters (docs/contracts.md §7):

- ``NAME_LIST`` ("Model"), a list read when the dialog opens: first the model that comes
  with CrossEarth-SAR (the default), then the models in the user's models folder (where
  Fine-tune keeps its results, :func:`models_folder`) newest first, then the other models
  that come with the plugin. Its values are the labels shown (static strings), so that a
  saved run names a model, not a position in a list that changes.
- ``NAME`` ("Or a model file"), a .safetensors file anywhere; when given, it wins. Scripts
  and ``qgis_process`` keep passing a path there, as before.

A label is at most ``LABEL_CHARACTERS`` long (the dialog's combo box would otherwise widen
the panel beyond its default width). No torch: a model is listed by its file name and date.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Optional

from qgis.core import QgsProcessingParameterEnum, QgsProcessingParameterFile

EMBEDDED_MODEL_NAME = "ces-s1-water.safetensors"   # as crossearth_cli/map_options.py
PLUGIN_FOLDER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EMBEDDED_FOLDER = os.path.join(PLUGIN_FOLDER, "models")
MODEL_HELP = ("the list holds the model that comes with CrossEarth-SAR (the default) and the "
              "models in your models folder, where <i>Fine-tune on labelled polygons</i> keeps "
              "them, newest first; <b>Or a model file</b> takes any other CrossEarth-SAR model "
              "(.safetensors) and is used instead of the list when given")
MODEL_FILTER = "CrossEarth-SAR models (*.safetensors);;All files (*.*)"
LABEL_CHARACTERS = 48
LIST_SUFFIX = "_LIST"


@dataclass(frozen=True)
class ModelEntry:
    """One model of the list: what the user reads, and the file (None: the built-in default,
    which the engine finds by itself)."""
    label: str
    path: Optional[str]


def models_folder() -> str:
    """The folder where fine-tuned models are kept by default: ``models`` beside the engines
    (engine_lookup.configured_engines_root(), e.g. ~/.local/share/CrossEarth-SAR/models)."""
    from .engine_lookup import configured_engines_root

    return str(configured_engines_root().parent / "models")


def embedded_model_path() -> Optional[str]:
    """The model that comes with CrossEarth-SAR, in this plugin folder (which is also the
    package folder, where ``ces`` finds it); None when this installation has none."""
    path = os.path.join(EMBEDDED_FOLDER, EMBEDDED_MODEL_NAME)
    return path if os.path.isfile(path) else None


def _short(text: str) -> str:
    """``text`` without commas (QGIS reads a comma in an enum's static string as a list)
    and cut in the middle to LABEL_CHARACTERS (names differ at both ends: the layer at the
    start, the date at the end)."""
    text = text.replace(",", " ")
    if len(text) <= LABEL_CHARACTERS:
        return text
    half = (LABEL_CHARACTERS - 1) // 2
    return f"{text[:half]}…{text[-(LABEL_CHARACTERS - 1 - half):]}"


def _models_in(folder: str) -> list[tuple[float, str]]:
    """(modification time, path) of the .safetensors files in ``folder``, newest first."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = []
    for name in names:
        path = os.path.join(folder, name)
        if name.endswith(".safetensors") and not name.startswith(".") and os.path.isfile(path):
            found.append((os.path.getmtime(path), path))
    return sorted(found, reverse=True)


def available_models() -> list[ModelEntry]:
    """The built-in default, the user's models (newest first), the other built-in models."""
    stem = os.path.splitext(EMBEDDED_MODEL_NAME)[0]
    entries = [ModelEntry(f"{stem} (built-in default)", None)]
    for mtime, path in _models_in(models_folder()):
        when = datetime.datetime.fromtimestamp(mtime).strftime("%Y-%m-%d %H:%M")
        name = os.path.splitext(os.path.basename(path))[0]
        entries.append(ModelEntry(_short(f"{name} ({when})"), path))
    for _, path in sorted(_models_in(EMBEDDED_FOLDER), key=lambda m: m[1]):
        if os.path.basename(path) != EMBEDDED_MODEL_NAME:
            name = os.path.splitext(os.path.basename(path))[0]
            entries.append(ModelEntry(_short(f"{name} (built in)"), path))
    labels: set[str] = set()
    unique = []
    for entry in entries:   # two files with one label: the first (newest) is listed
        if entry.label not in labels:
            labels.add(entry.label)
            unique.append(entry)
    return unique


def model_parameters(name: str, label: str, tr) -> tuple[QgsProcessingParameterEnum,
                                                          QgsProcessingParameterFile]:
    """The list (``name + LIST_SUFFIX``, labelled ``label``) and the file (``name``)."""
    labels = [entry.label for entry in available_models()]
    choice = QgsProcessingParameterEnum(name + LIST_SUFFIX, label, options=labels,
                                        defaultValue=labels[0], optional=True,
                                        usesStaticStrings=True)
    choice.setHelp(tr("The models you have: the built-in one, then those in your models "
                      "folder (where Fine-tune keeps its results), newest first."))
    path = QgsProcessingParameterFile(name, tr("Or a model file"), optional=True,
                                      behavior=QgsProcessingParameterFile.File,
                                      fileFilter=MODEL_FILTER)
    return choice, path


def chosen_model(file_value: str, list_value: Optional[str]) -> tuple[Optional[str], str]:
    """The model path a run uses (None: the built-in default) and how to name it: the file
    when one is given, else the listed model whose label is ``list_value``."""
    file_value = (file_value or "").strip()
    if file_value:
        return file_value, "file"
    if list_value:
        for entry in available_models():
            if entry.label == list_value:
                return entry.path, "list"
        raise LookupError(list_value)
    return None, "list"
