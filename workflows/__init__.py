"""Generator of the example workflows in this folder (run ``python -m workflows.build_workflows``)."""
