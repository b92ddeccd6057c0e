"""Training settings are declared once (``TrainConfig``'s field metadata): the CLI flags, the
validation ranges and the Training tab's spin boxes all come from there."""

import dataclasses
import math

import pytest

from gsmc_core.cli import build_parser
from gsmc_core.errors import UsageError
from gsmc_core.training.config import RANGES, TrainConfig, setting_info

FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def train_parser():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["train"]


def test_every_flagged_setting_is_a_train_flag_with_its_help_and_choices():
    flags = {a.dest: a for a in train_parser()._actions if a.dest not in ("help", "config")}
    assert set(flags) == {name for name, f in FIELDS.items() if f.metadata["flag"]}
    for name, action in flags.items():
        info = setting_info(name)
        assert action.option_strings == ["--" + name.replace("_", "-")]
        assert action.default is None  # only the flags given override a config file
        assert action.help.startswith(info["help"])
        assert action.choices == info["choices"] or (action.choices is None and info["choices"] is None)
    assert flags["epochs"].help.endswith("(default: 60)") and flags["epochs"].type is int
    assert flags["lr"].help.endswith("(default: the method's)") and flags["lr"].type is float
    assert flags["noise_seed"].help.endswith("(default: 0)")  # a zero default is still said
    assert flags["preload"].nargs == 0  # booleans are switches


def test_the_parsed_flags_are_the_settings():
    args = train_parser().parse_args(["--epochs", "3", "--lr", "0.01", "--preload", "--num-classes", "7"])
    assert (args.epochs, args.lr, args.preload, args.num_classes) == (3, 0.01, True, 7)
    assert args.batch_size is None and args.strict is None
    with pytest.raises(SystemExit):
        train_parser().parse_args(["--method", "sgd"])


def test_every_number_has_a_range_and_the_validation_uses_it():
    numbers = {name for name, f in FIELDS.items()
               if any(t in (int, float) for t in (f.type, *getattr(f.type, "__args__", ())))}
    assert set(RANGES) <= numbers
    assert numbers - set(RANGES) == {"output_stride"}  # choices
    for name, (_low, high, _inclusive) in RANGES.items():
        if math.isfinite(high):
            config = TrainConfig(data_root="x", **{name: high + (1 if isinstance(high, int) else 0.5)})
            with pytest.raises(UsageError, match=f"setting {name}"):
                config.resolved()


def test_form_bounds_lie_inside_each_range():
    for name, f in FIELDS.items():
        form = f.metadata["form"]
        if form is None:
            continue
        low, high, inclusive = RANGES.get(name, (-math.inf, math.inf, True))
        lo, hi = form[0], form[1]
        none_as_zero = lo == 0 and low > 0 and f.default is None  # "all" for limits
        assert none_as_zero or (low <= lo if inclusive else low < lo), name
        assert (hi <= high if inclusive else hi < high) and lo < hi, name


def test_the_training_form_takes_its_bounds_from_the_schema(qtbot):
    from gsmc_desktop.training.form import TrainingForm

    form = TrainingForm()
    qtbot.addWidget(form)
    checked = 0
    for name, f in FIELDS.items():
        if f.metadata["form"] is None:
            continue
        box = getattr(form, name)
        lo, hi, step, *decimals = f.metadata["form"]
        assert (box.minimum(), box.maximum(), box.singleStep()) == pytest.approx((lo, hi, step)), name
        if decimals:
            assert box.decimals() == decimals[0]
        assert box.toolTip().lower() == f.metadata["help"].lower()
        checked += 1
    assert checked == 14
