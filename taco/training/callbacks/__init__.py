"""taco's Trainer callbacks, one per file (as Keras 3 keeps its own), each built by its config in
`conf/callbacks/` as `taco.training.callbacks.<Name>`: the base and the hooks in `base.py`."""

from taco.training.callbacks.augmentation_preview import AugmentationPreview
from taco.training.callbacks.base import Callback
from taco.training.callbacks.early_stopping import EarlyStopping
from taco.training.callbacks.epoch_metrics import LogEpochMetrics
from taco.training.callbacks.error_gallery import ErrorGallery
from taco.training.callbacks.learning_rate_schedule import LearningRateSchedule
from taco.training.callbacks.log_model import LogModel
from taco.training.callbacks.log_predictions import LogPredictions
from taco.training.callbacks.model_checkpoint import ModelCheckpoint
from taco.training.callbacks.per_class_curves import PerClassCurves
from taco.training.callbacks.per_class_report import PerClassReport
from taco.training.callbacks.profile_report import ProfileReport
from taco.training.callbacks.progress_bar import ProgressBar
from taco.training.callbacks.where_it_looks import WhereItLooks

__all__ = [
    "AugmentationPreview",
    "Callback",
    "EarlyStopping",
    "ErrorGallery",
    "LearningRateSchedule",
    "LogEpochMetrics",
    "LogModel",
    "LogPredictions",
    "ModelCheckpoint",
    "PerClassCurves",
    "PerClassReport",
    "ProfileReport",
    "ProgressBar",
    "WhereItLooks",
]
