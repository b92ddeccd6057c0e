"""Expression classes and how each dataset's labels map onto them.

Every reader maps its labels onto one canonical, named class list (FERPlus order) so a
checkpoint always names its classes the same way whichever dataset trained it.
"""

from gsmc_core.errors import UsageError

CANONICAL_CLASSES: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
)

SEVEN_CLASSES: tuple[str, ...] = CANONICAL_CLASSES[:7]

# RAF-DB basic: labels 1..7 in list_patition_label.txt.
RAFDB_LABELS: dict[int, str] = {
    1: "surprise",
    2: "fear",
    3: "disgust",
    4: "happiness",
    5: "sadness",
    6: "anger",
    7: "neutral",
}

# FERPlus vote columns, in label.csv order after the image name and the face box.
FERPLUS_VOTE_COLUMNS: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "not-a-face",
)

# FER2013 csv: emotion 0..6.
FER2013_LABELS: dict[int, str] = {
    0: "anger",
    1: "disgust",
    2: "fear",
    3: "happiness",
    4: "sadness",
    5: "surprise",
    6: "neutral",
}

# AffectNet csv: expression 0..7 (8..10 are none / uncertain / no-face and are dropped).
AFFECTNET_LABELS: dict[int, str] = {
    0: "neutral",
    1: "happiness",
    2: "sadness",
    3: "surprise",
    4: "fear",
    5: "disgust",
    6: "anger",
    7: "contempt",
}


def class_list(num_classes: int) -> tuple[str, ...]:
    """The canonical class list with 7 (no contempt) or 8 classes."""
    if num_classes == 8:
        return CANONICAL_CLASSES
    if num_classes == 7:
        return SEVEN_CLASSES
    raise UsageError(f"expression datasets use 7 or 8 classes, not {num_classes}")
