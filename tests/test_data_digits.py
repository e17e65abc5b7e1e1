"""scikit-learn's 8x8 digits as an offline CPU image data set."""

import numpy as np
import torch
from sklearn.datasets import load_digits

from soflow_mini.data.digits import load_digits_images
from soflow_mini.train import build_config, build_data, read_log, train


def test_images_and_labels():
    images, labels = load_digits_images()
    assert images.shape == (1797, 8, 8, 1) and images.dtype == np.uint8 and labels.shape == (1797,)
    raw = load_digits()
    assert np.array_equal(images[..., 0] == 255, raw.images == 16) and np.array_equal(labels, raw.target)
    data = build_data(build_config("digits").data)
    x, y = data.batch(torch.tensor([0, 5]), torch.Generator())
    assert x.shape == (2, 1, 8, 8) and x.min() >= -1 and x.max() <= 1 and y.tolist() == raw.target[[0, 5]].tolist()
    assert data.spec.num_classes == 10


def test_digits_preset_trains_a_dit(tmp_path):
    config = build_config("digits", {"model.hidden_size": 32, "model.depth": 1, "model.num_heads": 2,
                                     "train.steps": 3, "train.batch_size": 16, "train.log_every": 1,
                                     "train.progress": False, "train.device": "cpu"})
    train(config, tmp_path)
    assert len(read_log(tmp_path / "log.csv")) == 3 and (tmp_path / "samples/step_00000003.png").is_file()
