"""Exact export-time rewrites of exported generator graphs for onnxruntime's CPU kernels (onnx only, no TF).

Profiling the tf2onnx graphs (``bench/load/kernels.py``) showed where a CPU run goes:

* **ConvTranspose** (~57% of the default conv generator): onnxruntime runs it per image as a small GEMM and
  a col2im scatter. A stride-``s`` ConvTranspose whose kernel is a multiple of ``s`` is the same sum as
  ``s*s`` ordinary convolutions (one per output phase, each with only the taps that phase touches)
  interleaved by a DepthToSpace: the sub-pixel convolution. Same multiply-adds, no zero taps, and the
  Convs go to onnxruntime's blocked NCHWc kernels.
* **BatchNorm in inference** is a per-channel ``Mul`` and ``Add`` by constants right after a Conv,
  ConvTranspose or MatMul: two passes over the largest activations. They fold into the weights and a bias.
* the pixel tail's ``Min`` + ``Max`` by constants is one ``Clip``, and the whole pixel rule
  (tanh, +1, *127.5, Round, Clip, Cast: five passes over the image) one sigmoid fused into the last
  Conv or Gemm plus one ``QuantizeLinear``.

Every rewrite computes the same sums in a different order, so results move by float rounding only; the
export's parity check against Keras (one grey level) still holds. A rewrite whose pattern does not match is
skipped, so any variant exports.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


class _Graph:
    """Producer/consumer/initializer lookups over a mutable ``GraphProto``."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.inits = {t.name: t for t in graph.initializer}
        self.outputs = {o.name for o in graph.output}
        self.refresh()

    def refresh(self) -> None:
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def const(self, name: str) -> np.ndarray | None:
        tensor = self.inits.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)

    def only_consumer(self, name: str) -> onnx.NodeProto | None:
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in self.outputs else None

    def add_init(self, array: np.ndarray, name: str) -> str:
        name = self.unique(name)
        tensor = numpy_helper.from_array(np.ascontiguousarray(array), name)
        self.graph.initializer.append(tensor)
        self.inits[name] = tensor
        return name

    def unique(self, name: str) -> str:
        taken = self.inits.keys() | {o for n in self.graph.node for o in n.output}
        candidate, i = name, 0
        while candidate in taken:
            i += 1
            candidate = f"{name}_{i}"
        return candidate

    def drop_unused_inits(self) -> None:
        used = {name for node in self.graph.node for name in node.input} | self.outputs
        keep = [t for t in self.graph.initializer if t.name in used]
        del self.graph.initializer[:]
        self.graph.initializer.extend(keep)
        self.inits = {t.name: t for t in keep}


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _channel_vector(
    value: np.ndarray | None, channels: int, rank: int, channel_axis: int
) -> np.ndarray | None:
    """``value`` as a per-channel vector when it broadcasts over a rank-``rank`` tensor along
    ``channel_axis`` only (or is a scalar); else ``None``."""
    if value is None or value.dtype != np.float32 or value.ndim > rank:
        return None
    shape = (1,) * (rank - value.ndim) + value.shape
    if any(d != 1 for i, d in enumerate(shape) if i != channel_axis % rank):
        return None
    vector = value.reshape(-1)
    if vector.size not in (1, channels):
        return None
    return np.broadcast_to(vector, (channels,)).astype(np.float32)


