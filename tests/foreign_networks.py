"""Networks that differ from ours the way real ones do, built here: channels-last with their own tensor names, 2.5D
slice by slice, another in-plane size and frame count, their own activation and phase order. Each comes with its
card and with ``direct``: what the network itself gives for the served steps' inputs, computed outside the wrapper
(numpy around ONNX Runtime), to hold the wrapper to."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper
from torch import nn

from collat_contract.names import PHASE_NAMES


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], opset: int = 17,
            dynamic: dict | None = None) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, str(path), opset_version=opset, dynamo=False, input_names=inputs,
                          output_names=outputs, dynamic_axes=dynamic or {n: {0: "b"} for n in inputs + outputs})
    return path


def _run(path: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)[0]


def write_card(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _with_neighbours(image: np.ndarray) -> np.ndarray:
    """[N, C, D, H, W] -> [N, D, C*3, H, W]: each slice with the one below and above (edges repeated), channel by
    channel, as a 2.5D network with three context slices takes it."""
    n, c, d, h, w = image.shape
    padded = np.concatenate([image[:, :, :1], image, image[:, :, -1:]], axis=2)
    stacks = np.stack([padded[:, :, j: j + d] for j in range(3)], axis=2)  # [N, C, 3, D, H, W]
    return stacks.reshape(n, c * 3, d, h, w).transpose(0, 2, 1, 3, 4)


@dataclass
class Foreign:
    network: Path
    card: Path

    def direct(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError


class ChannelsLastUNet(nn.Module):
    """Keras style: image [N, D, H, W, C], NIHSS [N, 1] fed as NIHSS / 42, sigmoid lesion [N, D, H, W, 1]."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.a, self.b = nn.Conv3d(4, 6, 3, padding=1), nn.Conv3d(6, 1, 3, padding=1)

    def forward(self, image: torch.Tensor, nihss: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.a(image.permute(0, 4, 1, 2, 3))) + nihss.view(-1, 1, 1, 1, 1)
        return torch.sigmoid(self.b(x) - 2.0).permute(0, 2, 3, 4, 1)


