"""What this CPU can do at most, and how much work a BERT-style classifier does per input.

The peak is a paper figure from the instruction set, stated so that a benchmark can say
what fraction of it a path reached:

    peak = cores × GHz × operations per cycle per core

assuming two vector units per core of the widest width the flags name (512 bits with
AVX-512 on Intel; 256 bits otherwise, and for AMD, whose cores before Zen 5 split a 512-bit
operation in two). Per cycle, one unit does:

- fp32, FMA: width/32 lanes × 2 (multiply and add);
- int8 with VNNI (``avx512_vnni`` / ``avx_vnni``): VPDPBUSD, width/32 lanes × 4 u8·s8
  products × 2;
- int8 without VNNI: VPMADDUBSW then VPMADDWD, two instructions on the same units for
  width/8 products, so half the VNNI rate.

The clock is the one ``/proc/cpuinfo`` reports (nominal under a VM; turbo is not counted),
unless ``ghz`` is given.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.backends import default_threads

CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty off Linux)."""
    fields: dict[str, str] = {}
    try:
        text = CPUINFO.read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def cpu_name() -> str:
    """The CPU's model name, e.g. ``'Intel(R) Xeon(R) Processor'``."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


@dataclass(frozen=True)
class Peak:
    """A CPU's paper peak: GFLOP/s for fp32 FMA and GOP/s for int8 multiply-accumulate."""

    name: str
    cores: int
    ghz: float
    vector_bits: int
    vnni: str  # the VNNI flag the int8 figure assumes, or "" for the VPMADDUBSW path
    fp32_gflops: float
    int8_gops: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def peak(ghz: float | None = None, n_cores: int | None = None) -> Peak:
    """The peak of this machine, from its flags (see the module docstring for the formula).

    >>> p = peak(ghz=2.0, n_cores=2)
    >>> p.fp32_gflops == 2 * 2.0 * 2 * (p.vector_bits // 32) * 2
    True
    """
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    n_cores = n_cores or default_threads()
    if ghz is None:
        ghz = float(info.get("cpu MHz") or 0) / 1000
    if ghz <= 0:
        raise ValueError("the CPU clock is unknown here: pass ghz")
    intel = info.get("vendor_id") == "GenuineIntel"
    bits = 512 if "avx512f" in flags and intel else 256 if "avx2" in flags else 128
    vnni = next((f for f in ("avx512_vnni", "avx_vnni") if f in flags), "")
    lanes = bits // 32
    units = 2
    fp32 = n_cores * ghz * units * lanes * 2
    int8_per_unit = lanes * 4 * 2 if vnni else lanes * 4  # VPDPBUSD, or VPMADDUBSW+VPMADDWD
    int8 = n_cores * ghz * units * int8_per_unit
    return Peak(cpu_name(), n_cores, round(ghz, 3), bits, vnni, fp32, int8)


@dataclass(frozen=True)
class Flops:
    """Floating-point (or int8) operations of one forward pass, split by kind of work."""

    linear: float  # the weight matmuls: int8 in the quantised graph
    attention: float  # Q·Kᵀ and softmax·V: fp32 in every graph

    @property
    def total(self) -> float:
        return self.linear + self.attention


def encoder_flops(config: Any, lengths: list[int]) -> Flops:
    """The operations that the matmuls of a BERT-style encoder classifier do on these inputs.

    Per input of ``n`` real tokens (padding not counted), with ``L`` layers, hidden ``h``,
    feed-forward width ``f`` and ``k`` labels:

    - linear: ``2·n·L·(4h² + 2hf)`` (Q, K, V, output and the two feed-forward matrices:
      2·weights·tokens) plus ``2·(h² + hk)`` once for the pooler and the classifier;
    - attention: ``4·L·n²·h`` (Q·Kᵀ and softmax·V, 2·n²·h each, all heads together).

    Embedding look-ups, biases, layer norms, GELU and softmax are not counted.

    >>> from types import SimpleNamespace as C
    >>> f = encoder_flops(C(num_hidden_layers=1, hidden_size=2, intermediate_size=4, num_labels=1), [3])
    >>> (f.linear, f.attention)
    (204.0, 72.0)
    """
    layers, h = config.num_hidden_layers, config.hidden_size
    ffn, labels = config.intermediate_size, config.num_labels
    per_token = 2 * layers * (4 * h * h + 2 * h * ffn)
    head = 2 * (h * h + h * labels)
    linear = sum(per_token * n + head for n in lengths)
    attention = sum(4 * layers * n * n * h for n in lengths)
    return Flops(float(linear), float(attention))


def peak_fraction(flops: Flops, seconds: float, machine: Peak, int8: bool) -> float:
    """How close a run came to the peak: the time the work needs at peak over the time it took.

    For an int8 graph the linear matmuls count at the int8 peak and attention at the fp32 one.
    """
    linear_peak = machine.int8_gops if int8 else machine.fp32_gflops
    ideal = flops.linear / (linear_peak * 1e9) + flops.attention / (machine.fp32_gflops * 1e9)
    return ideal / seconds