def fold_affine(model: onnx.ModelProto) -> int:
    """Fold ``Mul(c)`` then ``Add(c)`` by per-channel constants after a Conv, ConvTranspose or 2-D-weight
    MatMul into its weights and bias. Returns how many were folded."""
    g = _Graph(model.graph)
    folded = 0
    for node in list(g.graph.node):
        if node.op_type not in ("Conv", "ConvTranspose", "MatMul"):
            continue
        weight = g.const(node.input[1])
        if weight is None:
            continue
        if node.op_type == "MatMul" and weight.ndim != 2:
            continue
        if node.op_type != "MatMul" and _attrs(node).get("group", 1) != 1:
            continue
        channels = weight.shape[1] if node.op_type in ("ConvTranspose", "MatMul") else weight.shape[0]
        rank, axis = (2, -1) if node.op_type == "MatMul" else (weight.ndim, 1)
        mul = g.only_consumer(node.output[0])
        if mul is None or mul.op_type != "Mul":
            continue
        other = mul.input[1] if mul.input[0] == node.output[0] else mul.input[0]
        scale = _channel_vector(g.const(other), channels, rank, axis)
        if scale is None:
            continue
        add = g.only_consumer(mul.output[0])
        shift = None
        if add is not None and add.op_type == "Add":
            other = add.input[1] if add.input[0] == mul.output[0] else add.input[0]
            shift = _channel_vector(g.const(other), channels, rank, axis)
        bias = g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if bias is None and len(node.input) > 2 and node.input[2]:
            continue  # a computed bias cannot be folded into
        if node.op_type == "Conv":
            weight = weight * scale.reshape(-1, *([1] * (weight.ndim - 1)))
        else:
            weight = weight * scale.reshape(1, -1, *([1] * (weight.ndim - 2)))
        new_bias = (np.zeros(channels, np.float32) if bias is None else bias) * scale
        last = mul
        if shift is not None:
            new_bias = new_bias + shift
            last = add
        name = g.add_init(weight.astype(np.float32), node.input[1] + "/folded")
        node.input[1] = name
        if node.op_type == "MatMul":
            # The bias goes to an Add after the MatMul (onnxruntime fuses the pair into one Gemm).
            bias_name = g.add_init(new_bias.astype(np.float32), node.output[0] + "/bias")
            mid = g.unique(node.output[0] + "/unbiased")
            add_bias = helper.make_node("Add", [mid, bias_name], [last.output[0]], name=mid + "/add")
            node.output[0] = mid
            g.graph.node.insert(list(g.graph.node).index(node) + 1, add_bias)
        else:
            bias_name = g.add_init(new_bias.astype(np.float32), node.input[1] + "/bias")
            if len(node.input) > 2:
                node.input[2] = bias_name
            else:
                node.input.append(bias_name)
            node.output[0] = last.output[0]
        g.graph.node.remove(mul)
        if last is add:
            g.graph.node.remove(add)
        g.refresh()
        folded += 1
    g.drop_unused_inits()
    return folded


def fold_affine_forward(model: onnx.ModelProto) -> int:
    """Fold ``Mul(c)`` then ``Add(c)`` by per-feature constants *before* a MatMul with a 2-D constant weight
    (the dense generator's BatchNorm after its activation) into that MatMul's weight and its bias ``Add``:
    ``(x * s + t) @ W + b = x @ (s W) + (t @ W + b)``. Returns how many were folded."""
    g = _Graph(model.graph)
    folded = 0
    for mul in list(g.graph.node):
        if mul.op_type != "Mul":
            continue
        add = g.only_consumer(mul.output[0])
        matmul = g.only_consumer(add.output[0]) if add is not None and add.op_type == "Add" else None
        if matmul is None or matmul.op_type != "MatMul" or matmul.input[0] != add.output[0]:
            continue
        weight = g.const(matmul.input[1])
        if weight is None or weight.ndim != 2:
            continue
        data = [name for name in mul.input if g.const(name) is None]
        scale = _channel_vector(g.const(mul.input[1]), weight.shape[0], 2, -1)
        if data != [mul.input[0]] or scale is None:
            continue
        shift = _channel_vector(
            g.const(add.input[1] if add.input[0] == mul.output[0] else add.input[0]), weight.shape[0], 2, -1
        )
        if shift is None:
            continue
        bias_add = g.only_consumer(matmul.output[0])
        extra = (shift @ weight).astype(np.float32)
        matmul.input[0] = mul.input[0]
        scaled = (scale[:, None] * weight).astype(np.float32)
        matmul.input[1] = g.add_init(scaled, matmul.input[1] + "/folded")
        old_bias = None
        if bias_add is not None and bias_add.op_type == "Add":
            other = bias_add.input[1] if bias_add.input[0] == matmul.output[0] else bias_add.input[0]
            old_bias = _channel_vector(g.const(other), weight.shape[1], 2, -1)
        if old_bias is not None:
            slot = 1 if bias_add.input[0] == matmul.output[0] else 0
            bias_add.input[slot] = g.add_init(old_bias + extra, other + "/folded")
        else:
            mid = g.unique(matmul.output[0] + "/unshifted")
            shifted = helper.make_node(
                "Add", [mid, g.add_init(extra, mid + "/bias")], [matmul.output[0]], name=mid + "/add"
            )
            matmul.output[0] = mid
            g.graph.node.insert(list(g.graph.node).index(matmul) + 1, shifted)
        g.graph.node.remove(mul)
        g.graph.node.remove(add)
        g.refresh()
        folded += 1
    g.drop_unused_inits()
    return folded


