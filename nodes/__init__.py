"""Thin ComfyUI (V3 API) adapters over the ``sma`` library, one module per node family."""
from comfy_api.latest import io

NODE_CLASSES: list[type[io.ComfyNode]] = []
