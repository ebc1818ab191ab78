"""bench/profile_step.py: the CPU profile of toy steps runs and its breakdown adds up."""
from __future__ import annotations

import json

from bench import profile_step


def test_toy_profile_reports_each_phase_and_counts_operations(tmp_path, capsys):
    assert profile_step.main(["--steps", "2", "--warmup", "2", "--out", str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == json.loads((tmp_path / "profile_toy.json").read_text())
    phases = printed["phases_ms_per_step"]
    assert set(phases) == {*profile_step.PHASES, "other"}
    assert phases["temporal_pass"] > 0 and phases["sma_forward"] > 0 and phases["optimizer"] > 0
    # nested regions lie inside their pass; the top-level ones and "other" make up the step
    assert phases["sma_forward"] < phases["temporal_pass"]
    assert phases["lora_forward"] < phases["temporal_pass"] + phases["spatial_pass"]
    total = phases["spatial_pass"] + phases["temporal_pass"] + phases["optimizer"] + phases["other"]
    assert abs(total - printed["wall_ms_per_step"]) < 0.5
    assert printed["aten_calls_per_step"] > 1000 and printed["backward_nodes_per_step"] > 100
    assert 0 < printed["aten_self_ms_per_step"] < printed["wall_ms_per_step"]
    assert printed["lora_adapter_calls_per_step"] > 0
