"""headstart: a folder of images in, a small, fast, well-measured image classifier out.

    import headstart
    clf = headstart.train("data/")            # scan, extract cached features, train, evaluate
    clf.predict("photo.jpg")[0].label
    clf.save("models/flowers"); clf = headstart.load("models/flowers")
"""

__version__ = "0.1.0"

from .classifier import Classifier, Evaluation, Prediction, Predictions  # noqa: E402
from .errors import HeadstartError  # noqa: E402
from .hparams import HParams  # noqa: E402

train = Classifier.train
load = Classifier.load

__all__ = ["Classifier", "Evaluation", "HParams", "HeadstartError", "Prediction", "Predictions", "load", "train", "__version__"]
