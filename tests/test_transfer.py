"""Transfer learning's pieces (lymannet.transfer); transfer within a training run: test_train.py."""

from __future__ import annotations

import pytest

from lymannet.errors import ConfigError
from lymannet.transfer import keras_layers_to_blocks


def test_keras_layer_count_maps_to_conv_blocks():
    # InputLayer + (Conv1D, BatchNormalization, Activation[, Dropout]) per block
    assert keras_layers_to_blocks(7) == 2
    assert keras_layers_to_blocks(7, layers_per_block=4) == 2
    assert keras_layers_to_blocks(1) == 0 and keras_layers_to_blocks(0) == 0
    assert keras_layers_to_blocks(2) == 1 and keras_layers_to_blocks(13) == 4
    with pytest.raises(ConfigError):
        keras_layers_to_blocks(-1)
