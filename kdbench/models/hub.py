"""Hub weights when the machine is offline: fail at once, with the command that passes a
local file, instead of spending a minute in download retries.

``HF_HUB_OFFLINE=1`` (as on a cluster's compute nodes) says the hub cannot be reached. A
model whose weights are already in the local Hugging Face or torch hub cache still loads
from there; one whose weights are not fails before anything is built.
"""

from __future__ import annotations

import os
from pathlib import Path

from kdbench.errors import WeightsError

_TRUE = ("1", "true", "yes", "on")


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` says the hub cannot be reached."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


class OfflineWeightsError(WeightsError):
    """A model's hub weights are needed, the hub is offline and they are not cached."""

    def __init__(self, name: str, option: str = "weights", role: str | None = None):
        self.name = name
        self.option = option
        super().__init__(self._message(role))

    def with_role(self, role: str) -> OfflineWeightsError:
        """The same error naming the one option that fixes it (``--teacher``, ``--student``)."""
        return OfflineWeightsError(self.name, self.option, role)

    def _message(self, role: str | None) -> str:
        flag = f"{self.name}:{self.option}=PATH"
        if role is not None:
            how = f"add --{role} {flag} to the kdbench run command"
        else:
            how = f"add --teacher {flag} (or --student {flag}) to the kdbench run command"
        return (
            f"{self.name} needs its pretrained weights, HF_HUB_OFFLINE is set and they are not "
            f"in the local hub cache: {how} (a .safetensors file or a weights-only torch "
            "checkpoint), or run once where the hub can be reached to fill the cache"
        )


def _hf_cached(repo_id: str, filenames: tuple[str, ...]) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        return False
    for filename in filenames:
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str):
            return True
    return False


def timm_weights_cached(model_name: str) -> bool:
    """Whether timm would find ``model_name``'s pretrained weights without the network."""
    try:
        from timm.models import get_pretrained_cfg
    except ImportError:  # pragma: no cover
        return False
    cfg = get_pretrained_cfg(model_name)
    if cfg is None:
        return False
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id:
        repo = hub_id.split("/", 2)
        repo_id = "/".join(repo[:2])
        names = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors")
        if _hf_cached(repo_id, names):
            return True
    url = getattr(cfg, "url", None)
    if url:
        import torch.hub

        return (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).is_file()
    return False


def require_timm_weights(model_name: str) -> None:
    """Raise :class:`OfflineWeightsError` when offline without ``model_name``'s weights."""
    if hub_offline() and not timm_weights_cached(model_name):
        raise OfflineWeightsError(f"timm:{model_name}")


def open_clip_weights_cached(model_name: str, tag: str) -> bool:
    """Whether open_clip would find ``model_name``/``tag`` weights without the network."""
    try:
        from open_clip.pretrained import get_pretrained_cfg
    except ImportError:
        return False
    cfg = get_pretrained_cfg(model_name, tag) or {}
    hub = cfg.get("hf_hub")
    if hub:
        parts = hub.strip("/").split("/")
        repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
        names = (filename,) if filename else ()
        names += ("open_clip_pytorch_model.bin", "open_clip_model.safetensors")
        if _hf_cached(repo_id, names):
            return True
    url = cfg.get("url")
    if url:
        cache = Path(os.path.expanduser("~/.cache/clip"))
        return (cache / Path(url).name).is_file()
    return False


def require_open_clip_weights(model_name: str, tag: str) -> None:
    """Raise :class:`OfflineWeightsError` when offline without the open_clip weights."""
    if hub_offline() and not open_clip_weights_cached(model_name, tag):
        raise OfflineWeightsError(f"open_clip:{model_name}", option="pretrained")