def _subpixel_taps(stride: int, kernel: int, pad: int, phase: int) -> tuple[list[int], int, int] | None:
    """For output phase ``phase`` of a 1-D transposed conv: its kernel taps in input order and the
    (begin, end) pads of the ordinary conv that computes it; ``None`` when that needs negative pads."""
    taps = kernel // stride
    base, first = divmod(phase + pad, stride)
    order = [first + stride * (taps - 1 - j) for j in range(taps)]
    begin, end = taps - 1 - base, base
    return (order, begin, end) if begin >= 0 and end >= 0 else None


def subpixel_conv_transpose(model: onnx.ModelProto) -> int:
    """Replace each 2-D ConvTranspose with stride ``s`` > 1, a kernel that is a multiple of ``s`` and output
    size ``s`` times its input (``kernel - pads = s``) by ``s*s`` Convs + Concat + DepthToSpace (DCR)."""
    g = _Graph(model.graph)
    replaced = 0
    for node in list(g.graph.node):
        if node.op_type != "ConvTranspose":
            continue
        weight = g.const(node.input[1])
        a = _attrs(node)
        if weight is None or weight.ndim != 4 or a.get("group", 1) != 1:
            continue
        strides = list(a.get("strides", [1, 1]))
        kernel = list(a.get("kernel_shape", weight.shape[2:]))
        pads = list(a.get("pads", [0, 0, 0, 0]))
        s = strides[0]
        if (
            s < 2
            or strides != [s, s]
            or list(a.get("dilations", [1, 1])) != [1, 1]
            or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
            or a.get("output_padding") not in (None, [0, 0])
            or a.get("output_shape") is not None
            or kernel[0] != kernel[1]
            or kernel[0] % s
            or len(set(pads)) != 1
            or kernel[0] - 2 * pads[0] != s
        ):
            continue
        plans = [_subpixel_taps(s, kernel[0], pads[0], p) for p in range(s)]
        if any(plan is None for plan in plans):
            continue
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        phases = []
        for row, (rtaps, rbegin, rend) in enumerate(plans):
            for col, (ctaps, cbegin, cend) in enumerate(plans):
                # ConvTranspose weight [Cin, Cout, k, k] -> Conv weight [Cout, Cin, t, t] of this phase.
                w = weight[:, :, rtaps][:, :, :, ctaps].transpose(1, 0, 2, 3)
                w_name = g.add_init(w.astype(np.float32), f"{node.input[1]}/phase{row}{col}")
                out = g.unique(f"{node.output[0]}/phase{row}{col}")
                inputs = [node.input[0], w_name] + ([bias] if bias else [])
                phases.append(
                    helper.make_node(
                        "Conv",
                        inputs,
                        [out],
                        name=out,
                        kernel_shape=[len(rtaps), len(ctaps)],
                        pads=[rbegin, cbegin, rend, cend],
                    )
                )
        stacked = g.unique(node.output[0] + "/phases")
        concat = helper.make_node("Concat", [p.output[0] for p in phases], [stacked], name=stacked, axis=1)
        d2s = helper.make_node(
            "DepthToSpace", [stacked], [node.output[0]], name=stacked + "/d2s", blocksize=s, mode="DCR"
        )
        at = list(g.graph.node).index(node)
        g.graph.node.remove(node)
        for offset, new in enumerate([*phases, concat, d2s]):
            g.graph.node.insert(at + offset, new)
        g.refresh()
        replaced += 1
    g.drop_unused_inits()
    return replaced


_ELEMENTWISE = {"Mul", "Add", "LeakyRelu", "Relu"}
_ACTIVATIONS = {"Tanh", "Sigmoid", "Relu", "LeakyRelu"}


