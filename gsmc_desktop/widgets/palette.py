"""One colour per expression class, the same in every chart."""

# Tableau 10: distinct on white and for the common colour-vision deficiencies
CLASS_COLORS: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40),
    (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127),
    (188, 189, 34), (23, 190, 207),
)


def class_color(index: int) -> tuple[int, int, int]:
    """The RGB colour of class ``index``."""
    return CLASS_COLORS[index % len(CLASS_COLORS)]