class KerasUNet(Foreign):
    CARD = """card_version: 1
role: hypoperfusion
name: keras-unet
network: unet.onnx
inputs:
  image: {name: input_1, layout: NDHWC, channels: [dwi, adc, core, side]}
  nihss: {name: input_2, scale: 42}
outputs:
  lesion: {name: conv3d_18, layout: NDHWC, activation: sigmoid}
"""

    @classmethod
    def build(cls, folder: Path, opset: int = 17) -> KerasUNet:
        network = _export(ChannelsLastUNet(), (torch.zeros(1, 16, 128, 128, 4), torch.zeros(1, 1)),
                          folder / "unet.onnx", ["input_1", "input_2"], ["conv3d_18"], opset)
        return cls(network, write_card(folder / "unet.yaml", cls.CARD))

    def direct(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        out = _run(self.network, {"input_1": inputs["IMAGE"].transpose(0, 2, 3, 4, 1),
                                  "input_2": inputs["NIHSS"] * 21.0 / 42.0})
        return out.transpose(0, 4, 1, 2, 3)


class SliceUNet(nn.Module):
    """2.5D: [N, 6, 112, 96] (ADC then DWI, three slices each), two-class logits [N, 2, 112, 96], no NIHSS."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.a, self.b = nn.Conv2d(6, 8, 3, padding=1), nn.Conv2d(8, 2, 1)

    def forward(self, slices: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(slices)))


class TwoAndAHalfD(Foreign):
    CARD = """card_version: 1
role: hypoperfusion
name: slice-unet
network: slices.onnx
inputs:
  image: {name: slices, layout: NCHW, channels: [adc, dwi]}
outputs:
  lesion: {name: logits, layout: NCHW, activation: none, channel: 1}
context_slices: 3
inplane: [112, 96]
"""

    @classmethod
    def build(cls, folder: Path) -> TwoAndAHalfD:
        network = _export(SliceUNet(), (torch.zeros(1, 6, 112, 96),), folder / "slices.onnx", ["slices"], ["logits"])
        return cls(network, write_card(folder / "slices.yaml", cls.CARD))

    def direct(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        image = inputs["IMAGE"][:, [1, 0], :, 8:120, 16:112]  # ADC, DWI; the 128x128 grid cropped to 112x96
        n, c, d = image.shape[:3]
        per_slice = _with_neighbours(image).reshape(n * d, c * 3, 112, 96)
        logits = _run(self.network, {"slices": np.ascontiguousarray(per_slice)})
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        lesion = (e[:, 1] / e.sum(axis=1)).reshape(n, d, 112, 96)[:, None]
        out = np.zeros((n, 1, d, 128, 128), np.float32)
        out[..., 8:120, 16:112] = lesion
        return out


class ChannelsLastSliceUNet(nn.Module):
    """2.5D channels-last: [N, 112, 96, 6] (DWI, ADC, three slices each), NIHSS [N, 1]; sigmoid [N, 112, 96, 1]."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.a, self.b = nn.Conv2d(6, 8, 3, padding=1), nn.Conv2d(8, 1, 1)

    def forward(self, image: torch.Tensor, nihss: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.a(image.permute(0, 3, 1, 2))) * nihss.view(-1, 1, 1, 1)
        return torch.sigmoid(self.b(x)).permute(0, 2, 3, 1)


class ChannelsLast25D(Foreign):
    CARD = """card_version: 1
role: hypoperfusion
name: keras-slices
network: keras_slices.onnx
inputs:
  image: {name: input_slices, layout: NHWC, channels: [dwi, adc]}
  nihss: {name: input_nihss, scale: 21}
outputs:
  lesion: {name: dense_out, layout: NHWC, activation: sigmoid}
context_slices: 3
inplane: [112, 96]
"""

    @classmethod
    def build(cls, folder: Path) -> ChannelsLast25D:
        network = _export(ChannelsLastSliceUNet(), (torch.zeros(1, 112, 96, 6), torch.ones(1, 1)),
                          folder / "keras_slices.onnx", ["input_slices", "input_nihss"], ["dense_out"])
        return cls(network, write_card(folder / "keras_slices.yaml", cls.CARD))

    def direct(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        image = inputs["IMAGE"][:, [0, 1], :, 8:120, 16:112]
        n, c, d = image.shape[:3]
        per_slice = _with_neighbours(image).transpose(0, 1, 3, 4, 2).reshape(n * d, 112, 96, c * 3)
        nihss = np.repeat(inputs["NIHSS"] * 21.0 / 21.0, d, axis=0)
        lesion = _run(self.network, {"input_slices": np.ascontiguousarray(per_slice), "input_nihss": nihss})
        out = np.zeros((n, 1, d, 128, 128), np.float32)
        out[:, 0, :, 8:120, 16:112] = lesion[..., 0].reshape(n, d, 112, 96)
        return out


class TimeLastMROD(nn.Module):
    """[N, D, H, W, T=30] in [0, 1], 224x224 in-plane; sigmoid phases [N, D, H, W, 5], delay first."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.a, self.b = nn.Conv3d(30, 8, (1, 3, 3), padding=(0, 1, 1)), nn.Conv3d(8, 5, 1)

    def forward(self, series: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.a(series.permute(0, 4, 1, 2, 3)))
        return torch.sigmoid(self.b(x)).permute(0, 2, 3, 4, 1)


class TimeLast(Foreign):
    ORDER = ["delay", "late_venous", "early_venous", "capillary", "arterial"]
    CARD = f"""card_version: 1
role: collateral
name: time-last-mrod
network: mrod.onnx
inputs:
  series: {{name: dynamics, layout: NDHWC, range: [0, 1]}}
outputs:
  phases: {{name: maps, layout: NDHWC, activation: sigmoid, order: [{", ".join(ORDER)}]}}
modalities: [dce]
frames: 30
frame_seconds: 2.0
inplane: [224, 224]
"""

    @classmethod
    def build(cls, folder: Path) -> TimeLast:
        network = _export(TimeLastMROD(), (torch.zeros(1, 20, 224, 224, 30),), folder / "mrod.onnx", ["dynamics"],
                          ["maps"], dynamic={"dynamics": {0: "b", 1: "d"}, "maps": {0: "b", 1: "d"}})
        return cls(network, write_card(folder / "mrod.yaml", cls.CARD))

    def direct(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        fed = (inputs["MROD_INPUT"] + 0.9) / 1.8  # [-0.9, 0.9] -> [0, 1]
        maps = _run(self.network, {"dynamics": np.ascontiguousarray(fed.transpose(0, 2, 3, 4, 1))})
        maps = maps.transpose(0, 4, 1, 2, 3)[:, [self.ORDER.index(p) for p in PHASE_NAMES]]
        return maps * 2.0 - 1.0


def relaid_unet(served_unet: Path, folder: Path) -> Foreign:
    """The built-in U-Net's ONNX (``IMAGE``, ``NIHSS`` -> ``LESION_PROB``) made foreign: channels-last, renamed
    tensors, NIHSS fed / 42. Served, it must give exactly what the built-in network gives."""
    model = onnx.load(str(served_unet))
    graph = model.graph
    before = [helper.make_node("Transpose", ["input_1"], ["IMAGE"], perm=[0, 4, 1, 2, 3]),
              helper.make_node("Mul", ["input_2", "two"], ["NIHSS"])]
    after = [helper.make_node("Transpose", ["LESION_PROB"], ["conv3d_18"], perm=[0, 2, 3, 4, 1])]
    image = helper.make_tensor_value_info("input_1", onnx.TensorProto.FLOAT, ["b", 16, 128, 128, 4])
    nihss = helper.make_tensor_value_info("input_2", onnx.TensorProto.FLOAT, ["b", 1])
    lesion = helper.make_tensor_value_info("conv3d_18", onnx.TensorProto.FLOAT, ["b", 16, 128, 128, 1])
    weights = {i.name for i in graph.initializer}
    relaid = helper.make_graph([*before, *graph.node, *after], "keras_export", [image, nihss], [lesion],
                               initializer=[*graph.initializer, onnx.numpy_helper.from_array(np.float32(2.0), "two")],
                               value_info=[v for v in graph.value_info if v.name not in weights])
    foreign = helper.make_model(relaid, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    onnx.save(foreign, str(folder / "unet.onnx"))
    return KerasUNet(folder / "unet.onnx", write_card(folder / "unet.yaml", KerasUNet.CARD))