def conv_on_phases(model: onnx.ModelProto) -> int:
    """Move a DepthToSpace (DCR) past per-channel elementwise ops and the same-size Conv that follow it: the
    Conv then runs on the phase tensor with phase-assembled weights, and the DepthToSpace moves to the Conv's
    (few-channel) output. For the generators' last layer that interleaves 1 channel instead of 32; the Conv
    does ``s*s`` times its multiply-adds on zero taps, which costs less than the interleave it saves."""
    g = _Graph(model.graph)
    shapes = _static_shapes(model)
    moved = 0
    for d2s in list(g.graph.node):
        a = _attrs(d2s)
        if d2s.op_type != "DepthToSpace" or a.get("mode", b"DCR") not in (b"DCR", "DCR"):
            continue
        s = int(a["blocksize"])
        plan = _phase_chain(g, shapes, d2s)
        if plan is None:
            continue
        chain, conv, channel_axis, channels = plan
        weight = g.const(conv.input[1])
        ca = _attrs(conv)
        k, p = weight.shape[2], list(ca.get("pads", [0, 0, 0, 0]))
        if (
            ca.get("group", 1) != 1
            or list(ca.get("strides", [1, 1])) != [1, 1]
            or list(ca.get("dilations", [1, 1])) != [1, 1]
            or ca.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
            or weight.shape[2] != weight.shape[3]
            or len(set(p)) != 1
            or k - 1 != 2 * p[0]
            or weight.shape[1] != channels
        ):
            continue
        pad = p[0]
        dmin, dmax = (0 - pad) // s, (s - 1 + k - 1 - pad) // s
        size = dmax - dmin + 1
        cout, cin = weight.shape[:2]
        phased = np.zeros((s * s * cout, s * s * cin, size, size), np.float32)
        for ar in range(s):
            for ac in range(s):
                for tr in range(k):
                    for tc in range(k):
                        dr, br = divmod(ar + tr - pad, s)
                        dc, bc = divmod(ac + tc - pad, s)
                        out_block = (ar * s + ac) * cout
                        in_block = (br * s + bc) * cin
                        phased[
                            out_block : out_block + cout, in_block : in_block + cin, dr - dmin, dc - dmin
                        ] += weight[:, :, tr, tc]
        # The ops between the interleave and the Conv now see s*s times the channels: tile their operands.
        for node in chain:
            for i, name in enumerate(node.input[1:], start=1) if node.op_type in ("Mul", "Add") else ():
                dims = shapes.get(name) or list(g.const(name).shape)
                if len(dims) == 4 and dims[channel_axis] == channels and channels > 1:
                    tiled = g.unique(name + f"/x{s * s}")
                    g.graph.node.insert(
                        list(g.graph.node).index(node),
                        helper.make_node("Concat", [name] * (s * s), [tiled], name=tiled, axis=channel_axis),
                    )
                    node.input[i] = tiled
        chain[0].input[0] = d2s.input[0]
        g.graph.node.remove(d2s)
        conv.input[1] = g.add_init(phased, conv.input[1] + "/phases")
        if len(conv.input) > 2 and conv.input[2]:
            bias = g.const(conv.input[2])
            if bias is None:
                continue
            conv.input[2] = g.add_init(np.tile(bias, s * s), conv.input[2] + "/phases")
        del conv.attribute[:]
        conv.attribute.extend(
            [
                helper.make_attribute("kernel_shape", [size, size]),
                helper.make_attribute("pads", [-dmin, -dmin, dmax, dmax]),
            ]
        )
        # Interleave after the Conv's activation, so onnxruntime still fuses the two.
        g.refresh()
        last = conv
        act = g.only_consumer(conv.output[0])
        if act is not None and act.op_type in _ACTIVATIONS:
            last = act
        final = last.output[0]
        last.output[0] = g.unique(final + "/phases")
        g.graph.node.insert(
            list(g.graph.node).index(last) + 1,
            helper.make_node(
                "DepthToSpace",
                [last.output[0]],
                [final],
                name=last.output[0] + "/d2s",
                blocksize=s,
                mode="DCR",
            ),
        )
        g.refresh()
        moved += 1
    g.drop_unused_inits()
    return moved


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return shapes


