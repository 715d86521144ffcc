"""Out-of-fold predictions: every image judged by a model that never saw it.

A held-out split shows the mistakes in a fifth of the data; a mislabelled *training* image is
memorised and never shows up. Cross-validated predictions on the cached features give every image
an honest prediction, so the images whose label the model doubts most can be checked and fixed
(the idea behind confident learning). Folds keep near-duplicate groups whole, so a burst of webcam
frames cannot vouch for itself.
"""

from __future__ import annotations

import warnings

import numpy as np

FOLDS = 5
# Strong regularisation on standardised features: a few outliers (the mislabelled images) must not
# be fitted, and thousands of features against tens of images per class overfit easily otherwise.
C = 0.01


def out_of_fold(
    features: np.ndarray, labels: np.ndarray, groups: np.ndarray, num_classes: int, folds: int = FOLDS, seed: int = 0
) -> np.ndarray | None:
    """Class probabilities (N, num_classes), each row from a logistic regression trained on the
    other folds; None when there are too few groups or too few images per class to hold any out."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = min(folds, len(np.unique(groups)), int(np.bincount(labels, minlength=num_classes).max()))
    if folds < 2 or len(np.unique(labels)) < 2:
        return None
    probabilities = np.zeros((len(labels), num_classes))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "least populated class has fewer members than n_splits": expected here
        for train, held_out in splitter.split(features, labels, groups):
            if len(np.unique(labels[train])) < 2:
                return None
            model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=500))
            model.fit(features[train], labels[train])
            probabilities[np.ix_(held_out, model.classes_)] = model.predict_proba(features[held_out])
    return probabilities


def doubtful(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Indices of the images predicted as another class, most confident first."""
    predicted = probabilities.argmax(1)
    wrong = np.nonzero(predicted != labels)[0]
    return wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")]
