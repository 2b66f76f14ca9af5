"""Training checkpoints in safe formats, written atomically, so an interrupted run resumes.

A checkpoint is a folder ``step-<N>/`` holding

* ``tensors.safetensors``: module weights, optimiser tensors (moments...) and RNG states,
* ``state.json``: step, optimiser hyper-parameters, scheduler states, Python/NumPy RNG
  state and any ``extra`` values the trainer wants back.

The last ``keep_last`` checkpoints are kept, plus ``best/`` (lowest ``metric``).
Nothing is pickled, so a checkpoint handed over by someone else is safe to open.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors.torch import load_file

from medgap.errors import ModelFolderError
from medgap.io import atomic_path
from medgap.modelio import load_weights_into, state_to_tensors, write_safetensors

__all__ = ["CheckpointManager"]

_STEP_DIR = re.compile(r"^step-(\d+)$")


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return {"__float__": repr(value)}
    return value


def _from_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {k: _from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_jsonable(v) for v in value]
    return value


def _split_optimizer(name: str, optimizer: torch.optim.Optimizer, tensors: dict) -> dict:
    state = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{name}/{pid}/{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(pid), {})[key] = _to_jsonable(value)
    return {"param_groups": _to_jsonable(state["param_groups"]), "scalars": scalars}


def _join_optimizer(name: str, meta: dict, tensors: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    prefix = f"optim/{name}/"
    for key, value in tensors.items():
        if key.startswith(prefix):
            pid, field = key[len(prefix):].split("/", 1)
            state.setdefault(int(pid), {})[field] = value
    for pid, fields in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(fields)
    return {"state": state, "param_groups": meta["param_groups"]}


class CheckpointManager:
    """Save and restore training state under ``directory``.

    Only the main process should call :meth:`save`; every process may :meth:`restore`.
    """

    def __init__(self, directory: str | Path, keep_last: int = 2):
        self.directory = Path(directory)
        self.keep_last = max(1, keep_last)

    # ------------------------------------------------------------------ queries
    def checkpoints(self) -> list[Path]:
        if not self.directory.exists():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := _STEP_DIR.match(p.name))]
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    @property
    def best(self) -> Path | None:
        path = self.directory / "best"
        return path if path.exists() else None

    def best_metric(self) -> float | None:
        if self.best is None:
            return None
        return json.loads((self.best / "state.json").read_text())["metric"]

    # ------------------------------------------------------------------ save
    def save(
        self,
        step: int,
        modules: Mapping[str, torch.nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer],
        schedulers: Mapping[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        metric: float | None = None,
    ) -> Path:
        tensors: dict[str, torch.Tensor] = {}
        for name, module in modules.items():
            module = getattr(module, "module", module)  # unwrap DDP
            for key, value in state_to_tensors(module).items():
                tensors[f"module/{name}/{key}"] = value
        optim_meta = {name: _split_optimizer(name, opt, tensors) for name, opt in optimizers.items()}
        tensors["rng/torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng/cuda/{i}"] = s
        np_state = np.random.get_state()
        tensors["rng/numpy"] = torch.from_numpy(np_state[1].astype(np.int64))
        py_state = random.getstate()
        state = {
            "step": int(step),
            "metric": None if metric is None else float(metric),
            "optimizers": optim_meta,
            "schedulers": {k: _to_jsonable(s.state_dict()) for k, s in (schedulers or {}).items()},
            "extra": _to_jsonable(extra or {}),
            "rng": {
                "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
                "python": [py_state[0], list(py_state[1]), py_state[2]],
            },
        }
        target = self.directory / f"step-{int(step):08d}"
        with atomic_path(target, is_dir=True) as tmp:
            write_safetensors(tensors, tmp / "tensors.safetensors", target)
            (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")
        if metric is not None:
            best = self.best_metric()
            if best is None or metric < best:
                with atomic_path(self.directory / "best", is_dir=True) as tmp:
                    shutil.copytree(target, tmp, dirs_exist_ok=True)
        for old in self.checkpoints()[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        return target

    # ------------------------------------------------------------------ restore
    def restore(
        self,
        modules: Mapping[str, torch.nn.Module],
        optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
        schedulers: Mapping[str, Any] | None = None,
        path: str | Path | None = None,
        restore_rng: bool = True,
        max_step: int | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Load the latest (or given) checkpoint into the objects; return ``(step, extra)``.

        The checkpoint is validated like a model folder before anything is loaded: a real folder of
        this run (no symlink out of it), the schema of ``state.json``, a step that matches the
        folder's name and lies in ``0..max_step``, weights and optimiser tensors of the model's
        shapes and finite, RNG states of the right type and length. A damaged checkpoint raises
        :class:`ModelFolderError` naming it (``--no-resume`` starts afresh).
        """
        path = Path(path) if path is not None else self.latest()
        if path is None:
            raise ModelFolderError(self.directory, "no checkpoint to resume from")
        tensors, state = self._read(path)
        try:
            step = _check_state(path, state, max_step)
            for name, module in modules.items():
                module = getattr(module, "module", module)
                prefix = f"module/{name}/"
                module_state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
                if not module_state and any(True for _ in module.state_dict()):
                    raise ModelFolderError(path, f"checkpoint has no weights for '{name}'")
                load_weights_into(module, module_state, path / "tensors.safetensors")
            for name, opt in (optimizers or {}).items():
                if name not in state["optimizers"]:
                    raise ModelFolderError(path, f"checkpoint has no state for the optimiser '{name}'")
                joined = _join_optimizer(name, state["optimizers"][name], tensors)
                _check_optimizer(path, name, opt, joined)
                opt.load_state_dict(joined)
            for name, sched in (schedulers or {}).items():
                sched.load_state_dict(_from_jsonable(state["schedulers"][name]))
            if restore_rng:
                self._restore_rng(path, tensors, state)
        except ModelFolderError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as exc:
            raise ModelFolderError(path, f"damaged checkpoint ({type(exc).__name__}: {exc}); "
                                         "start afresh with --no-resume") from None
        return step, _from_jsonable(state["extra"])

    def _read(self, path: Path) -> tuple[dict[str, torch.Tensor], dict]:
        run = self.directory.resolve()
        for item in (path, path / "tensors.safetensors", path / "state.json"):
            if item.is_symlink():
                raise ModelFolderError(path, f"{item.name} is a symbolic link: a checkpoint must be a plain folder "
                                             "of its own run")
        if path.resolve().parent != run or not path.is_dir():
            raise ModelFolderError(path, f"not a checkpoint folder of the run in {self.directory}")
        try:
            tensors = load_file(str(path / "tensors.safetensors"))
            state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        except Exception as exc:
            raise ModelFolderError(path, f"unreadable checkpoint ({type(exc).__name__}: {exc})") from None
        return tensors, state

    @staticmethod
    def _restore_rng(path: Path, tensors: dict, state: dict) -> None:
        torch_state = tensors.get("rng/torch")
        reference = torch.get_rng_state()
        if torch_state is None or torch_state.dtype != torch.uint8 or torch_state.shape != reference.shape:
            raise ModelFolderError(path, "damaged checkpoint: the torch RNG state is missing or of the wrong type")
        numpy_state = tensors.get("rng/numpy")
        if numpy_state is None or numpy_state.dtype != torch.int64 or tuple(numpy_state.shape) != (624,):
            raise ModelFolderError(path, "damaged checkpoint: the NumPy RNG state is missing or of the wrong shape")
        kind, pos, has_gauss, gauss = state["rng"]["numpy"]
        version, internal, gauss_next = state["rng"]["python"]
        if len(internal) != 625:
            raise ModelFolderError(path, "damaged checkpoint: the Python RNG state has the wrong length")
        torch.set_rng_state(torch_state)
        cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng/cuda/")]
        if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        np.random.set_state((kind, numpy_state.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate((version, tuple(internal), gauss_next))


def _check_state(path: Path, state: Any, max_step: int | None) -> int:
    """The checkpoint's step, after checking ``state.json``'s schema."""
    if not isinstance(state, dict):
        raise ModelFolderError(path, "damaged checkpoint: state.json is not an object")
    missing = [k for k in ("step", "optimizers", "schedulers", "extra", "rng") if k not in state]
    if missing:
        raise ModelFolderError(path, f"damaged checkpoint: state.json lacks {missing}")
    step = state["step"]
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ModelFolderError(path, f"damaged checkpoint: step {step!r} is not a count of steps")
    named = _STEP_DIR.match(path.name)
    if named and int(named.group(1)) != step:
        raise ModelFolderError(path, f"damaged checkpoint: it says step {step} in a folder named {path.name}")
    if max_step is not None and step > max_step:
        raise ModelFolderError(path, f"damaged checkpoint: step {step} is past the run's {max_step} steps")
    if not isinstance(state["optimizers"], dict) or not isinstance(state["rng"], dict):
        raise ModelFolderError(path, "damaged checkpoint: optimizers/rng in state.json are not objects")
    return step


def _check_optimizer(path: Path, name: str, optimizer: torch.optim.Optimizer, joined: dict) -> None:
    """Refuse optimiser state that does not fit the parameters it will update (PyTorch would load it
    and fail, or silently broadcast, at the next step)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    groups = joined["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(optimizer.param_groups):
        raise ModelFolderError(path, f"damaged checkpoint: optimiser '{name}' has another number of parameter groups")
    for pid, fields in joined["state"].items():
        if not 0 <= pid < len(params):
            raise ModelFolderError(path, f"damaged checkpoint: optimiser '{name}' has state for parameter {pid}, "
                                         f"the model has {len(params)}")
        for key, value in fields.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                if tuple(value.shape) != tuple(params[pid].shape):
                    raise ModelFolderError(path, f"damaged checkpoint: optimiser '{name}' state {key} of parameter "
                                                 f"{pid} has shape {tuple(value.shape)}, the parameter "
                                                 f"{tuple(params[pid].shape)}")
            if isinstance(value, torch.Tensor) and torch.is_floating_point(value) and not bool(torch.isfinite(value).all()):
                raise ModelFolderError(path, f"damaged checkpoint: optimiser '{name}' state {key} is not finite")