def _phase_chain(g: _Graph, shapes, d2s: onnx.NodeProto):
    """``(nodes from the DepthToSpace to the Conv, the Conv, channel axis in those nodes, channels)`` when
    only per-channel elementwise ops (optionally inside a Transpose and its inverse) lie between."""
    out_dims = shapes.get(d2s.output[0])
    if not out_dims or len(out_dims) != 4 or out_dims[1] is None:
        return None
    channels = out_dims[1]
    chain: list[onnx.NodeProto] = []
    node = g.only_consumer(d2s.output[0])
    perm = None
    if node is not None and node.op_type == "Transpose":
        perm = list(_attrs(node)["perm"])
        chain.append(node)
        node = g.only_consumer(node.output[0])
    channel_axis = perm.index(1) if perm else 1
    batch_axis = perm.index(0) if perm else 0
    while node is not None and node.op_type in _ELEMENTWISE:
        if node.op_type in ("Mul", "Add"):
            if node.input[0] != chain[-1].output[0] if chain else node.input[0] != d2s.output[0]:
                return None
            operand = node.input[1]
            dims = shapes.get(operand) or (
                list(g.const(operand).shape) if g.const(operand) is not None else None
            )
            if dims is None:
                return None
            dims = [1] * (4 - len(dims)) + list(dims)
            if any(d != 1 for i, d in enumerate(dims) if i not in (channel_axis, batch_axis)):
                return None
            if dims[channel_axis] not in (1, channels):
                return None
        chain.append(node)
        node = g.only_consumer(node.output[0])
    if perm is not None:
        inverse = [perm.index(i) for i in range(4)]
        if node is None or node.op_type != "Transpose" or list(_attrs(node)["perm"]) != inverse:
            return None
        chain.append(node)
        node = g.only_consumer(node.output[0])
    if not chain or node is None or node.op_type != "Conv" or g.const(node.input[1]) is None:
        return None
    return chain, node, channel_axis, channels


def clip_tail(model: onnx.ModelProto) -> int:
    """``Min(x, hi)`` then ``Max(., lo)`` (either order) by scalar constants -> one ``Clip(x, lo, hi)``."""
    g = _Graph(model.graph)
    merged = 0
    for first in list(g.graph.node):
        if first.op_type not in ("Min", "Max") or len(first.input) != 2:
            continue
        second = g.only_consumer(first.output[0])
        if second is None or {first.op_type, second.op_type} != {"Min", "Max"} or len(second.input) != 2:
            continue
        c1 = g.const(first.input[1])
        other = second.input[1] if second.input[0] == first.output[0] else second.input[0]
        c2 = g.const(other)
        if c1 is None or c2 is None or c1.size != 1 or c2.size != 1 or c1.dtype != np.float32:
            continue
        hi, lo = (c1, c2) if first.op_type == "Min" else (c2, c1)
        if float(lo.reshape(())) > float(hi.reshape(())):
            continue  # Min-then-Max with lo > hi is not a Clip
        lo_name = g.add_init(lo.reshape(()).astype(np.float32), first.name + "/lo")
        hi_name = g.add_init(hi.reshape(()).astype(np.float32), first.name + "/hi")
        clip = helper.make_node(
            "Clip", [first.input[0], lo_name, hi_name], [second.output[0]], name=first.name + "/clip"
        )
        at = list(g.graph.node).index(first)
        g.graph.node.remove(first)
        g.graph.node.remove(second)
        g.graph.node.insert(at, clip)
        g.refresh()
        merged += 1
    g.drop_unused_inits()
    return merged


