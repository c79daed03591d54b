"""Model families; importing this package registers all of them."""

from hpsearch.trainables.models import cifar_cnn, font_cnn, mnist_cnn, row_lstm  # noqa: F401
from hpsearch.trainables.models.registry import MODELS, ModelFamily, build_model, count_params, register_model

__all__ = ["MODELS", "ModelFamily", "build_model", "count_params", "register_model"]
