"""ComfyUI entry point of comfyui-sma: registers the pack's nodes with the V3 API, nothing else."""
from comfy_api.v0_0_2 import ComfyExtension, io

from .nodes import NODE_CLASSES


class SMAExtension(ComfyExtension):
    """The pack as a ComfyUI extension: its node list."""

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODE_CLASSES)


async def comfy_entrypoint() -> SMAExtension:
    return SMAExtension()
