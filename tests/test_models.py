"""The model registry: every task's family builds from its defaults, and its knobs are wired."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from hpsearch.plumbing.errors import UsageError
from hpsearch.trainables.models import MODELS, build_model, count_params, register_model
from hpsearch.trainables.models.font_cnn import Resize
from hpsearch.trainables.tasks import TASKS

# The seed's font CNN, as its report gives it (seed-tasks.md section 1).
FONT_SEED_PARAMS = 2_636_148


def build(task_name: str, input_shape: tuple[int, int, int] | None = None, **knobs) -> nn.Module:
    """The task's model with its family defaults, ``knobs`` on top (at the task's input shape)."""
    task = TASKS[task_name]
    if task.model == "font_cnn" and input_shape:
        knobs = {"image_size": input_shape[1], **knobs}  # the network at the smaller input, no resampling
    knobs = {**MODELS[task.model].defaults, **knobs}
    return build_model(task.model, task.num_classes, input_shape or task.input_shape, **knobs)


# The font CNN is slow to build at 90x90 on a CPU; its knob tests build it at 32x32 instead.
SMALL_FONT = (1, 32, 32)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("task_name", list(TASKS))
def test_task_model_maps_a_batch_to_one_logit_per_class(task_name):
    task = TASKS[task_name]
    model = build(task_name)
    x = torch.randn(3, *task.input_shape)
    model.train()  # BatchNorm in training mode needs a batch of more than one: 3 is enough
    assert model(x).shape == (3, task.num_classes)
    model.eval()
    out = model(x)
    assert out.shape == (3, task.num_classes) and torch.isfinite(out).all()


@pytest.mark.parametrize("family", list(MODELS))
def test_model_family_defaults_name_exactly_its_knobs(family):
    # The defaults are the one source of a family's knobs: a keyword without a default could not
    # be set from a config, and a default without a keyword would break the build.
    params = inspect.signature(MODELS[family].build).parameters.values()
    knobs = {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert knobs == set(MODELS[family].defaults)


@pytest.mark.parametrize("family", list(MODELS))
def test_model_family_is_used_by_a_task(family):
    # The shape test reaches a family only through a task: an unused one would go untested.
    assert any(task.model == family for task in TASKS.values())


def test_font_model_at_seed_values_has_the_seed_parameter_count():
    assert count_params(build("font")) == FONT_SEED_PARAMS


@pytest.mark.parametrize("task_name", list(TASKS))
def test_model_dropout_knobs_reach_the_dropout_layers(task_name):
    family = MODELS[TASKS[task_name].model]
    names = [k for k in family.defaults if "dropout" in k]
    if not names:
        pytest.skip(f"{family.name} has no dropout knob")
    # Distinct values, so each knob can be found among the layers it should set.
    knobs = {k: 0.11 + 0.1 * i for i, k in enumerate(names)}
    rates = {m.p for m in build(task_name, **knobs).modules() if isinstance(m, nn.Dropout)}
    assert set(knobs.values()) <= rates


def test_font_width_mult_scales_the_stages():
    half, full = (
        count_params(build("font", SMALL_FONT, width_mult=0.5)),
        count_params(build("font", SMALL_FONT)),
    )
    assert half < full / 2  # conv weights grow with the square of the width


def test_font_image_size_resamples_the_images_before_the_network():
    model = build("font", image_size=48)
    resize = model[0][0]  # features' first step
    assert isinstance(resize, Resize)
    images = torch.rand(2, 1, 90, 90)
    assert resize(images).shape == (2, 1, 48, 48)
    assert model(images).shape == (2, 52)  # it still takes the task's 90x90 images
    # At the images' own size nothing is resampled: the seed's network, parameter for parameter.
    assert not any(isinstance(m, Resize) for m in build("font").modules())
    # 48 leaves a 1x1 map before the FC layer (90 a 2x2 one): a quarter of its inputs.
    fc_inputs = lambda m: next(x for x in m.modules() if isinstance(x, nn.Linear)).in_features  # noqa: E731
    assert fc_inputs(build("font")) == 4 * fc_inputs(model)


def test_font_image_size_too_small_for_the_network_is_a_usage_error():
    with pytest.raises(UsageError, match="image_size must be at least 32"):
        build("font", image_size=24)


def test_font_blocks_per_stage_adds_blocks():
    convs = lambda m: sum(isinstance(x, nn.Conv2d) for x in m.modules())  # noqa: E731
    # One stem conv plus three convs per bottleneck, four stages.
    assert convs(build("font", SMALL_FONT, blocks_per_stage=1)) == 1 + 4 * 3
    assert convs(build("font", SMALL_FONT, blocks_per_stage=3)) == 1 + 4 * 3 * 3


@pytest.mark.parametrize("depth", [6, 10])
def test_cifar_bn_cnn_depth_is_its_number_of_conv_layers(depth):
    model = build("cifar100", depth=depth)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == depth


def test_cifar_bn_cnn_width_sets_the_first_conv():
    first = lambda m: next(x for x in m.modules() if isinstance(x, nn.Conv2d))  # noqa: E731
    assert first(build("cifar100", width=32)).out_channels == 32
    assert first(build("cifar100", width=64)).out_channels == 64


def test_cifar_bn_cnn_rejects_an_unknown_depth():
    with pytest.raises(ValueError, match="depth must be one of"):
        build("cifar100", depth=8)


@pytest.mark.parametrize("task_name", ["emnist", "emnist_digit_letter"])
def test_row_lstm_hidden_and_layers_shape_the_lstm(task_name):
    small, large = build(task_name, hidden=64, layers=1), build(task_name, hidden=128, layers=2)
    assert (small.lstm.hidden_size, small.lstm.num_layers) == (64, 1)
    assert (large.lstm.hidden_size, large.lstm.num_layers) == (128, 2)
    assert small.head.in_features == 64
    assert count_params(small) < count_params(large)


def test_row_lstm_reads_the_image_rows_as_its_sequence():
    model = build("emnist", hidden=32, layers=2).eval()
    assert model.lstm.input_size == 28  # one step per row of 28 pixels
    x = torch.randn(2, 1, 28, 28)
    # Only the last step feeds the head: the first row still counts, carried along the sequence.
    y = x.clone()
    y[:, :, 0] += 1.0
    assert not torch.allclose(model(x), model(y))


def test_mnist_cnn_channels_double_twice():
    model = build("mnist", channels=16)
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert widths == [16, 32, 64]


def test_cifar10_cnn_knobs_set_its_channels():
    model = build("cifar10", conv1_channels=96, conv1_kernel=3, mid_channels=48, last_channels=24)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 48, 48, 48, 24, 24]
    assert convs[0].kernel_size == (3, 3)


def test_register_model_refuses_a_name_twice():
    original = MODELS["font_cnn"]
    with pytest.raises(ValueError, match="registered twice"):
        register_model("font_cnn")(lambda num_classes, input_shape: nn.Identity())
    assert MODELS["font_cnn"] is original  # the first registration stands