def sigmoid_pixel_tail(model: onnx.ModelProto) -> int:
    """The pixel rule ``uint8(clip(round((tanh(x) + 1) * 127.5)))`` as ``QuantizeLinear(sigmoid(2x), 1/255)``.

    ``(tanh(x) + 1) * 127.5 = 255 * sigmoid(2x)``; the 2 folds exactly (a power of two) into the weights and
    bias of the Conv or MatMul + bias that feeds the tanh, onnxruntime fuses the sigmoid into that Conv or
    Gemm, and QuantizeLinear rounds half to even and saturates to 0..255 like Round + Clip + Cast: five
    passes over the image become one. A Reshape or Transpose between them is kept.
    """
    g = _Graph(model.graph)
    done = 0
    for tanh in list(g.graph.node):
        if tanh.op_type != "Tanh":
            continue
        layout, rule = [], []
        wanted = ["Add", "Mul", "Round", "Clip", "Cast"]
        node = g.only_consumer(tanh.output[0])
        while node is not None and len(rule) < len(wanted):
            if node.op_type in _LAYOUT:
                layout.append(node)
            elif node.op_type == wanted[len(rule)] and _pixel_step(g, node):
                rule.append(node)
            else:
                break
            node = g.only_consumer(node.output[0])
        if len(rule) != len(wanted) or not _double_preactivation(g, tanh.input[0]):
            continue
        tanh.op_type = "Sigmoid"
        # The layout ops now run on the sigmoid, in their order; QuantizeLinear replaces Add .. Cast.
        source = tanh.output[0]
        for move in layout:
            move.input[0] = source
            source = move.output[0]
        cast = rule[-1]
        scale = g.add_init(np.array(1 / 255, np.float32), tanh.name + "/pixel_scale")
        zero = g.add_init(np.array(0, np.uint8), tanh.name + "/pixel_zero")
        quant = helper.make_node(
            "QuantizeLinear", [source, scale, zero], [cast.output[0]], name=cast.name + "/q"
        )
        for old in rule:
            g.graph.node.remove(old)
        g.graph.node.insert(list(g.graph.node).index(layout[-1]) + 1 if layout else len(g.graph.node), quant)
        g.refresh()
        done += 1
    g.drop_unused_inits()
    return done


_LAYOUT = ("Reshape", "Transpose", "DepthToSpace")


def _pixel_step(g: _Graph, node: onnx.NodeProto) -> bool:
    """``node`` is the pixel rule's step of its type: +1, *127.5, Round, Clip to 0..255, Cast to uint8."""
    if node.op_type in ("Add", "Mul"):
        const = g.const(node.input[1]) if len(node.input) == 2 else None
        value = {"Add": 1.0, "Mul": 127.5}[node.op_type]
        return const is not None and const.size == 1 and float(const.reshape(())) == value
    if node.op_type == "Clip":
        bounds = [g.const(name) for name in node.input[1:]]
        if len(bounds) != 2 or any(b is None or b.size != 1 for b in bounds):
            return False
        return [float(b.reshape(())) for b in bounds] == [0.0, 255.0]
    if node.op_type == "Cast":
        return _attrs(node).get("to") == onnx.TensorProto.UINT8
    return node.op_type == "Round"


def _double_preactivation(g: _Graph, name: str) -> bool:
    """Double the Conv (weights, bias) or MatMul + bias Add that produces ``name``; False if it is neither."""
    producers = {out: node for node in g.graph.node for out in node.output}
    node = producers.get(name)
    if node is None or g.only_consumer(name) is None:
        return False
    if node.op_type == "Conv" and g.const(node.input[1]) is not None:
        if len(node.input) > 2 and node.input[2] and g.const(node.input[2]) is None:
            return False
        node.input[1] = g.add_init(2 * g.const(node.input[1]), node.input[1] + "/x2")
        if len(node.input) > 2 and node.input[2]:
            node.input[2] = g.add_init(2 * g.const(node.input[2]), node.input[2] + "/x2")
        return True
    if node.op_type == "Add":
        matmul = producers.get(node.input[0])
        bias = g.const(node.input[1])
        if (
            matmul is None
            or matmul.op_type != "MatMul"
            or g.only_consumer(matmul.output[0]) is not node
            or bias is None
            or g.const(matmul.input[1]) is None
        ):
            return False
        matmul.input[1] = g.add_init(2 * g.const(matmul.input[1]), matmul.input[1] + "/x2")
        node.input[1] = g.add_init(2 * bias, node.input[1] + "/x2")
        return True
    return False


def optimize(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    """A rewritten copy of ``model`` and how many times each rewrite applied."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    counts = {
        "fold_affine": fold_affine(out),
        "fold_affine_forward": fold_affine_forward(out),
        "subpixel_conv_transpose": subpixel_conv_transpose(out),
        "conv_on_phases": conv_on_phases(out),
        "clip_tail": clip_tail(out),
        "sigmoid_pixel_tail": sigmoid_pixel_tail(out),
    }
    onnx.checker.check_model(out)
    return out, counts
