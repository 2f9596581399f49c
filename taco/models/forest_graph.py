"""The forest model as one ONNX graph: the feature extractor (Keras' own ONNX export) feeding the
forest (skl2onnx's tree ensemble), ending in the scores taco's forest gives, P(label present) per
label. LiteRT has no tree-ensemble operator, so ONNX is the forest's one format."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from taco.errors import TacoError


class ForestGraph:
    """What `taco-export` writes for a forest: an object with Keras' `export(path, format=...)`;
    `refused` names the formats it cannot take and why, so the command refuses before any work."""

    refused = {
        "litert": "a forest model exports to ONNX only (--format onnx): LiteRT has no "
        "tree-ensemble operator for its random forest"
    }

    def __init__(self, extractor: Any, forest: Any, num_classes: int) -> None:
        self.extractor, self.forest, self.num_classes = extractor, forest, num_classes

    def export(self, filepath: str, format: str = "onnx", verbose: bool = False) -> None:
        if format != "onnx":
            raise TacoError(
                self.refused.get(format, f"a forest model cannot be exported to {format}")
            )
        import onnx
        import onnx.compose

        spec = self.extractor.inputs[0]  # Keras exports a model only once it has been called
        self.extractor(np.zeros((1, *spec.shape[1:]), spec.dtype), training=False)
        with tempfile.TemporaryDirectory() as tmp:
            self.extractor.export(str(Path(tmp) / "features.onnx"), format="onnx", verbose=False)
            features = onnx.load(str(Path(tmp) / "features.onnx"))
        opset = next(o.version for o in features.opset_import if o.domain in ("", "ai.onnx"))
        width = int(features.graph.output[0].type.tensor_type.shape.dim[1].dim_value)
        forest = forest_onnx(self.forest, width, self.num_classes, opset)
        features.ir_version = forest.ir_version = max(features.ir_version, forest.ir_version)
        for given in features.opset_import:  # a domain both use, at the newer version
            for wanted in forest.opset_import:
                if given.domain == wanted.domain:
                    given.version = wanted.version = max(given.version, wanted.version)
        merged = onnx.compose.merge_models(
            features,
            forest,
            io_map=[(features.graph.output[0].name, forest.graph.input[0].name)],
            prefix2="forest/",
        )
        versions = {o.domain: o.version for o in merged.opset_import}  # merged lists each twice
        del merged.opset_import[:]
        merged.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in versions.items())
        onnx.checker.check_model(merged, full_check=True)
        onnx.save(merged, filepath)


def forest_onnx(forest: Any, width: int, num_classes: int, opset: int) -> Any:
    """The fitted multi-output forest as an ONNX graph: features (n, width) -> scores (n, classes).

    skl2onnx gives each label's class probabilities as (labels, n, 2), a label seen with one
    class only padded with a zero column; a constant selector picks each label's column of
    class 1 (none where training never saw it: score 0), as `forest_scores` does."""
    from onnx import TensorProto, helper, numpy_helper
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    model = to_onnx(
        forest,
        initial_types=[("features", FloatTensorType([None, width]))],
        options={id(forest): {"zipmap": False}},
        target_opset={"": opset, "ai.onnx.ml": 3},
    )
    classes = forest.classes_ if isinstance(forest.classes_, list) else [forest.classes_]
    if len(classes) != num_classes:
        raise TacoError(f"the forest has {len(classes)} labels, its model {num_classes} classes")
    pick = np.zeros((num_classes, 1, 2), np.float32)
    for c, seen in enumerate(classes):
        seen = list(seen)
        if 1 in seen:
            pick[c, 0, seen.index(1)] = 1.0
    graph = model.graph
    probabilities = next(o.name for o in graph.output if o.name == "probabilities")
    if num_classes == 1:  # a single-output forest gives (n, 2): one label's axis added
        graph.node.append(helper.make_node("Unsqueeze", [probabilities, "label_axis"], ["stacked"]))
        graph.initializer.append(numpy_helper.from_array(np.array([0], np.int64), "label_axis"))
        probabilities = "stacked"
    graph.initializer.extend(
        [
            numpy_helper.from_array(pick, "class_one"),
            numpy_helper.from_array(np.array([2], np.int64), "class_axis"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Mul", [probabilities, "class_one"], ["picked"]),
            helper.make_node("ReduceSum", ["picked", "class_axis"], ["by_label"], keepdims=0),
            helper.make_node("Transpose", ["by_label"], ["scores"], perm=[1, 0]),
        ]
    )
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, num_classes])
    )
    return model
