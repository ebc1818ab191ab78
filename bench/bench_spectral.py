"""Speed of the SMA loss and of our DWT next to the wavelet libraries. Prints one JSON object per line.

    python -m bench.bench_spectral [--device cpu|cuda] [--repeats 15] [--warmup 3] [--threads N]

Lines:
- ``sma_loss``: forward + backward of `SMALoss` (paper, plus) for three latent shapes, and a
  ``sma_loss_linearity`` line: seconds per (frames x pixels), relative to the smallest shape.
- ``dwt``: Haar, 3 levels, on the motion vectors of a ``[1, 16, 4, 64, 64]`` latent as ``[16384, 15]``
  signals: ours (forward, forward + backward) next to ``ptwt``, ``pytorch_wavelets`` (when it imports)
  and ``pywt`` (numpy, forward only), with ``<lib>_over_ours`` ratios from the same run.
- ``dwt_path``: our dense-matrix and convolution paths and ptwt for growing signal lengths at a
  constant number of samples (the measurement behind ``spectral.MATRIX_MAX_LENGTH``).
``seconds`` is the median over ``--repeats`` runs after ``--warmup`` runs, ``min_seconds`` the fastest
of them (steadier on a busy shared machine), ``first_call_seconds`` the first call, which includes
building our operators or the library's start-up cost.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable, NamedTuple

import numpy as np
import pywt
import torch

import sma.spectral as spectral
from sma.loss import SMAConfig, SMALoss, motion_vectors

LOSS_SHAPES = [(1, 16, 4, 64, 64), (1, 32, 4, 64, 64), (1, 16, 4, 128, 128)]
DWT_LATENT = (1, 16, 4, 64, 64)
DWT_LEVEL = 3


def _timer(device: torch.device) -> Callable[[], float]:
    def now() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    return now


class Timing(NamedTuple):
    first: float  # the first call, operator building / library start-up included
    median: float  # median of the timed repeats: the reported `seconds`
    minimum: float  # least disturbed by other jobs on a shared machine


def measure(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> Timing:
    """Time ``fn``: one first call, ``warmup`` untimed calls, then ``repeats`` timed calls."""
    now = _timer(device)
    start = now()
    fn()
    first = now() - start
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = now()
        fn()
        times.append(now() - start)
    return Timing(first, statistics.median(times), min(times))


def timing_fields(timing: Timing) -> dict:
    return dict(seconds=timing.median, min_seconds=timing.minimum, first_call_seconds=timing.first)


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def bench_loss(device: torch.device, repeats: int, warmup: int) -> None:
    per_element = {}
    for shape in LOSS_SHAPES:
        gen = torch.Generator(device="cpu").manual_seed(0)
        pred = torch.randn(shape, generator=gen).to(device).requires_grad_()
        target = torch.randn(shape, generator=gen).to(device)
        alphas = torch.full((shape[0],), 0.5, device=device)
        for mode in ("paper", "plus"):
            loss = SMALoss(SMAConfig(sma_mode=mode))

            def step() -> None:
                pred.grad = None
                loss(pred, target, alphas).total.backward()

            timing = measure(step, device, repeats, warmup)
            frames, pixels = shape[1], shape[3] * shape[4]
            per_element.setdefault(mode, []).append(timing.median / (frames * pixels))
            emit(name=f"sma_loss_{mode}_fwd_bwd", shape=list(shape), device=str(device), dtype="float32",
                 **timing_fields(timing))
    for mode, values in per_element.items():
        emit(name=f"sma_loss_{mode}_linearity", shapes=[list(s) for s in LOSS_SHAPES], device=str(device),
             dtype="float32", seconds_per_frame_pixel=values, relative_to_first=[v / values[0] for v in values])


def _signals(device: torch.device) -> torch.Tensor:
    latent = torch.randn(DWT_LATENT, generator=torch.Generator().manual_seed(1))
    b, f, c, h, w = DWT_LATENT
    return motion_vectors(latent).permute(0, 2, 3, 4, 1).reshape(b * c * h * w, f - 1).contiguous().to(device)


def _fwd_bwd(transform: Callable[[torch.Tensor], list[torch.Tensor]], x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        x.grad = None
        coeffs = transform(x)
        sum(c.sum() for c in coeffs).backward()

    return run


def _fwd(transform: Callable[[torch.Tensor], list[torch.Tensor]], x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            transform(x)

    return run


def bench_dwt(device: torch.device, repeats: int, warmup: int) -> None:
    x = _signals(device).requires_grad_()
    shape = list(x.shape)
    libraries: dict[str, Callable[[torch.Tensor, str], list[torch.Tensor]]] = {}
    try:
        import ptwt

        libraries["ptwt"] = lambda t, mode: ptwt.wavedec(t, "haar", mode=mode, level=DWT_LEVEL)
    except ImportError as error:  # pragma: no cover - depends on the environment
        emit(name="dwt_ptwt", skipped=f"ptwt does not import: {error}")
    try:
        from pytorch_wavelets import DWT1DForward

        def pytorch_wavelets_dec(t: torch.Tensor, mode: str, _cache: dict = {}) -> list[torch.Tensor]:
            key = (mode, t.device)
            if key not in _cache:
                _cache[key] = DWT1DForward(J=DWT_LEVEL, wave="haar", mode=mode).to(t.device)
            low, highs = _cache[key](t.unsqueeze(1))
            return [low, *highs]

        libraries["pytorch_wavelets"] = pytorch_wavelets_dec
    except Exception as error:  # noqa: BLE001 - it fails with ImportError or pkg_resources errors
        emit(name="dwt_pytorch_wavelets", skipped=f"pytorch_wavelets does not import: {type(error).__name__}: {error}")

    for mode in ("zero", "symmetric"):
        spectral._analysis_matrix.cache_clear()
        ours = lambda t, m=mode: spectral.wavedec(t, "haar", DWT_LEVEL, m)  # noqa: E731
        results = {"ours": {}}
        results["ours"]["fwd_bwd"] = measure(_fwd_bwd(ours, x), device, repeats, warmup)
        results["ours"]["fwd"] = measure(_fwd(ours, x), device, repeats, warmup)
        for lib, transform in libraries.items():
            fn = lambda t, tr=transform, m=mode: tr(t, m)  # noqa: E731
            results[lib] = {"fwd_bwd": measure(_fwd_bwd(fn, x), device, repeats, warmup),
                            "fwd": measure(_fwd(fn, x), device, repeats, warmup)}
        x_np = x.detach().cpu().numpy()
        results["pywt"] = {"fwd": measure(lambda: pywt.wavedec(x_np, "haar", mode=mode, level=DWT_LEVEL, axis=-1),
                                          torch.device("cpu"), repeats, warmup)}
        for lib, timings in results.items():
            for kind, timing in timings.items():
                numpy_lib = lib == "pywt"
                line = dict(name=f"dwt_{lib}_{kind}", mode=mode, wavelet="haar", level=DWT_LEVEL, shape=shape,
                            device="cpu (numpy)" if numpy_lib else str(device), dtype="float32",
                            **timing_fields(timing))
                if lib == "ours":
                    for other, other_timings in results.items():
                        if other != "ours" and kind in other_timings:
                            line[f"{other}_over_ours"] = other_timings[kind].median / timing.median
                            line[f"{other}_over_ours_min"] = other_timings[kind].minimum / timing.minimum
                emit(**line)


def bench_dwt_paths(device: torch.device, repeats: int, warmup: int) -> None:
    try:
        import ptwt
    except ImportError:  # pragma: no cover
        ptwt = None
    total = 16384 * 15
    saved = spectral.MATRIX_MAX_LENGTH
    try:
        for length in (15, 63, 255, 511, 1023):
            x = torch.randn(total // length, length, device=device, requires_grad=True)
            line = dict(name="dwt_path_fwd_bwd", wavelet="haar", level=DWT_LEVEL, mode="symmetric",
                        shape=list(x.shape), device=str(device), dtype="float32")
            ours = lambda t: spectral.wavedec(t, "haar", DWT_LEVEL, "symmetric")  # noqa: E731
            for path, threshold in (("matrix", 1 << 30), ("conv", 0)):
                spectral.MATRIX_MAX_LENGTH = threshold
                line[f"{path}_seconds"] = measure(_fwd_bwd(ours, x), device, repeats, warmup).median
            if ptwt is not None:
                theirs = lambda t: ptwt.wavedec(t, "haar", mode="symmetric", level=DWT_LEVEL)  # noqa: E731
                line["ptwt_seconds"] = measure(_fwd_bwd(theirs, x), device, repeats, warmup).median
            line["default_path"] = "matrix" if length <= saved else "conv"
            emit(**line)
    finally:
        spectral.MATRIX_MAX_LENGTH = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    emit(name="environment", torch=torch.__version__, pywt=pywt.__version__, numpy=np.__version__,
         device=str(device), threads=torch.get_num_threads(),
         gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None)
    bench_dwt(device, args.repeats, args.warmup)
    bench_dwt_paths(device, args.repeats, args.warmup)
    bench_loss(device, args.repeats, args.warmup)


if __name__ == "__main__":
    main()
